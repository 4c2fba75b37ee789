//! Simulated files: the volatile and durable images of one file, an open file, and a map.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::fault::{Call, Verdict};
use super::{SimFs, eio, lock};
use crate::io::region::{Claim, RawMap};
use crate::io::{Align, AlignedBuf, FileIo, Region, range};

type Span = std::ops::Range<usize>;

/// One file's contents: what the running system sees and what the disk holds.
#[derive(Debug, Default)]
pub(super) struct Data {
    pub(super) live: Vec<u8>,
    pub(super) durable: Vec<u8>,
    /// Byte ranges written since they were last made durable, oldest first.
    pub(super) pending: Vec<Span>,
}

impl Data {
    pub(super) fn mark(&mut self, r: Span) {
        if !r.is_empty() {
            self.pending.push(r);
        }
    }

    /// Makes the pending writes inside `r` durable; parts outside `r` stay pending.
    pub(super) fn persist(&mut self, r: Span) {
        self.durable.resize(self.live.len(), 0);
        let mut rest = Vec::with_capacity(self.pending.len());
        for w in std::mem::take(&mut self.pending) {
            let (a, b) = (w.start.max(r.start), w.end.min(r.end));
            if a >= b {
                rest.push(w);
                continue;
            }
            let end = b.min(self.live.len());
            if a < end {
                self.durable[a..end].copy_from_slice(&self.live[a..end]);
            }
            if w.start < a {
                rest.push(w.start..a);
            }
            if b < w.end {
                rest.push(b..w.end);
            }
        }
        self.pending = rest;
    }
}

/// A file's contents, shared by the namespace, open handles and maps.
pub(super) type Node = Arc<std::sync::Mutex<Data>>;

/// An open simulated file.
#[derive(Debug)]
pub(super) struct SimFile {
    pub(super) fs: SimFs,
    pub(super) node: Node,
    pub(super) align: Align,
    pub(super) direct: bool,
    pub(super) write: bool,
    /// Set while a mapping made by [`FileIo::map`] lives.
    pub(super) mapped: Arc<AtomicBool>,
}

impl SimFile {
    fn check_align(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let a = self.align;
        let ok = (buf.as_ptr() as usize).is_multiple_of(a.mem)
            && off.is_multiple_of(a.offset as u64)
            && buf.len().is_multiple_of(a.offset);
        if ok {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
    }

    /// A map of the whole file (a counted call, like `mmap`).
    fn raw(&self, claim: Option<Claim>) -> io::Result<SimRaw> {
        self.fs.check()?;
        let len = lock(&self.node).live.len();
        Ok(SimRaw {
            fs: self.fs.clone(),
            node: self.node.clone(),
            len,
            _claim: claim,
        })
    }

    fn writable(&self) -> io::Result<()> {
        if !self.write {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if lock(&self.fs.state).fail_writes {
            return Err(eio());
        }
        Ok(())
    }
}

impl FileIo for SimFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.fs.check()?;
        self.check_align(buf, off)?;
        let d = lock(&self.node);
        let r = usize::try_from(off)
            .ok()
            .and_then(|o| range(o, buf.len(), d.live.len()).ok())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&d.live[r]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let (buf, fails) = match self.fs.call(Call::Write) {
            Verdict::Run => (buf, None),
            Verdict::Fail(e) => return Err(e),
            Verdict::Half(e) => (&buf[..buf.len() / 2], Some(e)),
        };
        if fails.is_none() {
            self.check_align(buf, off)?;
        }
        self.writable()?;
        let off = usize::try_from(off).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut d = lock(&self.node);
        let end = off + buf.len();
        if d.live.len() < end {
            d.live.resize(end, 0);
        }
        d.live[off..end].copy_from_slice(buf);
        d.mark(off..end);
        fails.map_or(Ok(()), Err)
    }

    fn sync(&self) -> io::Result<()> {
        self.fs.check()?;
        let (fail, lie) = self.fs.sync_faults();
        if fail {
            return Err(eio());
        }
        if lie {
            return Ok(());
        }
        let mut d = lock(&self.node);
        let len = d.live.len();
        d.persist(0..len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.node).live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.check()?;
        self.writable()?;
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut d = lock(&self.node);
        let old = d.live.len();
        d.live.resize(len, 0);
        d.mark(old.min(len)..old.max(len));
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.fs.check()?;
        if self.len()? < len {
            self.set_len(len)?;
        }
        Ok(())
    }

    fn map(&self) -> io::Result<Region> {
        let claim = Claim::take(&self.mapped)?;
        Ok(Region::whole(Arc::new(self.raw(Some(claim))?)))
    }

    fn align(&self) -> Align {
        self.align
    }

    fn direct(&self) -> bool {
        self.direct
    }
}

/// A map: reads and writes go to the file's volatile image, as a shared mmap's do; a flush
/// makes the range durable. The bytes live behind the node's mutex, so no access here can race.
#[derive(Debug)]
struct SimRaw {
    fs: SimFs,
    node: Node,
    len: usize,
    /// The mapping claim of the handle that made this map (`None` for the old [`Map`] API).
    _claim: Option<Claim>,
}

impl SimRaw {
    fn read_bytes(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let r = range(off, buf.len(), self.len)?;
        let d = lock(&self.node);
        // A file cut shorter than the map: the kernel would raise SIGBUS.
        let src = d
            .live
            .get(r)
            .ok_or(io::Error::from_raw_os_error(libc::EFAULT))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_bytes(&self, off: usize, buf: &[u8]) -> io::Result<()> {
        let r = range(off, buf.len(), self.len)?;
        let mut d = lock(&self.node);
        let dst = d
            .live
            .get_mut(r.clone())
            .ok_or(io::Error::from_raw_os_error(libc::EFAULT))?;
        dst.copy_from_slice(buf);
        d.mark(r);
        Ok(())
    }

    fn flush_bytes(&self, off: usize, len: usize) -> io::Result<()> {
        let r = range(off, len, self.len)?;
        self.fs.check()?;
        let (fail, lie) = self.fs.sync_faults();
        if fail {
            return Err(eio());
        }
        if !lie {
            lock(&self.node).persist(r);
        }
        Ok(())
    }

    fn copy_bytes(&self, off: usize, len: usize, dst: &dyn FileIo, dst_off: u64) -> io::Result<()> {
        let r = range(off, len, self.len)?;
        self.fs.check()?;
        // Stage through an aligned copy, as the kernel reads straight from the mapped pages.
        let mut tmp = AlignedBuf::new(len, dst.align().mem);
        {
            let d = lock(&self.node);
            let src = d
                .live
                .get(r)
                .ok_or(io::Error::from_raw_os_error(libc::EFAULT))?;
            tmp.bytes_mut().copy_from_slice(src);
        }
        dst.write_at(tmp.bytes(), dst_off)
    }
}

// Implementing `RawMap`'s `unsafe fn`s needs `unsafe_code`; their bodies are safe code (the
// node's mutex guards the bytes), so they are sound whatever the caller does.
#[allow(unsafe_code)]
impl RawMap for SimRaw {
    fn len(&self) -> usize {
        self.len
    }

    unsafe fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        self.read_bytes(off, buf)
    }

    unsafe fn write(&self, off: usize, buf: &[u8]) -> io::Result<()> {
        self.write_bytes(off, buf)
    }

    fn flush(&self, off: usize, len: usize) -> io::Result<()> {
        self.flush_bytes(off, len)
    }

    fn copy_to(&self, off: usize, len: usize, dst: &dyn FileIo, dst_off: u64) -> io::Result<()> {
        self.copy_bytes(off, len, dst, dst_off)
    }

    fn copy_out(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        self.read_bytes(off, buf)
    }
}
