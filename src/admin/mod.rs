//! Offline administration of a data directory: [`check`], [`dump`] and [`stats`], the library
//! side of the `toykv` command-line tool.
//!
//! All three are read-only and work on a directory no server has open: they take the
//! directory lock (refusing with [`Error::Locked`] while a store holds it) and never call
//! [`Store::open`](crate::Store::open), which repairs a torn tail. Instead they repeat, read-only
//! and with plain buffered reads, what open checks:
//!
//! 1. the `STORE` file (its header names the shard count and section size; a directory with a
//!    `buffer.b` at its top and no `STORE` is format version 1, which open refuses), the names
//!    at the top (a leftover `journal.tmp` is a warning: open removes it), and that every shard
//!    directory exists (open would create a missing one empty);
//! 2. in each shard directory: every file name (`*.tmp` leftovers and foreign names are
//!    warnings: open removes or ignores them); the write buffer: its length, its header, both
//!    sync marks and the header pages of its two banks; every value section's length and
//!    header; every key section's length and header, from the first one the sync mark keeps
//!    (older ones are warnings: open removes them), numbered without gaps;
//! 3. every key record of each shard in log order: it decodes
//!    ([`Record::decode`](crate::format::Record::decode): checksum, sequence number, kind); at or
//!    after the sync mark, a put's value section must exist or be held by a bank, and a value
//!    in a bank must match its `value_crc`;
//! 4. after the walk, every live value's section must exist (as a `.v` file or in a bank), and
//!    every live value's bytes must match its `value_crc` (open checks only unsynced values in
//!    the buffer; a get checks the rest);
//! 5. the `journal` at the top, if any (`store/replay.rs`, see
//!    [`format::journal`](crate::format::journal)): its current header (the valid slot with the
//!    higher epoch; no valid slot, or a file shorter than its two slots, is an error), then the
//!    current epoch's frames from the first one up to the first block that is not the next
//!    frame, whose entries open replays into the shards ([`JournalReport`]). A frame that fails
//!    its checksum is a torn commit that open drops (a warning, [`ProblemKind::TornTail`]); a
//!    frame that passes it but whose entries do not decode is an error, since open refuses it,
//!    and so are frames to replay without a `STORE` file.
//!
//! A record that fails before the sync mark is **corruption** ([`Severity::Error`]): open would
//! refuse the store. The first failing record at or after the mark ends the log, and it and
//! every later record form the **torn tail** of unsynced writes that open drops
//! ([`Severity::Warning`], [`ProblemKind::TornTail`]). A damaged value is an error too, although
//! open succeeds: a get of that key fails; so is a lost shard directory, which open recreates
//! empty. [`Report::opens`] says whether open would succeed.
//!
//! Since the store's own readers are private and open files for writing, the walk is
//! reimplemented here on the public [`format`](crate::format) API, mirroring `store/open.rs`,
//! `store/recover.rs` and `store/replay.rs`; the unit tests check that both agree on damaged
//! stores.

mod journal;
mod show;
mod survey;
mod walk;

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod journal_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use crate::format::{
    BANKS, BUFFER_NAME, Entry, HEADER_LEN, Header, Kind, Mark, STORE_NAME, parse_name, shard_name,
};
use crate::io::{Os, Vfs};
use crate::keymode::{KEYMODE_FILE, KeyMode};

pub use journal::JournalReport;
pub use show::{readable, show_key};

use ProblemKind as K;
use show::Problems;
use survey::{ShardSurvey, Tally, is_ours, parse_shard, read_at_most, store_header, survey_shard};

/// How serious a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Harmless or expected after a crash (a torn unsynced tail, a leftover temporary file);
    /// open repairs or ignores it.
    Warning,
    /// Corruption: open would refuse the store, a get would fail, or keys are lost.
    Error,
}

/// What a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A file name that is not a toykv file, or a leftover temporary file.
    Name,
    /// A file that should exist does not.
    Missing,
    /// A file of the wrong length.
    Length,
    /// A header that does not decode or disagrees with the other files (or a journal header
    /// slot).
    Header,
    /// A copy of the sync mark that fails its checksum.
    SyncMark,
    /// A key record before the sync mark that fails its checks, or the entries of a journal
    /// frame that passes its checksum.
    Record,
    /// A value whose bytes do not match their record's `value_crc`.
    Value,
    /// A shard directory named by `STORE` is gone: open refuses the store.
    LostShard,
    /// Unsynced records that open drops, or a torn journal frame.
    TornTail,
    /// A file that could not be read.
    Io,
}

/// One problem found by [`check`], with the file and byte offset it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// How serious it is.
    pub severity: Severity,
    /// What it is about.
    pub kind: ProblemKind,
    /// The file concerned.
    pub file: PathBuf,
    /// Byte offset in that file.
    pub offset: u64,
    /// What is wrong there.
    pub what: String,
}

/// Counts and sizes of a shard, or of the whole data directory, as the walk found them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records per key section and slots per value section (0 when no header says).
    pub section_slots: u32,
    /// Shard directories walked.
    pub shards: u64,
    /// Files, toykv files or not (the top directory's and the shards').
    pub files: u64,
    /// Their apparent size in bytes.
    pub bytes: u64,
    /// Bytes allocated to them on disk.
    pub allocated: u64,
    /// Key section files.
    pub key_sections: u64,
    /// Value section files.
    pub value_sections: u64,
    /// Records in the logs that open would keep.
    pub records: u64,
    /// Puts among them.
    pub puts: u64,
    /// Deletes among them.
    pub deletes: u64,
    /// Live keys (as many live values).
    pub live_keys: u64,
    /// Records that no longer hold a live key: overwritten puts and deletes.
    pub dead_records: u64,
    /// Records of the logs before the sync marks (durable against power loss).
    pub synced: u64,
    /// Records of the logs after the sync marks (kept, but not yet durable against power loss).
    pub unsynced: u64,
    /// Records before the sync marks that fail their checks (corruption).
    pub bad_records: u64,
    /// Written records after the end of the logs, which open drops.
    pub dropped: u64,
    /// Live values read and checked against their checksum.
    pub values_checked: u64,
}

impl Counts {
    /// Adds the counts of a shard (not the section size).
    fn add(&mut self, o: &Counts) {
        self.shards += o.shards;
        self.files += o.files;
        self.bytes += o.bytes;
        self.allocated += o.allocated;
        self.key_sections += o.key_sections;
        self.value_sections += o.value_sections;
        self.records += o.records;
        self.puts += o.puts;
        self.deletes += o.deletes;
        self.live_keys += o.live_keys;
        self.dead_records += o.dead_records;
        self.synced += o.synced;
        self.unsynced += o.unsynced;
        self.bad_records += o.bad_records;
        self.dropped += o.dropped;
        self.values_checked += o.values_checked;
    }
}

/// What the walk found in one shard directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardReport {
    /// The shard directory.
    pub dir: PathBuf,
    /// Its name, `shard-xx`.
    pub name: String,
    /// The newest valid sync mark (all zero when none is valid).
    pub mark: Mark,
    /// The value section each bank of the buffer holds, by its header page.
    pub banks: [Option<u32>; BANKS],
    /// The shard's counts.
    pub counts: Counts,
}

/// What [`check`] found: every problem, and the counts per shard and in total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The data directory.
    pub dir: PathBuf,
    /// Every problem, in the order found (the top directory, each shard's files and log, the journal).
    pub problems: Vec<Problem>,
    /// The totals over the shards (and the files at the top).
    pub counts: Counts,
    /// Each shard directory that exists, in order.
    pub shards: Vec<ShardReport>,
    /// The journal, if the directory has one: what open would replay.
    pub journal: Option<JournalReport>,
}

/// What [`stats`] found: the totals, and each shard's counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The totals over the shards (and the files at the top).
    pub counts: Counts,
    /// Each shard directory that exists, in order.
    pub shards: Vec<ShardReport>,
    /// The journal, if the directory has one: what open would replay.
    pub journal: Option<JournalReport>,
}

/// Checks the data directory `dir` without changing it; see the [module docs](self).
///
/// Fails only when the check cannot run: the directory cannot be listed, holds no toykv file,
/// or is locked by an open store ([`Error::Locked`]). Everything wrong with the files is in the
/// [`Report`].
pub fn check(dir: impl AsRef<Path>) -> Result<Report> {
    run(dir.as_ref(), Run::Check)
}

/// Counts and sizes of the data directory `dir`, in total and per shard, without changing it.
/// Like [`check`] but without reading the values.
pub fn stats(dir: impl AsRef<Path>) -> Result<Summary> {
    let r = run(dir.as_ref(), Run::Stats)?;
    Ok(Summary {
        counts: r.counts,
        shards: r.shards,
        journal: r.journal,
    })
}

/// Writes every written key record of `dir`, shard by shard in log order, one line each, to
/// `out`; read-only.
///
/// A line holds the shard, the sequence number, `put` or `del`, the key in hex and as the
/// directory's [`KeyMode`] shows it (bytes when none is recorded), and for a put the slot,
/// length and a preview of the value (quoted text if printable, else `0x` hex; `…` when cut;
/// `(gone)` when the slot no longer holds it: garbage collection moved it and reused the
/// slot). Records that are not part of the log as open would keep it are flagged at the end of
/// their line: `[unsynced]` (kept, after the sync mark), `[value checksum mismatch]` (a live
/// value), `[corrupt: …]` (synced but failing) and `[dropped at open: …]` (the torn tail). A
/// record that does not decode is shown as `bad` with its file, offset and reason.
/// Entries of the journal, which open replays into the shards, are not listed: [`check`] and
/// [`stats`] count them.
pub fn dump(dir: impl AsRef<Path>, out: &mut impl Write) -> Result<()> {
    let dir = dir.as_ref();
    let mode = KeyMode::recorded(dir).ok().flatten().unwrap_or_default();
    let mut visit = |seen: &walk::Seen<'_>| show::dump_line(out, mode, seen);
    run(dir, Run::Dump(&mut visit)).map(|_| ())
}

/// The store header of `dir` (its `STORE` file), if it decodes.
fn store_file(dir: &Path) -> Option<Header> {
    let head = read_at_most(&dir.join(STORE_NAME), 0, HEADER_LEN).ok()?;
    Header::decode(&head, Kind::Store).ok()
}

/// The `section_slots` recorded in the `STORE` file of `dir`, if it decodes; for opening an
/// existing store with matching [`Options`](crate::Options).
pub fn section_slots(dir: impl AsRef<Path>) -> Option<u32> {
    store_file(dir.as_ref()).map(|h| h.section_slots)
}

/// The shard count recorded in the `STORE` file of `dir`, if it decodes.
pub fn shards(dir: impl AsRef<Path>) -> Option<u32> {
    store_file(dir.as_ref()).map(|h| h.section)
}

/// What [`run`] does.
enum Run<'a> {
    Check,
    Stats,
    Dump(&'a mut dyn FnMut(&walk::Seen<'_>) -> io::Result<()>),
}

/// Locks `dir`, surveys its files and walks each shard's log.
fn run(dir: &Path, how: Run<'_>) -> Result<Report> {
    let names = Os.list(dir).ctx("list", dir)?;
    if !is_ours(&names) {
        return Err(Error::io(
            "check",
            dir,
            io::Error::new(
                io::ErrorKind::NotFound,
                "not a toykv data directory (no STORE, shard directory or LOCK)",
            ),
        ));
    }
    let _lock = Os.lock(dir).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::Locked {
            dir: dir.to_path_buf(),
        },
        _ => Error::io("lock", dir, e),
    })?;
    let mut p = Problems::default();
    let sv = survey(dir, &names, &mut p);
    let mut counts = Counts {
        section_slots: sv.slots.unwrap_or(0),
        files: sv.top.files,
        bytes: sv.top.bytes,
        allocated: sv.top.allocated,
        ..Counts::default()
    };
    let mut how = how;
    let mut shards = Vec::with_capacity(sv.present.len());
    for shard in &sv.present {
        let walked = match &mut how {
            Run::Check => walk::walk(shard, check_values(), &mut p, &mut |_| Ok(())),
            Run::Stats => walk::walk(shard, Default::default(), &mut p, &mut |_| Ok(())),
            Run::Dump(visit) => {
                let first = walk::walk(
                    shard,
                    Default::default(),
                    &mut Problems::default(),
                    &mut |_| Ok(()),
                );
                let live = first.map(|w| w.1).unwrap_or_default();
                let mode = walk::Mode {
                    values: false,
                    live: Some(&live),
                };
                walk::walk(shard, mode, &mut p, *visit)
            }
        }
        .map_err(|e| Error::io("write", "output", e))?;
        let mut c = walked.0;
        c.section_slots = shard.slots.unwrap_or(0);
        c.shards = 1;
        c.files = shard.tally.files;
        c.bytes = shard.tally.bytes;
        c.allocated = shard.tally.allocated;
        c.key_sections = shard.key_files;
        c.value_sections = shard.values.len() as u64;
        counts.add(&c);
        shards.push(ShardReport {
            dir: shard.dir.clone(),
            name: shard.name.clone(),
            mark: shard.mark,
            banks: shard.banks,
            counts: c,
        });
    }
    for path in &sv.missing {
        let what = "shard directory is missing: open refuses the store, since the keys it held \
                    would be lost";
        p.error(ProblemKind::LostShard, path, 0, what);
    }
    let journal = journal::read(dir, &names, &mut p);
    Ok(Report {
        dir: dir.to_path_buf(),
        problems: p.finish(),
        counts,
        shards,
        journal,
    })
}

/// The walk of `check`: values read.
fn check_values() -> walk::Mode<'static> {
    walk::Mode {
        values: true,
        live: None,
    }
}

/// What the survey of the whole directory found.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// Records per key section, from `STORE`, else from the shards' headers.
    pub(crate) slots: Option<u32>,
    /// The shard count, from `STORE`, else guessed from the shard directories.
    pub(crate) shards: u32,
    /// The shards present, in order.
    pub(crate) present: Vec<ShardSurvey>,
    /// Shard directories `STORE` names that do not exist (open creates them empty).
    pub(crate) missing: Vec<PathBuf>,
    /// Files at the top of the directory.
    pub(crate) top: Tally,
}

/// Surveys `dir` and every shard, reporting into `p`.
pub(crate) fn survey(dir: &Path, names: &[String], p: &mut Problems) -> Survey {
    let mut s = Survey::default();
    let mut names = names.to_vec();
    names.sort();
    let (mut has_store, mut v1, mut dirs) = (false, Vec::new(), BTreeMap::new());
    for name in &names {
        let path = dir.join(name);
        if let Some(i) = parse_shard(name)
            && path.is_dir()
        {
            dirs.insert(i, path);
            continue;
        }
        s.top.add(&path, p);
        match parse_name(name) {
            _ if name == STORE_NAME => has_store = true,
            _ if journal::top_name(name, &path, p) => {}
            Entry::Lock => {}
            Entry::Keys(_) | Entry::Values(_) | Entry::Buffer => v1.push(path),
            Entry::Other if name == KEYMODE_FILE => {
                if let Err(e) = KeyMode::recorded(dir) {
                    let what = format!("the recorded key mode is unreadable: {e}");
                    p.warn(K::Name, &path, 0, what);
                }
            }
            Entry::Tmp => p.warn(
                K::Name,
                &path,
                0,
                "a leftover temporary file; open ignores it",
            ),
            Entry::Other => p.warn(K::Name, &path, 0, "not a toykv file name; open ignores it"),
        }
    }
    let store = dir.join(STORE_NAME);
    let header = if has_store {
        store_header(&store, p)
    } else {
        None
    };
    if !has_store {
        let buffer = dir.join(BUFFER_NAME);
        if v1.contains(&buffer) || (!v1.is_empty() && dirs.is_empty()) {
            let at = if v1.contains(&buffer) {
                buffer
            } else {
                v1[0].clone()
            };
            let what = "format version 1: a flat data directory written by an older build (its \
                        sections at the top, no STORE file, no shard directories); this build \
                        reads version 2 only, so open refuses it";
            p.error(K::Header, &at, 0, what);
            return s;
        }
        if dirs.is_empty() {
            let what = "no store file: open creates a new store here";
            p.warn(K::Missing, &store, 0, what);
            return s;
        }
        let what = "the store file is missing but shard directories exist: the shard count and \
                    section size are unknown (open would write a new store file from its options, \
                    which may not match the shards)";
        p.error(K::Missing, &store, 0, what);
    }
    for path in &v1 {
        let what = "a version 1 file at the top of a version 2 store; open ignores it";
        p.warn(K::Name, path, 0, what);
    }
    s.slots = header.map(|h| h.section_slots);
    s.shards = match header {
        Some(h) => h.section,
        None => dirs.keys().next_back().map_or(0, |&i| i + 1),
    };
    for (&i, path) in &dirs {
        if i >= s.shards {
            let what = format!(
                "not one of the store's {} shards; open ignores it",
                s.shards
            );
            p.warn(K::Name, path, 0, what);
        }
    }
    for i in 0..s.shards {
        let name = shard_name(i);
        let path = dir.join(&name);
        if !dirs.contains_key(&i) {
            if path.exists() {
                p.error(K::Io, &path, 0, "a shard's name, but not a directory");
            } else {
                s.missing.push(path);
            }
            continue;
        }
        let shard = survey_shard(&path, name, s.slots, p);
        if s.slots.is_none() {
            s.slots = shard.slots;
        }
        s.present.push(shard);
    }
    s
}
