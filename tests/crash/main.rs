//! Real process crashes: a child process writes to a store and is killed with SIGKILL at a
//! random moment (often while it flushes the write buffer to a value section or creates a key
//! section); the parent then reopens the store and checks it against a model.
//!
//! The guarantee under test (crate docs): a put or delete that returned `Ok` survives kill -9
//! at any moment, and nothing that was never written appears. The single operation that was in
//! flight when the signal landed may or may not have taken effect, but it is all or nothing.
//!
//! The child is this test binary re-executed with `--exact child_writer` and the store's
//! directory, the seed and the section size in environment variables. It runs the
//! deterministic operation sequence [`ops::ops`]`(seed)` and prints one line per acknowledged
//! operation, so the parent only needs the count: it regenerates the same sequence from the
//! seed. Before an operation that will flush the write buffer (or create a key section) the
//! child prints a marker line and waits for a one-byte go-ahead on stdin, so the parent can
//! aim its kill at the flush (at once, or after a delay of up to a few milliseconds) instead
//! of landing wherever the child has got to while the parent read the pipe.
//!
//! After each kill the parent reopens the store and checks, besides the contents (scan and
//! point reads), that the log holds exactly the acknowledged records plus at most the
//! in-flight one, that the slots used match, and that a torn tail, if recovery reports one,
//! is the in-flight record.
//!
//! The kill timing is not reproducible, but the operations are: every failure names the base
//! seed, which `TOYKV_CRASH_BASE_SEED=<seed>` replays. `TOYKV_CRASH_VERBOSE=1` prints every
//! round; `TOYKV_CRASH_KEEP=1` keeps the data directory.
//!
//! The crate is split by concern: [`ops`] holds the shared operation sequence and the model,
//! [`child`] the child writer and its line protocol, [`running`] the parent's handle on a
//! running child and its kill plans, and [`parent`] the kill-reopen-check loop. This file holds
//! the entry points: `child_writer` stays at the crate root because the parent re-executes
//! this binary with `--exact child_writer`.

#[path = "../common/mod.rs"]
mod common;

mod child;
mod ops;
mod parent;
mod running;

use std::path::Path;

use rand::RngExt;
use rand::rngs::StdRng;
use toykv::Options;
use toykv::format::DEFAULT_SECTION_SLOTS;

use crate::parent::{Variant, run};
use crate::running::Plan;

/// Data directory of the child; its presence makes `child_writer` run.
const ENV_DIR: &str = "TOYKV_CRASH_CHILD";
/// Seed of the child's operation sequence.
const ENV_SEED: &str = "TOYKV_CRASH_SEED";
/// `section_slots` of the store.
const ENV_SLOTS: &str = "TOYKV_CRASH_SLOTS";
/// Operations after which the child stops and waits to be killed.
const ENV_MAX_OPS: &str = "TOYKV_CRASH_MAX_OPS";
/// Overrides the base seed of a parent test (printed by every run).
const ENV_BASE_SEED: &str = "TOYKV_CRASH_BASE_SEED";

/// Tag that starts every protocol line the child prints (the test harness prints other lines
/// on the same stdout).
const TAG: &str = "@toykv-crash ";

fn options(slots: u32) -> Options {
    Options::new().section_slots(slots)
}

/// The child process. NOT A TEST ON ITS OWN: it is the entry point the crash tests re-execute
/// this binary into, and it returns at once (doing nothing) when `TOYKV_CRASH_CHILD` is unset,
/// as in a normal `cargo test` run.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    child::write(Path::new(&dir));
}

/// Plans for 16-slot sections: a flush every 16 puts and a new key section every 16 records.
fn small_plan(round: usize, rng: &mut StdRng) -> Plan {
    let delay = |rng: &mut StdRng| {
        if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(0..=3000)
        }
    };
    match round % 8 {
        0 | 4 => Plan::Acks {
            n: rng.random_range(1..=300),
            delay_us: delay(rng),
        },
        1 | 5 => Plan::Marker {
            kind: 'F',
            nth: rng.random_range(1..=3),
            then_acks: 0,
            delay_us: delay(rng),
        },
        2 => Plan::Marker {
            kind: 'F',
            nth: rng.random_range(1..=3),
            then_acks: rng.random_range(0..=2),
            delay_us: 0,
        },
        3 => Plan::Marker {
            kind: 'K',
            nth: rng.random_range(1..=3),
            then_acks: 0,
            delay_us: delay(rng),
        },
        6 => Plan::Startup {
            delay_us: rng.random_range(0..=20_000),
        },
        _ => Plan::Acks {
            n: rng.random_range(1..=5),
            delay_us: 0,
        },
    }
}

#[test]
fn kill9_small_sections() {
    let t = run(&Variant {
        name: "16 slots",
        slots: 16,
        max_ops: 2000,
        plans: small_plan,
        rounds: 48,
    });
    assert_eq!(t.kills, 48);
}

/// Plans for the default 16 MiB sections: a few kills before, at, inside and right after a
/// buffer flush.
fn default_plan(round: usize, rng: &mut StdRng) -> Plan {
    let flush = |then_acks, delay_us| Plan::Marker {
        kind: 'F',
        nth: 1,
        then_acks,
        delay_us,
    };
    match round {
        0 => Plan::Acks {
            n: rng.random_range(1_000..=5_000),
            delay_us: rng.random_range(0..=3_000),
        },
        1 => flush(0, 0),
        2 => flush(0, rng.random_range(0..=3_000)),
        3 => flush(0, rng.random_range(0..=30_000)),
        4 => flush(1, 0),
        _ => Plan::Acks {
            n: rng.random_range(1..=50),
            delay_us: rng.random_range(0..=3_000),
        },
    }
}

#[test]
fn kill9_default_sections() {
    let t = run(&Variant {
        name: "65536 slots",
        slots: DEFAULT_SECTION_SLOTS,
        max_ops: 200_000,
        plans: default_plan,
        rounds: 6,
    });
    assert_eq!(t.kills, 6);
    assert!(
        t.value_sections >= 1,
        "no 16 MiB flush completed during the test: {t:?}"
    );
}
