//! The child writer (run inside the re-executed test binary) and the line protocol it speaks:
//! one tagged line per acknowledged operation, plus markers before flushes and new key sections.

use std::io::{Read, Write};
use std::path::Path;

use toykv::Store;

use crate::ops::{Op, ops, value};
use crate::{ENV_MAX_OPS, ENV_SEED, ENV_SLOTS, TAG, options};

pub(crate) fn env_u64(name: &str) -> u64 {
    let s = std::env::var(name).unwrap_or_else(|_| panic!("child: {name} is not set"));
    s.parse()
        .unwrap_or_else(|e| panic!("child: {name}={s:?} is not a number: {e}"))
}

/// The body of `child_writer`: opens the store in `dir` and runs the operation sequence named by
/// the environment, acknowledging each operation on stdout.
pub(crate) fn write(dir: &Path) {
    let seed = env_u64(ENV_SEED);
    let slots = u32::try_from(env_u64(ENV_SLOTS)).expect("child: section slots fit in u32");
    let max_ops = env_u64(ENV_MAX_OPS);
    let s = u64::from(slots);

    let store = Store::open_with(dir, options(slots))
        .unwrap_or_else(|e| panic!("child: open {}: {e}", dir.display()));
    let mut out = std::io::stdout().lock();
    let mut say = |line: std::fmt::Arguments<'_>| {
        // A failed write means the parent is gone: stop.
        if writeln!(out, "{TAG}{line}")
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(2);
        }
    };
    // After a marker the child waits for the parent's go-ahead (one byte on stdin), so that a
    // kill aimed at the marked operation lands during it, not thousands of ops later when the
    // parent has caught up with the pipe.
    let mut stdin = std::io::stdin().lock();
    let mut go = |n: u64| {
        let mut b = [0u8; 1];
        if stdin.read_exact(&mut b).is_err() {
            // The parent is gone.
            std::process::exit(2);
        }
        assert_eq!(b[0], b'g', "child: bad go-ahead before op {n}");
    };
    say(format_args!("O"));
    for (n, op) in (0..max_ops).zip(ops(seed)) {
        let st = store.stats();
        // The put that takes the first slot of a section not yet begun flushes the buffer.
        if matches!(op, Op::Put { .. })
            && st.slots_used.is_multiple_of(s)
            && st.slots_used / s > st.value_sections
        {
            say(format_args!("F {n}"));
            go(n);
        }
        // The record after the last one of the last key section creates a key section.
        if op != Op::Sync && st.records == st.key_sections * s {
            say(format_args!("K {n}"));
            go(n);
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
    // Wait to be killed. The parent holds our stdin open; if it dies, stdin ends and so do we.
    let _ = stdin.read_to_end(&mut Vec::new());
}

/// A line of the child's protocol.
#[derive(Debug)]
pub(crate) enum Msg {
    Opened,
    /// Operation `n` returned `Ok`; for deletes, whether the key existed.
    Ack(u64, Option<bool>),
    Marker(char, u64),
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
        ["A", n] => num(n).map_or_else(bad, |n| Ok(Msg::Ack(n, None))),
        ["A", n, e @ ("0" | "1")] => num(n).map_or_else(bad, |n| Ok(Msg::Ack(n, Some(*e == "1")))),
        [k @ ("F" | "K"), n] => {
            num(n).map_or_else(bad, |n| Ok(Msg::Marker(k.as_bytes()[0] as char, n)))
        }
        _ => bad(),
    })
}
