//! Media faults on a closed store: bit flips, zeroed 512-byte sectors, and sectors written to
//! the wrong place (within a file, and across files), in every file of the data directory.
//!
//! Each test builds a store with a known history, closes it (everything synced), and then, once
//! per case, copies it, damages the copy, and checks:
//!
//! - **no silently wrong read**: after a successful open, every key ever written either reads
//!   back exactly as last written (or as absent when deleted), or the read fails; a full
//!   iteration returns no key/value pair that differs from the model;
//! - a failed open gives an error that names a path in the data directory;
//! - `toykv check` (the [`admin::check`] report; on a sample of cases the `toykv` binary and
//!   its exit status) reports an error whenever open or a read hits the damage.
//!
//! Files are found by walking the data directory (`STORE`, and `.k`, `.v`, `.b` in the shard
//! directory). The stores have one shard, `Durability::None` and no garbage collection, so
//! values take slots 0, 1, 2, … in order. Two shapes: small sections (`section_slots(16)`:
//! many small files, damage everywhere) and the default size (16 MiB value sections, a 32 MiB
//! buffer of two banks: sampled offsets).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tempfile::TempDir;
use toykv::format::{
    BANKS, DEFAULT_SECTION_SLOTS, HEADER_LEN, Header, Kind, MARK_A, MARK_B, MARK_LEN, PAGE,
    SLOT_SIZE, STORE_NAME, VALUES_DATA_AT, bank_at,
};
use toykv::{Durability, Error, Options, Store, admin};

const SECTOR: u64 = 512;

/// splitmix64: deterministic cases, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn tempdir() -> TempDir {
    tempfile::tempdir_in(common::base()).unwrap()
}

/// One shard, no background sync, no garbage collection: a deterministic file set.
fn options(section_slots: u32) -> Options {
    Options::new()
        .section_slots(section_slots)
        .shards(1)
        .durability(Durability::None)
        .gc(false)
}

/// A toykv file found in the data directory: its path relative to it, its kind (`k`, `v` or
/// `b`, its extension; `s` for `STORE`) and its length.
#[derive(Clone, Debug)]
struct DataFile {
    rel: PathBuf,
    kind: char,
    len: u64,
}

/// Every file under `dir`, at any depth, relative to `dir`, with its length.
fn walk(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let (name, meta) = (PathBuf::from(e.file_name()), e.metadata().unwrap());
        if meta.is_dir() {
            out.extend(
                walk(&e.path())
                    .into_iter()
                    .map(|(rel, n)| (name.join(rel), n)),
            );
        } else {
            out.push((name, meta.len()));
        }
    }
    out
}

/// Copies the tree at `from` to `to`, except that value sections other than `damaged` (which
/// the store never writes once they exist) are hard links: faster, and nothing to write back.
fn copy_tree(from: &Path, to: &Path, damaged: &Path) {
    for (rel, _) in walk(from) {
        let (path, target) = (from.join(&rel), to.join(&rel));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        if rel.extension().is_some_and(|e| e == "v") && rel != damaged {
            fs::hard_link(&path, &target).unwrap();
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// A closed store with a known content.
struct Pristine {
    dir: TempDir,
    opts: Options,
    /// Every key ever written, with its final value (`None`: deleted).
    model: BTreeMap<u64, Option<Vec<u8>>>,
    /// The value slot of every live key's value (puts take slots 0, 1, 2, … in order).
    live_slots: Vec<u64>,
    files: Vec<DataFile>,
}

/// A value distinct from every other key's and version's (when at least 2 bytes long).
fn value(key: u64, version: usize, len: usize) -> Vec<u8> {
    let base = key as usize * 31 + version * 7;
    let mut v: Vec<u8> = (0..len).map(|j| (base + j) as u8).collect();
    if len >= 4 {
        v[..2].copy_from_slice(&(version as u16).to_le_bytes());
        v[2..4].copy_from_slice(&(key as u16).to_le_bytes());
    }
    v
}

impl Pristine {
    /// `ops` puts and deletes over `keys` keys, with a few syncs, then close.
    fn build(opts: Options, keys: u64, ops: usize) -> Pristine {
        let dir = tempdir();
        let store = Store::open_with(dir.path(), opts.clone()).unwrap();
        let mut model = BTreeMap::new();
        let mut slot_of = BTreeMap::new();
        let mut puts = 0u64;
        let mut rng = Rng(0x006d_6564_6961);
        for i in 0..ops {
            let key = rng.below(keys);
            if rng.below(8) == 0 && matches!(model.get(&key), Some(Some(_))) {
                assert!(store.delete(key).unwrap());
                model.insert(key, None);
                slot_of.remove(&key);
            } else {
                let lens = [256, rng.below(257) as usize, [0, 1, 5, 255][i / 4 % 4], 100];
                let len = lens[i % 4];
                let v = value(key, i, len);
                store.put(key, &v).unwrap();
                model.insert(key, Some(v));
                slot_of.insert(key, puts);
                puts += 1;
            }
            if i % (ops / 3 + 1) == ops / 3 {
                store.sync().unwrap();
            }
        }
        store.close().unwrap();
        // Every toykv file, at any depth, in path order.
        let mut files: Vec<DataFile> = (walk(dir.path()).into_iter())
            .filter_map(|(rel, len)| {
                let kind = match rel.extension().and_then(|e| e.to_str()) {
                    Some("k") => 'k',
                    Some("v") => 'v',
                    Some("b") => 'b',
                    None if rel.ends_with(STORE_NAME) => 's',
                    _ => return None,
                };
                Some(DataFile { rel, kind, len })
            })
            .collect();
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        let live_slots = slot_of.into_values().collect();
        Pristine {
            dir,
            opts,
            model,
            live_slots,
            files,
        }
    }

    fn count(&self, kind: char) -> usize {
        self.files.iter().filter(|f| f.kind == kind).count()
    }

    fn read(&self, rel: &Path, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let f = fs::File::open(self.dir.path().join(rel)).unwrap();
        f.read_exact_at(&mut b, off).unwrap();
        b
    }

    /// The bank of buffer `rel` whose header page names value section `section`.
    fn bank_of(&self, rel: &Path, slots: u32, section: u32) -> Option<usize> {
        (0..BANKS).find(|&bank| {
            let h = self.read(rel, bank_at(slots, bank) as u64, HEADER_LEN);
            Header::decode(&h, Kind::Values).is_ok_and(|h| h.section == section)
        })
    }
}

/// One fault: `bytes` written at `off` of `file`, computed from the pristine store.
#[derive(Clone, Debug)]
struct Damage {
    file: PathBuf,
    off: u64,
    bytes: Vec<u8>,
    what: String,
}

impl Damage {
    /// Flips bit `bit` of the byte at `off`.
    fn flip(p: &Pristine, file: &Path, off: u64, bit: u8) -> Damage {
        let mut bytes = p.read(file, off, 1);
        bytes[0] ^= 1 << bit;
        let what = format!("byte {off} bit {bit} flipped");
        Damage::new(file, off, bytes, what)
    }

    /// Zeroes the 512-byte sector `sector`.
    fn zero(file: &Path, sector: u64) -> Damage {
        let (off, end) = (sector * SECTOR, (sector + 1) * SECTOR);
        let what = format!("sector {sector} (bytes {off}..{end}) zeroed");
        Damage::new(file, off, vec![0; SECTOR as usize], what)
    }

    /// Writes sector `from_sector` of `from` over sector `to_sector` of `to` (a misdirected
    /// write; `from` may be `to`).
    fn misdirect(p: &Pristine, from: &Path, from_sector: u64, to: &Path, to_sector: u64) -> Damage {
        let bytes = p.read(from, from_sector * SECTOR, SECTOR as usize);
        let what = format!("sector {to_sector} overwritten by {from:?} sector {from_sector}");
        Damage::new(to, to_sector * SECTOR, bytes, what)
    }

    fn new(file: &Path, off: u64, bytes: Vec<u8>, what: String) -> Damage {
        let (file, what) = (file.to_path_buf(), format!("{}: {what}", file.display()));
        Damage {
            file,
            off,
            bytes,
            what,
        }
    }
}

/// Runs every case on `p` and prints the outcomes; fails on any violation (a silently wrong
/// read, an unclear error, damage check missed).
fn run(name: &str, started: Instant, p: &Pristine, cases: &[Damage]) {
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (n, d) in cases.iter().enumerate() {
        let (outcome, mut failed) = case(p, d, n % 8 == 0);
        *outcomes.entry(outcome).or_default() += 1;
        failures.append(&mut failed);
    }
    let (n, elapsed, wrong) = (cases.len(), started.elapsed(), failures.len());
    let runs = n.div_ceil(8);
    println!("{name}: {n} cases in {elapsed:.1?}: {outcomes:?}; {runs} runs of the binary");
    let all = failures.join("\n");
    assert!(failures.is_empty(), "{name}: {wrong} failures:\n{all}");
}

/// Runs `f` again while it fails with `Locked`: the lock is an `flock`, which a child process
/// forked by another test thread (the `toykv` binary runs) shares until its `exec`, so a
/// directory nobody uses can look locked for an instant.
fn retry_locked<T>(mut f: impl FnMut() -> toykv::Result<T>) -> toykv::Result<T> {
    for _ in 0..100 {
        match f() {
            Err(Error::Locked { .. }) => std::thread::sleep(std::time::Duration::from_millis(10)),
            r => return r,
        }
    }
    f()
}

/// Runs one case: copy, damage, check (with the `toykv` binary too when `binary`), open, read
/// everything. Returns the outcome and the violations.
fn case(p: &Pristine, d: &Damage, binary: bool) -> (&'static str, Vec<String>) {
    let work = tempdir();
    let dir = work.path().join("data");
    copy_tree(p.dir.path(), &dir, &d.file);
    let target = dir.join(&d.file);
    let f = fs::File::options().write(true).open(target).unwrap();
    f.write_all_at(&d.bytes, d.off).unwrap();
    let report = retry_locked(|| admin::check(&dir))
        .unwrap_or_else(|e| panic!("{}: check did not run: {e}", d.what));
    let check_errors = report.errors() > 0;
    let mut failures = Vec::new();
    let mut fail = |why: String| {
        let problems = &report.problems;
        failures.push(format!("{}: {why}; check: {problems:?}", d.what));
    };
    let mut toykv = Command::new(env!("CARGO_BIN_EXE_toykv"));
    let exit = binary.then(|| toykv.arg("check").arg(&dir).output().unwrap().status.code());
    if exit.is_some_and(|s| s != Some(i32::from(check_errors))) {
        fail(format!("toykv check exited {exit:?}; {check_errors}"));
    }
    let outcome = match retry_locked(|| Store::open_with(&dir, p.opts.clone().cache_bytes(0))) {
        Err(e) => {
            let bad = matches!(e, Error::Corrupt { .. } | Error::Foreign { .. });
            let ours = bad || matches!(e, Error::Version { .. } | Error::Mismatch { .. });
            if !ours || !e.to_string().contains(&*dir.to_string_lossy()) {
                fail(format!("open failed without naming the damage: {e:?}"));
            }
            if !check_errors {
                fail(format!("open failed ({e}) but check found no error"));
            }
            "open refused"
        }
        Ok(store) => {
            let read_errors = reads(p, &store, &mut fail);
            if read_errors > 0 && !check_errors {
                fail(format!("{read_errors} reads failed; check found no error"));
            }
            // Damage no read reaches may still be an error to check (a header field of a
            // value section only check verifies), or harmless (padding, reserved space,
            // records past the end of the log).
            match (read_errors > 0, check_errors) {
                (true, _) => "reads failed",
                (false, true) => "only check reports",
                (false, false) => "harmless",
            }
        }
    };
    (outcome, failures)
}

/// Gets every key ever written and scans the store: a read may fail, never return other bytes
/// than the model's. Returns the number of failed reads.
fn reads(p: &Pristine, store: &Store, fail: &mut impl FnMut(String)) -> usize {
    let mut read_errors = 0;
    let mut check = |what: &str, key: u64, got: Option<&[u8]>| {
        let want = p.model.get(&key).cloned().flatten();
        if got != want.as_deref() {
            let (got, want) = (got.map(short), want.as_deref().map(short));
            let why = format!("SILENTLY WRONG {what} key {key}: {got:?}, wrote {want:?}");
            fail(why);
        }
    };
    for &key in p.model.keys() {
        match store.get(key) {
            Ok(got) => check("READ of", key, got.as_deref()),
            Err(_) => read_errors += 1,
        }
    }
    for item in store.iter() {
        match item {
            Ok((k, v)) => check("SCAN item", k.as_u64(), Some(&v)),
            Err(_) => read_errors += 1,
        }
    }
    read_errors
}

/// The first bytes of a value, for messages.
fn short(v: &[u8]) -> String {
    format!("{} bytes {:02x?}", v.len(), &v[..v.len().min(8)])
}

/// 9 key sections, 8 value sections of 16 slots (the last also in a bank), a bank filling.
fn small() -> Pristine {
    let p = Pristine::build(options(16), 40, 140);
    let counts = ['s', 'k', 'v', 'b'].map(|k| p.count(k));
    assert_eq!(counts, [1, 9, 8, 1], "{:?}", p.files);
    p
}

/// Offsets to flip in a file: in every 512-byte sector, `per_sector` spread offsets, and in the
/// first sector (header, sync marks) more; in the buffer, both sync marks and bank headers.
fn flip_offsets(f: &DataFile, slots: u32, per_sector: u64, rng: &mut Rng) -> BTreeSet<u64> {
    let mut offs: BTreeSet<u64> = (0..64).step_by(5).collect();
    for sector in 0..f.len.div_ceil(SECTOR) {
        let room = SECTOR.min(f.len - sector * SECTOR);
        offs.extend((0..per_sector).map(|_| sector * SECTOR + rng.below(room)));
    }
    if f.kind == 'b' {
        for m in [MARK_A, MARK_B] {
            offs.extend((m..m + MARK_LEN).step_by(3).map(|o| o as u64));
        }
        for bank in 0..BANKS {
            let at = bank_at(slots, bank) as u64;
            offs.extend((at..at + HEADER_LEN as u64).step_by(7));
        }
    }
    offs
}

#[test]
fn bit_flips_small_sections() {
    let (started, p, mut rng) = (Instant::now(), small(), Rng(1));
    let mut cases = Vec::new();
    for f in &p.files {
        for off in flip_offsets(f, 16, 2, &mut rng) {
            cases.push(Damage::flip(&p, &f.rel, off, rng.below(8) as u8));
        }
    }
    run("bit flips, 16-slot sections", started, &p, &cases);
}

#[test]
fn zeroed_sectors_small_sections() {
    let (started, p) = (Instant::now(), small());
    let cases: Vec<Damage> = (p.files.iter())
        .flat_map(|f| (0..f.len / SECTOR).map(|s| Damage::zero(&f.rel, s)))
        .collect();
    run("zeroed sectors, 16-slot sections", started, &p, &cases);
}

#[test]
fn misdirected_sectors_small_sections() {
    let (started, p, mut rng) = (Instant::now(), small(), Rng(3));
    let n = p.files.len() as u64;
    let mut cases = Vec::new();
    for (i, f) in p.files.iter().enumerate() {
        let sectors = f.len / SECTOR;
        // In the file: header over data and back, a random pair, every sector over the previous.
        let (last, random) = (sectors - 1, (rng.below(sectors), rng.below(sectors)));
        let mut pairs = vec![(0, last), (last, 0), random];
        pairs.extend((0..last).map(|s| (s + 1, s)));
        for (from, to) in pairs.into_iter().filter(|(a, b)| a != b) {
            cases.push(Damage::misdirect(&p, &f.rel, from, &f.rel, to));
        }
        // Across files: the same sector of the next file of the same kind (the classic
        // misdirected write), the same sector of a file of another kind, and random ones.
        let same_kind: Vec<&DataFile> = p.files.iter().filter(|g| g.kind == f.kind).collect();
        let other_kind: Vec<&DataFile> = p.files.iter().filter(|g| g.kind != f.kind).collect();
        let pos = same_kind.iter().position(|g| g.rel == f.rel).unwrap();
        let mut sources: Vec<(&DataFile, u64)> = Vec::new();
        if same_kind.len() > 1 {
            let g = same_kind[(pos + 1) % same_kind.len()];
            sources.extend((0..sectors.min(g.len / SECTOR)).map(|s| (g, s)));
        }
        let g = other_kind[i % other_kind.len()];
        sources.extend([(g, 0), (g, rng.below(g.len / SECTOR))]);
        for _ in 0..2 {
            let g = &p.files[rng.below(n) as usize];
            if g.rel != f.rel {
                sources.push((g, rng.below(g.len / SECTOR)));
            }
        }
        for (g, from) in sources {
            let to = Some(from).filter(|&s| s < sectors);
            let to = to.unwrap_or_else(|| rng.below(sectors));
            cases.push(Damage::misdirect(&p, &g.rel, from, &f.rel, to));
        }
    }
    run("misdirected sectors, 16-slot sections", started, &p, &cases);
}

#[test]
fn all_faults_default_sections() {
    let started = Instant::now();
    // 80,000 records (about 70,000 puts): one full 16 MiB value section (a bank still holds a
    // copy), a second key section, a second value section partly filled in the other bank.
    let slots = DEFAULT_SECTION_SLOTS;
    let p = Pristine::build(options(slots), 1000, 80_000);
    assert!(p.count('v') == 1 && p.count('k') == 2, "{:?}", p.files);
    let mut rng = Rng(4);
    let mut cases = Vec::new();
    for f in &p.files {
        // The header sector, the sectors where data starts, and a sample elsewhere.
        let sectors = f.len / SECTOR;
        let mut picks: Vec<u64> = vec![0, 1, sectors - 1, rng.below(sectors)];
        picks.extend((sectors > 8).then_some(8));
        // Sectors holding live values (slot `g` of the put that last wrote a live key): the
        // `.v` file holds section 0, the bank being filled section 1; and both banks' headers.
        let data_at = match f.kind {
            'v' => Some((0, VALUES_DATA_AT as u64)),
            'b' => {
                picks.extend((0..BANKS).map(|b| bank_at(slots, b) as u64 / SECTOR));
                let bank = p.bank_of(&f.rel, slots, 1).unwrap();
                Some((1, (bank_at(slots, bank) + PAGE) as u64))
            }
            _ => None,
        };
        if let Some((section, at)) = data_at {
            let s = u64::from(slots);
            let here: Vec<u64> = (p.live_slots.iter())
                .filter(|&&g| g / s == section)
                .map(|&g| (at + (g % s) * SLOT_SIZE as u64) / SECTOR)
                .collect();
            assert!(!here.is_empty(), "no live value in {}", f.rel.display());
            picks.extend((0..3).map(|_| here[rng.below(here.len() as u64) as usize]));
        }
        for &s in &picks {
            let off = s * SECTOR + rng.below(SECTOR.min(f.len - s * SECTOR));
            cases.push(Damage::flip(&p, &f.rel, off, rng.below(8) as u8));
        }
        for &s in picks.iter().step_by(2) {
            cases.push(Damage::zero(&f.rel, s));
        }
        let g = &p.files[rng.below(p.files.len() as u64) as usize];
        let (from, to) = (rng.below(g.len / SECTOR), &f.rel);
        let same = from.min(sectors - 1);
        cases.push(Damage::misdirect(&p, &g.rel, from, to, same));
        if sectors > 16 {
            let (a, b) = (8 + rng.below(sectors - 8), 8 + rng.below(sectors - 8));
            cases.push(Damage::misdirect(&p, to, a, to, b));
        }
    }
    run("all faults, default sections", started, &p, &cases);
}
