//! The journal of durability `always`: what power loss leaves is replayed, concurrent writers
//! on every shard survive it, a full journal checkpoints, a torn last commit is dropped and
//! reported, damage to what was committed is refused, and entries replay only once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::format::journal::{
    BLOCK, FRAMES_AT, Frame, JOURNAL_NAME, JournalHeader, SLOTS, encode_put,
};
use toykv::io::SimFs;
use toykv::{Durability, Error, Options, Store};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().tempdir_in(common::base()).unwrap()
}

fn always(shards: u32, journal: u64) -> Options {
    Options::new()
        .section_slots(16)
        .shards(shards)
        .gc(false)
        .durability(Durability::Always)
        .journal_bytes(journal)
}

fn sim(o: Options, fs: &SimFs) -> Options {
    o.vfs(Arc::new(fs.clone()))
}

fn all(store: &Store) -> BTreeMap<u64, Vec<u8>> {
    store
        .iter()
        .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).unwrap())
        .collect()
}

/// The current header of the journal in `dir`, read the way the format says.
fn header(dir: &Path) -> JournalHeader {
    let b = std::fs::read(dir.join(JOURNAL_NAME)).unwrap();
    (0..SLOTS)
        .filter_map(|i| JournalHeader::decode(&b[i * BLOCK..]).ok())
        .max_by_key(|h| h.epoch)
        .unwrap()
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

/// One block holding frame `number` of `epoch` with a one-entry `payload`, as a commit
/// writes it.
fn frame_block(epoch: u64, number: u64, payload: &[u8]) -> Vec<u8> {
    let f = Frame {
        len: payload.len() as u32,
        epoch,
        number,
        count: 1,
    };
    let mut block = vec![0u8; BLOCK];
    f.encode(payload, &mut block);
    block
}

/// Eight writers on three shards, each putting (and now and then deleting) its own keys with
/// rising versions; then power is lost, the store is dropped without a sync. Every key must
/// hold exactly what its writer was last told had returned.
#[test]
fn concurrent_writers_keep_every_acknowledged_write_through_power_loss() {
    for seed in 0..20u64 {
        let fs = SimFs::new();
        let dir = Path::new("/db");
        let store = Arc::new(Store::open_with(dir, sim(always(3, 64 << 10), &fs)).unwrap());
        let models: Vec<BTreeMap<u64, Vec<u8>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u64)
                .map(|t| {
                    let store = store.clone();
                    s.spawn(move || {
                        let mut rng = StdRng::seed_from_u64(seed * 100 + t);
                        let mut model = BTreeMap::new();
                        for i in 0..60u64 {
                            let key = t * 1000 + rng.random_range(0..10u64);
                            if rng.random_bool(0.15) {
                                store.delete(key).unwrap();
                                model.remove(&key);
                            } else {
                                let v = format!("{key}:{i}").into_bytes();
                                store.put(key, &v).unwrap();
                                model.insert(key, v);
                            }
                        }
                        model
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let st = store.stats();
        assert!(st.journal_commits > 0, "{st:?}");
        drop(store);
        fs.power_loss(seed);
        let store = Store::open_with(dir, sim(always(3, 64 << 10), &fs)).unwrap();
        let want: BTreeMap<u64, Vec<u8>> = models.into_iter().flatten().collect();
        assert_eq!(all(&store), want, "seed {seed}");
    }
}

/// A journal too small for the workload checkpoints (every shard synced, the journal
/// emptied) instead of growing; everything stays, on a real disk, through a reopen.
#[test]
fn a_full_journal_checkpoints_and_stays_its_size() {
    let d = tempdir();
    let store = Store::open_with(d.path(), always(2, 64 << 10)).unwrap();
    for k in 0..300u64 {
        store.put(k, k.to_be_bytes()).unwrap();
    }
    let st = store.stats();
    // 14 blocks of frames, one commit per put from one writer: about 21 checkpoints.
    assert!(st.journal_checkpoints >= 15, "{st:?}");
    assert!(st.journal_commits >= 250, "{st:?}");
    let len = std::fs::metadata(d.path().join(JOURNAL_NAME))
        .unwrap()
        .len();
    assert_eq!(len, 64 << 10);
    drop(store);
    let store = Store::open_with(d.path(), always(2, 64 << 10)).unwrap();
    assert_eq!(store.len(), 300);
    for k in 0..300u64 {
        assert_eq!(store.get(k).unwrap().as_deref(), Some(&k.to_be_bytes()[..]));
    }
    // Close checkpoints: the journal is left with nothing to replay.
    store.close().unwrap();
    let h = header(d.path());
    let b = std::fs::read(d.path().join(JOURNAL_NAME)).unwrap();
    assert!(Frame::peek(&b[FRAMES_AT as usize..], h.epoch, 0).is_none());
}

/// After a replay the journal starts a new epoch, so its entries never replay again over
/// later writes: an `always` put, a crash, then an overwrite at `none` that is synced must
/// not be undone by the old entry at the next open.
#[test]
fn replayed_entries_never_replay_again() {
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let store = Store::open_with(dir, sim(always(1, 64 << 10), &fs)).unwrap();
    store.put(7u64, b"old").unwrap();
    drop(store);
    fs.power_loss(1);
    let none = || sim(always(1, 64 << 10).durability(Durability::None), &fs);
    let store = Store::open_with(dir, none()).unwrap();
    assert_eq!(store.get(7u64).unwrap().as_deref(), Some(&b"old"[..]));
    store.put(7u64, b"new").unwrap();
    store.sync().unwrap();
    drop(store);
    fs.power_loss(2);
    let store = Store::open_with(dir, none()).unwrap();
    assert_eq!(store.get(7u64).unwrap().as_deref(), Some(&b"new"[..]));
}

/// Writes three commits, then a process crash (the store dropped without closing).
fn three_commits(dir: &Path) {
    let store = Store::open_with(dir, always(1, 1 << 20)).unwrap();
    for k in 1..=3u64 {
        store.put(k, b"v").unwrap();
    }
    drop(store);
}

/// A last commit whose checksum fails (a write torn by power loss, never acknowledged) ends
/// the journal: open succeeds and says what it dropped.
#[test]
fn a_torn_last_commit_is_dropped_and_reported() {
    let d = tempdir();
    three_commits(d.path());
    // Frames of one small put take a block each: the third is at block 2 + 2.
    let third = FRAMES_AT + 2 * BLOCK as u64;
    patch(&d.path().join(JOURNAL_NAME), third + 40, b"\xff");
    let store = Store::open_with(d.path(), always(1, 1 << 20)).unwrap();
    let torn = store.stats().torn_tail.unwrap_or_default();
    assert!(
        torn.contains("frame 2") && torn.contains("checksum"),
        "{torn}"
    );
    // The shards still hold all three (the process crash kept their maps).
    assert_eq!(store.len(), 3);
}

/// A commit whose checksum holds but whose entries do not decode was not torn: open refuses,
/// naming the journal and the frame's offset.
#[test]
fn a_checked_commit_that_does_not_decode_is_refused() {
    let d = tempdir();
    three_commits(d.path());
    let h = header(d.path());
    let mut payload = Vec::new();
    encode_put(&mut payload, *b"abcdefgh", b"x");
    payload[0] = 9; // no such operation
    let block = frame_block(h.epoch, 1, &payload);
    let at = FRAMES_AT + BLOCK as u64;
    patch(&d.path().join(JOURNAL_NAME), at, &block);
    match Store::open_with(d.path(), always(1, 1 << 20)) {
        Err(Error::Corrupt {
            file, offset, what, ..
        }) => {
            assert!(file.ends_with(JOURNAL_NAME), "{file:?}");
            assert_eq!(offset, at);
            assert!(what.contains("operation byte 9"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// Both header slots damaged: open refuses and says why for each. One damaged slot: the
/// other serves, and a frame of a newer epoch than it (whose header was lost) is refused
/// rather than silently skipped.
#[test]
fn damaged_headers_are_refused() {
    let d = tempdir();
    three_commits(d.path());
    let path = d.path().join(JOURNAL_NAME);
    let h = header(d.path());
    let other = JournalHeader {
        epoch: h.epoch + 1,
        ..h
    };
    // The other slot holds an older epoch's header (written at creation or a checkpoint).
    let older = JournalHeader {
        epoch: h.epoch - 1,
        ..h
    };
    patch(&path, older.slot_at(), &older.encode());
    patch(&path, h.slot_at(), &[0u8; 64]);
    match Store::open_with(d.path(), always(1, 1 << 20)) {
        Err(Error::Corrupt { file, what, .. }) => {
            assert!(file.ends_with(JOURNAL_NAME), "{file:?}");
            assert!(what.contains(&format!("epoch {}", h.epoch)), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    patch(&path, other.slot_at(), &[0u8; 64]);
    match Store::open_with(d.path(), always(1, 1 << 20)) {
        Err(Error::Corrupt { file, what, .. }) => {
            assert!(file.ends_with(JOURNAL_NAME), "{file:?}");
            assert!(what.contains("slot 0") && what.contains("slot 1"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn journal_length_is_checked() {
    for bad in [0, 4096, (64 << 10) + 1] {
        let e = Store::open_with(tempdir().path(), always(1, bad)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Option {
                    what: "journal_bytes",
                    ..
                }
            ),
            "{e}"
        );
    }
}

/// A commit of several frames torn by power loss can leave a later frame of the epoch behind
/// its lost first one. Open reads no frame then, but must still start a new epoch: else the
/// next commit, written as frame 0 of the same epoch, would lead the next replay on to the
/// stale frame 1 and its never-acknowledged put.
#[test]
fn a_stale_frame_behind_a_lost_first_frame_never_replays() {
    let d = tempdir();
    Store::open_with(d.path(), always(1, 1 << 20))
        .unwrap()
        .close()
        .unwrap();
    let h = header(d.path());
    let mut payload = Vec::new();
    encode_put(&mut payload, 5u64.to_be_bytes(), b"never acknowledged");
    let block = frame_block(h.epoch, 1, &payload);
    patch(
        &d.path().join(JOURNAL_NAME),
        FRAMES_AT + BLOCK as u64,
        &block,
    );
    let store = Store::open_with(d.path(), always(1, 1 << 20)).unwrap();
    assert_eq!(store.get(5u64).unwrap(), None);
    store.put(5u64, b"acknowledged").unwrap();
    drop(store);
    let store = Store::open_with(d.path(), always(1, 1 << 20)).unwrap();
    assert_eq!(
        store.get(5u64).unwrap().as_deref(),
        Some(&b"acknowledged"[..])
    );
}

/// A journal holding commits in a directory without `STORE` or shards is a store that lost
/// them: open refuses, and writes nothing, so a second open refuses too.
#[test]
fn a_journal_without_its_store_is_refused_and_left_alone() {
    let d = tempdir();
    three_commits(d.path());
    for name in std::fs::read_dir(d.path()).unwrap() {
        let p = name.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else if p.ends_with(toykv::format::STORE_NAME) {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let names = || {
        let mut v: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = names();
    for _ in 0..2 {
        match Store::open_with(d.path(), always(1, 1 << 20)) {
            Err(Error::Corrupt { file, what, .. }) => {
                assert!(file.ends_with(JOURNAL_NAME), "{file:?}");
                assert!(what.contains("STORE"), "{what}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert_eq!(names(), before);
    }
}

/// `sync` at `always` is a checkpoint: the journal is left with nothing to replay (the server
/// syncs at shutdown, so a clean restart replays nothing).
#[test]
fn sync_empties_the_journal() {
    let d = tempdir();
    let store = Store::open_with(d.path(), always(2, 1 << 20)).unwrap();
    for k in 0..10u64 {
        store.put(k, b"v").unwrap();
    }
    let before = header(d.path()).epoch;
    let b = std::fs::read(d.path().join(JOURNAL_NAME)).unwrap();
    assert!(Frame::peek(&b[FRAMES_AT as usize..], before, 0).is_some());
    store.sync().unwrap();
    let h = header(d.path());
    assert_eq!(h.epoch, before + 1);
    let b = std::fs::read(d.path().join(JOURNAL_NAME)).unwrap();
    assert!(Frame::peek(&b[FRAMES_AT as usize..], h.epoch, 0).is_none());
    assert_eq!(store.stats().journal_checkpoints, 1);
    drop(store);
    let store = Store::open_with(d.path(), always(2, 1 << 20)).unwrap();
    assert_eq!(store.len(), 10);
}

/// What the Guarantees say `always` does not promise: a put whose commit failed is not
/// undone. It stays visible, later writes are refused, and without a power loss it is there
/// after a restart.
#[test]
fn a_put_whose_commit_failed_is_not_undone() {
    let fs = SimFs::new();
    let opts = || sim(always(1, 16 * 4096), &fs);
    let store = Store::open_with("/db", opts()).unwrap();
    store.put(1u64, b"a").unwrap();
    fs.fail_syncs(true);
    let e = store.put(2u64, b"b").unwrap_err();
    assert!(e.poisons(), "the journal's flush failed: {e:?}");
    fs.fail_syncs(false);
    assert_eq!(store.get(2u64).unwrap().unwrap().to_vec(), b"b");
    assert!(matches!(store.put(3u64, b"c"), Err(Error::Failed { .. })));
    drop(store);
    let store = Store::open_with("/db", opts()).unwrap();
    assert_eq!(store.get(1u64).unwrap().unwrap().to_vec(), b"a");
    assert_eq!(store.get(2u64).unwrap().unwrap().to_vec(), b"b");
    assert_eq!(store.get(3u64).unwrap(), None);
}

/// Atomic batches at `always` through power loss: acknowledged batches survive whole; the
/// batch in flight (applied, never waited for) survives whole or not at all — whatever parts
/// of the shards' files and of the journal the power loss keeps.
#[test]
fn batches_survive_power_loss_whole_or_not_at_all() {
    for seed in 0..60u64 {
        let fs = SimFs::new();
        let dir = Path::new("/db");
        let store = Store::open_with(dir, sim(always(3, 64 << 10), &fs)).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let keys: Vec<u64> = (0..12).map(|k| k * 7 + seed).collect();
        // Keys only the batch in flight writes: journal replay cannot cover for them.
        let new: Vec<u64> = (0..12).map(|k| 10_000 + k * 5 + seed).collect();
        let batch = |g: u64, with_new: bool| {
            let mut b = toykv::Batch::new();
            for &k in keys.iter().chain(if with_new { &new[..] } else { &[][..] }) {
                b.put(k, format!("{k}:{g}")).unwrap();
            }
            b
        };
        let acked = rng.random_range(1..6u64);
        for g in 1..=acked {
            store.write(&batch(g, false)).unwrap();
        }
        // The next batch is applied, and perhaps its commit is under way, but nobody waited.
        let _ = store.apply(&batch(acked + 1, true)).unwrap();
        drop(store);
        fs.power_loss(seed);
        let store = Store::open_with(dir, sim(always(3, 64 << 10), &fs)).unwrap();
        let get = |ks: &[u64]| -> Vec<Option<Vec<u8>>> {
            ks.iter()
                .map(|&k| store.get(k).unwrap().map(|v| v.to_vec()))
                .collect()
        };
        let at = |ks: &[u64], g: u64| -> Vec<Option<Vec<u8>>> {
            ks.iter()
                .map(|k| Some(format!("{k}:{g}").into_bytes()))
                .collect()
        };
        let (old, fresh) = (get(&keys), get(&new));
        let before = old == at(&keys, acked) && fresh.iter().all(Option::is_none);
        let after = old == at(&keys, acked + 1) && fresh == at(&new, acked + 1);
        assert!(
            before || after,
            "seed {seed}: {acked} batches acknowledged, the store holds {old:?} and {fresh:?}"
        );
    }
}

/// Deferred durability: many puts, then one wait, make one journal commit; a callback from
/// the committer thread says when a write is durable, and it is, through power loss.
#[test]
fn deferred_writes_share_one_commit_and_notify_when_durable() {
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let store = Store::open_with(dir, sim(always(3, 1 << 20), &fs)).unwrap();
    let before = store.stats().journal_commits;
    let mut last = toykv::Commit::NONE;
    for k in 0..100u64 {
        last = last.max(store.put_deferred(k, format!("v{k}")).unwrap());
    }
    assert!(!last.is_none());
    store.wait(last).unwrap();
    assert_eq!(store.stats().journal_commits, before + 1);
    let c = store.put_deferred(1000u64, b"notified").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    store.notify(c, move |r| tx.send(r.is_ok()).unwrap());
    assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
    // Nothing to wait for: called at once.
    let (tx, rx) = std::sync::mpsc::channel();
    store.notify(toykv::Commit::NONE, move |r| tx.send(r.is_ok()).unwrap());
    assert!(rx.try_recv().unwrap());
    drop(store);
    fs.power_loss(7);
    let store = Store::open_with(dir, sim(always(3, 1 << 20), &fs)).unwrap();
    for k in 0..100u64 {
        assert_eq!(
            store.get(k).unwrap().unwrap().to_vec(),
            format!("v{k}").into_bytes()
        );
    }
    assert_eq!(
        store.get(1000u64).unwrap().as_deref(),
        Some(&b"notified"[..])
    );
}
