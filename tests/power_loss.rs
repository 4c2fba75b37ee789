//! Simulated power loss through the I/O layer (the SQLite approach): at a random point the
//! "machine" loses power and every write since the last sync is applied, dropped or garbled
//! sector by sector; unsynced directory changes are kept or lost. The store is then reopened
//! and checked against what its durability mode promises:
//!
//! - `none`: everything up to the last `sync()` survives, then for each shard a prefix of its
//!   later operations (shards sync independently): never a hole within a shard, never a
//!   wrong value;
//! - `periodic`: as `none`, and once an interval has passed without writes, everything;
//! - `always`: every acknowledged put and delete, whatever the seed.
//!
//! Never a panic, never a failed open. The harness is itself tested: on a disk that lies about
//! its syncs ([`SimFs::lie_about_syncs`], so the store acknowledges before anything is
//! durable) the `always` check must catch lost writes.
//!
//! `TOYKV_POWER_SEEDS=N` changes the number of seeds of the `always` test (default 2000).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::format::shard_of;
use toykv::io::SimFs;
use toykv::{Durability, Options, Store};

type Model = BTreeMap<u64, Vec<u8>>;

const KEYS: u64 = 40;

fn opts(fs: &SimFs, shards: u32, durability: Durability) -> Options {
    Options::new()
        .section_slots(16)
        .shards(shards)
        .durability(durability)
        .journal_bytes(64 << 10)
        .vfs(Arc::new(fs.clone()))
}

fn contents(store: &Store) -> Result<Model, String> {
    store
        .iter()
        .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())))
        .collect::<Result<Model, _>>()
        .map_err(|e| format!("scan failed: {e}"))
}

/// The part of `m` that lives in `shard`.
fn part(m: &Model, shard: u32, shards: u32) -> Model {
    m.iter()
        .filter(|(k, _)| shard_of(k.to_be_bytes(), shards) == shard)
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

/// Runs `n` random operations, syncing now and then (`sync_p`), and returns the states the
/// store may be in after a power loss: the state at the last sync and after each later
/// operation.
fn ops(store: &Store, model: &mut Model, rng: &mut StdRng, n: usize, sync_p: f64) -> Vec<Model> {
    let mut allowed = vec![model.clone()];
    for i in 0..n {
        let k = rng.random_range(0..KEYS);
        if rng.random_bool(0.15) {
            assert_eq!(store.delete(k).unwrap(), model.remove(&k).is_some());
        } else {
            let len = rng.random_range(0..=256usize);
            let v: Vec<u8> = (0..len).map(|j| (k as usize * 31 + i + j) as u8).collect();
            store.put(k, &v).unwrap();
            model.insert(k, v);
        }
        allowed.push(model.clone());
        if rng.random_bool(sync_p) {
            store.sync().unwrap();
            allowed = vec![model.clone()];
        }
    }
    allowed
}

/// Whether `got` is, shard by shard, one of the `allowed` states.
fn per_shard_prefix(got: &Model, allowed: &[Model], shards: u32) -> Result<(), String> {
    for s in 0..shards {
        let have = part(got, s, shards);
        if !allowed.iter().any(|m| part(m, s, shards) == have) {
            return Err(format!(
                "shard {s} holds {} keys, which is none of its {} allowed states (synced \
                 state has {})",
                have.len(),
                allowed.len(),
                part(&allowed[0], s, shards).len()
            ));
        }
    }
    Ok(())
}

/// Reopens after a power loss and checks that gets agree with the scan.
fn reopen(dir: &Path, o: Options) -> Result<(Store, Model), String> {
    let store = Store::open_with(dir, o).map_err(|e| format!("open after power loss: {e}"))?;
    let got = contents(&store)?;
    for k in 0..KEYS {
        let v = store.get(k).map_err(|e| format!("get {k}: {e}"))?;
        if v.as_deref() != got.get(&k).map(|v| &v[..]) {
            return Err(format!("get {k} disagrees with the scan"));
        }
    }
    Ok((store, got))
}

/// Rounds of operations and power losses at `none` durability, with or without background
/// garbage collection.
fn none_mode(seed: u64, shards: u32, gc: bool, rounds: usize) -> Result<(), String> {
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let o = || opts(&fs, shards, Durability::None).gc(gc);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    for round in 0..rounds {
        let store = Store::open_with(dir, o()).map_err(|e| format!("round {round}: {e}"))?;
        let n = rng.random_range(1..120);
        let allowed = ops(&store, &mut model, &mut rng, n, 0.05);
        drop(store);
        fs.power_loss(rng.random());
        let (_, got) = reopen(dir, o()).map_err(|e| format!("round {round}: {e}"))?;
        per_shard_prefix(&got, &allowed, shards).map_err(|e| format!("round {round}: {e}"))?;
        model = got;
    }
    Ok(())
}

/// Operations at `always` durability, each acknowledged only once durable, then a power loss:
/// the store must hold exactly the model.
fn always_mode(fs: &SimFs, seed: u64) -> Result<(), String> {
    let dir = Path::new("/db");
    let mut rng = StdRng::seed_from_u64(seed);
    let shards = rng.random_range(1..=3);
    // No background collection: its syncs would make unsynced puts durable by chance and
    // hide a put acknowledged too early.
    let o = || opts(fs, shards, Durability::Always).gc(false);
    let mut model = Model::new();
    for round in 0..2 {
        let store = Store::open_with(dir, o()).map_err(|e| format!("round {round}: {e}"))?;
        let n = rng.random_range(1..60);
        ops(&store, &mut model, &mut rng, n, 0.0);
        drop(store);
        fs.power_loss(rng.random());
        let (_, got) = reopen(dir, o()).map_err(|e| format!("round {round}: {e}"))?;
        if got != model {
            let lost = model.keys().filter(|k| got.get(k) != model.get(k)).count();
            return Err(format!(
                "round {round}: {lost} of {} acknowledged keys lost or wrong",
                model.len()
            ));
        }
    }
    Ok(())
}

fn seeds(default: u64) -> u64 {
    std::env::var("TOYKV_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn one_shard_keeps_a_prefix_after_its_last_sync() {
    for seed in 0..300 {
        none_mode(seed, 1, false, 3).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn each_shard_keeps_a_prefix_after_its_last_sync() {
    for seed in 0..200 {
        none_mode(seed, 3, true, 3).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// A sync right before the power loss: everything must be there, whatever the seed.
#[test]
fn sync_then_power_loss_keeps_everything() {
    for seed in 0..100u64 {
        let fs = SimFs::new();
        let dir = Path::new("/db");
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = Model::new();
        let o = || opts(&fs, 2, Durability::None);
        let store = Store::open_with(dir, o()).unwrap();
        let n = rng.random_range(1..200);
        ops(&store, &mut model, &mut rng, n, 0.05);
        store.sync().unwrap();
        drop(store);
        fs.power_loss(seed);
        let (_, got) = reopen(dir, o()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(got, model, "seed {seed}");
    }
}

#[test]
fn always_loses_no_acknowledged_write() {
    let n = seeds(2000);
    for seed in 0..n {
        always_mode(&SimFs::new(), seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// The harness catches a store that acknowledges before its writes are durable: on a disk
/// whose syncs do nothing, `always` loses acknowledged writes, and the check says so.
#[test]
fn the_harness_catches_acknowledgement_before_sync() {
    let mut caught = 0;
    for seed in 0..200u64 {
        let fs = SimFs::new();
        fs.lie_about_syncs(true);
        if always_mode(&fs, seed).is_err() {
            caught += 1;
        }
    }
    assert!(
        caught >= 100,
        "only {caught} of 200 broken runs were caught"
    );
}

/// `periodic`: a sync runs every interval in the background, so after a pause of several
/// intervals everything is durable; before it, the `none` guarantee holds.
#[test]
fn periodic_makes_everything_durable_within_its_interval() {
    let every = Duration::from_millis(5);
    for seed in 0..40u64 {
        let fs = SimFs::new();
        let dir = Path::new("/db");
        let o = || opts(&fs, 2, Durability::Periodic(every));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = Model::new();
        let store = Store::open_with(dir, o()).unwrap();
        let n = rng.random_range(1..100);
        let allowed = ops(&store, &mut model, &mut rng, n, 0.0);
        if seed % 2 == 0 {
            // Power fails at once: a per-shard prefix.
            drop(store);
            fs.power_loss(seed);
            let (_, got) = reopen(dir, o()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            per_shard_prefix(&got, &allowed, 2).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        } else {
            std::thread::sleep(every * 20);
            let syncs = store.stats().syncs;
            assert!(syncs > 0, "seed {seed}: no periodic sync ran");
            drop(store);
            fs.power_loss(seed);
            let (_, got) = reopen(dir, o()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(
                got, model,
                "seed {seed}: writes older than the interval were lost"
            );
        }
    }
}
