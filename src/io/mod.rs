//! The narrow I/O layer every byte of the store goes through.
//!
//! Three small traits: [`Vfs`] for directory operations, [`FileIo`] for positioned reads and
//! writes (`read_at`, `write_at`, `sync`, `len`, `set_len`, `map`) and [`Map`] for a
//! memory-mapped file. [`Os`] implements them over the operating system with real `O_DIRECT`
//! and `mmap`; [`SimFs`] implements them in memory and can simulate a power loss, in which each
//! write since the last sync is applied, dropped or garbled, and inject I/O errors.
//!
//! This is the only module with `unsafe` code (in [`os`]: `mmap` and `statx`).

mod aligned;
#[allow(unsafe_code)]
pub mod os;
pub mod overlay;
pub mod sim;

use std::any::Any;
use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use aligned::AlignedBuf;
pub use os::Os;
pub use overlay::{Change, Overlay};
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
    /// Maps the whole file into memory, shared and writable.
    fn map(&self) -> io::Result<Arc<dyn Map>>;
    /// What direct I/O on this file requires ([`Align::NONE`] when it is buffered).
    fn align(&self) -> Align;
    /// Whether the file is open with `O_DIRECT`.
    fn direct(&self) -> bool;
}

/// A shared, writable memory map of a whole file.
pub trait Map: Send + Sync + Debug {
    /// The mapped length.
    fn len(&self) -> usize;
    /// Whether the map is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `buf.len()` bytes at `off` out of the map.
    fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()>;
    /// Copies `buf` into the map at `off`. Takes `&self` so that one thread can write one part
    /// of a map while others read or flush another (the store's write buffer fills one bank
    /// while a background thread writes the other out). Callers must not write a range that
    /// another thread reads or writes at the same time; the store's locking guarantees that.
    fn write(&self, off: usize, buf: &[u8]) -> io::Result<()>;
    /// Makes `[off, off + len)` durable (`msync(MS_SYNC)`).
    fn flush(&self, off: usize, len: usize) -> io::Result<()>;
    /// Writes `[off, off + len)` of the map to `dst` at `dst_off` straight from the mapped pages
    /// (one write; page-aligned when `off` is).
    fn copy_to(&self, off: usize, len: usize, dst: &dyn FileIo, dst_off: u64) -> io::Result<()>;
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
