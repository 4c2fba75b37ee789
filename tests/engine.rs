//! The engine under load: many threads of mixed operations checked per key, ordered scans
//! merged across shards, and what open does when a shard directory or the `STORE` file is
//! gone.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::format::{STORE_NAME, shard_name, shard_of};
use toykv::{Durability, Error, Options, Store};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().tempdir_in(common::base()).unwrap()
}

/// Small sections, so that runs of a few thousand puts fill banks, write them out in the
/// background and give garbage collection work.
fn small(shards: u32) -> Options {
    Options::new()
        .section_slots(16)
        .shards(shards)
        .durability(Durability::None)
}

/// Step `i` of a key's writer: every fifth step deletes, the others put this value.
fn step_value(key: u64, i: u64) -> Option<Vec<u8>> {
    if i % 5 == 4 {
        return None;
    }
    let len = ((key * 31 + i * 7) % 257) as usize;
    let mut v: Vec<u8> = (0..len)
        .map(|j| (key as usize + i as usize + j) as u8)
        .collect();
    if len >= 8 {
        v[..8].copy_from_slice(&i.to_le_bytes());
    }
    Some(v)
}

/// Which writer steps `got` can be: the steps whose value (or deletion) it equals.
fn matches(key: u64, got: &Option<Vec<u8>>, lo: u64, hi: u64) -> bool {
    (lo..=hi).any(|i| {
        if i == 0 {
            // Step 0 is "never written".
            return got.is_none();
        }
        step_value(key, i) == *got
    })
}

/// Each key has one writer thread that runs steps 1, 2, 3 … (puts, every fifth a delete);
/// reader threads check every get against the writer's progress: a get that starts after
/// step `i` returned sees step `i` or a later one, never an older one and never one not yet
/// begun. Small sections keep the banks turning over and GC running meanwhile.
#[test]
fn many_threads_of_mixed_operations_stay_linearizable_per_key() {
    const KEYS: u64 = 64;
    const WRITERS: u64 = 4;
    const READERS: usize = 4;
    let d = tempdir();
    let store = Arc::new(Store::open_with(d.path(), small(3)).unwrap());
    // Per key: the last step that returned, and the last step begun.
    let done: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let begun: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let (store, done, begun) = (store.clone(), done.clone(), begun.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(w);
            let mut ops = 0u64;
            // At least 300 steps each, however slow the machine: the counts asserted below do
            // not depend on its speed or load.
            while Instant::now() < deadline || ops < 300 {
                let key = w + WRITERS * rng.random_range(0..KEYS / WRITERS);
                let i = begun[key as usize].load(Ordering::SeqCst) + 1;
                begun[key as usize].store(i, Ordering::SeqCst);
                match step_value(key, i) {
                    Some(v) => store.put(key, &v).unwrap(),
                    None => {
                        store.delete(key).unwrap();
                    }
                }
                done[key as usize].store(i, Ordering::SeqCst);
                ops += 1;
            }
            ops
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (store, done, begun, stop) = (store.clone(), done.clone(), begun.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(100 + r as u64);
            let mut checked = 0u64;
            while !stop.load(Ordering::SeqCst) || checked < 300 {
                let key = rng.random_range(0..KEYS);
                let lo = done[key as usize].load(Ordering::SeqCst);
                // Every fourth read is a one-key scan and every fourth a get_many of the key
                // twice: both cache what they read from disk, so they must not cache a value
                // a put replaced meanwhile.
                let mut gots = Vec::new();
                match checked % 4 {
                    3 => gots.push(store.scan(key..=key).next().map(|r| r.unwrap().1.to_vec())),
                    1 => {
                        for r in store.get_many(&[key, key]) {
                            gots.push(r.unwrap().map(|v| v.to_vec()));
                        }
                    }
                    _ => gots.push(store.get(key).unwrap().map(|v| v.to_vec())),
                }
                let hi = begun[key as usize].load(Ordering::SeqCst);
                for got in gots {
                    assert!(
                        matches(key, &got, lo, hi),
                        "key {key}: got {got:?}, which is none of steps {lo}..={hi}"
                    );
                }
                checked += 1;
            }
            checked
        }));
    }
    let writes: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    stop.store(true, Ordering::SeqCst);
    let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        writes > 1000 && reads > 1000,
        "{writes} writes, {reads} reads"
    );
    let st = store.stats();
    assert!(st.flushes > 10, "banks were not written out: {st:?}");

    // Final state: each key at its last step, also after a reopen.
    let want: BTreeMap<u64, Vec<u8>> = (0..KEYS)
        .filter_map(|k| {
            let i = done[k as usize].load(Ordering::SeqCst);
            if i == 0 {
                return None;
            }
            step_value(k, i).map(|v| (k, v))
        })
        .collect();
    let scan = |s: &Store| -> BTreeMap<u64, Vec<u8>> {
        s.iter()
            .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
            .collect()
    };
    assert_eq!(scan(&store), want);
    drop(store);
    let store = Store::open_with(d.path(), small(3)).unwrap();
    assert_eq!(scan(&store), want);
}

/// Keys spread over the shards, yet scans come back in key order, bounds and limits
/// respected, exactly as a `BTreeMap` answers.
#[test]
fn scans_merge_the_shards_in_key_order() {
    let d = tempdir();
    let store = Store::open_with(d.path(), small(4)).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut model = BTreeMap::new();
    for i in 0..600u64 {
        let k = rng.random_range(0..2000u64);
        if rng.random_bool(0.2) {
            store.delete(k).unwrap();
            model.remove(&k);
        } else {
            let v = (i as u32).to_le_bytes().to_vec();
            store.put(k, &v).unwrap();
            model.insert(k, v);
        }
    }
    let per_shard = (0..4)
        .map(|s| {
            model
                .keys()
                .filter(|k| shard_of(k.to_be_bytes(), 4) == s)
                .count()
        })
        .collect::<Vec<_>>();
    assert!(
        per_shard.iter().all(|&n| n > 50),
        "keys per shard {per_shard:?}"
    );
    for _ in 0..200 {
        let a = rng.random_range(0..2100u64);
        let b = rng.random_range(a..2100u64);
        let want: Vec<(u64, Vec<u8>)> = model.range(a..=b).map(|(k, v)| (*k, v.clone())).collect();
        let got: Vec<(u64, Vec<u8>)> = store
            .scan(a..=b)
            .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
            .collect();
        assert_eq!(got, want, "scan {a}..={b}");
        let limit = rng.random_range(0..20usize);
        let keys: Vec<u64> = store
            .keys(a..=b, limit)
            .iter()
            .map(|k| k.as_u64())
            .collect();
        let want: Vec<u64> = model.range(a..=b).map(|(k, _)| *k).take(limit).collect();
        assert_eq!(keys, want, "keys {a}..={b} limit {limit}");
    }
}

fn populated(d: &tempfile::TempDir) {
    let store = Store::open_with(d.path(), small(2)).unwrap();
    for k in 0..100u64 {
        store.put(k, k.to_le_bytes()).unwrap();
    }
    store.close().unwrap();
}

#[test]
fn a_missing_shard_directory_is_refused_not_recreated() {
    let d = tempdir();
    populated(&d);
    let shard = d.path().join(shard_name(1));
    std::fs::remove_dir_all(&shard).unwrap();
    let e = Store::open_with(d.path(), small(2)).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt { file, .. } if *file == shard),
        "{e}"
    );
    assert!(!shard.exists(), "open recreated {}", shard.display());
}

#[test]
fn a_missing_store_file_beside_shards_with_data_is_refused() {
    let d = tempdir();
    populated(&d);
    std::fs::remove_file(d.path().join(STORE_NAME)).unwrap();
    for shards in [1, 2, 4] {
        let e = Store::open_with(d.path(), small(shards)).unwrap_err();
        assert!(
            matches!(&e, Error::Corrupt { file, .. } if file.ends_with(STORE_NAME)),
            "{e}"
        );
    }
    assert!(!d.path().join(STORE_NAME).exists());
}

/// A creation cut short before `STORE` was written left empty shard directories: the next
/// open starts the creation over, with the shard count it asks for.
#[test]
fn an_interrupted_creation_starts_over() {
    let d = tempdir();
    Store::open_with(d.path(), small(3))
        .unwrap()
        .close()
        .unwrap();
    std::fs::remove_file(d.path().join(STORE_NAME)).unwrap();
    let store = Store::open_with(d.path(), small(2)).unwrap();
    assert_eq!(store.stats().shards, 2);
    store.put(1u64, b"x").unwrap();
    store.close().unwrap();
    let store = Store::open_with(d.path(), Options::new().section_slots(16)).unwrap();
    assert_eq!(store.stats().shards, 2);
    assert_eq!(&store.get(1u64).unwrap().unwrap()[..], b"x");
}

/// Unset, the section size is the store's own, as the shard count is (so a server or tool
/// need not read `STORE` first); a new store gets the default; set, it must match.
#[test]
fn an_existing_store_opens_with_its_own_section_size() {
    let d = tempdir();
    populated(&d);
    let store = Store::open_with(d.path(), Options::new().durability(Durability::None)).unwrap();
    assert_eq!(store.stats().shards, 2);
    for k in 0..100u64 {
        assert_eq!(store.get(k).unwrap().as_deref(), Some(&k.to_le_bytes()[..]));
    }
    // Enough puts to fill and write out several 16-slot banks of each shard.
    for k in 100..300u64 {
        store.put(k, k.to_le_bytes()).unwrap();
    }
    store.close().unwrap();
    assert_eq!(toykv::admin::section_slots(d.path()), Some(16));
    let e = Store::open_with(d.path(), Options::new().section_slots(32)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                what: "section_slots",
                stored: 16,
                requested: 32,
                ..
            }
        ),
        "{e}"
    );
    let store = Store::open_with(d.path(), Options::new().section_slots(16)).unwrap();
    assert_eq!(
        store.get(299u64).unwrap().as_deref(),
        Some(&299u64.to_le_bytes()[..])
    );
    store.close().unwrap();

    let fresh = tempdir();
    Store::open_with(fresh.path(), Options::new().shards(1))
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(
        toykv::admin::section_slots(fresh.path()),
        Some(toykv::format::DEFAULT_SECTION_SLOTS)
    );
}

/// Bytes of the files under `dir`. The background collector may remove a section between the
/// listing and the look at its size: a file gone by then counts nothing.
fn du(dir: &std::path::Path) -> u64 {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut total = 0;
    let list = match std::fs::read_dir(dir) {
        Ok(list) => list,
        Err(e) if gone(&e) => return 0,
        Err(e) => panic!("listing {}: {e}", dir.display()),
    };
    for e in list {
        let e = e.unwrap();
        let m = match e.metadata() {
            Ok(m) => m,
            Err(err) if gone(&err) => continue,
            Err(err) => panic!("size of {}: {err}", e.path().display()),
        };
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}

/// Ten overwrites of every key: garbage collection keeps the directory within 1.5 times the
/// live data (values and their records) plus the fixed files (buffers, headers), and the key
/// sections within a small multiple of what the live records need, so open time follows the
/// live keys rather than the history.
#[test]
fn collection_bounds_space_and_key_sections_under_overwrites() {
    const KEYS: u64 = 4096;
    const SLOTS: u32 = 256;
    let d = tempdir();
    let o = || {
        Options::new()
            .section_slots(SLOTS)
            .shards(2)
            .durability(Durability::None)
    };
    let store = Store::open_with(d.path(), o()).unwrap();
    let value = |k: u64, round: u64| vec![(k + round) as u8; 200 + (k % 57) as usize];
    let fixed = du(d.path());
    let live = KEYS * (toykv::format::SLOT_SIZE + toykv::format::RECORD_SIZE) as u64;
    let mut worst = 0f64;
    for round in 0..10u64 {
        for k in 0..KEYS {
            store.put(k, value(k, round)).unwrap();
        }
        store.gc().unwrap();
        let ratio = (du(d.path()) - fixed) as f64 / live as f64;
        worst = worst.max(ratio);
    }
    let st = store.stats();
    assert!(
        worst <= 1.5,
        "directory reached {worst:.2}x the live data: {st:?}"
    );
    assert!(st.gc_sections > 0 && st.gc_key_sections > 0, "{st:?}");
    let needed = KEYS.div_ceil(u64::from(SLOTS));
    assert!(
        st.key_sections <= 2 * needed + 2 * 2,
        "{} key sections for {needed} sections of live records: {st:?}",
        st.key_sections
    );
    drop(store);
    let store = Store::open_with(d.path(), o()).unwrap();
    for k in 0..KEYS {
        assert_eq!(
            store.get(k).unwrap().unwrap().to_vec(),
            value(k, 9),
            "key {k}"
        );
    }
}

/// Hot keys overwritten, cold keys written once: old sections keep a few live values and
/// records, which collection moves so that the sections can go.
#[test]
fn collection_moves_the_few_live_values_of_old_sections() {
    let d = tempdir();
    let o = || small(2).section_slots(32);
    let store = Store::open_with(d.path(), o()).unwrap();
    let mut model = BTreeMap::new();
    let mut rng = StdRng::seed_from_u64(9);
    for i in 0..20_000u64 {
        let k = if i % 10 == 0 {
            1000 + i
        } else {
            rng.random_range(0..20)
        };
        let v = i.to_le_bytes().repeat(1 + (i % 30) as usize);
        store.put(k, &v).unwrap();
        model.insert(k, v);
    }
    store.gc().unwrap();
    let st = store.stats();
    assert!(
        st.gc_moved > 0 && st.gc_sections > 0 && st.gc_key_sections > 0,
        "{st:?}"
    );
    let needed = (model.len() as u64).div_ceil(32);
    assert!(st.key_sections <= 2 * needed + 4, "{needed} needed: {st:?}");
    assert!(
        st.value_sections <= 2 * needed + 4,
        "{needed} needed: {st:?}"
    );
    let check = |s: &Store| {
        for (k, v) in &model {
            assert_eq!(&s.get(*k).unwrap().unwrap()[..], &v[..], "key {k}");
        }
        assert_eq!(s.len(), model.len());
    };
    check(&store);
    drop(store);
    check(&Store::open_with(d.path(), o()).unwrap());
}

/// A value of 0 to 256 bytes that differs for every key and version.
fn value_of(key: u64, version: u64) -> Vec<u8> {
    let len = ((key * 13 + version * 5) % 257) as usize;
    (0..len)
        .map(|j| (key.wrapping_mul(31) as usize + version as usize * 7 + j) as u8)
        .collect()
}

/// Answers of `get_many`, as bytes (errors panic).
fn many(store: &Store, keys: &[u64]) -> Vec<Option<Vec<u8>>> {
    store
        .get_many(keys)
        .into_iter()
        .zip(keys)
        .map(|(r, k)| {
            r.unwrap_or_else(|e| panic!("key {k}: {e}"))
                .map(|v| v.to_vec())
        })
        .collect()
}

/// Which read path the environment asks for: `TOYKV_NO_IO_URING=1` forces pread.
fn forced_pread() -> bool {
    std::env::var("TOYKV_NO_IO_URING").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `get_many` answers exactly as `get` for present, absent, deleted and repeated keys, in
/// the order given, with values in banks, in value sections, and cached; an empty call gets
/// an empty answer, and 100,000 keys are answered (in chunks).
#[test]
fn get_many_answers_as_get_does() {
    let d = tempdir();
    let mut model = BTreeMap::new();
    {
        let store = Store::open_with(d.path(), small(2).cache_bytes(0)).unwrap();
        for version in 0..3u64 {
            for key in 0..600u64 {
                if (key + version) % 9 == 0 {
                    store.delete(key).unwrap();
                    model.remove(&key);
                } else {
                    store.put(key, value_of(key, version)).unwrap();
                    model.insert(key, value_of(key, version));
                }
            }
        }
        // Shuffled: present, deleted, absent (never written), and repeated keys.
        let mut rng = StdRng::seed_from_u64(7);
        let mut keys: Vec<u64> = (0..700).map(|_| rng.random_range(0..700u64)).collect();
        keys.extend([5, 5, 5, 9999, 0, 599]);
        let want: Vec<Option<Vec<u8>>> = keys.iter().map(|k| model.get(k).cloned()).collect();
        let got_get: Vec<Option<Vec<u8>>> = keys
            .iter()
            .map(|&k| store.get(k).unwrap().map(|v| v.to_vec()))
            .collect();
        assert_eq!(got_get, want);
        assert_eq!(
            many(&store, &keys),
            want,
            "cache off, values in banks and sections"
        );
        assert!(store.get_many::<u64>(&[]).is_empty());
        let st = store.stats();
        assert!(st.value_sections > 10, "{st:?}");
        if forced_pread() {
            assert_eq!(st.read_path, "pread");
        }
        println!("read path: {}", st.read_path);
        store.close().unwrap();
    }
    // Reopened with the cache on: the first call reads from the sections and caches, the
    // second answers from the cache; 100,000 keys (with repeats) in one call.
    let store = Store::open_with(d.path(), small(2)).unwrap();
    let keys: Vec<u64> = (0..700u64).rev().collect();
    let want: Vec<Option<Vec<u8>>> = keys.iter().map(|k| model.get(k).cloned()).collect();
    assert_eq!(many(&store, &keys), want, "from the sections");
    let hits = store.stats().cache_hits;
    assert_eq!(many(&store, &keys), want, "from the cache");
    assert!(store.stats().cache_hits >= hits + model.len() as u64);
    let big: Vec<u64> = (0..100_000u64).map(|i| (i * 7919) % 650).collect();
    let want: Vec<Option<Vec<u8>>> = big.iter().map(|k| model.get(k).cloned()).collect();
    assert_eq!(many(&store, &big), want, "100,000 keys");
    // A value replaced after it was cached is answered new.
    store.put(1u64, b"new").unwrap();
    assert_eq!(many(&store, &[1, 1])[1].as_deref(), Some(&b"new"[..]));
}

/// Scans read their uncached values in batches: the same answers with the cache off as a
/// `BTreeMap`, on whichever read path is in use.
#[test]
fn scans_of_uncached_values_read_in_batches() {
    let d = tempdir();
    let store = Store::open_with(d.path(), small(3).cache_bytes(0)).unwrap();
    let mut model = BTreeMap::new();
    for key in 0..2000u64 {
        store.put(key * 3, value_of(key, 1)).unwrap();
        model.insert(key * 3, value_of(key, 1));
    }
    let got: BTreeMap<u64, Vec<u8>> = store
        .scan(300u64..=4500)
        .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
        .collect();
    let want: BTreeMap<u64, Vec<u8>> = model
        .range(300..=4500)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(got, want);
}

/// A value whose bytes on disk were changed fails its checksum for its own key alone: the
/// other keys of the batch are answered.
#[test]
fn a_flipped_byte_fails_get_many_for_its_key_alone() {
    let d = tempdir();
    let opts = || small(1).gc(false).cache_bytes(0);
    let value = |k: u64| -> Vec<u8> { (0..200).map(|j| (k * 41 + j * 3 + 1) as u8).collect() };
    {
        let store = Store::open_with(d.path(), opts()).unwrap();
        for k in 0..64u64 {
            store.put(k, value(k)).unwrap();
        }
        store.close().unwrap();
    }
    // Key 3's value is in an early value section: flip one of its bytes there.
    let victim = 3u64;
    let needle = value(victim);
    let shard = d.path().join(shard_name(0));
    let mut flipped = false;
    for e in std::fs::read_dir(&shard).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "v") {
            let mut bytes = std::fs::read(&p).unwrap();
            if let Some(at) = bytes.windows(needle.len()).position(|w| w == &needle[..]) {
                bytes[at + 100] ^= 0x40;
                std::fs::write(&p, &bytes).unwrap();
                flipped = true;
            }
        }
    }
    assert!(flipped, "key {victim}'s value is in no value section");
    let store = Store::open_with(d.path(), opts()).unwrap();
    let keys: Vec<u64> = (0..64).chain([victim, 70]).collect();
    let got = store.get_many(&keys);
    for (k, r) in keys.iter().zip(&got) {
        match r {
            Err(Error::Corrupt { damage, .. }) if *k == victim => {
                assert_eq!(*damage, toykv::Damage::Value)
            }
            Ok(v) if *k != victim => {
                assert_eq!(
                    v.as_deref(),
                    (*k < 64).then(|| value(*k)).as_deref(),
                    "key {k}"
                )
            }
            other => panic!("key {k}: {other:?}"),
        }
    }
    // `get` says the same.
    assert!(matches!(store.get(victim), Err(Error::Corrupt { .. })));
}

/// An I/O error injected at each read of a batch in turn (the simulator counts every read
/// of a batch as one call) fails exactly the keys whose slots that read covered: neighbouring
/// slots of one section share a read, so a fault fails one group of keys of one section, each
/// key read from disk is failed by exactly one of the reads, and the other keys, and the same
/// call again, are answered.
#[test]
fn an_io_error_in_a_batch_fails_exactly_the_keys_its_read_covered() {
    use toykv::io::{Fault, SimFs};
    let fs = SimFs::new();
    let dir = std::path::Path::new("/db");
    let opts = || small(2).gc(false).cache_bytes(0).vfs(Arc::new(fs.clone()));
    let value = |k: u64| -> Vec<u8> { vec![k as u8; (k % 200) as usize + 1] };
    {
        let store = Store::open_with(dir, opts()).unwrap();
        for k in 0..100u64 {
            store.put(k, value(k)).unwrap();
        }
        store.close().unwrap();
    }
    let store = Store::open_with(dir, opts()).unwrap();
    assert_eq!(store.stats().read_path, "pread");
    // Repeats too: a repeated key's slot is read once with its neighbours.
    let keys: Vec<u64> = (0..100).chain([7, 7, 42]).rev().collect();
    let before = fs.calls();
    let clean = store.get_many(&keys);
    let reads = fs.calls() - before;
    assert!(clean.iter().all(|r| r.is_ok()));
    let mut hit = std::collections::BTreeMap::new();
    for n in 0..reads {
        fs.fail_call(n, Fault::Eio);
        let got = store.get_many(&keys);
        let failed: Vec<usize> = (0..keys.len()).filter(|&i| got[i].is_err()).collect();
        assert!(!failed.is_empty(), "fault at read {n} failed no key");
        let mut paths = std::collections::BTreeSet::new();
        for &i in &failed {
            match &got[i] {
                Err(Error::Io { op, path, source }) => {
                    assert_eq!(*op, "read");
                    assert_eq!(source.raw_os_error(), Some(libc::EIO));
                    assert!(path.extension().is_some_and(|x| x == "v"), "{path:?}");
                    paths.insert(path.clone());
                }
                other => panic!("{other:?}"),
            }
            assert!(
                hit.insert(i, n).is_none(),
                "reads {} and {n} both failed answer {i}",
                hit[&i]
            );
        }
        assert_eq!(
            paths.len(),
            1,
            "one read failed keys of several sections: {paths:?}"
        );
        for (j, (k, r)) in keys.iter().zip(&got).enumerate() {
            if !failed.contains(&j) {
                assert_eq!(
                    r.as_ref().unwrap().as_deref(),
                    Some(&value(*k)[..]),
                    "key {k}"
                );
            }
        }
    }
    // The repeats failed with their first copies: they share a slot, so a read.
    for (i, k) in keys.iter().enumerate() {
        if let Some(j) = keys.iter().position(|x| x == k).filter(|&j| j != i) {
            assert_eq!(hit.get(&i), hit.get(&j), "key {k}");
        }
    }
    // Most values were on disk, and neighbours came back together: fewer reads than keys.
    assert!(
        hit.len() > 50,
        "only {} of the values were read from sections",
        hit.len()
    );
    assert!(
        reads < 60,
        "{reads} reads for {} values read from sections",
        hit.len()
    );
    assert!(store.get_many(&keys).iter().all(|r| r.is_ok()));
}

/// Neighbouring slots of one value section come back in one read: a `get_many` or a scan of
/// keys written one after another (so in neighbouring slots) reads each section once, however
/// the keys are ordered in the request.
#[test]
fn neighbouring_slots_come_back_in_one_read() {
    use toykv::io::SimFs;
    let fs = SimFs::new();
    let dir = std::path::Path::new("/db");
    let slots = 256;
    let opts = || {
        Options::new()
            .section_slots(slots)
            .shards(1)
            .durability(Durability::None)
            .gc(false)
            .cache_bytes(0)
            .vfs(Arc::new(fs.clone()))
    };
    let value = |k: u64| -> Vec<u8> {
        (0..(k % 250) as usize)
            .map(|j| (k + j as u64) as u8)
            .collect()
    };
    let n = 4 * slots as u64;
    {
        let store = Store::open_with(dir, opts()).unwrap();
        for k in 0..n {
            store.put(k, value(k)).unwrap();
        }
        store.close().unwrap();
    }
    let store = Store::open_with(dir, opts()).unwrap();
    // 32 neighbours in the middle of one section, asked for in a scrambled order.
    let keys: Vec<u64> = (0..32u64)
        .map(|i| slots as u64 + 100 + (i * 13) % 32)
        .collect();
    let before = fs.calls();
    let got = store.get_many(&keys);
    assert_eq!(
        fs.calls() - before,
        1,
        "32 neighbouring slots took several reads"
    );
    for (k, r) in keys.iter().zip(got) {
        assert_eq!(r.unwrap().as_deref(), Some(&value(*k)[..]), "key {k}");
    }
    // Every other slot of a stretch: the holes are read through, still one read.
    let keys: Vec<u64> = (0..16u64).map(|i| slots as u64 + 2 * i).collect();
    let before = fs.calls();
    let got = store.get_many(&keys);
    assert_eq!(fs.calls() - before, 1);
    for (k, r) in keys.iter().zip(got) {
        assert_eq!(r.unwrap().as_deref(), Some(&value(*k)[..]), "key {k}");
    }
    // Keys of two sections: one read each.
    let keys = [5u64, 6, 2 * slots as u64 + 5, 2 * slots as u64 + 6, 7];
    let before = fs.calls();
    assert!(store.get_many(&keys).iter().all(|r| r.is_ok()));
    assert_eq!(fs.calls() - before, 2);
    // A scan of 100 keys in one section: one read per scan batch, far fewer than 100.
    let before = fs.calls();
    let scanned: Vec<(u64, Vec<u8>)> = store
        .scan(600u64..700)
        .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
        .collect();
    let reads = fs.calls() - before;
    assert_eq!(scanned.len(), 100);
    for (k, v) in &scanned {
        assert_eq!(v, &value(*k), "key {k}");
    }
    assert!(
        reads <= 10,
        "a 100-key scan of neighbours took {reads} reads"
    );
}

/// `Options::io_uring(false)` forces the pread path, and `Stats::read_path` says so; either
/// path answers the same.
#[test]
fn the_read_path_setting_is_obeyed() {
    let d = tempdir();
    let keys: Vec<u64> = (0..300).collect();
    let mut answers = Vec::new();
    for uring in [false, true] {
        let store = Store::open_with(d.path(), small(1).cache_bytes(0).io_uring(uring)).unwrap();
        if !uring {
            for &k in &keys {
                store.put(k, value_of(k, 2)).unwrap();
            }
            assert_eq!(store.stats().read_path, "pread");
        } else if forced_pread() {
            assert_eq!(store.stats().read_path, "pread");
        } else {
            println!("default read path here: {}", store.stats().read_path);
        }
        answers.push(many(&store, &keys));
        store.close().unwrap();
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][5].as_deref(), Some(&value_of(5, 2)[..]));
}
