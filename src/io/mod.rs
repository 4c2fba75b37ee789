//! The narrow I/O layer every byte of the store goes through.
//!
//! Traits: [`Vfs`] for directory operations and [`FileIo`] for positioned reads and writes
//! (`read_at`, `write_at`, `sync`, `len`, `set_len`, `allocate`) and memory maps. [`Os`]
//! implements them over the operating system with real `O_DIRECT` and `mmap`; `SimFs`
//! (feature `sim`) implements them in memory and can simulate a power loss, in which each write since the last
//! sync is applied, dropped or garbled, and inject I/O errors.
//!
//! # Memory maps: regions and spans
//!
//! [`FileIo::map`] maps the whole file (shared, writable) and returns it as one
//! [`Region`]: a **uniquely owned** range of the map. Nothing else can touch its bytes in Rust:
//!
//! | type | who holds it | can do | cannot do |
//! | --- | --- | --- | --- |
//! | [`Region`] | one owner (not `Clone`; `Send + Sync`) | `read(&self)`, `write(&mut self)`, `flush(&self)`, `copy_to(&self)`, hand out spans, split | overlap another region |
//! | [`Span`] | anyone (`Clone + Send + Sync`, cheap: an `Arc` and two integers) | `flush` (msync), `copy_to` (one `write(2)` from the pages), `sub` | read or write the bytes |
//!
//! - **Ownership.** A handle maps its file once at a time: a second `map` on the same
//!   [`FileIo`] fails with [`io::ErrorKind::ResourceBusy`] until every region and span of the
//!   first mapping has dropped. The owner carves the region into disjoint parts with
//!   [`Region::split_off`] (like `Vec::split_off`) or [`Region::split`] (a list of ranges,
//!   overlap and bounds checked, error otherwise). Since regions never overlap and `write`
//!   needs `&mut self`, the borrow checker alone guarantees that no two threads access the same
//!   mapped byte in Rust at once, one of them writing. Give each part to whoever writes it
//!   (e.g. the write buffer: its header page with the sync marks to the sync leader, each bank
//!   to the shard; a key section: one region, owned by the shard).
//! - **Spans** are for threads that must make a range durable or write it out *without* the
//!   owner's lock, while the owner goes on writing other bytes: [`Region::span`] /
//!   [`Region::span_all`] / [`Span::sub`]. A span keeps the mapping alive. Its operations are
//!   kernel-side only (msync, `pwrite` from the mapped pages through a raw pointer); no Rust
//!   reference to the bytes is created, so they never race with the owner in the Rust memory
//!   model. Whether the *bytes* written out or msynced are the ones wanted (not half-written)
//!   is still the store's protocol: write out a bank only once it is full and no put writes it.
//! - **Offsets** are relative: 0 is the first byte of the region (or span) the method is called
//!   on; [`Region::start`] / [`Span::start`] give its offset in the file. Every range is bounds
//!   checked: outside the region or span is an [`io::ErrorKind::InvalidInput`] error, never a
//!   panic. `read` copies exactly the bytes asked for, no more.
//! - **Durability.** A `write` is a memory store: it survives a process crash at once but not a
//!   power loss until a `flush` (region or span) of its bytes returns. The simulator models
//!   exactly that: region writes are pending until flushed, and `SimFs::power_loss` applies,
//!   drops or garbles them.
//! - **Copying out.** `copy_to(.., dst, dst_off)` writes the range to another file in one
//!   positioned write straight from the mapped pages (page-aligned, so fit for an `O_DIRECT`
//!   destination, when the range starts on a page). An [`Os`] map needs a destination with a
//!   file descriptor ([`FileIo::fd`]); a `SimFs` map copies to any [`FileIo`].
//!
//! ## Example: a write buffer's header page and two banks
//!
//! ```
//! use std::path::Path;
//! use toykv::io::{FileIo, Mode, SimFs, Vfs};
//!
//! # fn main() -> std::io::Result<()> {
//! let fs = SimFs::new();
//! let rw = Mode { create: true, write: true, direct: false };
//! let file = fs.open(Path::new("/d/buffer.b"), rw)?;
//! file.allocate(3 * 4096)?;
//! // One owner of the whole map, carved into disjoint parts (overlaps are refused).
//! let mut parts = file.map()?.split(&[0..4096, 4096..8192, 8192..12288])?;
//! let (mut bank1, mut bank0, mut head) = (parts.pop().unwrap(), parts.pop().unwrap(), parts.pop().unwrap());
//! assert!(file.map().is_err()); // one live mapping per handle
//!
//! head.write(8, b"mark")?; // offsets are relative to the region
//! head.flush(8, 4)?;       // msync: durable now
//! bank0.write(0, &[7; 256])?;
//!
//! // A background thread writes bank 0 out and msyncs it through a span, without any lock,
//! // while the owner goes on filling bank 1.
//! let out = bank0.span_all();
//! let dst = fs.open(Path::new("/d/0.v"), rw)?;
//! std::thread::scope(|s| {
//!     s.spawn(|| out.copy_to(&*dst, 0).and_then(|()| out.flush()));
//!     bank1.write(0, &[9; 256])
//! })?;
//! let mut v = [0u8; 256];
//! bank0.read(0, &mut v)?; // copies exactly these 256 bytes
//! assert_eq!(v, [7; 256]);
//! assert_eq!(bank1.start(), 8192);
//! # Ok(())
//! # }
//! ```
//!
//! # Batched reads
//!
//! [`Vfs::reader`] gives a [`Reader`], whose [`read_many`](Reader::read_many) does a batch of
//! positioned reads ([`ReadReq`]: file, offset, aligned buffer) and answers each on its own.
//! [`Pread`] loops over [`FileIo::read_at`]; [`Os`] submits the batch to io_uring, up to
//! [`MAX_IN_FLIGHT`] reads per system call, and falls back to [`PreadThreads`] (`pread` on up
//! to 8 threads) when io_uring cannot be set up (disabled, blocked by seccomp, an old kernel)
//! or is turned off.
//!
//! # `unsafe`
//!
//! This is the only module with `unsafe` code; everything else keeps `#![deny(unsafe_code)]`
//! and uses the safe API above. The raw mapping sits behind a crate-private trait (`RawMap`,
//! in `region.rs`) whose `read`/`write` are `unsafe fn`s: their contract is that nobody
//! writes (for `read`) or touches (for `write`) the range during the call. [`Region`] is the
//! only caller and meets it by ownership, as said above. In `os.rs`: creating the mapping
//! (sound because no reference to mapped bytes is ever handed out, so a change from outside,
//! e.g. another process, yields wrong bytes at worst, which checksums catch), the raw copies in
//! and out (bounds checked first), the `pwrite` from the pages (kernel reads through a raw
//! pointer) and `Send`/`Sync` for the struct holding the base pointer. Each block has its own
//! `// SAFETY:` paragraph. In `uring.rs`: pushing a read onto an io_uring submission queue
//! (the kernel writes the buffer until the entry is reaped; every entry is reaped before
//! `read_many` returns, or the ring and buffers are leaked). System calls that have safe wrappers go through `nix`
//! (`posix_fallocate`, `O_DIRECT`, `kill`) and `rustix` (`statx` with `STATX_DIOALIGN`).
//!
#[allow(unsafe_code)]
mod advise;
mod aligned;
mod batch;
#[allow(unsafe_code)]
pub(crate) mod os;
pub mod overlay;
mod region;
#[cfg(feature = "sim")]
pub mod sim;
#[allow(unsafe_code)]
mod uring;

use std::any::Any;
use std::fmt::Debug;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

pub use advise::huge_pages;
pub use aligned::AlignedBuf;
pub use batch::{MAX_IN_FLIGHT, Pread, PreadThreads, ReadReq, Reader};
pub use os::Os;
pub use overlay::{Change, Overlay};
pub use region::{Region, Span};
#[cfg(feature = "sim")]
pub use sim::{Fault, SimFs};

/// How to open a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mode {
    /// Create the file if it does not exist.
    pub create: bool,
    /// Open for writing as well as reading.
    pub write: bool,
    /// Open with `O_DIRECT`: reads and writes bypass the page cache and must be aligned.
    pub direct: bool,
}

/// What direct I/O on a file requires: buffer addresses aligned to `mem`, file offsets and
/// lengths to `offset`. Both are 1 for buffered files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Align {
    /// Alignment of buffer addresses, in bytes.
    pub mem: usize,
    /// Alignment of file offsets and transfer lengths, in bytes.
    pub offset: usize,
}

impl Align {
    /// No alignment required.
    pub const NONE: Align = Align { mem: 1, offset: 1 };

    /// The smallest aligned range `[start, end)` covering `len` bytes at `off`.
    pub fn cover(&self, off: u64, len: usize) -> (u64, usize) {
        let a = self.offset.max(1) as u64;
        let start = off / a * a;
        let end = (off + len as u64).div_ceil(a) * a;
        (start, (end - start) as usize)
    }
}

/// Directory-level operations.
pub trait Vfs: Send + Sync + Debug {
    /// Opens (or creates) a file.
    fn open(&self, path: &Path, mode: Mode) -> io::Result<Arc<dyn FileIo>>;
    /// Creates a directory and its parents.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Lists the file names in a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the directory, held until the returned guard drops. Fails with
    /// [`io::ErrorKind::WouldBlock`] when someone else holds it.
    fn lock(&self, dir: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
    /// What reads batches of positioned reads on this file system's files (see [`Reader`]);
    /// made once, at open. By default [`Pread`]: one [`FileIo::read_at`] per read, in order,
    /// so a simulator counts (and fails) each read of a batch as one call. [`Os`] gives an
    /// io_uring reader with `io_uring` on a kernel that allows it, else [`PreadThreads`].
    fn reader(&self, io_uring: bool) -> Arc<dyn Reader> {
        let _ = io_uring;
        Arc::new(Pread)
    }
}

/// One open file.
#[allow(clippy::len_without_is_empty)] // `len` is a fallible metadata call, not a collection size
pub trait FileIo: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `off`.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Writes all of `buf` at `off`.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Extends the file to at least `len` bytes with its blocks reserved (`posix_fallocate`),
    /// so that stores into a map of it cannot fail for lack of space (which would be SIGBUS).
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Maps the whole file into memory, shared and writable, as one uniquely owned
    /// [`Region`] (see the [module documentation](self)). Fails with
    /// [`io::ErrorKind::ResourceBusy`] while an earlier mapping made through this handle (any
    /// of its regions or spans) is alive. The file's length must not change while it is
    /// mapped.
    fn map(&self) -> io::Result<Region>;
    /// The file descriptor, when the file is a real one ([`Os`]); `None` otherwise. A
    /// [`Region::copy_to`] from an `Os` map writes through it.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// What direct I/O on this file requires ([`Align::NONE`] when it is buffered).
    fn align(&self) -> Align;
    /// Whether the file is open with `O_DIRECT`.
    fn direct(&self) -> bool;
}

/// Exchanges the directories (or files) `a` and `b` in one atomic step
/// (`renameat2(RENAME_EXCHANGE)`), then syncs their parent directories: afterwards each name
/// holds what the other held, and no crash can leave either name missing.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE)?;
    for p in [a, b] {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Bounds check shared by the map implementations.
pub(crate) fn range(off: usize, len: usize, total: usize) -> io::Result<std::ops::Range<usize>> {
    match off.checked_add(len) {
        Some(end) if end <= total => Ok(off..end),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {off}+{len} outside a map of {total} bytes"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_aligns_out() {
        let a = Align {
            mem: 512,
            offset: 512,
        };
        assert_eq!(a.cover(4096 + 256, 256), (4096, 512));
        assert_eq!(a.cover(4096, 256), (4096, 512));
        let big = Align {
            mem: 4096,
            offset: 4096,
        };
        assert_eq!(big.cover(4096 + 3 * 256, 256), (4096, 4096));
        assert_eq!(Align::NONE.cover(4352, 256), (4352, 256));
    }

    #[test]
    fn range_checks() {
        assert_eq!(range(2, 3, 5).unwrap(), 2..5);
        assert!(range(3, 3, 5).is_err());
        assert!(range(usize::MAX, 2, 5).is_err());
    }
}
