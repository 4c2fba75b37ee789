//! The read path: a value is located under the store's lock (and copied when it is still in
//! the buffer or its section is held in memory), then read from its value section and checked
//! after the lock is released.
//! Many values (a `get_many`, a scan batch) are read in one batch through the store's
//! [`Reader`] (io_uring, or `pread` one by one), each checked and failed on its own.

use std::path::PathBuf;
use std::rc::Rc;

use super::Inner;
use crate::error::{Damage, Error, Result};
use crate::format::{Op, record::value_crc};
use crate::io::Reader;
use crate::key::{Key, Value};
use crate::store::keys::Section;
use crate::store::values::{self, Block};

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
            _ => match self.values.copied(vsec, index, value.slot_mut()) {
                Some((path, offset)) => Place::Memory(path, offset),
                None => Place::Section(self.values.slot(vsec, index)?),
            },
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
    /// In a value section held in memory (copied already): file and offset, for errors.
    Memory(std::sync::Arc<std::path::Path>, u64),
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
        self.finish_with(None)
    }

    /// As [`finish`](Self::finish), with the value's block already read by a batch when it is
    /// in a value section (`None`: read it now).
    fn finish_with(self, block: Option<Rc<Block>>) -> Result<Value> {
        let mut value = self.value;
        let (file, offset): (&std::path::Path, u64) = match &self.place {
            Place::Buffer(path, off) => (path, *off),
            Place::Memory(path, off) => (path, *off),
            Place::Section(slot) => {
                match block {
                    Some(block) => slot.take(&block, value.slot_mut())?,
                    None => slot.read(value.slot_mut())?,
                }
                (&slot.path, slot.offset)
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

/// Finishes `fetches`, in order, each on its own: the values in value sections are read in
/// one batch through `reader` (all submitted at once, neighbouring slots in one read: see
/// [`values::read_slots`]), then each is checked against its record's checksum. A read error
/// or a checksum failure fails the values it touched alone.
pub(crate) fn finish_many(fetches: Vec<Fetch>, reader: &dyn Reader) -> Vec<Result<Value>> {
    let slots: Vec<&values::Slot> = fetches
        .iter()
        .filter_map(|f| match &f.place {
            Place::Section(slot) => Some(slot),
            _ => None,
        })
        .collect();
    let mut blocks = values::read_slots(&slots, reader).into_iter();
    fetches
        .into_iter()
        .map(|f| {
            let block = if f.reads_disk() { blocks.next() } else { None };
            f.finish_with(block)
        })
        .collect()
}

/// Finishes `fetches` in order, for a scan batch: the uncached values are read in one batch
/// through `reader` (see [`finish_many`]); the first error fails the batch.
pub(crate) fn finish_all(fetches: Vec<Fetch>, reader: &dyn Reader) -> Result<Vec<(Key, Value)>> {
    let keys: Vec<Key> = fetches.iter().map(|f| f.key).collect();
    keys.into_iter()
        .zip(finish_many(fetches, reader))
        .map(|(k, v)| Ok((k, v?)))
        .collect()
}
