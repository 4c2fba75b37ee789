//! Foreign files (random bytes, another file in its place), future format versions, and
//! missing files: sections, the buffer, `STORE`, the shard directory.

use std::fs;
use std::path::Path;
use std::time::Instant;

use toykv::format::header::VERSION;
use toykv::format::{
    BANKS, HEADER_LEN, Header, Kind, PAGE, bank_at, buffer_len, keys_len, values_len, values_name,
};
use toykv::{Error, Store};

use crate::damage::{case, rewrite};
use crate::reference::{Hit, MODES, Mode, Reference, check_content, check_refusal};
use crate::{BUF, OPS, Rng, SHARD, SLOTS, STORE, Tally, in_shard, opts, tempdir, variant};

// ---------------------------------------------------------------------------------------------
// Foreign files and future versions
// ---------------------------------------------------------------------------------------------

fn kind_of(name: &str) -> Kind {
    if name.ends_with(".k") {
        Kind::Keys
    } else if name.ends_with(".v") {
        Kind::Values
    } else if name == STORE {
        Kind::Store
    } else {
        Kind::Buffer
    }
}

fn len_of(kind: Kind) -> u64 {
    match kind {
        Kind::Keys => keys_len(SLOTS),
        Kind::Values => values_len(SLOTS),
        Kind::Buffer => buffer_len(SLOTS),
        Kind::Store => PAGE as u64,
    }
}

/// Every file of the reference store that open reads.
fn files(r: &Reference) -> Vec<String> {
    let mut files: Vec<String> = r.keys.clone();
    files.extend(r.values.iter().cloned());
    files.extend([BUF.into(), STORE.into()]);
    files
}

#[test]
fn foreign_files() {
    let started = Instant::now();
    let mut t = Tally::default();
    let r = Reference::build(Mode::Mid);
    let mut rng = Rng(7);
    let others = [
        r.keys[1].clone(),
        r.values[1].clone(),
        BUF.to_string(),
        STORE.to_string(),
    ];
    for name in &files(&r) {
        let kind = kind_of(name);
        let len = len_of(kind);
        // Random bytes of the right length: the magic does not match.
        for round in 0..3 {
            let bytes = rng.bytes(len as usize);
            case(
                &r,
                &mut t,
                &format!("{name} replaced by random bytes ({round})"),
                &[name],
                Hit::Any,
                |d| rewrite(&d.join(name), &bytes),
            );
            let d = r.copy();
            rewrite(&d.join(name), &bytes);
            match Store::open_with(&d, opts()) {
                Err(Error::Foreign { file, got, .. }) => {
                    assert!(file.ends_with(name));
                    assert_eq!(got, bytes[..8]);
                }
                other => panic!("{name} of random bytes: expected Foreign, got {other:?}"),
            }
        }
        // Random bytes of other lengths.
        for l in [0, 100, PAGE as u64, len - 1, len + 1] {
            let bytes = rng.bytes(l as usize);
            case(
                &r,
                &mut t,
                &format!("{name} replaced by {l} random bytes"),
                &[name],
                Hit::Any,
                |d| rewrite(&d.join(name), &bytes),
            );
        }
        // Another file, as it is and resized to this kind's length.
        for other in &others {
            if other == name {
                continue;
            }
            let src = fs::read(r.path(other)).unwrap();
            case(
                &r,
                &mut t,
                &format!("{name} replaced by {other}"),
                &[name],
                Hit::Any,
                |d| rewrite(&d.join(name), &src),
            );
            let mut resized = src.clone();
            resized.resize(len as usize, 0);
            let d = r.copy();
            rewrite(&d.join(name), &resized);
            let e = Store::open_with(&d, opts())
                .err()
                .unwrap_or_else(|| panic!("{name} replaced by {other} resized: opened"));
            if kind_of(other) != kind {
                match &e {
                    Error::Foreign { file, got, .. } => {
                        assert!(file.ends_with(name), "{e:?}");
                        assert_eq!(got[..], kind_of(other).magic());
                        assert!(e.to_string().contains(name.as_str()));
                    }
                    _ => panic!("{name} replaced by {other} resized: expected Foreign, got {e:?}"),
                }
            } else {
                // Same kind, other section number: the header names the wrong section.
                check_refusal(&e, &[name], &format!("{name} replaced by {other} resized"));
            }
            t.cases += 1;
            *t.refused.entry(variant(&e)).or_default() += 1;
        }
    }
    t.report("foreign files", started);
}

/// Rewrites the version field of the header at `at` in `path`, with a valid checksum.
fn set_version_at(path: &Path, at: usize, version: u32) {
    let mut b = fs::read(path).unwrap();
    let h = &mut b[at..at + HEADER_LEN];
    h[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    rewrite(path, &b);
}

fn set_version(path: &Path, version: u32) {
    set_version_at(path, 0, version);
}

#[test]
fn future_version_is_named() {
    let started = Instant::now();
    let mut t = Tally::default();
    let r = Reference::build(Mode::Mid);
    // The header encoder agrees with the files on disk, so patching its bytes is patching
    // a real header.
    let h = Header {
        kind: Kind::Keys,
        section_slots: SLOTS,
        section: 1,
    };
    assert_eq!(
        fs::read(r.path(&r.keys[1])).unwrap()[..HEADER_LEN],
        h.encode()
    );
    for name in &files(&r) {
        for version in [0, 1, VERSION + 1, 9, u32::MAX] {
            t.cases += 1;
            let d = r.copy();
            set_version(&d.join(name), version);
            match Store::open_with(&d, opts()) {
                Err(e @ Error::Version { .. }) => {
                    let Error::Version {
                        file,
                        expected,
                        got,
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert!(file.ends_with(name), "{e}");
                    assert_eq!((*expected, *got), (VERSION, version), "{e}");
                    assert!(e.to_string().contains(name.as_str()), "{e}");
                    *t.refused.entry("Version").or_default() += 1;
                }
                other => panic!("{name} at version {version}: expected Version, got {other:?}"),
            }
        }
    }
    t.report("future versions", started);
}

/// A damage case: what it is, and what it does to a copy of the store.
type Damage = (String, Box<dyn Fn(&Path)>);

/// Damage to a bank's header page: at another version (with a valid checksum), garbled, or
/// cut off by a truncation.
fn bank_header_damage(r: &Reference, bank: usize) -> Vec<Damage> {
    let at = bank_at(SLOTS, bank);
    let mut v: Vec<Damage> = vec![
        (
            format!("bank {bank} header at version 7"),
            Box::new(move |d| set_version_at(&d.join(BUF), at, 7)),
        ),
        (
            format!("bank {bank} header byte 28 (its section) flipped"),
            Box::new(move |d| crate::damage::flip(&d.join(BUF), at as u64 + 28)),
        ),
    ];
    // Cutting the buffer at a bank cuts off the banks after it too.
    if bank + 1 == BANKS || bank == r.bank {
        v.push((
            format!("{BUF} cut at bank {bank}"),
            Box::new(move |d| crate::damage::truncate(&d.join(BUF), at as u64)),
        ));
    }
    v
}

/// The other bank holds a copy of the section written out last, which its `.v` file has: its
/// header page is not needed, and damage to it changes nothing.
#[test]
fn damaged_header_of_the_other_bank_is_ignored() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        for (what, damage) in bank_header_damage(&r, 1 - r.bank) {
            case(&r, &mut t, &what, &[BUF], Hit::Nothing, damage);
        }
    }
    assert_eq!(t.intact, t.cases, "{t:?}");
    t.report("damaged header of the other bank", started);
}

/// The bank being filled holds live values no other file has. Open may drop the unsynced ones
/// with the tail, but when it refuses, the error must name the damaged file, the buffer.
///
/// Engine bug: the header page is taken as naming no section, and open then refuses with
/// `Corrupt` naming `shard-00/0000000N.v` ("value section is missing but K live keys point
/// into it"), a file that never existed, without a word about `buffer.b`. A bank header
/// with a valid checksum but another version is ignored instead of refused with `Version`.
#[test]
fn damaged_header_of_the_filling_bank_is_named() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        for (what, damage) in bank_header_damage(&r, r.bank) {
            case(&r, &mut t, &what, &[BUF], Hit::Nothing, damage);
        }
    }
    t.report("damaged header of the filling bank", started);
}

// ---------------------------------------------------------------------------------------------
// Missing files
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_files() {
    let started = Instant::now();
    let mut t = Tally {
        always: true,
        ..Tally::default()
    };
    for mode in MODES {
        let r = Reference::build(mode);
        let last_k = r.keys.len() - 1;
        for name in &r.keys[..last_k] {
            case(
                &r,
                &mut t,
                &format!("{name} missing"),
                &[name],
                Hit::Nothing,
                |d| fs::remove_file(d.join(name)).unwrap(),
            );
        }
        // The last value section written out is still in a bank: open writes it out again
        // (see `missing_last_value_section_is_written_again`). Records pointing into an
        // older one are refused naming it, or dropped with the unsynced tail.
        let last_v = r.values.len() - 1;
        for name in &r.values[..last_v] {
            let hit = Hit::Range(name.clone(), 0, u64::MAX);
            case(&r, &mut t, &format!("{name} missing"), &[name], hit, |d| {
                fs::remove_file(d.join(name)).unwrap()
            });
        }
        case(&r, &mut t, "buffer missing", &[BUF], Hit::Nothing, |d| {
            fs::remove_file(d.join(BUF)).unwrap()
        });
        // Opening succeeds, intact, without these.
        let intact = t.intact;
        let name = &r.values[last_v];
        case(
            &r,
            &mut t,
            &format!("{name} missing"),
            &[],
            Hit::Nothing,
            |d| fs::remove_file(d.join(name)).unwrap(),
        );
        case(&r, &mut t, "LOCK missing", &[], Hit::Nothing, |d| {
            fs::remove_file(d.join("LOCK")).unwrap()
        });
        // Leftovers of an interrupted write-out or file creation are removed or ignored.
        let tmp_name = in_shard(&format!("{}.tmp", values_name(r.values.len() as u32)));
        case(&r, &mut t, "stray .tmp", &[], Hit::Nothing, |d| {
            fs::copy(d.join(&r.values[0]), d.join(&tmp_name)).unwrap();
        });
        case(&r, &mut t, "stray STORE.tmp", &[], Hit::Nothing, |d| {
            fs::copy(d.join(STORE), d.join("STORE.tmp")).unwrap();
        });
        assert_eq!(t.intact, intact + 4, "[{mode:?}] {t:?}");
    }
    t.report("missing files", started);
}

/// After a failed open for a missing value section, putting the file back restores the
/// store: the failed open changed nothing that matters.
#[test]
fn missing_value_section_can_be_restored() {
    for mode in MODES {
        let r = Reference::build(mode);
        let name = &r.values[r.values.len() - 2];
        let d = r.copy();
        fs::rename(d.join(name), d.join("saved")).unwrap();
        let first = Store::open_with(&d, opts()).map(|s| s.stats().records);
        eprintln!("[{mode:?}] {name} missing: {first:?}");
        match first {
            // It opened (dropping an unsynced tail, which is allowed): then it has written
            // over the log's tail and restoring is moot.
            Ok(j) => {
                assert!(j as usize >= r.synced, "[{mode:?}] {j} records");
                continue;
            }
            Err(e) => check_refusal(&e, &[name], &format!("[{mode:?}] {name} missing")),
        }
        fs::rename(d.join("saved"), d.join(name)).unwrap();
        let s = Store::open_with(&d, opts()).unwrap();
        assert_eq!(s.stats().records as usize, OPS, "[{mode:?}]");
        let what = format!("[{mode:?}] {name} restored");
        check_content(&s, &r.states[OPS], &r.all_keys, &|_, _| false, &[], &what);
    }
}

/// The last value section written out is still held by the other bank of the buffer: open
/// writes it out again, byte for byte, and the store is intact.
#[test]
fn missing_last_value_section_is_written_again() {
    for mode in MODES {
        let r = Reference::build(mode);
        let name = r.values.last().unwrap();
        let d = r.copy();
        fs::remove_file(d.join(name)).unwrap();
        let s = Store::open_with(&d, opts()).unwrap();
        assert_eq!(s.stats().records as usize, OPS, "[{mode:?}]");
        let what = format!("[{mode:?}] {name} missing");
        check_content(&s, &r.states[OPS], &r.all_keys, &|_, _| false, &[], &what);
        drop(s);
        let (got, want) = (fs::read(d.join(name)), fs::read(r.path(name)).unwrap());
        assert!(got.is_ok_and(|b| b == want), "{what}: not written again");
    }
}

/// With the last key section missing, the store never opens without the synced records that
/// section held: the loss is reported.
#[test]
fn missing_last_key_section() {
    for mode in MODES {
        let r = Reference::build(mode);
        let name = r.keys.last().unwrap();
        let d = r.copy();
        fs::remove_file(d.join(name)).unwrap();
        match Store::open_with(&d, opts()) {
            Err(e) => check_refusal(&e, &[name], &format!("[{mode:?}] {name} missing")),
            Ok(s) => {
                let j = s.stats().records as usize;
                assert!(
                    j >= r.synced,
                    "[{mode:?}] {name} missing: opened with {j} records, {} were synced",
                    r.synced
                );
            }
        }
    }
}

/// A store created but never written, whose buffer creation was interrupted, is recreated.
#[test]
fn missing_buffer_of_an_empty_store() {
    let tmp = tempdir();
    let d = tmp.path().join("s");
    drop(Store::open_with(&d, opts()).unwrap());
    fs::remove_file(d.join(BUF)).unwrap();
    let s = Store::open_with(&d, opts()).unwrap();
    assert!(s.is_empty());
    s.put(1u64, b"x").unwrap();
    drop(s);
    let s = Store::open_with(&d, opts()).unwrap();
    assert_eq!(s.get(1u64).unwrap().as_deref(), Some(&b"x"[..]));
}

// ---------------------------------------------------------------------------------------------
// The store file and the shard directories
// ---------------------------------------------------------------------------------------------

/// Options that leave the shard count to the `STORE` file.
fn any_shards() -> toykv::Options {
    toykv::Options::new()
        .section_slots(SLOTS)
        .durability(toykv::Durability::None)
        .gc(false)
}

/// Open must refuse `d` with `Corrupt` naming `missing` and leave it missing: recreating it
/// would make a store that silently lacks the data.
fn refused_not_recreated(d: &Path, missing: &str, options: toykv::Options, what: &str) {
    match Store::open_with(d, options) {
        Err(e) => {
            assert!(matches!(e, Error::Corrupt { .. }), "{what}: {e:?}");
            check_refusal(&e, &[missing], what);
        }
        Ok(s) => panic!("{what}: opened with {} keys", s.len()),
    }
    assert!(
        !d.join(missing).exists(),
        "{what}: open recreated {missing}"
    );
}

/// `STORE` gone beside a shard that holds data: the shard count is unknown (the default would
/// be one shard per core, which would send keys to the wrong shards).
#[test]
fn missing_store_file_is_refused() {
    for mode in MODES {
        let r = Reference::build(mode);
        let d = r.copy();
        fs::remove_file(d.join(STORE)).unwrap();
        for (o, which) in [(opts(), "shards(1)"), (any_shards(), "default shards")] {
            let what = format!("[{mode:?}] {STORE} missing, opened with {which}");
            refused_not_recreated(&d, STORE, o, &what);
        }
    }
}

/// A shard directory gone, or one more named by `STORE` than exist, is refused naming it.
#[test]
fn missing_shard_directory_is_refused() {
    for mode in MODES {
        let r = Reference::build(mode);
        let d = r.copy();
        fs::remove_dir_all(d.join(SHARD)).unwrap();
        let what = format!("[{mode:?}] {SHARD} missing");
        refused_not_recreated(&d, SHARD, opts(), &what);
        // `STORE` rewritten (a valid header) to name two shards: shard-01 does not exist.
        let d = r.copy();
        let h = Header {
            kind: Kind::Store,
            section_slots: SLOTS,
            section: 2,
        };
        let mut page = vec![0u8; PAGE];
        page[..HEADER_LEN].copy_from_slice(&h.encode());
        rewrite(&d.join(STORE), &page);
        let what = format!("[{mode:?}] {STORE} names 2 shards");
        match Store::open_with(&d, opts()) {
            Err(Error::Mismatch { what: "shards", .. }) => {}
            other => panic!("{what}, opened with shards(1): {other:?}"),
        }
        refused_not_recreated(&d, "shard-01", any_shards(), &what);
    }
}
