//! The reference stores (the [`history`](crate::history) written with three sync modes, with
//! the model state after every record and where every value lives) and the oracle that checks a reopened
//! store's content against them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use toykv::format::{
    BANKS, BUFFER_NAME, HEADER_LEN, Header, KEYS_DATA_AT, Kind, PAGE, RECORD_SIZE, SLOT_SIZE,
    STORE_NAME, VALUES_DATA_AT, bank_at, keys_name, shard_name, values_name,
};
use toykv::{Error, Store};

use crate::{
    BUF, CONT_KEYS, Model, OPS, Op, S, SHARD, SLOTS, STORE, history, in_shard, opts, tempdir,
};

/// When the reference store syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Never: every record is after the (absent) sync mark.
    Never,
    /// At record 50 and at `MID_SYNC`: the last key section and the bank being filled hold
    /// records and values on both sides of the mark.
    Mid,
    /// At record 50 and by `close()`: everything is synced.
    Closed,
}

pub(crate) const MODES: [Mode; 3] = [Mode::Never, Mode::Mid, Mode::Closed];
pub(crate) const FIRST_SYNC: usize = 50;
pub(crate) const MID_SYNC: usize = OPS - 6;

/// Where a value lives in the reference store.
#[derive(Clone, Debug)]
pub(crate) struct Loc {
    pub(crate) file: String,
    pub(crate) off: u64,
    pub(crate) len: u64,
}

/// A damaged byte range of one file: the values overlapping it may read as `Corrupt`.
#[derive(Clone, Debug)]
pub(crate) enum Hit {
    /// Only key records or headers were damaged: every get must succeed.
    Nothing,
    /// Bytes `from..to` of `file`.
    Range(String, u64, u64),
    /// Any value may fail (the value layout itself was disturbed).
    Any,
}

/// The bank of the buffer `buffer` (its bytes) whose header page names value section `section`.
pub(crate) fn bank_of(buffer: &[u8], section: u32) -> Option<usize> {
    (0..BANKS).find(|&bank| {
        let at = bank_at(SLOTS, bank);
        Header::decode(&buffer[at..at + HEADER_LEN], Kind::Values)
            .is_ok_and(|h| h.section == section && h.section_slots == SLOTS)
    })
}

pub(crate) struct Reference {
    pub(crate) tmp: TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) states: Vec<Model>,
    /// Records durable at the last sync.
    pub(crate) synced: usize,
    /// For each record: the put's key and value location, or `None` for a delete.
    pub(crate) puts: Vec<Option<(u64, Loc)>>,
    /// Key and value sections, relative to the data directory (`shard-00/00000000.k`).
    pub(crate) keys: Vec<String>,
    pub(crate) values: Vec<String>,
    /// The bank holding the section being filled (the last put's), and the other one, which
    /// still holds a copy of the section written out before it.
    pub(crate) bank: usize,
    /// Every key used, plus a few never used.
    pub(crate) all_keys: Vec<u64>,
}

impl Reference {
    pub(crate) fn build(mode: Mode) -> Reference {
        let tmp = tempdir();
        let dir = tmp.path().join("reference");
        let ops = history();
        let store = Store::open_with(&dir, opts()).unwrap();
        let mut model = Model::new();
        let mut states = vec![model.clone()];
        let mut synced = 0;
        let mut slots = Vec::new(); // (seq, key, slot, len)
        let mut next_slot = 0usize;
        for (i, op) in ops.iter().enumerate() {
            if (mode != Mode::Never && i == FIRST_SYNC) || (mode == Mode::Mid && i == MID_SYNC) {
                store.sync().unwrap();
                synced = i;
            }
            match op {
                Op::Put(k, v) => {
                    store.put(*k, v).unwrap();
                    model.insert(*k, v.clone());
                    slots.push(Some((*k, next_slot, v.len())));
                    next_slot += 1;
                }
                Op::Delete(k) => {
                    assert!(store.delete(*k).unwrap());
                    model.remove(k);
                    slots.push(None);
                }
            }
            assert_eq!(store.stats().records as usize, i + 1);
            states.push(model.clone());
        }
        if mode == Mode::Closed {
            store.close().unwrap();
            synced = OPS;
        } else {
            drop(store);
        }
        // The layout the tests assume: `STORE`, `LOCK` and one shard directory.
        assert_eq!(shard_name(0), SHARD);
        assert_eq!((BUF, STORE), (&*in_shard(BUFFER_NAME), STORE_NAME));
        let mut top: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["LOCK", STORE, SHARD]);
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for e in fs::read_dir(dir.join(SHARD)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".k") {
                keys.push(in_shard(&name));
            } else if name.ends_with(".v") {
                values.push(in_shard(&name));
            }
        }
        keys.sort();
        values.sort();
        assert_eq!(keys.len(), OPS.div_ceil(S));
        // Write-outs finish before `close` or drop returns: every section but the one being
        // filled is a `.v` file, numbered in order (no garbage collection).
        let filling = values.len();
        assert_eq!(filling, (next_slot - 1) / S, "buffer section");
        for (n, name) in values.iter().enumerate() {
            assert_eq!(*name, in_shard(&values_name(n as u32)));
        }
        let buffer = fs::read(dir.join(BUF)).unwrap();
        let bank = bank_of(&buffer, filling as u32).expect("a bank holds the section filled");
        if filling > 0 {
            assert_eq!(bank_of(&buffer, filling as u32 - 1), Some(1 - bank));
        }
        let puts = slots
            .into_iter()
            .map(|p| {
                p.map(|(k, slot, len)| {
                    let (section, index) = (slot / S, (slot % S) as u64);
                    let loc = if section < filling {
                        Loc {
                            file: in_shard(&values_name(section as u32)),
                            off: VALUES_DATA_AT as u64 + index * SLOT_SIZE as u64,
                            len: len as u64,
                        }
                    } else {
                        Loc {
                            file: BUF.into(),
                            off: (bank_at(SLOTS, bank) + PAGE) as u64 + index * SLOT_SIZE as u64,
                            len: len as u64,
                        }
                    };
                    (k, loc)
                })
            })
            .collect::<Vec<_>>();
        if mode == Mode::Mid {
            // The last key section holds records on both sides of its sync mark, and the buffer
            // values on both sides of it.
            assert_eq!(MID_SYNC / S, (OPS - 1) / S);
            assert!(!MID_SYNC.is_multiple_of(S));
            let in_buffer = |r: &[Option<(u64, Loc)>]| {
                r.iter().flatten().filter(|(_, l)| l.file == BUF).count()
            };
            assert!(in_buffer(&puts[..MID_SYNC]) > 0);
            assert!(in_buffer(&puts[MID_SYNC..]) > 0);
        }
        let mut all_keys: Vec<u64> = (0..CONT_KEYS).collect();
        all_keys.extend([1000, u64::MAX, 1 << 40]);
        let r = Reference {
            tmp,
            dir,
            mode,
            states,
            synced,
            puts,
            keys,
            values,
            bank,
            all_keys,
        };
        // The undamaged copy opens intact.
        let d = r.copy();
        let store = Store::open_with(&d, opts()).unwrap();
        assert_eq!(store.stats().records as usize, OPS);
        assert_eq!(store.stats().torn_tail, None);
        check_content(
            &store,
            &r.states[OPS],
            &r.all_keys,
            &|_, _| false,
            &[],
            "undamaged",
        );
        r
    }

    /// A fresh copy of the reference store (the whole tree), in this test's scratch directory.
    /// Value sections never change once written (a missing one is written anew under a
    /// temporary name), so they are hard links; the damage helpers below replace a file instead
    /// of writing into it.
    pub(crate) fn copy(&self) -> PathBuf {
        fn tree(from: &Path, to: &Path) {
            fs::create_dir(to).unwrap();
            for e in fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                let target = to.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    tree(&e.path(), &target);
                } else if e.file_name().to_string_lossy().ends_with(".v") {
                    fs::hard_link(e.path(), target).unwrap();
                } else {
                    fs::copy(e.path(), target).unwrap();
                }
            }
        }
        let d = self.tmp.path().join("case");
        if d.exists() {
            fs::remove_dir_all(&d).unwrap();
        }
        tree(&self.dir, &d);
        d
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the value of `key` in `states[j]` lives, if the key is live there.
    pub(crate) fn loc(&self, key: u64, j: usize) -> Option<&Loc> {
        self.states[j].get(&key)?;
        self.puts[..j]
            .iter()
            .rev()
            .flatten()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| l)
    }

    /// Whether the value of `key` in `states[j]` overlaps the damage.
    pub(crate) fn hit(&self, hit: &Hit, key: u64, j: usize) -> bool {
        match hit {
            Hit::Nothing => false,
            Hit::Any => true,
            Hit::Range(file, from, to) => self
                .loc(key, j)
                .is_some_and(|l| l.file == *file && l.off < *to && *from < l.off + l.len.max(1)),
        }
    }

    /// Whether damage at byte `off` of the buffer (or a cut there) reaches the header of the
    /// bank being filled.
    pub(crate) fn in_filling_header(&self, off: u64) -> bool {
        let at = bank_at(SLOTS, self.bank) as u64;
        (at..at + HEADER_LEN as u64).contains(&off)
    }

    /// File offset of record `seq` and the key section holding it.
    pub(crate) fn record(seq: usize) -> (String, u64) {
        (
            in_shard(&keys_name((seq / S) as u32)),
            (KEYS_DATA_AT + (seq % S) * RECORD_SIZE) as u64,
        )
    }
}

/// A refusal must be one of the format errors and name one of `names`.
pub(crate) fn check_refusal(e: &Error, names: &[&str], what: &str) {
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            Error::Corrupt { .. } | Error::Foreign { .. } | Error::Version { .. }
        ),
        "{what}: open failed with an unexpected error: {msg} ({e:?})"
    );
    assert!(
        names.iter().any(|n| msg.contains(n)),
        "{what}: error does not name {names:?}: {msg}"
    );
}

/// Checks that the store holds exactly `want`, except that reads of keys for which
/// `may_fail(key, error)` holds may fail with `Corrupt` naming one of `names`. Returns those
/// keys.
pub(crate) fn check_content(
    store: &Store,
    want: &Model,
    all_keys: &[u64],
    may_fail: &dyn Fn(u64, &Error) -> bool,
    names: &[&str],
    what: &str,
) -> BTreeSet<u64> {
    let mut failed = BTreeSet::new();
    let read_error = |e: &Error, key: Option<u64>| {
        let msg = e.to_string();
        assert!(
            matches!(e, Error::Corrupt { .. }),
            "{what}: read of {key:?} failed with an unexpected error: {msg}"
        );
        assert!(
            names.iter().any(|n| msg.contains(n)),
            "{what}: read error does not name {names:?}: {msg}"
        );
    };
    for &k in all_keys {
        match store.get(k) {
            Ok(Some(v)) => assert_eq!(
                Some(&v[..]),
                want.get(&k).map(|v| &v[..]),
                "{what}: get({k}) returned wrong bytes"
            ),
            Ok(None) => assert!(!want.contains_key(&k), "{what}: get({k}) lost the key"),
            Err(e) => {
                read_error(&e, Some(k));
                assert!(
                    want.contains_key(&k),
                    "{what}: get({k}) of a key that is not live failed: {e}"
                );
                assert!(
                    may_fail(k, &e),
                    "{what}: get({k}) failed though its value was not damaged: {e}"
                );
                failed.insert(k);
            }
        }
    }
    assert_eq!(store.len(), want.len(), "{what}: len");
    let mut seen = Vec::new();
    let mut iter_failed = false;
    for item in store.iter() {
        match item {
            Ok((k, v)) => seen.push((k.as_u64(), v.to_vec())),
            Err(e) => {
                read_error(&e, None);
                iter_failed = true;
                break;
            }
        }
    }
    let expect: Vec<(u64, Vec<u8>)> = want
        .iter()
        .take(seen.len())
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(seen, expect, "{what}: iter returned wrong keys or bytes");
    if iter_failed {
        assert!(
            !failed.is_empty(),
            "{what}: iter failed but every get worked"
        );
    } else {
        assert_eq!(seen.len(), want.len(), "{what}: iter ended early");
        assert!(failed.is_empty(), "{what}: get failed but iter did not");
    }
    failed
}
