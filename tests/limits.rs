//! The addressing limits: 1 to 256 shards, and per shard 2^32 key sections of records (and
//! 2^32 value slots). A shard whose log reaches the last key section number refuses the next
//! put with `Error::Full` — never a wrap-around — and keeps serving and reopening.

mod common;

use std::path::Path;

use toykv::format::{
    Header, KEYS_DATA_AT, Kind, MARK_A, MARK_B, Mark, Op, PAGE, RECORD_SIZE, Record, keys_len,
    keys_name, shard_name,
};
use toykv::{Durability, Error, Options, Store};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().tempdir_in(common::base()).unwrap()
}

const SLOTS: u32 = 16;

fn opts(shards: u32) -> Options {
    Options::new()
        .section_slots(SLOTS)
        .shards(shards)
        .gc(false)
        .durability(Durability::None)
        .cache_bytes(0)
}

#[test]
fn shard_counts_from_1_to_256_and_no_more() {
    let tmp = tempdir();
    for bad in [0, 257, 1000] {
        let e = Store::open_with(tmp.path().join(format!("s{bad}")), opts(bad)).unwrap_err();
        assert!(matches!(e, Error::Option { .. }), "{bad}: {e}");
    }
    let dir = tmp.path().join("s256");
    let store = Store::open_with(&dir, opts(256)).unwrap();
    for k in 0..2000u64 {
        store.put(k, k.to_be_bytes()).unwrap();
    }
    assert_eq!(store.stats().shards, 256);
    store.close().unwrap();
    let store = Store::open_with(&dir, Options::new()).unwrap();
    assert_eq!(store.len(), 2000);
    assert!(dir.join(shard_name(255)).is_dir());
    assert_eq!(
        store.get(1999u64).unwrap().as_deref(),
        Some(&1999u64.to_be_bytes()[..])
    );
}

/// Rewrites shard 0 of the closed one-shard store in `dir` so that its log lives in the last
/// key section there can be (number `u32::MAX`), holding `n` delete records.
fn at_the_last_key_section(dir: &Path, n: u32) {
    let shard = dir.join(shard_name(0));
    std::fs::remove_file(shard.join(keys_name(0))).unwrap();
    let last = u32::MAX;
    let mut file = vec![0u8; keys_len(SLOTS) as usize];
    let header = Header {
        kind: Kind::Keys,
        section_slots: SLOTS,
        section: last,
    };
    file[..toykv::format::HEADER_LEN].copy_from_slice(&header.encode());
    let first_seq = u64::from(last) * u64::from(SLOTS);
    for i in 0..n {
        let r = Record {
            key: toykv::Key::from(u64::from(i)),
            seq: first_seq + u64::from(i),
            op: Op::Delete,
        };
        let at = KEYS_DATA_AT + i as usize * RECORD_SIZE;
        file[at..at + RECORD_SIZE].copy_from_slice(&r.encode());
    }
    std::fs::write(shard.join(keys_name(last)), &file).unwrap();
    // Both sync marks: every record durable, the log starting at the last section.
    let mark = Mark {
        generation: 1000,
        synced: first_seq + u64::from(n),
        first: last,
    }
    .encode();
    let path = shard.join("buffer.b");
    let mut buffer = std::fs::read(&path).unwrap();
    assert!(buffer.len() > PAGE);
    buffer[MARK_A..MARK_A + mark.len()].copy_from_slice(&mark);
    buffer[MARK_B..MARK_B + mark.len()].copy_from_slice(&mark);
    std::fs::write(&path, &buffer).unwrap();
}

#[test]
fn the_last_key_section_fills_then_puts_are_refused_not_wrapped() {
    let tmp = tempdir();
    let dir = tmp.path().join("db");
    Store::open_with(&dir, opts(1)).unwrap().close().unwrap();
    at_the_last_key_section(&dir, SLOTS - 3);
    let store = Store::open_with(&dir, opts(1)).unwrap();
    assert!(store.is_empty());
    // Three records fit in the last section.
    for k in 0..3u64 {
        store.put(k, [k as u8; 3]).unwrap();
    }
    // The next would need section 2^32.
    match store.put(3u64, b"x") {
        Err(Error::Full { what, limit }) => {
            assert_eq!(what, "key records");
            assert_eq!(limit, (u64::from(u32::MAX) + 1) * u64::from(SLOTS));
        }
        other => panic!("expected Error::Full, got {other:?}"),
    }
    assert!(matches!(store.delete(0u64), Err(Error::Full { .. })));
    // What is there is still served, and survives a reopen.
    for k in 0..3u64 {
        assert_eq!(store.get(k).unwrap().as_deref(), Some(&[k as u8; 3][..]));
    }
    assert_eq!(store.get(3u64).unwrap(), None);
    store.close().unwrap();
    let store = Store::open_with(&dir, opts(1)).unwrap();
    assert_eq!(store.len(), 3);
    assert!(matches!(store.put(9u64, b"y"), Err(Error::Full { .. })));
    drop(store);
    let report = toykv::admin::check(&dir).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
