//! The read path: a value is located under the store's lock (and copied when it is still in
//! the buffer), then read from its value section and checked after the lock is released.

use std::path::PathBuf;

use super::Inner;
use crate::error::{Damage, Error, Result};
use crate::format::{Op, record::value_crc};
use crate::key::{Key, Value};
use crate::store::keys::Section;
use crate::store::values;

impl Inner {
    /// Finds the value of record `seq`, which the index holds for `key`: copied already when
    /// it is in the buffer, else a slot to read once the lock is released.
    pub(super) fn fetch(&self, key: Key, seq: u64) -> Result<Fetch> {
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
                Damage::Record,
                format!("index points {key:?} at record {seq}, which is a delete"),
            ));
        };
        if rec.key != key {
            return Err(Error::corrupt(
                &section.path,
                Section::offset(at) as u64,
                Damage::Record,
                format!(
                    "index points {key:?} at record {seq}, which holds {:?}",
                    rec.key
                ),
            ));
        }
        let (vsec, index) = (slot / self.slots, slot % self.slots);
        let mut value = Value::empty();
        let bank = self.buffer.holding(vsec);
        let place = match bank {
            Some(bank) if !self.values.has(vsec) => {
                self.buffer.read(bank, index, value.slot_mut())?;
                Place::Buffer(
                    self.buffer.path.clone(),
                    self.buffer.offset(bank, index) as u64,
                )
            }
            _ => Place::Section(self.values.slot(vsec, index)?),
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
}

/// A value located under the lock, to be read and checked after it.
#[derive(Debug)]
pub(crate) struct Fetch {
    pub(crate) key: Key,
    pub(crate) seq: u64,
    pub(super) len: u16,
    pub(super) want: u32,
    /// The slot's bytes (already copied when the value is in the buffer).
    pub(super) value: Value,
    pub(super) place: Place,
}

/// Where a fetched value is.
#[derive(Debug)]
pub(super) enum Place {
    /// In the buffer (copied already): file and offset, for errors.
    Buffer(PathBuf, u64),
    /// In a value section, still to be read.
    Section(values::Slot),
    /// In the read cache (copied and checked already).
    Cache,
}

impl Fetch {
    /// A value copied from the read cache.
    pub(crate) fn cached(key: Key, seq: u64, value: Value) -> Fetch {
        Fetch {
            key,
            seq,
            len: value.len() as u16,
            want: 0,
            value,
            place: Place::Cache,
        }
    }

    /// Whether [`finish`](Self::finish) reads from disk.
    pub(crate) fn reads_disk(&self) -> bool {
        matches!(self.place, Place::Section(_))
    }

    /// Reads the value if needed and checks it against the record's checksum.
    pub(crate) fn finish(self) -> Result<Value> {
        let mut value = self.value;
        let (file, offset) = match self.place {
            Place::Buffer(path, off) => (path, off),
            Place::Section(slot) => {
                slot.read(value.slot_mut())?;
                (slot.path, slot.offset)
            }
            Place::Cache => return Ok(value),
        };
        value.set_len(usize::from(self.len));
        let got = value_crc(&value);
        if got != self.want {
            return Err(Error::corrupt(
                file,
                offset,
                Damage::Value,
                format!(
                    "value of {:?} has checksum {got:08x}, its record {} says {:08x}",
                    self.key, self.seq, self.want
                ),
            ));
        }
        Ok(value)
    }
}

/// Disk reads a scan thread does at least; below, spawning it costs more than it saves.
const READS_PER_THREAD: usize = 4;
/// Threads one scan batch reads with at most.
const SCAN_THREADS: usize = 8;

/// Finishes `fetches` in order. Those that read the disk (one direct read each) are spread
/// over up to [`SCAN_THREADS`] threads, so a scan of uncached values waits on the device in
/// parallel rather than once per value.
pub(crate) fn finish_all(fetches: Vec<Fetch>) -> Result<Vec<(Key, Value)>> {
    let disk = fetches.iter().filter(|f| f.reads_disk()).count();
    let threads = (disk / READS_PER_THREAD).min(SCAN_THREADS);
    if threads <= 1 {
        return fetches
            .into_iter()
            .map(|f| Ok((f.key, f.finish()?)))
            .collect();
    }
    let per = fetches.len().div_ceil(threads);
    let mut chunks: Vec<Vec<Fetch>> = Vec::with_capacity(threads);
    let mut rest = fetches.into_iter();
    loop {
        let chunk: Vec<Fetch> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let finish = |chunk: Vec<Fetch>| -> Result<Vec<(Key, Value)>> {
        chunk
            .into_iter()
            .map(|f| Ok((f.key, f.finish()?)))
            .collect()
    };
    let parts: Vec<Result<Vec<(Key, Value)>>> = std::thread::scope(|s| {
        let mut chunks = chunks.into_iter();
        let mine = chunks.next();
        let handles: Vec<_> = chunks.map(|c| s.spawn(move || finish(c))).collect();
        let mut parts = vec![mine.map_or(Ok(Vec::new()), finish)];
        for h in handles {
            parts.push(Error::joined(h.join(), "a thread reading scanned values"));
        }
        parts
    });
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}
