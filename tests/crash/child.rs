//! The children the parent kills, run inside this re-executed test binary, and the line
//! protocol they speak: `O` once the store is open (or `P <port>` once the server listens),
//! then one tagged line per acknowledged operation.

use std::io::{Read, Write};
use std::path::Path;

use crate::ops::{Op, ops, value};
use crate::{ENV_MAX_OPS, ENV_SEED, TAG};

pub(crate) fn env_u64(name: &str) -> u64 {
    let s = std::env::var(name).unwrap_or_else(|_| panic!("child: {name} is not set"));
    s.parse()
        .unwrap_or_else(|e| panic!("child: {name}={s:?} is not a number: {e}"))
}

/// Prints one protocol line; a failed write means the parent is gone: exit.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{TAG}{line}")
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(2);
    }
}

/// Waits to be killed: the parent holds our stdin open; if it dies, stdin ends and so do we.
pub(crate) fn linger() {
    let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
}

/// The library child: opens the store in `dir` (which the parent created with the variant's
/// options; the store keeps its section size and shard count) and runs the operation sequence
/// named by the environment, acknowledging each operation on stdout. A kill point armed in
/// the environment (`TOYKV_KILL_AT`) may end it first.
///
/// Aimed at `replayed`, which only an open that finds commits in the journal reaches (the
/// parent's check replays the journal after every kill), the child drops its store without
/// closing it after a few operations and opens it again: a crash inside the recovery of a
/// crash.
pub(crate) fn write(dir: &Path) {
    let seed = env_u64(ENV_SEED);
    let max_ops = env_u64(ENV_MAX_OPS);
    let reopen_at = std::env::var(toykv::kill::ENV)
        .is_ok_and(|p| p.starts_with("replayed"))
        .then_some(1 + seed % 50);
    let mut store =
        crate::open(dir).unwrap_or_else(|e| panic!("child: open {}: {e}", dir.display()));
    say(format_args!("O"));
    for (n, op) in (0..max_ops).zip(ops(seed)) {
        if reopen_at == Some(n) {
            drop(store);
            store = crate::open(dir).unwrap_or_else(|e| panic!("child: reopen: {e}"));
        }
        match op {
            Op::Put { key, len } => {
                let v = value(seed, n, key, len);
                store
                    .put(key, &v)
                    .unwrap_or_else(|e| panic!("child: op {n} {op:?}: {e}"));
                say(format_args!("A {n}"));
            }
            Op::Delete { key } => {
                let existed = store
                    .delete(key)
                    .unwrap_or_else(|e| panic!("child: op {n} {op:?}: {e}"));
                say(format_args!("A {n} {}", u8::from(existed)));
            }
            Op::Sync => {
                store
                    .sync()
                    .unwrap_or_else(|e| panic!("child: op {n} {op:?}: {e}"));
                say(format_args!("A {n}"));
            }
        }
    }
    say(format_args!("END"));
    linger();
}

/// A line of the protocol.
#[derive(Debug)]
pub(crate) enum Msg {
    Opened,
    /// The server child listens on this port.
    Port(u16),
    /// Operation `n` returned `Ok`; for deletes, whether the key existed.
    Ack(u64, Option<bool>),
    End,
}

pub(crate) fn parse(line: &str) -> Option<Result<Msg, String>> {
    let at = line.find(TAG)?;
    let rest = &line[at + TAG.len()..];
    let bad = || Err(format!("bad protocol line {line:?}"));
    let words: Vec<&str> = rest.split_whitespace().collect();
    let num = |w: &str| w.parse::<u64>().ok();
    Some(match words.as_slice() {
        ["O"] => Ok(Msg::Opened),
        ["END"] => Ok(Msg::End),
        ["P", p] => p.parse().map_or_else(|_| bad(), |p| Ok(Msg::Port(p))),
        ["A", n] => num(n).map_or_else(bad, |n| Ok(Msg::Ack(n, None))),
        ["A", n, e @ ("0" | "1")] => num(n).map_or_else(bad, |n| Ok(Msg::Ack(n, Some(*e == "1")))),
        _ => bad(),
    })
}
