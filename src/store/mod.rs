//! The store: put, get, delete, scan, sync over key sections, value sections and the buffer.
//!
//! # Write path
//! A put takes the next value slot and the next record number. The value is copied into the
//! write buffer's slot, then the key record into the key section; both are stores into shared
//! maps, so they survive a process crash as soon as `put` returns. When the buffer's section
//! is full, the next put first writes it out as a `.v` file (one aligned direct write, then
//! fdatasync, rename, directory fsync) and moves the buffer on.
//!
//! # Durability
//! [`Store::sync`] makes everything before it survive power loss, in this order: the buffer's
//! slots, then the key records, then the sync mark (in the buffer's header page) that says how
//! many records are durable. A key record thus never becomes durable-and-marked before its
//! value. Any failed fsync or msync poisons the
//! store: the kernel may have dropped the pages, so further writes are refused until reopen.
//!
//! # Reads
//! A get finds the record number in the index, reads the record from the mapped key section,
//! then reads the value from the buffer or with one aligned direct read from its value
//! section, and checks it against the record's value checksum.
//!
//! # Read cache
//! Direct reads bypass the kernel's page cache, so the store keeps its own
//! ([`cache`], S3-FIFO), under the same lock as the index. A get looks there first; a miss
//! reads the value as above and, once read, caches it if the index still names the record it
//! was read from, so a put or delete made meanwhile is never shadowed. A put caches its value
//! (a new key enters S3-FIFO's small queue, so a write-once bulk load does not displace the
//! hot set) and a delete removes it, so the cache always agrees with the index. Scans use
//! cached values but neither cache what they read nor count as uses of what they find.

mod buffer;
mod cache;
mod index;
mod keys;
mod open;
mod read;
mod recover;
mod scan;
mod values;
mod write;

use std::any::Any;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::format::{HeaderError, Kind};
use crate::io::Vfs;
use crate::key::{Key, Value};
use crate::options::Options;

pub use scan::Scan;

use buffer::Buffer;
use cache::Cache;
use index::Index;
use keys::Section;
use read::Fetch;
use values::Values;

/// A key/value store in one data directory. `Send + Sync`; share it with an `Arc`.
///
/// Every `put` and `delete` that returned `Ok` survives a crash of the process. Call
/// [`sync`](Self::sync) (or [`close`](Self::close)) to make them survive power loss too;
/// dropping the store does not sync.
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
    state: Mutex<State>,
}

/// What the store's lock guards. A value in `cache` is always the value of the record `inner`'s
/// index names for its key.
#[derive(Debug)]
struct State {
    inner: Inner,
    cache: Cache,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    _lock: Box<dyn Any + Send + Sync>,
    slots: u32,
    /// Key sections, the first numbered `first`.
    keys: Vec<Section>,
    first: u32,
    buffer: Buffer,
    values: Values,
    index: Index,
    /// Next record number.
    next_seq: u64,
    /// Records below this are durable.
    synced_seq: u64,
    /// Next value slot; `MAX_SLOTS` when all are used.
    next_slot: u64,
    /// Generation of the next sync mark.
    generation: u64,
    /// What recovery dropped at open, if the log ended at a damaged record.
    torn: Option<String>,
    /// Set by a failed fsync or msync: (operation, file, error).
    failed: Option<(&'static str, PathBuf, String)>,
}

/// Statistics of an open store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys.
    pub keys: u64,
    /// Key records written, deletes included (the log's length).
    pub records: u64,
    /// Value slots used.
    pub slots_used: u64,
    /// Value sections written out to `.v` files.
    pub value_sections: u64,
    /// Key section files.
    pub key_sections: u64,
    /// Whether value sections use `O_DIRECT`.
    pub direct_io: bool,
    /// What recovery dropped when the store was opened: set when the log ended at a damaged
    /// (torn or garbled) record after the last sync rather than at a never-written one.
    pub torn_tail: Option<String>,
    /// Gets answered by the read cache, without reading the value.
    pub cache_hits: u64,
    /// Gets the read cache could not answer, absent keys included (0 while it is disabled).
    pub cache_misses: u64,
    /// Values in the read cache.
    pub cache_entries: u64,
    /// Bytes the read cache charges for them (see [`Options::cache_bytes`]).
    pub cache_bytes: u64,
}

impl Store {
    /// Opens the store in `dir` with default [`Options`], creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, Options::new())
    }

    /// Opens the store in `dir` with `options`, creating it if needed. Recovers from a crash:
    /// see the crate docs.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let cache = Cache::new(options.cache_bytes);
        let inner = open::open(dir.as_ref(), options)?;
        Ok(Store {
            state: Mutex::new(State { inner, cache }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way the
        // checksums would not catch, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts or overwrites `key` with `value` (0 to 256 bytes).
    pub fn put(&self, key: impl Into<Key>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.into(), value.as_ref());
        let mut g = self.lock();
        g.inner.put(key, value)?;
        g.cache.write(key, value);
        Ok(())
    }

    /// The value of `key`, or `None`. A value in a value section is read after the store's
    /// lock is released, so gets wait on the disk in parallel.
    pub fn get(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        match self.lookup(key)? {
            Lookup::Ready(v) => Ok(v),
            Lookup::Pending(p) => self.read(p).map(Some),
        }
    }

    /// The first half of [`get`](Self::get): answers at once when no disk read is needed (the
    /// key is absent, cached, or in the write buffer), else says which read is. For callers
    /// that run disk reads somewhere else than their fast path (the server does).
    pub fn lookup(&self, key: impl Into<Key>) -> Result<Lookup> {
        let key = key.into();
        let mut g = self.lock();
        if let Some(value) = g.cache.get(key) {
            return Ok(Lookup::Ready(Some(value)));
        }
        let Some(seq) = g.inner.index.get(key) else {
            return Ok(Lookup::Ready(None));
        };
        let fetch = g.inner.fetch(key, seq)?;
        if fetch.reads_disk() {
            return Ok(Lookup::Pending(PendingRead(fetch)));
        }
        let value = fetch.finish()?;
        g.cache.insert(key, &value);
        Ok(Lookup::Ready(Some(value)))
    }

    /// The second half of [`get`](Self::get): reads and checks the value (no lock held while
    /// waiting on the disk), and caches it unless a put or delete of the key came in between.
    pub fn read(&self, pending: PendingRead) -> Result<Value> {
        let PendingRead(fetch) = pending;
        let (key, seq) = (fetch.key, fetch.seq);
        let value = fetch.finish()?;
        let mut g = self.lock();
        if g.inner.index.get(key) == Some(seq) {
            g.cache.insert(key, &value);
        }
        Ok(value)
    }

    /// Whether `key` exists (no value is read).
    pub fn contains(&self, key: impl Into<Key>) -> bool {
        self.lock().inner.index.get(key.into()).is_some()
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&self, key: impl Into<Key>) -> Result<bool> {
        let key = key.into();
        let mut g = self.lock();
        let existed = g.inner.delete(key)?;
        g.cache.remove(key);
        Ok(existed)
    }

    /// Iterates over the keys in `range` (inclusive or exclusive bounds, as written) in key
    /// order, with their values. Limit it with `.take(n)`: keys are fetched in small batches,
    /// so nothing past the limit is read. The iterator does not hold the store's lock between
    /// batches; writes made meanwhile may or may not be seen.
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
        self.lock()
            .inner
            .index
            .range(from, to, limit)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Iterates over every key in order, with its value (a [`scan`](Self::scan) of the whole
    /// key space).
    pub fn iter(&self) -> Scan<'_> {
        Scan::new(self, Bound::Unbounded, Bound::Unbounded)
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.lock().inner.index.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every earlier put and delete durable against power loss.
    pub fn sync(&self) -> Result<()> {
        self.lock().inner.sync()
    }

    /// Syncs and closes the store.
    pub fn close(self) -> Result<()> {
        self.sync()
    }

    /// Counts describing the store.
    pub fn stats(&self) -> Stats {
        let g = self.lock();
        let (i, c) = (&g.inner, g.cache.stats());
        Stats {
            keys: i.index.len() as u64,
            records: i.next_seq,
            slots_used: i.next_slot,
            value_sections: i.values.count() as u64,
            key_sections: i.keys.len() as u64,
            direct_io: i.values.direct(),
            torn_tail: i.torn.clone(),
            cache_hits: c.hits,
            cache_misses: c.misses,
            cache_entries: c.entries,
            cache_bytes: c.bytes,
        }
    }

    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.lock().inner.dir.clone()
    }

    /// Up to `n` entries in `(from, to)`, with values; used by [`Scan`]. Uses cached values
    /// without counting them as uses, and caches nothing (see the module docs).
    fn batch(&self, from: Bound<Key>, to: Bound<Key>, n: usize) -> Result<Vec<(Key, Value)>> {
        let fetches = {
            let g = self.lock();
            g.inner
                .index
                .range(from, to, n)
                .into_iter()
                .map(|(key, seq)| match g.cache.peek(key) {
                    Some(value) => Ok(Fetch::cached(key, seq, value)),
                    None => g.inner.fetch(key, seq),
                })
                .collect::<Result<Vec<_>>>()?
        };
        fetches
            .into_iter()
            .map(|f| Ok((f.key, f.finish()?)))
            .collect()
    }
}

impl Inner {
    /// The key section index and record index of `seq`, which must exist.
    fn locate(&self, seq: u64) -> Result<(usize, u32)> {
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
}

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
pub struct PendingRead(Fetch);

/// A range's bounds as keys.
fn bounds<K: Into<Key> + Copy>(range: &impl RangeBounds<K>) -> (Bound<Key>, Bound<Key>) {
    let conv = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included((*k).into()),
        Bound::Excluded(k) => Bound::Excluded((*k).into()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (conv(range.start_bound()), conv(range.end_bound()))
}

/// Turns a header decoding failure into the crate error for `path`.
pub(crate) fn header_error(path: &Path, kind: Kind, e: HeaderError) -> Error {
    match e {
        HeaderError::Magic(got) => Error::Foreign {
            file: path.to_path_buf(),
            kind: kind.name(),
            got,
        },
        HeaderError::Version(got) => Error::Version {
            file: path.to_path_buf(),
            expected: crate::format::header::VERSION,
            got,
        },
        HeaderError::Bad(why) => Error::corrupt(path, 0, format!("{} header: {why}", kind.name())),
    }
}

#[cfg(test)]
mod tests;
