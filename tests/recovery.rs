//! Recovery from damaged files: truncation, flipped bytes, foreign files, missing files.
//!
//! Each test builds a small reference store (`section_slots(16)`, about a hundred puts and
//! deletes, so several `.k` and `.v` files and a partly filled buffer), keeps the model state
//! after every record (`states[i]` is the content after the first `i` records) and copies the
//! store once per damage case. The oracle for every case:
//!
//! - open fails with `Corrupt`, `Foreign` or `Version` whose message names the damaged file, or
//! - open succeeds with `stats().records == j` for some `j` at or after the last sync, and the
//!   content (`len`, `iter`, `get` of every key ever used) is exactly `states[j]`, except that a
//!   read whose value bytes were damaged may fail with `Corrupt` naming the file. Wrong bytes
//!   are never accepted.
//!
//! After a successful open the store must accept more writes and give them back after a reopen,
//! without the dropped tail coming back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tempfile::TempDir;
use toykv::format::{
    BUFFER_DATA_AT, BUFFER_NAME, BUFFER_VALUES_AT, HEADER_LEN, Header, KEYS_DATA_AT, Kind, MARK_A,
    MARK_B, MARK_LEN, PAGE, RECORD_SIZE, SLOT_SIZE, VALUES_DATA_AT, buffer_len, keys_len,
    keys_name, values_len, values_name,
};
use toykv::{Error, Options, Store};

const SLOTS: u32 = 16;
const S: usize = SLOTS as usize;
/// Records (puts and deletes) in the reference store.
const OPS: usize = 109;
/// Keys of the reference store are `0..KEYS`; continuation writes use `0..CONT_KEYS`.
const KEYS: u64 = 40;
const CONT_KEYS: u64 = 70;
/// Run the write-close-reopen continuation on every `CONT_DROPPED`-th successful open that
/// dropped a tail, every `CONT_INTACT`-th one that did not, and on every one that returned
/// `Corrupt` for a read (it takes about 20 ms: a flush, a new key section, fsyncs).
const CONT_DROPPED: usize = 3;
const CONT_INTACT: usize = 20;

type Model = BTreeMap<u64, Vec<u8>>;

fn opts() -> Options {
    Options::new().section_slots(SLOTS)
}

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

enum Op {
    Put(u64, Vec<u8>),
    Delete(u64),
}

/// The reference history: every op writes exactly one record (deletes only of live keys).
fn history() -> Vec<Op> {
    const LENS: [usize; 12] = [0, 1, 2, 7, 32, 100, 128, 200, 255, 256, 17, 64];
    let mut rng = Rng(0x0074_6f79_6b76);
    let mut live = BTreeSet::new();
    (0..OPS)
        .map(|i| {
            if !live.is_empty() && rng.below(9) == 0 {
                let k = *live.iter().nth(rng.below(live.len())).unwrap();
                live.remove(&k);
                Op::Delete(k)
            } else {
                let k = rng.below(KEYS as usize) as u64;
                let len = if i % 3 == 0 {
                    rng.below(257)
                } else {
                    LENS[i % LENS.len()]
                };
                let mut v = rng.bytes(len);
                if len >= 2 {
                    // Distinct from every other version of the key.
                    v[0] = i as u8;
                    v[1] = k as u8;
                }
                live.insert(k);
                Op::Put(k, v)
            }
        })
        .collect()
}

/// When the reference store syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Never: every record is after the (absent) sync mark.
    Never,
    /// At record 50 and at `MID_SYNC`: the last key section and the buffer hold records and
    /// values on both sides of the mark.
    Mid,
    /// At record 50 and by `close()`: everything is synced.
    Closed,
}

const MODES: [Mode; 3] = [Mode::Never, Mode::Mid, Mode::Closed];
const FIRST_SYNC: usize = 50;
const MID_SYNC: usize = OPS - 6;

/// Where a value lives in the reference store.
#[derive(Clone, Debug)]
struct Loc {
    file: String,
    off: u64,
    len: u64,
}

/// A damaged byte range of one file: the values overlapping it may read as `Corrupt`.
#[derive(Clone, Debug)]
enum Hit {
    /// Only key records or headers were damaged: every get must succeed.
    Nothing,
    /// Bytes `from..to` of `file`.
    Range(String, u64, u64),
    /// Any value may fail (the value layout itself was disturbed).
    Any,
}

struct Reference {
    tmp: TempDir,
    dir: PathBuf,
    mode: Mode,
    states: Vec<Model>,
    /// Records durable at the last sync.
    synced: usize,
    /// For each record: the put's key and value location, or `None` for a delete.
    puts: Vec<Option<(u64, Loc)>>,
    keys: Vec<String>,
    values: Vec<String>,
    /// Every key used, plus a few never used.
    all_keys: Vec<u64>,
}

impl Reference {
    fn build(mode: Mode) -> Reference {
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
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for e in fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".k") {
                keys.push(name);
            } else if name.ends_with(".v") {
                values.push(name);
            }
        }
        keys.sort();
        values.sort();
        assert_eq!(keys.len(), OPS.div_ceil(S));
        let filling = values.len();
        assert_eq!(filling, (next_slot - 1) / S, "buffer section");
        let puts = slots
            .into_iter()
            .map(|p| {
                p.map(|(k, slot, len)| {
                    let (section, index) = (slot / S, (slot % S) as u64);
                    let loc = if section < filling {
                        Loc {
                            file: values_name(section as u32),
                            off: VALUES_DATA_AT as u64 + index * SLOT_SIZE as u64,
                            len: len as u64,
                        }
                    } else {
                        Loc {
                            file: BUFFER_NAME.into(),
                            off: BUFFER_DATA_AT as u64 + index * SLOT_SIZE as u64,
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
                r.iter()
                    .flatten()
                    .filter(|(_, l)| l.file == BUFFER_NAME)
                    .count()
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

    /// A fresh copy of the reference store, in this test's scratch directory. Value sections
    /// never change once written, so they are hard links; the damage helpers below replace a
    /// file instead of writing into it.
    fn copy(&self) -> PathBuf {
        let d = self.tmp.path().join("case");
        if d.exists() {
            fs::remove_dir_all(&d).unwrap();
        }
        fs::create_dir(&d).unwrap();
        for e in fs::read_dir(&self.dir).unwrap() {
            let e = e.unwrap();
            let to = d.join(e.file_name());
            if e.file_name().to_string_lossy().ends_with(".v") {
                fs::hard_link(e.path(), to).unwrap();
            } else {
                fs::copy(e.path(), to).unwrap();
            }
        }
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the value of `key` in `states[j]` lives, if the key is live there.
    fn loc(&self, key: u64, j: usize) -> Option<&Loc> {
        self.states[j].get(&key)?;
        self.puts[..j]
            .iter()
            .rev()
            .flatten()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| l)
    }

    /// Whether the value of `key` in `states[j]` overlaps the damage.
    fn hit(&self, hit: &Hit, key: u64, j: usize) -> bool {
        match hit {
            Hit::Nothing => false,
            Hit::Any => true,
            Hit::Range(file, from, to) => self
                .loc(key, j)
                .is_some_and(|l| l.file == *file && l.off < *to && *from < l.off + l.len.max(1)),
        }
    }

    /// File offset of record `seq` and the key section holding it.
    fn record(seq: usize) -> (String, u64) {
        (
            keys_name((seq / S) as u32),
            (KEYS_DATA_AT + (seq % S) * RECORD_SIZE) as u64,
        )
    }
}

/// Counts of outcomes for the report.
#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    refused: BTreeMap<&'static str, usize>,
    intact: usize,
    dropped: usize,
    corrupt_reads: usize,
    continued: usize,
    /// Continue after every successful open.
    always: bool,
}

impl Tally {
    fn report(&self, what: &str, started: Instant) {
        eprintln!(
            "{what}: {} cases; refused {:?}; opened intact {}, opened with a dropped tail {}, \
             opened with Corrupt reads {}; write+reopen checked {}; {:.2?}",
            self.cases,
            self.refused,
            self.intact,
            self.dropped,
            self.corrupt_reads,
            self.continued,
            started.elapsed()
        );
    }
}

fn variant(e: &Error) -> &'static str {
    match e {
        Error::Corrupt { .. } => "Corrupt",
        Error::Foreign { .. } => "Foreign",
        Error::Version { .. } => "Version",
        Error::Io { .. } => "Io",
        Error::Mismatch { .. } => "Mismatch",
        _ => "other",
    }
}

/// A refusal must be one of the format errors and name one of `names`.
fn check_refusal(e: &Error, names: &[&str], what: &str) {
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
fn check_content(
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

fn continuation_value(i: u64) -> Vec<u8> {
    let len = ((i * 37 + 5) % 257) as usize;
    (0..len)
        .map(|b| (b as u64 * 11 + i * 3 + 0xc0) as u8)
        .collect()
}

/// Writes more (crossing a buffer flush and a key section), syncs half-way, closes, reopens:
/// everything must be there, and nothing dropped at the first open may come back.
fn continue_and_reopen(
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
fn case(
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
fn check_record_offset(e: Option<Error>, damaged: u64, what: &str) {
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
fn rewrite(path: &Path, bytes: &[u8]) {
    if path.exists() {
        fs::remove_file(path).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    let mut b = fs::read(path).unwrap();
    b.resize(len as usize, 0);
    rewrite(path, &b);
}

fn flip(path: &Path, off: u64) {
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
fn header_offsets(stride: usize) -> Vec<u64> {
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
const HEADER_FEW: [u64; 8] = [0, 1, 8, 60, 63, 64, 520, PAGE as u64 - 1];

// ---------------------------------------------------------------------------------------------
// 1. Truncation
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_key_sections() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        // The mid-sync store gets every offset of interest; the others a sample.
        let inside: &[u64] = if mode == Mode::Mid {
            &[0, 1, 8, 16, 22, 24, 28, 31]
        } else {
            &[0, 17]
        };
        for (n, name) in r.keys.iter().enumerate() {
            let mut offs = if n == 0 || n + 1 == r.keys.len() {
                header_offsets(61)
            } else {
                HEADER_FEW.to_vec()
            };
            for rec in 0..S {
                let base = (KEYS_DATA_AT + rec * RECORD_SIZE) as u64;
                offs.extend(inside.iter().map(|o| base + o));
            }
            offs.push(keys_len(SLOTS) - 1);
            offs.push(keys_len(SLOTS)); // unchanged
            for len in offs {
                let what = format!("{name} truncated to {len} bytes");
                let e = case(&r, &mut t, &what, &[name], Hit::Nothing, |d| {
                    truncate(&d.join(name), len)
                });
                if len >= KEYS_DATA_AT as u64 {
                    check_record_offset(e, len, &what);
                }
            }
        }
    }
    t.report("truncated key sections", started);
}

#[test]
fn truncated_value_sections() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        for (n, name) in r.values.iter().enumerate() {
            let mut offs = if n == 0 {
                header_offsets(97)
            } else {
                HEADER_FEW.to_vec()
            };
            for slot in 0..S {
                let base = (VALUES_DATA_AT + slot * SLOT_SIZE) as u64;
                offs.extend([0, 129].map(|o| base + o));
            }
            offs.push(values_len(SLOTS) - 1);
            for len in offs {
                case(
                    &r,
                    &mut t,
                    &format!("{name} truncated to {len} bytes"),
                    &[name],
                    Hit::Range(name.clone(), len, u64::MAX),
                    |d| truncate(&d.join(name), len),
                );
            }
        }
    }
    t.report("truncated value sections", started);
}

#[test]
fn truncated_buffer() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        let mut offs = header_offsets(61);
        offs.extend(
            header_offsets(127)
                .iter()
                .map(|o| o + BUFFER_VALUES_AT as u64),
        );
        for slot in 0..S {
            let base = (BUFFER_DATA_AT + slot * SLOT_SIZE) as u64;
            offs.extend([0, 1, 64, 200, 255].map(|o| base + o));
        }
        offs.push(buffer_len(SLOTS));
        for len in offs {
            case(
                &r,
                &mut t,
                &format!("{BUFFER_NAME} truncated to {len} bytes"),
                &[BUFFER_NAME],
                Hit::Range(BUFFER_NAME.into(), len, u64::MAX),
                |d| truncate(&d.join(BUFFER_NAME), len),
            );
        }
    }
    t.report("truncated buffer", started);
}

/// Files grown past their fixed length are refused, naming the file.
#[test]
fn extended_files() {
    let started = Instant::now();
    let mut t = Tally::default();
    let r = Reference::build(Mode::Mid);
    let mut files: Vec<(String, u64)> = r
        .keys
        .iter()
        .map(|n| (n.clone(), keys_len(SLOTS)))
        .collect();
    files.extend(r.values.iter().map(|n| (n.clone(), values_len(SLOTS))));
    files.push((BUFFER_NAME.into(), buffer_len(SLOTS)));
    for (name, len) in &files {
        for extra in [1, RECORD_SIZE as u64, PAGE as u64] {
            case(
                &r,
                &mut t,
                &format!("{name} extended by {extra} bytes"),
                &[name],
                Hit::Nothing,
                |d| truncate(&d.join(name), len + extra),
            );
        }
    }
    assert_eq!(t.refused.values().sum::<usize>(), t.cases);
    t.report("extended files", started);
}

// ---------------------------------------------------------------------------------------------
// 2. Flipped bytes
// ---------------------------------------------------------------------------------------------

/// Value bytes of interest in `file`: the first, middle and last byte of every value stored
/// there and the first padding byte after it.
fn value_offsets(r: &Reference, file: &str) -> BTreeSet<u64> {
    let mut offs = BTreeSet::new();
    for (_, l) in r.puts.iter().flatten().filter(|(_, l)| l.file == file) {
        if l.len > 0 {
            offs.extend([l.off, l.off + l.len / 2, l.off + l.len - 1]);
        }
        if l.len < SLOT_SIZE as u64 {
            offs.insert(l.off + l.len);
        }
    }
    offs
}

#[test]
fn flipped_key_section_bytes() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        let last = r.keys.len() - 1;
        for (n, name) in r.keys.iter().enumerate() {
            let dense = mode == Mode::Mid;
            let mut offs: BTreeSet<u64> = if n == 0 || n == last {
                (0..HEADER_LEN as u64).collect()
            } else {
                (n as u64 % 4..HEADER_LEN as u64).step_by(4).collect()
            };
            // Both copies of the sync mark: every byte where syncs wrote marks.
            for m in [MARK_A, MARK_B] {
                let step = if dense || n == last { 1 } else { 5 };
                offs.extend((m..m + MARK_LEN).step_by(step).map(|o| o as u64));
            }
            offs.extend([64, 100, 511, 528, 1040, 2048, 4095]);
            // Every byte of the records of the last section of the mid-sync store, which lie
            // on both sides of its mark; a sample elsewhere.
            let step = match (dense, last - n) {
                (true, 0) => 1,
                (true, 1) => 3,
                (true, _) => 11,
                (false, _) => 13,
            };
            offs.extend(
                (KEYS_DATA_AT + n % step..KEYS_DATA_AT + S * RECORD_SIZE)
                    .step_by(step)
                    .map(|o| o as u64),
            );
            for off in offs {
                let what = format!("{name} byte {off} flipped");
                let e = case(&r, &mut t, &what, &[name], Hit::Nothing, |d| {
                    flip(&d.join(name), off)
                });
                check_record_offset(e, off, &what);
            }
        }
    }
    t.report("flipped key section bytes", started);
}

#[test]
fn flipped_value_section_bytes() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        for (n, name) in r.values.iter().enumerate() {
            // The value files do not depend on syncs: the mid-sync store gets them all, the
            // others the last one.
            if mode != Mode::Mid && n + 1 != r.values.len() {
                continue;
            }
            let mut offs: BTreeSet<u64> = if n == 0 {
                (0..HEADER_LEN as u64).collect()
            } else {
                (n as u64 % 4..HEADER_LEN as u64).step_by(4).collect()
            };
            offs.extend([64, 511, 4095]);
            offs.extend(value_offsets(&r, name));
            for off in offs {
                case(
                    &r,
                    &mut t,
                    &format!("{name} byte {off} flipped"),
                    &[name],
                    Hit::Range(name.clone(), off, off + 1),
                    |d| flip(&d.join(name), off),
                );
            }
        }
    }
    assert!(t.corrupt_reads > 0);
    t.report("flipped value section bytes", started);
}

#[test]
fn flipped_buffer_bytes() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        let mut offs: BTreeSet<u64> = (0..HEADER_LEN as u64).collect();
        offs.extend((BUFFER_VALUES_AT..BUFFER_VALUES_AT + HEADER_LEN).map(|o| o as u64));
        offs.extend([64, 511, 4095, 4160, 8191]);
        offs.extend(value_offsets(&r, BUFFER_NAME));
        // Slots no record uses.
        let used = r
            .puts
            .iter()
            .flatten()
            .filter(|(_, l)| l.file == BUFFER_NAME)
            .count();
        for slot in used..S {
            offs.insert((BUFFER_DATA_AT + slot * SLOT_SIZE + 5) as u64);
        }
        for off in offs {
            let e = case(
                &r,
                &mut t,
                &format!("{BUFFER_NAME} byte {off} flipped"),
                &[BUFFER_NAME],
                Hit::Range(BUFFER_NAME.into(), off, off + 1),
                |d| flip(&d.join(BUFFER_NAME), off),
            );
            if let Some(Error::Corrupt { offset, .. }) = &e {
                assert!(off < HEADER_LEN as u64 && *offset == 0, "byte {off}: {e:?}");
            }
        }
    }
    t.report("flipped buffer bytes", started);
}

// ---------------------------------------------------------------------------------------------
// 3. Foreign files and future versions
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
// 4. Missing files
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

// ---------------------------------------------------------------------------------------------
// 5. Legitimate crash-like damage: a torn tail is dropped for good
// ---------------------------------------------------------------------------------------------

/// The unsynced tail torn at every record: the store opens at that record, takes new writes,
/// and a reopen never brings back the dropped records.
#[test]
fn torn_tail_at_every_unsynced_record() {
    let started = Instant::now();
    let mut t = Tally {
        always: true,
        ..Tally::default()
    };
    for mode in [Mode::Never, Mode::Mid] {
        let r = Reference::build(mode);
        for seq in r.synced..OPS {
            let (name, off) = Reference::record(seq);
            case(
                &r,
                &mut t,
                &format!("record {seq} torn ({name} byte {})", off + 13),
                &[&name],
                Hit::Nothing,
                |d| flip(&d.join(&name), off + 13),
            );
        }
    }
    assert_eq!(t.dropped, t.cases, "{t:?}");
    t.report("torn tails", started);
}
