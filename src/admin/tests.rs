//! Tests of check, dump and stats on sound stores (clean, unsynced, torn), and the helpers the
//! damage tests share: a reference store with `section_slots(16)` and byte-level damage.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::format::{KEYS_DATA_AT, RECORD_SIZE, keys_name};
use crate::{Options, Store};

pub(super) const SLOTS: u32 = 16;

pub(super) fn opts() -> Options {
    Options::new().section_slots(SLOTS)
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

/// File and offset of key record `seq`.
pub(super) fn record_at(dir: &Path, seq: u64) -> (PathBuf, u64) {
    let s = u64::from(SLOTS);
    let path = dir.join(keys_name((seq / s) as u32));
    (
        path,
        (KEYS_DATA_AT + (seq % s) as usize * RECORD_SIZE) as u64,
    )
}

/// Xors `mask` into the byte at `off` of `path`.
pub(super) fn flip(path: &Path, off: u64, mask: u8) {
    let mut b = fs::read(path).unwrap();
    b[off as usize] ^= mask;
    fs::write(path, b).unwrap();
}

/// Every file's bytes.
pub(super) fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

/// The problems as (severity, kind, file name, offset), for comparing.
pub(super) fn found(r: &Report) -> Vec<(Severity, ProblemKind, String, u64)> {
    r.problems
        .iter()
        .map(|p| {
            let name = p.file.file_name().unwrap().to_string_lossy().into_owned();
            (p.severity, p.kind, name, p.offset)
        })
        .collect()
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
    assert_eq!(c.values_checked, 78);
    assert_eq!(
        (c.mark.synced, c.unsynced, c.bad_records, c.dropped),
        (90, 0, 0, 0)
    );
    assert_eq!((c.key_sections, c.value_sections, c.filling), (6, 4, 4));
    assert_eq!(c.slots_used, 78);
    assert_eq!(c.section_slots, SLOTS);
    assert!(r.to_string().ends_with("0 errors, 0 warnings: ok"), "{r}");

    // The store agrees.
    let store = Store::open_with(d.path(), opts()).unwrap();
    let st = store.stats();
    assert_eq!(
        (st.records, st.keys, st.slots_used),
        (90, model.len() as u64, 78)
    );
}

#[test]
fn fresh_and_empty_stores_are_clean() {
    let d = crate::testing::tempdir();
    Store::open_with(d.path(), opts()).unwrap().close().unwrap();
    let r = check(d.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    assert_eq!(r.counts.records, 0);
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
    assert_eq!(r.counts.mark.synced, 60);
}

#[test]
fn torn_tail_is_a_warning_and_open_agrees() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 60);
    let (file, off) = record_at(d.path(), 75);
    flip(&file, off + 3, 0x40);
    let r = check(d.path()).unwrap();
    let next = d.path().join(keys_name(5));
    assert_eq!(
        found(&r),
        vec![
            (Severity::Warning, ProblemKind::TornTail, keys_name(4), off),
            (Severity::Warning, ProblemKind::TornTail, keys_name(5), 0),
        ],
        "{r}"
    );
    assert!(
        r.problems[0].what.contains("would be dropped at open"),
        "{r}"
    );
    assert!(r.problems[0].what.contains("checksum"), "{r}");
    assert!(r.is_ok() && r.opens());
    assert_eq!((r.counts.records, r.counts.dropped), (75, 15));
    assert!(next.exists());

    let store = Store::open_with(d.path(), opts()).unwrap();
    assert_eq!(store.stats().records, 75);
    assert!(store.stats().torn_tail.is_some());
    drop(store);
    assert!(!next.exists());
    assert!(check(d.path()).unwrap().problems.is_empty());
}

#[test]
fn check_dump_and_stats_never_modify_files() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 60);
    let (file, off) = record_at(d.path(), 20);
    flip(&file, off, 1); // corruption before the mark
    let (file, off) = record_at(d.path(), 70);
    flip(&file, off, 1); // a torn tail after it
    fs::write(d.path().join("00000009.v.tmp"), b"leftover").unwrap();
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
    let (file, off) = record_at(d.path(), 15);
    flip(&file, off + 9, 2); // sequence number: the torn tail starts here
    let mut out = Vec::new();
    dump(d.path(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "{text}");
    assert_eq!(
        lines[0],
        r#"0 put key=0000000000000000 "" slot=0 len=8 value="value 0;""#
    );
    assert_eq!(
        lines[6],
        r#"6 del key=0000000000000005 "\x00\x00\x00\x00\x00\x00\x00\x05""#
    );
    assert!(
        lines[9].ends_with(r#"value="value 9;value 9;""#),
        "{}",
        lines[9]
    );
    assert!(lines[10].ends_with("[unsynced]"), "{}", lines[10]);
    assert!(
        lines[15].starts_with("15 bad 00000000.k offset 4576: "),
        "{}",
        lines[15]
    );
    assert!(lines[15].ends_with("[dropped at open]"), "{}", lines[15]);
    assert!(lines[16].ends_with("[dropped at open]"), "{}", lines[16]);

    // With a numeric key mode recorded, keys show as numbers.
    fs::write(d.path().join("KEYMODE"), "numeric\n").unwrap();
    let mut out = Vec::new();
    dump(d.path(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("0 put key=0000000000000000 0 slot=0"),
        "{text}"
    );
}

#[test]
fn stats_count_without_reading_values() {
    let d = crate::testing::tempdir();
    let model = build(d.path(), 50, 40);
    let c = stats(d.path()).unwrap();
    assert_eq!((c.records, c.unsynced, c.values_checked), (50, 10, 0));
    assert_eq!(c.live_keys, model.len() as u64);
    assert_eq!(c.files, 4 + 2 + 1 + 1); // 4 key sections, 2 value sections, buffer, LOCK
    assert!(c.bytes > 0 && c.allocated > 0);
    let text = c.to_string();
    assert!(text.contains("live keys             "), "{text}");
    assert!(text.contains("sync mark             40 records"), "{text}");
}

#[test]
fn section_slots_reads_the_buffer_header() {
    let d = crate::testing::tempdir();
    assert_eq!(section_slots(d.path()), None);
    build(d.path(), 3, 3);
    assert_eq!(section_slots(d.path()), Some(SLOTS));
}

#[test]
fn long_lists_of_problems_are_cut_per_file_keeping_the_verdict() {
    use crate::format::{VALUES_DATA_AT, values_name};
    let d = crate::testing::tempdir();
    let store = Store::open_with(d.path(), Options::new().section_slots(64)).unwrap();
    for k in 0..70u64 {
        store.put(k, b"abc").unwrap();
    }
    store.close().unwrap();
    // 60 damaged values in value section 0: open succeeds, gets fail.
    let v0 = d.path().join(values_name(0));
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
    let k0 = d.path().join(keys_name(0));
    let mut b = fs::read(&k0).unwrap();
    for i in 0..60 {
        b[KEYS_DATA_AT + i * RECORD_SIZE] ^= 1;
    }
    fs::write(&k0, b).unwrap();
    let r = check(d.path()).unwrap();
    assert!(!r.opens(), "{r}");
    assert!(
        r.problems
            .iter()
            .any(|p| p.what.contains("and 10 more problems"))
    );
}
