//! Atomic batches of the library under kill -9: a child writes generation after generation
//! of one batch over the same keys and dies at a random moment or at the `batch-half` kill
//! point (its intent written, half its entries applied). The parent reopens the store: every
//! key holds the same generation, the last acknowledged one or the one in flight.
//!
//! A batch puts the keys of the shard that has fewer of them first, so that at `batch-half`
//! that shard has its whole part and the other only some of its own; and at `always` the
//! journal is large enough to keep several batches as commits (not checkpoints), so that a
//! child killed in its second batch or later leaves the batch before in the journal: open
//! replays it under the cut batch, which must still come back whole in both shards.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::{Batch, Durability};

use crate::child::{env_u64, say};
use crate::parent::{base_seed, create, workdir};
use crate::running::{Plan, Role, Running};
use crate::{ENV_MAX_OPS, open, open_with, options};

/// Keys in each batch: with two 1024-slot shards, each batch puts about half of them into
/// each shard, so a batch now and then moves on to the other bank part way.
const KEYS: u64 = 600;
/// Shards of the store.
const SHARDS: u32 = 2;
/// The child's journal (made by its first open at `always`): a batch of [`KEYS`] is about
/// 90 KiB of entries, so about ten batches commit before a checkpoint empties it.
const JOURNAL_BYTES: u64 = 1 << 20;

/// The keys in the order a batch puts them: those of the shard that holds fewer first (so
/// that at half the batch it holds its whole part), then the others, each in key order.
fn batch_order() -> Vec<u64> {
    let shard = |k: u64| toykv::format::shard_of(k.to_be_bytes(), SHARDS);
    let mut keys: Vec<u64> = (0..KEYS).collect();
    let first = (0..KEYS).filter(|&k| shard(k) == 0).count() as u64;
    let smaller = u32::from(first * 2 > KEYS);
    keys.sort_by_key(|&k| (shard(k) != smaller, k));
    keys
}

/// The environment variable that makes the library child write batches.
pub(crate) const ENV_BATCHES: &str = "TOYKV_CRASH_BATCHES";

/// Generation `g`'s value of `key` (generation 0 is "absent").
fn value(key: u64, g: u64) -> Vec<u8> {
    let mut v = g.to_le_bytes().to_vec();
    v.extend_from_slice(&key.to_le_bytes());
    v.resize(64 + (key % 150) as usize, (g ^ key) as u8);
    v
}

/// The generation a stored value says, checking the rest of its bytes.
fn generation(key: u64, v: &[u8]) -> u64 {
    let g = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
    assert_eq!(v, value(key, g), "key {key}: bytes of no generation");
    g
}

/// The child: batch `n` writes generation `n + 1` over every key and is acknowledged as
/// operation `n`.
pub(crate) fn write(dir: &Path) {
    let max = env_u64(ENV_MAX_OPS);
    let store = open_with(dir, options().journal_bytes(JOURNAL_BYTES))
        .unwrap_or_else(|e| panic!("child: open {}: {e}", dir.display()));
    say(format_args!("O"));
    let keys = batch_order();
    for n in 0..max {
        let mut batch = Batch::new();
        for &key in &keys {
            batch.put(key, value(key, n + 1)).expect("value fits");
        }
        store
            .write(&batch)
            .unwrap_or_else(|e| panic!("child: batch {n}: {e}"));
        say(format_args!("A {n}"));
    }
    say(format_args!("END"));
    crate::child::linger();
}

/// Kills children writing batches at `durability`, `rounds` times; returns how often the
/// kill point fired.
pub(crate) fn all_or_nothing(durability: Durability, rounds: usize) -> usize {
    let base = base_seed();
    let mut rng = StdRng::seed_from_u64(base);
    let tmp = workdir();
    let dir = tmp.path().join("data");
    create(&dir, 1024, SHARDS);
    let mut stored = 0u64;
    let mut fired = 0;
    for round in 0..rounds {
        let what = format!("batches at {durability}, round {round} (base seed {base})");
        let plan = if round % 2 == 0 {
            Plan::Point {
                point: "batch-half",
                nth: rng.random_range(1..=4),
            }
        } else {
            Plan::Acks {
                n: rng.random_range(0..=3),
                delay_us: rng.random_range(0..=5_000),
            }
        };
        let mut child = Running::spawn_with(
            &dir,
            Role::Library,
            0,
            50,
            plan,
            durability,
            what.clone(),
            &[(ENV_BATCHES, "1")],
        );
        fired += usize::from(child.kill_per(plan));
        let acked = child.acks.len() as u64;
        let store = open(&dir).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        let gens: Vec<u64> = (0..KEYS)
            .map(|k| match store.get(k) {
                Ok(Some(v)) => generation(k, &v),
                Ok(None) => 0,
                Err(e) => panic!("{what}: key {k}: {e}"),
            })
            .collect();
        let g = gens[0];
        assert!(
            gens.iter().all(|&x| x == g),
            "{what}: keys hold different generations: {:?}",
            gens.iter()
                .fold(std::collections::BTreeMap::new(), |mut m, &x| {
                    *m.entry(x).or_insert(0) += 1;
                    m
                })
        );
        // Generations restart at 1 in every child: batch n of this child writes n + 1.
        let lowest = if acked == 0 { stored } else { acked };
        assert!(
            g == lowest || g == acked + 1,
            "{what}: generation {g}, with {acked} batches acknowledged (before: {stored})"
        );
        stored = g;
        store
            .close()
            .unwrap_or_else(|e| panic!("{what}: close: {e}"));
    }
    fired
}
