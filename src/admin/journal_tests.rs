//! Tests of check and stats on the journal of durability `always`: the entries open would
//! replay are counted, and damage to the journal is reported as open treats it.

use std::fs;
use std::path::{Path, PathBuf};

use super::damage_tests::Rng;
use super::tests::{found, opts, snapshot, step, value};
use super::*;
use crate::format::journal::{BLOCK, FRAME_HEADER_LEN, FRAMES_AT, Frame, JournalHeader};
use crate::{Durability, Options, Store};

use ProblemKind as K;
use Severity::{Error as E, Warning as W};

/// The journal's length in these tests: 14 blocks of frames.
const LEN: u64 = 64 << 10;

fn always() -> Options {
    opts().durability(Durability::Always).journal_bytes(LEN)
}

fn journal(dir: &Path) -> PathBuf {
    dir.join("journal")
}

/// A store of durability `always` that wrote the first `ops` steps of the reference store
/// (one commit each) and was dropped without close: the journal holds them.
fn journaled(ops: usize) -> tempfile::TempDir {
    let d = crate::testing::tempdir();
    let store = Store::open_with(d.path(), always()).unwrap();
    for i in 0..ops {
        match step(i) {
            (k, true) => store.put(k, value(i)).unwrap(),
            (k, false) => assert!(store.delete(k).unwrap()),
        }
    }
    drop(store);
    d
}

/// The current header and the offsets of the current epoch's frames, read as open does.
fn frames_of(dir: &Path) -> (JournalHeader, Vec<(u64, Frame)>) {
    let b = fs::read(journal(dir)).unwrap();
    let slots = b
        .chunks(BLOCK)
        .take(2)
        .filter_map(|s| JournalHeader::decode(s).ok());
    let h = slots.max_by_key(|h| h.epoch).unwrap();
    let (mut at, mut out) = (FRAMES_AT, Vec::new());
    while let Some(f) = Frame::peek(&b[at as usize..], h.epoch, out.len() as u64) {
        out.push((at, f));
        at += f.blocks() * BLOCK as u64;
    }
    (h, out)
}

fn journal_of(r: &Report) -> &JournalReport {
    r.journal
        .as_ref()
        .unwrap_or_else(|| panic!("no journal in\n{r}"))
}

#[test]
fn entries_to_replay_are_counted_and_open_replays_them() {
    let d = journaled(10);
    let r = check(d.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    assert!(r.is_ok() && r.opens());
    let j = journal_of(&r);
    assert_eq!((j.len, j.epoch, j.torn), (LEN, 1, false), "{r}");
    assert_eq!(
        (j.frames, j.entries, j.puts, j.deletes),
        (10, 10, 9, 1),
        "{r}"
    );
    assert_eq!(frames_of(d.path()).1.len(), 10);
    let line = "  journal: 64 KiB, epoch 1, 10 frames / 10 entries to replay at open \
                (9 puts, 1 deletes)\n";
    assert!(r.to_string().contains(line), "{r}");
    let s = stats(d.path()).unwrap();
    assert_eq!(s.journal.as_ref(), Some(j));
    let row = "journal               64 KiB, epoch 1, 10 frames / 10 entries";
    assert!(s.to_string().contains(row), "{s}");

    // Open replays every entry (as new records after the shards' own, which check counts as
    // it ran the replay), then starts epoch 2.
    let store = Store::open_with(d.path(), always()).unwrap();
    let st = store.stats();
    assert_eq!(st.records, r.counts.records, "{r}");
    assert_eq!(st.keys, r.counts.live_keys, "{r}");
    assert!(st.torn_tail.is_none());
    drop(store);
    let r = check(d.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    let j = journal_of(&r);
    assert_eq!((j.epoch, j.frames, j.entries), (2, 0, 0), "{r}");
}

#[test]
fn a_closed_store_has_nothing_to_replay() {
    let d = crate::testing::tempdir();
    let store = Store::open_with(d.path(), always()).unwrap();
    // More commits than the journal holds: some checkpoints on the way.
    (0..40u64).for_each(|k| store.put(k, b"v").unwrap());
    store.close().unwrap();
    let r = check(d.path()).unwrap();
    assert!(r.problems.is_empty(), "{r}");
    let j = journal_of(&r);
    assert!(j.epoch > 2, "{r}");
    assert_eq!((j.frames, j.entries), (0, 0), "{r}");
    assert!(
        r.to_string()
            .contains("0 frames / 0 entries to replay at open")
    );

    // A store of durability `none` has no journal.
    let d = crate::testing::tempdir();
    Store::open_with(d.path(), opts()).unwrap().close().unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(r.journal, None);
    assert!(r.to_string().contains("  journal: none\n"), "{r}");
}

#[test]
fn a_torn_last_frame_is_a_warning_and_open_agrees() {
    let d = journaled(10);
    let (_, frames) = frames_of(d.path());
    let (at, _) = frames[9];
    super::tests::flip(&journal(d.path()), at + FRAME_HEADER_LEN as u64 + 1, 0x20);
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![(W, K::TornTail, "journal".into(), at)],
        "{r}"
    );
    assert!(r.problems[0].what.contains("checksum"), "{r}");
    assert!(r.is_ok() && r.opens());
    let j = journal_of(&r);
    assert_eq!((j.frames, j.entries, j.torn), (9, 9, true), "{r}");
    assert!(
        r.to_string().contains("a torn last frame is dropped"),
        "{r}"
    );

    let store = Store::open_with(d.path(), always()).unwrap();
    assert!(store.stats().torn_tail.is_some());
    assert_eq!(store.stats().records, r.counts.records);
    drop(store);
    assert!(check(d.path()).unwrap().problems.is_empty());
}

#[test]
fn a_frame_running_past_the_end_is_a_torn_tail() {
    let d = journaled(3);
    let (h, frames) = frames_of(d.path());
    let (at, f) = frames[2];
    let next = at + f.blocks() * BLOCK as u64;
    // The next frame's header names 200,000 payload bytes, past the end of the 64 KiB file.
    let big = Frame {
        len: 200_000,
        epoch: h.epoch,
        number: 3,
        count: 1,
    };
    let mut block = vec![0u8; BLOCK];
    big.encode(&[], &mut block);
    let mut b = fs::read(journal(d.path())).unwrap();
    b[next as usize..next as usize + BLOCK].copy_from_slice(&block);
    fs::write(journal(d.path()), b).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![(W, K::TornTail, "journal".into(), next)],
        "{r}"
    );
    assert!(r.problems[0].what.contains("past the end"), "{r}");
    assert!(r.opens());
    assert_eq!(journal_of(&r).frames, 3);
    let store = Store::open_with(d.path(), always()).unwrap();
    assert!(store.stats().torn_tail.is_some());
}

#[test]
fn zeroed_header_slots_are_an_error_and_open_refuses() {
    let d = journaled(5);
    let mut b = fs::read(journal(d.path())).unwrap();
    b[..FRAMES_AT as usize].fill(0);
    fs::write(journal(d.path()), b).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![(E, K::Header, "journal".into(), 0)], "{r}");
    let what = &r.problems[0].what;
    assert!(
        what.contains("slot 0: all zeros") && what.contains("slot 1: all zeros"),
        "{r}"
    );
    assert!(!r.opens());
    assert_eq!(r.journal, None, "{r}");
    assert!(Store::open_with(d.path(), always()).is_err());
}

#[test]
fn commits_of_a_lost_header_are_an_error_and_open_refuses() {
    // Epoch 1 (slot 1) holds the commits; slot 0 gets an older header, then slot 1 is lost.
    let d = journaled(5);
    let (h, frames) = frames_of(d.path());
    assert_eq!((h.epoch, frames.len()), (1, 5));
    let older = JournalHeader { epoch: 0, ..h };
    let mut b = fs::read(journal(d.path())).unwrap();
    b[..BLOCK].fill(0);
    b[..64].copy_from_slice(&older.encode());
    b[BLOCK..2 * BLOCK].fill(0);
    fs::write(journal(d.path()), b).unwrap();
    let r = check(d.path()).unwrap();
    let errors: Vec<_> = found(&r).into_iter().filter(|f| f.0 == E).collect();
    assert_eq!(
        errors,
        vec![(E, K::Header, "journal".into(), FRAMES_AT)],
        "{r}"
    );
    assert!(!r.opens());
    assert!(Store::open_with(d.path(), always()).is_err());
}

#[test]
fn one_torn_header_slot_is_not_a_problem() {
    // Epoch 2 is current (slot 0) after a reopen; epoch 1 stays in slot 1. Open reads the
    // current slot and overwrites the other with the next epoch: nothing to report.
    let d = journaled(5);
    drop(Store::open_with(d.path(), always()).unwrap());
    super::tests::flip(&journal(d.path()), BLOCK as u64 + 20, 0x01);
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![], "{r}");
    assert!(r.opens());
    assert_eq!(journal_of(&r).epoch, 2);
    drop(Store::open_with(d.path(), always()).unwrap());
}

#[test]
fn short_journals_and_bad_entries_are_errors_and_open_refuses() {
    let d = journaled(5);
    let path = journal(d.path());
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(5000)
        .unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![(E, K::Length, "journal".into(), 0)], "{r}");
    assert!(!r.opens());
    assert!(Store::open_with(d.path(), always()).is_err());

    // A frame that passes its checksum but says one entry more than it holds.
    let d = journaled(5);
    let (_, frames) = frames_of(d.path());
    let (at, f) = frames[3];
    let mut b = fs::read(journal(d.path())).unwrap();
    let start = at as usize + FRAME_HEADER_LEN;
    let payload = b[start..start + f.len as usize].to_vec();
    let bad = Frame {
        count: f.count + 1,
        ..f
    };
    bad.encode(&payload, &mut b[at as usize..at as usize + BLOCK]);
    fs::write(journal(d.path()), b).unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(found(&r), vec![(E, K::Record, "journal".into(), at)], "{r}");
    assert!(
        r.problems[0].what.contains("says 2 entries and holds 1"),
        "{r}"
    );
    assert!(!r.opens());
    assert!(Store::open_with(d.path(), always()).is_err());
}

#[test]
fn journal_leftovers_are_warnings_and_open_removes_them() {
    let d = journaled(3);
    let tmp = d.path().join("journal.tmp");
    fs::write(&tmp, b"half made").unwrap();
    let r = check(d.path()).unwrap();
    assert_eq!(
        found(&r),
        vec![(W, K::Name, "journal.tmp".into(), 0)],
        "{r}"
    );
    assert!(r.opens());
    assert_eq!(journal_of(&r).entries, 3);
    drop(Store::open_with(d.path(), always()).unwrap());
    assert!(!tmp.exists());
    assert!(check(d.path()).unwrap().problems.is_empty());
}

/// Random damage to the journal: check never panics or changes it, and says open succeeds
/// exactly when it does.
#[test]
fn check_agrees_with_open_on_random_journal_damage() {
    let base = crate::testing::tempdir();
    let reference = journaled(12);
    let files = snapshot(reference.path());
    let len = files["journal"].len() as u64;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut opened, mut refused) = (0, 0);
    for case in 0..120 {
        let dir = base.path().join(format!("case{case}"));
        for (name, bytes) in &files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        let mut b = files["journal"].clone();
        let mut what = Vec::new();
        for _ in 0..=rng.below(2) {
            if rng.below(8) == 0 {
                let to = rng.below(len + 1) as usize;
                what.push(format!("truncate to {to}"));
                b.truncate(to.min(b.len()));
                continue;
            }
            let off = match rng.below(4) {
                0 => rng.below(2) * BLOCK as u64 + rng.below(64),
                1 | 2 => FRAMES_AT + rng.below(13) * BLOCK as u64 + rng.below(64),
                _ => rng.below(len),
            } as usize;
            what.push(format!("flip at {off}"));
            if let Some(x) = b.get_mut(off) {
                *x ^= 1 + rng.below(255) as u8;
            }
        }
        fs::write(journal(&dir), &b).unwrap();
        let before = snapshot(&dir);
        let r = check(&dir).unwrap_or_else(|e| panic!("case {case} {what:?}: {e}"));
        let _ = (r.to_string(), stats(&dir).unwrap().to_string());
        assert_eq!(before, snapshot(&dir), "case {case} {what:?}");
        match Store::open_with(&dir, always()) {
            Ok(store) => {
                opened += 1;
                assert!(r.opens(), "case {case} {what:?}: open succeeded but\n{r}");
                let replayed = journal_of(&r).entries;
                let st = store.stats();
                assert_eq!(st.records, r.counts.records, "case {case} {what:?}");
                assert_eq!(st.keys, r.counts.live_keys, "case {case} {what:?}");
                assert!(replayed <= st.records, "case {case} {what:?}");
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
        opened > 20 && refused > 5,
        "opened {opened}, refused {refused}"
    );
}
