//! Foreign files (random bytes, another file in its place), future format versions, and
//! missing files.

use std::fs;
use std::path::Path;
use std::time::Instant;

use toykv::format::{
    BUFFER_NAME, BUFFER_VALUES_AT, HEADER_LEN, Header, Kind, PAGE, buffer_len, keys_len,
    values_len, values_name,
};
use toykv::{Error, Store};

use crate::damage::{case, rewrite};
use crate::reference::{
    Hit, MODES, Mode, Reference, Rng, Tally, check_content, check_refusal, variant,
};
use crate::{OPS, SLOTS, opts, tempdir};

// ---------------------------------------------------------------------------------------------
// Foreign files and future versions
// ---------------------------------------------------------------------------------------------

fn kind_of(name: &str) -> Kind {
    if name.ends_with(".k") {
        Kind::Keys
    } else if name.ends_with(".v") {
        Kind::Values
    } else {
        Kind::Buffer
    }
}

fn len_of(kind: Kind) -> u64 {
    match kind {
        Kind::Keys => keys_len(SLOTS),
        Kind::Values => values_len(SLOTS),
        Kind::Buffer => buffer_len(SLOTS),
    }
}

#[test]
fn foreign_files() {
    let started = Instant::now();
    let mut t = Tally::default();
    let r = Reference::build(Mode::Mid);
    let mut rng = Rng(7);
    let mut files: Vec<String> = r.keys.clone();
    files.extend(r.values.iter().cloned());
    files.push(BUFFER_NAME.into());
    let others = [
        r.keys[1].clone(),
        r.values[1].clone(),
        BUFFER_NAME.to_string(),
    ];
    for name in &files {
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

/// Rewrites the version field of `name`'s header with a valid header checksum.
fn set_version(path: &Path, version: u32) {
    let mut b = fs::read(path).unwrap();
    b[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    rewrite(path, &b);
}

#[test]
fn future_version_is_named() {
    let started = Instant::now();
    let mut t = Tally::default();
    let r = Reference::build(Mode::Mid);
    let mut files: Vec<String> = r.keys.clone();
    files.extend(r.values.iter().cloned());
    files.push(BUFFER_NAME.into());
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
    for name in &files {
        for version in [0, 2, 9, u32::MAX] {
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
                    assert_eq!((*expected, *got), (1, version), "{e}");
                    assert!(e.to_string().contains(name.as_str()), "{e}");
                    *t.refused.entry("Version").or_default() += 1;
                }
                other => panic!("{name} at version {version}: expected Version, got {other:?}"),
            }
        }
    }
    // The buffer's value-section template is only a hint: a future version there is rewritten.
    let hdr = Header {
        kind: Kind::Values,
        section_slots: SLOTS,
        section: r.values.len() as u32,
    }
    .encode();
    let mut patched = hdr;
    patched[8..12].copy_from_slice(&7u32.to_le_bytes());
    let crc = crc32c::crc32c(&patched[..60]);
    patched[60..64].copy_from_slice(&crc.to_le_bytes());
    case(
        &r,
        &mut t,
        "buffer template at version 7",
        &[BUFFER_NAME],
        Hit::Nothing,
        |d| {
            let p = d.join(BUFFER_NAME);
            let mut b = fs::read(&p).unwrap();
            assert_eq!(b[BUFFER_VALUES_AT..BUFFER_VALUES_AT + HEADER_LEN], hdr);
            b[BUFFER_VALUES_AT..BUFFER_VALUES_AT + HEADER_LEN].copy_from_slice(&patched);
            rewrite(&p, &b);
        },
    );
    assert_eq!(t.intact, 1);
    t.report("future versions", started);
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
        for (n, name) in r.values.iter().enumerate() {
            // Without the last value section the buffer is taken to fill that section: records
            // pointing into it then read the buffer's slots, which their checksums refuse, and
            // records pointing past it are reported against their key section (see
            // `missing_last_value_section_is_named`).
            let (hit, names): (Hit, Vec<&str>) = if n + 1 == r.values.len() {
                (Hit::Any, vec![name, BUFFER_NAME, ".k at offset"])
            } else {
                (Hit::Range(name.clone(), 0, u64::MAX), vec![name])
            };
            case(&r, &mut t, &format!("{name} missing"), &names, hit, |d| {
                fs::remove_file(d.join(name)).unwrap()
            });
        }
        case(
            &r,
            &mut t,
            "buffer missing",
            &[BUFFER_NAME],
            Hit::Nothing,
            |d| fs::remove_file(d.join(BUFFER_NAME)).unwrap(),
        );
        // Opening succeeds, intact, without these.
        let intact = t.intact;
        case(&r, &mut t, "LOCK missing", &[], Hit::Nothing, |d| {
            fs::remove_file(d.join("LOCK")).unwrap()
        });
        // A leftover of an interrupted flush is removed.
        let tmp_name = format!("{}.tmp", values_name(r.values.len() as u32));
        case(&r, &mut t, "stray .tmp", &[], Hit::Nothing, |d| {
            fs::copy(d.join(&r.values[0]), d.join(&tmp_name)).unwrap();
        });
        assert_eq!(t.intact, intact + 2);
    }
    t.report("missing files", started);
}

/// After a failed open for a missing last value section, putting the file back restores the
/// store: the failed open changed nothing that matters.
#[test]
fn missing_last_value_section_can_be_restored() {
    for mode in MODES {
        let r = Reference::build(mode);
        let name = r.values.last().unwrap();
        let d = r.copy();
        fs::rename(d.join(name), d.join("saved")).unwrap();
        let first = Store::open_with(&d, opts()).map(|s| s.stats().records);
        eprintln!("[{mode:?}] {name} missing: {first:?}");
        if first.is_ok() {
            // It opened (dropping an unsynced tail, which is allowed): then it has written
            // over the buffer and restoring is moot.
            continue;
        }
        fs::rename(d.join("saved"), d.join(name)).unwrap();
        let s = Store::open_with(&d, opts()).unwrap();
        assert_eq!(s.stats().records as usize, OPS, "[{mode:?}]");
        check_content(
            &s,
            &r.states[OPS],
            &r.all_keys,
            &|_, _| false,
            &[],
            &format!("[{mode:?}] {name} restored"),
        );
    }
}

/// With the last value section missing, the error names the missing `.v` file.
#[test]
fn missing_last_value_section_is_named() {
    let r = Reference::build(Mode::Mid);
    let name = r.values.last().unwrap();
    let d = r.copy();
    fs::remove_file(d.join(name)).unwrap();
    let e = Store::open_with(&d, opts()).expect_err("open refused");
    assert!(e.to_string().contains(name.as_str()), "{e}");
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
    fs::remove_file(d.join(BUFFER_NAME)).unwrap();
    let s = Store::open_with(&d, opts()).unwrap();
    assert!(s.is_empty());
    s.put(1u64, b"x").unwrap();
    drop(s);
    let s = Store::open_with(&d, opts()).unwrap();
    assert_eq!(s.get(1u64).unwrap().as_deref(), Some(&b"x"[..]));
}
