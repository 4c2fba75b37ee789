//! A replica's link to its master: one thread that connects, shakes hands, syncs, and then
//! applies the stream, reconnecting (a partial resync when the master's backlog allows)
//! until the role changes.
//!
//! # A full sync never leaves a half-copied store
//!
//! The snapshot is written into `DIR.sync`, a directory beside the data directory, every
//! chunk checked against its CRC and every file and directory synced. Only then, with the
//! server's gate held exclusively (no command runs), is the store halted, the two directories
//! exchanged in one atomic `renameat2(RENAME_EXCHANGE)`, the new one opened (recovery checks
//! it; should it refuse the copy, the directories are exchanged back and the old store
//! reopened) and swapped in, and the old data (now `DIR.sync`) removed. A kill at any moment leaves `DIR`
//! a whole store, the old or the new; a leftover `DIR.sync` is removed at start
//! ([`clean_leftovers`]). Until the swap the replica serves its old data. The new position
//! (the master's id and the snapshot's offset) is taken before the gate is released.
//!
//! # Applying the stream
//!
//! `SET`, `DEL` and `MULTI`…`EXEC` (applied as one atomic batch) go to the store; `PING` and
//! `SELECT` do nothing; `REPLCONF GETACK` asks for an acknowledgement. What arrived in one
//! read is applied, waited for as the store's durability says, appended to this server's
//! backlog byte for byte (all three with the server's gate held shared, so that a shutdown
//! sees the store exactly at this server's offset), and then acknowledged
//! (`REPLCONF ACK offset`, at least every [`ACK_EVERY`]): an offset a replica acknowledges
//! is applied and durable there. The bytes of a `MULTI`…`EXEC` count only once its `EXEC`
//! is applied (as in Redis): the offset never falls inside a transaction, so a link that
//! breaks in the middle of one (or a restart) asks for it again from its `MULTI`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{ACK_EVERY, LINK_TIMEOUT, Role};
use crate::resp::{Limits, parse_command};
use crate::server::Shared;
use crate::{Batch, Commit, Store};

/// How long a connection to the master may take.
const CONNECT: Duration = Duration::from_secs(5);
/// Pause between attempts to reach the master.
const RETRY: Duration = Duration::from_secs(1);

/// The directory a full sync is written into, beside `dir`.
fn sync_dir(dir: &Path) -> PathBuf {
    let mut s: OsString = dir.as_os_str().to_owned();
    s.push(".sync");
    PathBuf::from(s)
}

/// Removes what a full sync cut short (or finished) left beside `dir`.
pub(crate) fn clean_leftovers(dir: &Path) {
    let d = sync_dir(dir);
    if d.exists() {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => info!(dir = %d.display(), "removed what an earlier full sync left"),
            Err(e) => warn!(dir = %d.display(), "cannot remove what a full sync left: {e}"),
        }
    }
}

/// Starts the link thread of role epoch `epoch`.
pub(crate) fn start(shared: Arc<Shared>, epoch: u64) {
    let spawned = std::thread::Builder::new()
        .name("toykv-link".into())
        .spawn(move || {
            while shared.repl.epoch() == epoch && !shared.stopping() {
                if let Err(why) = link(&shared, epoch) {
                    warn!("replication link: {why}");
                }
                shared.repl.link_down(epoch);
                let until = Instant::now() + RETRY;
                while Instant::now() < until && shared.repl.epoch() == epoch {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start the replication link thread: {e}");
    }
}

/// The connection to the master, with what was read but not used yet.
struct Conn {
    socket: TcpStream,
    buf: Vec<u8>,
    at: usize,
}

impl Conn {
    /// Reads more into the buffer; `Ok(false)` on a read timeout.
    fn fill(&mut self) -> Result<bool, String> {
        // What was used goes: only an unfinished command stays (at most a request's size).
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.socket.read(&mut chunk) {
            Ok(0) => Err("the master closed the connection".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if super::waited(&e) => Ok(false),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// The next line (without its end), skipping the bare `\n` keepalives a master may send
    /// while it prepares a snapshot; waits up to [`LINK_TIMEOUT`].
    fn line(&mut self) -> Result<String, String> {
        let start = Instant::now();
        loop {
            while self.buf.get(self.at) == Some(&b'\n') {
                self.at += 1;
            }
            if let Some(i) = self.buf[self.at..].iter().position(|&b| b == b'\n') {
                let raw = &self.buf[self.at..self.at + i];
                let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                let line = String::from_utf8_lossy(line).into_owned();
                self.at += i + 1;
                return Ok(line);
            }
            if self.buf.len() - self.at > 64 * 1024 {
                return Err("a reply line longer than 64 KiB".into());
            }
            if !self.fill()? && start.elapsed() > LINK_TIMEOUT {
                return Err(format!("no reply within {LINK_TIMEOUT:?}"));
            }
        }
    }

    /// Sends a command and reads its one-line reply.
    fn ask(&mut self, args: &[&[u8]]) -> Result<String, String> {
        let mut out = Vec::new();
        crate::resp::encode_command(args, &mut out);
        self.socket
            .write_all(&out)
            .map_err(|e| format!("write: {e}"))?;
        self.line()
    }
}

/// A reader of the next `left` bytes of the connection (the snapshot's).
struct Bulk<'a> {
    conn: &'a mut Conn,
    left: u64,
    idle: Instant,
}

impl Read for Bulk<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        let want = out
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let have = self.conn.buf.len() - self.conn.at;
        if have > 0 {
            let n = have.min(want);
            out[..n].copy_from_slice(&self.conn.buf[self.conn.at..self.conn.at + n]);
            self.conn.at += n;
            self.left -= n as u64;
            return Ok(n);
        }
        // Nothing buffered: straight from the socket into the caller's buffer.
        loop {
            match self.conn.socket.read(&mut out[..want]) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the master closed the connection",
                    ));
                }
                Ok(n) => {
                    self.left -= n as u64;
                    self.idle = Instant::now();
                    return Ok(n);
                }
                Err(e) if super::waited(&e) => {
                    if self.idle.elapsed() > LINK_TIMEOUT {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the master sent nothing for a minute",
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One link: connect, hand-shake, sync, apply the stream until it breaks or the role
/// changes.
fn link(shared: &Arc<Shared>, epoch: u64) -> Result<(), String> {
    let Role::Replica { host, port } = shared.repl.role() else {
        return Ok(());
    };
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolves to nothing"))?;
    let socket =
        TcpStream::connect_timeout(&addr, CONNECT).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = socket.set_nodelay(true);
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .and_then(|()| socket.set_write_timeout(Some(LINK_TIMEOUT)))
        .map_err(|e| format!("socket: {e}"))?;
    let mut c = Conn {
        socket,
        buf: Vec::new(),
        at: 0,
    };
    let pong = c.ask(&[b"PING"])?;
    if !(pong.starts_with("+PONG") || pong.starts_with("-NOAUTH")) {
        return Err(format!("the master answered PING with {pong}"));
    }
    if let Some(pass) = &shared.config.masterauth {
        let r = c.ask(&[b"AUTH", pass.as_bytes()])?;
        if !r.starts_with('+') {
            return Err(format!("the master refused AUTH: {r}"));
        }
    }
    let port = shared.config.port.to_string();
    let mode = shared.config.key_mode.to_string();
    for args in [
        &[&b"REPLCONF"[..], b"listening-port", port.as_bytes()][..],
        &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"],
        &[b"REPLCONF", b"toykv-key-mode", mode.as_bytes()],
    ] {
        let r = c.ask(args)?;
        if !r.starts_with('+') {
            return Err(format!("the master refused {}: {r}", show(args)));
        }
    }
    let (replid, offset) = shared.repl.position();
    let want = (offset + 1).to_string();
    let r = c.ask(&[b"PSYNC", replid.as_bytes(), want.as_bytes()])?;
    let words: Vec<&str> = r.split_whitespace().collect();
    match words[..] {
        ["+FULLRESYNC", id, off] => {
            let off: u64 = off
                .parse()
                .map_err(|_| format!("a FULLRESYNC offset that is not a number: {r}"))?;
            full_sync(shared, &mut c, epoch, id, off)?;
        }
        ["+CONTINUE", id] => shared.repl.continued(Some(id), epoch),
        ["+CONTINUE"] => shared.repl.continued(None, epoch),
        _ => return Err(format!("the master answered PSYNC with {r}")),
    }
    stream(shared, &mut c, epoch)
}

fn show(args: &[&[u8]]) -> String {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Receives the snapshot into `DIR.sync` and swaps it in (see the module doc).
fn full_sync(
    shared: &Arc<Shared>,
    c: &mut Conn,
    epoch: u64,
    replid: &str,
    offset: u64,
) -> Result<(), String> {
    shared.repl.syncing(epoch, true);
    let head = c.line()?;
    let len: u64 = match head.strip_prefix('$') {
        Some(n) if !n.starts_with("EOF:") => n
            .parse()
            .map_err(|_| format!("a snapshot length that is not a number: {head}"))?,
        _ => return Err(format!("expected the snapshot's length, got {head:?}")),
    };
    let dir = &shared.config.dir;
    let tmp = sync_dir(dir);
    clean_leftovers(dir);
    let started = Instant::now();
    let from = format!(
        "the master {}",
        c.socket
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string())
    );
    let mut bulk = Bulk {
        conn: c,
        left: len,
        idle: Instant::now(),
    };
    let read = crate::restore(&crate::io::Os, &mut bulk, &tmp, &from).map_err(|e| e.to_string())?;
    if bulk.left != 0 {
        return Err(format!("the snapshot ended {} bytes early", bulk.left));
    }
    let options = shared.config.store_options.clone();
    crate::kill::point("replica-before-swap");
    swap(shared, &tmp, options, epoch, replid, offset)?;
    info!(
        bytes = read,
        secs = started.elapsed().as_secs_f64(),
        offset,
        "full sync done"
    );
    let old = tmp;
    let _ = std::thread::Builder::new()
        .name("toykv-rm-old".into())
        .spawn(move || clean_leftovers_at(&old));
    Ok(())
}

/// Whether a full sync can be received into `dir`: its copy is written beside it
/// ([`sync_dir`]) and swapped in with one rename, so `dir` must not be a mount point (a
/// volume's root in a container) and its parent must take a new directory. Checked at start,
/// so that the problem is named long before a master sends a copy. Creates and removes the
/// sync directory once.
pub(crate) fn check_room(dir: &Path) -> Result<(), String> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    if dev(dir)? != dev(parent)? {
        return Err(format!(
            "{} is a mount point: a full sync writes its copy beside it and swaps the two with \
             one rename, which cannot cross file systems; use a directory inside it",
            dir.display()
        ));
    }
    let d = sync_dir(dir);
    std::fs::create_dir(&d).map_err(|e| {
        format!(
            "a full sync cannot write its copy beside the data directory: create {}: {e}",
            d.display()
        )
    })?;
    std::fs::remove_dir(&d).map_err(|e| format!("remove {}: {e}", d.display()))
}

fn clean_leftovers_at(d: &Path) {
    if let Err(e) = std::fs::remove_dir_all(d) {
        warn!(dir = %d.display(), "cannot remove the data a full sync replaced: {e}");
    }
}

/// Replaces the store with the copy in `tmp`, as of `offset` of the master's `replid`, with
/// the gate held exclusively, unless the role changed (`REPLICAOF`, or the server shuts
/// down) while the copy arrived: then the copy is left for removal. The new position is
/// taken under the gate too, so that a shutdown (which takes the gate) never sees the new
/// data with the old position.
fn swap(
    shared: &Arc<Shared>,
    tmp: &Path,
    options: crate::Options,
    epoch: u64,
    replid: &str,
    offset: u64,
) -> Result<(), String> {
    let dir = &shared.config.dir;
    let _gate = shared.gate.blocking_write();
    if shared.repl.epoch() != epoch {
        clean_leftovers(dir);
        return Err("the role changed during the full sync; its copy is dropped".into());
    }
    let old = shared.store();
    if let Err(e) = old.halt() {
        warn!("syncing the store a full sync replaces: {e}");
    }
    crate::io::exchange(dir, tmp)
        .map_err(|e| format!("exchange {} and {}: {e}", dir.display(), tmp.display()))?;
    match Store::open_with(dir, options.clone()) {
        Ok(new) => {
            let new = Arc::new(new);
            new.set_feed(shared.repl.clone());
            shared.set_store(new);
            shared.repl.synced(epoch, replid, offset);
            Ok(())
        }
        Err(e) => {
            // Put the old data back and serve it again.
            let back = crate::io::exchange(dir, tmp);
            let reopened = Store::open_with(dir, options).map(|s| {
                let s = Arc::new(s);
                s.set_feed(shared.repl.clone());
                shared.set_store(s);
            });
            if back.is_err() || reopened.is_err() {
                shared.repl.lost();
            }
            Err(format!(
                "the synced copy does not open in place ({e}); old data back: {:?}, reopened: {:?}",
                back.err(),
                reopened.err()
            ))
        }
    }
}

/// Applies the stream until the link breaks or the role changes.
fn stream(shared: &Arc<Shared>, c: &mut Conn, epoch: u64) -> Result<(), String> {
    let limits = Limits {
        max_request: 2 << 20,
        ..Limits::default()
    };
    let mut batch: Option<Batch> = None;
    // The stream's bytes from the `MULTI` of the batch being received: counted (in the
    // offset, the backlog, the ACKs) only once its `EXEC` applied it, as Redis does, so that
    // the offset never falls inside a transaction the store does not hold.
    let mut open: Vec<u8> = Vec::new();
    let mut last_ack: Option<Instant> = None;
    let mut heard = Instant::now();
    loop {
        if shared.repl.epoch() != epoch {
            return Ok(());
        }
        let mut getack = false;
        if c.buf.len() > c.at {
            // What is applied and what this server's offset counts change together, under
            // the gate: a shutdown, which takes it exclusively, sees the store exactly at the
            // offset (see `position`).
            let _gate = shared.gate.blocking_read();
            if shared.repl.epoch() != epoch {
                return Ok(());
            }
            let store = shared.store();
            let mut used = c.at;
            // Where the last command after which no batch was open ends: the store holds
            // everything before it.
            let mut whole = c.at;
            let mut commit = Commit::default();
            loop {
                match parse_command(&c.buf[used..], &limits) {
                    Ok(Some((argv, n))) => {
                        // A role change (REPLICAOF) stops this link before its next command.
                        if shared.repl.epoch() != epoch {
                            return Ok(());
                        }
                        used += n;
                        getack |= apply(shared, &store, &argv, &mut batch, &mut commit)?;
                        if batch.is_none() {
                            whole = used;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(format!("protocol error in the stream: {e}")),
                }
            }
            if used > c.at {
                store
                    .wait(commit)
                    .map_err(|e| format!("the store failed: {e}"))?;
                if whole > c.at {
                    open.extend_from_slice(&c.buf[c.at..whole]);
                    shared.repl.applied(epoch, &open);
                    open.clear();
                }
                open.extend_from_slice(&c.buf[whole..used]);
                c.at = used;
            }
        }
        if getack || last_ack.is_none_or(|t| t.elapsed() >= ACK_EVERY) {
            let (_, offset) = shared.repl.position();
            let mut out = Vec::new();
            crate::resp::encode_command(
                &[&b"REPLCONF"[..], b"ACK", offset.to_string().as_bytes()],
                &mut out,
            );
            c.socket
                .write_all(&out)
                .map_err(|e| format!("write: {e}"))?;
            last_ack = Some(Instant::now());
        }
        if c.fill()? {
            heard = Instant::now();
        } else if heard.elapsed() > LINK_TIMEOUT {
            return Err(format!("the master sent nothing for {LINK_TIMEOUT:?}"));
        }
    }
}

/// Applies one command of the stream; whether it asks for an acknowledgement.
fn apply(
    shared: &Shared,
    store: &Store,
    argv: &[Vec<u8>],
    batch: &mut Option<Batch>,
    commit: &mut Commit,
) -> Result<bool, String> {
    let Some(name) = argv.first() else {
        return Ok(false);
    };
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    let key = |raw: &[u8]| {
        shared
            .config
            .key_mode
            .key(raw)
            .map_err(|e| format!("a key of the stream: {e}"))
    };
    let failed = |e: crate::Error| format!("applying {name}: {e}");
    match (name.as_str(), &argv[1..]) {
        ("set", [k, v, ..]) => {
            let k = key(k)?;
            match batch {
                Some(b) => b.put(k, v).map_err(failed)?,
                None => *commit = (*commit).max(store.put_deferred(k, v).map_err(failed)?),
            }
        }
        ("del", keys) => {
            for k in keys {
                let k = key(k)?;
                match batch {
                    Some(b) => b.delete(k).map_err(failed)?,
                    None => *commit = (*commit).max(store.delete_deferred(k).map_err(failed)?.1),
                }
            }
        }
        ("multi", []) => *batch = Some(Batch::new()),
        ("exec", []) => {
            if let Some(b) = batch.take() {
                *commit = (*commit).max(store.apply(&b).map_err(failed)?.commit);
            }
        }
        ("replconf", [sub, ..]) if sub.eq_ignore_ascii_case(b"getack") => return Ok(true),
        ("ping" | "select" | "replconf", _) => {}
        _ => warn!(command = %name, "the replication stream holds a command toykv does not apply"),
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_with_a_writable_parent_has_room_for_a_full_sync() {
        let d = crate::testing::tempdir();
        let dir = d.path().join("db");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(check_room(&dir), Ok(()));
        assert!(!sync_dir(&dir).exists(), "the probe is removed");
    }

    #[test]
    fn a_mount_point_has_no_room_for_a_full_sync() {
        // /proc is a mount point on every Linux system: the check refuses it before it
        // creates anything.
        let why = check_room(Path::new("/proc")).unwrap_err();
        assert!(why.contains("/proc is a mount point"), "{why}");
        assert!(!Path::new("/proc.sync").exists());
    }

    #[test]
    fn a_missing_directory_is_named() {
        let d = crate::testing::tempdir();
        let why = check_room(&d.path().join("absent")).unwrap_err();
        assert!(why.contains("absent"), "{why}");
    }
}
