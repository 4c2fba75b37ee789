//! Value sections (`.v`): full sections of 256-byte slots, read with real `O_DIRECT`.
//!
//! A section file is written once, by a buffer flush, and never changes. A get reads only the
//! aligned block that holds its slot (512 bytes on most disks, 4096 on 4Kn devices) into an
//! aligned buffer. A batch (a `get_many`, a scan's batch) reads neighbours together: slots of
//! one section whose blocks touch, or lie at most [`MERGE_GAP`] bytes apart, come back in one
//! read of at most [`MERGE_MAX`] bytes (see [`read_slots`]); a read error then fails every slot
//! of that read, and only those.
//!
//! # Copies in memory
//!
//! The latest sections written stay readable from memory: when a full bank has been written
//! out, the background writer copies its slots (off the put path, through the kernel: the bank
//! is not written during its write-out) into a [`Copies`] entry, and reads of those sections
//! take their slots from it instead of the disk. A section's bytes never change once written,
//! so a copy is valid for as long as the section exists; it is dropped with the section (GC)
//! and when newer copies need its room (oldest first). The read path checks a copied slot's
//! checksum exactly as one read from disk.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Context, Damage, Error, Result};
use crate::format::{
    HEADER_LEN, Header, Kind, PAGE, SLOT_SIZE, TMP_SUFFIX, VALUES_DATA_AT, values_len, values_name,
};
use crate::io::{AlignedBuf, FileIo, Mode, Pread, ReadReq, Reader, Vfs};

use super::buffer::Outbound;
use super::file::header_error;

/// The open value sections.
#[derive(Debug)]
pub(crate) struct Values {
    dir: PathBuf,
    direct: bool,
    slots: u32,
    files: BTreeMap<u32, (Arc<Path>, Arc<dyn FileIo>)>,
    copies: Copies,
}

/// In-memory copies of the latest sections written (see the module documentation).
#[derive(Debug, Default)]
struct Copies {
    /// Most copies kept; 0 keeps none.
    keep: usize,
    /// Each copy's slots (`slots × SLOT_SIZE` bytes), by section.
    held: BTreeMap<u32, Box<[u8]>>,
    /// Sections held, oldest first.
    order: VecDeque<u32>,
    /// The buffer of a dropped copy, reused for the next one (no fresh pages to fault in).
    spare: Option<Box<[u8]>>,
}

/// One value slot in a value section.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The section file (shared with the section's entry: no copy per read).
    pub(crate) path: Arc<Path>,
    file: Arc<dyn FileIo>,
    /// Byte offset of the slot in the file.
    pub(crate) offset: u64,
}

/// Largest hole between two slots' blocks that one read spans rather than splitting into two:
/// one page. A device reads a few kilobytes in about the time it reads 512 bytes, so reading
/// through a small hole costs less than a second I/O.
pub(crate) const MERGE_GAP: u64 = PAGE as u64;
/// Most bytes one merged read covers.
pub(crate) const MERGE_MAX: u64 = 32 * PAGE as u64;

/// The aligned bytes around one or more slots, read (or not) by a [`Reader`]: what is left of
/// a [`ReadReq`] once the batch is done.
#[derive(Debug)]
pub(crate) struct Block {
    start: u64,
    result: std::io::Result<()>,
    buf: AlignedBuf,
}

impl From<ReadReq<'_>> for Block {
    fn from(r: ReadReq<'_>) -> Block {
        Block {
            start: r.off,
            result: r.result,
            buf: r.buf,
        }
    }
}

impl Slot {
    /// Reads the slot into `out`, reading only the aligned block around it into an aligned
    /// buffer.
    pub(crate) fn read(&self, out: &mut [u8; SLOT_SIZE]) -> Result<()> {
        let (start, len) = self.cover();
        let mut r = [ReadReq::new(&*self.file, start, len as usize)];
        Pread.read_many(&mut r);
        let [r] = r;
        self.take(&Block::from(r), out)
    }

    /// The aligned byte range `(start, length)` around the slot.
    fn cover(&self) -> (u64, u64) {
        let (start, len) = self.file.align().cover(self.offset, SLOT_SIZE);
        (start, len as u64)
    }

    /// Which open file the slot is in (the same for every slot of one section handle).
    fn file_id(&self) -> usize {
        Arc::as_ptr(&self.file) as *const () as usize
    }

    /// Copies the slot out of `block`, a read that covers it (see [`read_slots`]).
    pub(crate) fn take(&self, block: &Block, out: &mut [u8; SLOT_SIZE]) -> Result<()> {
        if let Err(e) = &block.result {
            return Err(self.read_error(e));
        }
        let at = self.offset.checked_sub(block.start).map(|a| a as usize);
        let Some(bytes) = at.and_then(|at| block.buf.bytes().get(at..at + SLOT_SIZE)) else {
            return Err(Error::corrupt(
                &*self.path,
                self.offset,
                Damage::Other,
                "a read block does not cover its slot",
            ));
        };
        out.copy_from_slice(bytes);
        Ok(())
    }

    /// The error of this slot when the read covering it failed with `e` (a read shared by
    /// several slots gives each its own copy).
    fn read_error(&self, e: &std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return Error::corrupt(
                &*self.path,
                self.offset,
                Damage::Length,
                "value section ends before this slot",
            );
        }
        let copy = match e.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(e.kind(), e.to_string()),
        };
        Error::io("read", &*self.path, copy)
    }
}

/// One merged read of [`read_slots`]: the file, the aligned byte range, and a slot in it
/// (whose file handle the read uses).
struct Run {
    file: usize,
    start: u64,
    end: u64,
    slot: usize,
}

/// Reads `slots` in one batch through `reader`, neighbours together: slots of one section
/// whose aligned blocks overlap, touch or lie at most [`MERGE_GAP`] bytes apart share one
/// read, of at most [`MERGE_MAX`] bytes. Returns, for each slot in order, the block that covers
/// it (take it out with [`Slot::take`]); a failed read fails the slots it covers and no other.
pub(crate) fn read_slots(slots: &[&Slot], reader: &dyn Reader) -> Vec<Rc<Block>> {
    let mut order: Vec<(usize, u64, u64, usize)> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (start, len) = s.cover();
            (s.file_id(), start, start + len, i)
        })
        .collect();
    order.sort_unstable();
    let mut runs: Vec<Run> = Vec::new();
    let mut run_of = vec![0usize; slots.len()];
    for (file, start, end, i) in order {
        match runs.last_mut() {
            Some(run)
                if run.file == file
                    && start <= run.end + MERGE_GAP
                    && end.max(run.end) - run.start <= MERGE_MAX =>
            {
                run.end = run.end.max(end);
            }
            _ => runs.push(Run {
                file,
                start,
                end,
                slot: i,
            }),
        }
        run_of[i] = runs.len() - 1;
    }
    let mut reads: Vec<ReadReq<'_>> = runs
        .iter()
        .map(|r| ReadReq::new(&*slots[r.slot].file, r.start, (r.end - r.start) as usize))
        .collect();
    reader.read_many(&mut reads);
    let blocks: Vec<Rc<Block>> = reads.into_iter().map(|r| Rc::new(r.into())).collect();
    run_of.into_iter().map(|r| blocks[r].clone()).collect()
}

/// Writes a full bank out as value section `n` of `dir`: to a temporary file in one aligned
/// write, fdatasync, rename, directory sync. Afterwards the section is durable; the returned
/// handle reads it.
pub(crate) fn write_file(
    vfs: &dyn Vfs,
    dir: &Path,
    direct: bool,
    n: u32,
    out: &Outbound,
) -> Result<(PathBuf, Arc<dyn FileIo>)> {
    let path = dir.join(values_name(n));
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", values_name(n)));
    let mode = Mode {
        create: true,
        write: true,
        direct,
    };
    let file = open(vfs, &tmp, mode)?;
    file.set_len(0).ctx("truncate", &tmp)?;
    out.copy_to(&*file)?;
    file.sync().ctx("fdatasync", &tmp)?;
    crate::kill::point("write-out-synced");
    vfs.rename(&tmp, &path).ctx("rename", &tmp)?;
    vfs.sync_dir(dir).ctx("fsync", dir)?;
    crate::kill::point("write-out-done");
    Ok((path, file))
}

/// Reads all of value section `file` (header page and slots) in one aligned read.
pub(crate) fn read_all(path: &Path, file: &dyn FileIo, slots: u32) -> Result<AlignedBuf> {
    let len = values_len(slots) as usize;
    let a = file.align();
    let mut buf = AlignedBuf::new(len, a.mem);
    file.read_at(buf.bytes_mut(), 0)
        .ctx("read value section", path)?;
    Ok(buf)
}

/// Opens a value file, turning a refusal of `O_DIRECT` into a clear error.
fn open(vfs: &dyn Vfs, path: &Path, mode: Mode) -> Result<Arc<dyn FileIo>> {
    vfs.open(path, mode).map_err(|e| {
        if mode.direct && e.raw_os_error() == Some(libc::EINVAL) {
            Error::DirectUnsupported {
                path: path.to_path_buf(),
                source: e,
            }
        } else {
            Error::io("open", path, e)
        }
    })
}

impl Values {
    /// No sections yet.
    pub(crate) fn new(dir: &Path, direct: bool, slots: u32) -> Values {
        Values {
            dir: dir.to_path_buf(),
            direct,
            slots,
            files: BTreeMap::new(),
            copies: Copies::default(),
        }
    }

    /// Keeps in-memory copies of the latest sections written within `bytes` (whole sections
    /// only: fewer than one section's worth keeps none); returns the bytes they may take.
    pub(crate) fn keep_copies(&mut self, bytes: usize) -> usize {
        self.copies.keep = bytes / self.copy_len();
        while self.copies.order.len() > self.copies.keep {
            self.drop_oldest_copy();
        }
        self.copies.keep * self.copy_len()
    }

    /// Bytes of one copy: the section's slots.
    fn copy_len(&self) -> usize {
        self.slots as usize * SLOT_SIZE
    }

    /// A buffer for the next copy, or `None` when no copies are kept.
    pub(crate) fn copy_buffer(&mut self) -> Option<Box<[u8]>> {
        if self.copies.keep == 0 {
            return None;
        }
        let len = self.copy_len();
        let spare = self.copies.spare.take().filter(|b| b.len() == len);
        Some(spare.unwrap_or_else(|| vec![0u8; len].into_boxed_slice()))
    }

    /// Holds `copy`, the slots of section `n` (registered already), dropping the oldest
    /// copies beyond the number kept.
    pub(crate) fn hold_copy(&mut self, n: u32, copy: Box<[u8]>) {
        if self.copies.keep == 0 || copy.len() != self.copy_len() || !self.has(n) {
            return;
        }
        if self.copies.held.insert(n, copy).is_none() {
            self.copies.order.push_back(n);
        }
        while self.copies.order.len() > self.copies.keep {
            self.drop_oldest_copy();
        }
    }

    fn drop_oldest_copy(&mut self) {
        if let Some(n) = self.copies.order.pop_front() {
            self.copies.spare = self.copies.held.remove(&n);
        }
    }

    /// Copies slot `index` of section `n` into `out` when the section is held in memory:
    /// its file and the slot's offset there (for errors), else `None`.
    pub(crate) fn copied(
        &self,
        n: u32,
        index: u32,
        out: &mut [u8; SLOT_SIZE],
    ) -> Option<(Arc<Path>, u64)> {
        let copy = self.copies.held.get(&n)?;
        let at = index as usize * SLOT_SIZE;
        out.copy_from_slice(copy.get(at..at + SLOT_SIZE)?);
        let (path, _) = self.files.get(&n)?;
        Some((path.clone(), (VALUES_DATA_AT + at) as u64))
    }

    /// Sections held in memory, and their bytes.
    pub(crate) fn copies(&self) -> (u64, u64) {
        let n = self.copies.held.len();
        (n as u64, (n * self.copy_len()) as u64)
    }

    /// Opens section `n` and checks its length and header.
    pub(crate) fn open(&mut self, vfs: &dyn Vfs, n: u32) -> Result<()> {
        let path = self.dir.join(values_name(n));
        let mode = Mode {
            create: false,
            write: false,
            direct: self.direct,
        };
        let file = open(vfs, &path, mode)?;
        let len = file.len().ctx("stat", &path)?;
        let want = values_len(self.slots);
        if len != want {
            return Err(Error::corrupt(
                &path,
                len.min(want),
                Damage::Length,
                format!("value section is {len} bytes, expected {want}"),
            ));
        }
        let a = file.align();
        let mut page = AlignedBuf::new(PAGE.max(a.offset), a.mem);
        file.read_at(page.bytes_mut(), 0)
            .ctx("read header", &path)?;
        let header = Header::decode(&page.bytes()[..HEADER_LEN], Kind::Values)
            .map_err(|e| header_error(&path, Kind::Values, e))?;
        if header.section != n || header.section_slots != self.slots {
            return Err(Error::corrupt(
                &path,
                0,
                Damage::Header,
                format!(
                    "header says section {} of {} slots; expected section {n} of {}",
                    header.section, header.section_slots, self.slots
                ),
            ));
        }
        self.files.insert(n, (path.into(), file));
        Ok(())
    }

    /// Whether section `n` exists.
    pub(crate) fn has(&self, n: u32) -> bool {
        self.files.contains_key(&n)
    }

    /// Writes a full bank out as section `n` (see [`write_file`]); the caller registers the
    /// file with [`insert`](Self::insert).
    pub(crate) fn write(
        &self,
        vfs: &dyn Vfs,
        n: u32,
        out: &Outbound,
    ) -> Result<(PathBuf, Arc<dyn FileIo>)> {
        write_file(vfs, &self.dir, self.direct, n, out)
    }

    /// Registers section `n`, just written.
    pub(crate) fn insert(&mut self, n: u32, path: PathBuf, file: Arc<dyn FileIo>) {
        self.files.insert(n, (path.into(), file));
    }

    /// Removes section `n` (garbage collection moved its live values) and syncs the
    /// directory, so that the number can be used again. Readers holding a [`Slot`] of it still
    /// read the old file.
    pub(crate) fn remove(&mut self, vfs: &dyn Vfs, n: u32) -> Result<()> {
        let Some((path, _)) = self.files.remove(&n) else {
            return Ok(());
        };
        if let Some(copy) = self.copies.held.remove(&n) {
            self.copies.order.retain(|&m| m != n);
            self.copies.spare = Some(copy);
        }
        vfs.remove(&path).ctx("remove", &path)?;
        vfs.sync_dir(&self.dir).ctx("fsync", &self.dir)
    }

    /// The section numbers, in order.
    pub(crate) fn sections(&self) -> impl Iterator<Item = u32> + '_ {
        self.files.keys().copied()
    }

    /// The file of section `n`, to read whole.
    pub(crate) fn file(&self, n: u32) -> Option<(PathBuf, Arc<dyn FileIo>)> {
        let (path, file) = self.files.get(&n)?;
        Some((path.to_path_buf(), file.clone()))
    }

    /// What a background thread needs to write sections: the I/O layer is passed separately.
    pub(crate) fn place(&self) -> (PathBuf, bool) {
        (self.dir.clone(), self.direct)
    }

    /// A handle on slot `index` of section `n`, to read without holding the store's lock
    /// (value sections never change once written).
    pub(crate) fn slot(&self, n: u32, index: u32) -> Result<Slot> {
        let Some((path, file)) = self.files.get(&n) else {
            let path = self.dir.join(values_name(n));
            return Err(Error::corrupt(
                path,
                0,
                Damage::Missing,
                "value section is missing",
            ));
        };
        Ok(Slot {
            path: path.clone(),
            file: file.clone(),
            offset: (VALUES_DATA_AT + index as usize * SLOT_SIZE) as u64,
        })
    }

    /// Path of section `n`, for error messages.
    pub(crate) fn path(&self, n: u32) -> PathBuf {
        self.dir.join(values_name(n))
    }

    /// Whether value files use `O_DIRECT`.
    pub(crate) fn direct(&self) -> bool {
        self.direct
    }

    /// Number of value sections.
    pub(crate) fn count(&self) -> usize {
        self.files.len()
    }
}
