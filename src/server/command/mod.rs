//! Commands: the table of what the server understands, and dispatch.
//!
//! Each family has its file: `keys` (GET, SET, DEL, EXISTS, MGET, MSET, DBSIZE, SCAN, RANGE),
//! `server` (PING, ECHO, INFO, COMMAND, CONFIG, SELECT, QUIT, SHUTDOWN, SCRIPT), `conn`
//! (HELLO, AUTH, CLIENT, RESET), `pubsub` (SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE,
//! PUBLISH, PUBSUB) and `tx` (MULTI, EXEC, DISCARD). A command runs synchronously against the
//! store through `Data`; the reply is a [`Frame`] (the subscribe family answers one frame per
//! channel or pattern named).
//!
//! A RESP2 connection subscribed to anything accepts only the subscribe family, PING, QUIT
//! and RESET, as in Redis; in RESP3 every command runs, the messages arriving as push frames.
//!
//! Two ways in: `fast` runs a command on the async runtime's worker threads and refuses
//! (`None`) whatever might wait on the disk or on a lock held long — a GET that misses the
//! cache becomes a `Reply::Read` for the connection to read in a batch, a SET or DEL that
//! would wait is handed over; `execute` runs any command where blocking is allowed. Writes
//! do not wait for the journal: they add their [`Commit`] to [`Effects`], and the connection
//! waits once for a whole pipeline before it replies.

mod conn;
mod keys;
mod pubsub;
mod repl;
mod server;
mod tx;

pub(crate) use keys::{hit_or_miss, storage};

use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use super::clients::Client;
use crate::key::Key;
use crate::resp::{Frame, Proto};
use crate::{Commit, PendingRead, Result, Store};

/// Per-connection state the commands see and change.
#[derive(Debug, Default)]
pub struct Session {
    /// Connection id (for `CLIENT ID` and `HELLO`).
    pub id: u64,
    /// Protocol chosen with `HELLO`.
    pub proto: Proto,
    /// Whether the client may run commands (always, when no password is set).
    pub authed: bool,
    /// Name set with `CLIENT SETNAME` or `HELLO … SETNAME`.
    pub name: Option<Vec<u8>>,
    /// Client library name from `CLIENT SETINFO LIB-NAME` (logged when the connection ends).
    pub lib_name: Option<Vec<u8>>,
    /// Client library version from `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Vec<u8>>,
    /// The transaction being queued after `MULTI`, if any.
    pub multi: Option<Queued>,
    /// The connection's entry in the client registry (none for a session without one).
    pub(crate) client: Option<Arc<Client>>,
    /// The last command run or queued, as `CLIENT LIST` shows it (`get`, `client|list`).
    pub(crate) last_cmd: String,
    /// The port a replica says it listens on (`REPLCONF listening-port`).
    pub replica_port: Option<u16>,
    /// A replica's `PSYNC`: the connection is handed to replication.
    pub psync: Option<Psync>,
    /// A `WAIT` still to answer: the offset, how many replicas, and for how long (`None`:
    /// forever). Set by the command; the connection waits and replaces its reply.
    pub wait: Option<(u64, usize, Option<std::time::Duration>)>,
}

/// What a replica asked with `PSYNC`.
#[derive(Debug, Clone)]
pub struct Psync {
    /// The replication id it had, or `?`.
    pub replid: String,
    /// The first offset it wants, or -1.
    pub offset: i64,
}

impl Session {
    /// Whether the connection is subscribed to any channel or pattern.
    pub(crate) fn subscribed(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.subscribed())
    }

    /// Mirrors what `CLIENT LIST` shows of this session into its registry entry.
    pub(crate) fn observe(&self) {
        if let Some(c) = &self.client {
            c.observe(
                self.name.as_deref(),
                &self.last_cmd,
                self.multi.as_ref().map(|q| q.commands.len()),
                self.proto,
            );
        }
    }
}

/// Commands queued by `MULTI` for `EXEC`.
#[derive(Debug, Default)]
pub struct Queued {
    /// The commands, in order.
    pub commands: Vec<Vec<Vec<u8>>>,
    /// Whether one was refused while queueing: `EXEC` then discards them all.
    pub refused: bool,
}

/// What the writes of a run of commands leave for the connection to wait for.
#[derive(Debug, Default)]
pub struct Effects {
    /// The latest journal commit of the writes (durability `always`).
    pub commit: Commit,
    /// Whether writes are held back for garbage collection (pause before the next).
    pub pressed: bool,
}

/// The keys and values a command works on: the store itself, or (inside `EXEC`) the store
/// seen through the transaction's own writes.
pub(crate) trait Data {
    /// The value of `key`.
    fn get(&mut self, key: Key) -> Result<Option<Vec<u8>>>;
    /// The values of `keys`, in order, each answered on its own.
    fn get_many(&mut self, keys: &[Key]) -> Vec<Result<Option<Vec<u8>>>>;
    /// Whether `key` exists.
    fn exists(&mut self, key: Key) -> bool;
    /// Puts every pair, all or nothing.
    fn put(&mut self, pairs: &[(Key, &[u8])]) -> Result<()>;
    /// Deletes every key, all or nothing; how many existed.
    fn delete(&mut self, keys: &[Key]) -> Result<usize>;
    /// Applies a transaction's writes, all or nothing.
    fn apply(&mut self, batch: &crate::Batch) -> Result<()>;
}

/// The store, directly: writes apply at once and leave their commit in [`Effects`].
pub(crate) struct Direct<'a> {
    pub(crate) store: &'a Store,
    pub(crate) effects: &'a mut Effects,
}

impl Data for Direct<'_> {
    fn get(&mut self, key: Key) -> Result<Option<Vec<u8>>> {
        Ok(self.store.get(key)?.map(|v| v.to_vec()))
    }

    fn get_many(&mut self, keys: &[Key]) -> Vec<Result<Option<Vec<u8>>>> {
        let got = self.store.get_many(keys);
        got.into_iter()
            .map(|r| r.map(|v| v.map(|v| v.to_vec())))
            .collect()
    }

    fn exists(&mut self, key: Key) -> bool {
        self.store.contains(key)
    }

    fn put(&mut self, pairs: &[(Key, &[u8])]) -> Result<()> {
        let commit = match pairs {
            [(k, v)] => self.store.put_deferred(*k, v)?,
            _ => {
                let mut batch = crate::Batch::new();
                for (k, v) in pairs {
                    batch.put(*k, v)?;
                }
                self.store.apply(&batch)?.commit
            }
        };
        self.effects.commit = self.effects.commit.max(commit);
        self.effects.pressed |= self.store.pressed();
        Ok(())
    }

    fn delete(&mut self, keys: &[Key]) -> Result<usize> {
        let (n, commit) = match keys {
            [k] => {
                let (existed, commit) = self.store.delete_deferred(*k)?;
                (usize::from(existed), commit)
            }
            _ => {
                let mut batch = crate::Batch::new();
                for k in keys {
                    batch.delete(*k)?;
                }
                let applied = self.store.apply(&batch)?;
                (applied.deleted, applied.commit)
            }
        };
        self.effects.commit = self.effects.commit.max(commit);
        Ok(n)
    }

    fn apply(&mut self, batch: &crate::Batch) -> Result<()> {
        let applied = self.store.apply(batch)?;
        self.effects.commit = self.effects.commit.max(applied.commit);
        self.effects.pressed |= self.store.pressed();
        Ok(())
    }
}

/// A reply, or the disk read that will make it.
// A GET's value is kept inline: boxing it would cost the allocation `Value` exists to save.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Reply {
    /// The reply.
    Frame(Frame),
    /// A GET's value, sent as a bulk string (without copying it into a [`Frame`]).
    Value(crate::Value),
    /// A GET's value, to read from disk (where blocking is allowed) and send as a bulk
    /// string.
    Read(Box<PendingRead>),
    /// A `WAIT` to answer once enough replicas acknowledged the offset (or the time ran out).
    Wait(u64, usize, Option<std::time::Duration>),
    /// Several frames, sent one after the other (`SUBSCRIBE a b` answers one per channel).
    Frames(Vec<Frame>),
}

impl Reply {
    /// The reply as one frame (an element of `EXEC`'s array).
    pub(crate) fn into_frame(self) -> Frame {
        match self {
            Reply::Frame(f) => f,
            Reply::Value(v) => Frame::Bulk(v.to_vec()),
            Reply::Frames(v) => Frame::Array(v),
            Reply::Read(_) | Reply::Wait(..) => {
                Frame::err("ERR internal error: a reply was not made")
            }
        }
    }
}

/// What the connection does after sending the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Next,
    /// Close the connection (QUIT).
    Close,
    /// Close the connection without a reply and shut the server down (SHUTDOWN).
    Shutdown,
    /// Send no reply: the connection now belongs to a replica (PSYNC).
    Replicate,
}

/// What a command handler gets.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) session: &'a mut Session,
    /// The arguments after the command name.
    pub(crate) args: &'a [Vec<u8>],
    /// Where keys and values come from and go to.
    pub(crate) data: &'a mut dyn Data,
}

type Handler = fn(&mut Ctx<'_>) -> (Frame, Flow);

/// A command: its name, Redis-style arity (n exact, -n at least n, name included), flags and
/// key positions (as `COMMAND` reports them), and its handler.
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) arity: i64,
    pub(crate) flags: &'static [&'static str],
    pub(crate) keys: (i64, i64, i64),
    run: Handler,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    run: Handler,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        run,
    }
}

const RW: &[&str] = &["write"];
const RO: &[&str] = &["readonly", "fast"];
const FAST: &[&str] = &["fast"];
const NOAUTH: &[&str] = &["noauth", "fast"];
const ADMIN: &[&str] = &["admin"];
const PUBSUB: &[&str] = &["pubsub", "noscript", "loading", "stale"];

/// Every command, in the order `INFO commandstats` lists them.
pub(crate) const COMMANDS: &[Spec] = &[
    spec("get", 2, RO, (1, 1, 1), keys::get),
    spec("set", -3, RW, (1, 1, 1), keys::set),
    spec("del", -2, RW, (1, -1, 1), keys::del),
    spec("exists", -2, RO, (1, -1, 1), keys::exists),
    spec("mget", -2, RO, (1, -1, 1), keys::mget),
    spec("mset", -3, RW, (1, -1, 2), keys::mset),
    spec("dbsize", 1, RO, (0, 0, 0), keys::dbsize),
    spec("scan", -2, &["readonly"], (0, 0, 0), keys::scan),
    spec("range", -3, &["readonly"], (1, 2, 1), keys::range),
    spec("ping", -1, FAST, (0, 0, 0), server::ping),
    spec("echo", 2, FAST, (0, 0, 0), server::echo),
    spec("info", -1, &[], (0, 0, 0), server::info),
    spec("command", -1, &[], (0, 0, 0), server::command),
    spec("config", -2, &["admin"], (0, 0, 0), server::config),
    spec("select", 2, FAST, (0, 0, 0), server::select),
    spec("quit", -1, NOAUTH, (0, 0, 0), server::quit),
    spec("shutdown", -1, &["admin"], (0, 0, 0), server::shutdown),
    spec("hello", -1, NOAUTH, (0, 0, 0), conn::hello),
    spec("auth", -2, NOAUTH, (0, 0, 0), conn::auth),
    spec("client", -2, &[], (0, 0, 0), conn::client),
    spec("multi", 1, FAST, (0, 0, 0), tx::multi),
    spec("exec", 1, &[], (0, 0, 0), tx::exec),
    spec("discard", 1, FAST, (0, 0, 0), tx::discard),
    spec("replicaof", 3, ADMIN, (0, 0, 0), repl::replicaof),
    spec("slaveof", 3, ADMIN, (0, 0, 0), repl::replicaof),
    spec("role", 1, FAST, (0, 0, 0), repl::role),
    spec("wait", 3, &[], (0, 0, 0), repl::wait),
    spec("replconf", -1, ADMIN, (0, 0, 0), repl::replconf),
    spec("psync", -3, ADMIN, (0, 0, 0), repl::psync),
    spec("bgsave", -1, ADMIN, (0, 0, 0), repl::bgsave),
    spec("lastsave", 1, FAST, (0, 0, 0), repl::lastsave),
    spec("subscribe", -2, PUBSUB, (0, 0, 0), pubsub::subscribe),
    spec("unsubscribe", -1, PUBSUB, (0, 0, 0), pubsub::unsubscribe),
    spec("psubscribe", -2, PUBSUB, (0, 0, 0), pubsub::psubscribe),
    spec("punsubscribe", -1, PUBSUB, (0, 0, 0), pubsub::punsubscribe),
    spec(
        "publish",
        3,
        &["pubsub", "fast"],
        (0, 0, 0),
        pubsub::publish,
    ),
    spec("pubsub", -2, PUBSUB, (0, 0, 0), pubsub::pubsub),
    spec("script", -2, &["noscript"], (0, 0, 0), server::script),
    spec("reset", 1, NOAUTH, (0, 0, 0), conn::reset),
];

/// Commands with subcommands: `CLIENT LIST` shows them as `client|list`.
const CONTAINERS: &[&str] = &["client", "command", "config", "pubsub", "script"];

/// What a RESP2 connection subscribed to anything may still run (as in Redis).
const WHILE_SUBSCRIBED: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "ping",
    "quit",
    "reset",
];

/// A command's name as Redis shows it: `get`, or `client|list` for a subcommand.
fn full_name(i: usize, argv: &[Vec<u8>], out: &mut String) {
    let name = COMMANDS[i].name;
    out.clear();
    out.push_str(name);
    if CONTAINERS.contains(&name)
        && let Some(sub) = argv.get(1)
    {
        out.push('|');
        let sub = sub.get(..32).unwrap_or(sub);
        out.extend(
            String::from_utf8_lossy(sub)
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| c.to_ascii_lowercase()),
        );
    }
}

/// The index of a command in [`COMMANDS`] by its (case-insensitive) name.
fn find(name: &[u8]) -> Option<usize> {
    COMMANDS
        .iter()
        .position(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Finds the command `argv` names and checks the client may run it with these arguments:
/// its index in [`COMMANDS`], or the error reply.
fn check(
    shared: &Shared,
    session: &Session,
    argv: &[Vec<u8>],
) -> std::result::Result<usize, Frame> {
    let Some(name) = argv.first() else {
        return Err(Frame::err("ERR empty command"));
    };
    let Some(i) = find(name) else {
        let shown = String::from_utf8_lossy(name);
        return Err(Frame::err(format!("ERR unknown command '{shown}'")));
    };
    let spec = &COMMANDS[i];
    if !session.authed && !spec.flags.contains(&"noauth") {
        return Err(Frame::err("NOAUTH Authentication required."));
    }
    let n = argv.len() as i64;
    if (spec.arity >= 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        return Err(Frame::err(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        )));
    }
    if spec.flags.contains(&"write") && shared.repl.is_replica() {
        return Err(Frame::err(
            "READONLY You can't write against a read only replica.",
        ));
    }
    if session.proto == Proto::Resp2
        && session.subscribed()
        && !WHILE_SUBSCRIBED.contains(&spec.name)
    {
        let mut name = String::new();
        full_name(i, argv, &mut name);
        return Err(Frame::err(format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
             RESET are allowed in this context"
        )));
    }
    Ok(i)
}

/// Counts a command that ran.
fn count(shared: &Shared, i: usize, started: Instant, reply: &Frame) {
    if let Some(stats) = shared.commands.get(i) {
        stats.record(started.elapsed(), matches!(reply, Frame::Error(_)));
    }
    super::stats::add(&shared.stats.commands, 1);
}

/// Queues the command while a transaction is open (see `tx`); `None` when it is not queued.
fn queue(session: &mut Session, i: usize, argv: &[Vec<u8>]) -> Option<Frame> {
    let name = COMMANDS[i].name;
    let q = session.multi.as_mut()?;
    if matches!(name, "exec" | "discard" | "multi" | "quit" | "reset") {
        return None;
    }
    if !tx::QUEUEABLE.contains(&name) {
        q.refused = true;
        let allowed: Vec<&str> = tx::QUEUEABLE
            .iter()
            .copied()
            .filter(|n| find(n.as_bytes()).is_some())
            .collect();
        return Some(Frame::err(format!(
            "ERR '{name}' cannot run inside a toykv transaction (only {})",
            allowed.join(", ").to_uppercase()
        )));
    }
    q.commands.push(argv.to_vec());
    Some(Frame::Simple("QUEUED".into()))
}

/// Runs one command where blocking is allowed.
pub(crate) fn execute(
    shared: &Shared,
    session: &mut Session,
    argv: &[Vec<u8>],
    effects: &mut Effects,
) -> (Reply, Flow) {
    let store = shared.store();
    let mut data = Direct {
        store: &store,
        effects,
    };
    run(shared, session, argv, &mut data)
}

/// Runs one command against `data` (the store, or a transaction's view of it).
pub(crate) fn run(
    shared: &Shared,
    session: &mut Session,
    argv: &[Vec<u8>],
    data: &mut dyn Data,
) -> (Reply, Flow) {
    let i = match check(shared, session, argv) {
        Ok(i) => i,
        Err(e) => {
            if let Some(q) = session.multi.as_mut() {
                q.refused = true;
            }
            return (Reply::Frame(e), Flow::Next);
        }
    };
    full_name(i, argv, &mut session.last_cmd);
    if let Some(reply) = queue(session, i, argv) {
        return (Reply::Frame(reply), Flow::Next);
    }
    let started = Instant::now();
    let mut ctx = Ctx {
        shared,
        session,
        args: &argv[1..],
        data,
    };
    let (reply, flow) = (COMMANDS[i].run)(&mut ctx);
    count(shared, i, started, &reply);
    let reply = match reply {
        Frame::Array(frames) if pubsub::SEVERAL.contains(&COMMANDS[i].name) => {
            Reply::Frames(frames)
        }
        f => Reply::Frame(f),
    };
    (reply, flow)
}

/// Runs one command on an async worker thread if it cannot wait on the disk or on a lock
/// held long; `None` (nothing done) when it might: run it with [`execute`] where blocking
/// is allowed.
pub(crate) fn fast(
    shared: &Shared,
    session: &mut Session,
    argv: &[Vec<u8>],
    effects: &mut Effects,
) -> Option<(Reply, Flow)> {
    let i = match check(shared, session, argv) {
        Ok(i) => i,
        Err(e) => {
            if let Some(q) = session.multi.as_mut() {
                q.refused = true;
            }
            return Some((Reply::Frame(e), Flow::Next));
        }
    };
    full_name(i, argv, &mut session.last_cmd);
    if let Some(reply) = queue(session, i, argv) {
        return Some((Reply::Frame(reply), Flow::Next));
    }
    let started = Instant::now();
    let args = &argv[1..];
    let reply = match COMMANDS[i].name {
        "get" => keys::get_fast(shared, args)?,
        "set" => Reply::Frame(keys::set_fast(shared, args, effects)?),
        "del" => Reply::Frame(keys::del_fast(shared, args, effects)?),
        // Reads and writes of many keys, scans, transactions: where blocking is allowed.
        "mget" | "mset" | "scan" | "range" | "exec" | "exists" => return None,
        // CONFIG REWRITE writes and syncs a file.
        "config"
            if args
                .first()
                .is_some_and(|a| a.eq_ignore_ascii_case(b"rewrite")) =>
        {
            return None;
        }
        _ => return Some(execute(shared, session, argv, effects)),
    };
    match &reply {
        Reply::Frame(f) => count(shared, i, started, f),
        Reply::Value(_) => count(shared, i, started, &Frame::Null),
        Reply::Read(_) | Reply::Wait(..) | Reply::Frames(_) => {}
    }
    Some((reply, Flow::Next))
}

/// Whether `argv` is `EXEC`: it runs with every other connection held off.
pub(crate) fn exclusive(argv: &[Vec<u8>]) -> bool {
    argv.first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"exec"))
}

/// Counts a GET whose value was read after [`fast`] handed it over.
pub(crate) fn count_get(shared: &Shared, started: Instant, reply: &Frame) {
    if let Some(i) = find(b"get") {
        count(shared, i, started, reply);
    }
}

/// A syntax error reply.
pub(crate) fn syntax() -> Frame {
    Frame::err("ERR syntax error")
}

/// Parses a decimal integer argument.
pub(crate) fn int(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Lower-cased text of an argument, for keyword matching.
pub(crate) fn word(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}
