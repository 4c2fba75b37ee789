//! Simulated power loss through the I/O layer (the SQLite approach): at a random point the
//! "machine" loses power and every write since the last sync is applied, dropped or garbled
//! sector by sector; unsynced directory changes are kept or lost. After reopening, the store
//! must hold everything up to its last `sync()` and then a prefix of the later operations:
//! never a hole, never a wrong value, never a panic or a failed open.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::io::SimFs;
use toykv::{Options, Store};

type Model = BTreeMap<u64, Vec<u8>>;

fn opts(fs: &SimFs) -> Options {
    Options::new().section_slots(16).vfs(Arc::new(fs.clone()))
}

fn contents(store: &Store) -> Model {
    store
        .iter()
        .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
        .collect()
}

/// Runs random operations, syncing now and then, and returns the states the store may be in
/// after a power loss: the state at the last sync and after each later operation.
fn ops(store: &Store, model: &mut Model, rng: &mut StdRng, n: usize) -> Vec<Model> {
    let mut allowed = vec![model.clone()];
    for i in 0..n {
        let k = rng.random_range(0..40u64);
        if rng.random_bool(0.15) {
            assert_eq!(store.delete(k).unwrap(), model.remove(&k).is_some());
        } else {
            let len = rng.random_range(0..=256usize);
            let v: Vec<u8> = (0..len).map(|j| (k as usize * 31 + i + j) as u8).collect();
            store.put(k, &v).unwrap();
            model.insert(k, v);
        }
        allowed.push(model.clone());
        if rng.random_bool(0.05) {
            store.sync().unwrap();
            allowed = vec![model.clone()];
        }
    }
    allowed
}

fn crash_and_check(seed: u64, rounds: usize) {
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    for round in 0..rounds {
        let store = Store::open_with(dir, opts(&fs))
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen failed: {e}"));
        let got = contents(&store);
        assert_eq!(got, model, "seed {seed} round {round}: state after reopen");
        let n = rng.random_range(1..120);
        let allowed = ops(&store, &mut model, &mut rng, n);
        drop(store);
        fs.power_loss(rng.random());
        let store = Store::open_with(dir, opts(&fs))
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: open after power loss: {e}"));
        let got = contents(&store);
        let Some(i) = allowed.iter().position(|m| *m == got) else {
            panic!(
                "seed {seed} round {round}: state after power loss is none of the {} allowed \
                 (synced first): got {} keys, synced state has {}",
                allowed.len(),
                got.len(),
                allowed[0].len()
            );
        };
        // Every get agrees with the scan.
        for (k, v) in &allowed[i] {
            assert_eq!(store.get(*k).unwrap().map(|x| x.to_vec()).as_ref(), Some(v));
        }
        model = allowed[i].clone();
    }
}

#[test]
fn synced_writes_survive_power_loss() {
    for seed in 0..300 {
        crash_and_check(seed, 3);
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
        let store = Store::open_with(dir, opts(&fs)).unwrap();
        let n = rng.random_range(1..200);
        ops(&store, &mut model, &mut rng, n);
        store.sync().unwrap();
        drop(store);
        fs.power_loss(seed);
        let store = Store::open_with(dir, opts(&fs)).unwrap();
        assert_eq!(contents(&store), model, "seed {seed}");
    }
}
