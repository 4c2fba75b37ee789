//! The write buffer (`buffer.b`): two banks of value slots, memory-mapped.
//!
//! Layout: the buffer's header page (with the shard's sync marks), then [`BANKS`] banks, each
//! the header page of the value section it holds followed by that section's slots. One bank is
//! filled by puts (a value is copied into its slot: a memory store, so it survives a process
//! crash at once) while the other, once full, is written out to its `.v` file by a background
//! thread in one aligned direct write straight from the map. A bank is then free for the next
//! section: [`reset`](Buffer::reset) rewrites (and syncs) its header page first, so the page
//! always names the section whose values the bank holds.
//!
//! # The bank hand-off
//!
//! This module alone owns which bank puts fill ([`Buffer::fill`]), how far ([`Buffer::next`]),
//! which bank is being written out, and which slots were written since the last sync plan
//! ([`Buffer::take_dirty`]). Its invariants, enforced here:
//!
//! 1. A bank being written out is never written: puts write only the active bank, and
//!    [`Buffer::rotate`] refuses to give a bank a new section while its write-out runs, so
//!    the background writer copies bytes no one changes.
//! 2. The active bank is never being written out.
//! 3. Two banks never name the same section (a bank gives its section up with
//!    [`Buffer::clear`], and a new section number is one neither bank names).
//! 4. A bank's header page is rewritten and synced before any value of its new section goes
//!    in, so the page always names the section of the values the bank holds.
//!
//! A write-out is started by [`Buffer::rotate`] (which hands back the full bank's number),
//! carried out from an [`Outbound`] without the shard's lock, and ended by
//! [`Buffer::written_out`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Context, Damage, Error, Result};
use crate::format::{
    BANKS, BUFFER_BANKS_AT, BUFFER_NAME, HEADER_LEN, Header, Kind, MARK_A, MARK_B, MARK_LEN, Mark,
    PAGE, SLOT_SIZE, bank_at, buffer_len, values_len,
};
use crate::io::{self, FileIo, Mode, Region, Vfs};
use crate::key::VALUE_MAX;

use super::file::Span;
use super::file::create_complete;
use super::file::header_error;

/// The bank puts fill, as a snapshot copies it: its number, and its header page and filled
/// slots.
pub(crate) type Filled = (usize, Vec<u8>);

/// The open write buffer.
#[derive(Debug)]
pub(crate) struct Buffer {
    pub(crate) path: PathBuf,
    _file: Arc<dyn FileIo>,
    /// The header page (the buffer's own header and the two sync marks), written only by
    /// the shard's sync leader through a [`MarkWriter`], outside the shard's lock.
    head: Arc<Mutex<Region>>,
    /// Each bank's part of the map (its header page, then its slots), written only through
    /// `&mut self` (the shard's lock); a bank being written out is read by the writer only
    /// through a span.
    bank_maps: [Region; BANKS],
    slots: u32,
    /// The section each bank's header page names (`None` when never set, torn or stale).
    banks: [Option<u32>; BANKS],
    /// Banks whose header page held bytes that do not decode (torn or damaged), found at open.
    damaged: [bool; BANKS],
    /// The newest valid sync mark found or written.
    mark: Mark,
    /// Where the next mark goes (the older copy).
    mark_at: usize,
    /// The bank puts fill.
    active: usize,
    /// Next free slot index in the active bank (`slots` when full or when it holds no section).
    fill: u32,
    /// Banks being written out.
    writing: [bool; BANKS],
    /// Per bank, slot indexes written since the last sync plan.
    dirty: [Option<(u32, u32)>; BANKS],
}

impl Buffer {
    /// Creates the buffer, complete with its header, under a temporary name and renamed into
    /// place (see [`create_complete`]); the caller syncs the directory. No bank holds a
    /// section yet.
    pub(crate) fn create(vfs: &dyn Vfs, dir: &Path, slots: u32) -> Result<Buffer> {
        let path = dir.join(BUFFER_NAME);
        let own = Header {
            kind: Kind::Buffer,
            section_slots: slots,
            section: 0,
        }
        .encode();
        let file = create_complete(vfs, &path, buffer_len(slots), &[(0, &own)])?;
        let (head, bank_maps) = map(&*file, &path, slots)?;
        Ok(Buffer {
            path,
            _file: file,
            head,
            bank_maps,
            slots,
            banks: [None; BANKS],
            damaged: [false; BANKS],
            mark: Mark::default(),
            mark_at: MARK_A,
            active: 0,
            fill: slots,
            writing: [false; BANKS],
            dirty: [None; BANKS],
        })
    }

    /// Opens the buffer and checks its header. [`banks`](Self::banks) holds the sections the
    /// banks' header pages name; the store checks them against the log and the `.v` files. A
    /// buffer cut short after its own header is extended with zeros.
    pub(crate) fn open(vfs: &dyn Vfs, dir: &Path) -> Result<Buffer> {
        let path = dir.join(BUFFER_NAME);
        let mode = Mode {
            create: false,
            write: true,
            direct: false,
        };
        let file = vfs.open(&path, mode).ctx("open", &path)?;
        let len = file.len().ctx("stat", &path)?;
        if len < PAGE as u64 {
            return Err(Error::corrupt(
                &path,
                len,
                Damage::Length,
                format!("write buffer is {len} bytes, shorter than its {PAGE}-byte header page"),
            ));
        }
        let mut page = [0u8; PAGE];
        file.read_at(&mut page, 0).ctx("read header", &path)?;
        let (mark, mark_at) = Mark::newest(&page);
        let own = Header::decode(&page[..HEADER_LEN], Kind::Buffer)
            .map_err(|e| header_error(&path, Kind::Buffer, e))?;
        let slots = own.section_slots;
        let want = buffer_len(slots);
        if len > want {
            return Err(Error::corrupt(
                &path,
                want,
                Damage::Length,
                format!("write buffer is {len} bytes, longer than {want}"),
            ));
        }
        if len < want {
            file.allocate(want).ctx("allocate", &path)?;
        }
        let (head, bank_maps) = map(&*file, &path, slots)?;
        let mut banks = [None; BANKS];
        let mut damaged = [false; BANKS];
        for ((named, bank), region) in banks.iter_mut().zip(0..).zip(&bank_maps) {
            let mut h = [0u8; HEADER_LEN];
            region.read(0, &mut h).ctx("read header", &path)?;
            // A bank's header page is rewritten whenever the bank takes a new section; a torn
            // one names nothing (the log then shows whether the bank held live values).
            *named = Header::decode(&h, Kind::Values)
                .ok()
                .filter(|h| h.section_slots == slots)
                .map(|h| h.section);
            // Bytes that do not decode, or a header page cut off (the file was shorter).
            let cut = len < (bank_at(slots, bank) + HEADER_LEN) as u64;
            damaged[bank] = named.is_none() && (cut || h.iter().any(|&b| b != 0));
        }
        // Two banks never hold the same section (see `clear`); if damage says otherwise,
        // neither is trusted: live values in that section then make open report it missing.
        if banks[0].is_some() && banks.iter().skip(1).any(|b| *b == banks[0]) {
            banks = [None; BANKS];
        }
        Ok(Buffer {
            path,
            _file: file,
            head,
            bank_maps,
            slots,
            banks,
            damaged,
            mark,
            mark_at,
            active: 0,
            fill: slots,
            writing: [false; BANKS],
            dirty: [None; BANKS],
        })
    }

    /// Slots per section, as the header records.
    pub(crate) fn slots(&self) -> u32 {
        self.slots
    }

    /// Offset of slot `index` of bank `bank` in the file.
    pub(crate) fn offset(&self, bank: usize, index: u32) -> usize {
        bank_at(self.slots, bank) + PAGE + index as usize * SLOT_SIZE
    }

    /// Where the next put goes: the active bank's section and the slot index in it; `None`
    /// when the bank is full (or holds no section yet): [`rotate`](Self::rotate) first.
    pub(crate) fn next(&self) -> Option<(u32, u32)> {
        let section = self.banks[self.active]?;
        (self.fill < self.slots).then_some((section, self.fill))
    }

    /// Slots left in the active bank (0 when it holds no section).
    pub(crate) fn room(&self) -> u32 {
        match self.banks[self.active] {
            Some(_) => self.slots.saturating_sub(self.fill),
            None => 0,
        }
    }

    /// Copies `value` into the slot [`next`](Self::next) named and moves past it.
    pub(crate) fn fill(&mut self, value: &[u8]) -> Result<()> {
        let index = self.fill;
        if index >= self.slots || self.banks[self.active].is_none() {
            return Err(Error::corrupt(
                &self.path,
                bank_at(self.slots, self.active) as u64,
                Damage::Other,
                "a put found the active bank full or holding no section",
            ));
        }
        self.write(self.active, index, value)?;
        let d = &mut self.dirty[self.active];
        *d = Some(d.map_or((index, index + 1), |(lo, hi)| {
            (lo.min(index), hi.max(index + 1))
        }));
        self.fill += 1;
        Ok(())
    }

    /// Whether puts can move on to the other bank: it is not being written out.
    pub(crate) fn ready(&self) -> bool {
        !self.writing[self.other()]
    }

    fn other(&self) -> usize {
        (self.active + 1) % BANKS
    }

    /// Moves puts on to the other bank, which takes `section`: its header page is rewritten
    /// and synced first. The full bank is handed back to be written out unless `kept` says
    /// its section is in a `.v` file already (or it holds nothing new): the caller writes it
    /// out (see [`outbound`](Self::outbound)) and then calls
    /// [`written_out`](Self::written_out). Refused while the other bank is being written out
    /// (see [`ready`](Self::ready)).
    pub(crate) fn rotate(
        &mut self,
        section: u32,
        kept: impl Fn(u32) -> bool,
    ) -> Result<Option<usize>> {
        let (full, next) = (self.active, self.other());
        if self.writing[next] || self.banks.contains(&Some(section)) {
            return Err(Error::corrupt(
                &self.path,
                bank_at(self.slots, next) as u64,
                Damage::Other,
                format!("bank {next} cannot take section {section}: busy, or the section is held"),
            ));
        }
        self.reset(next, section)?;
        crate::kill::point("bank-reset");
        // The bank's earlier slots are durable in their `.v` file (a write-out syncs it).
        self.dirty[next] = None;
        let out = match self.banks[full] {
            Some(s) if !kept(s) && self.fill > 0 => {
                self.writing[full] = true;
                Some(full)
            }
            _ => None,
        };
        self.active = next;
        self.fill = 0;
        Ok(out)
    }

    /// Ends the write-out of `bank` that [`rotate`](Self::rotate) started (done or failed):
    /// the bank may take a new section again.
    pub(crate) fn written_out(&mut self, bank: usize) {
        self.writing[bank] = false;
    }

    /// Whether any bank is being written out.
    #[cfg(test)]
    pub(crate) fn writing_out(&self) -> bool {
        self.writing.iter().any(|&w| w)
    }

    /// Puts go on filling `bank` from slot `fill` (open, after recovery found that the log's
    /// last put went to slot `fill - 1` of it); slots before are unsynced as far as this
    /// buffer knows.
    pub(crate) fn resume(&mut self, bank: usize, fill: u32) {
        self.active = bank;
        self.fill = fill.min(self.slots);
        self.dirty[bank] = Some((0, self.fill));
    }

    /// The section each bank's header page names.
    pub(crate) fn sections(&self) -> [Option<u32>; BANKS] {
        self.banks
    }

    /// The bank that holds section `n`, if one does.
    pub(crate) fn holding(&self, n: u32) -> Option<usize> {
        self.banks.iter().position(|&b| b == Some(n))
    }

    /// A bank whose header page held bytes that do not decode, found at open.
    pub(crate) fn damaged(&self) -> Option<usize> {
        self.damaged.iter().position(|&d| d)
    }

    /// The newest sync mark.
    pub(crate) fn mark(&self) -> Mark {
        self.mark
    }

    /// Takes the slot ranges written since the last call, as spans to make durable.
    pub(crate) fn take_dirty(&mut self) -> Result<Vec<Span>> {
        let mut out = Vec::new();
        for bank in 0..BANKS {
            if let Some((lo, hi)) = self.dirty[bank].take() {
                out.push(self.span(bank, lo, hi)?);
            }
        }
        Ok(out)
    }

    /// Writes `value` (zero-padded to a whole slot) into slot `index` of `bank`.
    fn write(&mut self, bank: usize, index: u32, value: &[u8]) -> Result<()> {
        let mut slot = [0u8; SLOT_SIZE];
        let Some(dst) = slot.get_mut(..value.len()) else {
            return Err(Error::ValueTooLong {
                len: value.len(),
                max: VALUE_MAX,
            });
        };
        dst.copy_from_slice(value);
        self.bank_maps[bank]
            .write(slot_at(index), &slot)
            .ctx("write value", &self.path)
    }

    /// Reads slot `index` of `bank` into `out`.
    pub(crate) fn read(&self, bank: usize, index: u32, out: &mut [u8; SLOT_SIZE]) -> Result<()> {
        self.bank_maps[bank]
            .read(slot_at(index), out)
            .ctx("read value", &self.path)
    }

    /// Slots `from..to` of `bank`, to make durable outside the store's lock.
    fn span(&self, bank: usize, from: u32, to: u32) -> Result<Span> {
        let len = to.saturating_sub(from) as usize * SLOT_SIZE;
        let range = self.bank_maps[bank]
            .span(slot_at(from), len)
            .ctx("span of slots", &self.path)?;
        Ok(Span::new(range, &self.path))
    }

    /// Writes `mark` over the older of the two copies and syncs it. Called only by the shard's
    /// sync leader, so the mark's bytes have one writer.
    pub(crate) fn mark_writer(&self) -> MarkWriter {
        MarkWriter {
            head: self.head.clone(),
            path: self.path.clone(),
            at: self.mark_at,
        }
    }

    /// Records that `mark` was written by [`MarkWriter::write`].
    pub(crate) fn marked(&mut self, mark: Mark) {
        self.mark = mark;
        self.mark_at = if self.mark_at == MARK_A {
            MARK_B
        } else {
            MARK_A
        };
    }

    /// The sections of the banks being written out.
    pub(crate) fn outgoing(&self) -> Vec<u32> {
        (0..BANKS)
            .filter(|&b| self.writing[b])
            .filter_map(|b| self.banks[b])
            .collect()
    }

    /// What a snapshot keeps of the buffer (under the shard's lock): the sections of banks
    /// being written out (their `.v` files come later), and the bank puts fill with a copy of
    /// its header page and of the slots filled so far (`None` when it holds no section or no
    /// value yet).
    pub(crate) fn capture(&self) -> Result<(Vec<u32>, Option<Filled>)> {
        let outgoing = self.outgoing();
        let a = self.active;
        let filled = if self.banks[a].is_some() {
            self.fill
        } else {
            0
        };
        if filled == 0 || self.writing[a] {
            return Ok((outgoing, None));
        }
        let mut copy = vec![0u8; slot_at(filled)];
        self.bank_maps[a]
            .read(0, &mut copy)
            .ctx("copy the bank for a snapshot from", &self.path)?;
        Ok((outgoing, Some((a, copy))))
    }

    /// What a background thread needs to write bank `bank` out: a span of its header page
    /// and slots (it can copy them out, never change them).
    pub(crate) fn outbound(&self, bank: usize) -> Outbound {
        Outbound {
            range: self.bank_maps[bank].span_all(),
            path: self.path.clone(),
        }
    }

    /// Gives `bank` to `section`: rewrites its header page and syncs it, before any value of
    /// the section goes in. Old slot contents stay until overwritten; no live record points
    /// at them.
    fn reset(&mut self, bank: usize, section: u32) -> Result<()> {
        let header = Header {
            kind: Kind::Values,
            section_slots: self.slots,
            section,
        };
        let map = &mut self.bank_maps[bank];
        map.write(0, &header.encode())
            .ctx("write header", &self.path)?;
        map.flush(0, PAGE).ctx("msync", &self.path)?;
        self.banks[bank] = Some(section);
        Ok(())
    }

    /// Takes `bank` away from its section: zeroes its header page and syncs it, so that the
    /// section number, once free, can go to the other bank without two header pages on disk
    /// naming the same section.
    pub(crate) fn clear(&mut self, bank: usize) -> Result<()> {
        let at = bank_at(self.slots, bank);
        if self.writing[bank] || bank == self.active && self.fill > 0 && self.fill < self.slots {
            return Err(Error::corrupt(
                &self.path,
                at as u64,
                Damage::Other,
                format!("bank {bank} cannot be cleared while in use"),
            ));
        }
        let map = &mut self.bank_maps[bank];
        map.write(0, &[0u8; HEADER_LEN])
            .ctx("write header", &self.path)?;
        map.flush(0, PAGE).ctx("msync", &self.path)?;
        self.banks[bank] = None;
        Ok(())
    }
}

/// Writes sync marks; see [`Buffer::mark_writer`].
#[derive(Debug)]
pub(crate) struct MarkWriter {
    head: Arc<Mutex<Region>>,
    path: PathBuf,
    /// Where the mark goes.
    at: usize,
}

impl MarkWriter {
    /// Writes and syncs `mark`.
    pub(crate) fn write(&self, mark: Mark) -> Result<()> {
        let mut head = self.head.lock();
        head.write(self.at, &mark.encode())
            .ctx("write sync mark", &self.path)?;
        head.flush(self.at, MARK_LEN).ctx("msync", &self.path)
    }
}

/// A full bank on its way to a `.v` file; see [`Buffer::outbound`].
#[derive(Debug)]
pub(crate) struct Outbound {
    range: io::Span,
    pub(crate) path: PathBuf,
}

impl Outbound {
    /// Copies the bank's slots (not its header page) into `out`, through the kernel (see
    /// [`io::Span::copy_out`]): a full bank is not written during its write-out.
    pub(crate) fn copy_slots(&self, out: &mut [u8]) -> Result<()> {
        self.range
            .copy_out(slot_at(0), out)
            .ctx("copy value slots from", &self.path)
    }

    /// Writes the bank (its header page and all slots) to `dst` in one write.
    pub(crate) fn copy_to(&self, dst: &dyn FileIo) -> Result<()> {
        self.range
            .copy_to(dst, 0)
            .ctx("write value section from", &self.path)
    }
}

/// Maps the buffer of `slots`-slot sections and splits the map: the header page, shared
/// by the sync leaders of the shard through a lock, and each bank.
fn map(
    file: &dyn FileIo,
    path: &Path,
    slots: u32,
) -> Result<(Arc<Mutex<Region>>, [Region; BANKS])> {
    let whole = file.map().ctx("mmap", path)?;
    let bank_len = values_len(slots) as usize;
    let banks = (0..BANKS).map(|b| bank_at(slots, b)..bank_at(slots, b) + bank_len);
    let parts: Vec<_> = std::iter::once(0..PAGE).chain(banks).collect();
    let mut regions = whole.split(&parts).ctx("mmap", path)?.into_iter();
    let head = regions.next();
    let banks: std::result::Result<[Region; BANKS], _> = regions.collect::<Vec<_>>().try_into();
    match (head, banks) {
        (Some(head), Ok(banks)) => Ok((Arc::new(Mutex::new(head)), banks)),
        _ => Err(Error::corrupt(
            path,
            0,
            Damage::Other,
            "the buffer's map did not split into its parts",
        )),
    }
}

/// Offset of slot `index` in its bank's part of the map (after the bank's header page).
fn slot_at(index: u32) -> usize {
    PAGE + index as usize * SLOT_SIZE
}

const _: () = assert!(BUFFER_BANKS_AT == PAGE && MARK_B + MARK_LEN <= PAGE);
