//! The walk of the key log, read-only, mirroring `store/recover.rs`: each record must decode,
//! the slots of successive puts must strictly increase, a slot's value section must exist or be
//! the one the buffer fills, and an unsynced value in the buffer must match its checksum. The
//! first record that fails at or after the sync mark ends the log (the torn tail); one that
//! fails before it is corruption, reported, and the walk goes on. Values are checked too.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::{
    BUFFER_DATA_AT, KEYS_DATA_AT, Op, RECORD_SIZE, Record, RecordError, SLOT_SIZE, VALUES_DATA_AT,
    keys_name, record::value_crc, values_name,
};
use crate::key::Key;

use super::survey::{Survey, read_file_at_most};
use super::{Counts, ProblemKind as K, Problems};

/// Why the log ends at an all-zero record (the wording of `recover`).
const NEVER_WRITTEN: &str = "record never written";

/// Records read per chunk.
const CHUNK: u32 = 4096;

/// Where a written record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Part of the log, before the sync mark.
    Synced,
    /// Part of the log, after the sync mark.
    Unsynced,
    /// Before the sync mark but failing its checks: corruption.
    Corrupt,
    /// At or after the end of the log: open drops it.
    Dropped,
}

/// A written (not all-zero) record as the walk saw it, for [`dump`](super::dump).
#[derive(Debug)]
pub(crate) struct Seen<'a> {
    /// Its sequence number (position in the log).
    pub(crate) seq: u64,
    /// Its key section.
    pub(crate) file: &'a Path,
    /// Its offset there.
    pub(crate) offset: u64,
    /// The record, when it decodes.
    pub(crate) record: Option<Record>,
    /// Why it fails its checks, if it does.
    pub(crate) why: Option<&'a str>,
    /// Where it stands.
    pub(crate) status: Status,
    /// A put's value bytes, when read.
    pub(crate) value: Option<&'a [u8]>,
    /// Whether they match the record's checksum, when read.
    pub(crate) value_ok: Option<bool>,
}

/// The walk's state.
struct Walker<'a> {
    sv: &'a Survey,
    slots: u32,
    synced: u64,
    values: bool,
    /// The open value file (or buffer) and its section.
    cur: Option<(u64, File)>,
    /// First record not in the log, and where it is.
    end: Option<(u64, PathBuf, u64)>,
    /// Why the log ends there, when it is not a clean end (damage, or writes after a hole).
    tail: Option<String>,
    /// A run of never-written records before the sync mark: file, offset, first seq, count.
    run: Option<(PathBuf, u64, u64, u64)>,
    live: HashMap<Key, u64>,
    /// Values that fail their checksum: key, seq, file, offset, what.
    bad_values: Vec<(Key, u64, PathBuf, u64, String)>,
    last_slot: Option<u32>,
    c: Counts,
    value: [u8; SLOT_SIZE],
}

/// Walks the log of `sv`, reporting into `p`, filling `c`, and calling `visit` with every
/// written record. Reads and checks values when `values` is set. Fails only when `visit` does.
pub(crate) fn walk(
    sv: &Survey,
    values: bool,
    p: &mut Problems,
    c: &mut Counts,
    visit: &mut dyn FnMut(&Seen<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let Some(slots) = sv.slots else {
        return Ok(());
    };
    let mut w = Walker {
        sv,
        slots,
        synced: sv.mark.synced,
        values,
        cur: None,
        end: None,
        tail: None,
        run: None,
        live: HashMap::new(),
        bad_values: Vec::new(),
        last_slot: None,
        c: std::mem::take(c),
        value: [0; SLOT_SIZE],
    };
    let s = u64::from(slots);
    let mut chunk = vec![0u8; CHUNK as usize * RECORD_SIZE];
    let mut complete = true;
    'log: for (i, kf) in sv.log.iter().enumerate() {
        let base = i as u64 * s;
        let file = match (kf.len, File::open(&kf.path)) {
            (0, _) => None,
            (_, Ok(f)) => Some(f),
            (_, Err(e)) => {
                p.error(K::Io, &kf.path, 0, format!("cannot open: {e}"));
                complete = false;
                break 'log;
            }
        };
        for start in (0..slots).step_by(CHUNK as usize) {
            let n = CHUNK.min(slots - start) as usize;
            let raw = &mut chunk[..n * RECORD_SIZE];
            raw.fill(0);
            let off = (KEYS_DATA_AT + start as usize * RECORD_SIZE) as u64;
            if w.end.is_some() && off >= kf.len {
                break; // past the log's end and the file's: nothing but zeros
            }
            if let Some(f) = &file {
                // Past the file's end records read as zeros, as open extends the file.
                match read_file_at_most(f, off, raw.len()) {
                    Ok(got) => raw[..got.len()].copy_from_slice(&got),
                    Err(e) => {
                        p.error(K::Io, &kf.path, off, format!("cannot read records: {e}"));
                        complete = false;
                        break 'log;
                    }
                }
            }
            for (j, bytes) in raw.chunks_exact(RECORD_SIZE).enumerate() {
                let mut b = [0u8; RECORD_SIZE];
                b.copy_from_slice(bytes);
                let at = off + (j * RECORD_SIZE) as u64;
                w.record(base + start as u64 + j as u64, &kf.path, at, &b, p, visit)?;
            }
        }
    }
    w.finish(complete, p);
    *c = w.c;
    Ok(())
}

impl Walker<'_> {
    /// Takes one record.
    fn record(
        &mut self,
        seq: u64,
        path: &Path,
        off: u64,
        b: &[u8; RECORD_SIZE],
        p: &mut Problems,
        visit: &mut dyn FnMut(&Seen<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let written = b.iter().any(|&x| x != 0);
        let decoded = Record::decode(b, seq);
        let mut seen = Seen {
            seq,
            file: path,
            offset: off,
            record: decoded.as_ref().ok().copied(),
            why: None,
            status: Status::Dropped,
            value: None,
            value_ok: None,
        };
        if self.end.is_some() {
            if written {
                self.c.dropped += 1;
                if self.tail.is_none() {
                    self.tail = Some(format!(
                        "{NEVER_WRITTEN}, though later ones were (writes lost since the last sync)"
                    ));
                }
                let why = decoded.err().map(|e| reason(&e));
                seen.why = why.as_deref();
                visit(&seen)?;
            }
            return Ok(());
        }
        let unsynced = seq >= self.synced;
        let why = match decoded {
            Err(e) => Some(reason(&e)),
            Ok(rec) => self.check(&rec, unsynced, p),
        };
        if let Some(why) = why {
            if unsynced {
                self.flush_run(p);
                self.end = Some((seq, path.to_path_buf(), off));
                if written {
                    self.c.dropped += 1;
                    self.tail = Some(why.clone());
                    seen.why = Some(&why);
                    visit(&seen)?;
                }
                return Ok(());
            }
            self.c.bad_records += 1;
            if !written {
                match &mut self.run {
                    Some((_, _, first, n)) if *first + *n == seq => *n += 1,
                    _ => {
                        self.flush_run(p);
                        self.run = Some((path.to_path_buf(), off, seq, 1));
                    }
                }
                return Ok(());
            }
            self.flush_run(p);
            let what = format!(
                "key record {seq} was synced (the sync mark is at {}) but {why}",
                self.synced
            );
            p.error(K::Record, path, off, what);
            seen.status = Status::Corrupt;
            seen.why = Some(&why);
            return visit(&seen);
        }
        self.flush_run(p);
        seen.status = if unsynced {
            Status::Unsynced
        } else {
            Status::Synced
        };
        let Some(rec) = seen.record else {
            return Ok(());
        };
        match rec.op {
            Op::Delete => {
                self.c.deletes += 1;
                self.live.remove(&rec.key);
            }
            Op::Put {
                slot,
                len,
                value_crc: want,
            } => {
                self.c.puts += 1;
                self.live.insert(rec.key, seq);
                self.last_slot = Some(slot);
                if self.values
                    && let Some((vpath, voff)) = self.read_value(slot, p)
                {
                    let len = usize::from(len).min(SLOT_SIZE);
                    let got = value_crc(&self.value[..len]);
                    self.c.values_checked += 1;
                    if got != want {
                        let what = format!(
                            "the value of key record {seq} (key {:016x}) has checksum \
                             {got:08x}, the record says {want:08x}",
                            rec.key.as_u64()
                        );
                        self.bad_values.push((rec.key, seq, vpath, voff, what));
                    }
                    seen.value = Some(&self.value[..len]);
                    seen.value_ok = Some(got == want);
                }
            }
        }
        visit(&seen)
    }

    /// `recover::check`: a decoded record against the value side; `Some(reason)` when it fails.
    fn check(&mut self, rec: &Record, unsynced: bool, p: &mut Problems) -> Option<String> {
        let Op::Put {
            slot,
            len,
            value_crc: want,
        } = rec.op
        else {
            return None;
        };
        if let Some(last) = self.last_slot
            && slot <= last
        {
            return Some(format!(
                "its slot {slot} does not follow the previous put's slot {last}"
            ));
        }
        let section = u64::from(slot / self.slots);
        let filling = self.sv.filling;
        if section > filling {
            return Some(format!(
                "its slot {slot} is in value section {section}, past the one being filled \
                 ({filling}); value section {} is missing",
                name_of(filling, "v")
            ));
        }
        if section < filling {
            let present = u32::try_from(section).is_ok_and(|n| self.sv.values.contains_key(&n));
            return (!present)
                .then(|| format!("its value section {} is missing", name_of(section, "v")));
        }
        if !unsynced {
            return None;
        }
        let (path, off) = self.read_value(slot, p)?;
        let got = value_crc(&self.value[..usize::from(len).min(SLOT_SIZE)]);
        (got != want).then(|| {
            format!(
                "its value in {} at offset {off} has checksum {got:08x}, the record says \
                 {want:08x}",
                path.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            )
        })
    }

    /// Reads the bytes of `slot` into `self.value`: from the buffer when its section is the one
    /// being filled (zeros past the buffer's end, as open extends it), else from its `.v` file
    /// if that is sound. Returns the file and offset read, `None` when nothing could be read.
    fn read_value(&mut self, slot: u32, p: &mut Problems) -> Option<(PathBuf, u64)> {
        let section = u64::from(slot / self.slots);
        let index = u64::from(slot % self.slots) * SLOT_SIZE as u64;
        let (path, off) = if section == self.sv.filling {
            let (path, _) = self.sv.buffer.as_ref()?;
            (path.clone(), BUFFER_DATA_AT as u64 + index)
        } else {
            let n = u32::try_from(section).ok()?;
            if self.sv.values.get(&n) != Some(&true) {
                return None;
            }
            (
                self.sv.dir.join(values_name(n)),
                VALUES_DATA_AT as u64 + index,
            )
        };
        if self.cur.as_ref().is_none_or(|(n, _)| *n != section) {
            self.cur = None;
            match File::open(&path) {
                Ok(f) => self.cur = Some((section, f)),
                Err(e) => {
                    p.error(K::Io, &path, 0, format!("cannot open: {e}"));
                    return None;
                }
            }
        }
        let (_, f) = self.cur.as_ref()?;
        match read_file_at_most(f, off, SLOT_SIZE) {
            Ok(got) => {
                self.value.fill(0);
                self.value[..got.len()].copy_from_slice(&got);
                Some((path, off))
            }
            Err(e) => {
                p.error(K::Io, &path, off, format!("cannot read a value: {e}"));
                None
            }
        }
    }

    /// Reports a pending run of never-written records before the sync mark.
    fn flush_run(&mut self, p: &mut Problems) {
        if let Some((path, off, first, n)) = self.run.take() {
            let which = if n == 1 {
                format!("key record {first} was")
            } else {
                format!("key records {first}..{} were", first + n)
            };
            let what = format!(
                "{which} synced (the sync mark is at {}) but {NEVER_WRITTEN} (all zeros)",
                self.synced
            );
            p.error(K::Record, &path, off, what);
        }
    }

    /// Ends the walk: the log's end against the sync mark, the torn tail, damaged values, counts.
    fn finish(&mut self, complete: bool, p: &mut Problems) {
        self.flush_run(p);
        let s = u64::from(self.slots);
        let end = self
            .end
            .as_ref()
            .map_or(self.sv.log.len() as u64 * s, |e| e.0);
        if complete && self.end.is_none() && end < self.synced {
            let what = format!(
                "key records up to {} were synced but the key log ends at {end}: this key \
                 section is missing",
                self.synced
            );
            p.error(
                K::Missing,
                &self.sv.dir.join(name_of(end / s, "k")),
                0,
                what,
            );
        }
        if let (Some((_, path, off)), Some(why)) = (&self.end, &self.tail) {
            let what = format!(
                "torn unsynced tail (would be dropped at open): the log ends at key record \
                 {end}, at or after the sync mark ({}), because {why}; open zeroes the {} \
                 written record(s) from here on",
                self.synced, self.c.dropped
            );
            p.warn(K::TornTail, path, *off, what);
        }
        for kf in self.sv.log.iter().skip((end / s + 1) as usize) {
            let what = "key section past the end of the log (unsynced); open removes it";
            p.warn(K::TornTail, &kf.path, 0, what);
        }
        for (key, seq, path, off, what) in std::mem::take(&mut self.bad_values) {
            let whose = if self.live.get(&key) == Some(&seq) {
                "a get of this key fails"
            } else {
                "an older version of its key, never read"
            };
            p.error(K::Value, &path, off, format!("{what}; {whose}"));
        }
        let c = &mut self.c;
        c.records = end;
        c.live_keys = self.live.len() as u64;
        c.dead_records = end.saturating_sub(c.live_keys);
        c.unsynced = end.saturating_sub(self.synced);
        c.slots_used = self
            .last_slot
            .map_or(0, |l| u64::from(l) + 1)
            .max(self.sv.filling.saturating_mul(s));
    }
}

/// The reason a record does not decode.
fn reason(e: &RecordError) -> String {
    match e {
        RecordError::Empty => NEVER_WRITTEN.to_string(),
        RecordError::Bad(why) => why.clone(),
    }
}

/// File name of section `n` with extension `ext` (past `u32` it cannot exist).
fn name_of(n: u64, ext: &str) -> String {
    match (u32::try_from(n), ext) {
        (Ok(n), "k") => keys_name(n),
        (Ok(n), _) => values_name(n),
        (Err(_), _) => format!("{n:x}.{ext}"),
    }
}
