//! The `toykv` admin tool, run as a process: every subcommand's output and exit code, on sound
//! and damaged stores, and its refusals (locked directory, usage errors, missing store).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;
use toykv::format::{KEYS_DATA_AT, RECORD_SIZE, keys_name, shard_name, shard_of};
use toykv::{Durability, Options, Store};

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .tempdir_in(crate::common::base())
        .unwrap()
}

/// Runs `toykv` with `args`; returns (exit code, stdout, stderr).
fn toykv(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_toykv"))
        .args(args)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (status.code().unwrap(), text(stdout), text(stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Small sections, two shards, no sync but the explicit ones.
fn small() -> Options {
    Options::new()
        .section_slots(16)
        .shards(2)
        .durability(Durability::None)
}

/// A store made by the library with small sections: 40 puts of keys 0..40 (u64), synced.
fn small_store(dir: &Path) {
    let store = Store::open_with(dir, small()).unwrap();
    for k in 0..40u64 {
        store.put(k, format!("v{k}")).unwrap();
    }
    store.close().unwrap();
}

#[test]
fn help_explains_every_subcommand() {
    let (code, out, _) = toykv(&["--help"]);
    assert_eq!(code, 0);
    for word in [
        "check",
        "dump",
        "stats",
        "get",
        "put",
        "del",
        "scan",
        "backup",
        "Exit codes",
        "KEYMODE",
    ] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
    let (code, out, _) = toykv(&["scan", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--limit") && out.contains("--no-direct-io"),
        "{out}"
    );
    assert!(out.contains("--key-mode"), "{out}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(toykv(&[]).0, 2);
    assert_eq!(toykv(&["frobnicate"]).0, 2);
    assert_eq!(toykv(&["get", "only-a-dir"]).0, 2);
    let d = tempdir();
    let (code, _, err) = toykv(&["check", s(&d.path().join("missing"))]);
    assert_eq!(code, 2);
    assert!(err.starts_with("toykv: "), "{err}");
    let (code, _, err) = toykv(&["get", s(d.path()), "k"]);
    assert_eq!(code, 2);
    assert!(err.contains("no toykv store"), "{err}");
}

#[test]
fn put_get_del_scan_round_trip() {
    let d = tempdir();
    let dir = d.path().join("data");
    let dir = s(&dir);
    assert_eq!(toykv(&["put", dir, "apple", "red"]).0, 0);
    assert_eq!(toykv(&["put", dir, "banana", "yellow"]).0, 0);
    assert_eq!(toykv(&["put", "--hex", dir, "bin", "0x00ff7f"]).0, 0);
    assert_eq!(toykv(&["put", "--no-direct-io", dir, "cherry", ""]).0, 0);
    assert_eq!(
        toykv(&["get", dir, "apple"]),
        (0, "red\n".into(), String::new())
    );
    assert_eq!(toykv(&["get", dir, "bin"]).1, "0x00ff7f\n");
    assert_eq!(toykv(&["get", dir, "cherry"]).1, "\n");
    let (code, out, err) = toykv(&["get", dir, "durian"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("toykv: key 'durian' not found"), "{err}");

    let (code, out, _) = toykv(&["scan", dir]);
    assert_eq!(code, 0);
    assert_eq!(out, "apple\tred\nbanana\tyellow\nbin\t0x00ff7f\ncherry\t\n");
    assert_eq!(
        toykv(&["scan", dir, "b", "bz"]).1,
        "banana\tyellow\nbin\t0x00ff7f\n"
    );
    assert_eq!(
        toykv(&["scan", dir, "--limit", "1", "b"]).1,
        "banana\tyellow\n"
    );

    assert_eq!(toykv(&["del", dir, "apple"]).0, 0);
    assert_eq!(toykv(&["del", dir, "apple"]).0, 1);
    assert_eq!(toykv(&["get", dir, "apple"]).0, 1);

    let (code, _, err) = toykv(&["put", dir, "much-too-long", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("at most 8 bytes"), "{err}");
    let long = "x".repeat(257);
    assert_eq!(toykv(&["put", dir, "k", &long]).0, 2);
    assert_eq!(toykv(&["put", "--hex", dir, "k", "abc"]).0, 2);

    // Put recorded the key mode; a different one is refused.
    assert_eq!(
        fs::read_to_string(d.path().join("data/KEYMODE")).unwrap(),
        "bytes\n"
    );
    let (code, _, err) = toykv(&["get", "--key-mode", "numeric", dir, "7"]);
    assert_eq!(code, 2);
    assert!(err.contains("bytes"), "{err}");
}

#[test]
fn check_dump_and_stats_on_a_clean_store() {
    let d = tempdir();
    let dir = s(d.path());
    assert_eq!(toykv(&["put", dir, "k1", "hello"]).0, 0);
    assert_eq!(toykv(&["put", dir, "k2", "world"]).0, 0);
    assert_eq!(toykv(&["del", dir, "k1"]).0, 0);

    let (code, out, _) = toykv(&["check", dir]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 records (2 puts, 1 deletes), 1 live keys"),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with("0 errors, 0 warnings: ok"),
        "{out}"
    );

    // Each shard's records in its own order, shard by shard.
    let shards = toykv::admin::shards(d.path()).unwrap();
    let at = |k: &[u8; 8]| shard_of(*k, shards);
    let (k1, k2) = (at(b"k1\0\0\0\0\0\0"), at(b"k2\0\0\0\0\0\0"));
    let mut want = vec![
        (
            k1,
            format!(
                "{} 0 put key=6b31000000000000 \"k1\" slot=0 len=5 value=\"hello\"",
                shard_name(k1)
            ),
        ),
        (
            k2,
            format!(
                "{} {} put key=6b32000000000000 \"k2\" slot={} len=5 value=\"world\"",
                shard_name(k2),
                u32::from(k1 == k2),
                u32::from(k1 == k2)
            ),
        ),
        (
            k1,
            format!(
                "{} {} del key=6b31000000000000 \"k1\"",
                shard_name(k1),
                if k1 == k2 { 2 } else { 1 }
            ),
        ),
    ];
    want.sort_by_key(|w| w.0);
    let want: String = want.into_iter().map(|w| w.1 + "\n").collect();
    let (code, out, _) = toykv(&["dump", dir]);
    assert_eq!(code, 0);
    assert_eq!(out, want);

    let (code, out, _) = toykv(&["stats", dir]);
    assert_eq!(code, 0);
    for row in [
        "records               3",
        "live keys             1",
        "dead records          2",
    ] {
        assert!(out.contains(row), "{out}");
    }
}

#[test]
fn numeric_key_mode_is_followed() {
    let d = tempdir();
    small_store(d.path());
    fs::write(d.path().join("KEYMODE"), "numeric\n").unwrap();
    let dir = s(d.path());
    // The store has 16-slot sections: the tool reads that from its STORE file.
    assert_eq!(toykv(&["get", dir, "key:000000000007"]).1, "v7\n");
    assert_eq!(toykv(&["scan", dir, "38"]).1, "38\tv38\n39\tv39\n");
    assert_eq!(toykv(&["put", dir, "user:41", "new"]).0, 0);
    assert_eq!(toykv(&["get", dir, "41"]).1, "new\n");
    assert!(
        toykv(&["dump", dir])
            .1
            .contains("key=0000000000000029 41 slot=")
    );
}

#[test]
fn check_exits_1_on_a_damaged_store_and_0_on_a_torn_tail() {
    let d = tempdir();
    small_store(d.path());
    let dir = s(d.path());
    assert_eq!(toykv(&["check", dir]).0, 0);

    // Record 3 (synced) in key section 0 of shard 0.
    let k0 = d.path().join("shard-00/00000000.k");
    let off = KEYS_DATA_AT + 3 * RECORD_SIZE;
    let mut b = fs::read(&k0).unwrap();
    b[off + 1] ^= 0x10;
    fs::write(&k0, b).unwrap();
    let (code, out, _) = toykv(&["check", dir]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "error: shard-00/00000000.k at offset {off}: key record 3 was synced"
        )),
        "{out}"
    );
    assert!(out.contains("open would refuse this store"), "{out}");
    let (code, out, _) = toykv(&["dump", dir]);
    assert_eq!(code, 0);
    // Dump lists what open recovers: shard 00 is refused, and said so at the end.
    assert!(
        out.lines().last().unwrap().starts_with(
            "shard-00 refused at open: shard-00/00000000.k at offset 4192: key record 3 was synced"
        ),
        "{out}"
    );
    let (code, _, err) = toykv(&["get", dir, "anything"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("corruption in") && err.contains("00000000.k"),
        "{err}"
    );

    // A torn tail after the last sync is only a warning, and open drops it.
    let d = tempdir();
    small_store(d.path());
    let store = Store::open_with(d.path(), small()).unwrap();
    store.put(100u64, b"unsynced").unwrap();
    drop(store);
    // Its record follows the shard's share of keys 0..40.
    let shard = shard_of(100u64.to_be_bytes(), 2);
    let seq = (0..40u64)
        .filter(|k| shard_of(k.to_be_bytes(), 2) == shard)
        .count();
    let name = format!("{}/{}", shard_name(shard), keys_name(seq as u32 / 16));
    let file = d.path().join(&name);
    let off = KEYS_DATA_AT + seq % 16 * RECORD_SIZE;
    let mut b = fs::read(&file).unwrap();
    b[off + 30] ^= 1;
    fs::write(&file, b).unwrap();
    let dir = s(d.path());
    let (code, out, _) = toykv(&["check", dir]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "warning: {name} at offset {off}: torn unsynced tail"
        )),
        "{out}"
    );
    assert!(out.contains("0 errors, 1 warning: ok"), "{out}");
}

#[test]
fn a_directory_in_use_is_refused() {
    let d = tempdir();
    let store = Store::open(d.path()).unwrap();
    for cmd in ["check", "dump", "stats"] {
        let (code, _, err) = toykv(&[cmd, s(d.path())]);
        assert_eq!(code, 2, "{cmd}");
        assert!(err.starts_with("toykv: data directory"), "{err}");
        assert!(
            err.contains("locked") && err.contains("stop the server"),
            "{err}"
        );
    }
    let (code, _, err) = toykv(&["get", s(d.path()), "k"]);
    assert_eq!(code, 2);
    assert!(err.contains("locked"), "{err}");
    drop(store);
    assert_eq!(toykv(&["check", s(d.path())]).0, 0);
}

#[test]
fn a_version_1_directory_is_named() {
    let d = tempdir();
    // A v1 data directory kept its sections and buffer at its top, with no STORE file.
    fs::write(d.path().join("buffer.b"), vec![0u8; 8192]).unwrap();
    fs::write(d.path().join("00000000.k"), vec![0u8; 4096]).unwrap();
    let dir = s(d.path());
    let (code, out, _) = toykv(&["check", dir]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: buffer.b at offset 0: format version 1"),
        "{out}"
    );
    let (code, _, err) = toykv(&["get", dir, "k"]);
    assert_eq!(code, 2);
    assert!(err.contains("format version 1"), "{err}");
}

/// A value damaged on disk makes garbage collection set its section aside; the damage stays
/// where `check` sees it (and a get reports it).
#[test]
fn check_reports_a_damaged_value_collection_set_aside() {
    const DAMAGED: &[u8] = b"the one value that is damaged on disk";
    let d = tempdir();
    let opts = || {
        Options::new()
            .section_slots(16)
            .shards(1)
            .gc(false)
            .direct_io(false)
            .cache_bytes(0)
            .durability(Durability::None)
    };
    let store = Store::open_with(d.path(), opts()).unwrap();
    // Key 3 is the one live value of section 0 once every other key is overwritten.
    for k in 0..16u64 {
        let v = if k == 3 {
            DAMAGED.to_vec()
        } else {
            vec![k as u8; 9]
        };
        store.put(k, v).unwrap();
    }
    for round in 1..4u8 {
        for k in (0..16u64).filter(|&k| k != 3) {
            store.put(k, vec![round; 9]).unwrap();
        }
    }
    store.close().unwrap();
    let v0 = d.path().join("shard-00/00000000.v");
    let mut b = fs::read(&v0).unwrap();
    let at = b.windows(DAMAGED.len()).position(|w| w == DAMAGED).unwrap();
    b[at] ^= 1;
    fs::write(&v0, b).unwrap();

    let store = Store::open_with(d.path(), opts()).unwrap();
    store.gc().unwrap();
    let st = store.stats();
    assert_eq!(st.gc_set_aside.len(), 1, "{st:?}");
    assert!(st.gc_set_aside[0].contains("00000000.v"), "{st:?}");
    assert!(
        matches!(store.get(3u64), Err(toykv::Error::Corrupt { .. })),
        "the damaged value is reported"
    );
    assert_eq!(store.get(5u64).unwrap().unwrap().to_vec(), vec![3u8; 9]);
    store.close().unwrap();

    let (code, out, _) = toykv(&["check", s(d.path())]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: shard-00/00000000.v"), "{out}");
}

#[test]
fn backup_copies_a_store_that_checks_clean_and_refuses_an_existing_dest() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    small_store(&src);
    let dest = tmp.path().join("copy");
    let (code, out, err) = toykv(&["backup", s(&src), s(&dest)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("backed up 40 keys"), "{out}");
    let (code, out, _) = toykv(&["check", s(&dest)]);
    assert_eq!(code, 0, "{out}");
    let copy = Store::open(&dest).unwrap();
    for k in 0..40u64 {
        assert_eq!(
            copy.get(k).unwrap().as_deref(),
            Some(format!("v{k}").as_bytes())
        );
    }
    drop(copy);
    // Again into the same place: refused, the copy untouched.
    let (code, _, err) = toykv(&["backup", s(&src), s(&dest)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exists"), "{err}");
    // Not a store.
    let (code, _, err) = toykv(&[
        "backup",
        s(&tmp.path().join("none")),
        s(&tmp.path().join("x")),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no toykv store"), "{err}");
}
