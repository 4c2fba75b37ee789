//! Real process crashes: a child process writes to a store, or serves it over RESP, and dies
//! by SIGKILL — from the parent at a random moment, or by its own hand at a kill point inside
//! a bank write-out, a sync, a key-section creation, a step of garbage collection or, at
//! durability `always`, a journal commit, a checkpoint or a replay (see `toykv::kill`); the
//! parent then reopens the store and checks it against a model.
//!
//! The guarantee under test (crate docs): a put or delete that returned `Ok` survives kill -9
//! at any moment, and nothing that was never written appears. The single operation that was in
//! flight when the signal landed may or may not have taken effect, but it is all or nothing.
//! Every reopen must succeed.
//!
//! The library child is this test binary re-executed with `--exact child_writer` and the
//! store's directory, the seed and the operation limit in environment variables. It runs the
//! deterministic operation sequence [`ops::ops`]`(seed)` and prints one line per acknowledged
//! operation, so the parent only needs the count: it regenerates the same sequence from the
//! seed. The server child (`--exact child_server`) serves the store; the parent's client runs
//! the sequence and counts the replies.
//!
//! The stores have two shards and 16-slot sections, so a few hundred operations fill banks,
//! write them out in the background, create key sections and give garbage collection work;
//! one test uses the default 16 MiB sections.
//!
//! The kill timing is not reproducible, but the operations are: every failure names the base
//! seed, which `TOYKV_CRASH_BASE_SEED=<seed>` replays. `TOYKV_CRASH_VERBOSE=1` prints every
//! round; `TOYKV_CRASH_KEEP=1` keeps the data directory; `TOYKV_CRASH_ROUNDS=<n>` changes the
//! number of rounds of the two loops (default 400 for the library, 100 for the server); the
//! server's replied-SETs and batch loops run a twentieth of the library's.
//!
//! The server child serves at the durability in `TOYKV_CRASH_DURABILITY` too. Besides the
//! operation sequence, the server is killed while several connections pipeline SETs at
//! durability `always` (every SET answered `+OK` must survive) and while it applies batches
//! of 1000 writes, as one `MSET` or one `MULTI`/`EXEC`, at `none` and `always` (each batch
//! must survive whole or not at all).
//!
//! The crate is split by concern: [`ops`] holds the shared operation sequence and the model,
//! [`child`] the children and their line protocol, [`running`] the parent's handle on a
//! running child and its kill plans, [`parent`] the library kill loop and the check,
//! [`server`] the server loop, and [`atomic`] the server's replied-SETs and batch loops.

#[path = "../common/mod.rs"]
mod common;

mod atomic;
mod batches;
mod child;
mod ops;
mod parent;
mod replica;
mod running;
mod server;

use std::path::Path;

use rand::RngExt;
use rand::rngs::StdRng;
use toykv::Options;
use toykv::format::DEFAULT_SECTION_SLOTS;
use toykv::kill::{JOURNAL_POINTS, POINTS};

use crate::parent::{Variant, run};
use crate::running::Plan;

/// Data directory of the library child; its presence makes `child_writer` run.
const ENV_DIR: &str = "TOYKV_CRASH_CHILD";
/// Data directory of the server child; its presence makes `child_server` run.
const ENV_SERVER: &str = "TOYKV_CRASH_SERVER";
/// Seed of the child's operation sequence.
const ENV_SEED: &str = "TOYKV_CRASH_SEED";
/// Operations after which the child stops and waits to be killed.
const ENV_MAX_OPS: &str = "TOYKV_CRASH_MAX_OPS";
/// The children's durability (`none` when unset, as for the parent's own opens).
const ENV_DURABILITY: &str = "TOYKV_CRASH_DURABILITY";
/// Overrides the base seed of a parent test (printed by every run).
const ENV_BASE_SEED: &str = "TOYKV_CRASH_BASE_SEED";

/// Tag that starts every protocol line a child prints (the test harness prints other lines
/// on the same stdout).
const TAG: &str = "@toykv-crash ";

/// The options children and checks open a store with: the section size and shard count it was
/// created with (unset, open takes both from its `STORE` file); background GC on; durability
/// from [`ENV_DURABILITY`], else `none` (a process crash loses nothing acknowledged at any
/// durability; `always` adds the journal, its replay at open and its checkpoints, which a
/// 64 KiB journal makes frequent).
fn options() -> Options {
    let durability = std::env::var(ENV_DURABILITY)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(toykv::Durability::None);
    Options::new()
        .durability(durability)
        .journal_bytes(64 << 10)
}

/// Opens the store in `dir`, retrying while it is locked, for up to two seconds. The lock is
/// an `flock` on `LOCK`: a child another test thread is spawning at the moment a store of
/// this process closes holds a copy of its descriptor (and with it the lock) until its
/// `exec`, a few milliseconds. A store that stays locked is a real failure.
fn open(dir: &Path) -> toykv::Result<toykv::Store> {
    open_with(dir, options())
}

/// [`open`] with `options`.
fn open_with(dir: &Path, options: Options) -> toykv::Result<toykv::Store> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match toykv::Store::open_with(dir, options.clone()) {
            Err(toykv::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

fn rounds(default: usize) -> usize {
    std::env::var("TOYKV_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The library child. NOT A TEST ON ITS OWN: the entry point the crash tests re-execute this
/// binary into; it returns at once when `TOYKV_CRASH_CHILD` is unset, as in a normal run.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    arm_kill_point();
    if std::env::var_os(batches::ENV_BATCHES).is_some() {
        batches::write(Path::new(&dir));
    } else {
        child::write(Path::new(&dir));
    }
}

/// The server child. NOT A TEST ON ITS OWN, like `child_writer`.
#[test]
fn child_server() {
    let Some(dir) = std::env::var_os(ENV_SERVER) else {
        return;
    };
    arm_kill_point();
    server::serve(Path::new(&dir));
}

/// Arms the kill point the parent named in `TOYKV_KILL_AT`, if any: the library never reads
/// the variable itself, a program must ask (see `toykv::kill`).
fn arm_kill_point() {
    if let Err(e) = toykv::kill::arm_from_env() {
        panic!("child: {e}");
    }
}

/// Plans for 16-slot sections: kills after a random number of acknowledgements, at every kill
/// point in turn (its first to third passage), and during start-up and recovery.
fn small_plan(round: usize, rng: &mut StdRng) -> Plan {
    match round % 4 {
        0 => Plan::Acks {
            n: rng.random_range(1..=300),
            delay_us: if rng.random_bool(0.5) {
                0
            } else {
                rng.random_range(0..=3000)
            },
        },
        1 | 2 => Plan::Point {
            point: POINTS[(round / 4 + round % 4) % POINTS.len()],
            nth: rng.random_range(1..=3),
        },
        _ => Plan::Startup {
            delay_us: rng.random_range(0..=20_000),
        },
    }
}

#[test]
fn kill9_library_small_sections() {
    let rounds = rounds(400);
    let t = run(&Variant {
        name: "library, 16 slots, 2 shards",
        slots: 16,
        shards: 2,
        max_ops: 1500,
        plans: small_plan,
        rounds,
        durability: toykv::Durability::None,
    });
    assert_eq!(t.kills, rounds);
    // Every kill point was hit at least once (the loop aims at each in turn).
    if rounds >= 200 {
        for p in POINTS {
            assert!(
                t.fired.get(p).is_some_and(|&n| n > 0),
                "kill point {p} never fired: {t:?}"
            );
        }
    }
}

/// Plans for the default 16 MiB sections: kills before, inside and right after the first
/// bank write-out.
fn default_plan(round: usize, rng: &mut StdRng) -> Plan {
    match round {
        0 => Plan::Acks {
            n: rng.random_range(1_000..=5_000),
            delay_us: rng.random_range(0..=3_000),
        },
        1 => Plan::Point {
            point: "write-out",
            nth: 1,
        },
        2 => Plan::Point {
            point: "write-out-synced",
            nth: 1,
        },
        3 => Plan::Point {
            point: "bank-reset",
            nth: 1,
        },
        _ => Plan::Acks {
            n: rng.random_range(1..=50),
            delay_us: rng.random_range(0..=3_000),
        },
    }
}

#[test]
fn kill9_library_default_sections() {
    let t = run(&Variant {
        name: "library, 65536 slots, 1 shard",
        slots: DEFAULT_SECTION_SLOTS,
        shards: 1,
        max_ops: 100_000,
        plans: default_plan,
        rounds: 5,
        durability: toykv::Durability::None,
    });
    assert_eq!(t.kills, 5);
    assert!(
        t.fired.get("write-out").is_some_and(|&n| n > 0),
        "no kill inside a 16 MiB write-out: {t:?}"
    );
}

/// Plans for `always`: kills after acknowledgements, at the journal's kill points (a commit
/// written but not flushed, flushed but not acknowledged, a checkpoint between the shard
/// syncs and the new header, an open between replay and its syncs), at the engine's, and
/// during start-up (when the journal replays).
fn always_plan(round: usize, rng: &mut StdRng) -> Plan {
    match round % 4 {
        0 => Plan::Acks {
            n: rng.random_range(1..=300),
            delay_us: rng.random_range(0..=3000),
        },
        1 => {
            let point = JOURNAL_POINTS[(round / 4) % JOURNAL_POINTS.len()];
            // A child replays at most once (see `child::write`).
            let nth = if point == "replayed" {
                1
            } else {
                rng.random_range(1..=3)
            };
            Plan::Point { point, nth }
        }
        2 => Plan::Point {
            point: POINTS[(round / 4) % POINTS.len()],
            nth: rng.random_range(1..=3),
        },
        _ => Plan::Startup {
            delay_us: rng.random_range(0..=20_000),
        },
    }
}

#[test]
fn kill9_library_always() {
    let rounds = rounds(400) / 2;
    let t = run(&Variant {
        name: "library, always, 16 slots, 2 shards",
        slots: 16,
        shards: 2,
        max_ops: 1500,
        plans: always_plan,
        rounds,
        durability: toykv::Durability::Always,
    });
    assert_eq!(t.kills, rounds);
    if rounds >= 100 {
        for p in JOURNAL_POINTS {
            assert!(
                t.fired.get(p).is_some_and(|&n| n > 0),
                "kill point {p} never fired: {t:?}"
            );
        }
    }
}

#[test]
fn kill9_server() {
    let rounds = rounds(100);
    let t = server::run(rounds);
    assert_eq!(t.kills, rounds);
    assert!(t.acked_ops > 0, "{t:?}");
}

#[test]
fn kill9_server_always_keeps_every_replied_set() {
    let rounds = (rounds(400) / 20).max(1);
    let t = atomic::replied_sets(rounds);
    assert_eq!(t.kills, rounds);
    assert!(t.acked > 0, "{t:?}");
}

/// Runs the all-or-nothing loop of `batch` at `durability`.
fn batches(batch: atomic::Batch, durability: toykv::Durability) {
    let rounds = (rounds(400) / 20).max(1);
    let t = atomic::all_or_nothing(batch, durability, rounds);
    assert_eq!(t.kills, rounds);
    // A round kills after 0 to 2 acknowledged batches: a few rounds acknowledge some.
    if rounds >= 4 {
        assert!(t.acked > 0, "no batch was ever acknowledged: {t:?}");
    }
}

#[test]
fn kill9_server_mset_of_1000_is_all_or_nothing_none() {
    batches(atomic::Batch::Mset, toykv::Durability::None);
}

#[test]
fn kill9_server_mset_of_1000_is_all_or_nothing_always() {
    batches(atomic::Batch::Mset, toykv::Durability::Always);
}

#[test]
fn kill9_server_multi_exec_of_1000_is_all_or_nothing_none() {
    batches(atomic::Batch::Multi, toykv::Durability::None);
}

#[test]
fn kill9_server_multi_exec_of_1000_is_all_or_nothing_always() {
    batches(atomic::Batch::Multi, toykv::Durability::Always);
}

/// Atomic batches of the library under kill -9, at `none` and at `always`: the keys hold what
/// the acknowledged batches wrote, with the one in flight whole or not at all; the batch kill
/// points fire.
#[test]
fn kill9_library_batches_are_all_or_nothing() {
    let rounds = rounds(400) / 20;
    for durability in [toykv::Durability::None, toykv::Durability::Always] {
        let fired = batches::all_or_nothing(durability, rounds.max(2));
        assert!(
            fired > 0,
            "the batch kill points never fired at {durability}"
        );
    }
}
