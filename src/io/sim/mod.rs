//! An in-memory file system that simulates power loss and injects faults.
//!
//! Each file has a volatile image (what the page cache holds: every write and map store lands
//! there) and a durable image (what the disk holds). `sync`, `flush` and `sync_dir` copy the
//! volatile state to the durable one. Directory entries are likewise volatile until the
//! directory is synced.
//!
//! [`SimFs::power_loss`] models a crash the SQLite way: every write not yet made durable is, at
//! random, applied, dropped, or replaced by garbage over the bytes it wrote; bytes it did not
//! write keep their durable contents (sectors are written atomically: SQLite's "powersafe
//! overwrite"). A file whose length changed keeps its old or its new length; unsynced
//! creations, renames and removals are each kept or lost. The store is then reopened on the
//! surviving images.
//!
//! Faults: [`SimFs::fail_syncs`] makes `sync`/`flush` fail with `EIO`,
//! [`SimFs::lie_about_syncs`] makes them succeed without doing anything, [`SimFs::fail_writes`]
//! makes writes fail, [`SimFs::refuse_direct`] makes `O_DIRECT` opens fail with `EINVAL`, and
//! [`SimFs::with_align`] sets the alignment direct files demand (misaligned I/O then fails with
//! `EINVAL`, as the kernel does).

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

mod fault;
mod file;

pub use fault::Fault;

use super::{Align, FileIo, Mode, Vfs};
use file::{Node, SimFile};

/// The sector size simulated files report as their direct-I/O alignment by default.
pub const SECTOR: usize = 512;

#[derive(Debug, Default)]
struct State {
    live: HashMap<PathBuf, Node>,
    durable: HashMap<PathBuf, Node>,
    dirs: HashSet<PathBuf>,
    locks: HashSet<PathBuf>,
    fail_syncs: bool,
    lie_syncs: bool,
    fail_writes: bool,
    refuse_direct: bool,
    align: Option<Align>,
    /// Counted I/O calls so far, and the call that is to fail (see `fault`).
    calls: u64,
    fault: Option<(u64, Fault)>,
}

/// The simulated file system; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty file system whose direct files demand `align`.
    pub fn with_align(align: Align) -> Self {
        let fs = Self::default();
        lock(&fs.state).align = Some(align);
        fs
    }

    /// Makes every later `sync` and map `flush` fail (or succeed again).
    pub fn fail_syncs(&self, on: bool) {
        lock(&self.state).fail_syncs = on;
    }

    /// Makes every later file `sync` and map `flush` report success without making anything
    /// durable (or honest again): a disk that lies about its cache. A store on it
    /// acknowledges writes a power loss then takes away; the power-loss tests use this to
    /// check that their oracle notices.
    pub fn lie_about_syncs(&self, on: bool) {
        lock(&self.state).lie_syncs = on;
    }

    /// Makes every later write (`write_at`, `set_len`, map copy-out) fail (or succeed again).
    pub fn fail_writes(&self, on: bool) {
        lock(&self.state).fail_writes = on;
    }

    /// Makes later `O_DIRECT` opens fail with `EINVAL`, as a file system without direct I/O.
    pub fn refuse_direct(&self, on: bool) {
        lock(&self.state).refuse_direct = on;
    }

    /// Simulates a power loss with the given seed: unsynced sectors are applied, dropped or
    /// garbled; unsynced directory changes are kept or lost; locks are released. Open handles
    /// must be dropped first (the process died with the power).
    pub fn power_loss(&self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut st = lock(&self.state);
        // Directory entries: each unsynced difference is kept or lost.
        let mut names: Vec<PathBuf> = st.live.keys().chain(st.durable.keys()).cloned().collect();
        names.sort();
        names.dedup();
        let mut survive = HashMap::new();
        for name in names {
            let (live, durable) = (st.live.get(&name), st.durable.get(&name));
            let pick = match (live, durable) {
                (Some(l), Some(d)) if Arc::ptr_eq(l, d) => Some(l.clone()),
                (l, d) => {
                    if rng.random_bool(0.5) {
                        l.cloned()
                    } else {
                        d.cloned()
                    }
                }
            };
            if let Some(node) = pick {
                survive.insert(name, node);
            }
        }
        // File contents: each unsynced write is applied, dropped or garbled.
        let mut seen = HashSet::new();
        for node in survive.values() {
            if !seen.insert(Arc::as_ptr(node) as usize) {
                continue;
            }
            let mut d = lock(node);
            let len = if d.live.len() != d.durable.len() && rng.random_bool(0.5) {
                d.live.len()
            } else {
                d.durable.len()
            };
            let mut img = d.durable.clone();
            img.resize(len, 0);
            let pending = std::mem::take(&mut d.pending);
            for w in pending {
                let (a, b) = (w.start.min(len), w.end.min(len));
                if a >= b {
                    continue;
                }
                match rng.random_range(0..3) {
                    0 => {
                        if let Some(src) = d.live.get(a..b) {
                            img[a..b].copy_from_slice(src);
                        }
                    }
                    1 => {}
                    _ => rng.fill(&mut img[a..b]),
                }
            }
            d.live = img.clone();
            d.durable = img;
        }
        st.live = survive.clone();
        st.durable = survive;
        st.locks.clear();
    }

    /// Whether syncs fail, and whether they lie.
    fn sync_faults(&self) -> (bool, bool) {
        let st = lock(&self.state);
        (st.fail_syncs, st.lie_syncs)
    }

    /// The durable bytes of a file, if it exists durably.
    pub fn durable_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock(&self.state);
        st.durable.get(path).map(|n| lock(n).durable.clone())
    }

    /// Replaces the bytes of a file, volatile and durable (for corrupting a closed store).
    pub fn set_bytes(&self, path: &Path, bytes: &[u8]) {
        let mut st = lock(&self.state);
        let node = st.live.entry(path.to_path_buf()).or_default().clone();
        st.durable.insert(path.to_path_buf(), node.clone());
        let mut d = lock(&node);
        d.live = bytes.to_vec();
        d.durable = bytes.to_vec();
        d.pending.clear();
    }

    /// The bytes of a file as the running process sees them.
    pub fn bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock(&self.state);
        st.live.get(path).map(|n| lock(n).live.clone())
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: Mode) -> io::Result<Arc<dyn FileIo>> {
        self.check()?;
        let mut st = lock(&self.state);
        if mode.direct && st.refuse_direct {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let node = match st.live.get(path) {
            Some(n) => n.clone(),
            None if mode.create && mode.write => {
                let n = Node::default();
                st.live.insert(path.to_path_buf(), n.clone());
                n
            }
            None => return Err(io::ErrorKind::NotFound.into()),
        };
        let align = match (mode.direct, st.align) {
            (false, _) => Align::NONE,
            (true, Some(a)) => a,
            (true, None) => Align {
                mem: SECTOR,
                offset: SECTOR,
            },
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            node,
            align,
            direct: mode.direct,
            write: mode.write,
            mapped: Arc::default(),
        }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        lock(&self.state).dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.check()?;
        let st = lock(&self.state);
        let mut names: Vec<String> = st
            .live
            .keys()
            .chain(st.dirs.iter())
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check()?;
        let mut st = lock(&self.state);
        let node = st.live.remove(from).ok_or(io::ErrorKind::NotFound)?;
        st.live.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        let mut st = lock(&self.state);
        st.live.remove(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check()?;
        let mut st = lock(&self.state);
        if st.fail_syncs {
            return Err(eio());
        }
        let st = &mut *st;
        st.durable.retain(|p, _| p.parent() != Some(dir));
        for (p, n) in &st.live {
            if p.parent() == Some(dir) {
                st.durable.insert(p.clone(), n.clone());
            }
        }
        Ok(())
    }

    fn lock(&self, dir: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.check()?;
        let mut st = lock(&self.state);
        if !st.locks.insert(dir.to_path_buf()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Like the real one, the lock lives in a file.
        st.live
            .entry(dir.join(crate::format::LOCK_NAME))
            .or_default();
        Ok(Box::new(DirLock {
            fs: self.clone(),
            dir: dir.to_path_buf(),
        }))
    }
}

/// Releases a directory lock on drop.
#[derive(Debug)]
struct DirLock {
    fs: SimFs,
    dir: PathBuf,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        lock(&self.fs.state).locks.remove(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: Mode = Mode {
        create: true,
        write: true,
        direct: false,
    };

    #[test]
    fn synced_data_survives_power_loss() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        let f = fs.open(&dir.join("a"), RW).unwrap();
        f.write_at(&[7; 1024], 0).unwrap();
        f.sync().unwrap();
        fs.sync_dir(dir).unwrap();
        f.write_at(&[9; 512], 0).unwrap();
        drop(f);
        let mut outcomes = HashSet::new();
        for seed in 0..64 {
            let g = fs.clone();
            // Replay the same history on a copy per seed.
            let copy = SimFs::new();
            copy.set_bytes(&dir.join("a"), &g.durable_bytes(&dir.join("a")).unwrap());
            let f = copy.open(&dir.join("a"), RW).unwrap();
            f.write_at(&[9; 512], 0).unwrap();
            drop(f);
            copy.power_loss(seed);
            let b = copy.durable_bytes(&dir.join("a")).unwrap();
            assert_eq!(&b[512..], &[7; 512][..], "synced sector kept");
            outcomes.insert(match &b[..512] {
                x if x == [9; 512] => "applied",
                x if x == [7; 512] => "dropped",
                _ => "garbled",
            });
        }
        assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    }

    #[test]
    fn unsynced_creation_can_vanish() {
        let mut lost = 0;
        for seed in 0..32 {
            let fs = SimFs::new();
            let f = fs.open(Path::new("/d/new"), RW).unwrap();
            f.write_at(b"x", 0).unwrap();
            f.sync().unwrap();
            drop(f);
            fs.power_loss(seed);
            if fs.durable_bytes(Path::new("/d/new")).is_none() {
                lost += 1;
            }
        }
        assert!(lost > 0 && lost < 32, "{lost}");
    }

    #[test]
    fn alignment_is_enforced_for_direct_files() {
        let fs = SimFs::with_align(Align {
            mem: 4096,
            offset: 4096,
        });
        let f = fs
            .open(Path::new("/d/v"), Mode { direct: true, ..RW })
            .unwrap();
        let b = super::super::AlignedBuf::new(4096, 4096);
        f.write_at(b.bytes(), 4096).unwrap();
        assert!(f.write_at(b.bytes(), 512).is_err());
        assert!(f.write_at(&b.bytes()[..512], 0).is_err());
    }

    #[test]
    fn faults_are_injected() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/d/a"), RW).unwrap();
        fs.fail_syncs(true);
        assert!(f.sync().is_err());
        fs.fail_writes(true);
        assert!(f.write_at(b"x", 0).is_err());
        fs.refuse_direct(true);
        let e = fs
            .open(Path::new("/d/b"), Mode { direct: true, ..RW })
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
