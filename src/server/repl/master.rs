//! Serving one replica, from its `PSYNC` on: a full sync or a continuation, then the stream.
//!
//! The connection leaves the async runtime after `PSYNC` (its socket becomes a blocking one)
//! and gets two threads: this one sends — the snapshot, then the backlog from the replica's
//! position as it grows — and a reader takes its `REPLCONF ACK`s. A full sync takes a
//! [snapshot](crate::Store::snapshot) whose moment is read with the stream's offset under
//! every shard's lock, so the replica gets the store as of that offset and the stream from
//! it; the backlog keeps the bytes from there (see `backlog`) while the snapshot is sent.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{ACK_EVERY, Attached, LINK_TIMEOUT, PING_EVERY, Psync, Repl, Role};
use crate::resp::{Limits, parse_command};
use crate::server::Shared;

/// How long a sender woken by a write waits for more before it sends.
const GATHER: Duration = Duration::from_micros(100);

/// Most bytes of the stream sent in one write.
const SEND_MAX: usize = 256 << 10;

impl Repl {
    /// Decides how to answer `PSYNC replid want` from replica `id`: a continuation
    /// (registering the replica at its position) or a full sync. An error on a replica.
    pub(crate) fn psync(
        &self,
        id: u64,
        ip: &str,
        port: u16,
        replid: &str,
        want: i64,
    ) -> Result<Psync, String> {
        let mut s = self.state.lock();
        if s.role != Role::Master {
            return Err(
                "ERR toykv replicas do not serve replicas: replicate from the master".into(),
            );
        }
        if let (Ok(want), Some(b)) = (u64::try_from(want), s.backlog.as_ref())
            && want > 0
        {
            let from = want - 1;
            let ours = replid == s.replid
                || (replid == s.replid2 && s.second_offset.is_some_and(|o| want <= o));
            if ours && from >= b.start() && from <= b.end() {
                s.replicas.insert(id, attached(ip, port, "online", from));
                s.counts.sync_partial_ok += 1;
                return Ok(Psync::Continue {
                    replid: s.replid.clone(),
                    from,
                });
            }
        }
        if replid != "?" {
            s.counts.sync_partial_err += 1;
        }
        s.counts.sync_full += 1;
        Ok(Psync::Full)
    }

    /// The replica `id`'s state, if it is still attached and not dropped.
    fn live(&self, id: u64, epoch: u64) -> bool {
        let s = self.state.lock();
        s.epoch == epoch && s.replicas.get(&id).is_some_and(|r| !r.dropped)
    }

    fn set_state(&self, id: u64, state: &'static str) {
        if let Some(r) = self.state.lock().replicas.get_mut(&id) {
            r.state = state;
        }
    }

    /// Forgets replica `id`.
    fn detach(&self, id: u64) {
        let mut s = self.state.lock();
        s.replicas.remove(&id);
        s.trim();
        drop(s);
        self.acked.notify_waiters();
    }

    /// The next bytes of the stream for replica `id`, waiting up to a second for some; `None`
    /// when it must stop (dropped, too far behind, the role changed).
    fn next(&self, id: u64, epoch: u64) -> Option<Vec<u8>> {
        let mut s = self.state.lock();
        loop {
            if s.epoch != epoch {
                return None;
            }
            let sent = match s.replicas.get(&id) {
                Some(r) if !r.dropped => r.sent,
                _ => return None,
            };
            let b = s.backlog.as_ref()?;
            let Some(bytes) = b.read(sent, SEND_MAX) else {
                warn!(
                    id,
                    sent,
                    start = b.start(),
                    "a replica fell behind the backlog; dropped"
                );
                return None;
            };
            if !bytes.is_empty() {
                if let Some(r) = s.replicas.get_mut(&id) {
                    r.sent += bytes.len() as u64;
                }
                s.trim();
                return Some(bytes);
            }
            if s.grown.elapsed() >= PING_EVERY && s.role == Role::Master {
                s.push(&[b"PING"]);
                continue;
            }
            if self.grew.wait_for(&mut s, ACK_EVERY).timed_out() {
                return Some(Vec::new());
            }
            // Woken by a write: let the writes of the moment gather (the pipelines being
            // applied now) so that one send carries them, instead of one wake-up and one
            // send per write.
            parking_lot::MutexGuard::unlocked(&mut s, || std::thread::sleep(GATHER));
        }
    }
}

fn attached(ip: &str, port: u16, state: &'static str, from: u64) -> Attached {
    Attached {
        ip: ip.to_string(),
        port,
        state,
        sent: from,
        ack: from,
        acked: Instant::now(),
        dropped: false,
    }
}

/// Serves replica `id` (address `ip`, listening on `port`) on `socket` after its
/// `PSYNC replid want`, until it leaves, is dropped, or this server's role changes.
pub(crate) fn serve(
    shared: Arc<Shared>,
    socket: TcpStream,
    id: u64,
    ip: String,
    port: u16,
    replid: String,
    want: i64,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("toykv-replica-{id}"))
        .spawn(move || {
            let repl = shared.repl.clone();
            let epoch = repl.epoch();
            let why = send(&shared, &socket, id, &ip, port, &replid, want, epoch);
            repl.detach(id);
            let _ = socket.shutdown(Shutdown::Both);
            info!(id, %ip, port, "replica detached: {why}");
        });
    if let Err(e) = spawned {
        warn!("cannot start a thread for a replica: {e}");
    }
}

#[allow(clippy::too_many_arguments)]
fn send(
    shared: &Shared,
    socket: &TcpStream,
    id: u64,
    ip: &str,
    port: u16,
    replid: &str,
    want: i64,
    epoch: u64,
) -> String {
    let repl = &shared.repl;
    let mut out = socket;
    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_write_timeout(Some(LINK_TIMEOUT)))
    {
        return format!("socket: {e}");
    }
    match repl.psync(id, ip, port, replid, want) {
        Err(e) => {
            let _ = out.write_all(format!("-{e}\r\n").as_bytes());
            return e;
        }
        Ok(Psync::Continue { replid, from }) => {
            info!(id, %ip, port, from, "partial resync");
            if let Err(e) = out.write_all(format!("+CONTINUE {replid}\r\n").as_bytes()) {
                return format!("write: {e}");
            }
        }
        Ok(Psync::Full) => {
            if let Err(why) = full(shared, &mut out, id, ip, port) {
                return why;
            }
        }
    }
    let reader = match socket.try_clone() {
        Ok(r) => r,
        Err(e) => return format!("socket: {e}"),
    };
    let acks = {
        let repl = repl.clone();
        std::thread::Builder::new()
            .name(format!("toykv-acks-{id}"))
            .spawn(move || read_acks(&repl, reader, id))
    };
    if let Err(e) = acks {
        return format!("cannot start the ACK reader: {e}");
    }
    loop {
        let Some(bytes) = repl.next(id, epoch) else {
            return "stopped (dropped, fell behind, or the role changed)".into();
        };
        if bytes.is_empty() {
            if !repl.live(id, epoch) {
                return "stopped".into();
            }
            continue;
        }
        if let Err(e) = out.write_all(&bytes) {
            return format!("write: {e}");
        }
    }
}

/// A full sync: `+FULLRESYNC replid offset`, then the snapshot as one bulk string.
fn full(shared: &Shared, out: &mut &TcpStream, id: u64, ip: &str, port: u16) -> Result<(), String> {
    let repl = &shared.repl;
    repl.activate();
    let store = shared.store();
    let started = Instant::now();
    let taken = store.snapshot(|| {
        // Every shard is held: no write is half-fed. The replica starts at this offset, and
        // the backlog keeps the bytes from it while the snapshot is sent.
        let mut s = repl.state.lock();
        let offset = s.offset();
        s.replicas
            .insert(id, attached(ip, port, "wait_bgsave", offset));
        (s.replid.clone(), offset)
    });
    let (snap, (replid, offset)) = taken.map_err(|e| format!("snapshot: {e}"))?;
    repl.set_state(id, "send_bulk");
    let head = format!("+FULLRESYNC {replid} {offset}\r\n${}\r\n", snap.len());
    out.write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let sent = snap
        .write_to(out)
        .map_err(|e| format!("send the snapshot: {e}"))?;
    drop(snap);
    repl.set_state(id, "online");
    let secs = started.elapsed().as_secs_f64();
    info!(
        id,
        %ip,
        port,
        offset,
        bytes = sent,
        secs,
        mb_per_s = sent as f64 / 1e6 / secs.max(1e-9),
        "full sync sent"
    );
    Ok(())
}

/// Reads the replica's `REPLCONF ACK offset`s until the link ends; then drops the replica.
fn read_acks(repl: &Repl, mut socket: TcpStream, id: u64) {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
    let mut heard = Instant::now();
    loop {
        match socket.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                heard = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if super::waited(&e) => {
                if heard.elapsed() > LINK_TIMEOUT {
                    warn!(id, "replica silent for {LINK_TIMEOUT:?}; dropped");
                    break;
                }
                let s = repl.state.lock();
                if s.replicas.get(&id).is_none_or(|r| r.dropped) {
                    break;
                }
                continue;
            }
            Err(_) => break,
        }
        let mut used = 0;
        loop {
            match parse_command(&buf[used..], &limits) {
                Ok(Some((argv, n))) => {
                    used += n;
                    repl.heard(id, &argv);
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(id, "protocol error from a replica: {e}");
                    repl.drop_one(id);
                    return;
                }
            }
        }
        buf.drain(..used);
    }
    repl.drop_one(id);
}

impl Repl {
    /// A command from replica `id`: `REPLCONF ACK offset` moves its acknowledged offset.
    fn heard(&self, id: u64, argv: &[Vec<u8>]) {
        let [name, sub, offset, ..] = argv else {
            return;
        };
        if !name.eq_ignore_ascii_case(b"replconf") || !sub.eq_ignore_ascii_case(b"ack") {
            return;
        }
        let Some(offset) = std::str::from_utf8(offset)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        let mut s = self.state.lock();
        if let Some(r) = s.replicas.get_mut(&id) {
            r.ack = r.ack.max(offset);
            r.acked = Instant::now();
        }
        drop(s);
        self.acked.notify_waiters();
    }

    /// Marks replica `id` dropped: its sender stops.
    fn drop_one(&self, id: u64) {
        if let Some(r) = self.state.lock().replicas.get_mut(&id) {
            r.dropped = true;
        }
        self.grew.notify_all();
        self.acked.notify_waiters();
    }
}
