//! Atomic batches of the library under kill -9: a child writes batch after batch, each
//! putting its generation over a part of the keys that overlaps the batches before it, and
//! dies at a random moment, at the `batch-half` kill point (its intent written, half its
//! entries applied) or at `batch-applied` (applied whole, its entries pending in the journal,
//! not committed). The parent reopens the store: it must hold exactly what the batches
//! acknowledged wrote, with the batch in flight applied whole or not at all.
//!
//! A batch puts the keys of the shard that has fewer of them first, so that at `batch-half`
//! that shard has its whole part and the other only some of its own; and at `always` the
//! journal is large enough to keep several batches as commits (not checkpoints), so that a
//! child killed in its second batch or later leaves the batches before in the journal: open
//! replays them under the batch in flight, which puts some keys those batches wrote and some
//! that no batch of the epoch did. It must still come back whole (or not at all), in both
//! shards.

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

/// Residues of keys modulo which batches choose theirs.
const PARTS: u64 = 5;

/// Whether batch `n` puts `key`: two fifths of the keys, moving by one fifth each batch, so
/// that batch `n` shares a fifth with batch `n - 1`, and batches 1 to 3 each put a fifth
/// that no batch before them did.
fn puts(n: u64, key: u64) -> bool {
    (key + n) % PARTS < 2
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

/// The child: batch `n` writes generation `n + 1` over the keys [`puts`] gives it and is
/// acknowledged as operation `n`.
pub(crate) fn write(dir: &Path) {
    let max = env_u64(ENV_MAX_OPS);
    let store = open_with(dir, options().journal_bytes(JOURNAL_BYTES))
        .unwrap_or_else(|e| panic!("child: open {}: {e}", dir.display()));
    say(format_args!("O"));
    let keys = batch_order();
    for n in 0..max {
        let mut batch = Batch::new();
        for &key in keys.iter().filter(|&&k| puts(n, k)) {
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

/// The generations of every key after a child's batches `0..n`, over `before`.
fn after(before: &[u64], n: u64) -> Vec<u64> {
    let mut gens = before.to_vec();
    for b in 0..n {
        for (k, g) in (0..KEYS).zip(&mut gens) {
            if puts(b, k) {
                *g = b + 1;
            }
        }
    }
    gens
}

/// Kills children writing batches at `durability`, `rounds` times; returns how often the
/// kill point fired.
pub(crate) fn all_or_nothing(durability: Durability, rounds: usize) -> usize {
    let base = base_seed();
    let mut rng = StdRng::seed_from_u64(base);
    let tmp = workdir();
    let dir = tmp.path().join("data");
    create(&dir, 1024, SHARDS);
    // Each key's generation as the last round left it.
    let mut stored = vec![0u64; KEYS as usize];
    let mut fired = 0;
    for round in 0..rounds {
        let what = format!("batches at {durability}, round {round} (base seed {base})");
        let plan = match round % 3 {
            0 => Plan::Point {
                point: "batch-half",
                nth: rng.random_range(1..=4),
            },
            // From the second batch on: the batches before it are in the journal's epoch.
            1 => Plan::Point {
                point: "batch-applied",
                nth: rng.random_range(2..=4),
            },
            _ => Plan::Acks {
                n: rng.random_range(0..=3),
                delay_us: rng.random_range(0..=5_000),
            },
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
        // Generations restart at 1 in every child: batch n of this child writes n + 1.
        let (without, with) = (after(&stored, acked), after(&stored, acked + 1));
        if gens != without && gens != with {
            let differ = |want: &[u64]| {
                (0..KEYS)
                    .zip(want)
                    .filter(|&(k, &g)| gens[k as usize] != g)
                    .map(|(k, &g)| (k, g, gens[k as usize]))
                    .take(8)
                    .collect::<Vec<_>>()
            };
            panic!(
                "{what}: {acked} batches acknowledged; the keys are neither as they were after \
                 them nor after the one in flight too. (key, wanted, found) without it: {:?}; \
                 with it: {:?}",
                differ(&without),
                differ(&with)
            );
        }
        stored = gens;
        store
            .close()
            .unwrap_or_else(|e| panic!("{what}: close: {e}"));
    }
    fired
}
