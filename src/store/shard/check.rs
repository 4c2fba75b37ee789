//! What `toykv check` asks of a shard open recovered (see `store::check`): what recovery
//! handed back, and every record of the recovered log with its value read through the get
//! path.

use std::io;

use crate::error::{Damage, Error, Result};
use crate::format::{BANKS, Op, Record};
use crate::key::Value;

use super::Shard;

/// Which values [`Shard::visit_log`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reads {
    /// None.
    Skip,
    /// Each live key's value.
    Live,
    /// The value of every put.
    All,
}

/// One record of a shard's log as open recovers it, shown to `toykv check`'s visitor.
#[derive(Debug)]
pub(crate) struct Seen<'a> {
    /// The shard.
    pub(crate) shard: u32,
    /// Its sequence number.
    pub(crate) seq: u64,
    /// The record.
    pub(crate) record: Record,
    /// Whether it holds its key's live value (a put the index points at).
    pub(crate) live: bool,
    /// Whether it was below the sync mark found on disk.
    pub(crate) synced: bool,
    /// Whether the journal's replay wrote it.
    pub(crate) replayed: bool,
    /// For a put whose value was read: the value, or why it could not be.
    pub(crate) value: Option<&'a Result<Value>>,
}

/// What recovery handed back when the shard was opened.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Damaged synced records the walk skipped (only with `Options::keep_going`): open proper
    /// refuses the shard at the first.
    pub(crate) refused: Vec<Error>,
    /// When the log ended at a damaged unsynced record: where and why.
    pub(crate) torn: Option<String>,
    /// The sections the banks hold once open settled them.
    pub(crate) banks: [Option<u32>; BANKS],
    /// The record number after the recovered log.
    pub(crate) next: u64,
}

/// Counts of a shard's log, as [`Shard::visit_log`] found it.
#[derive(Debug, Default)]
pub(crate) struct LogCounts {
    pub(crate) key_sections: u64,
    pub(crate) value_sections: u64,
    pub(crate) banks: [Option<u32>; BANKS],
    /// Records of the log (replayed ones included), puts and deletes among them.
    pub(crate) records: u64,
    pub(crate) puts: u64,
    pub(crate) deletes: u64,
    /// Live keys.
    pub(crate) live: u64,
    /// Records below the sync mark found on disk.
    pub(crate) synced: u64,
    /// Live values read and checked.
    pub(crate) values_checked: u64,
}

impl Shard {
    /// What recovery handed back at open (the skipped records are taken).
    pub(crate) fn recovered(&self) -> Recovered {
        let mut g = self.lock();
        let i = &mut g.inner;
        Recovered {
            refused: std::mem::take(&mut i.refused),
            torn: i.torn.clone(),
            banks: i.buffer.sections(),
            next: i.next_seq,
        }
    }

    /// Shows every record of the log to `visit`, in order, as shard `id` whose sync mark on
    /// disk said `synced` and whose recovered log ended at `recovered`; reads `values` through
    /// the get path, adding each live value that fails to `bad`.
    pub(crate) fn visit_log(
        &self,
        id: u32,
        synced: u64,
        recovered: u64,
        values: Reads,
        bad: &mut Vec<Error>,
        visit: &mut dyn FnMut(&Seen<'_>) -> io::Result<()>,
    ) -> Result<LogCounts> {
        let g = self.lock();
        let inner = &g.inner;
        let start = u64::from(inner.first) * u64::from(inner.slots);
        let mut n = LogCounts {
            key_sections: inner.keys.len() as u64,
            value_sections: inner.values.count() as u64,
            banks: inner.buffer.sections(),
            records: inner.next_seq - start,
            live: inner.index.len() as u64,
            synced: synced.clamp(start, inner.next_seq) - start,
            ..LogCounts::default()
        };
        for seq in start..inner.next_seq {
            // A record recovery skipped as damaged (reported as such) is not part of the log.
            let read = inner
                .locate(seq)
                .and_then(|(sec, at)| inner.keys[sec].read(at, seq));
            let Ok(record) = read else {
                continue;
            };
            let put = matches!(record.op, Op::Put { .. });
            n.puts += u64::from(put);
            n.deletes += u64::from(!put);
            let live = put && inner.index.get(record.key) == Some(seq);
            let read = match values {
                Reads::All => put,
                Reads::Live => live,
                Reads::Skip => false,
            };
            let value = read.then(|| inner.fetch(record.key, seq).and_then(|f| f.finish()));
            if live && let Some(Err(e)) = &value {
                n.values_checked += 1;
                bad.push(copy(e));
            } else if live && value.is_some() {
                n.values_checked += 1;
            }
            let seen = Seen {
                shard: id,
                seq,
                record,
                live,
                synced: seq < synced,
                replayed: seq >= recovered,
                value: value.as_ref(),
            };
            visit(&seen).map_err(|e| Error::io("write", "output", e))?;
        }
        Ok(n)
    }
}

/// A value error, kept for the report (errors are not `Clone`).
fn copy(e: &Error) -> Error {
    match e {
        Error::Corrupt {
            file,
            offset,
            damage,
            what,
        } => Error::corrupt(file, *offset, *damage, what.clone()),
        Error::Io { op, path, source } => {
            Error::io(op, path, io::Error::new(source.kind(), source.to_string()))
        }
        e => Error::corrupt("", 0, Damage::Other, e.to_string()),
    }
}
