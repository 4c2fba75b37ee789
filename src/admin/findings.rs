//! What the store's check found, as typed problems: each error open stops at, each change
//! recovery makes (a repair: a warning), each live value that fails its checksum.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::format::journal::JOURNAL_NAME;
use crate::format::{BUFFER_NAME, Entry, STORE_NAME, TMP_SUFFIX, parse_name};
use crate::io::Change;
use crate::store::check::Checked;

use super::{Problem, ProblemKind as K, Severity};

/// Most problems shown for one file; the rest are counted in one summary line.
pub(crate) const PER_FILE: usize = 50;

/// Every problem in `c`, in order: the errors open stops at, the repairs recovery makes, the
/// journal's torn tail, the damaged live values.
pub(crate) fn list(dir: &Path, c: &Checked) -> Vec<Problem> {
    let mut p = Problems::default();
    if c.fresh {
        let what = "no store file: open creates a new store here";
        p.push(
            Severity::Warning,
            K::Missing,
            &dir.join(STORE_NAME),
            0,
            what,
        );
    }
    for e in &c.errors {
        let (kind, file, offset, what) = from_error(e);
        p.push(Severity::Error, kind, &file, offset, what);
    }
    for change in &c.changes {
        if let Some((kind, file, offset, what)) = repair(c, change) {
            p.push(Severity::Warning, kind, &file, offset, what);
        }
    }
    if let Some(j) = &c.journal
        && let Some(torn) = &j.torn
    {
        let at = torn
            .split("at offset ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let what = format!("{torn}: open drops it (a commit never acknowledged)");
        p.push(Severity::Warning, K::TornTail, &j.path, at, what);
    }
    for e in &c.values {
        let (_, file, offset, what) = from_error(e);
        let what = format!("{what}: a get of this key fails");
        p.push(Severity::Error, K::Value, &file, offset, what);
    }
    p.finish()
}

/// An error open stops at: its kind, file, offset and message.
fn from_error(e: &Error) -> (K, PathBuf, u64, String) {
    match e {
        Error::Corrupt { file, offset, what } => {
            (kind_of(what), file.clone(), *offset, what.clone())
        }
        Error::Foreign { file, kind, got } => {
            let what = format!("not a toykv {kind} file (magic {got:02x?})");
            (K::Header, file.clone(), 0, what)
        }
        Error::Version {
            file,
            expected,
            got,
        } => {
            let what = format!("format version {got}; this build reads version {expected}");
            (K::Header, file.clone(), 0, what)
        }
        Error::Mismatch { dir, .. } => (K::Header, dir.clone(), 0, e.to_string()),
        Error::Io { path, .. } => (K::Io, path.clone(), 0, e.to_string()),
        e => (K::Io, PathBuf::new(), 0, e.to_string()),
    }
}

/// The kind of a corruption, from open's message.
fn kind_of(what: &str) -> K {
    let has = |s: &str| what.contains(s);
    if has("shard directory is missing") {
        K::LostShard
    } else if has("missing") || has("neither exists") || has("no key section is left") {
        K::Missing
    } else if has("shorter than")
        || has("longer than")
        || has("short of")
        || has(" bytes, expected")
    {
        K::Length
    } else if has("header") {
        K::Header
    } else {
        K::Record
    }
}

/// A change recovery makes, as a repair to report; `None` for the routine ones (rewriting
/// the sync mark, clearing a bank, the steps of a write-out reported by its rename).
fn repair(c: &Checked, change: &Change) -> Option<(K, PathBuf, u64, String)> {
    let name = |p: &Path| {
        let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
        n.unwrap_or_default()
    };
    let shard = |p: &Path| c.shards.iter().find(|s| p.parent() == Some(&s.dir));
    Some(match change {
        Change::Remove(path) => {
            let n = name(path);
            let first = shard(path).map_or(0, |s| s.mark.first);
            match parse_name(&n) {
                _ if n == format!("{JOURNAL_NAME}{TMP_SUFFIX}") => {
                    let what = "a leftover of an interrupted journal creation: open removes it";
                    (K::Name, path.clone(), 0, what.to_string())
                }
                Entry::Tmp => {
                    let what = "a leftover temporary file: open removes it";
                    (K::Name, path.clone(), 0, what.to_string())
                }
                Entry::Keys(k) if k < first => {
                    let what = format!(
                        "a key section before the sync mark's first ({first}), left by an \
                         interrupted garbage collection: open removes it"
                    );
                    (K::Name, path.clone(), 0, what)
                }
                Entry::Keys(_) => {
                    let what = "a key section after the end of the log, part of the torn \
                                unsynced tail: open removes it";
                    (K::TornTail, path.clone(), 0, what.to_string())
                }
                _ => (K::Name, path.clone(), 0, "open removes it".to_string()),
            }
        }
        Change::Write { path, off, .. } if matches!(parse_name(&name(path)), Entry::Keys(_)) => {
            let why = shard(path).and_then(|s| s.torn.clone());
            let why = why.unwrap_or_else(|| "records after a never-written one".to_string());
            let what = format!("torn unsynced tail, which open zeroes ({why})");
            (K::TornTail, path.clone(), *off, what)
        }
        Change::Rename { to, .. } if matches!(parse_name(&name(to)), Entry::Values(_)) => {
            let buffer = to.with_file_name(BUFFER_NAME);
            let what = format!(
                "{} was never written out (a write-out interrupted by a crash): open writes it \
                 out from the buffer",
                name(to)
            );
            (K::Missing, buffer, 0, what)
        }
        Change::SetLen { path, from, to } if *from < *to => {
            let what = format!("{from} bytes, short of {to}: open extends it with zeros");
            (K::Length, path.clone(), *from, what)
        }
        Change::Create(path) if matches!(parse_name(&name(path)), Entry::Keys(_)) => {
            let what = "no key section is left and none was synced: open creates it";
            (K::Missing, path.clone(), 0, what.to_string())
        }
        _ => return None,
    })
}

/// Collects problems, capping how many are listed per file.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
    per_file: HashMap<PathBuf, Tally>,
}

/// Problems of one file: how many were pushed, how many left off, the first left off, and the
/// worst left off (an error that stops open over a damaged value over a warning).
#[derive(Debug, Default)]
struct Tally {
    pushed: usize,
    cut: usize,
    first_cut: u64,
    worst: Option<(Severity, bool, K)>,
}

impl Problems {
    /// Adds a problem.
    pub(crate) fn push(
        &mut self,
        severity: Severity,
        kind: K,
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
            let rank = (severity, kind != K::Value, kind);
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

    /// The list, with one line per file whose problems were cut.
    pub(crate) fn finish(mut self) -> Vec<Problem> {
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
