//! Uniquely owned regions of a memory map, and the kernel-side spans they hand out.
//!
//! See the module documentation of [`crate::io`] for the ownership story. In short:
//!
//! - [`Region`]: one owner; `read(&self)` copies bytes out, `write(&mut self)` copies bytes
//!   in. Regions of one map never overlap ([`Region::split_off`] and [`Region::split`] check),
//!   so the borrow checker alone rules out a data race on the mapped bytes.
//! - [`Span`]: a cloneable, `Send + Sync` handle on a range of a map that can only ask the
//!   kernel to do something with the pages (`msync`, a `write(2)` from them). It never reads or
//!   writes the bytes in Rust, so it cannot race with the region owner's writes in the Rust
//!   memory model.
//!
//! The raw mapping sits behind the crate-private [`RawMap`] trait; only `src/io` implements and
//! calls it.

#![allow(unsafe_code)] // calls to `RawMap::read`/`write`, each with its SAFETY paragraph.

use std::fmt::Debug;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{FileIo, range};

/// The raw mapping of one whole file. Crate-private: implemented by the OS map and the
/// simulator's map, used only by [`Region`], [`Span`] and the old [`super::Map`] adapters.
/// Offsets are absolute (from the start of the file); every method checks them against
/// [`len`](RawMap::len) and fails with an error (never a panic) when they are out of range.
pub(crate) trait RawMap: Send + Sync + Debug {
    /// The mapped length.
    fn len(&self) -> usize;

    /// Copies `buf.len()` bytes at `off` out of the map.
    ///
    /// # Safety
    ///
    /// No thread may write `[off, off + buf.len())` (through this map) during the call.
    unsafe fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()>;

    /// Copies `buf` into the map at `off`.
    ///
    /// # Safety
    ///
    /// No other thread may read or write `[off, off + buf.len())` (through this map) during
    /// the call.
    unsafe fn write(&self, off: usize, buf: &[u8]) -> io::Result<()>;

    /// `msync(MS_SYNC)` of `[off, off + len)`. Kernel-side only: touches no byte in Rust.
    fn flush(&self, off: usize, len: usize) -> io::Result<()>;

    /// Writes `[off, off + len)` to `dst` at `dst_off` with one positioned write straight from
    /// the mapped pages. Kernel-side only: touches no byte in Rust, creates no reference to the
    /// mapped bytes.
    fn copy_to(&self, off: usize, len: usize, dst: &dyn FileIo, dst_off: u64) -> io::Result<()>;

    /// Copies `buf.len()` bytes at `off` out of the map into `buf`, through the kernel
    /// (`process_vm_readv` on the process itself for an OS map): touches no mapped byte in
    /// Rust, creates no reference to the mapped bytes. Bytes written meanwhile may come out
    /// old or new.
    fn copy_out(&self, off: usize, buf: &mut [u8]) -> io::Result<()>;
}

/// The claim a file handle has on its one live region mapping: set while any region or span
/// of the mapping lives, cleared when the last one drops.
#[derive(Debug)]
pub(crate) struct Claim(Arc<AtomicBool>);

impl Claim {
    /// Claims `flag`, or fails when a mapping made through this handle is still alive.
    pub(in crate::io) fn take(flag: &Arc<AtomicBool>) -> io::Result<Claim> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    "the file is already mapped through this handle (drop its regions and spans \
                     first)",
                )
            })?;
        Ok(Claim(flag.clone()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The absolute range of `[off, off + len)` inside `[start, start + total)`.
fn inner(start: usize, total: usize, off: usize, len: usize) -> io::Result<Range<usize>> {
    let r = range(off, len, total)?;
    Ok(start + r.start..start + r.end)
}

/// A uniquely owned, writable range of a memory-mapped file. See the [module
/// documentation](crate::io) for how regions, spans and the map fit together.
///
/// Offsets given to its methods are **relative to the region** (0 is the region's first
/// byte); [`start`](Region::start) is where that byte lies in the file. Ranges outside the
/// region are errors ([`io::ErrorKind::InvalidInput`]), never panics.
///
/// Writing needs `&mut`, so a shared region cannot be written (this does not compile):
///
/// ```compile_fail
/// fn scribble(r: &toykv::io::Region) {
///     r.write(0, b"x").ok();
/// }
/// ```
///
/// and a region cannot be duplicated (this does not compile either):
///
/// ```compile_fail
/// fn twin(r: &toykv::io::Region) -> toykv::io::Region {
///     r.clone()
/// }
/// ```
#[derive(Debug)]
pub struct Region {
    raw: Arc<dyn RawMap>,
    /// Offset of the region's first byte in the file.
    start: usize,
    len: usize,
}

impl Region {
    /// The region covering the whole map.
    pub(in crate::io) fn whole(raw: Arc<dyn RawMap>) -> Region {
        let len = raw.len();
        Region { raw, start: 0, len }
    }

    /// Offset of the region's first byte in the file.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies exactly `buf.len()` bytes at region offset `off` into `buf`.
    pub fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let r = inner(self.start, self.len, off, buf.len())?;
        // SAFETY: `r` lies inside this region (checked above). Regions of one map never
        // overlap (`split_off`/`split` check it, and a handle maps a file once at a time, see
        // `Claim`), so the only code that can write these bytes in Rust is this region's
        // `write`, which needs `&mut self` and therefore cannot run while `&self` is borrowed
        // here. Spans only make the kernel read the pages (msync, write(2)), which is not a
        // write. So nobody writes the range during the call.
        unsafe { self.raw.read(r.start, buf) }
    }

    /// Copies `buf` into the region at region offset `off`. The bytes are in the page cache
    /// at once (they survive a process crash) but durable only after a [`flush`] of them.
    ///
    /// [`flush`]: Region::flush
    pub fn write(&mut self, off: usize, buf: &[u8]) -> io::Result<()> {
        let r = inner(self.start, self.len, off, buf.len())?;
        // SAFETY: `r` lies inside this region, which no other region overlaps (see `read`).
        // `&mut self` guarantees that no other call on this region (so no Rust read or write of
        // these bytes) runs at the same time. Spans of the range may meanwhile msync or
        // write(2) it out: those are kernel reads of the pages through raw pointers, outside
        // the Rust memory model (no reference to the bytes exists), so they do not race with
        // this copy; at worst the kernel writes out a mix of old and new bytes, which is the
        // caller's protocol to avoid (see the module documentation).
        unsafe { self.raw.write(r.start, buf) }
    }

    /// Makes `[off, off + len)` of the region durable (`msync(MS_SYNC)`).
    pub fn flush(&self, off: usize, len: usize) -> io::Result<()> {
        let r = inner(self.start, self.len, off, len)?;
        self.raw.flush(r.start, r.len())
    }

    /// Writes `[off, off + len)` of the region to `dst` at `dst_off` in one positioned write
    /// straight from the mapped pages (page-aligned when `start() + off` is, which `O_DIRECT`
    /// destinations need).
    pub fn copy_to(
        &self,
        off: usize,
        len: usize,
        dst: &dyn FileIo,
        dst_off: u64,
    ) -> io::Result<()> {
        let r = inner(self.start, self.len, off, len)?;
        self.raw.copy_to(r.start, r.len(), dst, dst_off)
    }

    /// A [`Span`] of `[off, off + len)` of the region: a handle that other threads can keep
    /// and use to msync or write out that range while this region's owner goes on writing.
    pub fn span(&self, off: usize, len: usize) -> io::Result<Span> {
        let r = inner(self.start, self.len, off, len)?;
        Ok(Span {
            raw: self.raw.clone(),
            start: r.start,
            len: r.len(),
        })
    }

    /// A [`Span`] of the whole region.
    pub fn span_all(&self) -> Span {
        Span {
            raw: self.raw.clone(),
            start: self.start,
            len: self.len,
        }
    }

    /// Splits the region in two at region offset `at`, like [`Vec::split_off`]: `self` keeps
    /// `[0, at)` and the returned region owns `[at, len)`. Fails (leaving `self` unchanged)
    /// when `at > len`.
    pub fn split_off(&mut self, at: usize) -> io::Result<Region> {
        let r = inner(self.start, self.len, at, self.len.saturating_sub(at))?;
        self.len = at;
        Ok(Region {
            raw: self.raw.clone(),
            start: r.start,
            len: r.len(),
        })
    }

    /// Splits the region into the given disjoint parts (region offsets; in any order, gaps
    /// allowed), returned in the order asked. Bytes in no part become unreachable for writing
    /// (spans taken before the split still reach them). Fails when a part lies outside the
    /// region or two parts overlap; the region is then consumed all the same (the caller has
    /// a bug to fix; nothing was written).
    pub fn split(self, parts: &[Range<usize>]) -> io::Result<Vec<Region>> {
        let mut abs = Vec::with_capacity(parts.len());
        for p in parts {
            let len = p.end.checked_sub(p.start).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("split: inverted part {}..{}", p.start, p.end),
                )
            })?;
            abs.push(inner(self.start, self.len, p.start, len)?);
        }
        let mut sorted: Vec<&Range<usize>> = abs.iter().filter(|r| !r.is_empty()).collect();
        sorted.sort_by_key(|r| r.start);
        if let Some(w) = sorted.windows(2).find(|w| w[0].end > w[1].start) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "split: parts {}..{} and {}..{} of the file overlap",
                    w[0].start, w[0].end, w[1].start, w[1].end
                ),
            ));
        }
        Ok(abs
            .into_iter()
            .map(|r| Region {
                raw: self.raw.clone(),
                start: r.start,
                len: r.len(),
            })
            .collect())
    }
}

/// A range of a memory map that any thread may msync or write out, at any time: cheap to
/// clone, `Send + Sync`. It cannot read or write the bytes (only the kernel touches them, see
/// the [module documentation](crate::io)), so holding one never conflicts with the region that
/// owns the bytes. It keeps the mapping alive.
///
/// Offsets given to its methods are relative to the span; [`start`](Span::start) is where the
/// span's first byte lies in the file.
///
/// A span has no way to write the bytes (this does not compile):
///
/// ```compile_fail
/// fn scribble(s: &toykv::io::Span) {
///     s.write(0, b"x").ok();
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Span {
    raw: Arc<dyn RawMap>,
    start: usize,
    len: usize,
}

impl Span {
    /// Offset of the span's first byte in the file.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The span's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The part `[off, off + len)` of this span.
    pub fn sub(&self, off: usize, len: usize) -> io::Result<Span> {
        let r = inner(self.start, self.len, off, len)?;
        Ok(Span {
            raw: self.raw.clone(),
            start: r.start,
            len: r.len(),
        })
    }

    /// Makes the whole span durable (`msync(MS_SYNC)`).
    pub fn flush(&self) -> io::Result<()> {
        self.raw.flush(self.start, self.len)
    }

    /// Makes `[off, off + len)` of the span durable (`msync(MS_SYNC)`).
    pub fn flush_range(&self, off: usize, len: usize) -> io::Result<()> {
        let r = inner(self.start, self.len, off, len)?;
        self.raw.flush(r.start, r.len())
    }

    /// Writes the whole span to `dst` at `dst_off` in one positioned write straight from the
    /// mapped pages.
    pub fn copy_to(&self, dst: &dyn FileIo, dst_off: u64) -> io::Result<()> {
        self.raw.copy_to(self.start, self.len, dst, dst_off)
    }

    /// Copies `[off, off + buf.len())` of the span into `buf` through the kernel, for a copy
    /// of bytes no one writes meanwhile (a full bank on its way out): bytes written during the
    /// call may come out old or new, never as a data race. Fails where the kernel refuses
    /// (`process_vm_readv` blocked by a seccomp profile, say).
    pub fn copy_out(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let r = inner(self.start, self.len, off, buf.len())?;
        self.raw.copy_out(r.start, buf)
    }

    /// Writes `[off, off + len)` of the span to `dst` at `dst_off` in one positioned write
    /// straight from the mapped pages.
    pub fn copy_range_to(
        &self,
        off: usize,
        len: usize,
        dst: &dyn FileIo,
        dst_off: u64,
    ) -> io::Result<()> {
        let r = inner(self.start, self.len, off, len)?;
        self.raw.copy_to(r.start, r.len(), dst, dst_off)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;
    use crate::io::{Mode, SimFs, Vfs};

    const RW: Mode = Mode {
        create: true,
        write: true,
        direct: false,
    };

    /// A synced simulated file of `len` zero bytes, open.
    fn sim_file(fs: &SimFs, name: &str, len: u64) -> Arc<dyn FileIo> {
        let f = fs.open(&Path::new("/d").join(name), RW).unwrap();
        f.set_len(len).unwrap();
        f.sync().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        f
    }

    fn kind<T: Debug>(r: io::Result<T>) -> io::ErrorKind {
        r.unwrap_err().kind()
    }

    #[test]
    fn split_refuses_overlap_and_out_of_bounds() {
        let fs = SimFs::new();
        let f = sim_file(&fs, "a", 4096);
        let bad: [&[Range<usize>]; 4] = [
            &[0..100, 99..200],
            &[300..400, 0..301],
            &[0..10, 20..4097],
            &[Range { start: 10, end: 5 }],
        ];
        for parts in bad {
            let r = f.map().unwrap();
            assert_eq!(
                kind(r.split(parts)),
                io::ErrorKind::InvalidInput,
                "{parts:?}"
            );
        }
        // Disjoint parts in any order, gaps allowed, come back in the order asked, with
        // their file offsets.
        let r = f.map().unwrap();
        let parts = r.split(&[1000..1100, 0..10, 10..20]).unwrap();
        let got: Vec<(usize, usize)> = parts.iter().map(|p| (p.start(), p.len())).collect();
        assert_eq!(got, [(1000, 100), (0, 10), (10, 10)]);
        // split_off leaves the region intact when it fails.
        drop(parts);
        let mut r = f.map().unwrap();
        assert_eq!(kind(r.split_off(4097)), io::ErrorKind::InvalidInput);
        assert_eq!(r.len(), 4096);
        let tail = r.split_off(4000).unwrap();
        assert_eq!(
            (r.start(), r.len(), tail.start(), tail.len()),
            (0, 4000, 4000, 96)
        );
        let mut tail2 = tail;
        let t3 = tail2.split_off(96).unwrap();
        assert!(t3.is_empty() && t3.start() == 4096);
    }

    #[test]
    fn offsets_are_relative_and_bounded_by_the_region() {
        let fs = SimFs::new();
        let f = sim_file(&fs, "a", 4096);
        let mut parts = f.map().unwrap().split(&[0..100, 100..200]).unwrap();
        let mut b = parts.pop().unwrap();
        let mut a = parts.pop().unwrap();
        b.write(0, b"bee").unwrap();
        a.write(97, b"end").unwrap();
        // A write that would spill into the neighbour is refused, and changes nothing.
        assert_eq!(kind(a.write(98, b"end")), io::ErrorKind::InvalidInput);
        assert_eq!(kind(a.write(usize::MAX, b"x")), io::ErrorKind::InvalidInput);
        let live = fs.bytes(Path::new("/d/a")).unwrap();
        assert_eq!(&live[97..103], b"endbee");
        // Reads copy exactly the range asked, relative to the region.
        let mut buf = [0u8; 3];
        b.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"bee");
        assert_eq!(kind(b.read(98, &mut buf)), io::ErrorKind::InvalidInput);
        assert_eq!(kind(a.flush(50, 51)), io::ErrorKind::InvalidInput);
        assert_eq!(kind(a.span(0, 101)), io::ErrorKind::InvalidInput);
        let dst = sim_file(&fs, "dst", 0);
        assert_eq!(
            kind(b.copy_to(99, 2, &*dst, 0)),
            io::ErrorKind::InvalidInput
        );
        let s = b.span(0, 10).unwrap();
        assert_eq!((s.start(), s.len()), (100, 10));
        assert_eq!(kind(s.sub(5, 6)), io::ErrorKind::InvalidInput);
        assert_eq!(kind(s.flush_range(10, 1)), io::ErrorKind::InvalidInput);
        assert_eq!(
            kind(s.copy_range_to(0, 11, &*dst, 0)),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(s.sub(5, 5).unwrap().start(), 105);
    }

    /// `Span::copy_out` copies exactly the range asked, relative to the span, out of an OS
    /// map (through `process_vm_readv`) and a simulated one alike, and refuses a range past
    /// the span's end.
    #[test]
    fn spans_copy_their_bytes_out() {
        let d = crate::testing::tempdir();
        let rw = crate::io::Mode {
            create: true,
            write: true,
            direct: false,
        };
        let os = crate::io::Os.open(&d.path().join("a"), rw).unwrap();
        os.set_len(3 * 4096).unwrap();
        let fs = SimFs::new();
        let sim = sim_file(&fs, "a", 3 * 4096);
        for f in [os, sim] {
            let mut r = f.map().unwrap();
            let bytes: Vec<u8> = (0..3 * 4096).map(|i| (i * 7 % 251) as u8).collect();
            r.write(0, &bytes).unwrap();
            let span = r.span(4000, 5000).unwrap();
            let mut out = vec![0u8; 4096];
            span.copy_out(100, &mut out).unwrap();
            assert_eq!(out, &bytes[4100..8196]);
            let mut all = vec![0u8; 5000];
            span.copy_out(0, &mut all).unwrap();
            assert_eq!(all, &bytes[4000..9000]);
            assert_eq!(
                kind(span.copy_out(1000, &mut out)),
                io::ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn one_live_mapping_per_handle() {
        let fs = SimFs::new();
        let f = sim_file(&fs, "a", 4096);
        let r = f.map().unwrap();
        assert_eq!(kind(f.map()), io::ErrorKind::ResourceBusy);
        let s = r.span_all();
        drop(r);
        // A span keeps the mapping (and the claim) alive.
        assert_eq!(kind(f.map()), io::ErrorKind::ResourceBusy);
        drop(s);
        f.map().unwrap();
    }

    #[test]
    fn spans_flush_and_copy_out_from_other_threads() {
        let fs = SimFs::new();
        let f = sim_file(&fs, "buf", 3 * 4096);
        let dst = sim_file(&fs, "out", 0);
        let mut parts = f
            .map()
            .unwrap()
            .split(&[0..4096, 4096..8192, 8192..12288])
            .unwrap();
        let mut bank1 = parts.pop().unwrap();
        let mut bank0 = parts.pop().unwrap();
        bank0.write(0, &[7; 4096]).unwrap();
        let out = bank0.span_all();
        let flush = bank0.span(0, 4096).unwrap();
        // The owner keeps writing the other bank while another thread writes out and
        // flushes bank 0 through its spans.
        std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                out.copy_to(&*dst, 0).unwrap();
                flush.flush().unwrap();
            });
            for i in 0..16 {
                bank1.write(i * 256, &[i as u8; 256]).unwrap();
            }
            h.join().unwrap();
        });
        let mut back = vec![0u8; 4096];
        dst.read_at(&mut back, 0).unwrap();
        assert_eq!(back, vec![7; 4096]);
        let durable = fs.durable_bytes(Path::new("/d/buf")).unwrap();
        assert_eq!(&durable[4096..8192], &[7; 4096][..], "bank 0 flushed");
        assert_eq!(&durable[8192..], &[0; 4096][..], "bank 1 not flushed");
        // Faults reach span operations.
        fs.fail_syncs(true);
        assert!(out.flush().is_err());
        fs.fail_syncs(false);
        fs.fail_writes(true);
        assert!(out.copy_to(&*dst, 0).is_err());
    }

    #[test]
    fn sim_power_loss_keeps_flushed_region_bytes() {
        let path = Path::new("/d/a");
        let mut outcomes = HashSet::new();
        for seed in 0..48 {
            let fs = SimFs::new();
            let f = sim_file(&fs, "a", 1024);
            let mut parts = f.map().unwrap().split(&[0..512, 512..1024]).unwrap();
            let mut b = parts.pop().unwrap();
            let mut a = parts.pop().unwrap();
            a.write(0, &[1; 512]).unwrap();
            b.write(0, &[2; 512]).unwrap();
            a.flush(0, 512).unwrap();
            drop((a, b, f));
            fs.power_loss(seed);
            let d = fs.durable_bytes(path).unwrap();
            assert_eq!(&d[..512], &[1; 512][..], "seed {seed}: flushed region kept");
            outcomes.insert(match &d[512..] {
                x if x == [2; 512] => "applied",
                x if x == [0; 512] => "dropped",
                _ => "garbled",
            });
        }
        assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    }

    #[test]
    fn region_and_span_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Region>();
        check::<Span>();
    }
}
