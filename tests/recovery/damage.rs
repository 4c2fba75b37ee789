//! Damage helpers (truncate, flip, rewrite a file; offsets of interest in a header page) and
//! the case runner: copy the reference, damage it, open it, apply the oracle, and go on
//! writing after a successful open.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use toykv::format::{HEADER_LEN, KEYS_DATA_AT, MARK_A, MARK_B, MARK_LEN, PAGE, RECORD_SIZE};
use toykv::{Error, Store};

use crate::reference::{Hit, Reference, check_content, check_refusal};
use crate::{CONT_DROPPED, CONT_INTACT, CONT_KEYS, Model, OPS, Tally, opts, variant};

pub(crate) fn continuation_value(i: u64) -> Vec<u8> {
    let len = ((i * 37 + 5) % 257) as usize;
    (0..len)
        .map(|b| (b as u64 * 11 + i * 3 + 0xc0) as u8)
        .collect()
}

/// Writes more (crossing a buffer flush and a key section), syncs half-way, closes, reopens:
/// everything must be there, and nothing dropped at the first open may come back.
pub(crate) fn continue_and_reopen(
    store: Store,
    dir: &Path,
    base: &Model,
    failed: &BTreeSet<u64>,
    all_keys: &[u64],
    names: &[&str],
    what: &str,
) {
    let what = format!("{what}, after more writes");
    // A value that failed its check may since have been flushed from the buffer to a `.v`.
    let mut names = names.to_vec();
    names.push(".v at offset");
    let names = &names[..];
    let mut records = store.stats().records as usize;
    let mut model = base.clone();
    let mut bad = failed.clone();
    let mut victims: Vec<u64> = base.keys().copied().step_by(5).take(3).collect();
    for i in 0..24u64 {
        let k = (i * 7 + 3) % CONT_KEYS;
        let v = continuation_value(i);
        store
            .put(k, &v)
            .unwrap_or_else(|e| panic!("{what}: put {i} failed: {e}"));
        model.insert(k, v);
        bad.remove(&k);
        records += 1;
        if i == 11 {
            store
                .sync()
                .unwrap_or_else(|e| panic!("{what}: sync failed: {e}"));
        }
        if i % 8 == 4
            && let Some(k) = victims.pop()
            && model.contains_key(&k)
        {
            assert!(store.delete(k).unwrap(), "{what}: delete {k}");
            model.remove(&k);
            bad.remove(&k);
            records += 1;
        }
    }
    assert_eq!(store.stats().records as usize, records, "{what}");
    check_content(
        &store,
        &model,
        all_keys,
        &|k, _| bad.contains(&k),
        names,
        &what,
    );
    drop(store);
    let store =
        Store::open_with(dir, opts()).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let st = store.stats();
    assert_eq!(st.records as usize, records, "{what}: reopen");
    assert_eq!(st.torn_tail, None, "{what}: reopen");
    let what = format!("{what}, reopened");
    check_content(
        &store,
        &model,
        all_keys,
        &|k, _| bad.contains(&k),
        names,
        &what,
    );
}

/// Copies the reference, applies `damage`, opens, and applies the oracle. Returns the error
/// when the open was refused.
pub(crate) fn case(
    r: &Reference,
    t: &mut Tally,
    what: &str,
    names: &[&str],
    hit: Hit,
    damage: impl FnOnce(&Path),
) -> Option<Error> {
    let what = format!("[{:?}] {what}", r.mode);
    t.cases += 1;
    let dir = r.copy();
    damage(&dir);
    match Store::open_with(&dir, opts()) {
        Err(e) => {
            check_refusal(&e, names, &what);
            *t.refused.entry(variant(&e)).or_default() += 1;
            Some(e)
        }
        Ok(store) => {
            let j = store.stats().records as usize;
            assert!(
                (r.synced..=OPS).contains(&j),
                "{what}: opened with {j} records, but {} were synced (of {OPS})",
                r.synced
            );
            let want = &r.states[j];
            let failed = check_content(
                &store,
                want,
                &r.all_keys,
                &|k, e| {
                    // A read error names the slot of the key's value.
                    if let (Error::Corrupt { file, offset, .. }, Some(l)) = (e, r.loc(k, j))
                        && file.ends_with(&l.file)
                    {
                        assert_eq!(*offset, l.off, "{what}: get({k}) names another slot: {e}");
                    }
                    r.hit(&hit, k, j)
                },
                names,
                &what,
            );
            if !failed.is_empty() {
                t.corrupt_reads += 1;
            }
            let go_on = if j < OPS {
                t.dropped += 1;
                t.dropped % CONT_DROPPED == 1
            } else {
                t.intact += 1;
                t.intact % CONT_INTACT == 1
            };
            if t.always || go_on || !failed.is_empty() {
                t.continued += 1;
                continue_and_reopen(store, &dir, want, &failed, &r.all_keys, names, &what);
            }
            None
        }
    }
}

/// A refusal for damage at byte `damaged` of a key section names the record holding that byte
/// (or offset 0 for the header).
pub(crate) fn check_record_offset(e: Option<Error>, damaged: u64, what: &str) {
    if let Some(Error::Corrupt { offset, .. }) = &e {
        let want = if damaged < HEADER_LEN as u64 {
            0
        } else if damaged >= KEYS_DATA_AT as u64 {
            let at = damaged - KEYS_DATA_AT as u64;
            KEYS_DATA_AT as u64 + at - at % RECORD_SIZE as u64
        } else {
            return;
        };
        assert_eq!(*offset, want, "{what}: {}", e.as_ref().unwrap());
    }
}

/// Replaces `path` by a new file holding `bytes` (never writes into a hard-linked file).
pub(crate) fn rewrite(path: &Path, bytes: &[u8]) {
    if path.exists() {
        fs::remove_file(path).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

pub(crate) fn truncate(path: &Path, len: u64) {
    let mut b = fs::read(path).unwrap();
    b.resize(len as usize, 0);
    rewrite(path, &b);
}

pub(crate) fn flip(path: &Path, off: u64) {
    let mut b = fs::read(path).unwrap();
    let mask = if off.is_multiple_of(3) {
        0xff
    } else {
        1 << (off % 8)
    };
    b[off as usize] ^= mask;
    rewrite(path, &b);
}

/// Offsets inside a header page: the header fields, the sync marks, and a stride.
pub(crate) fn header_offsets(stride: usize) -> Vec<u64> {
    let mut v: BTreeSet<usize> = [0, 1, 7, 8, 11, 12, 16, 20, 24, 28, 32, 59, 60, 63, 64, 65]
        .into_iter()
        .collect();
    for m in [MARK_A, MARK_B] {
        v.extend([
            m - 1,
            m,
            m + 1,
            m + 8,
            m + 12,
            m + MARK_LEN - 1,
            m + MARK_LEN,
        ]);
    }
    v.extend((0..PAGE).step_by(stride));
    v.insert(PAGE - 1);
    v.into_iter().map(|o| o as u64).collect()
}

/// A few offsets inside a header page, for files whose header behaves like another's.
pub(crate) const HEADER_FEW: [u64; 8] = [0, 1, 8, 60, 63, 64, 520, PAGE as u64 - 1];
