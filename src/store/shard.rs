//! One shard: its files, index and cache behind one lock, and the waits around that lock.
//!
//! A shard's state (key sections, buffer, value sections, index, usage, cache) sits behind a
//! mutex held for memory work: index and map updates. The common disk waits happen outside
//! it: direct reads of values (see [`read`](super::read)), the background write-out of a full
//! bank (see [`flush`](super::flush)), and syncs (see [`sync`](super::sync)). Three rare
//! steps wait on the disk under it: a bank taking a new section (one msync of its header
//! page), a new key section (the file made and the directory fsynced, once per 65,536
//! records), and a write-out when no background writer runs (at open).
//! A put that finds both banks busy waits on [`Shard::freed`] for the write-out to finish.

use std::any::Any;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use parking_lot::{Condvar, Mutex as StateLock, MutexGuard};

use crossbeam_channel::Sender;

use crate::error::{Error, Result};
use crate::format::BANKS;
use crate::format::record::value_crc;
use crate::io::Vfs;
use crate::key::{Key, Value};

use super::buffer::Buffer;
use super::cache::Cache;
use super::index::Index;
use super::journal::Journal;
use super::keys::Section;
use super::read::Fetch;
use super::usage::Usage;
use super::values::Values;
use super::write::Step;

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
    pub(crate) freed: Condvar,
    /// Held by the thread that syncs the shard (a journal checkpoint, garbage collection, the
    /// periodic syncer, an explicit sync).
    pub(crate) syncing: Mutex<()>,
    /// Held by the thread running a step of garbage collection (the background collector or
    /// [`Store::gc`](crate::Store::gc)), so that two never work on one shard at once.
    pub(crate) collecting: Mutex<()>,
}

/// What the shard's lock guards. A value in `cache` is always the value of the record
/// `inner`'s index names for its key.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) inner: Inner,
    pub(crate) cache: Cache,
}

/// Counters shown in [`Stats`](super::Stats).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    /// Banks written out to value sections.
    pub(crate) flushes: u64,
    /// Puts that waited for a bank's write-out.
    pub(crate) stalls: u64,
    /// Syncs done (each may cover many writers' records).
    pub(crate) syncs: u64,
    /// Value sections garbage collection removed.
    pub(crate) gc_sections: u64,
    /// Values garbage collection moved.
    pub(crate) gc_moved: u64,
    /// Key sections garbage collection removed.
    pub(crate) gc_key_sections: u64,
    /// Puts held back for collection.
    pub(crate) holds: u64,
}

/// A shard's files and in-memory state.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) id: usize,
    pub(crate) dir: PathBuf,
    pub(crate) vfs: Arc<dyn Vfs>,
    /// Held by the store as a whole; shards of a store opened on its own keep theirs here.
    pub(crate) _lock: Option<Box<dyn Any + Send + Sync>>,
    pub(crate) slots: u32,
    /// Key sections, the first numbered `first`.
    pub(crate) keys: Vec<Section>,
    pub(crate) first: u32,
    pub(crate) buffer: Buffer,
    /// The bank puts fill.
    pub(crate) active: usize,
    /// Next free slot index in the active bank (`slots` when full or when it holds no section).
    pub(crate) fill: u32,
    /// Banks being written out.
    pub(crate) flushing: [bool; BANKS],
    /// Per bank, slot indexes written since the last sync plan.
    pub(crate) dirty: [Option<(u32, u32)>; BANKS],
    pub(crate) values: Values,
    pub(crate) index: Index,
    pub(crate) usage: Usage,
    /// Next record number.
    pub(crate) next_seq: u64,
    /// Records below this are durable.
    pub(crate) synced_seq: u64,
    /// Generation of the last sync mark.
    pub(crate) generation: u64,
    /// Where write-outs go.
    pub(crate) jobs: Option<Sender<Job>>,
    /// What recovery dropped at open, if the log ended at a damaged record.
    pub(crate) torn: Option<String>,
    /// Set by a failed sync or write-out: (operation, file, error).
    pub(crate) failed: Option<(&'static str, PathBuf, String)>,
    pub(crate) counters: Counters,
    /// Value sections garbage collection gave up on (see `gc`).
    pub(crate) gc_skip: std::collections::BTreeSet<u32>,
    /// Whether background collection runs (and so puts may be held back for it).
    pub(crate) gc_on: bool,
    /// Whether value space is past [`HOLD_LIMIT`]: puts wait for collection (see
    /// [`Shard::put`]).
    pub(crate) pressure: bool,
    /// Damaged synced key records recovery skipped (only with `Options::keep_going`, for
    /// `toykv check`: open proper refuses the shard at the first).
    pub(crate) refused: Vec<Error>,
}

/// Value sections on disk past this many times their live values, plus one section of
/// slack, hold puts back until collection catches up. Collection starts
/// at [`SPACE_LIMIT`](super::gc::SPACE_LIMIT); a writer faster than collection meets this.
pub(crate) const HOLD_LIMIT: f64 = 1.2;

/// The longest one put waits for collection: past it the put returns anyway (collection
/// may be unable to free anything, for example while every section is live).
const HOLD_MAX: std::time::Duration = std::time::Duration::from_millis(100);

impl Inner {
    /// Recomputes [`pressure`](Self::pressure): whether collection is behind by more than
    /// [`HOLD_LIMIT`] and has a section to collect (else puts would wait for nothing).
    pub(crate) fn weigh(&mut self) {
        self.pressure = self.gc_on
            && self.failed.is_none()
            && self.over(HOLD_LIMIT, u64::from(self.slots)).is_some();
    }

    /// The key section index and record index of `seq`, if its section is kept.
    pub(crate) fn locate(&self, seq: u64) -> Result<(usize, u32)> {
        let s = u64::from(self.slots);
        let sec = (seq / s).checked_sub(u64::from(self.first));
        match sec {
            Some(sec) if (sec as usize) < self.keys.len() => Ok((sec as usize, (seq % s) as u32)),
            _ => Err(Error::corrupt(
                &self.dir,
                0,
                format!("record {seq} is outside the key sections"),
            )),
        }
    }

    /// Refuses writes after a failed sync or write-out.
    pub(crate) fn writable(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some((op, path, why)) => Err(Error::Failed {
                op,
                path: path.clone(),
                why: why.clone(),
            }),
        }
    }

    /// Poisons the shard if `r` is a failed sync: the kernel may have dropped the data it held.
    pub(crate) fn guard<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(Error::Io { op, path, source }) = &r
            && matches!(*op, "fdatasync" | "msync" | "fsync")
        {
            self.failed = Some((op, path.clone(), source.to_string()));
        }
        r
    }
}

impl Shard {
    pub(crate) fn new(inner: Inner, cache: Cache) -> Shard {
        Shard {
            state: StateLock::new(State { inner, cache }),
            freed: Condvar::new(),
            syncing: Mutex::new(()),
            collecting: Mutex::new(()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
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
    ) -> Result<Option<u64>> {
        let crc = value_crc(value);
        let (ticket, _, g) = self.write(|s| {
            if let Some(j) = journal {
                j.writable()?;
            }
            Ok(match s.inner.put(key, value, crc)? {
                Step::Done((), seq) => {
                    s.cache.write(key, value);
                    Step::Done(journal.map(|j| j.put(key, value)), seq)
                }
                Step::Wait => Step::Wait,
            })
        })?;
        let held = g.inner.pressure;
        drop(g);
        if held {
            self.hold();
        }
        Ok(ticket)
    }

    /// Deletes `key`; returns whether it existed and, with a journal, the ticket of the
    /// delete's entry (appended under the same lock) if it did.
    pub(crate) fn delete(
        &self,
        key: Key,
        journal: Option<&Journal>,
    ) -> Result<(bool, Option<u64>)> {
        let mut g = self.lock();
        if let Some(j) = journal {
            j.writable()?;
        }
        let (existed, _) = g.inner.delete(key)?;
        g.cache.remove(key);
        let ticket = journal.filter(|_| existed).map(|j| j.delete(key));
        Ok((existed, ticket))
    }

    /// Waits while value space is past [`HOLD_LIMIT`], so that a sustained stream of
    /// overwrites cannot outrun collection, up to [`HOLD_MAX`].
    fn hold(&self) {
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
        if let Some(value) = g.cache.get(key) {
            return Ok(Ok(Some(value)));
        }
        let Some(seq) = g.inner.index.get(key) else {
            return Ok(Ok(None));
        };
        let fetch = g.inner.fetch(key, seq)?;
        if fetch.reads_disk() {
            return Ok(Err(fetch));
        }
        let value = fetch.finish()?;
        g.cache.insert(key, &value);
        Ok(Ok(Some(value)))
    }

    /// Second half of a get: reads and checks the value without the lock, then caches it
    /// unless a put or delete of the key came in between.
    pub(crate) fn read(&self, fetch: Fetch) -> Result<Value> {
        let (key, seq) = (fetch.key, fetch.seq);
        let value = fetch.finish()?;
        let mut g = self.lock();
        if g.inner.index.get(key) == Some(seq) {
            g.cache.insert(key, &value);
        }
        Ok(value)
    }
}
