//! Atomic batches and deferred durability: [`Batch`], [`Store::apply`], [`Commit`] and
//! [`Store::wait`].
//!
//! A batch holds the lock of every shard it writes to (taken in shard order, after the
//! store's batch lock) while it checks there is room for its values, writes its
//! [intent](super::intent), applies every entry and, with a journal, appends its entries and
//! its end entry to the journal's pending bytes in one go. So readers see all of it or none,
//! a journal commit takes all of it or none, and a crash part way is finished at open (see
//! [`crate::format::intent`]). With a journal, a batch first waits (under the batch lock)
//! until the batch before it is durable, so that the only batch a crash can leave applied
//! and not durable is the one in the intent, which open applies again after a replay.

use std::collections::HashMap;
use std::path::Path;

use super::shard::{Held, Shard};
use super::{Lookup, PendingRead, Store, apply_op};
use crate::error::{Error, Result};
use crate::format::intent::{MAX_BATCH_BYTES, Span};
use crate::format::journal::{
    DELETE_LEN, ENTRY_MAX, JournalOp, decode_entry, encode_delete, encode_put,
};
use crate::format::shard_of;
use crate::key::{Key, VALUE_MAX};

/// Puts and deletes applied together by [`Store::apply`] or [`Store::write`]: other threads
/// see all of them or none, and a crash (of the process, or with durability `always` of the
/// machine) leaves all of them or none. Entries apply in the order added; a key may appear
/// more than once (the last entry wins).
///
/// ```
/// # fn main() -> toykv::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let store = toykv::Store::open(tmp.path().join("data"))?;
/// let mut batch = toykv::Batch::new();
/// batch.put(1u64, b"one")?;
/// batch.put(2u64, b"two")?;
/// batch.delete(3u64)?;
/// store.write(&batch)?;
/// assert_eq!(store.get(2u64)?.as_deref(), Some(&b"two"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The entries, encoded as the journal's (and the intent's) payload.
    entries: Vec<u8>,
    count: u32,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a put of `value` (0 to 256 bytes) at `key`.
    pub fn put(&mut self, key: impl Into<Key>, value: impl AsRef<[u8]>) -> Result<()> {
        let value = value.as_ref();
        if value.len() > VALUE_MAX {
            return Err(Error::ValueTooLong {
                len: value.len(),
                max: VALUE_MAX,
            });
        }
        self.room(ENTRY_MAX)?;
        encode_put(&mut self.entries, key.into().0, value);
        self.count += 1;
        Ok(())
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: impl Into<Key>) -> Result<()> {
        self.room(DELETE_LEN)?;
        encode_delete(&mut self.entries, key.into().0);
        self.count += 1;
        Ok(())
    }

    /// Refuses an entry of up to `len` bytes that would take the batch past
    /// [`MAX_BATCH_BYTES`] (what open reads back of an intent).
    fn room(&self, len: usize) -> Result<()> {
        let bytes = self.entries.len() + len;
        if bytes > MAX_BATCH_BYTES {
            return Err(Error::BatchBytes {
                bytes,
                max: MAX_BATCH_BYTES,
            });
        }
        Ok(())
    }

    /// Entries added.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes every entry, keeping the memory.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.count = 0;
    }

    /// The entries, in order.
    /// The entries in order: puts and deletes (never [`JournalOp::Batch`]).
    pub fn entries(&self) -> impl Iterator<Item = JournalOp<'_>> {
        self.ops()
    }

    fn ops(&self) -> impl Iterator<Item = JournalOp<'_>> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let (op, n) = decode_entry(self.entries.get(at..)?).ok()?;
            at += n;
            Some(op)
        })
    }
}

/// Where a write stands in the journal: waiting for it with [`Store::wait`] returns once the
/// write (and every write applied before it) survives power loss. Without a journal
/// (durability `none` or `periodic`) there is nothing to wait for. Commits are ordered: the
/// [`max`](Self::max) of several stands for all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[must_use = "a write is durable only once its commit was waited for"]
pub struct Commit(pub(crate) u64);

impl Commit {
    /// Nothing to wait for.
    pub const NONE: Commit = Commit(0);

    /// The later of two commits: waiting for it waits for both.
    pub fn max(self, other: Commit) -> Commit {
        Commit(self.0.max(other.0))
    }

    /// Whether there is nothing to wait for.
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// What [`Store::apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "a write is durable only once its commit was waited for"]
pub struct Applied {
    /// The batch's place in the journal.
    pub commit: Commit,
    /// Deletes that removed a key.
    pub deleted: usize,
}

/// What a put or delete that did not wait did ([`Store::try_put`], [`Store::try_delete`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "a write is durable only once its commit was waited for"]
pub struct Quick {
    /// Its place in the journal.
    pub commit: Commit,
    /// For a delete, whether the key existed.
    pub existed: bool,
    /// Whether writes are held back for garbage collection now: the caller should pause (up
    /// to 100 ms, while [`Store::pressed`] says so) before its next write, as
    /// [`Store::put`] does.
    pub pressed: bool,
}

impl Store {
    /// Applies `batch` atomically and waits until it is as durable as the store's
    /// [`Durability`](crate::Durability) promises; the number of its deletes that removed a
    /// key.
    pub fn write(&self, batch: &Batch) -> Result<usize> {
        let applied = self.apply(batch)?;
        self.wait(applied.commit)?;
        Ok(applied.deleted)
    }

    /// Applies `batch` atomically without waiting for its own commit: the batch is visible and
    /// survives a crash of the process when this returns; pass [`Applied::commit`] to
    /// [`wait`](Self::wait) for power loss (durability `always`). With durability `always`
    /// it first waits until the batch applied before it is durable (one journal flush at
    /// most), so that a crash never leaves two batches applied and not durable. May wait for a bank's
    /// write-out when the batch's values do not fit in the write buffer. A batch may put at
    /// most one bank's worth of values (a section's slots) into one shard
    /// ([`Error::BatchTooLarge`]).
    pub fn apply(&self, batch: &Batch) -> Result<Applied> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        let n = self.shards.len();
        let shard = |k: [u8; 8]| shard_of(k, n as u32) as usize;
        let mut puts = vec![0usize; n];
        let mut touched = vec![false; n];
        for op in batch.ops() {
            let (key, put) = match op {
                JournalOp::Put(k, _) => (k, true),
                JournalOp::Delete(k) => (k, false),
                JournalOp::Batch(_) => continue,
            };
            let i = shard(key);
            touched[i] = true;
            puts[i] += usize::from(put);
        }
        for (i, &p) in puts.iter().enumerate() {
            let max = self.shards[i].bank_slots() as usize;
            if p > max {
                return Err(Error::BatchTooLarge {
                    shard: i,
                    puts: p,
                    max,
                });
            }
        }
        let involved: Vec<usize> = (0..n).filter(|&i| touched[i]).collect();
        let mut intent = self.intent.lock();
        intent.writable()?;
        // With a journal, the batch before this one must be durable before this one changes a
        // shard: then at most one batch is applied and not durable, the one whose intent open
        // finds, and open can apply it again after a replay (see [`crate::format::intent`]).
        if let Some(j) = &self.journal {
            j.wait(intent.ticket(), &|| self.sync_shards())?;
        }
        let mut held: Vec<Held<'_>> = loop {
            let mut held = Vec::with_capacity(involved.len());
            let mut short = None;
            for &i in &involved {
                let h = self.shards[i].hold();
                if !h.fits(puts[i]) {
                    short = Some(i);
                    break;
                }
                held.push(h);
            }
            match short {
                None => break held,
                Some(i) => {
                    drop(held);
                    self.shards[i].wait_ready();
                }
            }
        };
        let mut at = vec![usize::MAX; n];
        for (j, &i) in involved.iter().enumerate() {
            at[i] = j;
        }
        for h in &held {
            h.writable()?;
        }
        if let Some(j) = &self.journal {
            j.writable()?;
        }
        // The records each shard will take: every put, and the deletes of keys that exist
        // when the delete comes.
        let mut exists: HashMap<[u8; 8], bool> = HashMap::new();
        let mut records = vec![0u32; n];
        for op in batch.ops() {
            match op {
                JournalOp::Put(k, _) => {
                    records[shard(k)] += 1;
                    exists.insert(k, true);
                }
                JournalOp::Delete(k) => {
                    let i = shard(k);
                    let h = &held[at[i]];
                    if *exists.entry(k).or_insert_with(|| h.has(Key(k))) {
                        records[i] += 1;
                    }
                    exists.insert(k, false);
                }
                JournalOp::Batch(_) => {}
            }
        }
        let spans: Vec<Span> = involved
            .iter()
            .filter(|&&i| records[i] > 0)
            .map(|&i| Span {
                shard: i as u32,
                count: records[i],
                first: held[at[i]].next_seq(),
            })
            .collect();
        let id = intent.write(batch.count, &spans, &batch.entries)?;
        let half = batch.len() / 2;
        let mut deleted = 0;
        let applied = batch.ops().enumerate().try_for_each(|(done, op)| {
            if done == half {
                crate::kill::point("batch-half");
            }
            match op {
                JournalOp::Put(k, v) => held[at[shard(k)]].put(Key(k), v),
                JournalOp::Delete(k) => {
                    deleted += usize::from(held[at[shard(k)]].delete(Key(k))?);
                    Ok(())
                }
                JournalOp::Batch(_) => Ok(()),
            }
        });
        if let Err(e) = applied {
            intent.fail(&e);
            return Err(e);
        }
        let ticket = self
            .journal
            .as_ref()
            .map_or(0, |j| j.batch(&batch.entries, batch.count, id));
        intent.applied(ticket);
        crate::kill::point("batch-applied");
        if let Some(f) = self.feed() {
            f.change(super::Change::Batch(batch));
        }
        let pressed: Vec<usize> = involved
            .iter()
            .filter(|&&i| held[at[i]].pressed())
            .copied()
            .collect();
        drop(held);
        drop(intent);
        if let Some(&i) = pressed.first() {
            self.shards[i].hold_back();
        }
        Ok(Applied {
            commit: Commit(ticket),
            deleted,
        })
    }

    /// Puts like [`put`](Self::put) without waiting for the journal: the put is visible and
    /// survives a crash of the process when this returns; [`wait`](Self::wait) for its commit
    /// makes it survive power loss (durability `always`). Many puts then one wait share one
    /// journal flush.
    pub fn put_deferred(&self, key: impl Into<Key>, value: impl AsRef<[u8]>) -> Result<Commit> {
        let key = key.into();
        let (_, shard) = self.shard(key);
        let ticket = shard.put(key, value.as_ref(), self.journal.as_deref(), self.feed())?;
        Ok(Commit(ticket.unwrap_or(0)))
    }

    /// Deletes like [`delete`](Self::delete) without waiting for the journal (see
    /// [`put_deferred`](Self::put_deferred)): whether the key existed, and the commit.
    pub fn delete_deferred(&self, key: impl Into<Key>) -> Result<(bool, Commit)> {
        let key = key.into();
        let (_, shard) = self.shard(key);
        let (existed, ticket) = shard.delete(key, self.journal.as_deref(), self.feed())?;
        Ok((existed, Commit(ticket.unwrap_or(0))))
    }

    /// A [`put_deferred`](Self::put_deferred) that never blocks: `Ok(None)`, with nothing
    /// done, when it would wait on the disk (a full bank, a new key section) or for a shard
    /// lock held long. For callers that must not block, such as an async runtime's threads:
    /// on `None`, put where blocking is allowed.
    pub fn try_put(&self, key: impl Into<Key>, value: impl AsRef<[u8]>) -> Result<Option<Quick>> {
        let key = key.into();
        let (_, shard) = self.shard(key);
        let done = shard.try_put(key, value.as_ref(), self.journal.as_deref(), self.feed())?;
        Ok(done.map(|(ticket, pressed)| Quick {
            commit: Commit(ticket.unwrap_or(0)),
            existed: false,
            pressed,
        }))
    }

    /// A [`delete_deferred`](Self::delete_deferred) that never blocks (see
    /// [`try_put`](Self::try_put)).
    pub fn try_delete(&self, key: impl Into<Key>) -> Result<Option<Quick>> {
        let key = key.into();
        let (_, shard) = self.shard(key);
        let done = shard.try_delete(key, self.journal.as_deref(), self.feed())?;
        Ok(done.map(|(existed, ticket)| Quick {
            commit: Commit(ticket.unwrap_or(0)),
            existed,
            pressed: false,
        }))
    }

    /// A [`lookup`](Self::lookup) that never waits for a shard lock held long: `None` when
    /// it would.
    pub fn try_lookup(&self, key: impl Into<Key>) -> Option<Result<Lookup>> {
        let key = key.into();
        let (i, shard) = self.shard(key);
        Some(shard.try_lookup(key)?.map(|found| match found {
            Ok(v) => Lookup::Ready(v),
            Err(fetch) => Lookup::Pending(PendingRead(i, fetch)),
        }))
    }

    /// Whether writes are held back for garbage collection now (value space is past its
    /// limit): a writer that must not block pauses while this holds, up to 100 ms.
    pub fn pressed(&self) -> bool {
        self.shards.iter().any(Shard::pressed)
    }

    /// Calls `done` once `commit` (and every write applied before it) survives power loss, or
    /// its commit failed; never blocks. `done` runs on the store's committer thread (or at
    /// once, here, when there is nothing to wait for): keep it short, e.g. send on a channel.
    /// The committer leads one journal commit after another while anyone waits, so the
    /// writes of every caller that applied while a commit ran share the next one. For callers
    /// that must not block, such as an async server.
    pub fn notify(&self, commit: Commit, done: impl FnOnce(Result<()>) + Send + 'static) {
        match &self.journal {
            Some(j) if !commit.is_none() => j.notify(commit.0, Box::new(done)),
            _ => done(Ok(())),
        }
    }

    /// Waits until `commit` (and every write applied before it) survives power loss: leads
    /// the journal's next commit or joins one under way. Returns at once without a journal.
    pub fn wait(&self, commit: Commit) -> Result<()> {
        match &self.journal {
            Some(j) if !commit.is_none() => j.wait(commit.0, &|| self.sync_shards()),
            _ => Ok(()),
        }
    }
}

/// Finishes the batch whose intent open found, in the shards `short` names (those whose log
/// ends short of their part, or every shard after a journal replay; see
/// [`crate::format::intent`]): applies their entries of it again, in order.
pub(super) fn finish(shards: &[Shard], dir: &Path, payload: &[u8], short: &[u32]) -> Result<()> {
    let batch = Batch {
        entries: payload.to_vec(),
        count: 0,
    };
    for op in batch.ops() {
        let key = match op {
            JournalOp::Put(k, _) | JournalOp::Delete(k) => k,
            JournalOp::Batch(_) => continue,
        };
        if short.contains(&shard_of(key, shards.len() as u32)) {
            apply_op(shards, dir, op)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::options::{Durability, Options};
    use crate::testing::tempdir;

    fn options(shards: u32) -> Options {
        Options::new()
            .section_slots(16)
            .shards(shards)
            .gc(false)
            .durability(Durability::None)
    }

    fn gen_value(g: u64) -> Vec<u8> {
        let mut v = g.to_le_bytes().to_vec();
        v.resize(40, g as u8);
        v
    }

    #[test]
    fn a_batch_applies_whole_and_counts_its_deletes() {
        let d = tempdir();
        let s = Store::open_with(d.path(), options(4)).unwrap();
        s.put(100u64, b"old").unwrap();
        let mut b = Batch::new();
        for k in 0..12u64 {
            b.put(k, gen_value(k)).unwrap();
        }
        b.put(3u64, b"again").unwrap();
        b.delete(100u64).unwrap();
        b.delete(101u64).unwrap();
        b.delete(5u64).unwrap();
        assert_eq!(b.len(), 16);
        assert_eq!(s.write(&b).unwrap(), 2);
        let check = |s: &Store| {
            for k in 0..12u64 {
                let want = match k {
                    3 => Some(b"again".to_vec()),
                    5 => None,
                    _ => Some(gen_value(k)),
                };
                assert_eq!(s.get(k).unwrap().map(|v| v.to_vec()), want, "key {k}");
            }
            assert_eq!(s.get(100u64).unwrap(), None);
        };
        check(&s);
        drop(s);
        check(&Store::open_with(d.path(), options(4)).unwrap());
    }

    #[test]
    fn a_batch_larger_than_a_bank_is_refused_and_changes_nothing() {
        let d = tempdir();
        let s = Store::open_with(d.path(), options(1)).unwrap();
        let mut b = Batch::new();
        for k in 0..17u64 {
            b.put(k, b"x").unwrap();
        }
        let e = s.apply(&b).unwrap_err();
        assert!(
            matches!(
                e,
                Error::BatchTooLarge {
                    puts: 17,
                    max: 16,
                    ..
                }
            ),
            "{e}"
        );
        assert!(s.is_empty());
        // A bank's worth goes in, moving on to the other bank part way when it must.
        for round in 0..5u64 {
            let mut b = Batch::new();
            for k in 0..16u64 {
                b.put(k, gen_value(round)).unwrap();
            }
            s.write(&b).unwrap();
            for k in 0..16u64 {
                assert_eq!(s.get(k).unwrap().unwrap().to_vec(), gen_value(round));
            }
        }
        let mut b = Batch::new();
        assert!(b.put(1u64, [0u8; 257]).is_err());
        // A batch holds at most MAX_BATCH_BYTES of entries.
        let mut n = 0u64;
        let e = loop {
            match b.put(n, [7u8; 256]) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(e, Error::BatchBytes { .. }), "{e}");
        assert!(b.len() * 267 <= MAX_BATCH_BYTES && b.len() * 267 + 267 > MAX_BATCH_BYTES);
        assert!(matches!(
            b.delete(1u64),
            Ok(()) | Err(Error::BatchBytes { .. })
        ));
        b.clear();
        assert!(b.is_empty());
        assert_eq!(s.apply(&b).unwrap(), Applied::default());
    }

    /// A crash after a batch's intent and part of its records: open applies the rest, and
    /// clears the intent so that later writes are never overwritten by it.
    #[test]
    fn a_batch_cut_short_is_finished_at_open_once() {
        let d = tempdir();
        let s = Store::open_with(d.path(), options(1)).unwrap();
        s.put(1u64, b"before").unwrap();
        let mut b = Batch::new();
        for k in 0..8u64 {
            b.put(k, gen_value(7)).unwrap();
        }
        b.delete(1u64).unwrap();
        // What `apply` does up to a crash after three of its nine records.
        let spans = [Span {
            shard: 0,
            count: 9,
            first: s.shards[0].next_seq(),
        }];
        s.intent.lock().write(b.count, &spans, &b.entries).unwrap();
        for k in 0..3u64 {
            s.put(k, gen_value(7)).unwrap();
        }
        drop(s);
        let s = Store::open_with(d.path(), options(1)).unwrap();
        for k in 0..8u64 {
            let want = (k != 1).then(|| gen_value(7));
            assert_eq!(s.get(k).unwrap().map(|v| v.to_vec()), want, "key {k}");
        }
        s.put(4u64, b"later").unwrap();
        drop(s);
        let s = Store::open_with(d.path(), options(1)).unwrap();
        assert_eq!(s.get(4u64).unwrap().unwrap().to_vec(), b"later");
        // An intent that does not decode (cut short before any shard changed) is ignored.
        drop(s);
        std::fs::write(
            d.path().join(crate::format::intent::INTENT_NAME),
            b"toykv.i\0 cut",
        )
        .unwrap();
        let s = Store::open_with(d.path(), options(1)).unwrap();
        assert_eq!(s.get(4u64).unwrap().unwrap().to_vec(), b"later");
    }

    /// Readers see a batch all or none: two keys in different shards, written together.
    #[test]
    fn readers_never_see_half_a_batch() {
        let d = tempdir();
        let opts = Options::new()
            .shards(4)
            .gc(false)
            .durability(Durability::None);
        let s = Arc::new(Store::open_with(d.path(), opts).unwrap());
        let (a, b) = (0u64..)
            .flat_map(|a| (a + 1..a + 64).map(move |b| (a, b)))
            .find(|&(a, b)| s.shard(Key::from(a)).0 != s.shard(Key::from(b)).0)
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut g = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut batch = Batch::new();
                    batch.put(a, gen_value(g)).unwrap();
                    batch.put(b, gen_value(g)).unwrap();
                    s.write(&batch).unwrap();
                    g += 1;
                }
            })
        };
        for _ in 0..5_000 {
            let got = s.get_many(&[a, b]);
            let [x, y] =
                [&got[0], &got[1]].map(|r| r.as_ref().unwrap().as_ref().map(|v| v.to_vec()));
            assert_eq!(x, y, "keys {a} and {b} differ");
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }

    /// With durability `always`, a batch cut short after one shard took its whole part: open
    /// replays the journal (which holds the generation before, committed in the same epoch)
    /// over both shards, then must finish the batch in both, not only in the shard whose log
    /// ends short; before, the whole shard was left with the replayed generation and the
    /// other with the batch's (the crash tests' "keys hold different generations").
    #[test]
    fn a_batch_cut_short_stays_whole_after_the_journal_replays_under_it() {
        let d = tempdir();
        let options = || {
            Options::new()
                .section_slots(64)
                .shards(2)
                .gc(false)
                .durability(Durability::Always)
                .journal_bytes(1 << 20)
        };
        let value = |g: u64, k: u64| [g.to_le_bytes(), k.to_le_bytes()].concat();
        let generations = |s: &Store| -> Vec<u64> {
            (0..40u64)
                .map(|k| match s.get(k).unwrap() {
                    Some(v) => u64::from_le_bytes(v[..8].try_into().unwrap()),
                    None => 0,
                })
                .collect()
        };
        let s = Store::open_with(d.path(), options()).unwrap();
        let shard = |k: u64| shard_of(k.to_be_bytes(), 2) as usize;
        // Generation 1, committed to the journal (40 small puts: no checkpoint).
        let mut b = Batch::new();
        for k in 0..40u64 {
            b.put(k, value(1, k)).unwrap();
        }
        s.write(&b).unwrap();
        // Generation 2, shard 0's keys first: what `apply` does up to a crash after all of
        // shard 0's records and one of shard 1's.
        let mut keys: Vec<u64> = (0..40).collect();
        keys.sort_by_key(|&k| shard(k));
        let mut b = Batch::new();
        for &k in &keys {
            b.put(k, value(2, k)).unwrap();
        }
        let spans: Vec<Span> = (0..2)
            .map(|i| Span {
                shard: i as u32,
                count: keys.iter().filter(|&&k| shard(k) == i).count() as u32,
                first: s.shards[i].next_seq(),
            })
            .collect();
        assert!(spans.iter().all(|s| s.count > 1), "{spans:?}");
        s.intent.lock().write(b.count, &spans, &b.entries).unwrap();
        let done = spans[0].count as usize + 1;
        for (&k, op) in keys.iter().zip(b.ops()).take(done) {
            s.shards[shard(k)].apply(op).unwrap();
        }
        // The process dies (dropping the store neither commits nor checkpoints).
        drop(s);
        let s = Store::open_with(d.path(), options()).unwrap();
        assert_eq!(generations(&s), vec![2; 40]);
        // Finished once: later writes stay after another reopen.
        s.put(3u64, value(3, 3)).unwrap();
        drop(s);
        let s = Store::open_with(d.path(), options()).unwrap();
        let mut want = vec![2; 40];
        want[3] = 3;
        assert_eq!(generations(&s), want);
    }

    /// Options of the tests below: two shards, durability `always`.
    fn always(journal: u64) -> Options {
        Options::new()
            .section_slots(1024)
            .shards(2)
            .gc(false)
            .durability(Durability::Always)
            .journal_bytes(journal)
    }

    /// The generation a value of [`gen_value`] says (0: absent).
    fn generation(s: &Store, k: u64) -> u64 {
        s.get(k)
            .unwrap()
            .map_or(0, |v| u64::from_le_bytes(v[..8].try_into().unwrap()))
    }

    /// Two keys, one in each shard of a two-shard store.
    fn split_keys() -> (u64, u64) {
        let shard = |k: u64| shard_of(k.to_be_bytes(), 2);
        let a = 1;
        let b = (2u64..).find(|&k| shard(k) != shard(a)).unwrap();
        (a, b)
    }

    /// Batch 1 puts generation 1 into `a` and is committed; batch 2 puts generation 2 into
    /// `a` and `b` and is applied, not waited for.
    fn committed_then_applied(s: &Store, a: u64, b: u64) -> Applied {
        let mut batch = Batch::new();
        batch.put(a, gen_value(1)).unwrap();
        s.write(&batch).unwrap();
        let mut batch = Batch::new();
        batch.put(a, gen_value(2)).unwrap();
        batch.put(b, gen_value(2)).unwrap();
        s.apply(&batch).unwrap()
    }

    /// With durability `always`: batch 1 puts `a` and is committed; batch 2 puts `a` and `b`,
    /// is applied whole and never committed; the process dies. The replay puts batch 1's `a`
    /// back, which left `b` alone with batch 2's value; open must apply batch 2 again on top.
    #[test]
    fn a_batch_applied_but_not_committed_stays_whole_over_the_replay() {
        let d = tempdir();
        let (a, b) = split_keys();
        let s = Store::open_with(d.path(), always(1 << 20)).unwrap();
        let applied = committed_then_applied(&s, a, b);
        assert!(!applied.commit.is_none());
        // The process dies (dropping the store neither commits nor checkpoints).
        drop(s);
        let s = Store::open_with(d.path(), always(1 << 20)).unwrap();
        let gens = [generation(&s, a), generation(&s, b)];
        assert!(gens == [1, 0] || gens == [2, 2], "half a batch: {gens:?}");
        // Later writes stay after another reopen: the batch is not applied again over them.
        s.put(b, gen_value(3)).unwrap();
        drop(s);
        let s = Store::open_with(d.path(), always(1 << 20)).unwrap();
        assert_eq!(generation(&s, b), 3);
    }

    /// Two batches applied without waiting: the second waits until the first is durable
    /// before it changes a shard, so a crash leaves at most one batch not durable (the one
    /// open finds in the intent), and the replay can half undo neither.
    #[test]
    fn only_the_last_batch_is_ever_applied_and_not_durable() {
        let d = tempdir();
        let (a, b) = split_keys();
        let c = (b + 1..).find(|&k| k != a).unwrap();
        let s = Store::open_with(d.path(), always(1 << 20)).unwrap();
        let _ = committed_then_applied(&s, a, b);
        let mut batch = Batch::new();
        batch.put(c, gen_value(3)).unwrap();
        let _ = s.apply(&batch).unwrap();
        drop(s);
        let s = Store::open_with(d.path(), always(1 << 20)).unwrap();
        let gens = [generation(&s, a), generation(&s, b), generation(&s, c)];
        assert!(
            [[1, 0, 0], [2, 2, 0], [2, 2, 3]].contains(&gens),
            "a batch came back half: {gens:?}"
        );
    }

    /// The intent of a batch made durable before the journal's epoch (by a checkpoint, or by
    /// a commit that did not fit and checkpointed) is never applied again over the epoch's
    /// acknowledged writes to its keys.
    #[test]
    fn a_durable_batch_is_not_applied_again_over_later_writes() {
        let d = tempdir();
        let (a, b) = split_keys();
        // 64 KiB: a batch of 300 values of 200 bytes does not fit, and checkpoints.
        let options = || always(64 << 10);
        for (round, big) in [false, true].into_iter().enumerate() {
            let g = 2 * round as u64;
            let s = Store::open_with(d.path(), options()).unwrap();
            let mut batch = Batch::new();
            batch.put(a, gen_value(g + 1)).unwrap();
            batch.put(b, gen_value(g + 1)).unwrap();
            if big {
                for k in 1000..1300u64 {
                    batch.put(k, [7u8; 200]).unwrap();
                }
            }
            let checkpoints = s.stats().journal_checkpoints;
            s.write(&batch).unwrap();
            if big {
                assert_eq!(s.stats().journal_checkpoints, checkpoints + 1);
            } else {
                s.sync().unwrap();
            }
            s.put(a, gen_value(g + 2)).unwrap();
            // The process dies: the journal's epoch holds the put, the intent the batch.
            drop(s);
            let s = Store::open_with(d.path(), options()).unwrap();
            assert_eq!(
                [generation(&s, a), generation(&s, b)],
                [g + 2, g + 1],
                "big batch: {big}"
            );
        }
    }
}
