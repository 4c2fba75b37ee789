//! What the store's check found, as typed problems: each error open stops at, each change
//! recovery makes (a repair: a warning), each live value that fails its checksum.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Damage, Error};
use crate::format::journal::JOURNAL_NAME;
use crate::format::{BUFFER_NAME, Entry, STORE_NAME, TMP_SUFFIX, parse_name};
use crate::io::Change;
use crate::store::check::Checked;

use super::{Problem, ProblemKind as K, Severity};

/// Most problems shown for one file; the rest are counted in one summary line.
pub(crate) const PER_FILE: usize = 50;

/// A problem of severity `s`.
fn problem(s: Severity, kind: K, file: &Path, offset: u64, what: impl Into<String>) -> Problem {
    let (file, what) = (file.to_path_buf(), what.into());
    Problem {
        severity: s,
        kind,
        file,
        offset,
        what,
    }
}

/// Every problem in `c`, in order: the errors open stops at, the repairs recovery makes, the
/// journal's torn tail, the damaged live values; at most [`PER_FILE`] per file.
pub(crate) fn list(dir: &Path, c: &Checked) -> Vec<Problem> {
    let (e, w) = (Severity::Error, Severity::Warning);
    let mut all = Vec::new();
    if c.fresh {
        let what = "no store file: open creates a new store here";
        all.push(problem(w, K::Missing, &dir.join(STORE_NAME), 0, what));
    }
    all.extend(c.errors.iter().map(|err| from_error(err, e, None)));
    all.extend(c.changes.iter().filter_map(|ch| repair(c, ch)));
    if let Some(j) = &c.journal
        && let Some(torn) = &j.torn
    {
        let what = format!("{torn}: open drops it (a commit never acknowledged)");
        all.push(problem(w, K::TornTail, &j.path, torn.offset, what));
    }
    all.extend(
        c.values
            .iter()
            .map(|err| from_error(err, e, Some(K::Value))),
    );
    cap(all)
}

/// An error open stops at (or a get fails with, as `kind`) as a problem.
fn from_error(err: &Error, s: Severity, kind: Option<K>) -> Problem {
    let (k, file, offset, what) = match err {
        Error::Corrupt {
            file,
            offset,
            damage,
            what,
        } => (kind_of(*damage), file, *offset, what.clone()),
        Error::Foreign { file, kind, got } => {
            let what = format!("not a toykv {kind} file (magic {got:02x?})");
            (K::Header, file, 0, what)
        }
        Error::Version {
            file,
            expected,
            got,
        } => {
            let what = format!("format version {got}; this build reads version {expected}");
            (K::Header, file, 0, what)
        }
        Error::Mismatch { dir, .. } => (K::Header, dir, 0, err.to_string()),
        Error::Io { path, .. } => (K::Io, path, 0, err.to_string()),
        _ => return problem(s, K::Io, Path::new(""), 0, err.to_string()),
    };
    match kind {
        Some(K::Value) => problem(
            s,
            K::Value,
            file,
            offset,
            what + ": a get of this key fails",
        ),
        _ => problem(s, k, file, offset, what),
    }
}

/// The kind of problem a corruption is, from the kind of damage its error carries.
fn kind_of(damage: Damage) -> K {
    match damage {
        Damage::Missing => K::Missing,
        Damage::LostShard => K::LostShard,
        Damage::Length => K::Length,
        Damage::Header => K::Header,
        Damage::Record => K::Record,
        Damage::Value => K::Value,
        // Damage none of the above names (a state of the files open cannot use) is listed
        // with the records: a problem has no kind of its own for it.
        Damage::Other => K::Record,
    }
}

/// Why open removes or creates a file.
const JOURNAL_TMP: &str = "a leftover of an interrupted journal creation: open removes it";
const TMP: &str = "a leftover temporary file: open removes it";
const OLD_KEYS: &str = "a key section before the sync mark's first, left by an interrupted \
                        garbage collection: open removes it";
const LATER_KEYS: &str = "a key section after the end of the log, part of the torn unsynced \
                          tail: open removes it";
const NEW_KEYS: &str = "no key section is left and none was synced: open creates it";
const INTERRUPTED: &str = "a write-out interrupted by a crash): open writes it out from the buffer";

/// A change recovery makes, as a repair to report; `None` for the routine ones (rewriting
/// the sync mark, clearing a bank, the steps of a write-out reported by its rename).
fn repair(c: &Checked, change: &Change) -> Option<Problem> {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let kind = |p: &Path| name(p).map(|n| parse_name(&n));
    let shard = |p: &Path| c.shards.iter().find(|s| p.parent() == Some(&s.dir));
    let journal_tmp = Some(format!("{JOURNAL_NAME}{TMP_SUFFIX}"));
    let (k, file, at, what): (K, PathBuf, u64, String) = match change {
        Change::Remove(p) if name(p) == journal_tmp => (K::Name, p.clone(), 0, JOURNAL_TMP.into()),
        Change::Remove(p) => match kind(p) {
            Some(Entry::Tmp) => (K::Name, p.clone(), 0, TMP.into()),
            Some(Entry::Keys(n)) if shard(p).is_some_and(|s| n < s.mark.first) => {
                (K::Name, p.clone(), 0, OLD_KEYS.into())
            }
            Some(Entry::Keys(_)) => (K::TornTail, p.clone(), 0, LATER_KEYS.into()),
            _ => (K::Name, p.clone(), 0, "open removes it".into()),
        },
        Change::Write { path, off, .. } if matches!(kind(path), Some(Entry::Keys(_))) => {
            let why = shard(path).and_then(|s| s.torn.clone());
            let why = why.unwrap_or_else(|| "records after a never-written one".into());
            let what = format!("torn unsynced tail, which open zeroes ({why})");
            (K::TornTail, path.clone(), *off, what)
        }
        Change::Rename { to, .. } if matches!(kind(to), Some(Entry::Values(_))) => {
            let n = name(to).unwrap_or_default();
            let what = format!("{n} was never written out ({INTERRUPTED}");
            (K::Missing, to.with_file_name(BUFFER_NAME), 0, what)
        }
        Change::SetLen { path, from, to } if from < to => {
            let what = format!("{from} bytes, short of {to}: open extends it");
            (K::Length, path.clone(), *from, what)
        }
        Change::Create(p) if matches!(kind(p), Some(Entry::Keys(_))) => {
            (K::Missing, p.clone(), 0, NEW_KEYS.into())
        }
        _ => return None,
    };
    Some(problem(Severity::Warning, k, &file, at, what))
}

/// `all`, keeping [`PER_FILE`] problems per file and one line for the rest, with the worst
/// of them (an error that stops open over a damaged value over a warning).
fn cap(all: Vec<Problem>) -> Vec<Problem> {
    let (mut list, mut cut) = (Vec::new(), std::collections::BTreeMap::new());
    let mut shown = HashMap::<PathBuf, usize>::new();
    for p in all {
        let n = shown.entry(p.file.clone()).or_default();
        *n += 1;
        match *n <= PER_FILE {
            true => list.push(p),
            false => cut.entry(p.file.clone()).or_insert_with(Vec::new).push(p),
        }
    }
    for (file, rest) in cut {
        let worst = rest.iter().max_by_key(|p| (p.severity, p.kind != K::Value));
        let n = rest.len();
        let what = format!("and {n} more problems in this file from here on, not listed");
        if let (Some(w), Some(first)) = (worst, rest.first()) {
            list.push(problem(w.severity, w.kind, &file, first.offset, what));
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of damage maps to its kind of problem, by a `match` on the type.
    #[test]
    fn each_damage_maps_to_its_problem_kind() {
        for (damage, kind) in [
            (Damage::Missing, K::Missing),
            (Damage::LostShard, K::LostShard),
            (Damage::Length, K::Length),
            (Damage::Header, K::Header),
            (Damage::Record, K::Record),
            (Damage::Value, K::Value),
            (Damage::Other, K::Record),
        ] {
            assert_eq!(kind_of(damage), kind, "{damage:?}");
            // An error open stops at gets its kind from its damage, whatever its text says.
            let e = Error::corrupt("/d/x", 7, damage, "shorter than a missing header");
            let p = from_error(&e, Severity::Error, None);
            assert_eq!((p.kind, p.offset), (kind, 7), "{damage:?}");
            assert_eq!(p.what, "shorter than a missing header");
            // A damaged live value is a value problem, whatever its damage.
            let p = from_error(&e, Severity::Error, Some(K::Value));
            assert_eq!(p.kind, K::Value, "{damage:?}");
        }
    }
}
