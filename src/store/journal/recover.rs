//! Opening a store's journal: reading the current epoch's frames and replaying them into the
//! shards (see [`crate::format::journal`] for the format and [`journal`](super)
//! for commits).
//!
//! Replay runs before the store's background threads start, so a bank that fills is written
//! out in line. The journal knows nothing of shards: the store passes what applies an entry
//! and what settles the shards afterwards. It applies every entry of the current epoch in
//! order (per key the last one wins, whatever the shards already held), lets the store finish
//! the last atomic batch if a crash cut it short and sync every shard, and only then starts
//! the next epoch: a crash before that replays the same entries again, to the same end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Damage, Error, Result};
use crate::format::TMP_SUFFIX;
use crate::format::journal::{
    BLOCK, FRAME_HEADER_LEN, FRAMES_AT, Frame, JOURNAL_NAME, JournalHeader, JournalOp, decode_entry,
};
use crate::io::{AlignedBuf, FileIo, Mode, Vfs};
use crate::options::{Durability, Options};

use super::Journal;

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;

/// What [`recover`] found in an existing journal.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) file: Arc<dyn FileIo>,
    pub(crate) path: PathBuf,
    pub(crate) header: JournalHeader,
    /// The entries of the current epoch's frames, in order.
    pub(crate) entries: Vec<u8>,
    /// Frames read.
    pub(crate) frames: u64,
    /// Why the last block read was not a frame, when it looked like a torn commit.
    pub(crate) torn: Option<Torn>,
}

/// The last block of a journal read as the start of a frame that is not whole: a commit torn
/// by power loss, never acknowledged, which open drops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Torn {
    /// The frame's number in the current epoch.
    pub(crate) frame: u64,
    /// Byte offset of the frame in the journal.
    pub(crate) offset: u64,
    /// Why it is not a frame.
    pub(crate) why: TornWhy,
}

/// Why a torn frame is not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TornWhy {
    /// Its header says it runs past the end of the file.
    PastEnd,
    /// Its checksum does not match its bytes.
    Checksum,
}

impl std::fmt::Display for Torn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Torn { frame, offset, why } = self;
        match why {
            TornWhy::PastEnd => write!(
                f,
                "frame {frame} at offset {offset} runs past the end of the file"
            ),
            TornWhy::Checksum => write!(
                f,
                "frame {frame} at offset {offset}: checksum mismatch (a commit torn by power loss)"
            ),
        }
    }
}

/// Reads the journal of the store in `dir`, if any, before anything else is written: a new
/// store (`fresh`, no `STORE` file) must not find one holding commits, which would be a
/// store whose `STORE` file was lost (refused, leaving the directory as it was).
pub(crate) fn find(dir: &Path, options: &Options, fresh: bool) -> Result<Option<Found>> {
    let found = recover(&*options.vfs, dir, options.direct_io)?;
    if let Some(f) = &found
        && fresh
        && f.frames > 0
    {
        let what = "the journal holds commits but the STORE file is missing";
        return Err(Error::corrupt(&f.path, 0, Damage::Missing, what));
    }
    Ok(found)
}

/// Opens the journal [`find`] found once the shards are open: replays what it holds, lets
/// the store `settle` the shards (told whether anything was replayed: it finishes a batch a
/// crash cut short and syncs the shards), and only then starts the next epoch; keeps it, made
/// if missing, for durability `always`. A crash before the next epoch's header replays the
/// same entries again, and the store settles again, to the same end. Batches up to number
/// `covered` are durable in the shards once settled: the next epoch's mark.
pub(crate) fn open(
    dir: &Path,
    options: &Options,
    found: Option<Found>,
    covered: u64,
    apply: impl FnMut(JournalOp<'_>) -> Result<()>,
    settle: impl FnOnce(bool) -> Result<()>,
) -> Result<(Option<Journal>, Option<Torn>)> {
    let mut torn = None;
    let mut replayed = false;
    if let Some(f) = &found {
        if f.frames > 0 {
            replay(&f.entries, &f.path, apply)?;
            crate::kill::point("replayed");
            replayed = true;
        }
        torn.clone_from(&f.torn);
    }
    settle(replayed)?;
    let always = options.durability == Durability::Always;
    let journal = match found {
        Some(f) => Some(Journal::resume(f, covered)?).filter(|_| always),
        None if always => Some(Journal::create(
            &*options.vfs,
            dir,
            options.journal_bytes,
            options.direct_io,
            covered,
        )?),
        None => None,
    };
    Ok((journal, torn))
}

/// Reads the journal of `dir`, if there is one (removing a leftover `journal.tmp`, an
/// interrupted creation): its current header and the entries of the current epoch.
pub(super) fn recover(vfs: &dyn Vfs, dir: &Path, direct: bool) -> Result<Option<Found>> {
    let names = vfs.list(dir).ctx("list", dir)?;
    let tmp = format!("{JOURNAL_NAME}{TMP_SUFFIX}");
    if names.contains(&tmp) {
        let p = dir.join(&tmp);
        vfs.remove(&p).ctx("remove", &p)?;
    }
    if !names.iter().any(|n| n == JOURNAL_NAME) {
        return Ok(None);
    }
    let path = dir.join(JOURNAL_NAME);
    let mode = Mode {
        create: false,
        write: true,
        direct,
    };
    let file = vfs.open(&path, mode).ctx("open", &path)?;
    let len = file.len().ctx("stat", &path)?;
    let header = current(&*file, &path, len)?;
    let mut r = Reader {
        file: &*file,
        path: &path,
        len,
        base: FRAMES_AT,
        buf: Vec::new(),
        scratch: AlignedBuf::new(CHUNK, BLOCK),
    };
    let (mut at, mut frames, mut entries, mut torn) = (FRAMES_AT, 0u64, Vec::new(), None);
    while at < len {
        r.drop_before(at);
        let head = r.get(at, FRAME_HEADER_LEN)?;
        let Some(f) = Frame::peek(head, header.epoch, frames) else {
            newer(&mut r, at, header.epoch)?;
            break;
        };
        let size = f.blocks() * BLOCK as u64;
        if at + size > len {
            torn = Some(Torn {
                frame: frames,
                offset: at,
                why: TornWhy::PastEnd,
            });
            break;
        }
        let b = r.get(at, FRAME_HEADER_LEN + f.len as usize)?;
        if !f.check(b) {
            torn = Some(Torn {
                frame: frames,
                offset: at,
                why: TornWhy::Checksum,
            });
            break;
        }
        let payload = &b[FRAME_HEADER_LEN..];
        let mut n = 0;
        let mut count = 0u32;
        while n < payload.len() {
            let (_, l) = decode_entry(&payload[n..]).map_err(|why| {
                Error::corrupt(
                    &path,
                    at,
                    Damage::Record,
                    format!("journal frame {frames}: {why}"),
                )
            })?;
            n += l;
            count += 1;
        }
        if count != f.count {
            let what = format!(
                "journal frame {frames} says {} entries and holds {count}",
                f.count
            );
            return Err(Error::corrupt(&path, at, Damage::Record, what));
        }
        entries.extend_from_slice(payload);
        frames += 1;
        at += size;
    }
    Ok(Some(Found {
        file,
        path,
        header,
        entries,
        frames,
        torn,
    }))
}

/// Refuses the store when the block at `at`, which ends the journal, is a sound frame of an
/// epoch after `epoch`: a checkpoint syncs the next epoch's header before any of its frames
/// is written, so that header was lost after it was made durable, and with it its commits.
fn newer(r: &mut Reader<'_>, at: u64, epoch: u64) -> Result<()> {
    let Some(f) = Frame::read(r.get(at, FRAME_HEADER_LEN)?) else {
        return Ok(());
    };
    let end = at + f.blocks() * BLOCK as u64;
    if f.epoch <= epoch || end > r.len || !f.check(r.get(at, FRAME_HEADER_LEN + f.len as usize)?) {
        return Ok(());
    }
    let what = format!(
        "journal frame of epoch {} after a header of epoch {epoch}: the header of epoch {} was lost",
        f.epoch, f.epoch
    );
    Err(Error::corrupt(r.path, at, Damage::Header, what))
}

/// The current header: the higher epoch among the slots that decode.
fn current(file: &dyn FileIo, path: &Path, len: u64) -> Result<JournalHeader> {
    if len < FRAMES_AT {
        let what = format!("journal of {len} bytes, short of its {FRAMES_AT}-byte header slots");
        return Err(Error::corrupt(path, 0, Damage::Length, what));
    }
    let mut slots = AlignedBuf::new(FRAMES_AT as usize, BLOCK);
    file.read_at(slots.bytes_mut(), 0).ctx("read", path)?;
    let mut best: Option<JournalHeader> = None;
    let mut why = Vec::new();
    for (i, b) in slots.bytes().chunks(BLOCK).enumerate() {
        match JournalHeader::decode(b) {
            Ok(h) if h.slot_at() != (i * BLOCK) as u64 => {
                why.push(format!(
                    "slot {i}: epoch {} belongs in the other slot",
                    h.epoch
                ));
            }
            Ok(h) if h.len != len => {
                why.push(format!(
                    "slot {i}: says {} bytes, the file has {len}",
                    h.len
                ));
            }
            Ok(h) => {
                if best.is_none_or(|b| h.epoch > b.epoch) {
                    best = Some(h);
                }
            }
            Err(e) => why.push(format!("slot {i}: {e}")),
        }
    }
    best.ok_or_else(|| {
        let what = format!("no journal header decodes ({})", why.join("; "));
        Error::corrupt(path, 0, Damage::Header, what)
    })
}

/// Replays journal entries in order through `apply` (into the shards); the operations
/// applied.
fn replay(
    entries: &[u8],
    path: &Path,
    mut apply: impl FnMut(JournalOp<'_>) -> Result<()>,
) -> Result<u64> {
    let (mut at, mut n) = (0usize, 0u64);
    while at < entries.len() {
        let (op, len) = decode_entry(&entries[at..])
            .map_err(|why| Error::corrupt(path, 0, Damage::Record, why))?;
        apply(op)?;
        at += len;
        n += 1;
    }
    Ok(n)
}

/// Reads the journal in [`CHUNK`]s, keeping the bytes from `base` on.
struct Reader<'a> {
    file: &'a dyn FileIo,
    path: &'a Path,
    len: u64,
    base: u64,
    buf: Vec<u8>,
    scratch: AlignedBuf,
}

impl Reader<'_> {
    /// Forgets the bytes before `at` (a block boundary).
    fn drop_before(&mut self, at: u64) {
        let n = (at.saturating_sub(self.base) as usize).min(self.buf.len());
        if n >= CHUNK {
            self.buf.drain(..n);
            self.base += n as u64;
        }
    }

    /// The `n` bytes at `at` (`at + n` within the file).
    fn get(&mut self, at: u64, n: usize) -> Result<&[u8]> {
        while self.base + (self.buf.len() as u64) < at + n as u64 {
            let from = self.base + self.buf.len() as u64;
            let take = (self.len - from).min(CHUNK as u64) as usize;
            if take == 0 {
                let what = format!("journal read past its end at {from}");
                return Err(Error::corrupt(self.path, from, Damage::Length, what));
            }
            let chunk = &mut self.scratch.bytes_mut()[..take];
            self.file.read_at(chunk, from).ctx("read", self.path)?;
            self.buf.extend_from_slice(chunk);
        }
        let start = (at - self.base) as usize;
        Ok(&self.buf[start..start + n])
    }
}
