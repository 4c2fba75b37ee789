//! The operating system's files: `pread`/`pwrite`, `fdatasync`, real `O_DIRECT`, shared
//! `mmap` and `flock`.
//!
//! Direct-I/O alignment comes from `statx(STATX_DIOALIGN)` (Linux 6.1+), else from the
//! device's `logical_block_size` in sysfs, else 4096.

use std::any::Any;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use memmap2::MmapMut;
use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use rustix::fs::{AtFlags, StatxFlags};

use super::region::{Claim, RawMap};
use super::{Align, FileIo, Mode, PreadThreads, Reader, Region, Vfs, range};
use crate::format::LOCK_NAME;

/// Fallback alignment when neither the kernel nor sysfs tells.
const FALLBACK_ALIGN: usize = 4096;

/// The operating system's file systems.
#[derive(Debug, Default, Clone, Copy)]
pub struct Os;

impl Vfs for Os {
    fn reader(&self, io_uring: bool) -> Arc<dyn Reader> {
        if !io_uring {
            return Arc::new(PreadThreads);
        }
        match super::uring::Uring::new() {
            Ok(u) => Arc::new(u),
            Err(e) => {
                tracing::info!("io_uring unavailable ({e}); reading values with pread");
                Arc::new(PreadThreads)
            }
        }
    }

    fn open(&self, path: &Path, mode: Mode) -> io::Result<Arc<dyn FileIo>> {
        let mut o = OpenOptions::new();
        o.read(true)
            .write(mode.write)
            .create(mode.create && mode.write);
        if mode.direct {
            o.custom_flags(OFlag::O_DIRECT.bits());
        }
        let file = o.open(path)?;
        let align = if mode.direct {
            dio_align(&file)
        } else {
            Align::NONE
        };
        Ok(Arc::new(OsFile {
            file,
            align,
            direct: mode.direct,
            mapped: Arc::default(),
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
    /// Set while a mapping made by [`FileIo::map`] lives (see `Claim`).
    mapped: Arc<AtomicBool>,
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
        let off_len = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        match fcntl::posix_fallocate(&self.file, 0, off_len) {
            Ok(()) => Ok(()),
            // File systems without fallocate: a sparse extension is the best there is.
            Err(Errno::EOPNOTSUPP) => self.set_len(len),
            Err(e) => Err(e.into()),
        }
    }

    fn map(&self) -> io::Result<Region> {
        let claim = Claim::take(&self.mapped)?;
        Ok(Region::whole(Arc::new(OsRaw::new(
            &self.file,
            Some(claim),
        )?)))
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    fn align(&self) -> Align {
        self.align
    }

    fn direct(&self) -> bool {
        self.direct
    }
}

/// A shared, writable `mmap` of a whole file. Bytes are copied in and out only through `base`
/// with raw-pointer copies of exactly the range asked for; no reference to the mapped bytes is
/// ever created (so none can overlap another thread's write). `map` owns the mapping and
/// unmaps it on drop; its own accessors are never used except `flush_range` (msync on a raw
/// pointer inside memmap2).
#[derive(Debug)]
struct OsRaw {
    map: MmapMut,
    base: *mut u8,
    /// The mapping claim of the handle that made this map (`None` for the old [`Map`] API).
    _claim: Option<Claim>,
}

// SAFETY: `base` points into `map`, which the struct owns and which stays mapped until the
// struct drops; the mapping is plain shared memory that any thread may access. The pointer is
// only used by `RawMap::read`/`write`, whose callers guarantee no conflicting access to the
// range (see their `# Safety` sections), and by kernel-side calls. Nothing is tied to the
// thread that made the map.
unsafe impl Send for OsRaw {}
// SAFETY: as for `Send`: the `&self` methods are kernel calls (msync, pwrite from the pages)
// or the `unsafe` copies whose callers exclude concurrent conflicting access.
unsafe impl Sync for OsRaw {}

impl OsRaw {
    fn new(file: &File, claim: Option<Claim>) -> io::Result<OsRaw> {
        // SAFETY: memmap2 marks mapping `unsafe` because the file may change under the map
        // (another process, another mapping of the same file, truncation). This type never
        // hands out references to the mapped bytes: it copies in and out with raw pointers
        // (see `read`/`write`) and lets the kernel read the pages (msync, pwrite), so a
        // concurrent change from outside this mapping can at worst yield wrong bytes, which the
        // format's checksums catch; it cannot invalidate a Rust reference. Within this process
        // one handle maps a file once at a time (`Claim`), and the store holds the directory
        // lock, so no cooperating process writes or truncates the file. Truncation by a
        // hostile process would raise SIGBUS on access, as for any mmap user.
        let mut map = unsafe { MmapMut::map_mut(file)? };
        let base = map.as_mut_ptr();
        Ok(OsRaw {
            map,
            base,
            _claim: claim,
        })
    }
}

/// Counts the `n` bytes a copying system call returned into `done`. An interrupted call
/// counts nothing (the caller's loop calls again); 0 bytes is `at_zero`; any other failure
/// is the call's error (from `errno`).
fn advance(n: isize, done: &mut usize, at_zero: io::ErrorKind) -> io::Result<()> {
    match n {
        n if n > 0 => {
            *done += n as usize;
            Ok(())
        }
        0 => Err(at_zero.into()),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

impl RawMap for OsRaw {
    fn len(&self) -> usize {
        self.map.len()
    }

    unsafe fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let r = range(off, buf.len(), self.map.len())?;
        // SAFETY: `r` lies inside the mapping (checked above), which stays mapped while `self`
        // lives, so the source is valid for `buf.len()` bytes; `buf` is a distinct exclusive
        // borrow and no reference into the map exists, so they do not overlap. The caller
        // guarantees nobody writes the range during the call (`RawMap::read`'s contract), and
        // any bit pattern is a valid `u8`.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(r.start), buf.as_mut_ptr(), r.len()) };
        Ok(())
    }

    unsafe fn write(&self, off: usize, buf: &[u8]) -> io::Result<()> {
        let r = range(off, buf.len(), self.map.len())?;
        // SAFETY: `r` lies inside the mapping (checked above), so the destination is valid for
        // `buf.len()` bytes and writable (the map is shared and writable). `buf` cannot overlap
        // it: no reference into the map is ever handed out. The caller guarantees nobody else
        // reads or writes the range during the call (`RawMap::write`'s contract).
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.base.add(r.start), r.len()) };
        Ok(())
    }

    fn flush(&self, off: usize, len: usize) -> io::Result<()> {
        range(off, len, self.map.len())?;
        self.map.flush_range(off, len)
    }

    fn copy_out(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let r = range(off, buf.len(), self.map.len())?;
        let mut done = 0usize;
        while done < r.len() {
            let local = libc::iovec {
                iov_base: buf[done..].as_mut_ptr().cast::<libc::c_void>(),
                iov_len: r.len() - done,
            };
            let remote = libc::iovec {
                // The kernel only reads through this pointer (`iovec` has one pointer type).
                iov_base: self
                    .base
                    .wrapping_add(r.start + done)
                    .cast::<libc::c_void>(),
                iov_len: r.len() - done,
            };
            // SAFETY: `process_vm_readv` on this very process copies, in the kernel, from the
            // remote range `[r.start + done, r.end)` of the mapping (inside it: checked above;
            // mapped while `self` lives) into `buf[done..]`, a distinct exclusive borrow valid
            // for that many bytes. No Rust reference to the mapped bytes is created and no Rust
            // code reads them, so a region owner writing the same bytes meanwhile is not a data
            // race in the Rust memory model (the copy may then hold a mix of old and new bytes;
            // callers copy only ranges nobody writes). The iovec arrays live on this stack
            // frame for the call.
            let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
            advance(n, &mut done, io::ErrorKind::UnexpectedEof)?;
        }
        Ok(())
    }

    fn copy_to(&self, off: usize, len: usize, dst: &dyn FileIo, dst_off: u64) -> io::Result<()> {
        let r = range(off, len, self.map.len())?;
        let fd = dst.fd().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "copy from an OS map needs a destination with a file descriptor",
            )
        })?;
        let mut done = 0usize;
        while done < r.len() {
            let at = dst_off
                .checked_add(done as u64)
                .and_then(|a| libc::off_t::try_from(a).ok())
                .ok_or(io::ErrorKind::InvalidInput)?;
            // SAFETY: the source `[r.start + done, r.end)` lies inside the mapping (checked
            // above), which stays mapped while `self` lives; `fd` is a descriptor borrowed from
            // `dst` for the duration of the call. `pwrite` only reads those pages, in the
            // kernel, through a raw pointer: no Rust reference to the mapped bytes is created,
            // so a region owner writing the same bytes meanwhile is not a data race in the Rust
            // memory model (the kernel may then write a mix of old and new bytes, which the
            // store's protocol avoids).
            let n = unsafe {
                libc::pwrite(
                    fd.as_raw_fd(),
                    self.base.add(r.start + done).cast::<libc::c_void>(),
                    r.len() - done,
                    at,
                )
            };
            advance(n, &mut done, io::ErrorKind::WriteZero)?;
        }
        Ok(())
    }
}

/// What direct I/O on `file` requires.
fn dio_align(file: &File) -> Align {
    if let Some(a) = statx_align(file) {
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

/// `statx(STATX_DIOALIGN)` of the open file; `None` when the kernel or file system does not
/// report it.
fn statx_align(file: &File) -> Option<Align> {
    let stx = rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN).ok()?;
    if !StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::DIOALIGN) {
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
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let base = format!("/sys/dev/block/{major}:{minor}");
    ["queue/logical_block_size", "../queue/logical_block_size"]
        .iter()
        .find_map(|p| fs::read_to_string(format!("{base}/{p}")).ok())
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|n| n.is_power_of_two())
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
        let mut m = f.map().unwrap();
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

    #[test]
    fn regions_write_read_flush_and_copy_out_from_the_pages() {
        let d = dir();
        let rw = Mode {
            create: true,
            write: true,
            direct: false,
        };
        let f = Os.open(&d.path().join("buf"), rw).unwrap();
        f.allocate(3 * 4096).unwrap();
        let mut parts = f
            .map()
            .unwrap()
            .split(&[0..4096, 4096..8192, 8192..12288])
            .unwrap();
        let mut bank1 = parts.pop().unwrap();
        let mut bank0 = parts.pop().unwrap();
        let mut head = parts.pop().unwrap();
        assert_eq!(kind(f.map()), io::ErrorKind::ResourceBusy);
        head.write(0, b"head").unwrap();
        head.flush(0, 4).unwrap();
        bank0.write(0, &[5; 4096]).unwrap();
        bank0.write(4090, b"abcdef").unwrap();
        assert_eq!(
            kind(bank0.write(4091, b"abcdef")),
            io::ErrorKind::InvalidInput
        );
        let mut got = [0u8; 6];
        bank0.read(4090, &mut got).unwrap();
        assert_eq!(&got, b"abcdef");
        // Visible through the file at the region's offset.
        let mut back = [0u8; 6];
        f.read_at(&mut back, 4096 + 4090).unwrap();
        assert_eq!(&back, b"abcdef");
        // Write bank 0 out to an O_DIRECT file through a span on another thread while the
        // owner fills bank 1.
        let v = Os
            .open(&d.path().join("out.v"), Mode { direct: true, ..rw })
            .unwrap();
        let out = bank0.span_all();
        std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                out.copy_to(&*v, 0).unwrap();
                out.flush().unwrap();
                v.sync().unwrap();
            });
            for i in 0..16 {
                bank1.write(i * 256, &[i as u8; 256]).unwrap();
            }
            h.join().unwrap();
        });
        let mut want = vec![5u8; 4096];
        want[4090..].copy_from_slice(b"abcdef");
        let mut r = AlignedBuf::new(4096, v.align().mem.max(4096));
        v.read_at(r.bytes_mut(), 0).unwrap();
        assert_eq!(r.bytes(), &want[..]);
        // Part of a span, at an offset of the destination.
        out.copy_range_to(4090, 6, &*f, 4).unwrap();
        let mut b = [0u8; 10];
        head.read(0, &mut b).unwrap();
        assert_eq!(&b, b"headabcdef");
        // A destination without a descriptor cannot take a copy from the pages.
        let sim = crate::io::SimFs::new();
        let dst = sim.open(Path::new("/x"), rw).unwrap();
        assert_eq!(kind(out.copy_to(&*dst, 0)), io::ErrorKind::Unsupported);
        drop((head, bank0, bank1, out));
        f.map().unwrap();
    }

    fn kind<T: std::fmt::Debug>(r: io::Result<T>) -> io::ErrorKind {
        r.unwrap_err().kind()
    }
}
