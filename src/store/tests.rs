//! Unit tests of the engine on the real file system and on the simulator.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::error::SyncOp;
use crate::io::{Align, SimFs};
use crate::testing::tempdir;

/// Small sections, one shard, no background collection and no periodic sync: counts and
/// file layouts in these tests are deterministic.
fn small() -> Options {
    Options::new()
        .section_slots(16)
        .shards(1)
        .gc(false)
        .durability(Durability::None)
}

fn sim(fs: &SimFs) -> Options {
    small().vfs(Arc::new(fs.clone()))
}

fn value(k: u64, round: u64) -> Vec<u8> {
    let len = ((k * 7 + round * 13) % 257) as usize;
    (0..len)
        .map(|i| (k as usize + i + round as usize) as u8)
        .collect()
}

fn contents(s: &Store) -> BTreeMap<u64, Vec<u8>> {
    s.iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.as_u64(), v.to_vec())
        })
        .collect()
}

#[test]
fn put_get_delete_across_flushes_and_reopen() {
    let d = tempdir();
    let mut model = BTreeMap::new();
    {
        let s = Store::open_with(d.path(), small()).unwrap();
        for round in 0..3 {
            for k in 0..40u64 {
                s.put(k, value(k, round)).unwrap();
                model.insert(k, value(k, round));
            }
        }
        for k in (0..40u64).step_by(3) {
            assert!(s.delete(k).unwrap());
            assert!(!s.delete(k).unwrap());
            model.remove(&k);
        }
        for (k, v) in &model {
            assert_eq!(s.get(*k).unwrap().unwrap().to_vec(), *v, "key {k}");
        }
        assert_eq!(contents(&s), model);
        s.settle();
        assert_eq!(s.stats().value_sections, 7);
    }
    let s = Store::open_with(d.path(), small()).unwrap();
    assert_eq!(contents(&s), model);
    assert_eq!(s.len(), model.len());
    assert_eq!(s.get(0u64).unwrap(), None);
    assert_eq!(s.stats().torn_tail, None);
}

#[test]
fn default_sections_read_back_through_o_direct() {
    let d = tempdir();
    let n = u64::from(crate::format::DEFAULT_SECTION_SLOTS) + 100;
    {
        // Without the read cache, which would answer the gets below from memory.
        let opts = Options::new().cache_bytes(0).shards(1);
        let s = Store::open_with(d.path(), opts).unwrap();
        for k in 0..n {
            s.put(k, k.to_le_bytes()).unwrap();
        }
        s.settle();
        let st = s.stats();
        assert_eq!(st.value_sections, 1);
        assert!(st.direct_io);
        // Key 5 lives in the flushed section, key n-1 in the buffer.
        assert_eq!(s.get(5u64).unwrap().unwrap().to_vec(), 5u64.to_le_bytes());
        assert_eq!(
            s.get(n - 1).unwrap().unwrap().to_vec(),
            (n - 1).to_le_bytes()
        );
        s.close().unwrap();
    }
    let s = Store::open(d.path()).unwrap();
    assert_eq!(s.len() as u64, n);
    for k in [0, 1, 65535, 65536, n - 1] {
        assert_eq!(s.get(k).unwrap().unwrap().to_vec(), k.to_le_bytes());
    }
}

#[test]
fn every_byte_pattern_is_data() {
    let d = tempdir();
    let s = Store::open_with(d.path(), small()).unwrap();
    s.put([0u8; 8], [0u8; 256]).unwrap();
    s.put([0xffu8; 8], [0xffu8; 256]).unwrap();
    s.put(7u64, b"").unwrap();
    assert_eq!(&s.get([0u8; 8]).unwrap().unwrap()[..], &[0u8; 256][..]);
    assert_eq!(&s.get(u64::MAX).unwrap().unwrap()[..], &[0xffu8; 256][..]);
    assert_eq!(s.get(7u64).unwrap().unwrap().len(), 0);
    assert!(s.contains(7u64) && s.contains([0u8; 8]) && !s.contains(8u64));
    let e = s.put(1u64, [1u8; 257]).unwrap_err();
    assert!(
        matches!(e, Error::ValueTooLong { len: 257, max: 256 }),
        "{e}"
    );
    assert_eq!(s.get(1u64).unwrap(), None);
}

#[test]
fn scan_bounds_and_limit() {
    let d = tempdir();
    let s = Store::open_with(d.path(), small()).unwrap();
    for k in (0..300u64).rev() {
        s.put(k, k.to_be_bytes()).unwrap();
    }
    let keys = |it: Scan<'_>| it.map(|r| r.unwrap().0.as_u64()).collect::<Vec<_>>();
    assert_eq!(keys(s.scan(10u64..=12)), vec![10, 11, 12]);
    assert_eq!(keys(s.scan(10u64..12)), vec![10, 11]);
    assert_eq!(keys(s.scan(298u64..)), vec![298, 299]);
    let (hi, lo) = (12u64, 10u64);
    assert_eq!(keys(s.scan(hi..=lo)), Vec::<u64>::new());
    assert_eq!(s.iter().count(), 300);
    let first: Vec<u64> = s
        .scan(100u64..)
        .take(70)
        .map(|r| r.unwrap().0.as_u64())
        .collect();
    assert_eq!(first, (100..170).collect::<Vec<_>>());
}

#[test]
fn second_open_is_locked_out() {
    let d = tempdir();
    let s = Store::open_with(d.path(), small()).unwrap();
    let e = Store::open_with(d.path(), small()).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    drop(s);
    Store::open_with(d.path(), small()).unwrap();
}

#[test]
fn section_size_is_fixed_at_creation() {
    let d = tempdir();
    drop(Store::open_with(d.path(), small()).unwrap());
    let e = Store::open_with(d.path(), Options::new().section_slots(32)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                stored: 16,
                requested: 32,
                ..
            }
        ),
        "{e}"
    );
    let e = Store::open_with(d.path(), Options::new().section_slots(17)).unwrap_err();
    assert!(matches!(e, Error::Option { .. }), "{e}");
}

#[test]
fn refused_o_direct_names_the_option() {
    let fs = SimFs::new();
    fs.refuse_direct(true);
    let e = Store::open_with("/db", sim(&fs)).unwrap_err();
    assert!(matches!(e, Error::DirectUnsupported { .. }), "{e}");
    assert!(e.to_string().contains("direct_io(false)"), "{e}");
    let s = Store::open_with("/db", sim(&fs).direct_io(false).cache_bytes(0)).unwrap();
    for k in 0..40u64 {
        s.put(k, value(k, 0)).unwrap();
    }
    assert_eq!(s.get(3u64).unwrap().unwrap().to_vec(), value(3, 0));
    assert!(!s.stats().direct_io);
}

#[test]
fn alignment_is_honoured_at_4096() {
    for align in [512, 4096] {
        let fs = SimFs::with_align(Align {
            mem: align,
            offset: align,
        });
        let s = Store::open_with("/db", sim(&fs).cache_bytes(0)).unwrap();
        for k in 0..100u64 {
            s.put(k, value(k, 1)).unwrap();
        }
        for k in 0..100u64 {
            assert_eq!(
                s.get(k).unwrap().unwrap().to_vec(),
                value(k, 1),
                "align {align}"
            );
        }
    }
}

#[test]
fn failed_sync_refuses_writes_until_reopen() {
    let fs = SimFs::new();
    let s = Store::open_with("/db", sim(&fs)).unwrap();
    s.put(1u64, b"a").unwrap();
    fs.fail_syncs(true);
    let e = s.sync().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Sync {
                op: SyncOp::Msync,
                ..
            }
        ),
        "{e}"
    );
    fs.fail_syncs(false);
    let e = s.put(2u64, b"b").unwrap_err();
    assert!(matches!(e, Error::Failed { .. }), "{e}");
    assert!(matches!(s.delete(1u64), Err(Error::Failed { .. })));
    assert!(matches!(s.sync(), Err(Error::Failed { .. })));
    assert_eq!(s.get(1u64).unwrap().unwrap().to_vec(), b"a");
    drop(s);
    let s = Store::open_with("/db", sim(&fs)).unwrap();
    s.put(2u64, b"b").unwrap();
    s.sync().unwrap();
}

#[test]
fn failed_bank_reset_sync_poisons() {
    let fs = SimFs::new();
    let s = Store::open_with("/db", sim(&fs)).unwrap();
    for k in 0..16u64 {
        s.put(k, b"v").unwrap();
    }
    fs.fail_syncs(true);
    // The 17th put moves on to the other bank, whose header page must be synced first.
    let e = s.put(16u64, b"v").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Sync {
                op: SyncOp::Msync,
                ..
            }
        ),
        "{e}"
    );
    fs.fail_syncs(false);
    assert!(matches!(s.put(16u64, b"v"), Err(Error::Failed { .. })));
    drop(s);
    let s = Store::open_with("/db", sim(&fs)).unwrap();
    assert_eq!(s.len(), 16);
    s.put(16u64, b"v").unwrap();
}

#[test]
fn failed_background_write_out_poisons_and_reopen_recovers() {
    let fs = SimFs::new();
    let s = Store::open_with("/db", sim(&fs)).unwrap();
    for k in 0..16u64 {
        s.put(k, k.to_be_bytes()).unwrap();
    }
    // Record 16 starts key section 1: make it before writes fail.
    assert!(s.delete(15u64).unwrap());
    fs.fail_writes(true);
    // Hands the full bank to the background writer, whose write fails.
    s.put(16u64, b"v").unwrap();
    s.settle();
    fs.fail_writes(false);
    let e = s.put(17u64, b"v").unwrap_err();
    assert!(matches!(e, Error::Failed { .. }), "{e}");
    // The values are still readable from the bank.
    assert_eq!(s.get(3u64).unwrap().unwrap().to_vec(), 3u64.to_be_bytes());
    drop(s);
    // Reopening writes the bank out.
    let s = Store::open_with("/db", sim(&fs)).unwrap();
    assert_eq!(s.stats().value_sections, 1);
    for k in 0..15u64 {
        assert_eq!(s.get(k).unwrap().unwrap().to_vec(), k.to_be_bytes());
    }
    assert_eq!(s.get(16u64).unwrap().unwrap().to_vec(), b"v");
    s.put(17u64, b"w").unwrap();
}

#[test]
fn stats_count_what_happened() {
    let d = tempdir();
    let s = Store::open_with(d.path(), small()).unwrap();
    for k in 0..20u64 {
        s.put(k, b"x").unwrap();
    }
    s.delete(3u64).unwrap();
    s.settle();
    let st = s.stats();
    assert_eq!((st.keys, st.records, st.slots_used), (19, 21, 19));
    assert_eq!((st.value_sections, st.key_sections), (1, 2));
    assert_eq!(s.dir(), d.path());
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
}

#[test]
fn gets_run_beside_puts_and_flushes() {
    let d = tempdir();
    let s = Arc::new(Store::open_with(d.path(), small().cache_bytes(0)).unwrap());
    for k in 0..500u64 {
        s.put(k, value(k, 0)).unwrap();
    }
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..2000u64 {
                    let k = (i * 7 + t) % 500;
                    assert_eq!(s.get(k).unwrap().unwrap().to_vec(), value(k, 0), "key {k}");
                }
            })
        })
        .collect();
    // Meanwhile a writer adds keys, flushing a section every 16 puts.
    for k in 500..1500u64 {
        s.put(k, value(k, 0)).unwrap();
    }
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(s.len(), 1500);
}

/// Hits and misses of the read cache so far.
fn cache_counts(s: &Store) -> (u64, u64) {
    let st = s.stats();
    (st.cache_hits, st.cache_misses)
}

#[test]
fn cache_answers_repeated_gets_of_flushed_values() {
    let d = tempdir();
    {
        let s = Store::open_with(d.path(), small()).unwrap();
        for k in 0..40u64 {
            s.put(k, value(k, 0)).unwrap();
        }
        // Puts do not cache their values; the first get does.
        assert_eq!(s.stats().cache_entries, 0);
        assert_eq!(s.get(3u64).unwrap().unwrap().to_vec(), value(3, 0));
        assert_eq!(s.get(3u64).unwrap().unwrap().to_vec(), value(3, 0));
        assert_eq!(cache_counts(&s), (1, 1));
        assert_eq!(s.stats().cache_entries, 1);
    }
    // Reopened, the cache is empty: key 3, in the first value section, is read once.
    let s = Store::open_with(d.path(), small()).unwrap();
    assert_eq!(s.stats().cache_entries, 0);
    for _ in 0..3 {
        assert_eq!(s.get(3u64).unwrap().unwrap().to_vec(), value(3, 0));
    }
    assert_eq!(s.get(99u64).unwrap(), None);
    assert_eq!(cache_counts(&s), (2, 2));
    let st = s.stats();
    assert_eq!(st.cache_entries, 1);
    assert_eq!(st.cache_bytes, cache::ENTRY_BYTES as u64);
    // Scans use cached values without counting, and cache what they read from disk: the
    // 32 values of the two value sections (key 3 was cached already), not the 8 in the
    // write buffer.
    assert_eq!(contents(&s).len(), 40);
    assert_eq!(cache_counts(&s), (2, 2));
    assert_eq!(s.stats().cache_entries, 32);
    assert_eq!(contents(&s).len(), 40);
    assert_eq!(cache_counts(&s), (2, 2));
}

#[test]
fn puts_and_deletes_keep_the_cache_current() {
    let d = tempdir();
    let s = Store::open_with(d.path(), small()).unwrap();
    for round in 0..5 {
        for k in 0..40u64 {
            s.put(k, value(k, round)).unwrap();
            assert_eq!(s.get(k).unwrap().unwrap().to_vec(), value(k, round));
        }
        for k in (0..40u64).step_by(5) {
            assert!(s.delete(k).unwrap());
            assert_eq!(s.get(k).unwrap(), None);
            assert!(!s.contains(k));
        }
        let model: BTreeMap<u64, Vec<u8>> = (0..40u64)
            .filter(|k| k % 5 != 0)
            .map(|k| (k, value(k, round)))
            .collect();
        assert_eq!(contents(&s), model);
    }
    assert_eq!(s.stats().cache_entries, 32);
    // A put replaces a cached value but caches no new key: each round's gets miss on keys
    // first seen or deleted the round before (40, then 8 a round) and hit on the others;
    // the get after each delete misses too (8 a round).
    assert_eq!(s.stats().cache_hits, 4 * 32);
    assert_eq!(s.stats().cache_misses, 40 + 4 * 8 + 5 * 8);
}

/// Value `n` of key `k`: the key, the counter, then filler derived from both, so a torn or
/// mixed-up value shows.
fn counted(k: u64, n: u64) -> Vec<u8> {
    let len = 16 + ((k + n) % 200) as usize;
    let mut v = [k.to_be_bytes(), n.to_be_bytes()].concat();
    v.extend((16..len).map(|i| (i as u64 ^ k ^ n) as u8));
    v
}

#[test]
fn cached_values_stay_current_under_concurrent_overwrites() {
    const KEYS: u64 = 8;
    const WRITES: u64 = 3000;
    // A cache of 4 entries makes gets miss and fill while the writer overwrites.
    for cache in [4 * cache::ENTRY_BYTES, 1 << 20] {
        let d = tempdir();
        let s = Arc::new(Store::open_with(d.path(), small().cache_bytes(cache)).unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4u64)
            .map(|t| {
                let (s, stop) = (s.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = [0u64; KEYS as usize];
                    let mut i = t;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let k = i % KEYS;
                        i += 1;
                        let Some(v) = s.get(k).unwrap() else { continue };
                        let n = u64::from_be_bytes(v[8..16].try_into().unwrap());
                        assert_eq!(v.to_vec(), counted(k, n), "key {k}");
                        assert!(
                            n >= seen[k as usize],
                            "key {k}: {n} after {}",
                            seen[k as usize]
                        );
                        seen[k as usize] = n;
                    }
                })
            })
            .collect();
        for n in 1..=WRITES {
            s.put(n % KEYS, counted(n % KEYS, n)).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        for k in 0..KEYS {
            let last = WRITES - (WRITES + KEYS - k) % KEYS;
            assert_eq!(s.get(k).unwrap().unwrap().to_vec(), counted(k, last));
        }
        assert!(s.stats().cache_hits > 0);
    }
}

#[test]
fn zero_cache_bytes_turns_the_cache_off() {
    let d = tempdir();
    let s = Store::open_with(d.path(), small().cache_bytes(0)).unwrap();
    for k in 0..40u64 {
        s.put(k, value(k, 0)).unwrap();
    }
    for k in 0..40u64 {
        assert_eq!(s.get(k).unwrap().unwrap().to_vec(), value(k, 0));
        assert_eq!(s.get(k).unwrap().unwrap().to_vec(), value(k, 0));
    }
    let st = s.stats();
    assert_eq!((st.cache_hits, st.cache_misses), (0, 0));
    assert_eq!(
        (st.cache_entries, st.cache_bytes, st.cache_capacity),
        (0, 0, 0)
    );
}

#[test]
fn cache_bytes_overrides_the_default_and_stats_show_the_capacity() {
    let d = tempdir();
    let opts = small()
        .shards(2)
        .cache_bytes(2 * 10 * cache::ENTRY_BYTES + 7);
    let s = Store::open_with(d.path(), opts).unwrap();
    let st = s.stats();
    // Split over the shards, rounded down to whole entries.
    assert_eq!(st.cache_capacity, 2 * 10 * cache::ENTRY_BYTES as u64);
    assert_eq!((st.cache_entries, st.cache_bytes), (0, 0));
    // Unset, the default (whatever this machine's memory) is some cache.
    assert!(Options::new().cache() > 0);
}

#[test]
fn lookup_answers_without_io_when_it_can() {
    let d = tempdir();
    let s = Store::open_with(d.path(), small()).unwrap();
    for k in 0..20u64 {
        s.put(k, value(k, 3)).unwrap();
    }
    // Key 0 is in a flushed section and (puts write through) in the cache: no I/O.
    assert!(matches!(s.lookup(0u64).unwrap(), Lookup::Ready(Some(_))));
    assert!(matches!(s.lookup(99u64).unwrap(), Lookup::Ready(None)));
    drop(s);
    let s = Store::open_with(d.path(), small()).unwrap();
    // After a reopen the cache is empty: key 0 needs a disk read, key 19 is in the buffer.
    let Lookup::Pending(p) = s.lookup(0u64).unwrap() else {
        panic!("expected a pending read")
    };
    assert_eq!(s.read(p).unwrap().to_vec(), value(0, 3));
    assert!(
        matches!(s.lookup(0u64).unwrap(), Lookup::Ready(Some(_))),
        "now cached"
    );
    let Lookup::Ready(Some(v)) = s.lookup(19u64).unwrap() else {
        panic!("buffer values need no disk read")
    };
    assert_eq!(v.to_vec(), value(19, 3));
    // A pending read whose key changes meanwhile still returns what it read, but does not
    // cache it over the newer value.
    let Lookup::Pending(p) = s.lookup(1u64).unwrap() else {
        panic!("expected a pending read")
    };
    s.put(1u64, b"newer").unwrap();
    assert_eq!(s.read(p).unwrap().to_vec(), value(1, 3));
    assert_eq!(s.get(1u64).unwrap().unwrap().to_vec(), b"newer");
}

/// The value of key 3 in [`gc_layout`]: unique bytes, easy to find in a `.v` file.
const DAMAGED: &[u8] = b"the one value that is damaged on disk";

/// One shard of 16-slot sections: key 3 is the only live value of section 0, key 20 the
/// only live value of section 1, section 2 is full and live, the active bank holds the rest.
/// Collection would pick section 0 first (fewest live, first), then section 1.
fn gc_layout(s: &Store) {
    for k in 0..32u64 {
        let v = if k == 3 {
            DAMAGED.to_vec()
        } else {
            value(k, 0)
        };
        s.put(k, v).unwrap();
    }
    for k in (0..32u64).filter(|&k| k != 3 && k != 20) {
        s.put(k, value(k, 1)).unwrap();
    }
    s.settle();
    let live = s.shards[0].live_per_section();
    assert_eq!(live, [1, 1, 16], "layout of the value sections");
}

/// Background collection on, as far as holding puts back goes (no collector thread runs:
/// the test steps collection itself).
fn pressure_on(s: &Store) -> bool {
    s.shards[0].hold_for_gc(true)
}

/// What a store with one unreadable value must still do once collection has met it.
fn gc_sets_aside(s: &Store) {
    let shard = &s.shards[0];
    assert!(pressure_on(s), "the layout is past the hold limit");
    // The first step meets the damage: it sets section 0 aside instead of failing.
    assert!(shard.gc_step().unwrap());
    assert!(shard.set_aside(0));
    // Section 0 no longer counts as collectable space: puts are not held back for it.
    assert!(!shard.pressure());
    // The next steps collect section 1 (key 20 moves) and nothing is left to do.
    s.gc().unwrap();
    let st = s.stats();
    assert_eq!(st.gc_sections, 1);
    assert_eq!(st.gc_moved, 1);
    assert_eq!(st.value_sections, 2);
    assert_eq!(st.gc_set_aside.len(), 1, "{:?}", st.gc_set_aside);
    assert!(
        st.gc_set_aside[0].contains("00000000.v"),
        "{:?}",
        st.gc_set_aside
    );
    // A put is not held back.
    s.put(40u64, b"new").unwrap();
    assert_eq!(s.stats().gc_holds, 0);
    assert!(!shard.pressure());
    // Every other key reads back.
    for k in (0..32u64).filter(|&k| k != 3) {
        let want = if k == 20 { value(k, 0) } else { value(k, 1) };
        assert_eq!(s.get(k).unwrap().unwrap().to_vec(), want, "key {k}");
    }
    assert_eq!(s.get(40u64).unwrap().unwrap().to_vec(), b"new");
}

#[test]
fn gc_sets_aside_a_section_with_a_damaged_value() {
    let d = tempdir();
    let opts = small().direct_io(false).cache_bytes(0);
    let s = Store::open_with(d.path(), opts.clone()).unwrap();
    gc_layout(&s);
    // Flip a byte of key 3's value in its section file.
    let path = s.shards[0].value_path(0);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(DAMAGED.len())
        .position(|w| w == DAMAGED)
        .unwrap();
    bytes[at + 4] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    gc_sets_aside(&s);
    let e = s.get(3u64).unwrap_err();
    assert_eq!(e.damage(), Some(crate::error::Damage::Value), "{e:?}");
    // No collector thread runs: puts must not wait for one.
    s.shards[0].hold_for_gc(false);
    // Overwrites of every other key leave key 3 the one live record of the first key
    // section: collection moves the others and leaves it, without failing.
    for round in 2..5 {
        for k in (0..32u64).filter(|&k| k != 3) {
            s.put(k, value(k, round)).unwrap();
        }
    }
    s.settle();
    s.gc().unwrap();
    assert_eq!(s.get(31u64).unwrap().unwrap().to_vec(), value(31, 4));
    drop(s);
    // After a reopen the section is still there, still damaged, and set aside again.
    let s = Store::open_with(d.path(), opts).unwrap();
    assert!(matches!(s.get(3u64), Err(Error::Corrupt { .. })));
    s.gc().unwrap();
    assert_eq!(s.stats().gc_set_aside.len(), 1);
    assert_eq!(s.get(20u64).unwrap().unwrap().to_vec(), value(20, 4));
}

#[test]
fn gc_sets_aside_a_section_it_cannot_read() {
    let fs = SimFs::new();
    let s = Store::open_with("/db", sim(&fs).cache_bytes(0)).unwrap();
    gc_layout(&s);
    // The step's first I/O call is the whole-section read of section 0.
    fs.fail_call(0, crate::io::Fault::Eio);
    gc_sets_aside(&s);
    assert!(s.stats().gc_set_aside[0].contains("Input/output error"));
    // The read failed once; the value itself is sound.
    assert_eq!(s.get(3u64).unwrap().unwrap().to_vec(), DAMAGED);
}

/// A file system that panics when a shard's directory is touched: opening that shard panics.
#[derive(Debug)]
struct PanicsInShard(SimFs);

impl PanicsInShard {
    fn check(p: &std::path::Path) {
        if p.ends_with("shard-00") {
            panic!("injected panic in {}", p.display());
        }
    }
}

impl crate::io::Vfs for PanicsInShard {
    fn open(
        &self,
        path: &std::path::Path,
        mode: crate::io::Mode,
    ) -> io::Result<Arc<dyn crate::io::FileIo>> {
        self.0.open(path, mode)
    }
    fn create_dir(&self, path: &std::path::Path) -> io::Result<()> {
        Self::check(path);
        self.0.create_dir(path)
    }
    fn list(&self, dir: &std::path::Path) -> io::Result<Vec<String>> {
        Self::check(dir);
        self.0.list(dir)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove(&self, path: &std::path::Path) -> io::Result<()> {
        self.0.remove(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn lock(&self, dir: &std::path::Path) -> io::Result<Box<dyn std::any::Any + Send + Sync>> {
        self.0.lock(dir)
    }
}

#[test]
fn a_panic_opening_a_shard_is_reported_as_a_panic_not_corruption() {
    let vfs = Arc::new(PanicsInShard(SimFs::new()));
    let e = Store::open_with("/db", small().vfs(vfs)).unwrap_err();
    assert!(
        !matches!(e, Error::Corrupt { .. }),
        "a panic is not damage on disk: {e:?}"
    );
    assert!(
        matches!(&e, Error::Panicked { what } if what.contains("shard-00")),
        "{e:?}"
    );
}

#[test]
fn only_a_failed_sync_poisons() {
    let fs = SimFs::new();
    let s = Store::open_with("/db", sim(&fs)).unwrap();
    let eio = || io::Error::from_raw_os_error(libc::EIO);
    // Failures of other operations are returned, and writes go on.
    for op in ["remove", "rename", "read", "write", "open", "list"] {
        let r = s.shards[0].guard::<()>(Err(Error::io(op, "/db/shard-00/x", eio())));
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Io { .. }) && !e.poisons(), "{op}: {e:?}");
        s.put(1u64, b"a").unwrap();
    }
    // A failed directory fsync poisons, as a failed fdatasync or msync does (tested above).
    let r = s.shards[0].guard::<()>(Err(Error::io("fsync", "/db/shard-00", eio())));
    assert!(
        matches!(
            r,
            Err(Error::Sync {
                op: SyncOp::Fsync,
                ..
            })
        ),
        "{r:?}"
    );
    let e = s.put(2u64, b"b").unwrap_err();
    assert!(
        matches!(&e, Error::Failed { op: "fsync", path, .. } if path.ends_with("shard-00")),
        "{e:?}"
    );
}

/// Open says what kind of damage it refuses, in the error's type: a key section cut short of
/// its header page is a wrong length, a key section gone from the middle of the log is
/// missing, a shard directory gone is a lost shard.
#[test]
fn open_types_the_damage_it_refuses() {
    use crate::error::Damage;
    use crate::format::{keys_name, shard_name};
    let opts = small().direct_io(false).shards(2);
    let made = || {
        let d = tempdir();
        let s = Store::open_with(d.path(), opts.clone()).unwrap();
        for k in 0..120u64 {
            s.put(k, value(k, 0)).unwrap();
        }
        s.close().unwrap();
        d
    };
    let refused = |d: &std::path::Path| Store::open_with(d, opts.clone()).unwrap_err();

    let d = made();
    let keys = d.path().join(shard_name(0)).join(keys_name(0));
    let f = std::fs::OpenOptions::new().write(true).open(&keys).unwrap();
    f.set_len(100).unwrap();
    let e = refused(d.path());
    assert!(
        matches!(&e, Error::Corrupt { file, offset: 100, damage: Damage::Length, .. } if *file == keys),
        "{e:?}"
    );
    assert_eq!(e.damage(), Some(Damage::Length));

    let d = made();
    let keys = d.path().join(shard_name(1)).join(keys_name(1));
    std::fs::remove_file(&keys).unwrap();
    let e = refused(d.path());
    assert_eq!(e.damage(), Some(Damage::Missing), "{e:?}");

    let d = made();
    std::fs::remove_dir_all(d.path().join(shard_name(1))).unwrap();
    let e = refused(d.path());
    assert_eq!(e.damage(), Some(Damage::LostShard), "{e:?}");
}

/// Values of banks written out are read from the in-memory copies of their sections, without
/// a disk read: the latest sections within the budget, the older ones from disk; a section
/// removed by garbage collection takes its copy with it, and a new section given its number
/// is read right.
#[test]
fn what_was_written_is_read_from_memory_within_the_budget() {
    let fs = SimFs::new();
    let section = 16 * crate::format::SLOT_SIZE;
    // Copies of 3 sections (a quarter of the budget), no room in the key cache to speak of.
    let opts = || sim(&fs).cache_bytes(4 * 3 * section);
    let s = Store::open_with(std::path::Path::new("/db"), opts()).unwrap();
    // 10 sections' worth, written out in the background.
    for k in 0..160u64 {
        s.put(k, value(k, 0)).unwrap();
    }
    s.settle();
    let st = s.stats();
    assert_eq!(st.recent_sections, 3);
    assert_eq!(st.recent_bytes, 3 * section as u64);
    // Keys 112..160: the last three sections written (128..160 are in sections 8 and 9,
    // 112..128 in section 7) or still in a bank: no read of a value file. Each key is read
    // once, so the key cache answers none of them.
    let before = fs.calls();
    for k in (112..160u64).rev() {
        assert_eq!(s.get(k).unwrap().unwrap().to_vec(), value(k, 0), "key {k}");
    }
    assert_eq!(fs.calls() - before, 0, "recent values were read from disk");
    let got = s.get_many(&(112..160u64).collect::<Vec<_>>());
    assert!(got.iter().all(|r| r.is_ok()));
    assert_eq!(fs.calls() - before, 0);
    // The oldest sections are on disk only.
    let before = fs.calls();
    assert_eq!(s.get(3u64).unwrap().unwrap().to_vec(), value(3, 0));
    assert_eq!(fs.calls() - before, 1);
    // Overwrite everything twice and collect: sections are removed, their numbers given to
    // new ones, whose copies must hold the new values.
    for round in 1..3 {
        for k in 0..160u64 {
            s.put(k, value(k, round)).unwrap();
        }
    }
    s.settle();
    s.gc().unwrap();
    s.settle();
    assert!(s.stats().gc_sections > 0);
    for k in 0..160u64 {
        assert_eq!(s.get(k).unwrap().unwrap().to_vec(), value(k, 2), "key {k}");
    }
    assert!(s.stats().recent_sections <= 3);
    drop(s);
    // Without a cache, nothing is copied and the same reads go to disk.
    let s = Store::open_with(std::path::Path::new("/db"), sim(&fs).cache_bytes(0)).unwrap();
    assert_eq!(s.stats().recent_sections, 0);
    for k in 0..160u64 {
        s.put(k, value(k, 3)).unwrap();
    }
    s.settle();
    assert_eq!(s.stats().recent_sections, 0);
    let before = fs.calls();
    assert_eq!(s.get(120u64).unwrap().unwrap().to_vec(), value(120, 3));
    assert_eq!(fs.calls() - before, 1);
}

/// Garbage collection writes the live values it moves in key order, so that a scan afterwards
/// finds neighbouring keys in neighbouring slots and reads them together: a scan over keys
/// that were written in a scrambled order takes far fewer reads after collection.
#[test]
fn collection_moves_values_in_key_order_and_scans_then_read_less() {
    let fs = SimFs::new();
    let opts = small()
        .section_slots(1024)
        .cache_bytes(0)
        .vfs(Arc::new(fs.clone()));
    let s = Store::open_with(std::path::Path::new("/db"), opts).unwrap();
    let n = 16_384u64;
    // A permutation of 0..n: neighbouring keys land far apart in the sections.
    let scrambled = |i: u64| (i * 2_654_435_761) % n;
    for i in 0..n {
        let k = scrambled(i);
        s.put(k, value(k, 0)).unwrap();
    }
    // Three keys of four deleted, so that collection empties most sections (it stops once
    // the files are within `SPACE_LIMIT` of the live values); the live values still span
    // four sections.
    for k in (0..n).filter(|k| k % 4 != 0) {
        assert!(s.delete(k).unwrap());
    }
    s.settle();
    let scan = |s: &Store| -> (Vec<(u64, Vec<u8>)>, u64) {
        let before = fs.calls();
        let got = s
            .scan(1000u64..1400)
            .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
            .collect();
        (got, fs.calls() - before)
    };
    let want: Vec<(u64, Vec<u8>)> = (1000..1400u64)
        .step_by(4)
        .map(|k| (k, value(k, 0)))
        .collect();
    let (got, scattered) = scan(&s);
    assert_eq!(got, want);
    s.gc().unwrap();
    s.settle();
    assert!(s.stats().gc_sections > 0, "nothing was collected");
    let (got, sorted) = scan(&s);
    assert_eq!(got, want);
    // Collection sorts each section's live values (moved in record order: 76 reads).
    assert!(
        sorted * 2 < scattered,
        "a scan took {sorted} reads after collection, {scattered} before"
    );
}

/// A shard of some tens of thousands of keys spread over all 64 bits (0 and `u64::MAX`
/// among them) reopens: the build's bucket sort once shifted such keys by 64 bits.
#[test]
fn keys_over_the_whole_key_space_reopen() {
    let d = tempdir();
    let opts = || {
        Options::new()
            .shards(1)
            .gc(false)
            .durability(Durability::None)
    };
    let mut keys: Vec<u64> = vec![0, u64::MAX];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        keys.push(x);
    }
    {
        let s = Store::open_with(d.path(), opts()).unwrap();
        for &k in &keys {
            s.put(k, k.to_be_bytes()).unwrap();
        }
        s.close().unwrap();
    }
    let s = Store::open_with(d.path(), opts()).unwrap();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(s.len(), keys.len());
    for &k in &keys {
        assert_eq!(s.get(k).unwrap().as_deref(), Some(&k.to_be_bytes()[..]));
    }
    let got: Vec<u64> = s.iter().map(|r| r.unwrap().0.as_u64()).collect();
    assert_eq!(got, keys);
}
