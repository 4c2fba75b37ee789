//! Tests of check, dump and stats on sound stores (clean, unsynced, torn, collected), and the
//! helpers the damage tests share: a reference store of two shards with `section_slots(16)`
//! and byte-level damage.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::findings::PER_FILE;
use super::*;
use crate::format::{Header, KEYS_DATA_AT, Kind, RECORD_SIZE, keys_name, shard_of};
use crate::{Durability, Options, Store};

pub(super) const SLOTS: u32 = 16;
pub(super) const SHARDS: u32 = 2;

pub(super) fn opts() -> Options {
    Options::new()
        .section_slots(SLOTS)
        .shards(SHARDS)
        .gc(false)
        .durability(Durability::None)
}

/// The value the reference store puts at step `i`.
pub(super) fn value(i: usize) -> Vec<u8> {
    format!("value {i};").repeat(i % 4 + 1).into_bytes()
}

/// The key the reference store writes at step `i`: a put of `i % 30`, except every seventh
/// step deletes the key put just before. Each step writes one record.
pub(super) fn step(i: usize) -> (u64, bool) {
    if i % 7 == 6 {
        (((i - 1) % 30) as u64, false)
    } else {
        ((i % 30) as u64, true)
    }
}

/// Where step `i` of the reference store wrote: its shard, its record number there, and for a
/// put its value slot (values fill the shard's slots in order while nothing is collected).
pub(super) fn place(i: usize) -> (u32, u64, Option<u64>) {
    let (mut seqs, mut slots) = ([0u64; SHARDS as usize], [0u64; SHARDS as usize]);
    let mut at = (0, 0, None);
    for j in 0..=i {
        let (key, put) = step(j);
        let s = shard_of(key.to_be_bytes(), SHARDS) as usize;
        at = (s as u32, seqs[s], put.then_some(slots[s]));
        seqs[s] += 1;
        slots[s] += u64::from(put);
    }
    at
}

/// The records each shard holds after `n` steps.
pub(super) fn per_shard(n: usize) -> [u64; SHARDS as usize] {
    let mut seqs = [0; SHARDS as usize];
    for i in 0..n {
        seqs[place(i).0 as usize] += 1;
    }
    seqs
}

/// Builds the reference store in `dir`: `records` steps, synced after the first `synced`; the
/// rest stay unsynced (the store is dropped without a sync). Returns the content at the end.
pub(super) fn build(dir: &Path, records: usize, synced: usize) -> BTreeMap<u64, Vec<u8>> {
    let store = Store::open_with(dir, opts()).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..records {
        match step(i) {
            (k, true) => {
                store.put(k, value(i)).unwrap();
                model.insert(k, value(i));
            }
            (k, false) => {
                assert!(store.delete(k).unwrap());
                model.remove(&k);
            }
        }
        if i + 1 == synced {
            store.sync().unwrap();
        }
    }
    model
}

/// The reference store, all of it synced.
pub(super) fn synced_store() -> tempfile::TempDir {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 90);
    d
}

/// A header from its kind, section size and section.
pub(super) fn header((kind, section_slots, section): (Kind, u32, u32)) -> Header {
    Header {
        kind,
        section_slots,
        section,
    }
}

/// Directory of shard `shard`.
pub(super) fn shard_dir(dir: &Path, shard: u32) -> PathBuf {
    dir.join(crate::format::shard_name(shard))
}

/// File and offset of key record `seq` of shard `shard`.
pub(super) fn record_at(dir: &Path, shard: u32, seq: u64) -> (PathBuf, u64) {
    let s = u64::from(SLOTS);
    let path = shard_dir(dir, shard).join(keys_name((seq / s) as u32));
    let off = (KEYS_DATA_AT + (seq % s) as usize * RECORD_SIZE) as u64;
    (path, off)
}

/// Xors `mask` into the byte at `off` of `path`.
pub(super) fn flip(path: &Path, off: u64, mask: u8) {
    let mut b = fs::read(path).unwrap();
    b[off as usize] ^= mask;
    fs::write(path, b).unwrap();
}

/// Every file's bytes, shard directories included (`shard-00/name`).
pub(super) fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            for (inner, bytes) in snapshot(&e.path()) {
                all.insert(format!("{name}/{inner}"), bytes);
            }
        } else {
            all.insert(name, fs::read(e.path()).unwrap());
        }
    }
    all
}

/// The problems as (severity, kind, file as reports name it, offset), for comparing.
pub(super) fn found(r: &Report) -> Vec<(Severity, ProblemKind, String, u64)> {
    r.problems
        .iter()
        .map(|p| (p.severity, p.kind, show::short(&p.file), p.offset))
        .collect()
}

/// `shard-0s/name`, as reports name a shard's file.
pub(super) fn named(shard: u32, name: &str) -> String {
    format!("{}/{name}", crate::format::shard_name(shard))
}

/// Check's counts agree with the store's own stats once opened.
pub(super) fn agrees_with_store(r: &Report, store: &Store) {
    let st = store.stats();
    let c = &r.counts;
    assert_eq!(st.records, c.records, "{r}");
    assert_eq!(st.keys, c.live_keys, "{r}");
    assert_eq!(store.len() as u64, c.live_keys, "{r}");
    assert_eq!(st.slots_used, c.live_keys, "{r}");
    assert_eq!(st.shards, u64::from(SHARDS), "{r}");
}

#[test]
fn clean_store_has_no_problems() {
    let d = crate::testing::tempdir();
    let model = build(d.path(), 90, 90);
    let r = check(d.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    assert!(r.is_ok() && r.opens());
    let c = &r.counts;
    assert_eq!(c.records, 90);
    assert_eq!((c.puts, c.deletes), (78, 12));
    assert_eq!(c.live_keys, model.len() as u64);
    assert_eq!(c.dead_records, 90 - model.len() as u64);
    assert_eq!(c.values_checked, model.len() as u64);
    assert_eq!(
        (c.synced, c.unsynced, c.bad_records, c.dropped),
        (90, 0, 0, 0)
    );
    assert_eq!((c.section_slots, c.shards), (SLOTS, u64::from(SHARDS)));
    assert_eq!(r.shards.len(), SHARDS as usize);
    let each = per_shard(90);
    for (s, n) in r.shards.iter().zip(each) {
        assert_eq!((s.counts.records, s.mark.synced), (n, n), "{r}");
    }
    assert!(r.to_string().ends_with("0 errors, 0 warnings: ok"), "{r}");

    let (key_sections, value_sections) = (c.key_sections, c.value_sections);
    let store = Store::open_with(d.path(), opts()).unwrap();
    agrees_with_store(&r, &store);
    let st = store.stats();
    assert_eq!(
        (st.key_sections, st.value_sections),
        (key_sections, value_sections)
    );
}

#[test]
fn fresh_and_empty_stores_are_clean() {
    let d = crate::testing::tempdir();
    Store::open_with(d.path(), opts()).unwrap().close().unwrap();
    let r = check(d.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    assert_eq!((r.counts.records, r.shards.len()), (0, SHARDS as usize));
    let mut out = Vec::new();
    dump(d.path(), &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn unsynced_records_are_counted_not_reported() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 60);
    let r = check(d.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    assert_eq!((r.counts.records, r.counts.unsynced), (90, 30));
    assert_eq!(r.counts.synced, 60);
    let marks: u64 = r.shards.iter().map(|s| s.mark.synced).sum();
    assert_eq!(marks, 60);
}

#[test]
fn torn_tail_is_a_warning_and_open_agrees() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 60);
    let (shard, seq, _) = place(75);
    let (file, off) = record_at(d.path(), shard, seq);
    flip(&file, off + 3, 0x40);
    let r = check(d.path()).unwrap();
    let name = named(shard, &keys_name((seq / 16) as u32));
    let last = per_shard(90)[shard as usize];
    let mut want = vec![(Severity::Warning, ProblemKind::TornTail, name, off)];
    for n in seq / 16 + 1..=(last - 1) / 16 {
        let later = named(shard, &keys_name(n as u32));
        want.push((Severity::Warning, ProblemKind::TornTail, later, 0));
    }
    assert_eq!(found(&r), want, "{r}");
    let what = &r.problems[0].what;
    assert!(
        what.contains("torn unsynced tail") && what.contains("checksum"),
        "{r}"
    );
    assert!(r.is_ok() && r.opens());
    assert_eq!(r.counts.dropped, last - seq);
    assert_eq!(r.counts.records, 90 - (last - seq));

    let store = Store::open_with(d.path(), opts()).unwrap();
    agrees_with_store(&r, &store);
    assert!(store.stats().torn_tail.is_some());
    drop(store);
    assert!(check(d.path()).unwrap().problems.is_empty());
}

#[test]
fn check_dump_and_stats_never_modify_files() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 60);
    let (shard, seq, _) = place(20);
    let (file, off) = record_at(d.path(), shard, seq);
    flip(&file, off, 1); // corruption before the mark
    let (shard, seq, _) = place(80);
    let (file, off) = record_at(d.path(), shard, seq);
    flip(&file, off, 1); // a torn tail after it
    fs::write(shard_dir(d.path(), 1).join("00000009.v.tmp"), b"leftover").unwrap();
    let before = snapshot(d.path());
    let r = check(d.path()).unwrap();
    assert!(r.errors() > 0 && r.warnings() > 0, "{r}");
    dump(d.path(), &mut Vec::new()).unwrap();
    stats(d.path()).unwrap();
    assert_eq!(before, snapshot(d.path()));
}

#[test]
fn an_open_store_is_refused() {
    let d = crate::testing::tempdir();
    let store = Store::open_with(d.path(), opts()).unwrap();
    assert!(matches!(check(d.path()), Err(Error::Locked { .. })));
    assert!(matches!(
        dump(d.path(), &mut Vec::new()),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(stats(d.path()), Err(Error::Locked { .. })));
    drop(store);
    assert!(check(d.path()).is_ok());
}

#[test]
fn a_foreign_directory_is_refused_untouched() {
    let d = crate::testing::tempdir();
    fs::write(d.path().join("notes.txt"), b"hi").unwrap();
    let e = check(d.path()).unwrap_err();
    assert!(e.to_string().contains("not a toykv data directory"), "{e}");
    assert!(!d.path().join("LOCK").exists());
    assert!(check(d.path().join("nope")).is_err());
}

#[test]
fn dump_lists_records_in_log_order() {
    let d = crate::testing::tempdir();
    build(d.path(), 20, 10);
    let (shard, seq, _) = place(15);
    let (file, off) = record_at(d.path(), shard, seq);
    flip(&file, off + 9, 2); // sequence number: the torn tail starts here
    let mut out = Vec::new();
    dump(d.path(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The torn tail open drops is not listed.
    let dropped = per_shard(20)[shard as usize] - seq;
    assert_eq!(lines.len() as u64, 20 - dropped, "{text}");
    let find = |i: usize| {
        let (s, q, _) = place(i);
        let head = format!("{} {q} ", crate::format::shard_name(s));
        lines.iter().find(|l| l.starts_with(&head)).copied()
    };
    let line = |i: usize| find(i).unwrap();
    // Key 0's first put goes to slot 0 of its shard.
    assert!(line(0).ends_with(r#" put key=0000000000000000 "" slot=0 len=8 value="value 0;""#));
    let del = r#"del key=0000000000000005 "\x00\x00\x00\x00\x00\x00\x00\x05""#;
    assert!(line(6).ends_with(del), "{}", line(6));
    assert!(line(9).ends_with(r#"value="value 9;value 9;""#));
    assert!(line(12).ends_with("[unsynced]"), "{}", line(12));
    assert_eq!(find(15), None, "{text}");
    let _ = off;

    // With a numeric key mode recorded, keys show as numbers.
    fs::write(d.path().join("KEYMODE"), "numeric\n").unwrap();
    let mut out = Vec::new();
    dump(d.path(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(" put key=0000000000000000 0 slot="), "{text}");
}

#[test]
fn stats_count_without_reading_values() {
    let d = crate::testing::tempdir();
    let model = build(d.path(), 50, 40);
    let sm = stats(d.path()).unwrap();
    let c = &sm.counts;
    assert_eq!((c.records, c.unsynced, c.values_checked), (50, 10, 0));
    assert_eq!(c.live_keys, model.len() as u64);
    // STORE and LOCK, then each shard's sections and buffer.
    assert_eq!(
        c.files,
        2 + c.key_sections + c.value_sections + u64::from(SHARDS)
    );
    assert!(c.bytes > 0 && c.allocated > 0);
    let text = sm.to_string();
    assert!(text.contains("live keys             "), "{text}");
    assert!(text.contains("synced records        40"), "{text}");
    assert!(text.contains("\nshard-01 "), "{text}");
}

#[test]
fn section_slots_and_shards_read_the_store_file() {
    let d = crate::testing::tempdir();
    assert_eq!((section_slots(d.path()), shards(d.path())), (None, None));
    build(d.path(), 3, 3);
    let recorded = (section_slots(d.path()), shards(d.path()));
    assert_eq!(recorded, (Some(SLOTS), Some(SHARDS)));
}

/// Overwrites and deletes keys for `rounds` rounds, syncing and collecting after each.
fn churn(store: &Store, rounds: u64) {
    for round in 0..rounds {
        for k in 0..40u64 {
            match (k + round) % 3 {
                0 => drop(store.delete(k).unwrap()),
                _ => store.put(k, format!("{k} in round {round}")).unwrap(),
            }
        }
        store.sync().unwrap();
        store.gc().unwrap();
    }
}

#[test]
fn a_collected_store_is_clean_and_agrees_with_open() {
    let d = crate::testing::tempdir();
    let store = Store::open_with(d.path(), opts()).unwrap();
    churn(&store, 12);
    for k in 0..10u64 {
        store.put(k, b"after gc").unwrap(); // unsynced
    }
    let collected = store.stats();
    assert!(collected.gc_key_sections > 0, "{collected:?}");
    drop(store);
    let r = check(d.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    assert!(r.shards.iter().all(|s| s.mark.first > 0), "{r}");
    let mut out = Vec::new();
    dump(d.path(), &mut out).unwrap();
    let store = Store::open_with(d.path(), opts()).unwrap();
    agrees_with_store(&r, &store);
    assert_eq!(store.get(3u64).unwrap().as_deref(), Some(&b"after gc"[..]));
}

/// Churn leaves value sections whose fill windows went with their key sections: they hold
/// no live value and are removed without a scan.
#[test]
fn engine_collects_value_sections() {
    let d = crate::testing::tempdir();
    let store = Store::open_with(d.path(), opts()).unwrap();
    churn(&store, 12);
    let st = store.stats();
    assert!(st.gc_sections > 0, "{st:?}");
}

#[test]
fn long_lists_of_problems_are_cut_per_file_keeping_the_verdict() {
    use crate::format::{VALUES_DATA_AT, values_name};
    let d = crate::testing::tempdir();
    let store = Store::open_with(d.path(), opts().shards(1).section_slots(64)).unwrap();
    for k in 0..70u64 {
        store.put(k, b"abc").unwrap();
    }
    store.close().unwrap();
    // 60 damaged values in value section 0: open succeeds, gets fail.
    let v0 = shard_dir(d.path(), 0).join(values_name(0));
    let mut b = fs::read(&v0).unwrap();
    for i in 0..60 {
        b[VALUES_DATA_AT + i * 256] ^= 1;
    }
    fs::write(&v0, b).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(r.problems.len(), PER_FILE + 1, "{r}");
    let last = &r.problems[PER_FILE];
    assert_eq!(
        (last.kind, last.offset),
        (ProblemKind::Value, (VALUES_DATA_AT + 50 * 256) as u64)
    );
    assert!(last.what.contains("and 10 more problems"), "{r}");
    assert!(r.opens() && !r.is_ok());

    // And 60 damaged synced records: open fails.
    let k0 = shard_dir(d.path(), 0).join(keys_name(0));
    let mut b = fs::read(&k0).unwrap();
    for i in 0..60 {
        b[KEYS_DATA_AT + i * RECORD_SIZE] ^= 1;
    }
    fs::write(&k0, b).unwrap();
    let r = check(d.path()).unwrap();
    assert!(!r.opens(), "{r}");
    let cut = |p: &Problem| p.what.contains("and 10 more problems");
    assert!(r.problems.iter().any(cut), "{r}");
}

use ProblemKind as K;
use Severity::Error as E;

#[test]
fn a_lost_shard_is_an_error_and_open_refuses() {
    let d = synced_store();
    fs::remove_dir_all(shard_dir(d.path(), 1)).unwrap();
    let r = check(d.path()).unwrap();
    let want = vec![(E, K::LostShard, "shard-01".to_string(), 0)];
    assert_eq!(found(&r), want, "{r}");
    assert!(!r.opens() && !r.is_ok());
    let e = Store::open_with(d.path(), opts()).unwrap_err();
    assert!(e.to_string().contains("shard-01"), "{e}");
    // Nothing was recreated: the report is the same after the refused open.
    assert_eq!(found(&check(d.path()).unwrap()), want);
}

#[test]
fn store_file_damage_and_version_1_are_named() {
    let d = synced_store();
    flip(&d.path().join("STORE"), 0, 1);
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![(E, K::Header, "STORE".into(), 0)], "{r}");
    assert!(r.to_string().contains("not a toykv store file"), "{r}");
    assert!(Store::open_with(d.path(), opts()).is_err());

    let d = synced_store();
    let zero = header((Kind::Store, SLOTS, 0)).encode();
    fs::write(d.path().join("STORE"), zero).unwrap();
    let r = check(d.path()).unwrap();
    let text = r.to_string();
    assert!(
        !r.opens() && text.contains("store file names 0 shards"),
        "{r}"
    );
    assert_eq!(found(&r), vec![(E, K::Header, "STORE".into(), 0)], "{r}");
    assert!(Store::open_with(d.path(), opts()).is_err());

    // Without a store file, open refuses shards that hold data: their count is unknown, so
    // they are not opened.
    let d = synced_store();
    fs::remove_file(d.path().join("STORE")).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![(E, K::Missing, "STORE".into(), 0)], "{r}");
    assert_eq!(r.counts.records, 0);
    assert!(Store::open_with(d.path(), opts()).is_err());

    // Version 1: a flat directory with the buffer at its top.
    let d = crate::testing::tempdir();
    let v1 = fs::read(shard_dir(synced_store().path(), 0).join("buffer.b")).unwrap();
    fs::write(d.path().join("buffer.b"), v1).unwrap();
    fs::write(d.path().join("00000000.k"), b"").unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![(E, K::Header, "buffer.b".into(), 0)], "{r}");
    assert!(r.to_string().contains("format version 1"), "{r}");
    let e = Store::open_with(d.path(), opts()).unwrap_err();
    assert!(matches!(e, Error::Version { got: 1, .. }), "{e}");
}
