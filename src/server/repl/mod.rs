//! Replication over the Redis replication protocol: a master streams its writes to replicas,
//! which apply them and serve reads; Redis Sentinel promotes a replica when the master dies.
//! `docs/REPLICATION.md` says what is guaranteed.
//!
//! | module | what |
//! |---|---|
//! | this one | [`Repl`]: the role, replication ids and offsets, the backlog, the replicas attached; the store's [`Feed`] that turns each write into a command of the stream; `INFO replication` and `ROLE` |
//! | [`backlog`] | the latest bytes of the stream, for partial resyncs |
//! | [`master`] | serving one replica: `PSYNC` answered with a full sync (a [snapshot](crate::Store::snapshot) of the store) or `+CONTINUE`, then the stream; its `REPLCONF ACK`s |
//! | [`replica`] | the link to the master: handshake, full sync into a new directory swapped in whole, the stream applied, ACKs |
//! | [`position`] | the replication position kept across a clean restart (`REPLPOS`), so that replicas continue partially |
//!
//! # The stream
//!
//! Every write the store applies is fed here under the locks of the shards it changes (see
//! [`Feed`]), so the stream holds writes to any one key in the order they were applied and a
//! snapshot (which holds every shard) falls between two commands of it: a put is
//! `SET key value`, a delete `DEL key`, an atomic batch `MULTI`, its commands, `EXEC`. Keys
//! are in the clients' form (the server's key mode), so master and replica must use the same
//! key mode (checked in the handshake). Offsets count bytes of the stream. A master also puts
//! `PING` in the stream when it has been idle for [`PING_EVERY`], and `REPLCONF GETACK *`
//! when a `WAIT` needs an answer. A replica appends what it applied to its own backlog, byte
//! for byte, so that after a failover the others continue from the promoted one.
//!
//! The backlog exists from the first replica on (until then writes cost nothing here), or
//! from the start when the server starts from a position a clean shutdown kept (see
//! [`position`]): others know that replication id, so every write must count.
//!
//! # A clean restart keeps the position
//!
//! A graceful shutdown writes the replication id, offset and second id into the data
//! directory once nothing can change the store any more (see [`position`]); the next start
//! reads and removes the file and starts from that position: as a replica, its first `PSYNC`
//! asks for `replid offset+1`; as a master, its backlog starts (empty) at that offset, so a
//! replica that asks for exactly `offset+1` continues. A master waits (briefly) at shutdown
//! for its replicas to acknowledge the whole stream, so that they are at that offset.
//!
//! # Threads
//!
//! Each attached replica is served by two threads (sending, and reading its ACKs), and a
//! replica's link to its master is one thread: they wait on sockets and on the disk, never on
//! the async runtime's workers. Role changes bump an epoch; threads of an older epoch stop.

mod backlog;
mod master;
mod position;
mod replica;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::format::position::{Position, ReplId};
use crate::keymode::KeyMode;
use crate::resp::{Frame, encode_command};
use crate::{Change, Feed};
use backlog::Backlog;

pub(crate) use master::serve as serve_replica;
pub(crate) use position::{save as save_position, take as take_position};
pub(crate) use replica::{check_room, clean_leftovers, start as start_link};

/// A master puts a `PING` in an idle stream this often, so replicas know the link lives.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(10);
/// A link silent this long (no byte from the other side) is dropped.
pub(crate) const LINK_TIMEOUT: Duration = Duration::from_secs(60);
/// A replica acknowledges its offset this often (and at each `REPLCONF GETACK`).
pub(crate) const ACK_EVERY: Duration = Duration::from_secs(1);

/// The replication state every connection shares.
#[derive(Debug)]
pub(crate) struct Repl {
    state: Mutex<State>,
    /// Whether the backlog exists: until it does, the feed returns at once.
    active: AtomicBool,
    /// Whether the role is replica (read on every write command, without the lock).
    replica: AtomicBool,
    /// The role's epoch, as `State::epoch` (read by a link before each command it applies,
    /// so that a link of an older role stops at once).
    epoch: std::sync::atomic::AtomicU64,
    /// Signalled when the stream grows or the replicas change (senders wait on it).
    grew: Condvar,
    /// Signalled when a replica acknowledges an offset (`WAIT` waits on it).
    acked: tokio::sync::Notify,
    key_mode: KeyMode,
    /// This process's run id: 40 hex characters, new at each start.
    pub(crate) run_id: String,
    backlog_size: usize,
}

/// A server's role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Takes writes and streams them.
    Master,
    /// Follows the master at `host:port`.
    Replica { host: String, port: u16 },
}

#[derive(Debug)]
struct State {
    role: Role,
    /// Bumped at each role change: threads of an older epoch stop.
    epoch: u64,
    replid: String,
    /// The replication id this server had before its last promotion, and the first offset
    /// it does not cover (Redis's `master_replid2` and `second_repl_offset`).
    replid2: String,
    second_offset: Option<u64>,
    /// The stream's offset while there is no backlog.
    offset: u64,
    backlog: Option<Backlog>,
    scratch: Vec<u8>,
    replicas: BTreeMap<u64, Attached>,
    link: Link,
    counts: Counts,
    /// The offset up to which a `REPLCONF GETACK` is in the stream.
    getack: u64,
    /// When the stream last grew.
    grown: Instant,
    /// Set when a full sync's swap failed half-way: the store may no longer be what the
    /// offset says, so no position is kept at shutdown.
    lost: bool,
}

/// A replica attached to this master.
#[derive(Clone, Debug)]
pub(crate) struct Attached {
    ip: String,
    port: u16,
    state: &'static str,
    /// The offset of the next byte to send it.
    sent: u64,
    /// The offset it acknowledged, and when.
    ack: u64,
    acked: Instant,
    /// Set to stop its threads (a role change, `CLIENT KILL`, a replica too far behind).
    dropped: bool,
}

/// A replica's link to its master.
#[derive(Debug)]
struct Link {
    up: bool,
    /// When the link went up or down.
    since: Instant,
    syncing: bool,
    /// When the master last sent anything.
    last_io: Instant,
}

impl Link {
    /// A link that came up now.
    fn up() -> Link {
        Link {
            up: true,
            since: Instant::now(),
            syncing: false,
            last_io: Instant::now(),
        }
    }
}

/// Counters of `INFO stats`.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    sync_full: u64,
    sync_partial_ok: u64,
    sync_partial_err: u64,
}

/// What a master answers a `PSYNC`.
pub(crate) enum Psync {
    /// `+CONTINUE`: the stream from this offset.
    Continue { replid: String, from: u64 },
    /// `+FULLRESYNC`: a snapshot first.
    Full,
}

/// Whether a socket read failed only because its timeout passed (or a signal came): the
/// links read with timeouts so that they can also keep time.
pub(crate) fn waited(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

/// A new random id of 40 hex characters.
pub(crate) fn new_id() -> String {
    let mut s = String::with_capacity(40);
    let mut seed = std::collections::hash_map::RandomState::new();
    for i in 0..5u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = seed.build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        let _ = write!(s, "{:08x}", h.finish() as u32);
        seed = std::collections::hash_map::RandomState::new();
    }
    s
}

impl Repl {
    /// The state of a server starting (as a master; see [`follow`](Self::follow)) with a new
    /// replication id, or from `kept`, the position a clean shutdown saved: then the backlog
    /// exists from the start, empty at that offset.
    pub(crate) fn new(key_mode: KeyMode, backlog_size: usize, kept: Option<&Position>) -> Repl {
        let now = Instant::now();
        let (replid, replid2, second_offset, offset) = match kept {
            Some(p) => (
                p.replid.to_string(),
                p.replid2.to_string(),
                p.second_offset,
                p.offset,
            ),
            None => (new_id(), "0".repeat(40), None, 0),
        };
        Repl {
            state: Mutex::new(State {
                role: Role::Master,
                epoch: 0,
                replid,
                replid2,
                second_offset,
                offset,
                backlog: kept.map(|_| Backlog::new(offset, backlog_size)),
                scratch: Vec::new(),
                replicas: BTreeMap::new(),
                link: Link {
                    up: false,
                    since: now,
                    syncing: false,
                    last_io: now,
                },
                counts: Counts::default(),
                getack: offset,
                grown: now,
                lost: false,
            }),
            active: AtomicBool::new(kept.is_some()),
            replica: AtomicBool::new(false),
            epoch: std::sync::atomic::AtomicU64::new(0),
            grew: Condvar::new(),
            acked: tokio::sync::Notify::new(),
            key_mode,
            run_id: new_id(),
            backlog_size,
        }
    }

    /// The role now.
    pub(crate) fn role(&self) -> Role {
        self.state.lock().role.clone()
    }

    /// Whether this server is a replica (it refuses clients' writes).
    pub(crate) fn is_replica(&self) -> bool {
        self.replica.load(Ordering::Relaxed)
    }

    /// The role's epoch.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Becomes a replica of `host:port` (`REPLICAOF host port`); returns the new epoch, for
    /// the link thread the caller starts, or `None` when already following that master.
    pub(crate) fn follow(&self, host: String, port: u16) -> Option<u64> {
        let mut s = self.state.lock();
        let role = Role::Replica { host, port };
        if s.role == role {
            return None;
        }
        s.role = role;
        s.epoch += 1;
        self.epoch.store(s.epoch, Ordering::SeqCst);
        self.replica.store(true, Ordering::Relaxed);
        // Replicas of this server sync again from the new master's data.
        for r in s.replicas.values_mut() {
            r.dropped = true;
        }
        s.link = Link {
            up: false,
            ..Link::up()
        };
        let epoch = s.epoch;
        drop(s);
        self.grew.notify_all();
        Some(epoch)
    }

    /// Becomes a master (`REPLICAOF NO ONE`): the replication id changes, and the old one is
    /// kept as the second, so replicas of the old master continue from this one partially.
    pub(crate) fn promote(&self) {
        let mut s = self.state.lock();
        if s.role == Role::Master {
            return;
        }
        s.role = Role::Master;
        s.epoch += 1;
        self.epoch.store(s.epoch, Ordering::SeqCst);
        self.replica.store(false, Ordering::Relaxed);
        let offset = s.offset();
        s.replid2 = std::mem::replace(&mut s.replid, new_id());
        s.second_offset = Some(offset + 1);
        s.link.up = false;
        s.link.syncing = false;
        if s.backlog.is_some() {
            self.active.store(true, Ordering::Release);
        }
        drop(s);
        self.grew.notify_all();
    }

    /// Stops every replication thread (the server shuts down).
    pub(crate) fn stop(&self) {
        let mut s = self.state.lock();
        s.epoch += 1;
        self.epoch.store(s.epoch, Ordering::SeqCst);
        for r in s.replicas.values_mut() {
            r.dropped = true;
        }
        drop(s);
        self.grew.notify_all();
        self.acked.notify_waiters();
    }

    /// The replication id and offset now.
    pub(crate) fn position(&self) -> (String, u64) {
        let s = self.state.lock();
        (s.replid.clone(), s.offset())
    }

    /// The position to keep across a restart, for a store of `keys` keys: `None` when the
    /// offset means nothing (no backlog: a master that never had a replica does not count
    /// its writes), or a full sync's swap failed half-way. The caller makes sure nothing
    /// changes the store meanwhile (the gate, held exclusively, after [`stop`](Self::stop)).
    pub(crate) fn keep(&self, keys: u64) -> Option<Position> {
        let s = self.state.lock();
        if s.backlog.is_none() || s.lost {
            return None;
        }
        Some(Position {
            replid: ReplId::parse(&s.replid)?,
            offset: s.offset(),
            replid2: ReplId::parse(&s.replid2)?,
            second_offset: s.second_offset,
            keys,
        })
    }

    /// A full sync's swap failed after the store was halted: keep no position.
    fn lost(&self) {
        self.state.lock().lost = true;
    }

    /// The replicas attached to this master (none on a replica).
    pub(crate) fn attached(&self) -> usize {
        let s = self.state.lock();
        if s.role != Role::Master {
            return 0;
        }
        s.replicas.values().filter(|r| !r.dropped).count()
    }

    /// Makes the backlog exist (a replica attaches): from now on every write is streamed.
    fn activate(&self) {
        let mut s = self.state.lock();
        if s.backlog.is_none() {
            let offset = s.offset;
            s.backlog = Some(Backlog::new(offset, self.backlog_size));
        }
        self.active.store(true, Ordering::Release);
    }

    /// The offset a `WAIT` issued now waits for, after asking the replicas to acknowledge
    /// (a `REPLCONF GETACK *` in the stream, unless one already follows that offset).
    pub(crate) fn wait_target(&self) -> u64 {
        let mut s = self.state.lock();
        let target = s.offset();
        let behind = s.replicas.values().any(|r| r.ack < target);
        if s.backlog.is_some() && behind && s.getack < target {
            s.push(&[b"REPLCONF", b"GETACK", b"*"]);
            s.getack = s.offset();
            drop(s);
            self.grew.notify_all();
        }
        target
    }

    /// How many replicas acknowledged `offset`.
    pub(crate) fn acked(&self, offset: u64) -> usize {
        let s = self.state.lock();
        s.replicas
            .values()
            .filter(|r| !r.dropped && r.ack >= offset)
            .count()
    }

    /// Waits (async) until `n` replicas acknowledged `offset` or `timeout` passed (`None`:
    /// forever); how many did.
    pub(crate) async fn wait(&self, offset: u64, n: usize, timeout: Option<Duration>) -> usize {
        let end = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let notified = self.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.acked(offset);
            if got >= n {
                return got;
            }
            match end {
                Some(end) => {
                    if tokio::time::timeout_at(end, notified).await.is_err() {
                        return self.acked(offset);
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Drops the replicas at `addr` (`ip:port`, the port they listen on), or all of them
    /// (`CLIENT KILL TYPE replica`); how many. They reconnect and continue.
    pub(crate) fn drop_replicas(&self, addr: Option<&str>) -> usize {
        let mut s = self.state.lock();
        let mut n = 0;
        for r in s.replicas.values_mut() {
            if !r.dropped && addr.is_none_or(|a| a == format!("{}:{}", r.ip, r.port)) {
                r.dropped = true;
                n += 1;
            }
        }
        drop(s);
        self.grew.notify_all();
        n
    }

    /// The link of `epoch` went down.
    fn link_down(&self, epoch: u64) {
        let mut s = self.state.lock();
        if s.epoch == epoch && (s.link.up || s.link.syncing) {
            s.link.up = false;
            s.link.syncing = false;
            s.link.since = Instant::now();
        }
    }

    /// A full sync of `epoch` began or ended.
    fn syncing(&self, epoch: u64, on: bool) {
        let mut s = self.state.lock();
        if s.epoch == epoch {
            s.link.syncing = on;
        }
    }

    /// The link of `epoch` is up after a full sync to `offset` of the master's `replid`.
    fn synced(&self, epoch: u64, replid: &str, offset: u64) {
        let mut s = self.state.lock();
        if s.epoch != epoch {
            return;
        }
        s.replid = replid.to_string();
        s.replid2 = "0".repeat(40);
        s.second_offset = None;
        s.offset = offset;
        s.backlog = Some(Backlog::new(offset, self.backlog_size));
        self.active.store(true, Ordering::Release);
        s.link = Link::up();
    }

    /// The link of `epoch` is up after `+CONTINUE` (with the master's id, if it changed).
    fn continued(&self, replid: Option<&str>, epoch: u64) {
        let mut s = self.state.lock();
        if s.epoch != epoch {
            return;
        }
        if let Some(id) = replid.filter(|id| *id != s.replid) {
            let offset = s.offset();
            s.replid2 = std::mem::replace(&mut s.replid, id.to_string());
            s.second_offset = Some(offset + 1);
        }
        if s.backlog.is_none() {
            let offset = s.offset;
            s.backlog = Some(Backlog::new(offset, self.backlog_size));
        }
        self.active.store(true, Ordering::Release);
        s.link = Link::up();
    }

    /// The link of `epoch` applied `bytes` of the stream: they join this server's backlog.
    fn applied(&self, epoch: u64, bytes: &[u8]) {
        let mut s = self.state.lock();
        if s.epoch != epoch {
            return;
        }
        s.push_raw(bytes);
        s.link.last_io = Instant::now();
    }

    /// `INFO replication`.
    pub(crate) fn info(&self, out: &mut String, priority: u32) {
        let s = self.state.lock();
        let mut line = |k: &str, v: &dyn std::fmt::Display| {
            let _ = write!(out, "{k}:{v}\r\n");
        };
        let offset = s.offset();
        match &s.role {
            Role::Master => line("role", &"master"),
            Role::Replica { host, port } => {
                line("role", &"slave");
                line("master_host", host);
                line("master_port", port);
                line("master_link_status", &if s.link.up { "up" } else { "down" });
                line(
                    "master_last_io_seconds_ago",
                    &if s.link.up {
                        s.link.last_io.elapsed().as_secs() as i64
                    } else {
                        -1
                    },
                );
                line("master_sync_in_progress", &u8::from(s.link.syncing));
                line("slave_read_repl_offset", &offset);
                line("slave_repl_offset", &offset);
                if !s.link.up {
                    line(
                        "master_link_down_since_seconds",
                        &s.link.since.elapsed().as_secs(),
                    );
                }
                line("slave_priority", &priority);
                line("slave_read_only", &1);
                line("replica_announced", &1);
            }
        }
        let live: Vec<&Attached> = s.replicas.values().filter(|r| !r.dropped).collect();
        line("connected_slaves", &live.len());
        for (i, r) in live.iter().enumerate() {
            let v = format!(
                "ip={},port={},state={},offset={},lag={}",
                r.ip,
                r.port,
                r.state,
                r.ack,
                r.acked.elapsed().as_secs()
            );
            line(&format!("slave{i}"), &v);
        }
        line("master_failover_state", &"no-failover");
        line("master_replid", &s.replid);
        line("master_replid2", &s.replid2);
        line("master_repl_offset", &offset);
        line(
            "second_repl_offset",
            &s.second_offset.map_or(-1, |o| o as i64),
        );
        let b = s.backlog.as_ref();
        line("repl_backlog_active", &u8::from(b.is_some()));
        line(
            "repl_backlog_size",
            &b.map_or(self.backlog_size, Backlog::size),
        );
        line(
            "repl_backlog_first_byte_offset",
            &b.map_or(0, |b| b.start() + 1),
        );
        line("repl_backlog_histlen", &b.map_or(0, Backlog::len));
    }

    /// The counters of `INFO stats`.
    pub(crate) fn stats(&self, out: &mut String) {
        let c = self.state.lock().counts;
        let _ = write!(
            out,
            "sync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\n",
            c.sync_full, c.sync_partial_ok, c.sync_partial_err
        );
    }

    /// `ROLE`.
    pub(crate) fn role_reply(&self) -> Frame {
        let s = self.state.lock();
        let offset = s.offset() as i64;
        match &s.role {
            Role::Master => Frame::Array(vec![
                Frame::Bulk(b"master".to_vec()),
                Frame::Integer(offset),
                Frame::Array(
                    s.replicas
                        .values()
                        .filter(|r| !r.dropped)
                        .map(|r| {
                            Frame::Array(vec![
                                Frame::Bulk(r.ip.clone().into_bytes()),
                                Frame::Bulk(r.port.to_string().into_bytes()),
                                Frame::Bulk(r.ack.to_string().into_bytes()),
                            ])
                        })
                        .collect(),
                ),
            ]),
            Role::Replica { host, port } => {
                let state = match (s.link.up, s.link.syncing) {
                    (true, _) => "connected",
                    (false, true) => "sync",
                    (false, false) => "connect",
                };
                Frame::Array(vec![
                    Frame::Bulk(b"slave".to_vec()),
                    Frame::Bulk(host.clone().into_bytes()),
                    Frame::Integer(i64::from(*port)),
                    Frame::Bulk(state.as_bytes().to_vec()),
                    Frame::Integer(if s.link.up { offset } else { -1 }),
                ])
            }
        }
    }
}

impl State {
    /// The stream's offset.
    fn offset(&self) -> u64 {
        self.backlog.as_ref().map_or(self.offset, Backlog::end)
    }

    /// Appends a command to the backlog, if there is one.
    fn push(&mut self, args: &[&[u8]]) {
        let State {
            backlog, scratch, ..
        } = self;
        let Some(b) = backlog.as_mut() else {
            return;
        };
        scratch.clear();
        encode_command(args, scratch);
        b.push(scratch);
        self.grown = Instant::now();
        self.trim();
    }

    /// Appends raw stream bytes (a replica's, as received and applied).
    fn push_raw(&mut self, bytes: &[u8]) {
        match self.backlog.as_mut() {
            Some(b) => b.push(bytes),
            None => self.offset += bytes.len() as u64,
        }
        self.trim();
    }

    fn trim(&mut self) {
        let pinned = self
            .replicas
            .values()
            .filter(|r| !r.dropped)
            .map(|r| r.sent)
            .min();
        if let Some(b) = self.backlog.as_mut() {
            b.trim(pinned);
        }
    }
}

impl Feed for Repl {
    fn change(&self, change: Change<'_>) {
        // A replica streams what its master sent, byte for byte (see `replica`).
        if !self.active.load(Ordering::Acquire) || self.replica.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.state.lock();
        if s.role != Role::Master {
            return;
        }
        let show = |k: crate::Key| self.key_mode.show(k);
        match change {
            Change::Put(k, v) => s.push(&[b"SET", &show(k), v]),
            Change::Delete(k) => s.push(&[b"DEL", &show(k)]),
            Change::Batch(batch) => {
                s.push(&[b"MULTI"]);
                for op in batch.entries() {
                    use crate::format::journal::JournalOp;
                    match op {
                        JournalOp::Put(k, v) => s.push(&[b"SET", &show(crate::Key(k)), v]),
                        JournalOp::Delete(k) => s.push(&[b"DEL", &show(crate::Key(k))]),
                        JournalOp::Batch(_) => {}
                    }
                }
                s.push(&[b"EXEC"]);
            }
        }
        drop(s);
        self.grew.notify_all();
    }
}
