//! The walk of one shard's key log, read-only, mirroring `store/recover.rs` and the end of
//! `store/open.rs` (the rules are in the [module docs](super)). A record that fails before the
//! sync mark is reported and the walk goes on; only live values are read (older ones may have
//! been moved and their slots reused).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::{
    BUFFER_NAME, KEYS_DATA_AT, Op, PAGE, RECORD_SIZE, Record, RecordError, SLOT_SIZE,
    VALUES_DATA_AT, bank_at, keys_name, record::value_crc, values_name,
};
use crate::key::Key;

use super::show::Problems;
use super::survey::{ShardSurvey, read_file_at_most};
use super::{Counts, ProblemKind as K};

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
    /// Its shard's directory name.
    pub(crate) shard: &'a str,
    /// Its sequence number (position in the shard's log).
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
    /// A put's value bytes, when they are still there (or are live but damaged).
    pub(crate) value: Option<&'a [u8]>,
    /// Whether they match the record's checksum, when shown.
    pub(crate) value_ok: Option<bool>,
}

/// A live put: its record number, slot, length and value checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) seq: u64,
    slot: u32,
    len: u16,
    crc: u32,
}

/// What the walk does besides counting.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mode<'a> {
    /// Read and check every live value.
    pub(crate) values: bool,
    /// For a dump: the live puts of an earlier walk, to read every put's value and flag the
    /// live ones that fail their checksum.
    pub(crate) live: Option<&'a HashMap<Key, Live>>,
}

/// The walk's state.
struct Walker<'a> {
    sv: &'a ShardSurvey,
    slots: u32,
    first: u64,
    synced: u64,
    mode: Mode<'a>,
    /// The open value file (or buffer).
    cur: Option<(PathBuf, File)>,
    /// First record not in the log, and where it is.
    end: Option<(u64, PathBuf, u64)>,
    /// Why the log ends there, when it is not a clean end (damage, or writes after a hole).
    tail: Option<String>,
    /// A run of never-written records before the sync mark: file, offset, first seq, count.
    run: Option<(PathBuf, u64, u64, u64)>,
    live: HashMap<Key, Live>,
    /// Section and index of the last put of the log.
    last: Option<(u32, u32)>,
    c: Counts,
    value: [u8; SLOT_SIZE],
}

/// Walks the log of shard `sv`, reporting into `p` and calling `visit` with every written
/// record. Fails only when `visit` does. A shard whose buffer is unusable is not walked.
pub(crate) fn walk(
    sv: &ShardSurvey,
    mode: Mode<'_>,
    p: &mut Problems,
    visit: &mut dyn FnMut(&Seen<'_>) -> io::Result<()>,
) -> io::Result<(Counts, HashMap<Key, Live>)> {
    let (Some(slots), Some(_)) = (sv.slots, &sv.buffer) else {
        return Ok(Default::default());
    };
    let s = u64::from(slots);
    let mut w = Walker {
        sv,
        slots,
        first: u64::from(sv.mark.first) * s,
        synced: sv.mark.synced,
        mode,
        cur: None,
        end: None,
        tail: None,
        run: None,
        live: HashMap::new(),
        last: None,
        c: Counts::default(),
        value: [0; SLOT_SIZE],
    };
    let mut chunk = vec![0u8; CHUNK as usize * RECORD_SIZE];
    let mut complete = true;
    'log: for (i, kf) in sv.log.iter().enumerate() {
        let base = w.first + i as u64 * s;
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
    Ok((w.c, w.live))
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
        let sv = self.sv;
        let shard = sv.name.as_str();
        let mut seen = Seen {
            shard,
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
                value_crc: crc,
            } => {
                self.c.puts += 1;
                let put = Live {
                    seq,
                    slot,
                    len,
                    crc,
                };
                self.live.insert(rec.key, put);
                self.last = Some((slot / self.slots, slot % self.slots));
                if let Some(live) = self.mode.live
                    && self.read_value(slot, p).is_some()
                {
                    let len = usize::from(len).min(SLOT_SIZE);
                    let ok = value_crc(&self.value[..len]) == crc;
                    // A dead put's slot may hold another value since (moved, then reused).
                    if ok || live.get(&rec.key) == Some(&put) {
                        seen.value = Some(&self.value[..len]);
                        seen.value_ok = Some(ok);
                    }
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
        if !unsynced {
            return None;
        }
        let section = slot / self.slots;
        if self.sv.values.contains_key(&section) {
            return None;
        }
        if !self.sv.banks.contains(&Some(section)) {
            return Some(format!(
                "its slot {slot} is in value section {section}, which neither exists ({}) nor \
                 is in the buffer",
                values_name(section)
            ));
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

    /// Reads the bytes of `slot` into `self.value`, from where a get reads them: its `.v` file
    /// when it exists (and is sound), else the bank that holds its section (zeros past the
    /// buffer's end, as open extends it). Returns the file and offset read, `None` when nothing
    /// could be read.
    fn read_value(&mut self, slot: u32, p: &mut Problems) -> Option<(PathBuf, u64)> {
        let (section, index) = (slot / self.slots, u64::from(slot % self.slots));
        let index = index * SLOT_SIZE as u64;
        let (path, off) = match self.sv.values.get(&section) {
            Some(true) => (
                self.sv.dir.join(values_name(section)),
                VALUES_DATA_AT as u64 + index,
            ),
            Some(false) => return None,
            None => {
                let bank = self.sv.banks.iter().position(|&b| b == Some(section))?;
                let at = bank_at(self.slots, bank) + PAGE;
                (self.sv.buffer.clone()?, at as u64 + index)
            }
        };
        if self.cur.as_ref().is_none_or(|(p, _)| *p != path) {
            self.cur = None;
            match File::open(&path) {
                Ok(f) => self.cur = Some((path.clone(), f)),
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

    /// Ends the walk: the log's end against the sync mark, the torn tail, the banks and the
    /// sections of live values (`open::settle_banks`), the live values, counts.
    fn finish(&mut self, complete: bool, p: &mut Problems) {
        self.flush_run(p);
        let s = u64::from(self.slots);
        let sv = self.sv;
        let end = self
            .end
            .as_ref()
            .map_or(self.first + sv.log.len() as u64 * s, |e| e.0);
        if complete && self.end.is_none() && end < self.synced {
            let what = format!(
                "key records up to {} were synced but the key log ends at {end}: this key \
                 section is missing",
                self.synced
            );
            p.error(K::Missing, &sv.dir.join(name_of(end / s)), 0, what);
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
        let keep = ((end - self.first.min(end)) / s + 1) as usize;
        for kf in sv.log.iter().skip(keep) {
            let what = "key section past the end of the log (unsynced); open removes it";
            p.warn(K::TornTail, &kf.path, 0, what);
        }
        let mut per: BTreeMap<u32, u32> = BTreeMap::new();
        for l in self.live.values() {
            *per.entry(l.slot / self.slots).or_default() += 1;
        }
        for (bank, t) in sv.banks.iter().enumerate() {
            let Some(t) = *t else { continue };
            let live = per.get(&t).copied().unwrap_or(0);
            if sv.values.contains_key(&t) || self.last.map(|l| l.0) == Some(t) || live == 0 {
                continue;
            }
            let what = format!(
                "bank {bank} holds value section {t} with {live} live values, but {} does not \
                 exist (its write-out was interrupted); open writes it out",
                values_name(t)
            );
            let (at, path) = (bank_at(self.slots, bank) as u64, sv.dir.join(BUFFER_NAME));
            p.warn(K::Missing, &path, at, what);
        }
        for (&n, &live) in &per {
            if !sv.values.contains_key(&n) && !sv.banks.contains(&Some(n)) {
                let what = format!("value section is missing but {live} live keys point into it");
                p.error(K::Missing, &sv.dir.join(values_name(n)), 0, what);
            }
        }
        if self.mode.values {
            self.check_values(p);
        }
        let c = &mut self.c;
        c.records = end.saturating_sub(self.first);
        c.live_keys = self.live.len() as u64;
        c.dead_records = c.records.saturating_sub(c.live_keys);
        let synced = self.synced.clamp(self.first, end.max(self.first));
        c.synced = synced - self.first;
        c.unsynced = end.saturating_sub(synced);
    }

    /// Reads every live value and checks it against its record.
    fn check_values(&mut self, p: &mut Problems) {
        let mut live: Vec<(Key, Live)> = self.live.iter().map(|(k, l)| (*k, *l)).collect();
        live.sort_unstable_by_key(|l| l.1.seq);
        for (key, l) in live {
            let Some((path, off)) = self.read_value(l.slot, p) else {
                continue;
            };
            let got = value_crc(&self.value[..usize::from(l.len).min(SLOT_SIZE)]);
            self.c.values_checked += 1;
            if got != l.crc {
                let what = format!(
                    "the value of key record {} (key {:016x}) has checksum {got:08x}, the record \
                     says {:08x}; a get of this key fails",
                    l.seq,
                    key.as_u64(),
                    l.crc
                );
                p.error(K::Value, &path, off, what);
            }
        }
    }
}

/// The reason a record does not decode.
fn reason(e: &RecordError) -> String {
    match e {
        RecordError::Empty => NEVER_WRITTEN.to_string(),
        RecordError::Bad(why) => why.clone(),
    }
}

/// File name of key section `n` (past `u32` it cannot exist).
fn name_of(n: u64) -> String {
    u32::try_from(n).map_or_else(|_| format!("{n:x}.k"), keys_name)
}
