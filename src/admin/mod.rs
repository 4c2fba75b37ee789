//! Offline administration of a data directory: [`check`], [`dump`] and [`stats`], the library
//! side of the `toykv` command-line tool.
//!
//! All three are read-only and work on a directory no server has open: they take the
//! directory lock (refusing with [`Error::Locked`] while a store holds it) and never call
//! [`Store::open`](crate::Store::open), which repairs a torn tail. Instead they repeat, read-only
//! and with plain buffered reads, what open checks:
//!
//! 1. every file name (`*.tmp` leftovers and foreign names are warnings: open removes or
//!    ignores them);
//! 2. the write buffer: its length, its header, both sync marks, and the template header of
//!    the value section it fills;
//! 3. every value section's length and header (magic, version, checksum, section number,
//!    `section_slots` equal to the buffer's);
//! 4. every key section's length and header, and that they are numbered 0, 1, … without gaps;
//! 5. every key record in log order: it decodes ([`Record::decode`](crate::format::Record::decode):
//!    checksum, sequence number, kind), the slots of successive puts strictly increase, and each
//!    slot's value section exists or is the one the buffer fills;
//! 6. every put's value bytes against its `value_crc` (open checks only unsynced values in the
//!    buffer; a get checks the rest).
//!
//! A record that fails before the sync mark is **corruption** ([`Severity::Error`]): open would
//! refuse the store. The first failing record at or after the mark ends the log, and it and
//! every later record form the **torn tail** of unsynced writes that open drops
//! ([`Severity::Warning`], [`ProblemKind::TornTail`]). A damaged value is an error too, although
//! open succeeds: a get of that key fails. [`Report::opens`] says whether open would succeed.
//!
//! Since the store's own readers are private, the walk is reimplemented here on the public
//! [`format`](crate::format) API, mirroring `store/open.rs` and `store/recover.rs`; the unit
//! tests check that both agree on damaged stores.

mod show;
mod survey;
mod walk;

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use crate::format::{BUFFER_NAME, Entry, Header, Kind, Mark, parse_name};
use crate::io::{Os, Vfs};
use crate::server::keymode::KeyMode;

pub use show::{readable, show_key};

/// How serious a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Harmless or expected after a crash (a torn unsynced tail, a leftover temporary file);
    /// open repairs or ignores it.
    Warning,
    /// Corruption: open would refuse the store, or a get would fail.
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
    /// A header that does not decode or disagrees with the other files.
    Header,
    /// A copy of the sync mark that fails its checksum.
    SyncMark,
    /// A key record before the sync mark that fails its checks.
    Record,
    /// A value whose bytes do not match their record's `value_crc`.
    Value,
    /// Unsynced records that open drops.
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

/// Counts and sizes of a data directory, as the walk of [`check`] and [`stats`] found them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records per key section and slots per value section (0 when no header says).
    pub section_slots: u32,
    /// Entries in the directory, toykv files or not.
    pub files: u64,
    /// Their apparent size in bytes.
    pub bytes: u64,
    /// Bytes allocated to them on disk.
    pub allocated: u64,
    /// Key section files.
    pub key_sections: u64,
    /// Value section files.
    pub value_sections: u64,
    /// The value section the buffer fills (one past the last `.v` file).
    pub filling: u64,
    /// The newest valid sync mark (generation 0, synced 0 when none is valid).
    pub mark: Mark,
    /// Records in the log that open would keep.
    pub records: u64,
    /// Puts among them.
    pub puts: u64,
    /// Deletes among them.
    pub deletes: u64,
    /// Live keys.
    pub live_keys: u64,
    /// Records that no longer hold a live key: overwritten puts and deletes.
    pub dead_records: u64,
    /// Records of the log after the sync mark (kept, but not yet durable against power loss).
    pub unsynced: u64,
    /// Records before the sync mark that fail their checks (corruption).
    pub bad_records: u64,
    /// Written records after the end of the log, which open drops.
    pub dropped: u64,
    /// Value slots used (the next put's slot).
    pub slots_used: u64,
    /// Values read and checked against their checksum.
    pub values_checked: u64,
}

/// What [`check`] found: every problem, and the counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The data directory.
    pub dir: PathBuf,
    /// Every problem, in the order found (files, then the log).
    pub problems: Vec<Problem>,
    /// Counts of files and records.
    pub counts: Counts,
}

impl Report {
    /// Problems of severity [`Severity::Error`].
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Problems of severity [`Severity::Warning`].
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, s: Severity) -> usize {
        self.problems.iter().filter(|p| p.severity == s).count()
    }

    /// Whether no corruption was found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors() == 0
    }

    /// Whether [`Store::open`](crate::Store::open) would accept the store: no errors other than
    /// damaged values (which only make gets of their keys fail).
    pub fn opens(&self) -> bool {
        !self
            .problems
            .iter()
            .any(|p| p.severity == Severity::Error && p.kind != ProblemKind::Value)
    }
}

/// Checks the data directory `dir` without changing it; see the [module docs](self).
///
/// Fails only when the check cannot run: the directory cannot be listed, holds no toykv file,
/// or is locked by an open store ([`Error::Locked`]). Everything wrong with the files is in the
/// [`Report`].
pub fn check(dir: impl AsRef<Path>) -> Result<Report> {
    run(dir.as_ref(), true, &mut |_| Ok(()))
}

/// Counts and sizes of the data directory `dir`, without changing it. Like [`check`] but
/// without reading the values.
pub fn stats(dir: impl AsRef<Path>) -> Result<Counts> {
    run(dir.as_ref(), false, &mut |_| Ok(())).map(|r| r.counts)
}

/// Writes every written key record of `dir`, in log order, one line each, to `out`; read-only.
///
/// A line holds the sequence number, `put` or `del`, the key in hex and as the directory's
/// [`KeyMode`] shows it (bytes when none is recorded), and for a put the slot, length and a
/// preview of the value (quoted text if printable, else `0x` hex; `…` when cut). Records that are
/// not part of the log as open would keep it are flagged at the end of their line:
/// `[unsynced]` (kept, after the sync mark), `[value checksum mismatch]`,
/// `[corrupt: …]` (synced but failing) and `[dropped at open: …]` (the torn tail). A record
/// that does not decode is shown as `bad` with its file, offset and reason. Key sections after
/// a missing one are not part of the log and are not shown ([`check`] reports the gap).
pub fn dump(dir: impl AsRef<Path>, out: &mut impl Write) -> Result<()> {
    let dir = dir.as_ref();
    let mode = KeyMode::recorded(dir).ok().flatten().unwrap_or_default();
    let mut visit = |seen: &walk::Seen<'_>| show::dump_line(out, mode, seen);
    run(dir, true, &mut visit).map(|_| ())
}

/// The `section_slots` recorded in the write buffer's header of `dir`, if it decodes; for
/// opening an existing store with matching [`Options`](crate::Options).
pub fn section_slots(dir: impl AsRef<Path>) -> Option<u32> {
    let path = dir.as_ref().join(BUFFER_NAME);
    let head = survey::read_at_most(&path, 0, crate::format::HEADER_LEN).ok()?;
    Header::decode(&head, Kind::Buffer)
        .ok()
        .map(|h| h.section_slots)
}

/// Locks `dir`, surveys its files and walks its log, calling `visit` for every written record.
fn run(
    dir: &Path,
    values: bool,
    visit: &mut dyn FnMut(&walk::Seen<'_>) -> io::Result<()>,
) -> Result<Report> {
    let names = Os.list(dir).ctx("list", dir)?;
    let ours = names.iter().any(|n| {
        matches!(
            parse_name(n),
            Entry::Keys(_) | Entry::Values(_) | Entry::Buffer | Entry::Lock
        )
    });
    if !ours {
        return Err(Error::io(
            "check",
            dir,
            io::Error::new(
                io::ErrorKind::NotFound,
                "not a toykv data directory (no buffer.b, key or value section)",
            ),
        ));
    }
    let _lock = Os.lock(dir).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::Locked {
            dir: dir.to_path_buf(),
        },
        _ => Error::io("lock", dir, e),
    })?;
    let mut problems = Problems::default();
    let survey = survey::survey(dir, &mut problems)?;
    let mut counts = survey.counts();
    walk::walk(&survey, values, &mut problems, &mut counts, visit)
        .map_err(|e| Error::io("write", "output", e))?;
    Ok(Report {
        dir: dir.to_path_buf(),
        problems: problems.finish(),
        counts,
    })
}

/// Most problems shown for one file; the rest are counted in one summary line.
const PER_FILE: usize = 50;

/// Collects problems, capping how many are listed per file.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
    per_file: std::collections::HashMap<PathBuf, Tally>,
}

/// Problems of one file: how many were pushed, how many left off, the first left off, and the
/// worst left off (an error that stops open over a damaged value over a warning).
#[derive(Debug, Default)]
struct Tally {
    pushed: usize,
    cut: usize,
    first_cut: u64,
    worst: Option<(Severity, bool, ProblemKind)>,
}

impl Problems {
    /// Adds a problem.
    pub(crate) fn push(
        &mut self,
        severity: Severity,
        kind: ProblemKind,
        file: &Path,
        offset: u64,
        what: impl Into<String>,
    ) {
        let t = self.per_file.entry(file.to_path_buf()).or_default();
        t.pushed += 1;
        if t.pushed > PER_FILE {
            if t.cut == 0 {
                t.first_cut = offset;
            }
            t.cut += 1;
            let rank = (severity, kind != ProblemKind::Value, kind);
            if t.worst.is_none_or(|(s, v, _)| (s, v) < (rank.0, rank.1)) {
                t.worst = Some(rank);
            }
            return;
        }
        self.list.push(Problem {
            severity,
            kind,
            file: file.to_path_buf(),
            offset,
            what: what.into(),
        });
    }

    /// Adds an error.
    pub(crate) fn error(
        &mut self,
        kind: ProblemKind,
        file: &Path,
        offset: u64,
        what: impl Into<String>,
    ) {
        self.push(Severity::Error, kind, file, offset, what);
    }

    /// Adds a warning.
    pub(crate) fn warn(
        &mut self,
        kind: ProblemKind,
        file: &Path,
        offset: u64,
        what: impl Into<String>,
    ) {
        self.push(Severity::Warning, kind, file, offset, what);
    }

    /// The list, with one line per file whose problems were cut.
    fn finish(mut self) -> Vec<Problem> {
        let mut cut: Vec<_> = self.per_file.into_iter().collect();
        cut.sort_by(|a, b| a.0.cmp(&b.0));
        for (file, t) in cut {
            if let Some((severity, _, kind)) = t.worst {
                self.list.push(Problem {
                    severity,
                    kind,
                    file,
                    offset: t.first_cut,
                    what: format!(
                        "and {} more problems in this file from here on, not listed",
                        t.cut
                    ),
                });
            }
        }
        self.list
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let name = self.file.file_name().map_or_else(
            || self.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        write!(f, "{sev}: {name} at offset {}: {}", self.offset, self.what)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(f, "checked {}", self.dir.display())?;
        writeln!(
            f,
            "  {} key sections, {} value sections, section_slots {}, buffer fills section {}",
            c.key_sections, c.value_sections, c.section_slots, c.filling
        )?;
        let mut log = format!(
            "  {} records ({} puts, {} deletes",
            c.records, c.puts, c.deletes
        );
        if c.bad_records > 0 {
            log += &format!(", {} corrupt", c.bad_records);
        }
        log += &format!(
            "), {} live keys; sync mark at {} (generation {})",
            c.live_keys, c.mark.synced, c.mark.generation
        );
        if c.unsynced > 0 {
            log += &format!(", {} unsynced records kept", c.unsynced);
        }
        if c.dropped > 0 {
            log += &format!(", {} dropped at open", c.dropped);
        }
        writeln!(f, "{log}; {} values checked", c.values_checked)?;
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        let (e, w) = (self.errors(), self.warnings());
        let verdict = if e > 0 && self.opens() {
            "CORRUPT: open succeeds but gets of damaged values fail"
        } else if e > 0 {
            "CORRUPT: open would refuse this store"
        } else if c.dropped > 0 || w > 0 {
            "ok: open repairs the warnings"
        } else {
            "ok"
        };
        write!(
            f,
            "{e} error{}, {w} warning{}: {verdict}",
            plural(e),
            plural(w)
        )
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [(&str, String); 17] = [
            ("files", self.files.to_string()),
            ("bytes", self.bytes.to_string()),
            ("allocated bytes", self.allocated.to_string()),
            ("section_slots", self.section_slots.to_string()),
            ("key sections", self.key_sections.to_string()),
            ("value sections", self.value_sections.to_string()),
            ("buffer fills section", self.filling.to_string()),
            ("slots used", self.slots_used.to_string()),
            ("records", self.records.to_string()),
            ("puts", self.puts.to_string()),
            ("deletes", self.deletes.to_string()),
            ("live keys", self.live_keys.to_string()),
            ("dead records", self.dead_records.to_string()),
            (
                "sync mark",
                format!(
                    "{} records (generation {})",
                    self.mark.synced, self.mark.generation
                ),
            ),
            ("unsynced records", self.unsynced.to_string()),
            ("corrupt records", self.bad_records.to_string()),
            ("dropped at open", self.dropped.to_string()),
        ];
        let mut first = true;
        for (name, value) in rows {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{name:<21} {value}")?;
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
