//! The operating system's files: `pread`/`pwrite`, `fdatasync`, real `O_DIRECT`, shared
//! `mmap` and `flock`.
//!
//! Direct-I/O alignment comes from `statx(STATX_DIOALIGN)` (Linux 6.1+), else from the
//! device's `logical_block_size` in sysfs, else 4096.

use std::any::Any;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use memmap2::MmapMut;

use super::{Align, FileIo, Map, Mode, Vfs, range};
use crate::format::LOCK_NAME;

/// Fallback alignment when neither the kernel nor sysfs tells.
const FALLBACK_ALIGN: usize = 4096;

/// The operating system's file systems.
#[derive(Debug, Default, Clone, Copy)]
pub struct Os;

impl Vfs for Os {
    fn open(&self, path: &Path, mode: Mode) -> io::Result<Arc<dyn FileIo>> {
        let mut o = OpenOptions::new();
        o.read(true)
            .write(mode.write)
            .create(mode.create && mode.write);
        if mode.direct {
            o.custom_flags(libc::O_DIRECT);
        }
        let file = o.open(path)?;
        let align = if mode.direct {
            dio_align(path, &file)
        } else {
            Align::NONE
        };
        Ok(Arc::new(OsFile {
            file,
            align,
            direct: mode.direct,
        }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, dir: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_NAME))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// An open file.
#[derive(Debug)]
struct OsFile {
    file: File,
    align: Align,
    direct: bool,
}

impl FileIo for OsFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let len = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a plain system call on a file descriptor this struct owns and keeps open.
        let rc = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), 0, len) };
        match rc {
            0 => Ok(()),
            // File systems without fallocate: a sparse extension is the best there is.
            libc::EOPNOTSUPP => self.set_len(len as u64),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    fn map(&self) -> io::Result<Arc<dyn Map>> {
        // SAFETY: the map is shared and writable. Its memory stays valid while the map lives
        // (memmap2 unmaps on drop). Bytes are only copied in and out through `OsMap`'s
        // bounds-checked methods, never handed out as references that outlive a call, so
        // concurrent changes by another process (which the directory lock excludes) could at
        // worst yield wrong bytes, which the checksums catch. The one hazard the type system
        // cannot see is the file shrinking under the map (SIGBUS); the store maps only files
        // whose length it checked and holds the directory lock so no cooperating process
        // truncates them.
        let mut map = unsafe { MmapMut::map_mut(&self.file)? };
        let base = map.as_mut_ptr();
        Ok(Arc::new(OsMap { map, base }))
    }

    fn align(&self) -> Align {
        self.align
    }

    fn direct(&self) -> bool {
        self.direct
    }
}

/// A shared writable map. Writes go through `base` (the map's first byte) so that they need
/// only `&self`: see [`Map::write`] for the rule callers follow.
#[derive(Debug)]
struct OsMap {
    map: MmapMut,
    base: *mut u8,
}

// SAFETY: `base` points into `map`, which the struct owns; the map is plain shared memory that
// any thread may access. Which bytes each thread may write at a time is the callers' protocol
// (see `Map::write`), exactly as for the `MmapMut` alone.
unsafe impl Send for OsMap {}
// SAFETY: as for `Send`: `&self` methods only copy bytes in or out of bounds-checked ranges.
unsafe impl Sync for OsMap {}

impl Map for OsMap {
    fn len(&self) -> usize {
        self.map.len()
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let r = range(off, buf.len(), self.map.len())?;
        buf.copy_from_slice(&self.map[r]);
        Ok(())
    }

    fn write(&self, off: usize, buf: &[u8]) -> io::Result<()> {
        let r = range(off, buf.len(), self.map.len())?;
        // SAFETY: `r` lies inside the map (checked above), so the destination is valid for
        // `buf.len()` bytes, and `buf` cannot overlap it (it is a separate borrow the caller
        // holds). No reference into the map outlives a call, and the caller guarantees no
        // other thread accesses these bytes concurrently (see `Map::write`).
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.base.add(r.start), buf.len()) };
        Ok(())
    }

    fn flush(&self, off: usize, len: usize) -> io::Result<()> {
        range(off, len, self.map.len())?;
        self.map.flush_range(off, len)
    }

    fn copy_to(&self, off: usize, len: usize, dst: &dyn FileIo, dst_off: u64) -> io::Result<()> {
        let r = range(off, len, self.map.len())?;
        dst.write_at(&self.map[r], dst_off)
    }
}

/// What direct I/O on `file` requires.
fn dio_align(path: &Path, file: &File) -> Align {
    if let Some(a) = statx_align(path) {
        return a;
    }
    let block = file
        .metadata()
        .ok()
        .and_then(|m| sysfs_block_size(m.dev()))
        .unwrap_or(FALLBACK_ALIGN);
    Align {
        mem: block,
        offset: block,
    }
}

/// `statx(STATX_DIOALIGN)`; `None` when the kernel or file system does not report it.
fn statx_align(path: &Path) -> Option<Align> {
    let cpath = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `libc::statx` is plain data (integers and arrays), for which all-zero bytes are a
    // valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `cpath` is a NUL-terminated string that outlives the call and `stx` is a valid,
    // writable `statx` buffer; the kernel writes at most `size_of::<statx>()` bytes into it.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            cpath.as_ptr(),
            0,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return None;
    }
    let (mem, offset) = (
        stx.stx_dio_mem_align as usize,
        stx.stx_dio_offset_align as usize,
    );
    (mem.is_power_of_two() && offset.is_power_of_two()).then_some(Align { mem, offset })
}

/// The logical block size of the device `dev` (or of the disk holding that partition).
fn sysfs_block_size(dev: u64) -> Option<usize> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let base = format!("/sys/dev/block/{major}:{minor}");
    ["queue/logical_block_size", "../queue/logical_block_size"]
        .iter()
        .find_map(|p| fs::read_to_string(format!("{base}/{p}")).ok())
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|n| n.is_power_of_two())
}

/// Ends the process with SIGKILL, as `kill -9` would: no destructor, no flush, no exit
/// handler runs. Used by crash tests through [`crate::kill`].
pub(crate) fn kill_self() {
    // SAFETY: `getpid` and `kill` take no pointers and touch no memory of ours; SIGKILL
    // cannot be caught, so the call does not return when it succeeds.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::AlignedBuf;

    fn dir() -> tempfile::TempDir {
        crate::testing::tempdir()
    }

    fn fdinfo_flags(path: &Path) -> u32 {
        // Find our fd for `path` and read its flags back from /proc.
        for e in fs::read_dir("/proc/self/fd").unwrap() {
            let e = e.unwrap();
            if fs::read_link(e.path()).ok().as_deref() == Some(path) {
                let info = fs::read_to_string(format!(
                    "/proc/self/fdinfo/{}",
                    e.file_name().to_string_lossy()
                ))
                .unwrap();
                let line = info.lines().find(|l| l.starts_with("flags:")).unwrap();
                return u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap();
            }
        }
        panic!("no fd for {}", path.display());
    }

    #[test]
    fn direct_flag_is_really_o_direct() {
        assert_ne!(libc::O_DIRECT, 0x40000, "0x40000 is O_NOATIME");
        let d = dir();
        let p = d.path().join("f.v");
        let f = Os
            .open(
                &p,
                Mode {
                    create: true,
                    write: true,
                    direct: true,
                },
            )
            .unwrap();
        assert!(fdinfo_flags(&p) & libc::O_DIRECT as u32 != 0);
        let a = f.align();
        assert!(a.offset.is_power_of_two() && a.offset <= 4096, "{a:?}");
        // CI sets this when it runs the tests on a device with 4096-byte logical blocks.
        if let Ok(want) = std::env::var("TOYKV_EXPECT_DIO_ALIGN") {
            assert_eq!(a.offset, want.parse::<usize>().unwrap(), "{a:?}");
        }
        // An aligned direct write and read round-trip.
        let mut b = AlignedBuf::new(a.offset, a.mem);
        b.bytes_mut().fill(0xab);
        f.write_at(b.bytes(), a.offset as u64).unwrap();
        let mut r = AlignedBuf::new(a.offset, a.mem);
        f.read_at(r.bytes_mut(), a.offset as u64).unwrap();
        assert_eq!(r.bytes(), b.bytes());
        drop(f);
        let g = Os.open(&p, Mode::default()).unwrap();
        assert!(!g.direct());
        assert_eq!(fdinfo_flags(&p) & libc::O_DIRECT as u32, 0);
    }

    #[test]
    fn lock_is_exclusive() {
        let d = dir();
        let g = Os.lock(d.path()).unwrap();
        let e = Os.lock(d.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(g);
        Os.lock(d.path()).unwrap();
    }

    #[test]
    fn map_bounds_are_errors_not_panics() {
        let d = dir();
        let f = Os
            .open(
                &d.path().join("m"),
                Mode {
                    create: true,
                    write: true,
                    direct: false,
                },
            )
            .unwrap();
        f.set_len(4096).unwrap();
        let m = f.map().unwrap();
        m.write(4090, b"abcdef").unwrap();
        assert!(m.write(4091, b"abcdef").is_err());
        let mut buf = [0u8; 6];
        m.read(4090, &mut buf).unwrap();
        assert_eq!(&buf, b"abcdef");
        assert!(m.read(usize::MAX - 1, &mut buf).is_err());
        m.flush(0, 4096).unwrap();
        let mut back = [0u8; 6];
        f.read_at(&mut back, 4090).unwrap();
        assert_eq!(&back, b"abcdef");
    }
}
