//! The store: put, get, delete, scan, sync over shards, each with key sections, value
//! sections and a write buffer.
//!
//! # Layout: one module per on-disk object or concern
//!
//! | module | owns |
//! |---|---|
//! | [`describe`] | the `STORE` file: shard count and section size, written last at creation |
//! | [`keys`] | one `.k` key section: its map, reading and writing records |
//! | [`values`] | the `.v` value sections of a shard: direct reads of slots, writing a bank out |
//! | [`buffer`] | `buffer.b`: the sync marks and the two banks, and the bank hand-off |
//! | [`journal`] | the store's `journal` (durability `always`): commits, checkpoints, the committer thread of [`Store::notify`], reading it at open |
//! | [`intent`] | the `intent` of atomic batches: written before a batch changes a shard, finished at open |
//! | [`feed`] | [`Feed`]: what is told of each write, under the shards' locks (the server's replication stream) |
//! | [`batch`] | [`Batch`], [`Store::apply`] and deferred durability ([`Commit`], [`Store::wait`]) |
//! | [`file`](mod@file) | what the files share: creating one complete, spans to make durable, header errors |
//! | [`index`], [`usage`], [`cache`] | in memory: key → record, live counts per section, the read cache |
//! | [`shard`] | a shard's state behind its lock, private to it; its operations in children: `write`, `read`, `sync`, `gc`, `open`, `recover` (the log walk) |
//! | [`background`] | the threads: bank write-outs, periodic syncs, the collector |
//! | [`scan`], [`stats`] | the scan iterator and [`Stats`] |
//! | [`snapshot`] | a consistent copy of the live store as a stream of files ([`Store::snapshot`], [`restore`], [`Store::backup`]) |
//!
//! Modules import downward: the file modules (`keys`, `values`, `buffer`, `journal`, `file`)
//! know nothing of shards; the journal is handed what applies a replayed entry and what syncs
//! every shard.
//!
//! # Shards
//! A store is made of N shards (fixed at creation, recorded in `STORE`), each a directory
//! with its own files, lock, index and cache; a key goes to one by a hash of its bytes
//! ([`shard_of`](crate::format::shard_of())). Operations on different shards run in parallel;
//! scans merge the shards' ordered indexes. Each shard addresses 2^32 value slots.
//!
//! # Write path
//! A put copies its value into the active bank of the shard's buffer and its key record into
//! the key section, both memory stores, so it survives a process crash as soon as it
//! returns. A full bank is written out to a `.v` file by a background thread while puts fill
//! the other bank (see [`buffer`] for the hand-off).
//!
//! # Durability
//! [`Durability`] chooses what a returned put survives; a shard sync makes values durable,
//! then records, then the sync mark; [`journal`] is the group commit of `always` through
//! the store's journal, and its recovery at open. A write can also be applied without
//! waiting ([`Store::put_deferred`], [`Store::apply`]): its [`Commit`] is then waited for
//! with [`Store::wait`], or [`Store::notify`] calls back from the committer thread.
//!
//! # Atomic batches
//! [`Store::apply`] holds every shard a [`Batch`] writes to while it applies it, after writing
//! its [`intent`]; with a journal it first waits until the batch before is durable. Open
//! finishes a batch a crash cut short, and applies again, after a replay, the batch that never
//! reached the journal (see [`crate::format::intent`]).
//!
//! # Reads
//! A get finds the record number in the index, reads the record from the mapped key section,
//! then reads the value from its bank or with one aligned direct read from its value section
//! (outside the lock), and checks it against the record's value checksum. Each shard keeps a
//! read cache ([`cache`], S3-FIFO) that always agrees with its index: a put caches its value,
//! a delete removes it, a read caches what it read only if the index still names the record
//! it was read from. Scans use cached values but neither cache nor count what they find.
//! [`Store::get_many`] and scan batches read all their uncached values in one batch through
//! the store's [`Reader`] (io_uring, up to 64 reads in flight per submission, or `pread` on up
//! to 8 threads where io_uring is unavailable or turned off); each value is checked on its
//! own.
//!
//! # Garbage collection
//! Value sections with the most dead slots are emptied by moving their live values and then
//! removed; key sections whose records are all dead are removed (the shard's `gc`).

mod background;
mod batch;
mod buffer;
mod cache;
pub(crate) mod check;
mod describe;
mod feed;
mod file;
pub(crate) mod index;
mod intent;
mod journal;
mod keys;
mod scan;
mod shard;
mod snapshot;
mod stats;
mod usage;
mod values;

use std::any::Any;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Context, Damage, Error, Result};
use crate::format::journal::{JOURNAL_NAME, JournalOp};
use crate::format::{shard_name, shard_of};
use crate::io::Reader;
use crate::key::{Key, Value};
use crate::options::{Durability, Options};

pub use batch::{Applied, Batch, Commit, Quick};
pub use feed::{Change, Feed};
pub use scan::Scan;
pub use snapshot::{Snapshot, restore};
pub use stats::Stats;

use background::Background;
use shard::{Fetch, Shard};

/// A key/value store in one data directory. `Send + Sync`; share it with an `Arc`.
///
/// What a returned `put` or `delete` survives depends on the [`Durability`] chosen at open: a
/// crash of the process always; power loss with `always`, or once [`sync`](Self::sync) (or
/// [`close`](Self::close)) returns, or (with `periodic`) once the next periodic sync ran.
/// Dropping the store does not sync.
///
/// ```
/// # fn main() -> toykv::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let data = tmp.path().join("data");
/// use toykv::Store;
///
/// let store = Store::open(&data)?;              // creates or reopens
/// store.put(42u64, b"hello")?;                  // a key is a u64 (big-endian) or a [u8; 8]
/// assert_eq!(store.get(42u64)?.as_deref(), Some(&b"hello"[..]));
/// for item in store.scan(0u64..=100) {          // ordered, inclusive
///     let (key, value) = item?;
///     println!("{} -> {:?}", key.as_u64(), &value[..]);
/// }
/// assert!(store.delete(42u64)?);
/// store.sync()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    shards: Arc<[Shard]>,
    durability: Durability,
    /// The journal that makes puts durable with durability `always`.
    journal: Option<Arc<journal::Journal>>,
    /// The thread that commits for [`notify`](Self::notify)'s waiters.
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// What opening dropped from the journal's tail, if it looked like a torn commit.
    journal_torn: Option<journal::Torn>,
    background: Mutex<Background>,
    /// The intent of atomic batches; its lock is the batch lock, taken before any shard's.
    intent: parking_lot::Mutex<intent::IntentFile>,
    /// Reads batches of values: `get_many` and scans (io_uring or pread, chosen at open).
    reader: Arc<dyn Reader>,
    /// What is told of each write (see [`feed`](Self::feed)).
    feed: std::sync::OnceLock<Arc<dyn Feed>>,
    /// The file system the store's files are on.
    vfs: Arc<dyn crate::io::Vfs>,
    _lock: Box<dyn Any + Send + Sync>,
}

impl Store {
    /// Opens the store in `dir` with default [`Options`], creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, Options::new())
    }

    /// Opens the store in `dir` with `options`, creating it if needed. Recovers every shard
    /// from a crash, shards in parallel: torn tails are dropped, interrupted write-outs
    /// redone, and damage to anything synced is reported (see `docs/FORMAT.md`).
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        options.check()?;
        let dir = dir.as_ref();
        let vfs = options.vfs.clone();
        vfs.create_dir(dir).ctx("create directory", dir)?;
        let lock = vfs.lock(dir).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => Error::Locked {
                dir: dir.to_path_buf(),
            },
            _ => Error::io("lock", dir, e),
        })?;
        if options.direct_io {
            shard::probe_direct(&*vfs, dir)?;
        }
        let (count, slots, fresh) = describe::read(&*vfs, dir, &options)?;
        // Unset, the section size is the store's own (or the default for a new one).
        let options = options.section_slots(slots);
        let found = journal::find(dir, &options, fresh)?;
        let (jobs, queue) = crossbeam_channel::unbounded();
        let per_shard = options.cache() / count as usize;
        let opened: Vec<Result<Shard>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..count)
                .map(|i| {
                    let (path, options) = (dir.join(shard_name(i)), &options);
                    let what = format!("opening {}", path.display());
                    (
                        s.spawn(move || Shard::open(&path, i as usize, options, per_shard)),
                        what,
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(h, what)| Error::joined(h.join(), what))
                .collect()
        });
        let mut shards = Vec::with_capacity(opened.len());
        for shard in opened {
            shards.push(shard?);
        }
        if fresh {
            describe::write(&*vfs, dir, &options, count)?;
        }
        let (journal, journal_torn, intent) = recover(dir, &options, found, &shards)?;
        let journal = journal.map(Arc::new);
        for shard in &shards {
            shard.set_jobs(Some(jobs.clone()));
        }
        drop(jobs);
        let shards: Arc<[Shard]> = shards.into();
        let writers = shards.len().min(2);
        let background = Background::start(
            shards.clone(),
            queue,
            writers,
            options.durability,
            options.gc,
        )?;
        let committer = match &journal {
            Some(j) => {
                let (j, shards) = (j.clone(), shards.clone());
                let sync = move || shards.iter().try_for_each(Shard::sync);
                let spawned = std::thread::Builder::new()
                    .name("toykv-commit".into())
                    .spawn(move || j.commit_loop(&sync))
                    .map_err(|e| Error::io("spawn the committer thread", dir, e))?;
                Some(spawned)
            }
            None => None,
        };
        Ok(Store {
            dir: dir.to_path_buf(),
            committer: Mutex::new(committer),
            shards,
            durability: options.durability,
            journal,
            journal_torn,
            background: Mutex::new(background),
            intent: parking_lot::Mutex::new(intent),
            reader: vfs.reader(options.wants_io_uring()),
            feed: std::sync::OnceLock::new(),
            vfs,
            _lock: lock,
        })
    }

    /// Installs `feed`, told of every write applied from now on (see [`Feed`]); once per
    /// store: `false` (and nothing changed) when one is installed already.
    pub fn set_feed(&self, feed: Arc<dyn Feed>) -> bool {
        self.feed.set(feed).is_ok()
    }

    /// The installed feed.
    fn feed(&self) -> Option<&dyn Feed> {
        self.feed.get().map(|f| &**f)
    }

    fn shard(&self, key: Key) -> (usize, &Shard) {
        let i = shard_of(key.0, self.shards.len() as u32) as usize;
        (i, &self.shards[i])
    }

    /// Inserts or overwrites `key` with `value` (0 to 256 bytes).
    pub fn put(&self, key: impl Into<Key>, value: impl AsRef<[u8]>) -> Result<()> {
        let commit = self.put_deferred(key, value)?;
        self.wait(commit)
    }

    /// The value of `key`, or `None`. A value in a value section is read after the shard's
    /// lock is released, so gets wait on the disk in parallel.
    pub fn get(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        match self.lookup(key)? {
            Lookup::Ready(v) => Ok(v),
            Lookup::Pending(p) => self.read(p).map(Some),
        }
    }

    /// The first half of [`get`](Self::get): answers at once when no disk read is needed (the
    /// key is absent, cached, or in a bank), else says which read is. For callers that run
    /// disk reads somewhere else than their fast path (the server does).
    pub fn lookup(&self, key: impl Into<Key>) -> Result<Lookup> {
        let key = key.into();
        let (i, shard) = self.shard(key);
        Ok(match shard.lookup(key)? {
            Ok(v) => Lookup::Ready(v),
            Err(fetch) => Lookup::Pending(PendingRead(i, fetch)),
        })
    }

    /// The second half of [`get`](Self::get): reads and checks the value (no lock held while
    /// waiting on the disk), and caches it unless a put or delete of the key came in between.
    pub fn read(&self, pending: PendingRead) -> Result<Value> {
        let PendingRead(i, fetch) = pending;
        match self.shards.get(i) {
            Some(shard) => shard.read(fetch),
            None => fetch.finish(),
        }
    }

    /// The second half of several [`get`](Self::get)s: reads every pending value in one batch
    /// (as [`get_many`](Self::get_many) does), in the order given, each answered on its own.
    pub fn read_many(&self, pending: Vec<PendingRead>) -> Vec<Result<Value>> {
        let (shards, fetches): (Vec<usize>, Vec<Fetch>) =
            pending.into_iter().map(|PendingRead(i, f)| (i, f)).unzip();
        let keys: Vec<(Key, u64)> = fetches.iter().map(|f| (f.key, f.seq)).collect();
        let values = shard::finish_many(fetches, &*self.reader);
        for (i, shard) in self.shards.iter().enumerate() {
            let read = shards.iter().zip(&keys).zip(&values);
            shard.keep_many(read.filter_map(|((&s, &(key, seq)), value)| {
                (s == i).then_some((key, seq, value.as_ref().ok()?))
            }));
        }
        values
    }

    /// The values of `keys`, in the order given, each answered on its own as
    /// [`get`](Self::get) would: `Ok(None)` for an absent key, an error for that key alone
    /// when its value cannot be read or fails its checksum (the others are still answered).
    /// A key given twice is answered twice. The keys are looked up with the lock of every
    /// shard they belong to held at once (cache, bank, or a slot to read), so an atomic
    /// [`Batch`] is seen whole or not at all; then every value to read from disk is submitted at
    /// once, through io_uring where available ([`Stats::read_path`]), [`GET_MANY_CHUNK`]
    /// keys at a time. Values read are cached unless a write replaced them meanwhile.
    ///
    /// ```
    /// # fn main() -> toykv::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let store = toykv::Store::open(tmp.path().join("data"))?;
    /// store.put(1u64, b"one")?;
    /// let got = store.get_many(&[1u64, 2, 1]);
    /// assert_eq!(got[0].as_ref().unwrap().as_deref(), Some(&b"one"[..]));
    /// assert!(got[1].as_ref().unwrap().is_none());
    /// assert_eq!(got.len(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_many<K: Into<Key> + Copy>(&self, keys: &[K]) -> Vec<Result<Option<Value>>> {
        let mut out: Vec<Result<Option<Value>>> = Vec::with_capacity(keys.len());
        // Per shard, the answers' places in `out` and their keys, for one lock hold each.
        let mut groups: Vec<(Vec<usize>, Vec<Key>)> = vec![Default::default(); self.shards.len()];
        for chunk in keys.chunks(GET_MANY_CHUNK) {
            for &key in chunk {
                let key = key.into();
                let (i, _) = self.shard(key);
                groups[i].0.push(out.len());
                groups[i].1.push(key);
                out.push(Ok(None));
            }
            // (answer's place in `out`, shard) of each value to read.
            let mut pending = Vec::new();
            let mut fetches = Vec::new();
            // Every shard of the chunk held at once (in shard order, as a batch takes them),
            // so an atomic batch is seen whole or not at all.
            let mut held: Vec<_> = groups
                .iter()
                .enumerate()
                .map(|(i, (_, keys))| (!keys.is_empty()).then(|| self.shards[i].hold()))
                .collect();
            let found: Vec<_> = groups
                .iter()
                .zip(&mut held)
                .map(|((_, keys), h)| h.as_mut().map(|h| h.lookup_many(keys)))
                .collect();
            drop(held);
            for (i, ((places, keys), found)) in groups.iter_mut().zip(found).enumerate() {
                let Some(found) = found else {
                    continue;
                };
                for (at, found) in places.drain(..).zip(found) {
                    out[at] = match found {
                        Ok(Ok(value)) => Ok(value),
                        Ok(Err(fetch)) => {
                            pending.push((at, i));
                            fetches.push(fetch);
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    };
                }
                keys.clear();
            }
            let keys: Vec<(Key, u64)> = fetches.iter().map(|f| (f.key, f.seq)).collect();
            let values = shard::finish_many(fetches, &*self.reader);
            for (i, shard) in self.shards.iter().enumerate() {
                let read = pending.iter().zip(&keys).zip(&values);
                shard.keep_many(read.filter_map(|(((_, s), &(key, seq)), value)| {
                    (*s == i).then_some((key, seq, value.as_ref().ok()?))
                }));
            }
            for ((at, _), value) in pending.into_iter().zip(values) {
                out[at] = value.map(Some);
            }
        }
        out
    }

    /// Whether `key` exists (no value is read).
    pub fn contains(&self, key: impl Into<Key>) -> bool {
        let key = key.into();
        self.shard(key).1.contains(key)
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&self, key: impl Into<Key>) -> Result<bool> {
        let (existed, commit) = self.delete_deferred(key)?;
        self.wait(commit)?;
        Ok(existed)
    }

    /// Iterates over the keys in `range` (inclusive or exclusive bounds, as written) in key
    /// order, with their values, merging the shards. Limit it with `.take(n)`: keys are
    /// fetched in small batches, so nothing past the limit is read. The iterator holds no
    /// lock between batches; writes made meanwhile may or may not be seen.
    pub fn scan<K, R>(&self, range: R) -> Scan<'_>
    where
        K: Into<Key> + Copy,
        R: RangeBounds<K>,
    {
        let (from, to) = bounds(&range);
        Scan::new(self, from, to)
    }

    /// Up to `limit` keys in `range`, in order, without reading their values (so no value I/O).
    pub fn keys<K, R>(&self, range: R, limit: usize) -> Vec<Key>
    where
        K: Into<Key> + Copy,
        R: RangeBounds<K>,
    {
        let (from, to) = bounds(&range);
        let mut all: Vec<Key> = self
            .shards
            .iter()
            .flat_map(|s| s.range(from, to, limit))
            .map(|(k, _)| k)
            .collect();
        all.sort_unstable();
        all.truncate(limit);
        all
    }

    /// Iterates over every key in order, with its value (a [`scan`](Self::scan) of the whole
    /// key space).
    pub fn iter(&self) -> Scan<'_> {
        Scan::new(self, Bound::Unbounded, Bound::Unbounded)
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every earlier put and delete durable against power loss. With a journal
    /// (durability `always`), this is a checkpoint: the shards are synced and the journal
    /// emptied, so the next open has nothing to replay.
    pub fn sync(&self) -> Result<()> {
        match &self.journal {
            Some(j) => j.checkpoint(&|| self.sync_shards()),
            None => self.sync_shards(),
        }
    }

    fn sync_shards(&self) -> Result<()> {
        self.shards.iter().try_for_each(Shard::sync)
    }

    /// Runs garbage collection on every shard until none has work left (the background
    /// collector does the same in small steps when [`Options::gc`] is on).
    pub fn gc(&self) -> Result<()> {
        self.shards.iter().try_for_each(Shard::gc)
    }

    /// Stops the background threads (pending write-outs finish), syncs and closes the store.
    pub fn close(self) -> Result<()> {
        self.stop();
        self.sync()
    }

    /// Stops the background threads and syncs, as [`close`](Self::close) does, for a store
    /// shared through an `Arc` that is about to be replaced (a replica's full sync): nothing
    /// may use it afterwards but to drop it (its files may be moved away).
    pub fn halt(&self) -> Result<()> {
        self.stop();
        self.sync()
    }

    /// Waits until no bank is being written out.
    #[cfg(test)]
    pub(crate) fn settle(&self) {
        self.shards.iter().for_each(Shard::settle);
    }

    fn stop(&self) {
        if let Some(j) = &self.journal {
            j.stop_notices();
        }
        let committer = self
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = committer {
            let _ = t.join();
        }
        for shard in self.shards.iter() {
            shard.set_jobs(None);
        }
        self.background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop();
    }

    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The first `n` keys in `(from, to)` over all shards, with their values; used by
    /// [`Scan`]. The keys are found first (each shard's in key order, merged), then only
    /// their values are fetched, under one lock hold per shard; a key deleted in between is
    /// left out. Cached values are used without counting them as uses; values on disk are
    /// read in one batch (all submitted at once through the store's reader), then cached.
    fn batch(&self, from: Bound<Key>, to: Bound<Key>, n: usize) -> Result<scan::Batch> {
        let mut found: Vec<_> = self
            .shards
            .iter()
            .map(|s| s.range(from, to, n).into_iter().peekable())
            .collect();
        let mut wanted: Vec<Vec<Key>> = vec![Vec::new(); self.shards.len()];
        let (mut taken, mut last) = (0, None);
        while taken < n {
            let first = found
                .iter_mut()
                .enumerate()
                .filter_map(|(i, l)| l.peek().map(|&(k, _)| (k, i)))
                .min();
            let Some((key, i)) = first else {
                break;
            };
            found[i].next();
            wanted[i].push(key);
            (taken, last) = (taken + 1, Some(key));
        }
        // Each shard's fetches are in key order: merge them, moving each (it holds a value's
        // bytes) once.
        let mut lists = Vec::with_capacity(self.shards.len());
        for (shard, keys) in self.shards.iter().zip(&wanted) {
            lists.push(shard.fetch_keys(keys)?.into_iter().peekable());
        }
        let mut fetches = Vec::with_capacity(taken);
        loop {
            let first = lists
                .iter_mut()
                .enumerate()
                .filter_map(|(i, l)| l.peek().map(|f| (f.key, i)))
                .min();
            let Some(next) = first.and_then(|(_, i)| lists[i].next()) else {
                break;
            };
            fetches.push(next);
        }
        let read: Vec<(Key, u64)> = fetches
            .iter()
            .filter(|f| f.reads_disk())
            .map(|f| (f.key, f.seq))
            .collect();
        let out = shard::finish_all(fetches, &*self.reader)?;
        // Values read from disk enter the cache (its small queue: a scan passing over keys
        // once cannot displace the hot set), unless a write replaced them meanwhile.
        if !read.is_empty() {
            let mut disk = read.into_iter().peekable();
            let mut kept: Vec<Vec<(Key, u64, &Value)>> = vec![Vec::new(); self.shards.len()];
            for (key, value) in &out {
                if disk.peek().is_some_and(|(k, _)| k == key)
                    && let Some((_, seq)) = disk.next()
                {
                    kept[self.shard(*key).0].push((*key, seq, value));
                }
            }
            for (shard, kept) in self.shards.iter().zip(kept) {
                shard.keep_many(kept);
            }
        }
        Ok(scan::Batch {
            items: out,
            last,
            more: taken == n,
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keys [`Store::get_many`] looks up before reading their values: a bigger call is done in
/// chunks of this many, so the buffers of one chunk's reads are all that is held at once.
pub const GET_MANY_CHUNK: usize = 1024;

/// What [`Store::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// The answer, without a disk read.
    Ready(Option<Value>),
    /// The value must be read from disk: pass this to [`Store::read`].
    Pending(PendingRead),
}

/// A value still to be read from its value section; see [`Store::lookup`].
#[derive(Debug)]
pub struct PendingRead(usize, Fetch);

/// Applies an entry replayed from the journal to the shard of its key (open, and check).
fn apply_op(shards: &[Shard], dir: &Path, op: JournalOp<'_>) -> Result<()> {
    let key = match op {
        JournalOp::Put(k, _) | JournalOp::Delete(k) => k,
        JournalOp::Batch(_) => return Ok(()),
    };
    let i = shard_of(key, shards.len() as u32) as usize;
    let Some(shard) = shards.get(i) else {
        let what = "a journal entry names no shard";
        return Err(Error::corrupt(
            dir.join(JOURNAL_NAME),
            0,
            Damage::Record,
            what,
        ));
    };
    shard.apply(op)
}

/// Brings the shards, opened, up to date with what sits above them: replays the journal and
/// applies the last atomic batch again where it must (open and `check` share this; the rule
/// is [`crate::format::intent`]'s).
///
/// The batch is applied after the replay, and before the shards are synced and the journal's
/// next epoch starts (so that a crash part way does all of it again):
///
/// - not at all when the replay met its end entry, or an epoch mark at or past its number:
///   it is durable whole, and anything the epoch holds after it is newer;
/// - in every shard when the replay applied anything else: with the epoch marked (its first
///   frame starts with a mark, as this build writes), the batch never reached the journal, so
///   every replayed entry comes before it and may have put older values of its keys back
///   (only one batch at a time is applied and not durable, so no other batch can be half
///   undone); an unmarked epoch (an older build's journal) cannot tell, so it is only done
///   there when a shard's log ends short of the batch, as before;
/// - else only in the shards whose log ends before their part of it (cut short, or a power
///   loss took their tail).
fn recover(
    dir: &Path,
    options: &Options,
    found: Option<journal::Found>,
    shards: &[Shard],
) -> Result<(
    Option<journal::Journal>,
    Option<journal::Torn>,
    intent::IntentFile,
)> {
    let always = options.durability == Durability::Always;
    let (mut intent, last) = intent::IntentFile::open(options.vfs.clone(), dir, always)?;
    // The shards whose log ends before their part of the last batch (it was cut short),
    // judged on the logs as recovered, before the journal adds to them.
    let last = match last {
        Some(f) => {
            let mut short = Vec::new();
            for s in &f.spans {
                let Some(shard) = shards.get(s.shard as usize) else {
                    let path = dir.join(crate::format::intent::INTENT_NAME);
                    let what = format!("the intent names shard {} of {}", s.shard, shards.len());
                    return Err(Error::corrupt(path, 0, Damage::Record, what));
                };
                if shard.next_seq() < s.first + u64::from(s.count) {
                    short.push(s.shard);
                }
            }
            Some((f, short))
        }
        None => None,
    };
    let whole = std::cell::Cell::new(false);
    // Whether the first entry replayed is an epoch mark (None: nothing replayed yet).
    let marked = std::cell::Cell::new(None);
    let mut finished = false;
    let (journal, journal_torn) = journal::open(
        dir,
        options,
        found,
        intent.last(),
        |op| {
            if marked.get().is_none() {
                marked.set(Some(matches!(op, JournalOp::Batch(_))));
            }
            if let (JournalOp::Batch(id), Some((f, _))) = (op, &last) {
                whole.set(whole.get() || id >= f.id);
            }
            apply_op(shards, dir, op)
        },
        |replayed| {
            if let Some((f, short)) = last.as_ref().filter(|_| !whole.get()) {
                let every: Vec<u32>;
                let redo = if replayed && (marked.get() == Some(true) || !short.is_empty()) {
                    every = (0..shards.len() as u32).collect();
                    &every[..]
                } else {
                    &short[..]
                };
                if !redo.is_empty() {
                    batch::finish(shards, dir, &f.payload, redo)?;
                    finished = true;
                }
            }
            // Synced also when nothing changed but a batch is on record: the next epoch's
            // mark says it is durable in the shards.
            if replayed || finished || last.is_some() {
                shards.iter().try_for_each(Shard::sync)?;
            }
            Ok(())
        },
    )?;
    if finished {
        intent.clear()?;
    }
    Ok((journal, journal_torn, intent))
}

/// A range's bounds as keys.
fn bounds<K: Into<Key> + Copy>(range: &impl RangeBounds<K>) -> (Bound<Key>, Bound<Key>) {
    let conv = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included((*k).into()),
        Bound::Excluded(k) => Bound::Excluded((*k).into()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (conv(range.start_bound()), conv(range.end_bound()))
}

#[cfg(test)]
mod tests;
