//! One shard: its files, index and cache behind one lock, and the waits around that lock.
//!
//! A shard's state (key sections, buffer, value sections, index, usage, cache) sits behind a
//! mutex held for memory work: index and map updates. The common disk waits happen outside
//! it: direct reads of values (see [`read`]), the background write-out of a full bank (see
//! [`write`](mod@write) and [`background`](super::background)), and syncs (see [`sync`]). Three rare
//! steps wait on the disk under it: a bank taking a new section (one msync of its header
//! page), a new key section (the file made and the directory fsynced, once per 65,536
//! records), and a write-out when no background writer runs (at open).
//! A put that finds both banks busy waits on `Shard::freed` for the write-out to finish.
//!
//! The state's fields are private to this module; its children (`write`, `read`, `sync`,
//! `gc`, `open`, `recover`) are the shard's operations, and everything else reaches a shard
//! through [`Shard`]'s methods.

mod capture;
mod check;
mod gc;
mod open;
mod read;
mod recover;
mod sync;
mod write;

use std::any::Any;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use parking_lot::{Condvar, Mutex as StateLock, MutexGuard};

use crossbeam_channel::Sender;

use crate::error::{Damage, Error, Result};
use crate::format::journal::JournalOp;
use crate::format::record::value_crc;
use crate::format::{buffer_len, keys_len, values_len};
use crate::io::Vfs;
use crate::key::{Key, Value};
use crate::options::Options;

use super::buffer::Buffer;
use super::cache::Cache;
use super::feed::{Change, Feed};
use super::index::Index;
use super::journal::Journal;
use super::keys::Section;
use super::stats::Stats;
use super::usage::Usage;
use super::values::Values;

pub(crate) use capture::Capture;
pub(crate) use check::{LogCounts, Reads, Seen};
pub(crate) use open::probe_direct;
pub(crate) use read::{Fetch, finish_all, finish_many};
use write::Step;

/// A bank's write-out, for the background thread: shard number and bank.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job {
    pub(crate) shard: usize,
    pub(crate) bank: usize,
}

/// One shard of a store.
#[derive(Debug)]
pub(crate) struct Shard {
    state: StateLock<State>,
    /// Signalled when a bank's write-out ends (done or failed).
    freed: Condvar,
    /// Held by the thread that syncs the shard (a journal checkpoint, garbage collection, the
    /// periodic syncer, an explicit sync).
    syncing: Mutex<()>,
    /// Held by the thread running a step of garbage collection (the background collector or
    /// [`Store::gc`](crate::Store::gc)), so that two never work on one shard at once.
    collecting: Mutex<()>,
    /// Whether the read cache can hold anything (fixed at open), so that a batch's reads
    /// skip the lock when there is nothing to keep.
    cache_on: bool,
}

/// What the shard's lock guards. A value in `cache` is always the value of the record
/// `inner`'s index names for its key.
#[derive(Debug)]
struct State {
    inner: Inner,
    cache: Cache,
}

impl State {
    /// First half of a get (see [`Shard::lookup`]).
    fn lookup(&mut self, key: Key) -> Result<std::result::Result<Option<Value>, Fetch>> {
        if let Some(value) = self.cache.get(key) {
            return Ok(Ok(Some(value)));
        }
        let Some(seq) = self.inner.index.get(key) else {
            return Ok(Ok(None));
        };
        let fetch = self.inner.fetch(key, seq)?;
        if fetch.reads_disk() {
            return Ok(Err(fetch));
        }
        let value = fetch.finish()?;
        self.cache.insert(key, &value);
        Ok(Ok(Some(value)))
    }
}

/// The read cache's budget is split: `1 / COPIES_SHARE` of it keeps copies of the latest
/// value sections written (see `values.rs`), the rest caches values by key.
pub(crate) const COPIES_SHARE: usize = 4;

/// Counters shown in [`Stats`].
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    /// Banks written out to value sections.
    flushes: u64,
    /// Puts that waited for a bank's write-out.
    stalls: u64,
    /// Syncs done (each may cover many writers' records).
    syncs: u64,
    /// Value sections garbage collection removed.
    gc_sections: u64,
    /// Values garbage collection moved.
    gc_moved: u64,
    /// Key sections garbage collection removed.
    gc_key_sections: u64,
    /// Puts held back for collection.
    holds: u64,
}

/// A shard's files and in-memory state.
#[derive(Debug)]
struct Inner {
    id: usize,
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    /// Held by the store as a whole; shards of a store opened on its own keep theirs here.
    _lock: Option<Box<dyn Any + Send + Sync>>,
    slots: u32,
    /// Key sections, the first numbered `first`.
    keys: Vec<Section>,
    first: u32,
    buffer: Buffer,
    values: Values,
    index: Index,
    usage: Usage,
    /// Next record number.
    next_seq: u64,
    /// Records below this are durable.
    synced_seq: u64,
    /// Generation of the last sync mark.
    generation: u64,
    /// Where write-outs go.
    jobs: Option<Sender<Job>>,
    /// What recovery dropped at open, if the log ended at a damaged record.
    torn: Option<String>,
    /// Set by a failed sync or write-out: (operation, file, error).
    failed: Option<(&'static str, PathBuf, String)>,
    counters: Counters,
    /// Value sections garbage collection set aside (see `gc`), with why: a value in it is
    /// damaged or unreadable, or a live value was not found in its records. They are neither
    /// collected nor counted as collectable space.
    gc_skip: std::collections::BTreeMap<u32, String>,
    /// Whether background collection runs (and so puts may be held back for it).
    gc_on: bool,
    /// Snapshots under way (see [`capture`]): while any is, collection removes no file, and
    /// so holds no put back.
    pinned: u32,
    /// Whether value space is past [`HOLD_LIMIT`]: puts wait for collection (see
    /// [`Shard::put`]).
    pressure: bool,
    /// Damaged synced key records recovery skipped (only with `Options::keep_going`, for
    /// `toykv check`: open proper refuses the shard at the first).
    refused: Vec<Error>,
}

/// Value sections on disk past this many times their live values, plus one section of
/// slack, hold puts back until collection catches up. Collection starts
/// at [`SPACE_LIMIT`](gc::SPACE_LIMIT); a writer faster than collection meets this.
const HOLD_LIMIT: f64 = 2.0;

/// The longest a call that must not block (from the server's async worker threads) waits
/// for a shard's lock; other calls hold it for memory work only, so this is rarely reached.
const TRY_LOCK: std::time::Duration = std::time::Duration::from_micros(100);

/// The longest one put waits for collection: past it the put returns anyway (collection
/// may be unable to free anything, for example while every section is live).
const HOLD_MAX: std::time::Duration = std::time::Duration::from_millis(100);

impl Inner {
    /// Whether the next record goes in without touching the disk: the active bank has room
    /// (no new section to start) and the record's key section exists.
    fn quick(&self) -> bool {
        let s = u64::from(self.slots);
        let have = u64::from(self.first) + self.keys.len() as u64;
        self.buffer.room() > 0 && self.next_seq / s < have && self.failed.is_none()
    }

    /// Recomputes [`pressure`](Self::pressure): whether collection is behind by more than
    /// [`HOLD_LIMIT`] and has a section to collect (else puts would wait for nothing).
    fn weigh(&mut self) {
        self.pressure = self.gc_on
            && self.pinned == 0
            && self.failed.is_none()
            && self.over(HOLD_LIMIT, u64::from(self.slots)).is_some();
    }

    /// The key section index and record index of `seq`, if its section is kept.
    fn locate(&self, seq: u64) -> Result<(usize, u32)> {
        let s = u64::from(self.slots);
        let sec = (seq / s).checked_sub(u64::from(self.first));
        match sec {
            Some(sec) if (sec as usize) < self.keys.len() => Ok((sec as usize, (seq % s) as u32)),
            _ => Err(Error::corrupt(
                &self.dir,
                0,
                Damage::Other,
                format!("record {seq} is outside the key sections"),
            )),
        }
    }

    /// Refuses writes after a failed sync or write-out.
    fn writable(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some((op, path, why)) => Err(Error::Failed {
                op,
                path: path.clone(),
                why: why.clone(),
            }),
        }
    }

    /// Poisons the shard if `r` is a failed sync ([`Error::poisons`]): the kernel may have
    /// dropped the data it held.
    fn guard<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e @ Error::Sync { op, path, source }) = &r
            && e.poisons()
        {
            self.failed = Some((op.name(), path.clone(), source.to_string()));
        }
        r
    }
}

impl Shard {
    /// Opens or creates shard `id` in `dir` (see [`open`]), with a read cache of
    /// `cache_bytes`. The store holds the directory lock.
    pub(crate) fn open(
        dir: &Path,
        id: usize,
        options: &Options,
        cache_bytes: usize,
    ) -> Result<Shard> {
        let mut inner = open::open(dir, id, options)?;
        // Up to a quarter (whole sections) keeps copies of the latest value sections written,
        // the rest caches values by key.
        let copies = inner.values.keep_copies(cache_bytes / COPIES_SHARE);
        let cache = Cache::new(cache_bytes - copies);
        Ok(Shard {
            cache_on: cache.enabled(),
            state: StateLock::new(State { inner, cache }),
            freed: Condvar::new(),
            syncing: Mutex::new(()),
            collecting: Mutex::new(()),
        })
    }

    /// Where full banks go to be written out: the background writers' channel, or `None` to
    /// write them out in line (before the writers start, and after they stop).
    pub(crate) fn set_jobs(&self, jobs: Option<Sender<Job>>) {
        self.lock().inner.jobs = jobs;
    }

    /// Whether `key` exists (no value is read).
    pub(crate) fn contains(&self, key: Key) -> bool {
        self.lock().inner.index.get(key).is_some()
    }

    /// Live keys.
    pub(crate) fn len(&self) -> usize {
        self.lock().inner.index.len()
    }

    /// Up to `limit` keys in `(from, to)`, in order, with their records.
    pub(crate) fn range(&self, from: Bound<Key>, to: Bound<Key>, limit: usize) -> Vec<(Key, u64)> {
        self.lock().inner.index.range(from, to, limit)
    }

    /// The current values of `keys` (in the order given), for a scan: cached ones copied
    /// (without counting a use), the others located to be read once the lock is released.
    /// Keys deleted since the caller found them are left out.
    pub(crate) fn fetch_keys(&self, keys: &[Key]) -> Result<Vec<Fetch>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let g = self.lock();
        let mut out = Vec::with_capacity(keys.len());
        for &key in keys {
            let Some(seq) = g.inner.index.get(key) else {
                continue;
            };
            out.push(match g.cache.peek(key) {
                Some(value) => Fetch::cached(key, seq, value),
                None => g.inner.fetch(key, seq)?,
            });
        }
        Ok(out)
    }

    /// Waits until no bank is being written out.
    #[cfg(test)]
    pub(crate) fn settle(&self) {
        let mut g = self.lock();
        while g.inner.buffer.writing_out() {
            self.freed.wait(&mut g);
        }
    }

    /// Adds this shard's counts to `st`.
    pub(crate) fn tally(&self, st: &mut Stats) {
        let g = self.lock();
        let (i, c, n) = (&g.inner, g.cache.stats(), &g.inner.counters);
        let s = u64::from(i.slots);
        st.keys += i.index.len() as u64;
        st.index_bytes += i.index.bytes() as u64;
        st.records += i.next_seq - u64::from(i.first) * s;
        st.slots_used += i.usage.live_values();
        st.value_sections += i.values.count() as u64;
        st.key_sections += i.keys.len() as u64;
        st.direct_io = i.values.direct();
        if st.torn_tail.is_none() {
            st.torn_tail.clone_from(&i.torn);
        }
        st.cache_hits += c.hits;
        st.cache_misses += c.misses;
        st.cache_entries += c.entries;
        st.cache_bytes += c.bytes;
        st.cache_capacity += c.capacity;
        let (copies, copy_bytes) = i.values.copies();
        st.recent_sections += copies;
        st.recent_bytes += copy_bytes;
        st.flushes += n.flushes;
        st.stalls += n.stalls;
        st.syncs += n.syncs;
        st.gc_sections += n.gc_sections;
        st.gc_moved += n.gc_moved;
        st.gc_key_sections += n.gc_key_sections;
        st.gc_holds += n.holds;
        st.gc_set_aside.extend(i.gc_skip.values().cloned());
        st.disk_bytes += i.values.count() as u64 * values_len(i.slots)
            + i.keys.len() as u64 * keys_len(i.slots)
            + buffer_len(i.slots);
    }

    /// Applies an operation replayed from the journal (open, before the background writers
    /// start: a full bank is written out in line).
    pub(crate) fn apply(&self, op: JournalOp<'_>) -> Result<()> {
        let mut g = self.lock();
        match op {
            JournalOp::Put(key, value) => {
                let key = Key(key);
                match g.inner.put(key, value, value_crc(value))? {
                    Step::Done(..) => g.cache.write(key, value),
                    Step::Wait => {
                        let what = "replay found both banks busy, with no write-out running";
                        return Err(Error::corrupt(&g.inner.buffer.path, 0, Damage::Other, what));
                    }
                }
            }
            JournalOp::Delete(key) => {
                let key = Key(key);
                g.inner.delete(key)?;
                g.cache.remove(key);
            }
            JournalOp::Batch(_) => {}
        }
        Ok(())
    }

    /// Live values per value section on disk (tests).
    #[cfg(test)]
    pub(crate) fn live_per_section(&self) -> Vec<u32> {
        let g = self.lock();
        let i = &g.inner;
        i.values.sections().map(|n| i.usage.live(n)).collect()
    }

    /// Turns holding puts back for collection on or off (tests that step collection
    /// themselves, with no collector thread); whether puts are held back now.
    #[cfg(test)]
    pub(crate) fn hold_for_gc(&self, on: bool) -> bool {
        let mut g = self.lock();
        g.inner.gc_on = on;
        g.inner.weigh();
        g.inner.pressure
    }

    /// Whether puts are held back for collection now (tests).
    #[cfg(test)]
    pub(crate) fn pressure(&self) -> bool {
        self.lock().inner.pressure
    }

    /// Whether collection set value section `n` aside (tests).
    #[cfg(test)]
    pub(crate) fn set_aside(&self, n: u32) -> bool {
        self.lock().inner.gc_skip.contains_key(&n)
    }

    /// Passes `r` through the shard's poisoning decision (tests).
    #[cfg(test)]
    pub(crate) fn guard<T>(&self, r: Result<T>) -> Result<T> {
        self.lock().inner.guard(r)
    }

    /// The path of value section `n` (tests).
    #[cfg(test)]
    pub(crate) fn value_path(&self, n: u32) -> PathBuf {
        self.lock().inner.values.path(n)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way the
        // checksums would not catch, so a poisoned lock is still usable.
        self.state.lock()
    }

    /// Runs a write step, waiting while both banks are busy.
    fn write<T>(
        &self,
        mut step: impl FnMut(&mut State) -> Result<Step<T>>,
    ) -> Result<(T, u64, MutexGuard<'_, State>)> {
        let mut g = self.lock();
        loop {
            match step(&mut g)? {
                Step::Done(t, seq) => return Ok((t, seq, g)),
                Step::Wait => {
                    g.inner.counters.stalls += 1;
                    self.freed.wait(&mut g);
                }
            }
        }
    }

    /// Inserts or overwrites `key`; with a journal, appends the put's entry under the same
    /// lock and returns its ticket.
    pub(crate) fn put(
        &self,
        key: Key,
        value: &[u8],
        journal: Option<&Journal>,
        feed: Option<&dyn Feed>,
    ) -> Result<Option<u64>> {
        let crc = value_crc(value);
        let (ticket, _, g) = self.write(|s| {
            if let Some(j) = journal {
                j.writable()?;
            }
            Ok(match s.inner.put(key, value, crc)? {
                Step::Done((), seq) => {
                    s.cache.write(key, value);
                    if let Some(f) = feed {
                        f.change(Change::Put(key, value));
                    }
                    Step::Done(journal.map(|j| j.put(key, value)), seq)
                }
                Step::Wait => Step::Wait,
            })
        })?;
        let held = g.inner.pressure;
        drop(g);
        if held {
            self.hold_back();
        }
        Ok(ticket)
    }

    /// Deletes `key`; returns whether it existed and, with a journal, the ticket of the
    /// delete's entry (appended under the same lock) if it did.
    pub(crate) fn delete(
        &self,
        key: Key,
        journal: Option<&Journal>,
        feed: Option<&dyn Feed>,
    ) -> Result<(bool, Option<u64>)> {
        let mut g = self.lock();
        if let Some(j) = journal {
            j.writable()?;
        }
        let (existed, _) = g.inner.delete(key)?;
        g.cache.remove(key);
        if let (true, Some(f)) = (existed, feed) {
            f.change(Change::Delete(key));
        }
        let ticket = journal.filter(|_| existed).map(|j| j.delete(key));
        Ok((existed, ticket))
    }

    /// The lock, unless another thread holds it longer than [`TRY_LOCK`].
    fn try_lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.try_lock_for(TRY_LOCK)
    }

    /// The lock for a write that must not wait (see [`try_put`](Self::try_put)): `None` when
    /// the lock is busy or the next record would touch the disk; an error when the shard or
    /// the journal refuses writes.
    fn quick_lock(&self, journal: Option<&Journal>) -> Result<Option<MutexGuard<'_, State>>> {
        let Some(g) = self.try_lock() else {
            return Ok(None);
        };
        if !g.inner.quick() {
            return Ok(None);
        }
        if let Some(j) = journal {
            j.writable()?;
        }
        Ok(Some(g))
    }

    /// A put that never waits on the disk: `None` (nothing done) when it would — the lock is
    /// busy, the bank is full or a new key section is due; else the journal ticket, if any,
    /// and whether puts are held back for collection (the caller waits as it can).
    pub(crate) fn try_put(
        &self,
        key: Key,
        value: &[u8],
        journal: Option<&Journal>,
        feed: Option<&dyn Feed>,
    ) -> Result<Option<(Option<u64>, bool)>> {
        let crc = value_crc(value);
        let Some(mut g) = self.quick_lock(journal)? else {
            return Ok(None);
        };
        let s = &mut *g;
        match s.inner.put(key, value, crc)? {
            Step::Done(..) => {
                s.cache.write(key, value);
                if let Some(f) = feed {
                    f.change(Change::Put(key, value));
                }
                let ticket = journal.map(|j| j.put(key, value));
                Ok(Some((ticket, s.inner.pressure)))
            }
            Step::Wait => Ok(None),
        }
    }

    /// A delete that never waits on the disk (see [`try_put`](Self::try_put)): whether the
    /// key existed and the journal ticket, if any.
    pub(crate) fn try_delete(
        &self,
        key: Key,
        journal: Option<&Journal>,
        feed: Option<&dyn Feed>,
    ) -> Result<Option<(bool, Option<u64>)>> {
        let Some(mut g) = self.quick_lock(journal)? else {
            return Ok(None);
        };
        let (existed, _) = g.inner.delete(key)?;
        g.cache.remove(key);
        if let (true, Some(f)) = (existed, feed) {
            f.change(Change::Delete(key));
        }
        let ticket = journal.filter(|_| existed).map(|j| j.delete(key));
        Ok(Some((existed, ticket)))
    }

    /// A lookup that never waits for a busy lock: `None` when it would.
    pub(crate) fn try_lookup(
        &self,
        key: Key,
    ) -> Option<Result<std::result::Result<Option<Value>, Fetch>>> {
        let mut g = self.try_lock()?;
        Some(g.lookup(key))
    }

    /// Takes the shard's lock for an atomic batch (see [`Held`]).
    pub(crate) fn hold(&self) -> Held<'_> {
        Held(self.lock())
    }

    /// Waits until puts can move on to the other bank (no write-out of it is running).
    pub(crate) fn wait_ready(&self) {
        let mut g = self.lock();
        while !g.inner.buffer.ready() {
            g.inner.counters.stalls += 1;
            self.freed.wait(&mut g);
        }
    }

    /// The number the next record of the log will take.
    pub(crate) fn next_seq(&self) -> u64 {
        self.lock().inner.next_seq
    }

    /// Values one bank holds: the most one batch may put into this shard.
    pub(crate) fn bank_slots(&self) -> u32 {
        self.lock().inner.slots
    }

    /// Whether puts are held back for collection now.
    pub(crate) fn pressed(&self) -> bool {
        // Never waits: a lock held now says nothing either way.
        self.state.try_lock().is_some_and(|g| g.inner.pressure)
    }

    /// Waits while value space is past [`HOLD_LIMIT`], so that a sustained stream of
    /// overwrites cannot outrun collection, up to [`HOLD_MAX`] (after a put or an atomic
    /// batch).
    pub(crate) fn hold_back(&self) {
        let start = std::time::Instant::now();
        while self.lock().inner.pressure && start.elapsed() < HOLD_MAX {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        self.lock().inner.counters.holds += 1;
    }

    /// Moves the value of `key` to a new slot if record `seq` still holds it (garbage
    /// collection); returns whether it moved.
    pub(crate) fn relocate(&self, key: Key, seq: u64, value: &[u8]) -> Result<bool> {
        let crc = value_crc(value);
        let (moved, _, _g) = self.write(|s| {
            if s.inner.index.get(key) != Some(seq) {
                return Ok(Step::Done(false, seq));
            }
            Ok(match s.inner.put(key, value, crc)? {
                Step::Done((), seq) => Step::Done(true, seq),
                Step::Wait => Step::Wait,
            })
        })?;
        Ok(moved)
    }

    /// First half of a get: the answer, or the read to do outside the lock.
    pub(crate) fn lookup(&self, key: Key) -> Result<std::result::Result<Option<Value>, Fetch>> {
        let mut g = self.lock();
        g.lookup(key)
    }

    /// Caches values read by a batch (key, record, value), under one hold of the lock; each
    /// only if its key still names that record (no put or delete came in between). Nothing
    /// is done, and no lock taken, when the cache is off.
    pub(crate) fn keep_many<'v>(&self, read: impl IntoIterator<Item = (Key, u64, &'v Value)>) {
        if !self.cache_on {
            return;
        }
        let mut g = self.lock();
        for (key, seq, value) in read {
            if g.inner.index.get(key) == Some(seq) {
                g.cache.insert(key, value);
            }
        }
    }

    /// Second half of a get: reads and checks the value without the lock, then caches it
    /// unless a put or delete of the key came in between.
    pub(crate) fn read(&self, fetch: Fetch) -> Result<Value> {
        let (key, seq) = (fetch.key, fetch.seq);
        let value = fetch.finish()?;
        if self.cache_on {
            let mut g = self.lock();
            if g.inner.index.get(key) == Some(seq) {
                g.cache.insert(key, &value);
            }
        }
        Ok(value)
    }
}

/// A shard's lock held by an atomic batch: the batch checks there is room for its puts, then
/// writes every one of its records while no one else can write to or read from the shard.
pub(crate) struct Held<'a>(MutexGuard<'a, State>);

impl Held<'_> {
    /// Refuses the batch when the shard refuses writes (a failed sync or write-out).
    pub(crate) fn writable(&self) -> Result<()> {
        self.0.inner.writable()
    }

    /// Whether `puts` values go in without waiting for a write-out: into the active bank and,
    /// once that is full, the other one if it is free.
    pub(crate) fn fits(&self, puts: usize) -> bool {
        let b = &self.0.inner.buffer;
        let other = if b.ready() { self.0.inner.slots } else { 0 };
        puts <= b.room() as usize + other as usize
    }

    /// The number the next record will take.
    pub(crate) fn next_seq(&self) -> u64 {
        self.0.inner.next_seq
    }

    /// Whether `key` exists.
    pub(crate) fn has(&self, key: Key) -> bool {
        self.0.inner.index.get(key).is_some()
    }

    /// Puts `value` at `key`; the caller checked it [`fits`](Self::fits).
    pub(crate) fn put(&mut self, key: Key, value: &[u8]) -> Result<()> {
        let s = &mut *self.0;
        match s.inner.put(key, value, value_crc(value))? {
            Step::Done(..) => {
                s.cache.write(key, value);
                Ok(())
            }
            Step::Wait => Err(Error::internal(
                &s.inner.buffer.path,
                "a batch found both banks busy after checking they were not",
            )),
        }
    }

    /// Deletes `key`; whether it existed.
    pub(crate) fn delete(&mut self, key: Key) -> Result<bool> {
        let s = &mut *self.0;
        let (existed, _) = s.inner.delete(key)?;
        s.cache.remove(key);
        Ok(existed)
    }

    /// Whether puts are held back for collection.
    pub(crate) fn pressed(&self) -> bool {
        self.0.inner.pressure
    }

    /// [`Shard::lookup`] of each of `keys`, in order, under this hold of the lock.
    pub(crate) fn lookup_many(
        &mut self,
        keys: &[Key],
    ) -> Vec<Result<std::result::Result<Option<Value>, Fetch>>> {
        keys.iter().map(|&key| self.0.lookup(key)).collect()
    }
}
