//! Snapshots and backups of a live store: the copy holds exactly the writes applied before
//! the moment it was taken, while writers, bank write-outs and garbage collection run; a
//! damaged, cut or foreign stream is refused with the byte where it went wrong.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use toykv::format::snapshot::{CHUNK_HEADER_LEN, HEAD_LEN, chunk_header, file_header, head};
use toykv::io::Os;
use toykv::{Batch, Change, Durability, Error, Feed, Options, Store, restore};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().tempdir_in(common::base()).unwrap()
}

/// Small sections: a few thousand writes fill banks, write them out and give collection work.
fn small() -> Options {
    Options::new()
        .section_slots(16)
        .shards(2)
        .durability(Durability::None)
}

/// Every change the store applied, in the order the feed saw them.
#[derive(Debug, Default)]
struct Log(Mutex<Vec<(u64, Option<Vec<u8>>)>>);

impl Feed for Log {
    fn change(&self, change: Change<'_>) {
        let mut log = self.0.lock().unwrap();
        match change {
            Change::Put(k, v) => log.push((k.as_u64(), Some(v.to_vec()))),
            Change::Delete(k) => log.push((k.as_u64(), None)),
            Change::Batch(b) => {
                for op in b.entries() {
                    match op {
                        toykv::format::journal::JournalOp::Put(k, v) => {
                            log.push((u64::from_be_bytes(k), Some(v.to_vec())))
                        }
                        toykv::format::journal::JournalOp::Delete(k) => {
                            log.push((u64::from_be_bytes(k), None))
                        }
                        toykv::format::journal::JournalOp::Batch(_) => {}
                    }
                }
            }
        }
    }
}

fn value(key: u64, round: u64) -> Vec<u8> {
    let len = ((key * 7 + round * 13) % 257) as usize;
    (0..len)
        .map(|i| (key as usize ^ round as usize ^ i) as u8)
        .collect()
}

/// The state after the first `n` changes of `log`.
fn state(log: &[(u64, Option<Vec<u8>>)], n: usize) -> BTreeMap<u64, Vec<u8>> {
    let mut m = BTreeMap::new();
    for (k, v) in &log[..n] {
        match v {
            Some(v) => m.insert(*k, v.clone()),
            None => m.remove(k),
        };
    }
    m
}

fn contents(store: &Store) -> BTreeMap<u64, Vec<u8>> {
    store
        .iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.as_u64(), v.to_vec())
        })
        .collect()
}

#[test]
fn a_backup_under_writes_holds_exactly_what_was_applied_before_it() {
    let tmp = tempdir();
    let store = Arc::new(Store::open_with(tmp.path().join("db"), small()).unwrap());
    let log = Arc::new(Log::default());
    assert!(store.set_feed(log.clone()));
    for k in 0..500u64 {
        store.put(k, value(k, 0)).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut round = 1;
                while !stop.load(Ordering::Relaxed) {
                    for k in (t..500).step_by(2) {
                        match (k + round) % 11 {
                            0 => {
                                store.delete(k).unwrap();
                            }
                            1 => {
                                let mut b = Batch::new();
                                b.put(k, value(k, round)).unwrap();
                                b.put(k + 1000, value(k, round)).unwrap();
                                b.delete(k + 2000).unwrap();
                                store.write(&b).unwrap();
                            }
                            _ => store.put(k, value(k, round)).unwrap(),
                        }
                    }
                    round += 1;
                }
            })
        })
        .collect();
    // Several snapshots while the writers overwrite everything many times over.
    for i in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(30));
        let (snap, at) = store.snapshot(|| log.0.lock().unwrap().len()).unwrap();
        let dest = tmp.path().join(format!("copy{i}"));
        let mut bytes = Vec::new();
        let wrote = snap.write_to(&mut bytes).unwrap();
        assert_eq!(wrote, bytes.len() as u64);
        assert_eq!(snap.len(), wrote);
        drop(snap);
        let read = restore(&Os, &mut &bytes[..], &dest, "test").unwrap();
        assert_eq!(read, wrote);
        let copy = Store::open_with(&dest, Options::new().durability(Durability::None)).unwrap();
        let want = state(&log.0.lock().unwrap(), at);
        assert_eq!(contents(&copy), want, "copy {i} after {at} changes");
        drop(copy);
        let report = toykv::admin::check(&dest).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let stats = store.stats();
    assert!(stats.flushes > 0, "banks were written out");
    // Collection runs again once no snapshot pins it.
    store.gc().unwrap();
}

#[test]
fn backup_makes_a_whole_store_or_nothing() {
    let tmp = tempdir();
    let store = Store::open_with(tmp.path().join("db"), small()).unwrap();
    for k in 0..300u64 {
        store.put(k, value(k, 1)).unwrap();
    }
    let dest = tmp.path().join("backup");
    let n = store.backup(&dest).unwrap();
    assert!(n > 0);
    assert!(!tmp.path().join("backup.partial").exists());
    // A second backup into the same place is refused.
    assert!(store.backup(&dest).is_err());
    let before = contents(&store);
    drop(store);
    let copy = Store::open_with(&dest, Options::new()).unwrap();
    assert_eq!(contents(&copy), before);
}

/// A valid stream of a small store.
fn stream(tmp: &std::path::Path) -> Vec<u8> {
    let store = Store::open_with(tmp.join("src"), small()).unwrap();
    for k in 0..40u64 {
        store.put(k, value(k, 2)).unwrap();
    }
    let (snap, ()) = store.snapshot(|| ()).unwrap();
    let mut bytes = Vec::new();
    snap.write_to(&mut bytes).unwrap();
    bytes
}

fn refused(bytes: &[u8], dest: &std::path::Path) -> (u64, String) {
    match restore(&Os, &mut &bytes[..], dest, "test") {
        Err(Error::Snapshot { at, what, .. }) => (at, what),
        other => panic!("expected a refused snapshot, got {other:?}"),
    }
}

#[test]
fn damaged_cut_and_foreign_streams_are_refused_where_they_go_wrong() {
    let tmp = tempdir();
    let good = stream(tmp.path());
    // A flipped byte in the data of the first file (STORE).
    let mut bad = good.clone();
    let first_data = HEAD_LEN + file_header("STORE", 4096).len() + CHUNK_HEADER_LEN;
    bad[first_data + 100] ^= 1;
    let (at, what) = refused(&bad, &tmp.path().join("d1"));
    assert!(what.contains("checksum"), "{what}");
    assert_eq!(at, (first_data + 4096) as u64);
    // Cut anywhere: refused (no tail), never a panic.
    for cut in [0, 5, HEAD_LEN, first_data, good.len() / 2, good.len() - 1] {
        let dest = tmp.path().join(format!("cut{cut}"));
        let (_, what) = refused(&good[..cut], &dest);
        assert!(what.contains("ends early"), "{cut}: {what}");
    }
    // A path outside the store.
    let mut evil = head(1).to_vec();
    evil.extend_from_slice(&file_header("../../etc/x", 1));
    let (at, what) = refused(&evil, &tmp.path().join("d2"));
    assert!(what.contains("cannot hold"), "{what}");
    assert_eq!(at, (HEAD_LEN + 2 + "../../etc/x".len()) as u64);
    // A chunk longer than its file.
    let mut long = head(1).to_vec();
    long.extend_from_slice(&file_header("STORE", 10));
    long.extend_from_slice(&chunk_header(2, 11, 0));
    let (_, what) = refused(&long, &tmp.path().join("d3"));
    assert!(what.contains("past the end"), "{what}");
    // Not a snapshot at all.
    let (at, what) = refused(&[b'x'; 64], &tmp.path().join("d4"));
    assert!(what.contains("not a toykv snapshot"), "{what}");
    assert_eq!(at, HEAD_LEN as u64);
    // Into a directory that holds something: refused before anything is written.
    let full = tmp.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    assert!(restore(&Os, &mut &good[..], &full, "test").is_err());
}

#[test]
fn the_format_documents_example_restores() {
    use toykv::format::snapshot::{data_header, tail};
    let tmp = tempdir();
    let mut bytes = head(1).to_vec();
    bytes.extend(file_header("KEYMODE", 6));
    bytes.extend(data_header(b"bytes\n"));
    bytes.extend(b"bytes\n");
    bytes.extend(tail(1));
    let dest = tmp.path().join("d");
    assert_eq!(
        restore(&Os, &mut &bytes[..], &dest, "test").unwrap(),
        bytes.len() as u64
    );
    assert_eq!(std::fs::read(dest.join("KEYMODE")).unwrap(), b"bytes\n");
}

/// A store on the simulator with several value sections written out.
fn sim_store(fs: &toykv::io::SimFs) -> Store {
    let opts = Options::new()
        .section_slots(16)
        .shards(1)
        .gc(false)
        .durability(Durability::None)
        .cache_bytes(0)
        .vfs(Arc::new(fs.clone()));
    let store = Store::open_with("/db", opts).unwrap();
    for k in 0..100u64 {
        store.put(k, value(k, 3)).unwrap();
    }
    store.sync().unwrap();
    store
}

#[test]
fn a_failed_read_of_a_value_section_does_not_fail_a_snapshot() {
    use toykv::io::{Fault, SimFs};
    let fs = SimFs::new();
    let store = sim_store(&fs);
    let want = contents(&store);
    // The calls one snapshot's writing makes.
    let (snap, ()) = store.snapshot(|| ()).unwrap();
    let before = fs.calls();
    let mut clean = Vec::new();
    snap.write_to(&mut clean).unwrap();
    let calls = fs.calls() - before;
    drop(snap);
    assert!(calls > 5, "{calls}");
    let tmp = tempdir();
    let (mut whole, mut failed) = (0, 0);
    // Each call in turn fails once with EIO: the snapshot either still comes out whole (a
    // value section is read again page by page) or fails with an error; a stream that
    // restores is always the store's exact contents.
    for k in 0..calls {
        let (snap, ()) = store.snapshot(|| ()).unwrap();
        fs.fail_call(k, Fault::Eio);
        let mut bytes = Vec::new();
        let r = snap.write_to(&mut bytes);
        // Disarms a fault this run did not reach.
        fs.fail_call(u64::MAX / 2, Fault::Eio);
        match r {
            Ok(n) => {
                assert_eq!(n, bytes.len() as u64, "call {k}");
                let dest = tmp.path().join(format!("c{k}"));
                restore(&Os, &mut &bytes[..], &dest, "test").unwrap();
                let copy = Store::open_with(&dest, Options::new()).unwrap();
                assert_eq!(contents(&copy), want, "call {k}");
                whole += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("/db"), "call {k}: {msg}");
                // Only a key section or a small file may fail it: a value section is read
                // again page by page.
                assert!(
                    !msg.contains(".v"),
                    "call {k}: a value section failed it: {msg}"
                );
                failed += 1;
            }
        }
    }
    // Value sections are read whole once each: a failure there is survived.
    let sections = store.stats().value_sections;
    assert!(
        whole >= sections,
        "{whole} whole of {calls}, {failed} failed, {sections} sections"
    );
}
