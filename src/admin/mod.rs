//! Offline administration of a data directory: [`check`], [`dump`] and [`stats`], the library
//! side of the `toykv` command-line tool.
//!
//! All three are read-only and work on a directory no server has open: they take the
//! directory lock (refusing with [`Error::Locked`] while a store holds it). They run **the code
//! open runs**: the store is opened through a copy-on-write [`Overlay`](crate::io::Overlay) of
//! its files with the normal recovery (`store/check.rs`), so recovery happens for real while
//! nothing on disk changes. What it finds becomes the report:
//!
//! - each error open would stop at is an error ([`Severity::Error`]). Instead of stopping at
//!   the first, every shard is opened (one shard's failure does not hide another's) and the
//!   journal is read; a shard's log walk goes on past damaged synced records, reporting each;
//!   otherwise a shard's first refusal is reported, as open reports it;
//! - each change recovery makes is a warning ([`Severity::Warning`]): open repairs it (a torn
//!   unsynced tail zeroed and its later key sections removed, leftover `*.tmp` files or key
//!   sections older than the sync mark removed, an interrupted write-out redone, a short
//!   file extended; and a torn last journal frame dropped);
//! - once open, every record of the recovered logs is read back and every live key's value is
//!   read with the get path: a value that fails its checksum is an error
//!   ([`ProblemKind::Value`]) although open succeeds, since a get of that key fails.
//!
//! [`Report::opens`] says whether open would succeed. [`dump`] lists the recovered logs and
//! [`stats`] counts them, both from the same run (without reading values for `stats`).

mod findings;
mod show;

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod journal_tests;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use crate::format::{BANKS, Entry, Mark, STORE_NAME, parse_name};
use crate::io::{Os, Vfs};
use crate::keymode::KeyMode;
use crate::store::check::{self as run, Values};

pub use show::{readable, show_key};

/// What the journal at the top of a data directory holds, as open reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalReport {
    /// The journal file.
    pub file: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// The current header's epoch.
    pub epoch: u64,
    /// Frames of the current epoch that open replays (one commit may take several).
    pub frames: u64,
    /// Entries in those frames: the puts and deletes open replays into the shards.
    pub entries: u64,
    /// Puts among them.
    pub puts: u64,
    /// Deletes among them.
    pub deletes: u64,
    /// Whether a torn frame (a commit cut by power loss, never acknowledged) ends the journal:
    /// open drops it.
    pub torn: bool,
}

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
    /// A leftover file open removes (a temporary file, a key section older than the log).
    Name,
    /// A file that should exist does not.
    Missing,
    /// A file of the wrong length.
    Length,
    /// A header that does not decode or disagrees with the other files (or the journal's).
    Header,
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

/// Counts and sizes of a shard, or of the whole data directory, as recovery found them.
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
    /// Records of the logs as open recovers them (the journal's replay included).
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
    /// Records after the sync marks on disk (kept, or replayed from the journal).
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
        macro_rules! add { ($($f:ident)*) => { $(self.$f += o.$f;)* } }
        add!(shards files bytes allocated key_sections value_sections records puts deletes
             live_keys dead_records synced unsynced bad_records dropped values_checked);
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
    /// Whether open accepts it (else the report says why; the counts cover what recovery read).
    pub opened: bool,
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
    /// The journal, if open reads one: what it replays.
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
    report(dir.as_ref(), Values::Live, &mut |_| Ok(()))
}

/// Counts and sizes of the data directory `dir`, in total and per shard, without changing it.
/// Like [`check`] but without reading the values.
pub fn stats(dir: impl AsRef<Path>) -> Result<Summary> {
    let Report {
        counts,
        shards,
        journal,
        ..
    } = report(dir.as_ref(), Values::Skip, &mut |_| Ok(()))?;
    Ok(Summary {
        counts,
        shards,
        journal,
    })
}

/// Writes every key record of `dir` as open recovers it, shard by shard in log order, one line
/// each, to `out`; read-only.
///
/// A line holds the shard, the sequence number, `put` or `del`, the key in hex and as the
/// directory's [`KeyMode`] shows it (bytes when none is recorded), and for a put the slot,
/// length and a preview of the value (quoted text if printable, else `0x` hex; `…` when cut;
/// `(gone)` when the slot no longer holds it: garbage collection moved it and reused the
/// slot). Flags end a line: `[unsynced]` (after the sync mark on disk), `[replayed]` (written
/// by the journal's replay at open) and `[value checksum mismatch]` (a live value a get
/// refuses). The torn tail open drops and damaged synced records are not listed; each reason
/// open refuses a shard for is, as a line `shard-xx refused at open: …` after the others.
pub fn dump(dir: impl AsRef<Path>, out: &mut impl Write) -> Result<()> {
    let dir = dir.as_ref();
    let mode = KeyMode::recorded(dir).ok().flatten().unwrap_or_default();
    let r = report(dir, Values::All, &mut |seen| {
        show::dump_line(out, mode, seen)
    })?;
    let refused = r.problems.iter().filter(|p| p.severity == Severity::Error);
    for p in refused.filter(|p| p.kind != ProblemKind::Value) {
        let refuses = |s: &&ShardReport| !s.opened && p.file.starts_with(&s.dir);
        if let Some(s) = r.shards.iter().find(refuses) {
            let (file, at, what) = (show::short(&p.file), p.offset, &p.what);
            let line = format!("{} refused at open: {file} at offset {at}: {what}", s.name);
            writeln!(out, "{line}").map_err(|e| Error::io("write", "output", e))?;
        }
    }
    Ok(())
}

/// The `section_slots` recorded in the `STORE` file of `dir`, if it decodes; for opening an
/// existing store with matching [`Options`](crate::Options).
pub fn section_slots(dir: impl AsRef<Path>) -> Option<u32> {
    run::store_header(&Os, dir.as_ref()).map(|h| h.section_slots)
}

/// The shard count recorded in the `STORE` file of `dir`, if it decodes.
pub fn shards(dir: impl AsRef<Path>) -> Option<u32> {
    run::store_header(&Os, dir.as_ref()).map(|h| h.section)
}

/// Runs the store's check of `dir` and turns what it found into a [`Report`].
fn report(
    dir: &Path,
    values: Values,
    visit: &mut dyn FnMut(&run::Seen<'_>) -> io::Result<()>,
) -> Result<Report> {
    let names = Os.list(dir).ctx("list", dir)?;
    let ours = |n: &String| !matches!(parse_name(n), Entry::Tmp | Entry::Other);
    if !names
        .iter()
        .any(|n| n == STORE_NAME || show::is_shard(n) || ours(n))
    {
        let why = "not a toykv data directory (no STORE, shard directory or LOCK)";
        return Err(Error::io(
            "check",
            dir,
            io::Error::new(io::ErrorKind::NotFound, why),
        ));
    }
    let c = run::check(dir, values, visit)?;
    let problems = findings::list(dir, &c);
    let top = tally(dir, false);
    let mut counts = Counts {
        section_slots: c.slots,
        files: top.0,
        bytes: top.1,
        allocated: top.2,
        ..Counts::default()
    };
    let mut shards = Vec::new();
    for s in &c.shards {
        let (files, bytes, allocated) = tally(&s.dir, true);
        let bad = problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Record && p.file.parent() == Some(&s.dir))
            .count() as u64;
        let n = Counts {
            section_slots: c.slots,
            shards: 1,
            files,
            bytes,
            allocated,
            key_sections: s.log.key_sections,
            value_sections: s.log.value_sections,
            records: s.log.records,
            puts: s.log.puts,
            deletes: s.log.deletes,
            live_keys: s.log.live,
            dead_records: s.log.records - s.log.live,
            synced: s.log.synced,
            unsynced: s.log.records - s.log.synced,
            bad_records: bad,
            dropped: s.dropped,
            values_checked: s.log.values_checked,
        };
        counts.add(&n);
        shards.push(ShardReport {
            dir: s.dir.clone(),
            name: crate::format::shard_name(s.id),
            mark: s.mark,
            banks: s.log.banks,
            opened: s.opened,
            counts: n,
        });
    }
    Ok(Report {
        dir: dir.to_path_buf(),
        problems,
        counts,
        shards,
        journal: c.journal.as_ref().map(|j| JournalReport {
            file: j.path.clone(),
            len: j.len,
            epoch: j.epoch,
            frames: j.frames,
            entries: j.puts + j.deletes,
            puts: j.puts,
            deletes: j.deletes,
            torn: j.torn.is_some(),
        }),
    })
}

/// Files in `dir` (not the shard directories, unless `all`): how many, their apparent and
/// allocated bytes.
fn tally(dir: &Path, all: bool) -> (u64, u64, u64) {
    let mut t = (0, 0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() && !all {
            continue;
        }
        t.0 += 1;
        t.1 += m.len();
        t.2 += m.blocks() * 512;
    }
    t
}
