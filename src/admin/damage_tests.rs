//! Tests of check on damaged stores: each kind of damage is reported with its file, offset,
//! kind and severity, and check agrees with what `Store::open` does with the same bytes.

use std::fs;
use std::path::{Path, PathBuf};

use super::tests::{
    SHARDS, SLOTS, agrees_with_store, build, flip, found, header, named, opts, per_shard, place,
    record_at, shard_dir, snapshot, step, synced_store,
};
use super::*;
use crate::Store;
use crate::format::{
    HEADER_LEN, Header, Kind, MARK_A, MARK_B, PAGE, VALUES_DATA_AT, bank_at, keys_len, keys_name,
    values_name,
};

use ProblemKind as K;
use Severity::{Error as E, Warning as W};

/// File and offset of the value of the put at step `i`: its `.v` file if it exists, else the
/// bank of the buffer that holds its section.
fn value_at(dir: &Path, i: usize) -> (PathBuf, u64) {
    let (shard, _, slot) = place(i);
    let slot = slot.unwrap();
    let (section, index) = ((slot / u64::from(SLOTS)) as u32, slot % u64::from(SLOTS));
    let sdir = shard_dir(dir, shard);
    let v = sdir.join(values_name(section));
    if v.exists() {
        return (v, VALUES_DATA_AT as u64 + index * 256);
    }
    let buffer = sdir.join("buffer.b");
    let b = fs::read(&buffer).unwrap();
    for bank in 0..2 {
        let at = bank_at(SLOTS, bank);
        if let Ok(h) = Header::decode(&b[at..at + HEADER_LEN], Kind::Values)
            && h.section == section
        {
            return (buffer, (at + PAGE) as u64 + index * 256);
        }
    }
    panic!("the value of step {i} is nowhere");
}

fn truncate(path: &Path, len: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn every_damaged_synced_record_is_reported() {
    let d = synced_store();
    let (s1, q1, _) = place(5);
    let (s2, q2, _) = place(40);
    let (f1, o1) = record_at(d.path(), s1, q1);
    let (f2, o2) = record_at(d.path(), s2, q2);
    flip(&f1, o1 + 30, 0x01);
    flip(&f2, o2 + 22, 0x07); // kind
    let r = check(d.path()).unwrap();
    let mut want = vec![(show::short(&f1), o1), (show::short(&f2), o2)];
    want.sort();
    let mut got: Vec<_> = found(&r).into_iter().map(|p| (p.2, p.3)).collect();
    got.sort();
    assert_eq!(got, want, "{r}");
    assert!(r.problems.iter().all(|p| p.kind == K::Record), "{r}");
    assert!(
        r.to_string()
            .contains(&format!("key record {q1} was synced")),
        "{r}"
    );
    assert_eq!(r.counts.bad_records, 2);
    assert!(!r.opens());
    let e = Store::open_with(d.path(), opts()).unwrap_err().to_string();
    let at = |f: &PathBuf, o| format!("{} at offset {o}", f.display());
    assert!(e.contains(&at(&f1, o1)) || e.contains(&at(&f2, o2)), "{e}");
}

#[test]
fn each_record_of_a_zeroed_synced_run_is_a_problem() {
    let d = synced_store();
    let (file, off) = record_at(d.path(), 0, 3);
    let mut b = fs::read(&file).unwrap();
    b[off as usize..off as usize + 6 * 32].fill(0);
    fs::write(&file, b).unwrap();
    let r = check(d.path()).unwrap();
    let want: Vec<_> = (0..6)
        .map(|i| (E, K::Record, named(0, &keys_name(0)), off + i * 32))
        .collect();
    assert_eq!(found(&r), want, "{r}");
    assert!(
        r.problems[0].what.contains("key record 3 was synced")
            && r.problems[0].what.contains("never written"),
        "{r}"
    );
    assert_eq!(r.counts.bad_records, 6);
    // The other records of the shard are still read (and dumped).
    let c = &r.shards[0].counts;
    assert_eq!(c.records, per_shard(90)[0], "{r}");
    assert_eq!(c.puts + c.deletes, c.records - 6, "{r}");
    assert!(Store::open_with(d.path(), opts()).is_err());
}

#[test]
fn an_unsynced_hole_is_a_torn_tail() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 60);
    let seq = per_shard(60)[1] + 3;
    let (file, off) = record_at(d.path(), 1, seq);
    let mut b = fs::read(&file).unwrap();
    b[off as usize..off as usize + 32].fill(0);
    fs::write(&file, b).unwrap();
    let r = check(d.path()).unwrap();
    let want = (W, K::TornTail, show::short(&file), off);
    assert_eq!(found(&r)[0], want, "{r}");
    assert!(
        r.problems[0].what.contains("after a never-written one"),
        "{r}"
    );
    assert!(r.is_ok());
    let dropped = per_shard(90)[1] - seq - 1;
    assert_eq!(
        (r.counts.records, r.counts.dropped),
        (90 - dropped - 1, dropped)
    );
    let store = Store::open_with(d.path(), opts()).unwrap();
    agrees_with_store(&r, &store);
}

#[test]
fn damaged_live_values_are_errors_but_open_succeeds() {
    let d = synced_store();
    // Step 85 puts key 25 (live at the end); step 0 put key 0, overwritten at step 30: a dead
    // value is never read, so damage to it is not reported.
    let (live_file, live_off) = value_at(d.path(), 85);
    let (dead_file, dead_off) = value_at(d.path(), 0);
    flip(&live_file, live_off + 1, 0x20);
    flip(&dead_file, dead_off, 0x20);
    let r = check(d.path()).unwrap();
    let want = vec![(E, K::Value, show::short(&live_file), live_off)];
    assert_eq!(found(&r), want, "{r}");
    let what = &r.problems[0].what;
    assert!(what.contains("a get of this key fails"), "{r}");
    assert!(r.opens() && !r.is_ok());
    assert!(r.to_string().contains("open succeeds but"), "{r}");
    let store = Store::open_with(d.path(), opts()).unwrap();
    let got = store.get(25u64);
    assert!(matches!(got, Err(crate::Error::Corrupt { .. })));
    assert!(store.get(0u64).is_ok());
}

#[test]
fn an_unsynced_damaged_value_in_a_bank_ends_the_log() {
    let d = crate::testing::tempdir();
    build(d.path(), 90, 80);
    let (file, off) = value_at(d.path(), 85);
    assert!(file.ends_with("buffer.b"), "{}", file.display());
    flip(&file, off, 0x01);
    let r = check(d.path()).unwrap();
    let (shard, seq, _) = place(85);
    let (kfile, koff) = record_at(d.path(), shard, seq);
    let want = vec![(W, K::TornTail, show::short(&kfile), koff)];
    assert_eq!(found(&r), want, "{r}");
    let what = &r.problems[0].what;
    assert!(
        what.contains("its value in") && what.contains("buffer.b at offset"),
        "{r}"
    );
    let store = Store::open_with(d.path(), opts()).unwrap();
    agrees_with_store(&r, &store);
}

#[test]
fn bad_headers_are_named() {
    let d = synced_store();
    let k1 = shard_dir(d.path(), 0).join(keys_name(1));
    flip(&k1, 20, 0x01); // checksum fails
    let v0 = shard_dir(d.path(), 1).join(values_name(0));
    flip(&v0, 0, b't' ^ b'x'); // foreign magic
    let v1 = shard_dir(d.path(), 0).join(values_name(1));
    let mut h = header((Kind::Values, SLOTS, 1)).encode();
    h[8] = 9; // version 9, with a valid checksum
    let crc = crc32c::crc32c(&h[..HEADER_LEN - 4]);
    h[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    let mut b = fs::read(&v1).unwrap();
    b[..HEADER_LEN].copy_from_slice(&h);
    fs::write(&v1, b).unwrap();
    let r = check(d.path()).unwrap();
    let mut got = found(&r);
    got.sort_by(|a, b| a.2.cmp(&b.2));
    // Within a shard, open stops at its first refusal: shard 0's value sections are opened
    // before its key sections, so the damaged header of 00000001.k is not reached.
    let want = vec![
        (E, K::Header, named(0, &values_name(1)), 0),
        (E, K::Header, named(1, &values_name(0)), 0),
    ];
    assert_eq!(got, want, "{r}");
    let text = r.to_string();
    assert!(text.contains("not a toykv value section file"), "{text}");
    assert!(text.contains("format version 9"), "{text}");
    assert!(Store::open_with(d.path(), opts()).is_err());
}

#[test]
fn wrong_lengths_are_named() {
    // Open stops at the first refusal of a shard: one damaged file per store.
    let d = synced_store();
    let s0 = shard_dir(d.path(), 0);
    truncate(&s0.join(values_name(0)), 5000);
    let r = check(d.path()).unwrap();
    let want = vec![(E, K::Length, named(0, &values_name(0)), 5000)];
    assert_eq!(found(&r), want, "{r}");
    assert!(Store::open_with(d.path(), opts()).is_err());

    let d = synced_store();
    let s0 = shard_dir(d.path(), 0);
    truncate(&s0.join(keys_name(0)), keys_len(SLOTS) + 1);
    let r = check(d.path()).unwrap();
    let errors: Vec<_> = found(&r).into_iter().map(|p| (p.0, p.1, p.2)).collect();
    assert_eq!(errors, vec![(E, K::Length, named(0, &keys_name(0)))], "{r}");
    assert!(Store::open_with(d.path(), opts()).is_err());

    // The last key section cut after 3 of its records: open extends it, and the rest read
    // as never written, each synced one an error.
    let d = synced_store();
    let s0 = shard_dir(d.path(), 0);
    let n = per_shard(90)[0];
    let last = (n - 1) / 16;
    let kl = s0.join(keys_name(last as u32));
    truncate(&kl, PAGE as u64 + 96);
    let r = check(d.path()).unwrap();
    let (_, first_lost) = record_at(d.path(), 0, last * 16 + 3);
    let mut want = vec![];
    for seq in last * 16 + 3..n {
        let (_, off) = record_at(d.path(), 0, seq);
        want.push((E, K::Record, show::short(&kl), off));
    }
    want.push((W, K::Length, show::short(&kl), PAGE as u64 + 96));
    assert_eq!(found(&r), want, "{r}");
    let lost = format!("key record {} was synced", last * 16 + 3);
    assert!(r.problems[0].what.contains(&lost), "{r}");
    assert_eq!(r.problems[0].offset, first_lost);
    assert!(Store::open_with(d.path(), opts()).is_err());
}

#[test]
fn missing_files_are_named() {
    let d = synced_store();
    fs::remove_file(shard_dir(d.path(), 0).join(keys_name(1))).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r)[0],
        (E, K::Missing, named(0, &keys_name(1)), 0),
        "{r}"
    );
    assert!(!r.opens());
    assert!(Store::open_with(d.path(), opts()).is_err());

    let d = synced_store();
    let last = (per_shard(90)[1] - 1) / 16;
    fs::remove_file(shard_dir(d.path(), 1).join(keys_name(last as u32))).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![(E, K::Missing, named(1, &keys_name(last as u32)), 0)],
        "{r}"
    );
    let ends = format!("synced but the key log ends at {}", last * 16);
    assert!(r.problems[0].what.contains(&ends), "{r}");
    assert!(Store::open_with(d.path(), opts()).is_err());

    // A value section that live keys point into: the last put of a key, in a `.v` file.
    let d = synced_store();
    let live = |i: usize| step(i).1 && (i + 1..90).all(|j| step(j).0 != step(i).0);
    let (file, _) = (0..90)
        .filter(|&i| live(i))
        .map(|i| value_at(d.path(), i))
        .find(|(f, _)| f.extension().is_some_and(|e| e == "v"))
        .unwrap();
    assert!(
        file.extension().is_some_and(|e| e == "v"),
        "{}",
        file.display()
    );
    fs::remove_file(&file).unwrap();
    let r = check(d.path()).unwrap();
    let missing = found(&r).into_iter().find(|p| p.2 == show::short(&file));
    assert_eq!(missing, Some((E, K::Missing, show::short(&file), 0)), "{r}");
    assert!(r.to_string().contains("live keys point into it"), "{r}");
    assert!(Store::open_with(d.path(), opts()).is_err());

    let d = synced_store();
    fs::remove_file(shard_dir(d.path(), 1).join("buffer.b")).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r)[0],
        (E, K::Missing, named(1, "buffer.b"), 0),
        "{r}"
    );
    assert!(Store::open_with(d.path(), opts()).is_err());
}

#[test]
fn leftovers_foreign_names_marks_and_banks_are_warnings() {
    let d = synced_store();
    let store = Store::open_with(d.path(), opts()).unwrap();
    (100..110u64).for_each(|k| store.put(k, b"x").unwrap());
    store.close().unwrap(); // the second sync of each shard: both copies of its mark are valid
    let s0 = shard_dir(d.path(), 0);
    fs::write(s0.join("00000004.v.tmp"), b"half").unwrap();
    fs::write(s0.join("notes"), b"").unwrap();
    fs::write(d.path().join("KEYMODE"), b"octal\n").unwrap();
    // The newest copy of shard 0's mark is torn: the other one is used.
    let buffer = s0.join("buffer.b");
    let newest = {
        let b = fs::read(&buffer).unwrap();
        let mut page = [0u8; PAGE];
        page.copy_from_slice(&b[..PAGE]);
        Mark::newest(&page).1 ^ (MARK_A ^ MARK_B)
    };
    flip(&buffer, newest as u64 + 9, 0x01);
    let r = check(d.path()).unwrap();
    // Only what open repairs is reported: it ignores foreign names (and the key mode, which
    // is the server's), and reads the other copy of a torn mark.
    assert_eq!(
        found(&r),
        vec![(W, K::Name, named(0, "00000004.v.tmp"), 0)],
        "{r}"
    );
    assert!(r.is_ok() && r.opens());
    let store = Store::open_with(d.path(), opts()).unwrap();
    agrees_with_store(&r, &store);
    drop(store);

    // A write-out interrupted before its rename: a bank still holds the section's values.
    let d = synced_store();
    let r = check(d.path()).unwrap();
    let s = &r.shards[0];
    let full = s
        .banks
        .iter()
        .position(|b| b.is_some_and(|n| s.dir.join(values_name(n)).exists()));
    let bank = full.unwrap();
    let n = s.banks[bank].unwrap();
    fs::remove_file(s.dir.join(values_name(n))).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![(W, K::Missing, named(0, "buffer.b"), 0)],
        "{r}"
    );
    assert!(r.problems[0].what.contains("open writes it out"), "{r}");
    let store = Store::open_with(d.path(), opts()).unwrap();
    agrees_with_store(&r, &store);
    drop(store);
    assert!(s.dir.join(values_name(n)).exists());
}

/// A small xorshift generator, so the damage is the same on every run.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for (name, bytes) in snapshot(from) {
        let path = to.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
}

/// Random damage (flipped bytes, truncations, removed files and shards) to copies of a store:
/// check never fails or panics, and says open succeeds exactly when it does, with the same
/// log length and live keys. (Removing `STORE` is left out: see
/// `store_file_damage_and_version_1_are_named`.)
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
            match rng.below(20) {
                0 | 1 => {
                    let to = rng.below(len + 1);
                    what.push(format!("truncate {name} to {to}"));
                    if let Ok(f) = fs::File::options().write(true).open(&path) {
                        f.set_len(to).unwrap();
                    }
                }
                2 | 3 if name != "LOCK" && name != "STORE" => {
                    what.push(format!("remove {name}"));
                    let _ = fs::remove_file(&path);
                }
                4 => {
                    let shard = shard_dir(&dir, rng.below(u64::from(SHARDS)) as u32);
                    what.push(format!("remove {}", shard.display()));
                    let _ = fs::remove_dir_all(&shard);
                }
                _ => {
                    // Mostly where it matters: headers, marks, banks and records.
                    let off = match rng.below(5) {
                        0 => rng.below(HEADER_LEN as u64),
                        1 => PAGE as u64 + rng.below(16 * 32),
                        2 => [MARK_A, MARK_B][rng.below(2) as usize] as u64 + rng.below(24),
                        3 => bank_at(SLOTS, rng.below(2) as usize) as u64 + rng.below(64),
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
                let st = store.stats();
                assert_eq!(st.records, r.counts.records, "case {case} {what:?}\n{r}");
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
        "STORE",
        "shard-00/buffer.b",
        "shard-00/00000000.k",
        "shard-00/00000001.k",
    ];
    let names = [&names[..], &["shard-00/00000000.v", "shard-01/ffffffff.v"]].concat();
    for case in 0..200 {
        let dir = base.path().join(format!("g{case}"));
        fs::create_dir_all(dir.join("shard-00")).unwrap();
        fs::create_dir_all(dir.join("shard-01")).unwrap();
        for &name in &names {
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
                    Some("k") => Kind::Keys,
                    Some("v") => Kind::Values,
                    Some("b") => Kind::Buffer,
                    _ => Kind::Store,
                };
                let section_slots = [16, 64, 1 << 24][rng.below(3) as usize];
                let section = u32::from(kind == Kind::Store) * (1 + rng.below(3) as u32);
                let h = (kind, section_slots, section);
                b[..HEADER_LEN].copy_from_slice(&header(h).encode());
            }
            fs::write(dir.join(name), b).unwrap();
        }
        if let Ok(r) = check(&dir) {
            let _ = r.to_string();
            dump(&dir, &mut Vec::new()).unwrap();
            let _ = stats(&dir).unwrap().to_string();
        }
    }
}
