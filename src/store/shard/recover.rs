//! Recovery: rebuilding the index from the key log at open.
//!
//! The log is read in sequence order, section by section, from the first key section the sync
//! mark keeps. Each record must decode (checksum, sequence number equal to its position, known
//! kind). A record after the sync mark must also point into a value section that exists or
//! that a bank of the buffer holds, and when its value is in a bank the value must match
//! `value_crc` (a key record can reach the disk before its value when power fails between
//! syncs). Records before the mark may point into sections garbage collection has removed
//! since: only live records need their values, which open checks once the index is built.
//!
//! The first record that fails ends the log. If it lies before the sync mark (kept in the
//! buffer: how many records were durable at the last sync), it was durable and acknowledged, so
//! it is reported as corruption naming file and offset; so is a log that ends before the mark
//! because a key section is missing. Otherwise it is the torn tail of writes that were never
//! synced: it and everything after it are dropped, and the store zeroes them before accepting
//! writes, so a later crash cannot revive them.
//!
//! For `toykv check` only (`Options::keep_going`), a failing record before the mark is
//! skipped and kept in [`Walk::bad`] instead, so that every one is reported.

use crate::error::{Damage, Error, Result};
use crate::format::{Op, RECORD_SIZE, Record, RecordError, SLOT_SIZE, record::value_crc};

use crate::store::buffer::Buffer;
use crate::store::index::Log;
use crate::store::keys::Section;
use crate::store::values::Values;

/// Why the log ends at an all-zero record.
const NEVER_WRITTEN: &str = "record never written";

/// Records read per chunk while walking a section.
const CHUNK: u32 = 4096;

/// What the walk found.
#[derive(Debug)]
pub(super) struct Walk {
    /// Every valid record, in log order.
    pub(super) log: Log,
    /// Sequence number of the first record that is not part of the log.
    pub(super) end: u64,
    /// Section and slot index of the last valid put.
    pub(super) last: Option<(u32, u32)>,
    /// Where each value section's fill starts (see `usage`).
    pub(super) fills: Vec<(u64, u32)>,
    /// When the log ended at a damaged record (not at a never-written one): where and why.
    pub(super) torn: Option<String>,
    /// With `keep_going`: every damaged synced record, skipped (and a log that ends before
    /// the sync mark); open refuses the shard if there is any.
    pub(super) bad: Vec<Error>,
}

/// Reads the log of `sections` (numbered from `first`) against the buffer, its sync mark and
/// the value sections. With `keep_going` (for `toykv check`), a damaged synced record is
/// skipped and kept in [`Walk::bad`] instead of ending the walk with an error.
pub(super) fn walk(
    sections: &[Section],
    first: u32,
    slots: u32,
    buffer: &Buffer,
    values: &Values,
    keep_going: bool,
) -> Result<Walk> {
    let mut bad = Vec::new();
    let s64 = u64::from(slots);
    let synced = buffer.mark().synced;
    let mut log = Log::with_capacity(sections.len().saturating_mul(slots as usize));
    let mut last: Option<(u32, u32)> = None;
    let mut fills: Vec<(u64, u32)> = Vec::new();
    let mut chunk = vec![0u8; CHUNK as usize * RECORD_SIZE];
    let mut value = [0u8; SLOT_SIZE];
    for (i, sec) in sections.iter().enumerate() {
        let base = (u64::from(first) + i as u64) * s64;
        for start in (0..slots).step_by(CHUNK as usize) {
            let n = CHUNK.min(slots - start);
            let raw = &mut chunk[..n as usize * RECORD_SIZE];
            sec.read_raw(start, raw)?;
            for (j, bytes) in raw.chunks_exact(RECORD_SIZE).enumerate() {
                let idx = start + j as u32;
                let seq = base + u64::from(idx);
                let mut b = [0u8; RECORD_SIZE];
                b.copy_from_slice(bytes);
                let verdict = match Record::decode(&b, seq) {
                    Ok(rec) => {
                        let unsynced = seq >= synced;
                        match check(&rec, unsynced, slots, buffer, values, &mut value)? {
                            Some(why) => Err(RecordError::Bad(why)),
                            None => Ok(rec),
                        }
                    }
                    Err(e) => Err(e),
                };
                let rec = match verdict {
                    Ok(rec) => rec,
                    Err(e) => {
                        // A never-written record ends the log; any other failure past the sync
                        // mark is a torn tail (decided on the variant, not on the text).
                        let torn = matches!(e, RecordError::Bad(_));
                        let why = match e {
                            RecordError::Empty => NEVER_WRITTEN.to_string(),
                            RecordError::Bad(why) => why,
                        };
                        let off = Section::offset(idx) as u64;
                        if seq < synced {
                            let e = Error::corrupt(
                                &sec.path,
                                off,
                                Damage::Record,
                                format!(
                                    "key record {seq} was synced (the sync mark is at {synced}) but {why}"
                                ),
                            );
                            if keep_going {
                                bad.push(e);
                                continue;
                            }
                            return Err(e);
                        }
                        return Ok(Walk {
                            log,
                            end: seq,
                            last,
                            fills,
                            torn: torn.then(|| {
                                format!(
                                    "dropped the unsynced tail from {} offset {off}: {why}",
                                    sec.path.display()
                                )
                            }),
                            bad,
                        });
                    }
                };
                match rec.op {
                    Op::Put { slot, .. } => {
                        log.put(rec.key, seq);
                        let section = slot / slots;
                        if fills.last().map(|f| f.1) != Some(section) {
                            fills.push((seq, section));
                        }
                        last = Some((section, slot % slots));
                    }
                    Op::Delete => log.delete(rec.key, seq),
                }
            }
        }
    }
    let end = (u64::from(first) + sections.len() as u64) * s64;
    if end < synced {
        // The log stops at a section boundary before the sync mark: a key section is gone.
        let n = end / s64;
        let e = Error::corrupt(
            sections.last().map_or_else(
                || buffer.path.clone(),
                |s| s.path.with_file_name(keys_name_of(n)),
            ),
            0,
            Damage::Missing,
            format!(
                "key records up to {synced} were synced but the key log ends at {end}: this key section is missing"
            ),
        );
        if !keep_going {
            return Err(e);
        }
        bad.push(e);
    }
    Ok(Walk {
        log,
        end,
        last,
        fills,
        torn: None,
        bad,
    })
}

/// File name of key section `n` (a `u64` here; past `u32` it cannot exist).
fn keys_name_of(n: u64) -> String {
    u32::try_from(n).map_or_else(|_| format!("{n:x}.k"), crate::format::keys_name)
}

/// Checks a decoded record against the value side; `Some(reason)` when it is not valid.
fn check(
    rec: &Record,
    unsynced: bool,
    slots: u32,
    buffer: &Buffer,
    values: &Values,
    value: &mut [u8; SLOT_SIZE],
) -> Result<Option<String>> {
    let Op::Put {
        slot,
        len,
        value_crc: want,
    } = rec.op
    else {
        return Ok(None);
    };
    if !unsynced {
        return Ok(None);
    }
    let (section, index) = (slot / slots, slot % slots);
    if values.has(section) {
        return Ok(None);
    }
    let Some(bank) = buffer.holding(section) else {
        return Ok(Some(format!(
            "its slot {slot} is in value section {section}, which neither exists ({}) nor is \
             in the buffer",
            values.path(section).display()
        )));
    };
    buffer.read(bank, index, value)?;
    let got = value_crc(&value[..usize::from(len)]);
    Ok((got != want).then(|| {
        format!(
            "its value in {} at offset {} has checksum {got:08x}, the record says {want:08x}",
            buffer.path.display(),
            buffer.offset(bank, index)
        )
    }))
}
