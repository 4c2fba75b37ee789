//! Commands: the table of what the server understands, and dispatch.
//!
//! Each family has its file: `keys` (GET, SET, DEL, EXISTS, MGET, MSET, DBSIZE, SCAN, RANGE),
//! `server` (PING, ECHO, INFO, COMMAND, CONFIG, SELECT, QUIT, SHUTDOWN) and `conn` (HELLO,
//! AUTH, CLIENT). A command runs synchronously against the store; the reply is a [`Frame`].

mod conn;
mod keys;
mod server;

use std::time::Instant;

use super::Shared;
use crate::resp::{Frame, Proto};

/// Per-connection state the commands see and change.
#[derive(Debug)]
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
}

/// What a command handler gets.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) session: &'a mut Session,
    /// The arguments after the command name.
    pub(crate) args: &'a [Vec<u8>],
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
];

/// The index of a command in [`COMMANDS`] by its (case-insensitive) name.
fn find(name: &[u8]) -> Option<usize> {
    COMMANDS
        .iter()
        .position(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether the command reads many values, which may wait on the disk: the whole batch then
/// runs where blocking is allowed. (GET and MGET block only around the reads that need the
/// disk; see `keys`.)
pub(crate) fn reads_values(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"range")
}

/// Runs one command.
pub(crate) fn execute(shared: &Shared, session: &mut Session, argv: &[Vec<u8>]) -> (Frame, Flow) {
    let Some((name, args)) = argv.split_first() else {
        return (Frame::err("ERR empty command"), Flow::Next);
    };
    let Some(i) = find(name) else {
        let shown = String::from_utf8_lossy(name);
        return (
            Frame::err(format!("ERR unknown command '{shown}'")),
            Flow::Next,
        );
    };
    let spec = &COMMANDS[i];
    if !session.authed && !spec.flags.contains(&"noauth") {
        return (Frame::err("NOAUTH Authentication required."), Flow::Next);
    }
    let n = argv.len() as i64;
    if (spec.arity >= 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        return (
            Frame::err(format!(
                "ERR wrong number of arguments for '{}' command",
                spec.name
            )),
            Flow::Next,
        );
    }
    let started = Instant::now();
    let mut ctx = Ctx {
        shared,
        session,
        args,
    };
    let (reply, flow) = (spec.run)(&mut ctx);
    let failed = matches!(reply, Frame::Error(_));
    if let Some(stats) = shared.commands.get(i) {
        stats.record(started.elapsed(), failed);
    }
    super::stats::add(&shared.stats.commands, 1);
    (reply, flow)
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
