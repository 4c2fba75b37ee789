//! The store's `journal`, read-only, mirroring `recover` and `current` in `store/replay.rs`:
//! the current header (the valid slot with the higher epoch), then the current epoch's frames
//! from [`FRAMES_AT`], up to the first block that is not the next frame. Open replays their
//! entries into the shards.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::format::journal::{
    BLOCK, FRAME_HEADER_LEN, FRAMES_AT, Frame, JOURNAL_HEADER_LEN, JOURNAL_NAME, JournalHeader,
    JournalOp, SLOTS, decode_entry,
};
use crate::format::{STORE_NAME, TMP_SUFFIX};

use super::ProblemKind as K;
use super::show::Problems;
use super::survey::read_file_at_most;

/// What the journal at the top of a data directory holds, as open would read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalReport {
    /// The journal file.
    pub file: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// The current header's epoch; `None` when no header slot holds a valid one (open refuses
    /// the store).
    pub epoch: Option<u64>,
    /// Frames of the current epoch that open would replay (one commit may take several).
    pub frames: u64,
    /// Entries in those frames: the puts and deletes open would replay into the shards.
    pub entries: u64,
    /// Puts among them.
    pub puts: u64,
    /// Deletes among them.
    pub deletes: u64,
    /// Whether a torn frame (a commit cut by power loss, never acknowledged) ends the journal:
    /// open drops it.
    pub torn: bool,
}

/// A length as people read it: whole MiB or KiB when it is one, else bytes.
fn size(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    match n {
        0 => "0 bytes".into(),
        n if n.is_multiple_of(MIB) => format!("{} MiB", n / MIB),
        n if n.is_multiple_of(KIB) => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

impl fmt::Display for JournalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(epoch) = self.epoch else {
            return write!(
                f,
                "{}, no valid header: open refuses the store",
                size(self.len)
            );
        };
        write!(
            f,
            "{}, epoch {epoch}, {} frame{} / {} entr{} to replay at open ({} puts, {} deletes)",
            size(self.len),
            self.frames,
            if self.frames == 1 { "" } else { "s" },
            self.entries,
            if self.entries == 1 { "y" } else { "ies" },
            self.puts,
            self.deletes
        )?;
        if self.torn {
            f.write_str("; a torn last frame is dropped")?;
        }
        Ok(())
    }
}

/// Whether `name` at the top of a data directory is the journal's or its leftover
/// `journal.tmp` (a warning: open removes it).
pub(crate) fn top_name(name: &str, path: &Path, p: &mut Problems) -> bool {
    if name == format!("{JOURNAL_NAME}{TMP_SUFFIX}") {
        let what = "left over by an interrupted journal creation; open removes it";
        p.warn(K::Name, path, 0, what);
        return true;
    }
    name == JOURNAL_NAME
}

/// Reads the journal of `dir` if `names` (its listing) holds one, reporting into `p`.
pub(crate) fn read(dir: &Path, names: &[String], p: &mut Problems) -> Option<JournalReport> {
    if !names.iter().any(|n| n == JOURNAL_NAME) {
        return None;
    }
    let path = dir.join(JOURNAL_NAME);
    let mut j = JournalReport {
        file: path.clone(),
        ..JournalReport::default()
    };
    let opened = File::open(&path).and_then(|f| f.metadata().map(|m| (f, m)));
    let file = match opened {
        Ok((_, m)) if !m.is_file() => {
            p.error(
                K::Io,
                &path,
                0,
                "the journal is not a file: open refuses it",
            );
            return Some(j);
        }
        Ok((file, m)) => {
            j.len = m.len();
            file
        }
        Err(e) => {
            p.error(K::Io, &path, 0, format!("cannot open the journal: {e}"));
            return Some(j);
        }
    };
    let Some(header) = current(&file, &path, j.len, p) else {
        return Some(j);
    };
    j.epoch = Some(header.epoch);
    frames(&file, &path, header.epoch, &mut j, p);
    if j.frames > 0 && !names.iter().any(|n| n == STORE_NAME) {
        let what = format!(
            "the journal holds {} frame(s) to replay but the STORE file is missing: open refuses \
             the store",
            j.frames
        );
        p.error(K::Missing, &path, 0, what);
    }
    Some(j)
}

/// The current header (`current` in `store/replay.rs`): the higher epoch among the slots that
/// decode, sit in their epoch's slot and give the file's length. A slot that does not count
/// while the other does is a warning (a torn header write leaves the older slot current).
fn current(file: &File, path: &Path, len: u64, p: &mut Problems) -> Option<JournalHeader> {
    if len < FRAMES_AT {
        let what = format!(
            "journal of {len} bytes, short of its {FRAMES_AT}-byte header slots: open refuses \
             the store"
        );
        p.error(K::Length, path, len, what);
        return None;
    }
    let slots = match read_file_at_most(file, 0, FRAMES_AT as usize) {
        Ok(b) if b.len() == FRAMES_AT as usize => b,
        Ok(b) => {
            let what = format!("the header slots end after {} bytes", b.len());
            p.error(K::Io, path, b.len() as u64, what);
            return None;
        }
        Err(e) => {
            p.error(K::Io, path, 0, format!("cannot read the header slots: {e}"));
            return None;
        }
    };
    let mut best: Option<JournalHeader> = None;
    let mut why = Vec::new();
    let mut ignored = Vec::new();
    for (i, b) in slots.chunks(BLOCK).take(SLOTS).enumerate() {
        let at = (i * BLOCK) as u64;
        let reason = match JournalHeader::decode(b) {
            Ok(h) if h.slot_at() != at => {
                format!("slot {i}: epoch {} belongs in the other slot", h.epoch)
            }
            Ok(h) if h.len != len => format!("slot {i}: says {} bytes, the file has {len}", h.len),
            Ok(h) => {
                if best.is_none_or(|b| h.epoch > b.epoch) {
                    best = Some(h);
                }
                continue;
            }
            Err(e) => format!("slot {i}: {e}"),
        };
        if b.iter().take(JOURNAL_HEADER_LEN).any(|&x| x != 0) {
            ignored.push((at, reason.clone()));
        }
        why.push(reason);
    }
    let Some(best) = best else {
        let what = format!(
            "no journal header decodes ({}): open refuses the store",
            why.join("; ")
        );
        p.error(K::Header, path, 0, what);
        return None;
    };
    for (at, reason) in ignored {
        let what = format!(
            "this header slot does not count ({reason}; a torn header write?): open uses epoch \
             {} in the other slot",
            best.epoch
        );
        p.warn(K::Header, path, at, what);
    }
    Some(best)
}

/// Reports the block at `at`, which ends the journal, when it is a frame of an epoch after
/// `epoch` whose checksum holds: open refuses the store then.
fn newer(file: &File, path: &Path, at: u64, epoch: u64, len: u64, head: &[u8], p: &mut Problems) {
    let Some(f) = Frame::read(head).filter(|f| f.epoch > epoch) else {
        return;
    };
    if at + f.blocks() * BLOCK as u64 > len {
        return;
    }
    let Ok(b) = read_file_at_most(file, at, FRAME_HEADER_LEN + f.len as usize) else {
        return;
    };
    if f.check(&b) {
        let what = format!(
            "journal frame of epoch {} after a header of epoch {epoch}: the header of epoch {} \
             was lost, and with it the commits of that epoch",
            f.epoch, f.epoch
        );
        p.error(K::Header, path, at, what);
    }
}

/// `len` bytes of frame `n` at `at`; `None`, reported as an error, when they cannot be read.
fn read_frame(
    file: &File,
    path: &Path,
    at: u64,
    len: usize,
    n: u64,
    p: &mut Problems,
) -> Option<Vec<u8>> {
    read_file_at_most(file, at, len)
        .map_err(|e| {
            p.error(
                K::Io,
                path,
                at,
                format!("cannot read journal frame {n}: {e}"),
            )
        })
        .ok()
}

/// Walks the frames of `epoch` from [`FRAMES_AT`] as `recover` does, counting into `j`.
fn frames(file: &File, path: &Path, epoch: u64, j: &mut JournalReport, p: &mut Problems) {
    let mut at = FRAMES_AT;
    while at < j.len {
        let n = j.frames;
        let Some(head) = read_frame(file, path, at, FRAME_HEADER_LEN, n, p) else {
            return;
        };
        let Some(f) = Frame::peek(&head, epoch, n) else {
            // Not the next frame of the epoch: the journal ends here, unless this is a sound
            // frame of a later epoch, whose header (durable before it) was lost.
            newer(file, path, at, epoch, j.len, &head, p);
            return;
        };
        let span = f.blocks() * BLOCK as u64;
        if at + span > j.len {
            j.torn = true;
            let what = format!(
                "torn journal tail (dropped at open): frame {n} of epoch {epoch} takes {span} \
                 bytes, past the end of the file ({} bytes)",
                j.len
            );
            p.warn(K::TornTail, path, at, what);
            return;
        }
        let Some(b) = read_frame(file, path, at, FRAME_HEADER_LEN + f.len as usize, n, p) else {
            return;
        };
        if !f.check(&b) {
            j.torn = true;
            let what = format!(
                "torn journal tail (dropped at open): frame {n} of epoch {epoch} fails its \
                 checksum (a commit torn by power loss, never acknowledged); the journal ends here"
            );
            p.warn(K::TornTail, path, at, what);
            return;
        }
        let payload = b.get(FRAME_HEADER_LEN..).unwrap_or_default();
        let (mut off, mut count, mut puts) = (0usize, 0u64, 0u64);
        while off < payload.len() {
            match decode_entry(&payload[off..]) {
                Ok((op, l)) => {
                    puts += u64::from(matches!(op, JournalOp::Put(..)));
                    off += l;
                    count += 1;
                }
                Err(why) => {
                    let what = format!(
                        "journal frame {n} passes its checksum but entry {count} does not \
                         decode: {why}; open refuses the store"
                    );
                    let entry_at = at + (FRAME_HEADER_LEN + off) as u64;
                    p.error(K::Record, path, entry_at, what);
                    return;
                }
            }
        }
        if count != u64::from(f.count) {
            let what = format!(
                "journal frame {n} says {} entries and holds {count}: open refuses the store",
                f.count
            );
            p.error(K::Record, path, at, what);
            return;
        }
        j.frames += 1;
        j.entries += count;
        j.puts += puts;
        j.deletes += count - puts;
        at += span;
    }
}
