//! Model-based tests: random operation sequences checked against a `BTreeMap`.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::{Options, Store};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("model")
        .tempdir_in(crate::common::base())
        .unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Put(u64, Vec<u8>),
    Get(u64),
    Delete(u64),
    Scan(u64, u64, Option<usize>),
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u64..48;
    prop_oneof![
        8 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..=256)).prop_map(|(k, v)| Op::Put(k, v)),
        3 => key.clone().prop_map(Op::Get),
        2 => key.clone().prop_map(Op::Delete),
        1 => (key.clone(), key, proptest::option::of(0usize..10)).prop_map(|(a, b, n)| Op::Scan(a, b, n)),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn opts() -> Options {
    Options::new().section_slots(16)
}

fn run(dir: &Path, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut store = Store::open_with(dir, opts()).unwrap();
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                store.put(*k, v).unwrap();
                model.insert(*k, v.clone());
            }
            Op::Get(k) => {
                let got = store.get(*k).unwrap().map(|v| v.to_vec());
                prop_assert_eq!(got.as_ref(), model.get(k), "get {}", k);
            }
            Op::Delete(k) => {
                prop_assert_eq!(store.delete(*k).unwrap(), model.remove(k).is_some());
            }
            Op::Scan(a, b, n) => {
                let limit = n.unwrap_or(usize::MAX);
                let got: Vec<(u64, Vec<u8>)> = store
                    .scan(*a..=*b)
                    .take(limit)
                    .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
                    .collect();
                let want: Vec<(u64, Vec<u8>)> = if a <= b {
                    model
                        .range((Bound::Included(*a), Bound::Included(*b)))
                        .take(limit)
                        .map(|(k, v)| (*k, v.clone()))
                        .collect()
                } else {
                    Vec::new()
                };
                prop_assert_eq!(got, want);
            }
            Op::Sync => store.sync().unwrap(),
            Op::Reopen => {
                drop(store);
                store = Store::open_with(dir, opts()).unwrap();
            }
        }
        prop_assert_eq!(store.len(), model.len());
    }
    drop(store);
    let store = Store::open_with(dir, opts()).unwrap();
    let all: BTreeMap<u64, Vec<u8>> = store
        .iter()
        .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
        .collect();
    prop_assert_eq!(all, model);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_btreemap(ops in proptest::collection::vec(op(), 1..300)) {
        let d = tempdir();
        run(d.path(), &ops)?;
    }
}

/// The default 65,536-slot sections: random puts, overwrites and deletes over more than two
/// sections, a reopen in the middle, every key checked; then garbage collection of those
/// sections, every key checked again.
///
/// One shard, and no background collection while the sections are counted: how many value
/// sections exist at a given moment otherwise depends on the core count (the default shard
/// count, so the puts per shard) and on timing (a bank's write-out or a collection finishing
/// before the count or after it).
#[test]
fn default_sections_match_btreemap() {
    let d = tempdir();
    let opts = || Options::new().shards(1).gc(false);
    let mut rng = StdRng::seed_from_u64(7);
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut store = Store::open_with(d.path(), opts()).unwrap();
    for i in 0..150_000u64 {
        let k = rng.random_range(0..60_000u64);
        if rng.random_bool(0.1) {
            assert_eq!(store.delete(k).unwrap(), model.remove(&k).is_some());
        } else {
            let len = rng.random_range(0..=256usize);
            let v: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            store.put(k, &v).unwrap();
            model.insert(k, v);
        }
        if i == 100_000 {
            store.sync().unwrap();
            drop(store);
            store = Store::open_with(d.path(), opts()).unwrap();
        }
    }
    // Closing waits for the write-outs of full banks: the data fills two value sections and
    // goes on into a third (in the write buffer).
    store.close().unwrap();
    let store = Store::open_with(d.path(), opts()).unwrap();
    assert!(store.stats().value_sections >= 2, "{:?}", store.stats());
    for k in 0..60_000u64 {
        let got = store.get(k).unwrap().map(|v| v.to_vec());
        assert_eq!(got.as_ref(), model.get(&k), "key {k}");
    }
    // The first section is mostly overwritten: collection empties it.
    store.gc().unwrap();
    assert!(store.stats().gc_sections >= 1, "{:?}", store.stats());
    for k in 0..60_000u64 {
        let got = store.get(k).unwrap().map(|v| v.to_vec());
        assert_eq!(got.as_ref(), model.get(&k), "key {k} after collection");
    }
    drop(store);
    // Default options (background collection on) from here.
    let store = Store::open(d.path()).unwrap();
    let all: BTreeMap<u64, Vec<u8>> = store
        .iter()
        .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(all, model);
}
