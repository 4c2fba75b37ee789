//! Batched positioned reads: a [`Reader`] takes many [`ReadReq`]s at once and answers each on
//! its own, so a caller can keep many reads in flight from one thread.
//!
//! [`Pread`] is the portable reader: a loop of [`FileIo::read_at`], one call per request (on
//! `SimFs` each is one counted call, so injected faults land on single reads of a batch).
//! [`Os`](super::Os) offers an io_uring reader (see `uring.rs`) that submits up to
//! [`MAX_IN_FLIGHT`] reads per system call and falls back to [`Pread`] where io_uring cannot
//! be set up.

use std::fmt::Debug;
use std::io;

use super::{AlignedBuf, FileIo};

/// Reads one submission keeps in flight at most; bigger batches are read in chunks of this.
pub const MAX_IN_FLIGHT: usize = 64;

/// One read of a batch: `buf.len()` bytes of `file` at `off` into `buf`, and its outcome.
///
/// For a file opened with `O_DIRECT`, `off`, `buf.len()` and the buffer's address must meet
/// the file's [`Align`](super::Align) (make `buf` with [`AlignedBuf::new`] and `align().mem`).
#[derive(Debug)]
pub struct ReadReq<'a> {
    /// The file to read.
    pub file: &'a dyn FileIo,
    /// Byte offset in the file.
    pub off: u64,
    /// Where the bytes go; its length is the read's length.
    pub buf: AlignedBuf,
    /// The read's outcome, set by [`Reader::read_many`]: `Ok` once all of `buf` was read,
    /// else this read's own error (an unexpected end of file is
    /// [`io::ErrorKind::UnexpectedEof`], as for [`FileIo::read_at`]).
    pub result: io::Result<()>,
}

impl<'a> ReadReq<'a> {
    /// A read of `len` bytes of `file` at `off` into a new buffer aligned to the file's
    /// direct-I/O memory alignment; not yet done.
    pub fn new(file: &'a dyn FileIo, off: u64, len: usize) -> ReadReq<'a> {
        ReadReq {
            file,
            off,
            buf: AlignedBuf::new(len, file.align().mem),
            result: Err(io::Error::other("not read yet")),
        }
    }

    /// Reads synchronously with [`FileIo::read_at`] (the fallback path).
    pub(crate) fn pread(&mut self) {
        self.result = self.file.read_at(self.buf.bytes_mut(), self.off);
    }
}

/// Something that reads batches of positioned reads.
pub trait Reader: Send + Sync + Debug {
    /// Does every read of `reads` and sets each one's [`result`](ReadReq::result); an error
    /// fails only the reads it touched. Every read is finished (or failed) when this returns:
    /// no buffer is still in use by the kernel.
    fn read_many(&self, reads: &mut [ReadReq<'_>]);

    /// Which path reads: `"io_uring"` or `"pread"`.
    fn path(&self) -> &'static str;
}

/// The portable reader: one [`FileIo::read_at`] per request, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pread;

impl Reader for Pread {
    fn read_many(&self, reads: &mut [ReadReq<'_>]) {
        reads.iter_mut().for_each(ReadReq::pread);
    }

    fn path(&self) -> &'static str {
        "pread"
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::io::{Fault, Mode, SimFs, Vfs};

    #[test]
    fn each_read_of_a_batch_is_one_counted_call_and_fails_alone() {
        let fs = SimFs::new();
        let rw = Mode {
            create: true,
            write: true,
            direct: true,
        };
        let f = fs.open(Path::new("/d/v"), rw).unwrap();
        let mut b = AlignedBuf::new(8 * 512, 512);
        for (i, x) in b.bytes_mut().iter_mut().enumerate() {
            *x = (i / 512) as u8;
        }
        f.write_at(b.bytes(), 0).unwrap();
        let reader = fs.reader(true);
        assert_eq!(reader.path(), "pread");
        let before = fs.calls();
        fs.fail_call(2, Fault::Eio);
        let mut reads: Vec<ReadReq> = (0..6).map(|i| ReadReq::new(&*f, i * 512, 512)).collect();
        // One past the end of the file.
        reads.push(ReadReq::new(&*f, 8 * 512, 512));
        reader.read_many(&mut reads);
        assert_eq!(fs.calls() - before, 7);
        for (i, r) in reads.iter().enumerate() {
            match i {
                2 => assert_eq!(
                    r.result.as_ref().unwrap_err().raw_os_error(),
                    Some(libc::EIO)
                ),
                6 => assert_eq!(
                    r.result.as_ref().unwrap_err().kind(),
                    io::ErrorKind::UnexpectedEof
                ),
                _ => {
                    assert!(r.result.is_ok(), "{i}: {:?}", r.result);
                    assert!(r.buf.bytes().iter().all(|&x| x == i as u8));
                }
            }
        }
    }
}
