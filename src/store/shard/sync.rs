//! Syncing a shard.
//!
//! A sync makes every record written before it durable, in this order: the values those
//! records point at (slots of the banks written since the last sync), then the key records,
//! then the sync mark that says how many records are durable. A key record thus never
//! becomes durable-and-marked before its value. The disk waits happen outside the shard's
//! lock: the lock is taken only to capture what to flush (a *plan*) and to record the result,
//! so puts go on meanwhile.
//!
//! One thread syncs a shard at a time (it holds [`Shard::syncing`]): an explicit sync, the
//! periodic syncer, garbage collection, or a checkpoint of the journal (durability `always`
//! makes puts durable through the journal, see [`journal`](crate::store::journal), not through
//! shard syncs).
//!
//! Any failed msync poisons the shard: the kernel may have dropped the pages, so further
//! writes are refused until reopen.

use std::sync::MutexGuard;

use crate::error::Result;
use crate::format::Mark;

use super::{Inner, Shard};
use crate::store::buffer::MarkWriter;
use crate::store::file::Span;

/// What one sync flushes, captured under the lock.
#[derive(Debug)]
struct Plan {
    spans: Vec<Span>,
    mark: Mark,
    writer: MarkWriter,
}

impl Inner {
    /// Spans of the key records `from..to`.
    pub(super) fn key_spans(&self, from: u64, to: u64) -> Result<Vec<Span>> {
        let s = u64::from(self.slots);
        let mut spans = Vec::new();
        if to > from {
            for n in (from / s)..=((to - 1) / s) {
                let (sec, _) = self.locate(n * s)?;
                let a = from.saturating_sub(n * s).min(s) as u32;
                let b = (to - n * s).min(s) as u32;
                spans.push(self.keys[sec].span(a, b)?);
            }
        }
        Ok(spans)
    }

    /// Captures what a sync must flush, with the mark that ends it (keeping key sections from
    /// `first`); `None` when the mark already says everything.
    fn plan(&mut self, first: u32) -> Result<Option<Plan>> {
        let to = self.next_seq;
        if to == self.buffer.mark().synced && first == self.buffer.mark().first {
            return Ok(None);
        }
        let mut spans = self.buffer.take_dirty()?;
        spans.extend(self.key_spans(self.synced_seq, to)?);
        let mark = Mark {
            generation: self.generation + 1,
            synced: to,
            first,
        };
        Ok(Some(Plan {
            spans,
            mark,
            writer: self.buffer.mark_writer(),
        }))
    }
}

impl Inner {
    /// Syncs with the lock held (at open, before the shard is shared).
    pub(super) fn sync_inline(&mut self) -> Result<()> {
        let Some(plan) = self.plan(self.buffer.mark().first)? else {
            return Ok(());
        };
        let r = plan
            .spans
            .iter()
            .try_for_each(Span::flush)
            .and_then(|()| plan.writer.write(plan.mark));
        self.guard(r)?;
        self.done(plan.mark);
        Ok(())
    }

    fn done(&mut self, mark: Mark) {
        self.buffer.marked(mark);
        self.synced_seq = mark.synced;
        self.generation = mark.generation;
        self.counters.syncs += 1;
    }
}

impl Shard {
    /// Makes every earlier put and delete of this shard durable, and the sync mark say so
    /// (garbage collection relies on the mark before it removes a file).
    pub(crate) fn sync(&self) -> Result<()> {
        let guard = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        self.sync_locked(&guard, None)
    }

    /// Syncs everything written so far; with `first`, the mark also says that key sections
    /// below it are gone. The caller holds [`syncing`](Shard::syncing).
    pub(super) fn sync_locked(&self, _held: &MutexGuard<'_, ()>, first: Option<u32>) -> Result<()> {
        let plan = {
            let mut g = self.lock();
            g.inner.writable()?;
            let first = first.unwrap_or(g.inner.buffer.mark().first);
            g.inner.plan(first)?
        };
        let Some(plan) = plan else {
            return Ok(());
        };
        let r = plan.spans.iter().try_for_each(Span::flush).and_then(|()| {
            crate::kill::point("sync-data");
            plan.writer.write(plan.mark)
        });
        let mut g = self.lock();
        g.inner.guard(r)?;
        g.inner.done(plan.mark);
        Ok(())
    }
}
