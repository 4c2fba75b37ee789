//! Batched positioned reads: a [`Reader`] takes many [`ReadReq`]s at once and answers each on
//! its own, so a caller can keep many reads in flight from one thread.
//!
//! [`Pread`] is the portable reader: a loop of [`FileIo::read_at`], one call per request (on
//! `SimFs` each is one counted call, in order, so injected faults land on single reads of a
//! batch). [`Os`](super::Os) offers an io_uring reader (see `uring.rs`) that submits up to
//! [`MAX_IN_FLIGHT`] reads per system call, and falls back to [`PreadThreads`] (the same
//! reads spread over a few threads) where io_uring cannot be set up or is turned off.

use std::fmt::Debug;
use std::io;

use super::{AlignedBuf, FileIo};

/// Reads one submission keeps in flight at most; bigger batches are read in chunks of this.
pub const MAX_IN_FLIGHT: usize = 64;

/// Reads a thread does at least in [`PreadThreads`]; below, spawning it costs more than it
/// saves.
const READS_PER_THREAD: usize = 4;
/// Threads [`PreadThreads`] reads one batch with at most.
const THREADS: usize = 8;

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

/// The fallback reader of [`Os`](super::Os): [`Pread`] spread over up to 8 threads (at least 4
/// reads each), so that a batch still waits on the device in parallel where io_uring is not
/// available. A thread that cannot be spawned leaves its reads to the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct PreadThreads;

impl Reader for PreadThreads {
    fn read_many(&self, reads: &mut [ReadReq<'_>]) {
        let threads = (reads.len() / READS_PER_THREAD).min(THREADS);
        if threads <= 1 {
            return Pread.read_many(reads);
        }
        let per = reads.len().div_ceil(threads);
        // Chunks whose thread could not be spawned, read in line afterwards.
        let mut unspawned = Vec::new();
        std::thread::scope(|s| {
            let mut chunks = reads.chunks_mut(per).enumerate();
            let mine = chunks.next();
            for (i, chunk) in chunks {
                let spawned = std::thread::Builder::new()
                    .name("toykv-pread".into())
                    .spawn_scoped(s, || Pread.read_many(chunk));
                if let Err(e) = spawned {
                    tracing::warn!("cannot spawn a read thread ({e}); reading in line");
                    unspawned.push(i);
                }
            }
            if let Some((_, chunk)) = mine {
                Pread.read_many(chunk);
            }
        });
        for i in unspawned {
            let end = (i * per + per).min(reads.len());
            if let Some(chunk) = reads.get_mut(i * per..end) {
                Pread.read_many(chunk);
            }
        }
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

    #[test]
    fn threaded_pread_answers_each_read_and_a_fault_fails_one() {
        let fs = SimFs::new();
        let rw = Mode {
            create: true,
            write: false,
            direct: false,
        };
        let f = fs
            .open(Path::new("/d/v"), Mode { write: true, ..rw })
            .unwrap();
        let data: Vec<u8> = (0..100 * 64).map(|i| (i / 64) as u8).collect();
        f.write_at(&data, 0).unwrap();
        for n in [0, 17, 99] {
            fs.fail_call(n, Fault::Eio);
            let mut reads: Vec<ReadReq> = (0..100).map(|i| ReadReq::new(&*f, i * 64, 64)).collect();
            PreadThreads.read_many(&mut reads);
            let failed = reads.iter().filter(|r| r.result.is_err()).count();
            assert_eq!(failed, 1, "fault at {n}");
            for (i, r) in reads.iter().enumerate() {
                if r.result.is_ok() {
                    assert!(r.buf.bytes().iter().all(|&x| x == i as u8));
                }
            }
        }
        assert_eq!(PreadThreads.path(), "pread");
    }
}
