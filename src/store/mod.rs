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

mod buffer;
mod index;
mod keys;
mod open;
mod recover;
mod scan;
mod values;

use std::any::Any;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Context, Error, Result};
use crate::format::{HeaderError, Kind, MAX_SLOTS, Op, Record, record::value_crc};
use crate::io::Vfs;
use crate::key::{Key, VALUE_MAX, Value};
use crate::options::Options;

pub use scan::Scan;

use buffer::Buffer;
use index::Index;
use keys::Section;
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
    inner: Mutex<Inner>,
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
}

impl Store {
    /// Opens the store in `dir` with default [`Options`], creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, Options::new())
    }

    /// Opens the store in `dir` with `options`, creating it if needed. Recovers from a crash:
    /// see the crate docs.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let inner = open::open(dir.as_ref(), options)?;
        Ok(Store {
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way the
        // checksums would not catch, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts or overwrites `key` with `value` (0 to 256 bytes).
    pub fn put(&self, key: impl Into<Key>, value: impl AsRef<[u8]>) -> Result<()> {
        self.lock().put(key.into(), value.as_ref())
    }

    /// The value of `key`, or `None`. A value in a value section is read after the store's
    /// lock is released, so gets wait on the disk in parallel.
    pub fn get(&self, key: impl Into<Key>) -> Result<Option<Value>> {
        let key = key.into();
        let fetch = {
            let g = self.lock();
            let Some(seq) = g.index.get(key) else {
                return Ok(None);
            };
            g.fetch(key, seq)?
        };
        fetch.finish().map(Some)
    }

    /// Whether `key` exists (no value is read).
    pub fn contains(&self, key: impl Into<Key>) -> bool {
        self.lock().index.get(key.into()).is_some()
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&self, key: impl Into<Key>) -> Result<bool> {
        self.lock().delete(key.into())
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
        self.lock().index.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every earlier put and delete durable against power loss.
    pub fn sync(&self) -> Result<()> {
        self.lock().sync()
    }

    /// Syncs and closes the store.
    pub fn close(self) -> Result<()> {
        self.sync()
    }

    /// Counts describing the store.
    pub fn stats(&self) -> Stats {
        let g = self.lock();
        Stats {
            keys: g.index.len() as u64,
            records: g.next_seq,
            slots_used: g.next_slot,
            value_sections: g.values.count() as u64,
            key_sections: g.keys.len() as u64,
            direct_io: g.values.direct(),
            torn_tail: g.torn.clone(),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.lock().dir.clone()
    }

    /// Up to `n` entries in `(from, to)`, with values; used by [`Scan`].
    fn batch(&self, from: Bound<Key>, to: Bound<Key>, n: usize) -> Result<Vec<(Key, Value)>> {
        let fetches = {
            let g = self.lock();
            g.index
                .range(from, to, n)
                .into_iter()
                .map(|(key, seq)| g.fetch(key, seq))
                .collect::<Result<Vec<_>>>()?
        };
        fetches
            .into_iter()
            .map(|f| Ok((f.key, f.finish()?)))
            .collect()
    }
}

impl Inner {
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

    /// Runs a step that syncs: if a sync fails, the kernel may have dropped the data it held,
    /// so the store is poisoned.
    fn guard<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let r = step(self);
        if let Err(Error::Io { op, path, source }) = &r
            && matches!(*op, "fdatasync" | "msync" | "fsync")
        {
            self.failed = Some((op, path.clone(), source.to_string()));
        }
        r
    }

    fn put(&mut self, key: Key, value: &[u8]) -> Result<()> {
        self.writable()?;
        if value.len() > VALUE_MAX {
            return Err(Error::ValueTooLong {
                len: value.len(),
                max: VALUE_MAX,
            });
        }
        if self.next_slot >= MAX_SLOTS {
            return Err(Error::Full {
                what: "value slots",
                limit: MAX_SLOTS,
            });
        }
        let slot = self.next_slot as u32;
        let (section, index) = (slot / self.slots, slot % self.slots);
        if section != self.buffer.section {
            self.guard(|s| s.flush(section))?;
        }
        let seq = self.next_seq;
        let rec = Record {
            key,
            seq,
            op: Op::Put {
                slot,
                len: value.len() as u16,
                value_crc: value_crc(value),
            },
        };
        let (sec, at) = self.section_for(seq)?;
        self.buffer.write(index, value)?;
        self.keys[sec].write(at, &rec.encode())?;
        self.index.insert(key, seq);
        self.next_seq += 1;
        self.next_slot += 1;
        Ok(())
    }

    fn delete(&mut self, key: Key) -> Result<bool> {
        self.writable()?;
        if self.index.get(key).is_none() {
            return Ok(false);
        }
        let seq = self.next_seq;
        let rec = Record {
            key,
            seq,
            op: Op::Delete,
        };
        let (sec, at) = self.section_for(seq)?;
        self.keys[sec].write(at, &rec.encode())?;
        self.index.remove(key);
        self.next_seq += 1;
        Ok(true)
    }

    /// Finds the value of record `seq`, which the index holds for `key`: copied already when
    /// it is in the buffer, else a slot to read once the lock is released.
    fn fetch(&self, key: Key, seq: u64) -> Result<Fetch> {
        let (sec, at) = self.locate(seq)?;
        let section = &self.keys[sec];
        let rec = section.read(at, seq)?;
        let Op::Put {
            slot,
            len,
            value_crc: want,
        } = rec.op
        else {
            return Err(Error::corrupt(
                &section.path,
                Section::offset(at) as u64,
                format!("index points {key:?} at record {seq}, which is a delete"),
            ));
        };
        if rec.key != key {
            return Err(Error::corrupt(
                &section.path,
                Section::offset(at) as u64,
                format!(
                    "index points {key:?} at record {seq}, which holds {:?}",
                    rec.key
                ),
            ));
        }
        let (vsec, index) = (slot / self.slots, slot % self.slots);
        let mut value = Value::empty();
        let place = if vsec == self.buffer.section {
            self.buffer.read(index, value.slot_mut())?;
            Place::Buffer(self.buffer.path.clone(), Buffer::offset(index))
        } else {
            Place::Section(self.values.slot(vsec, index)?)
        };
        Ok(Fetch {
            key,
            seq,
            len,
            want,
            value,
            place,
        })
    }

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

    /// Like [`locate`](Self::locate), creating the section when `seq` starts a new one.
    fn section_for(&mut self, seq: u64) -> Result<(usize, u32)> {
        let s = u64::from(self.slots);
        let want = seq / s;
        let have = u64::from(self.first) + self.keys.len() as u64;
        if want == have {
            let Ok(n) = u32::try_from(want) else {
                return Err(Error::Full {
                    what: "key records",
                    limit: (u64::from(u32::MAX) + 1) * s,
                });
            };
            let section = Section::create(&*self.vfs, &self.dir, n, self.slots)?;
            self.vfs.sync_dir(&self.dir).ctx("fsync", &self.dir)?;
            self.keys.push(section);
        }
        self.locate(seq)
    }

    /// Writes the full buffer out as a value section and moves the buffer on to `next`.
    fn flush(&mut self, next: u32) -> Result<()> {
        self.values.flush(&*self.vfs, &self.buffer)?;
        self.buffer.reset(next)
    }

    fn sync(&mut self) -> Result<()> {
        self.writable()?;
        self.guard(Self::sync_steps)
    }

    fn sync_steps(&mut self) -> Result<()> {
        let s = u64::from(self.slots);
        let base = u64::from(self.buffer.section) * s;
        let used = self.next_slot.saturating_sub(base).min(s) as u32;
        self.buffer.sync(used)?;
        if self.next_seq == self.synced_seq {
            return Ok(());
        }
        let (from, to) = (self.synced_seq, self.next_seq);
        for n in (from / s)..=((to - 1) / s) {
            let (sec, _) = self.locate(n * s)?;
            let a = from.saturating_sub(n * s).min(s) as u32;
            let b = (to - n * s).min(s) as u32;
            self.keys[sec].flush(a, b)?;
        }
        self.generation += 1;
        self.buffer.set_mark(self.generation, to)?;
        self.synced_seq = to;
        Ok(())
    }
}

/// A value located under the lock, to be read and checked after it.
#[derive(Debug)]
struct Fetch {
    key: Key,
    seq: u64,
    len: u16,
    want: u32,
    /// The slot's bytes (already copied when the value is in the buffer).
    value: Value,
    place: Place,
}

/// Where a fetched value is.
#[derive(Debug)]
enum Place {
    /// In the buffer (copied already): file and offset, for errors.
    Buffer(PathBuf, u64),
    /// In a value section, still to be read.
    Section(values::Slot),
}

impl Fetch {
    /// Reads the value if needed and checks it against the record's checksum.
    fn finish(self) -> Result<Value> {
        let mut value = self.value;
        let (file, offset) = match self.place {
            Place::Buffer(path, off) => (path, off),
            Place::Section(slot) => {
                slot.read(value.slot_mut())?;
                (slot.path, slot.offset)
            }
        };
        value.set_len(usize::from(self.len));
        let got = value_crc(&value);
        if got != self.want {
            return Err(Error::corrupt(
                file,
                offset,
                format!(
                    "value of {:?} has checksum {got:08x}, its record {} says {:08x}",
                    self.key, self.seq, self.want
                ),
            ));
        }
        Ok(value)
    }
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
