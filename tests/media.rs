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
//! Files are found by walking the data directory recursively and classified by extension
//! (`.k`, `.v`, `.b`), so the tests follow the files wherever the layout puts them. Two store
//! shapes: small sections (`section_slots(16)`: many small files, damage everywhere) and the
//! default size (16 MiB value sections: sampled offsets). The cases and their outcomes are
//! counted and printed.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tempfile::TempDir;
use toykv::format::{BUFFER_DATA_AT, DEFAULT_SECTION_SLOTS, SLOT_SIZE, VALUES_DATA_AT};
use toykv::{Error, Options, Store, admin};

const SECTOR: u64 = 512;

/// splitmix64: deterministic cases, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("media")
        .tempdir_in(common::base())
        .unwrap()
}

/// A toykv file found in the data directory.
#[derive(Clone, Debug)]
struct DataFile {
    /// Path relative to the data directory.
    rel: PathBuf,
    /// Its extension: `k`, `v` or `b`.
    kind: char,
    len: u64,
}

/// Every `.k`, `.v` and `.b` file under `dir`, at any depth, in path order.
fn data_files(dir: &Path) -> Vec<DataFile> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<DataFile>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                walk(root, &path, out);
                continue;
            }
            let kind = match path.extension().and_then(|e| e.to_str()) {
                Some("k") => 'k',
                Some("v") => 'v',
                Some("b") => 'b',
                _ => continue,
            };
            out.push(DataFile {
                rel: path.strip_prefix(root).unwrap().to_path_buf(),
                kind,
                len: meta.len(),
            });
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

/// Copies the tree at `from` to `to`, except that value sections other than `damaged` (which
/// the store never writes once they exist) are hard links: faster, and nothing to write back.
fn copy_tree(from: &Path, to: &Path, damaged: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        if entry.metadata().unwrap().is_dir() {
            copy_tree(&path, &target, damaged);
        } else if path.extension().is_some_and(|e| e == "v") && !path.ends_with(damaged) {
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
    /// The value slot of every live key's value, assuming puts take slots 0, 1, 2, … in order.
    live_slots: Vec<u64>,
    files: Vec<DataFile>,
}

/// A value distinct from every other key's and version's (when at least 2 bytes long).
fn value(key: u64, version: usize, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|j| (key as usize * 31 + version * 7 + j) as u8)
        .collect();
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
            } else {
                let len = match i % 4 {
                    0 => 256,
                    1 => rng.below(257) as usize,
                    2 => [0, 1, 5, 255][i / 4 % 4],
                    _ => 100,
                };
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
        let files = data_files(dir.path());
        assert!(files.iter().any(|f| f.kind == 'k'), "{files:?}");
        assert!(files.iter().any(|f| f.kind == 'b'), "{files:?}");
        let live_slots = model
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| slot_of[k])
            .collect();
        Pristine {
            dir,
            opts,
            model,
            live_slots,
            files,
        }
    }

    fn file(&self, kind: char) -> impl Iterator<Item = &DataFile> {
        self.files.iter().filter(move |f| f.kind == kind)
    }
}

/// One fault.
#[derive(Clone, Debug)]
enum Damage {
    /// Flips bit `bit` of the byte at `off`.
    Flip { file: PathBuf, off: u64, bit: u8 },
    /// Zeroes the 512-byte sector `sector`.
    Zero { file: PathBuf, sector: u64 },
    /// Writes sector `from_sector` of `from` over sector `to_sector` of `to` (a misdirected
    /// write; `from` may be `to`).
    Copy {
        from: PathBuf,
        from_sector: u64,
        to: PathBuf,
        to_sector: u64,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Flip { file, off, bit } => {
                write!(f, "{} byte {off} bit {bit} flipped", file.display())
            }
            Damage::Zero { file, sector } => write!(
                f,
                "{} sector {sector} (bytes {}..{}) zeroed",
                file.display(),
                sector * SECTOR,
                (sector + 1) * SECTOR
            ),
            Damage::Copy {
                from,
                from_sector,
                to,
                to_sector,
            } => write!(
                f,
                "{} sector {from_sector} written over {} sector {to_sector}",
                from.display(),
                to.display()
            ),
        }
    }
}

fn read_sector(path: &Path, sector: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).unwrap();
    let mut b = vec![0u8; SECTOR as usize];
    f.read_exact_at(&mut b, sector * SECTOR).unwrap();
    b
}

fn write_at(path: &Path, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

impl Damage {
    /// The file damaged.
    fn target(&self) -> &Path {
        match self {
            Damage::Flip { file, .. } | Damage::Zero { file, .. } => file,
            Damage::Copy { to, .. } => to,
        }
    }

    fn apply(&self, dir: &Path) {
        match self {
            Damage::Flip { file, off, bit } => {
                use std::os::unix::fs::FileExt;
                let path = dir.join(file);
                let f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .unwrap();
                let mut b = [0u8];
                f.read_exact_at(&mut b, *off).unwrap();
                b[0] ^= 1 << bit;
                f.write_all_at(&b, *off).unwrap();
            }
            Damage::Zero { file, sector } => {
                write_at(&dir.join(file), sector * SECTOR, &[0u8; SECTOR as usize])
            }
            Damage::Copy {
                from,
                from_sector,
                to,
                to_sector,
            } => {
                let data = read_sector(&dir.join(from), *from_sector);
                write_at(&dir.join(to), to_sector * SECTOR, &data);
            }
        }
    }
}

/// Counts of outcomes.
#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    /// Open refused the store (check reported it).
    open_refused: usize,
    /// Opened; at least one read failed (check reported it).
    read_errors: usize,
    /// Opened, every read exact, yet check reports an error (damage no read reaches, such as
    /// a header field of a value section only check verifies).
    check_only: usize,
    /// Opened, every read exact, check clean (damage in bytes nothing uses: padding, reserved
    /// space, records past the end of the log).
    harmless: usize,
    /// Runs of the `toykv check` binary, all with the exit status the report implies.
    binary_runs: usize,
    /// Violations: silently wrong reads, unclear errors, damage check missed.
    failures: Vec<String>,
}

impl Tally {
    fn report(&self, name: &str, started: Instant) {
        println!(
            "{name}: {} cases in {:.1?}: open refused {}, reads failed {}, only check reports {}, \
             harmless {}; toykv check binary run {} times; {} silently wrong or missed",
            self.cases,
            started.elapsed(),
            self.open_refused,
            self.read_errors,
            self.check_only,
            self.harmless,
            self.binary_runs,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{name}: {} failures:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// The `toykv check` binary's exit status on `dir`.
fn check_binary(dir: &Path) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_toykv"))
        .arg("check")
        .arg(dir)
        .output()
        .unwrap()
        .status
        .code()
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

/// Runs one case: copy, damage, check, open, read everything.
fn case(p: &Pristine, d: &Damage, t: &mut Tally) {
    t.cases += 1;
    let work = tempdir();
    let dir = work.path().join("data");
    copy_tree(p.dir.path(), &dir, d.target());
    d.apply(&dir);
    let report = retry_locked(|| admin::check(&dir))
        .unwrap_or_else(|e| panic!("{d}: check did not run: {e}"));
    let check_errors = report.errors() > 0;
    let mut fail = |why: String| {
        t.failures
            .push(format!("{d}: {why}; check: {:?}", report.problems));
    };
    if t.cases % 8 == 1 {
        let want = if check_errors { 1 } else { 0 };
        let got = check_binary(&dir);
        if got != Some(want) {
            fail(format!("toykv check exited {got:?}, expected {want}"));
        }
        t.binary_runs += 1;
    }
    let store = match retry_locked(|| Store::open_with(&dir, p.opts.clone().cache_bytes(0))) {
        Ok(s) => s,
        Err(e) => {
            let clear = matches!(
                e,
                Error::Corrupt { .. }
                    | Error::Foreign { .. }
                    | Error::Version { .. }
                    | Error::Mismatch { .. }
            ) && e.to_string().contains(&*dir.to_string_lossy());
            if !clear {
                fail(format!("open failed without naming the damage: {e:?}"));
            }
            if !check_errors {
                fail(format!("open failed ({e}) but check found no error"));
            }
            t.open_refused += 1;
            return;
        }
    };
    let mut read_errors = 0;
    for (&key, want) in &p.model {
        match store.get(key) {
            Ok(got) => {
                if got.as_deref() != want.as_deref() {
                    fail(format!(
                        "SILENTLY WRONG READ of key {key}: got {:?}, wrote {:?}",
                        got.as_deref().map(short),
                        want.as_deref().map(short)
                    ));
                }
            }
            Err(_) => read_errors += 1,
        }
    }
    for item in store.iter() {
        match item {
            Ok((k, v)) => {
                let want = p.model.get(&k.as_u64()).cloned().flatten();
                if want.as_deref() != Some(&v[..]) {
                    fail(format!(
                        "SILENTLY WRONG SCAN item key {}: got {:?}, wrote {:?}",
                        k.as_u64(),
                        short(&v),
                        want.as_deref().map(short)
                    ));
                }
            }
            Err(_) => read_errors += 1,
        }
    }
    drop(store);
    match (read_errors > 0, check_errors) {
        (true, false) => fail(format!(
            "{read_errors} reads failed but check found no error"
        )),
        (true, true) => t.read_errors += 1,
        (false, true) => t.check_only += 1,
        (false, false) => t.harmless += 1,
    }
}

/// The first bytes of a value, for messages.
fn short(v: &[u8]) -> String {
    format!("{} bytes {:02x?}", v.len(), &v[..v.len().min(8)])
}

fn small() -> Pristine {
    // 9 key sections and 7 value sections of 16 slots, and a partly filled buffer.
    Pristine::build(Options::new().section_slots(16), 40, 140)
}

/// Offsets to flip in a file: in every 512-byte sector, `per_sector` spread offsets, and in the
/// first sector (header, sync marks) more.
fn flip_offsets(f: &DataFile, per_sector: u64, rng: &mut Rng) -> Vec<u64> {
    let mut offs: Vec<u64> = (0..64).step_by(5).collect();
    for sector in 0..f.len.div_ceil(SECTOR) {
        let room = SECTOR.min(f.len - sector * SECTOR);
        offs.extend((0..per_sector).map(|_| sector * SECTOR + rng.below(room)));
    }
    if f.kind == 'b' {
        // Both sync marks (20 bytes at 512 and at 1024).
        offs.extend((512..532).chain(1024..1044).step_by(3));
    }
    offs.sort_unstable();
    offs.dedup();
    offs
}

#[test]
fn bit_flips_small_sections() {
    let started = Instant::now();
    let p = small();
    let mut rng = Rng(1);
    let mut t = Tally::default();
    for f in &p.files {
        for off in flip_offsets(f, 2, &mut rng) {
            let bit = rng.below(8) as u8;
            let d = Damage::Flip {
                file: f.rel.clone(),
                off,
                bit,
            };
            case(&p, &d, &mut t);
        }
    }
    t.report("bit flips, 16-slot sections", started);
}

#[test]
fn zeroed_sectors_small_sections() {
    let started = Instant::now();
    let p = small();
    let mut t = Tally::default();
    for f in &p.files {
        for sector in 0..f.len / SECTOR {
            let d = Damage::Zero {
                file: f.rel.clone(),
                sector,
            };
            case(&p, &d, &mut t);
        }
    }
    t.report("zeroed sectors, 16-slot sections", started);
}

#[test]
fn misdirected_sectors_small_sections() {
    let started = Instant::now();
    let p = small();
    let mut rng = Rng(3);
    let mut t = Tally::default();
    let n = p.files.len() as u64;
    for (i, f) in p.files.iter().enumerate() {
        let sectors = f.len / SECTOR;
        // Within the file: header over data, data over header, data over other data, every
        // sector over its neighbour.
        let last = sectors - 1;
        let mut pairs = vec![
            (0, last),
            (last, 0),
            (rng.below(sectors), rng.below(sectors)),
        ];
        pairs.extend((0..last).map(|s| (s + 1, s)));
        for (from, to) in pairs {
            if from != to {
                let d = Damage::Copy {
                    from: f.rel.clone(),
                    from_sector: from,
                    to: f.rel.clone(),
                    to_sector: to,
                };
                case(&p, &d, &mut t);
            }
        }
        // Across files: the same sector of the next file of the same kind (the classic
        // misdirected write), the same sector of a file of another kind, and random ones.
        let same_kind: Vec<&DataFile> = p.files.iter().filter(|g| g.kind == f.kind).collect();
        let other_kind: Vec<&DataFile> = p.files.iter().filter(|g| g.kind != f.kind).collect();
        let pos = same_kind.iter().position(|g| g.rel == f.rel).unwrap();
        let mut sources: Vec<(&DataFile, u64)> = Vec::new();
        if same_kind.len() > 1 {
            let g = same_kind[(pos + 1) % same_kind.len()];
            for s in 0..sectors.min(g.len / SECTOR) {
                sources.push((g, s));
            }
        }
        let g = other_kind[i % other_kind.len()];
        sources.push((g, 0));
        sources.push((g, rng.below(g.len / SECTOR)));
        for _ in 0..2 {
            let g = &p.files[rng.below(n) as usize];
            if g.rel != f.rel {
                sources.push((g, rng.below(g.len / SECTOR)));
            }
        }
        for (g, from) in sources {
            let to = if from < sectors {
                from
            } else {
                rng.below(sectors)
            };
            let d = Damage::Copy {
                from: g.rel.clone(),
                from_sector: from,
                to: f.rel.clone(),
                to_sector: to,
            };
            case(&p, &d, &mut t);
        }
    }
    t.report("misdirected sectors, 16-slot sections", started);
}

#[test]
fn all_faults_default_sections() {
    let started = Instant::now();
    // 80,000 records (about 70,000 puts): one full 16 MiB value section, a second key section,
    // a partly filled buffer.
    let p = Pristine::build(Options::new(), 1000, 80_000);
    assert!(
        p.file('v').count() >= 1 && p.file('k').count() >= 2,
        "{:?}",
        p.files
    );
    let mut rng = Rng(4);
    let mut t = Tally::default();
    let mut cases = Vec::new();
    for f in &p.files {
        // The header sector, the sectors where data starts, and a sample elsewhere.
        let sectors = f.len / SECTOR;
        let mut picks: Vec<u64> = vec![0, 1, 8, sectors - 1, rng.below(sectors)];
        // Sectors holding live values (slot `g` of the put that last wrote a live key).
        let slots = u64::from(DEFAULT_SECTION_SLOTS);
        let data_at = match f.kind {
            'v' => Some(VALUES_DATA_AT as u64),
            'b' => Some(BUFFER_DATA_AT as u64),
            _ => None,
        };
        if let Some(at) = data_at {
            let section = if f.kind == 'v' { 0 } else { 1 };
            let here: Vec<u64> = p
                .live_slots
                .iter()
                .filter(|&&g| g / slots == section)
                .map(|&g| (at + (g % slots) * SLOT_SIZE as u64) / SECTOR)
                .collect();
            assert!(!here.is_empty(), "no live value in {}", f.rel.display());
            picks.extend((0..3).map(|_| here[rng.below(here.len() as u64) as usize]));
        }
        for &s in &picks {
            let off = s * SECTOR + rng.below(SECTOR);
            cases.push(Damage::Flip {
                file: f.rel.clone(),
                off,
                bit: rng.below(8) as u8,
            });
        }
        for &s in picks.iter().step_by(2) {
            cases.push(Damage::Zero {
                file: f.rel.clone(),
                sector: s,
            });
        }
        let g = &p.files[rng.below(p.files.len() as u64) as usize];
        let from = rng.below(g.len / SECTOR);
        cases.push(Damage::Copy {
            from: g.rel.clone(),
            from_sector: from,
            to: f.rel.clone(),
            to_sector: from.min(sectors - 1),
        });
        cases.push(Damage::Copy {
            from: f.rel.clone(),
            from_sector: 8 + rng.below(sectors - 8),
            to: f.rel.clone(),
            to_sector: 8 + rng.below(sectors - 8),
        });
    }
    for d in &cases {
        case(&p, d, &mut t);
    }
    t.report("all faults, default sections", started);
}
