//! The io_uring [`Reader`] of [`Os`](super::Os): a batch's reads are pushed onto a ring,
//! [`MAX_IN_FLIGHT`] at most in flight, and each completion reaped makes room for the next
//! read (a sliding window, so a large batch keeps the device's queue full instead of draining
//! it every [`MAX_IN_FLIGHT`] reads); all are reaped before the call returns.
//!
//! Rings come from a small pool shared by the store's threads: a batch takes one (or makes
//! one when all are busy), and puts it back afterwards, so concurrent batches never share a
//! ring and no lock is held while waiting on the device. [`Uring::new`] makes the first ring
//! at open; when that fails (io_uring disabled by `io_uring_disabled` or a seccomp profile,
//! a kernel without `IORING_OP_READ`), the store reads with [`Pread`](super::Pread) instead.
//!
//! # Interrupted system calls
//!
//! When a ring is torn down (the store closes), the kernel queues work to every thread that
//! submitted to it, waking them as a signal would: a blocking call with a timeout in such a
//! thread (for example a socket read with `SO_RCVTIMEO`) can then fail once with
//! [`io::ErrorKind::Interrupted`]. Retry it, as `std`'s `read_exact` does; the project's
//! clients and test clients do.
//!
//! # Buffers and `unsafe`
//!
//! The kernel writes into a request's buffer after `push` and until its completion is reaped.
//! [`Uring::read_many`] holds `&mut` to every request (and so to every buffer) for the whole
//! call and reaps every submitted entry before returning. If the ring fails in a way that
//! leaves entries possibly in flight, their buffers are leaked (swapped for fresh ones) and
//! the ring is leaked too (never closed, never reused), so the kernel can never write into
//! freed or reused memory; the affected reads are then redone with `pread`.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use io_uring::{IoUring, opcode, types};

use super::AlignedBuf;
use super::batch::{MAX_IN_FLIGHT, ReadReq, Reader};

/// Rings kept for reuse at most; a batch that finds none free makes another.
const POOL: usize = 8;

/// An io_uring reader with a pool of rings.
#[derive(Debug)]
pub(crate) struct Uring {
    pool: Mutex<Vec<Ring>>,
}

/// One ring.
struct Ring(IoUring);

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ring")
    }
}

impl Ring {
    /// A ring for [`MAX_IN_FLIGHT`] reads, checked to support `IORING_OP_READ`.
    fn new() -> io::Result<Ring> {
        let ring = IoUring::new(MAX_IN_FLIGHT as u32)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Read::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring has no IORING_OP_READ",
            ));
        }
        Ok(Ring(ring))
    }

    /// Reads all of `reads` with at most [`MAX_IN_FLIGHT`] in flight: the ring is filled,
    /// and each completion reaped makes room for the next read, so the device never sees the
    /// queue drain between chunks. `flying[i]` is set while read `i` is on the ring.
    ///
    /// Returns `false` if the ring broke: the reads still marked in `flying` may be in flight,
    /// so the ring must be leaked, never dropped or reused (see [`Uring::read_many`]).
    fn read_all(&mut self, reads: &mut [ReadReq<'_>], flying: &mut [bool]) -> bool {
        let mut next = 0usize;
        let mut in_flight = 0usize;
        loop {
            while in_flight < MAX_IN_FLIGHT && next < reads.len() {
                let i = next;
                next += 1;
                let r = &mut reads[i];
                let (Some(fd), Ok(len)) = (r.file.fd(), u32::try_from(r.buf.len())) else {
                    // No descriptor (not an OS file) or too long for one entry: read it now.
                    r.pread();
                    continue;
                };
                let buf = r.buf.bytes_mut();
                let entry = opcode::Read::new(types::Fd(fd.as_raw_fd()), buf.as_mut_ptr(), len)
                    .offset(r.off)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the entry tells the kernel to write `len` bytes into `buf`, which is
                // `r.buf`'s heap allocation: valid for `len` bytes and not moved or freed until
                // the entry is reaped, because `read_many` holds `&mut` to every request for
                // the whole call, this function reaps every pushed entry before returning
                // `true`, and on `false` the caller leaks the buffers still marked in `flying`
                // and the ring instead of freeing them. No Rust reference to `buf` is used
                // until the entry is reaped. The fd is borrowed from `r.file`, which outlives
                // the call (`'a`), so it stays open while the read is in flight. The queue has
                // room: it has `MAX_IN_FLIGHT` entries and at most that many reads are pushed
                // and not yet reaped.
                match unsafe { self.0.submission().push(&entry) } {
                    Ok(()) => {
                        flying[i] = true;
                        in_flight += 1;
                    }
                    Err(_) => r.pread(),
                }
            }
            if in_flight == 0 {
                return true;
            }
            match self.0.submit_and_wait(1) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(_) => return false,
            }
            for cqe in self.0.completion() {
                let Some(i) = usize::try_from(cqe.user_data())
                    .ok()
                    .filter(|&i| flying.get(i) == Some(&true))
                else {
                    continue;
                };
                flying[i] = false;
                in_flight -= 1;
                let r = &mut reads[i];
                let res = cqe.result();
                if res >= 0 && res as usize == r.buf.len() {
                    r.result = Ok(());
                } else if res >= 0 || res == -libc::EINTR || res == -libc::EAGAIN {
                    // Short (the end of the file) or interrupted: `read_at` tells which, with
                    // the same error the fallback path gives.
                    r.pread();
                } else {
                    r.result = Err(io::Error::from_raw_os_error(-res));
                }
            }
        }
    }
}

impl Uring {
    /// A reader with one ring made now; fails when io_uring cannot be set up here.
    pub(crate) fn new() -> io::Result<Uring> {
        let ring = Ring::new()?;
        Ok(Uring {
            pool: Mutex::new(vec![ring]),
        })
    }

    fn take(&self) -> Option<Ring> {
        let ring = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        ring.or_else(|| Ring::new().ok())
    }

    fn give(&self, ring: Ring) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL {
            pool.push(ring);
        }
    }
}

impl Reader for Uring {
    fn read_many(&self, reads: &mut [ReadReq<'_>]) {
        let Some(mut ring) = self.take() else {
            // No ring to be had (out of memory or descriptors): read synchronously.
            reads.iter_mut().for_each(ReadReq::pread);
            return;
        };
        let mut flying = vec![false; reads.len()];
        if ring.read_all(reads, &mut flying) {
            self.give(ring);
            return;
        }
        // The ring broke with reads possibly in flight: leak it and their buffers (see the
        // module documentation), then redo with pread every read not finished.
        std::mem::forget(ring);
        for (r, flying) in reads.iter_mut().zip(flying) {
            if flying {
                let fresh = AlignedBuf::new(r.buf.len(), r.file.align().mem);
                std::mem::forget(std::mem::replace(&mut r.buf, fresh));
            }
            if flying || r.result.is_err() {
                r.pread();
            }
        }
    }

    fn path(&self) -> &'static str {
        "io_uring"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Mode, Os, Pread, PreadThreads, Vfs};

    #[test]
    fn io_uring_and_pread_read_the_same_bytes_from_an_o_direct_file() {
        let uring = match Uring::new() {
            Ok(u) => u,
            Err(e) => {
                println!("SKIPPED: io_uring cannot be set up here ({e}); only pread is tested");
                return;
            }
        };
        let d = crate::testing::tempdir();
        let rw = Mode {
            create: true,
            write: true,
            direct: true,
        };
        let f = Os.open(&d.path().join("v"), rw).unwrap();
        let a = f.align();
        assert!(f.direct());
        let blocks = 3 * MAX_IN_FLIGHT as u64 / 2 + 5; // more than one chunk
        let mut data = AlignedBuf::new(blocks as usize * a.offset, a.mem);
        for (i, x) in data.bytes_mut().iter_mut().enumerate() {
            *x = (i * 7 + i / a.offset) as u8;
        }
        f.write_at(data.bytes(), 0).unwrap();
        f.sync().unwrap();
        // Blocks in a scrambled order, one repeated, one misaligned (EINVAL from the kernel on
        // O_DIRECT, where the file system enforces alignment) and one read past the end.
        let mut offs: Vec<u64> = (0..blocks)
            .map(|i| (i * 37 % blocks) * a.offset as u64)
            .collect();
        offs.push(offs[3]);
        let misaligned = offs.len();
        offs.push(a.offset as u64 + 100);
        offs.push(blocks * a.offset as u64);
        let batch = |reader: &dyn Reader| {
            let mut reads: Vec<ReadReq> = offs
                .iter()
                .map(|&o| ReadReq::new(&*f, o, a.offset))
                .collect();
            reader.read_many(&mut reads);
            reads
                .into_iter()
                .map(|r| {
                    r.result
                        .map(|()| r.buf.bytes().to_vec())
                        .map_err(|e| (e.kind(), e.raw_os_error()))
                })
                .collect::<Vec<_>>()
        };
        let (ring, plain) = (batch(&uring), batch(&Pread));
        assert_eq!(uring.path(), "io_uring");
        assert_eq!(ring, plain);
        assert_eq!(batch(&PreadThreads), plain);
        let last = ring.len() - 1;
        assert_eq!(ring[last], Err((io::ErrorKind::UnexpectedEof, None)));
        if ring[misaligned].is_err() {
            let einval = (io::ErrorKind::InvalidInput, Some(libc::EINVAL));
            assert_eq!(ring[misaligned], Err(einval));
        }
        for (i, (r, &o)) in ring[..last].iter().zip(&offs).enumerate() {
            if i == misaligned {
                continue;
            }
            let o = o as usize;
            assert_eq!(r.as_deref().unwrap(), &data.bytes()[o..o + a.offset]);
        }
        // The rings went back to the pool for the next batch.
        assert!(!uring.pool.lock().unwrap().is_empty());
    }

    /// A file without a descriptor (the simulator's) in a batch is read with `read_at`, next to
    /// the OS file's reads on the ring.
    #[cfg(feature = "sim")]
    #[test]
    fn files_without_a_descriptor_are_read_with_read_at() {
        let Ok(uring) = Uring::new() else {
            println!("SKIPPED: io_uring cannot be set up here");
            return;
        };
        let d = crate::testing::tempdir();
        let rw = Mode {
            create: true,
            write: true,
            direct: false,
        };
        let os = Os.open(&d.path().join("f"), rw).unwrap();
        os.write_at(&[1; 4096], 0).unwrap();
        let fs = crate::io::SimFs::new();
        let sim = fs.open(std::path::Path::new("/d/f"), rw).unwrap();
        sim.write_at(&[2; 4096], 0).unwrap();
        let before = fs.calls();
        let mut reads = vec![
            ReadReq::new(&*os, 0, 100),
            ReadReq::new(&*sim, 10, 100),
            ReadReq::new(&*os, 4000, 100),
        ];
        uring.read_many(&mut reads);
        assert_eq!(fs.calls() - before, 1);
        assert_eq!(reads[0].buf.bytes(), &[1; 100][..]);
        assert_eq!(reads[1].buf.bytes(), &[2; 100][..]);
        assert!(reads[0].result.is_ok() && reads[1].result.is_ok());
        assert_eq!(
            reads[2].result.as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
