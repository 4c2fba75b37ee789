//! Tests of check on damaged stores: each kind of damage is reported with its file, offset,
//! kind and severity, and check agrees with what `Store::open` does with the same bytes.

use std::fs;
use std::path::{Path, PathBuf};

use super::tests::{SLOTS, build, flip, found, opts, record_at, snapshot, step};
use super::*;
use crate::Store;
use crate::format::{
    BUFFER_DATA_AT, HEADER_LEN, MARK_A, PAGE, VALUES_DATA_AT, keys_len, keys_name, values_name,
};

use ProblemKind as K;
use Severity::{Error as E, Warning as W};

/// The value slot of the put at step `seq` of the reference store.
fn slot_of(seq: usize) -> u64 {
    (0..seq).filter(|&i| step(i).1).count() as u64
}

/// File and offset of the value of the put at step `seq`, given the section being filled.
fn value_at(dir: &Path, seq: usize, filling: u64) -> (PathBuf, u64) {
    let slot = slot_of(seq);
    let (section, index) = (slot / u64::from(SLOTS), slot % u64::from(SLOTS));
    if section == filling {
        (dir.join("buffer.b"), BUFFER_DATA_AT as u64 + index * 256)
    } else {
        let path = dir.join(values_name(section as u32));
        (path, VALUES_DATA_AT as u64 + index * 256)
    }
}

fn synced_store() -> tempfile::TempDir {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 90);
    d
}

#[test]
fn every_damaged_synced_record_is_reported() {
    let d = synced_store();
    let (f1, o1) = record_at(d.path(), 5);
    let (f2, o2) = record_at(d.path(), 40);
    flip(&f1, o1 + 30, 0x01);
    flip(&f2, o2 + 22, 0x07); // kind
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![
            (E, K::Record, keys_name(0), o1),
            (E, K::Record, keys_name(2), o2)
        ],
        "{r}"
    );
    assert!(
        r.problems[0].what.contains("key record 5 was synced"),
        "{r}"
    );
    assert_eq!(r.counts.bad_records, 2);
    assert!(!r.opens());
    let e = Store::open_with(d.path(), opts()).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("{} at offset {o1}", f1.display())),
        "{e}"
    );
}

#[test]
fn a_zeroed_run_of_synced_records_is_one_problem() {
    let d = synced_store();
    let (file, off) = record_at(d.path(), 3);
    let mut b = fs::read(&file).unwrap();
    b[off as usize..off as usize + 6 * 32].fill(0);
    fs::write(&file, b).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![(E, K::Record, keys_name(0), off)], "{r}");
    assert!(
        r.problems[0].what.contains("key records 3..9 were synced"),
        "{r}"
    );
    assert_eq!(r.counts.bad_records, 6);
}

#[test]
fn an_unsynced_hole_is_a_torn_tail() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 60);
    let (file, off) = record_at(d.path(), 70);
    let mut b = fs::read(&file).unwrap();
    b[off as usize..off as usize + 32].fill(0);
    fs::write(&file, b).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r)[0], (W, K::TornTail, keys_name(4), off), "{r}");
    assert!(r.problems[0].what.contains("later ones were"), "{r}");
    assert!(r.is_ok());
    assert_eq!((r.counts.records, r.counts.dropped), (70, 19));
}

#[test]
fn damaged_values_are_errors_but_open_succeeds() {
    let d = synced_store();
    let filling = 4;
    // Step 85 puts key 25 (live at the end); step 0 put key 0, overwritten at step 30.
    let (live_file, live_off) = value_at(d.path(), 85, filling);
    let (dead_file, dead_off) = value_at(d.path(), 0, filling);
    flip(&live_file, live_off + 1, 0x20);
    flip(&dead_file, dead_off, 0x20);
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![
            (E, K::Value, values_name(0), dead_off),
            (E, K::Value, "buffer.b".into(), live_off)
        ],
        "{r}"
    );
    assert!(r.problems[0].what.contains("older version"), "{r}");
    assert!(
        r.problems[1].what.contains("a get of this key fails"),
        "{r}"
    );
    assert!(r.opens() && !r.is_ok());
    assert!(
        r.to_string()
            .contains("open succeeds but gets of damaged values fail")
    );
    let store = Store::open_with(d.path(), opts()).unwrap();
    assert!(matches!(
        store.get(25u64),
        Err(crate::Error::Corrupt { .. })
    ));
    assert!(store.get(0u64).is_ok());
}

#[test]
fn an_unsynced_damaged_value_in_the_buffer_ends_the_log() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 80);
    let (file, off) = value_at(d.path(), 85, 4);
    flip(&file, off, 0x01);
    let r = check(d.path()).unwrap();
    let (kfile, koff) = record_at(d.path(), 85);
    let kname = kfile.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(found(&r), vec![(W, K::TornTail, kname, koff)], "{r}");
    assert!(r.problems[0].what.contains("its value in buffer.b"), "{r}");
    assert_eq!(
        Store::open_with(d.path(), opts()).unwrap().stats().records,
        85
    );
}

#[test]
fn bad_headers_are_named() {
    let d = synced_store();
    flip(&d.path().join(keys_name(1)), 20, 0x01); // checksum fails
    let v0 = d.path().join(values_name(0));
    flip(&v0, 0, b't' ^ b'x'); // foreign magic
    let v1 = d.path().join(values_name(1));
    let mut h = crate::format::Header {
        kind: crate::format::Kind::Values,
        section_slots: SLOTS,
        section: 1,
    }
    .encode();
    h[8] = 9; // version 9, with a valid checksum
    let crc = crc32c::crc32c(&h[..HEADER_LEN - 4]);
    h[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    let mut b = fs::read(&v1).unwrap();
    b[..HEADER_LEN].copy_from_slice(&h);
    fs::write(&v1, b).unwrap();
    let r = check(d.path()).unwrap();
    let mut got = found(&r);
    got.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        got,
        vec![
            (E, K::Header, values_name(0), 0),
            (E, K::Header, keys_name(1), 0),
            (E, K::Header, values_name(1), 0),
        ],
        "{r}"
    );
    let text = r.to_string();
    assert!(text.contains("header checksum"), "{text}");
    assert!(text.contains("not a toykv value section file"), "{text}");
    assert!(text.contains("format version 9"), "{text}");
    assert!(Store::open_with(d.path(), opts()).is_err());
}

#[test]
fn wrong_lengths_are_named() {
    let d = synced_store();
    let v2 = d.path().join(values_name(2));
    fs::File::options()
        .write(true)
        .open(&v2)
        .unwrap()
        .set_len(5000)
        .unwrap();
    let k1 = d.path().join(keys_name(1));
    fs::File::options()
        .write(true)
        .open(&k1)
        .unwrap()
        .set_len(keys_len(SLOTS) + 1)
        .unwrap();
    // Key section 5 cut after 3 of its 10 records: the rest read as never written.
    let k5 = d.path().join(keys_name(5));
    fs::File::options()
        .write(true)
        .open(&k5)
        .unwrap()
        .set_len(PAGE as u64 + 96)
        .unwrap();
    let r = check(d.path()).unwrap();
    let (_, first_lost) = record_at(d.path(), 83);
    assert_eq!(
        found(&r),
        vec![
            (E, K::Length, values_name(2), 5000),
            (E, K::Length, keys_name(1), keys_len(SLOTS)),
            (W, K::Length, keys_name(5), PAGE as u64 + 96),
            (E, K::Record, keys_name(5), first_lost),
        ],
        "{r}"
    );
    assert!(
        r.problems[3]
            .what
            .contains("key records 83..90 were synced"),
        "{r}"
    );
}

#[test]
fn missing_files_are_named() {
    let d = synced_store();
    fs::remove_file(d.path().join(keys_name(2))).unwrap();
    fs::remove_file(d.path().join(values_name(1))).unwrap();
    let r = check(d.path()).unwrap();
    let got = found(&r);
    assert_eq!(got[0], (E, K::Missing, keys_name(2), 0), "{r}");
    // Every synced put whose value was in section 1 (records 18..=36) is reported.
    let (_, first) = record_at(d.path(), 18);
    assert_eq!(got[1], (E, K::Record, keys_name(1), first), "{r}");
    assert!(r.problems[1].what.contains("00000001.v is missing"), "{r}");
    assert!(!r.opens());

    let d = synced_store();
    fs::remove_file(d.path().join(keys_name(5))).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![(E, K::Missing, keys_name(5), 0)], "{r}");
    assert!(
        r.problems[0]
            .what
            .contains("synced but the key log ends at 80"),
        "{r}"
    );

    let d = synced_store();
    fs::remove_file(d.path().join(values_name(3))).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r)[0], (E, K::Missing, values_name(3), 0), "{r}");
    assert!(r.problems[0].what.contains("moved on to section 4"), "{r}");

    let d = synced_store();
    fs::remove_file(d.path().join("buffer.b")).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r)[0], (E, K::Missing, "buffer.b".into(), 0), "{r}");
}

#[test]
fn leftovers_foreign_names_marks_and_templates_are_warnings() {
    let d = synced_store();
    let store = Store::open_with(d.path(), opts()).unwrap();
    store.put(99u64, b"x").unwrap();
    store.sync().unwrap(); // the second sync: copy B says 91, copy A still 90
    drop(store);
    fs::write(d.path().join("00000004.v.tmp"), b"half").unwrap();
    fs::write(d.path().join("notes"), b"").unwrap();
    fs::write(d.path().join("KEYMODE"), b"octal\n").unwrap();
    let buffer = d.path().join("buffer.b");
    // The copy written last is torn: the other one is used.
    let newest = {
        let b = fs::read(&buffer).unwrap();
        let mut page = [0u8; PAGE];
        page.copy_from_slice(&b[..PAGE]);
        Mark::newest(&page).1 ^ (MARK_A ^ crate::format::MARK_B)
    };
    flip(&buffer, newest as u64 + 9, 0x01);
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![
            (W, K::Name, "00000004.v.tmp".into(), 0),
            (W, K::Name, "KEYMODE".into(), 0),
            (W, K::Name, "notes".into(), 0),
            (W, K::SyncMark, "buffer.b".into(), newest as u64),
        ],
        "{r}"
    );
    assert_eq!((r.counts.mark.synced, r.counts.records), (90, 91));
    assert!(r.is_ok() && r.opens());

    // A template still naming the section before: a flush interrupted after its rename.
    let d = synced_store();
    let t = crate::format::Header {
        kind: crate::format::Kind::Values,
        section_slots: SLOTS,
        section: 3,
    };
    let mut b = fs::read(buffer_of(&d)).unwrap();
    b[PAGE..PAGE + HEADER_LEN].copy_from_slice(&t.encode());
    fs::write(buffer_of(&d), b).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![(W, K::Header, "buffer.b".into(), PAGE as u64)],
        "{r}"
    );
}

fn buffer_of(d: &tempfile::TempDir) -> PathBuf {
    d.path().join("buffer.b")
}

/// A small xorshift generator, so the damage is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for (name, bytes) in snapshot(from) {
        fs::write(to.join(name), bytes).unwrap();
    }
}

/// Random damage (flipped bytes, truncations, removed files) to copies of a store: check never
/// fails or panics, and says open succeeds exactly when it does, with the same log length.
#[test]
fn check_agrees_with_open_on_random_damage() {
    let base = crate::testing::tempdir();
    let reference = base.path().join("reference");
    build(&reference, 90, 70);
    let files: Vec<(String, Vec<u8>)> = snapshot(&reference).into_iter().collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut opened, mut refused) = (0, 0);
    for case in 0..250 {
        let dir = base.path().join(format!("case{case}"));
        copy_dir(&reference, &dir);
        let mut what = Vec::new();
        for _ in 0..=rng.below(3) {
            let (name, bytes) = &files[rng.below(files.len() as u64) as usize];
            let path = dir.join(name);
            let len = bytes.len() as u64;
            match rng.below(10) {
                0 => {
                    let to = rng.below(len + 1);
                    what.push(format!("truncate {name} to {to}"));
                    if let Ok(f) = fs::File::options().write(true).open(&path) {
                        f.set_len(to).unwrap();
                    }
                }
                1 if name != "LOCK" => {
                    what.push(format!("remove {name}"));
                    let _ = fs::remove_file(&path);
                }
                _ => {
                    // Mostly where it matters: headers, marks and records.
                    let off = match rng.below(3) {
                        0 => rng.below(HEADER_LEN as u64),
                        1 => PAGE as u64 + rng.below(16 * 32),
                        _ => rng.below(len),
                    };
                    let mask = 1 + rng.below(255) as u8;
                    what.push(format!("flip {name} at {off}"));
                    if let Ok(mut b) = fs::read(&path)
                        && let Some(x) = b.get_mut(off as usize)
                    {
                        *x ^= mask;
                        fs::write(&path, b).unwrap();
                    }
                }
            }
        }
        let before = snapshot(&dir);
        let r = check(&dir).unwrap_or_else(|e| panic!("case {case} {what:?}: {e}"));
        assert_eq!(
            before,
            snapshot(&dir),
            "case {case} {what:?}: check changed files"
        );
        match Store::open_with(&dir, opts()) {
            Ok(store) => {
                opened += 1;
                assert!(r.opens(), "case {case} {what:?}: open succeeded but\n{r}");
                assert_eq!(
                    store.stats().records,
                    r.counts.records,
                    "case {case} {what:?}\n{r}"
                );
                assert_eq!(
                    store.len() as u64,
                    r.counts.live_keys,
                    "case {case} {what:?}"
                );
            }
            Err(e) => {
                refused += 1;
                assert!(
                    !r.opens(),
                    "case {case} {what:?}: open failed ({e}) but\n{r}"
                );
            }
        }
    }
    assert!(
        opened > 50 && refused > 50,
        "opened {opened}, refused {refused}"
    );
}

/// Garbage of every length under toykv names: check reports, never panics.
#[test]
fn garbage_files_never_panic() {
    let base = crate::testing::tempdir();
    let mut rng = Rng(12345);
    let names = [
        "buffer.b",
        "00000000.k",
        "00000001.k",
        "00000000.v",
        "ffffffff.v",
    ];
    for case in 0..200 {
        let dir = base.path().join(format!("g{case}"));
        fs::create_dir(&dir).unwrap();
        for name in names {
            if rng.below(3) == 0 {
                continue;
            }
            let len = match rng.below(4) {
                0 => rng.below(100),
                1 => rng.below(2 * PAGE as u64 + 600),
                _ => rng.below(keys_len(SLOTS) * 3),
            };
            let mut b: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
            if rng.below(2) == 0 && b.len() >= HEADER_LEN {
                // A valid header under some of the garbage.
                let kind = match name.rsplit('.').next() {
                    Some("k") => crate::format::Kind::Keys,
                    Some("v") => crate::format::Kind::Values,
                    _ => crate::format::Kind::Buffer,
                };
                let section_slots = [16, 64, 1 << 24][rng.below(3) as usize];
                let h = crate::format::Header {
                    kind,
                    section_slots,
                    section: 0,
                };
                b[..HEADER_LEN].copy_from_slice(&h.encode());
            }
            fs::write(dir.join(name), b).unwrap();
        }
        if let Ok(r) = check(&dir) {
            let _ = r.to_string();
            dump(&dir, &mut Vec::new()).unwrap();
        }
    }
}
