//! A copy-on-write overlay over another [`Vfs`]: reads come from the base files until they are
//! written, and every mutation (a write, `set_len`, `allocate`, a store into a map, a
//! creation, rename or removal) stays in memory and is recorded as a [`Change`]. Nothing
//! reaches the base.
//!
//! `toykv check` opens a store through it: recovery runs for real, and the changes it records
//! are what open would repair. Files are opened buffered and read-only on the base, and report
//! [`Align::NONE`]; `sync`, `flush` and `sync_dir` do nothing, and `lock` hands out a guard
//! that holds nothing (the caller takes the real lock on the base).

use std::any::Any;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use super::region::{Claim, RawMap};
use super::{Align, FileIo, Mode, Region, Vfs, range};

/// One mutation the overlay kept from its base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A directory was created.
    CreateDir(PathBuf),
    /// A file was created.
    Create(PathBuf),
    /// `len` bytes at `off` of a file were written with different bytes than it held.
    Write {
        /// The file (its name when written).
        path: PathBuf,
        /// Where.
        off: u64,
        /// How many bytes.
        len: u64,
    },
    /// A file's length changed (`set_len` or `allocate`).
    SetLen {
        /// The file.
        path: PathBuf,
        /// Its length before.
        from: u64,
        /// Its length after.
        to: u64,
    },
    /// A file was renamed.
    Rename {
        /// Its old name.
        from: PathBuf,
        /// Its new name.
        to: PathBuf,
    },
    /// A file was removed.
    Remove(PathBuf),
}

/// The recorded changes, shared by the overlay and its files.
type Log = Arc<Mutex<Vec<Change>>>;

/// Locks `m`, ignoring poisoning (the data stays consistent: every update is one step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A copy-on-write [`Vfs`] over `base`; see the [module docs](self).
#[derive(Debug)]
pub struct Overlay {
    base: Arc<dyn Vfs>,
    /// Files the overlay knows of by name: `None` when removed (or renamed away).
    files: Mutex<BTreeMap<PathBuf, Option<Arc<Node>>>>,
    /// Directories created in the overlay.
    dirs: Mutex<Vec<PathBuf>>,
    log: Log,
}

impl Overlay {
    /// An overlay over `base`, with no change yet.
    pub fn new(base: Arc<dyn Vfs>) -> Overlay {
        Overlay {
            base,
            files: Mutex::new(BTreeMap::new()),
            dirs: Mutex::new(Vec::new()),
            log: Arc::default(),
        }
    }

    /// The changes recorded so far, in order.
    pub fn changes(&self) -> Vec<Change> {
        lock(&self.log).clone()
    }

    fn record(&self, c: Change) {
        lock(&self.log).push(c);
    }

    /// The file at `path` as the overlay sees it, if it exists (opened on the base when the
    /// overlay did not know it yet).
    fn node(&self, path: &Path) -> io::Result<Option<Arc<Node>>> {
        let mut files = lock(&self.files);
        if let Some(known) = files.get(path) {
            return Ok(known.clone());
        }
        let read = Mode {
            create: false,
            write: false,
            direct: false,
        };
        match self.base.open(path, read) {
            Ok(file) => {
                let len = file.len()?;
                let node = Arc::new(Node {
                    path: Mutex::new(path.to_path_buf()),
                    data: Mutex::new(Data::new(Some(file), len)),
                    log: self.log.clone(),
                });
                files.insert(path.to_path_buf(), Some(node.clone()));
                Ok(Some(node))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        lock(&self.dirs).iter().any(|d| d == path) || self.base.list(path).is_ok()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Vfs for Overlay {
    fn open(&self, path: &Path, mode: Mode) -> io::Result<Arc<dyn FileIo>> {
        let node = match self.node(path)? {
            Some(node) => node,
            None if mode.create => {
                let node = Arc::new(Node {
                    path: Mutex::new(path.to_path_buf()),
                    data: Mutex::new(Data::new(None, 0)),
                    log: self.log.clone(),
                });
                lock(&self.files).insert(path.to_path_buf(), Some(node.clone()));
                self.record(Change::Create(path.to_path_buf()));
                node
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(File(node, Arc::default())))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        if !self.is_dir(path) {
            lock(&self.dirs).push(path.to_path_buf());
            self.record(Change::CreateDir(path.to_path_buf()));
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = match self.base.list(dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.is_dir(dir) => Vec::new(),
            Err(e) => return Err(e),
        };
        let files = lock(&self.files);
        let dirs = lock(&self.dirs);
        let known = files
            .iter()
            .map(|(p, n)| (p, n.is_some()))
            .chain(dirs.iter().map(|p| (p, true)));
        for (path, present) in known {
            if path.parent() != Some(dir) {
                continue;
            }
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            names.retain(|n| *n != name);
            if present {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let node = self.node(from)?.ok_or_else(|| not_found(from))?;
        let mut files = lock(&self.files);
        files.insert(from.to_path_buf(), None);
        files.insert(to.to_path_buf(), Some(node.clone()));
        *lock(&node.path) = to.to_path_buf();
        drop(files);
        self.record(Change::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.node(path)?.ok_or_else(|| not_found(path))?;
        lock(&self.files).insert(path.to_path_buf(), None);
        self.record(Change::Remove(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self, _dir: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        Ok(Box::new(()))
    }
}

/// Bytes copied in memory per page.
const PAGE: u64 = 4096;

/// A file's bytes: its pages written in the overlay, the rest from the base file (its first
/// `base_len` bytes; zeros past them, up to `len`).
#[derive(Debug)]
struct Data {
    base: Option<Arc<dyn FileIo>>,
    base_len: u64,
    len: u64,
    pages: BTreeMap<u64, Vec<u8>>,
}

impl Data {
    fn new(base: Option<Arc<dyn FileIo>>, len: u64) -> Data {
        Data {
            base,
            base_len: len,
            len,
            pages: BTreeMap::new(),
        }
    }

    /// Reads `buf` at `off` from the base file (zeros past its kept length).
    fn read_base(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let from_base = self.base_len.saturating_sub(off).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(from_base);
        if let (Some(f), false) = (&self.base, head.is_empty()) {
            f.read_at(head, off)?;
        }
        tail.fill(0);
        Ok(())
    }

    fn read(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let end = off.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read of {} bytes at {off} past the end", buf.len()),
            ));
        }
        let (first, last) = (off / PAGE, (off + buf.len() as u64).div_ceil(PAGE));
        if self.pages.range(first..last).next().is_none() {
            return self.read_base(buf, off);
        }
        let mut done = 0;
        while done < buf.len() {
            let at = off + done as u64;
            let (page, inside) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - inside).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.pages.get(&page) {
                Some(p) => out.copy_from_slice(&p[inside..inside + n]),
                None => self.read_base(out, at)?,
            }
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        self.len = self.len.max(off + buf.len() as u64);
        let mut done = 0;
        while done < buf.len() {
            let at = off + done as u64;
            let (page, inside) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - inside).min(buf.len() - done);
            if !self.pages.contains_key(&page) {
                let mut p = vec![0u8; PAGE as usize];
                self.read_base(&mut p, page * PAGE)?;
                self.pages.insert(page, p);
            }
            if let Some(p) = self.pages.get_mut(&page) {
                p[inside..inside + n].copy_from_slice(&buf[done..done + n]);
            }
            done += n;
        }
        Ok(())
    }

    fn set_len(&mut self, to: u64) {
        if to < self.len {
            self.pages.retain(|&p, _| p * PAGE < to);
            if let Some(p) = self.pages.get_mut(&(to / PAGE)) {
                p[(to % PAGE) as usize..].fill(0);
            }
            self.base_len = self.base_len.min(to);
        }
        self.len = to;
    }
}

/// One file of the overlay, shared by its handles and maps.
#[derive(Debug)]
struct Node {
    /// Its current name, for the changes it records.
    path: Mutex<PathBuf>,
    data: Mutex<Data>,
    log: Log,
}

impl Node {
    fn record(&self, c: impl FnOnce(PathBuf) -> Change) {
        let path = lock(&self.path).clone();
        lock(&self.log).push(c(path));
    }

    /// Writes `buf` at `off`, recording it unless the file held these bytes already.
    fn write(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut data = lock(&self.data);
        let end = off
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if end <= data.len {
            let mut old = vec![0u8; buf.len()];
            data.read(&mut old, off)?;
            if old == buf {
                return Ok(());
            }
        }
        data.write(buf, off)?;
        drop(data);
        self.record(|path| Change::Write {
            path,
            off,
            len: buf.len() as u64,
        });
        Ok(())
    }

    fn set_len(&self, to: u64) -> io::Result<()> {
        let mut data = lock(&self.data);
        let from = data.len;
        if from == to {
            return Ok(());
        }
        data.set_len(to);
        drop(data);
        self.record(|path| Change::SetLen { path, from, to });
        Ok(())
    }
}

/// A handle on an overlay file.
#[derive(Debug)]
/// An open overlay file: its node, and the claim on its one live mapping.
struct File(Arc<Node>, Arc<AtomicBool>);

impl FileIo for File {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        lock(&self.0.data).read(buf, off)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.0.write(buf, off)
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.0.data).len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if len > self.len()? {
            self.0.set_len(len)?;
        }
        Ok(())
    }

    fn map(&self) -> io::Result<Region> {
        let claim = Claim::take(&self.1)?;
        let len = lock(&self.0.data).len as usize;
        Ok(Region::whole(Arc::new(OverlayMap {
            node: self.0.clone(),
            len,
            _claim: claim,
        })))
    }

    fn align(&self) -> Align {
        Align::NONE
    }

    fn direct(&self) -> bool {
        false
    }
}

/// A "map" of an overlay file: reads and writes of the file's pages, shared with its handles.
#[derive(Debug)]
struct OverlayMap {
    node: Arc<Node>,
    len: usize,
    _claim: Claim,
}

impl OverlayMap {
    fn read_bytes(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        range(off, buf.len(), self.len)?;
        lock(&self.node.data).read(buf, off as u64)
    }
}

// The pages live behind the node's mutex, so these copies are sound whoever calls them: the
// `unsafe` contract of `RawMap` (no concurrent writer of the range) is not needed here.
#[allow(unsafe_code)]
impl RawMap for OverlayMap {
    fn len(&self) -> usize {
        self.len
    }

    unsafe fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        self.read_bytes(off, buf)
    }

    unsafe fn write(&self, off: usize, buf: &[u8]) -> io::Result<()> {
        range(off, buf.len(), self.len)?;
        self.node.write(buf, off as u64)
    }

    fn flush(&self, off: usize, len: usize) -> io::Result<()> {
        range(off, len, self.len).map(|_| ())
    }

    fn copy_to(&self, off: usize, len: usize, dst: &dyn FileIo, dst_off: u64) -> io::Result<()> {
        let mut buf = vec![0u8; len];
        self.read_bytes(off, &mut buf)?;
        dst.write_at(&buf, dst_off)
    }

    fn copy_out(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        self.read_bytes(off, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Os;

    #[test]
    fn changes_stay_in_memory_and_are_recorded() {
        let d = crate::testing::tempdir();
        let a = d.path().join("a");
        std::fs::write(&a, b"hello world").unwrap();
        let o = Overlay::new(Arc::new(Os));
        let rw = Mode {
            create: false,
            write: true,
            direct: true,
        };
        let f = o.open(&a, rw).unwrap();
        f.write_at(b"hello", 0).unwrap(); // the same bytes: no change
        assert!(o.changes().is_empty());
        f.write_at(b"HELLO", 0).unwrap();
        let mut m = f.map().unwrap();
        let mut b = [0u8; 11];
        m.read(0, &mut b).unwrap();
        assert_eq!(&b, b"HELLO world");
        m.write(6, b"W").unwrap();
        f.read_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"HELLO World");
        let c = d.path().join("c");
        let n = o.open(&c, Mode { create: true, ..rw }).unwrap();
        n.set_len(4).unwrap();
        o.rename(&c, &d.path().join("b")).unwrap();
        o.remove(&a).unwrap();
        let mut names = o.list(d.path()).unwrap();
        names.sort();
        assert_eq!(names, ["b"]);
        assert!(o.open(&a, rw).is_err());
        assert_eq!(o.changes().len(), 6, "{:?}", o.changes());
        assert_eq!(std::fs::read(&a).unwrap(), b"hello world");
        assert!(!c.exists() && !d.path().join("b").exists());
    }

    #[test]
    fn pages_mix_with_the_base_across_lengths() {
        let d = crate::testing::tempdir();
        let a = d.path().join("a");
        let base: Vec<u8> = (0..3 * PAGE as usize).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &base).unwrap();
        let o = Overlay::new(Arc::new(Os));
        let f = o.open(&a, Mode::default()).unwrap();
        f.write_at(&[0xee; 10], PAGE - 5).unwrap(); // across a page boundary
        let mut want = base.clone();
        want[PAGE as usize - 5..PAGE as usize + 5].fill(0xee);
        let mut got = vec![0u8; want.len()];
        f.read_at(&mut got, 0).unwrap();
        assert_eq!(got, want);
        f.set_len(PAGE + 2).unwrap(); // shrink into the written page, then extend
        f.set_len(2 * PAGE).unwrap();
        want.truncate(PAGE as usize + 2);
        want.resize(2 * PAGE as usize, 0);
        let mut got = vec![0u8; want.len()];
        f.read_at(&mut got, 0).unwrap();
        assert_eq!(got, want);
        assert!(f.read_at(&mut [0u8; 1], 2 * PAGE).is_err());
        assert_eq!(std::fs::read(&a).unwrap(), base);
    }
}
