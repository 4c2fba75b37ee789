//! Group commit for durability `always`: a put or delete returns only once its record and
//! value are durable, and concurrent writers share the disk flushes.
//!
//! One writer at a time leads a commit while the others wait on a condition variable. The
//! leader commits every shard with records not yet durable — its own and those of the writers
//! waiting — flushing all their spans in parallel (the dirty value slots of each `buffer.b`,
//! the new records of each key section). When it ends, every waiter wakes at once: those it
//! covered return, and one of the rest leads the next commit. (A plain mutex queue would
//! release one waiter per commit, and a leader returning for its next put would take the
//! lock again before the woken waiter ran: about one put per commit.)
//!
//! A commit writes no sync mark of its own. The mark it writes, in the same msync as the
//! values, catches up with the previous commit, so the mark trails the acknowledged records
//! by at most one commit; recovery accepts records after the mark once they and their values
//! check out, as it does for any record after the mark. An explicit sync, the periodic syncer
//! and garbage collection write a current mark ([`Shard::sync`]): collection removes files
//! only once the mark covers every record that could point into them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{MARK_LEN, Mark};

use super::buffer::MarkWriter;
use super::shard::{Inner, Shard};
use super::sync::Span;

/// The longest a leader waits for writers to arrive before it commits.
const GATHER: Duration = Duration::from_micros(150);

/// The store's group-commit state.
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Whether a writer leads a commit now.
    leading: Mutex<bool>,
    /// Signalled, to every waiting writer at once, when a commit ends.
    covered: Condvar,
    /// Writers inside [`Group::commit_to`] now.
    inside: AtomicUsize,
    /// How many were inside at the last commit.
    last: AtomicUsize,
}

/// What one shard's part of a commit flushes, captured under its lock: the hull of its dirty
/// value slots and of the mark that catches up with the previous commit (one msync of
/// `buffer.b`), and its new key records.
#[derive(Debug)]
struct Part {
    buffer: Option<Span>,
    keys: Vec<Span>,
    trailing: Option<Mark>,
    writer: MarkWriter,
    to: u64,
}

impl Inner {
    /// Captures this shard's part of a commit; `None` when everything is durable already.
    fn part(&mut self) -> Result<Option<Part>> {
        let to = self.next_seq;
        if to == self.synced_seq {
            return Ok(None);
        }
        let writer = self.buffer.mark_writer();
        let trailing = (self.synced_seq > self.buffer.mark.synced).then(|| Mark {
            generation: self.generation + 1,
            synced: self.synced_seq,
            first: self.buffer.mark.first,
        });
        let mut ranges = self.take_dirty();
        if trailing.is_some() {
            ranges.push((writer.at, writer.at + MARK_LEN));
        }
        let hull = ranges
            .iter()
            .copied()
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
        Ok(Some(Part {
            buffer: hull.map(|(a, b)| self.buffer.range(a, b)),
            keys: self.key_spans(self.synced_seq, to)?,
            trailing,
            writer,
            to,
        }))
    }
}

impl Group {
    /// Returns once record `to - 1` of shard `i` is durable, leading a commit of every shard
    /// or waiting for one.
    pub(crate) fn commit_to(&self, shards: &[Shard], i: usize, to: u64) -> Result<()> {
        let Some(shard) = shards.get(i) else {
            return Ok(());
        };
        let covered = || shard.synced.load(Ordering::Acquire) >= to;
        if covered() {
            return Ok(());
        }
        self.inside.fetch_add(1, Ordering::AcqRel);
        let r = self.lead_or_wait(shards, shard, &covered);
        self.inside.fetch_sub(1, Ordering::AcqRel);
        r
    }

    fn lead_or_wait(
        &self,
        shards: &[Shard],
        shard: &Shard,
        covered: &dyn Fn() -> bool,
    ) -> Result<()> {
        let mut leading = self.leading.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if covered() {
                return Ok(());
            }
            if !*leading {
                *leading = true;
                break;
            }
            leading = self
                .covered
                .wait(leading)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(leading);
        // The writers the last commit covered are on their way back with their next record:
        // wait a moment for as many as were there then, so that one commit covers them all.
        let want = self.last.load(Ordering::Acquire);
        let start = Instant::now();
        while self.inside.load(Ordering::Acquire) < want && start.elapsed() < GATHER {
            std::thread::yield_now();
        }
        self.last
            .store(self.inside.load(Ordering::Acquire), Ordering::Release);
        let r = commit(shards);
        *self.leading.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.covered.notify_all();
        // Another shard's failure is not this writer's: its record is durable or not.
        if covered() {
            return Ok(());
        }
        r?;
        shard.lock().inner.writable()
    }
}

/// Commits every shard with records not yet durable; the first error, if any.
fn commit(shards: &[Shard]) -> Result<()> {
    // Held in shard order while the commit runs, so no explicit sync or collection step
    // interleaves with it.
    let mut held: Vec<(&Shard, MutexGuard<'_, ()>, Part)> = Vec::new();
    let mut first_err = None;
    for shard in shards {
        if shard.synced.load(Ordering::Acquire) >= shard.lock().inner.next_seq {
            continue;
        }
        let guard = shard.syncing.lock().unwrap_or_else(|p| p.into_inner());
        let part = {
            let mut g = shard.lock();
            g.inner.writable().and_then(|()| g.inner.part())
        };
        match part {
            Ok(Some(p)) => held.push((shard, guard, p)),
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let results = flush_all(&held);
    crate::kill::point("sync-data");
    for ((shard, _guard, part), r) in held.iter().zip(results) {
        let mut g = shard.lock();
        if let Err(e) = g.inner.guard(r) {
            first_err.get_or_insert(e);
            continue;
        }
        if let Some(m) = part.trailing {
            g.inner.buffer.marked(m);
            g.inner.generation = m.generation;
        }
        g.inner.synced_seq = part.to;
        g.inner.counters.syncs += 1;
        drop(g);
        shard.synced.store(part.to, Ordering::Release);
    }
    first_err.map_or(Ok(()), Err)
}

/// Writes each part's trailing mark into its map, then flushes every span of every part in
/// parallel (one thread per span but the last). Every byte in a buffer hull may go to disk
/// early: values are never overwritten in place, and a trailing mark names records already
/// durable. One result per part.
fn flush_all(parts: &[(&Shard, MutexGuard<'_, ()>, Part)]) -> Vec<Result<()>> {
    let marks: Vec<Result<()>> = parts
        .iter()
        .map(|(_, _, p)| p.trailing.map_or(Ok(()), |m| p.writer.put(m)))
        .collect();
    let spans: Vec<(usize, &Span)> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, (_, _, p))| p.buffer.iter().chain(&p.keys).map(move |s| (i, s)))
        .collect();
    let mut results = marks;
    std::thread::scope(|s| {
        let Some(((last_i, last), rest)) = spans.split_last() else {
            return;
        };
        let handles: Vec<_> = rest
            .iter()
            .map(|&(i, span)| (i, span, s.spawn(move || span.flush())))
            .collect();
        let mine = last.flush();
        for (i, span, h) in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(Error::io(
                    "msync",
                    &span.path,
                    std::io::Error::other("the thread flushing it panicked"),
                ))
            });
            if let (Err(e), Some(slot)) = (r, results.get_mut(i))
                && slot.is_ok()
            {
                *slot = Err(e);
            }
        }
        if let (Err(e), Some(slot)) = (mine, results.get_mut(*last_i))
            && slot.is_ok()
        {
            *slot = Err(e);
        }
    });
    results
}
