//! Key sections (`.k`): the memory-mapped log of key records.
//!
//! Record `seq` lives in section `seq / section_slots` at index `seq % section_slots`. Appends
//! are memory stores into the map (they survive a process crash at once); the store's `sync`
//! msyncs the records written since the last sync before it moves the sync mark (kept in the
//! buffer) past them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Damage, Error, Result};
use crate::format::{
    HEADER_LEN, Header, KEYS_DATA_AT, Kind, PAGE, RECORD_SIZE, Record, keys_len, keys_name,
};
use crate::io::{FileIo, Mode, Region, Vfs};

use super::file::header_error;
use super::file::{Span, create_complete};

/// One open key section.
#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) path: PathBuf,
    _file: Arc<dyn FileIo>,
    /// The whole file's map, owned here: records are written through `&mut self` (the
    /// shard's lock) and made durable elsewhere only through [`Span`]s.
    map: Region,
}

impl Section {
    /// Creates section `n`: made complete (allocated, header written and synced) under a
    /// temporary name, then renamed, so a crash never leaves a half-made section behind (open
    /// removes `*.tmp`). The caller syncs the directory.
    pub(crate) fn create(vfs: &dyn Vfs, dir: &Path, n: u32, slots: u32) -> Result<Section> {
        let path = dir.join(keys_name(n));
        let header = Header {
            kind: Kind::Keys,
            section_slots: slots,
            section: n,
        };
        let file = create_complete(vfs, &path, keys_len(slots), &[(0, &header.encode())])?;
        let map = file.map().ctx("mmap", &path)?;
        Ok(Section {
            path,
            _file: file,
            map,
        })
    }

    /// Opens section `n` and checks its header. A file cut short after its header page is
    /// extended with zeros (its lost records then read as the end of the log).
    pub(crate) fn open(vfs: &dyn Vfs, dir: &Path, n: u32, slots: u32) -> Result<Section> {
        let path = dir.join(keys_name(n));
        let mode = Mode {
            create: false,
            write: true,
            direct: false,
        };
        let file = vfs.open(&path, mode).ctx("open", &path)?;
        let len = file.len().ctx("stat", &path)?;
        if len < PAGE as u64 {
            return Err(Error::corrupt(
                &path,
                len,
                Damage::Length,
                format!("key section is {len} bytes, shorter than its header page"),
            ));
        }
        let want = keys_len(slots);
        if len > want {
            return Err(Error::corrupt(
                &path,
                want,
                Damage::Length,
                format!("key section is {len} bytes, longer than {want}"),
            ));
        }
        if len < want {
            file.allocate(want).ctx("allocate", &path)?;
        }
        let mut page = [0u8; PAGE];
        file.read_at(&mut page, 0).ctx("read header", &path)?;
        let header = Header::decode(&page[..HEADER_LEN], Kind::Keys)
            .map_err(|e| header_error(&path, Kind::Keys, e))?;
        if header.section != n || header.section_slots != slots {
            return Err(Error::corrupt(
                &path,
                0,
                Damage::Header,
                format!(
                    "header says section {} of {} slots; expected section {n} of {slots}",
                    header.section, header.section_slots
                ),
            ));
        }
        let map = file.map().ctx("mmap", &path)?;
        Ok(Section {
            path,
            _file: file,
            map,
        })
    }

    /// Byte offset of record `index`.
    pub(crate) fn offset(index: u32) -> usize {
        KEYS_DATA_AT + index as usize * RECORD_SIZE
    }

    /// Reads the raw bytes of records `first..first + out.len() / RECORD_SIZE`.
    pub(crate) fn read_raw(&self, first: u32, out: &mut [u8]) -> Result<()> {
        self.map
            .read(Self::offset(first), out)
            .ctx("read records", &self.path)
    }

    /// Reads and checks record `index`, whose sequence number is `seq`.
    pub(crate) fn read(&self, index: u32, seq: u64) -> Result<Record> {
        let mut b = [0u8; RECORD_SIZE];
        self.read_raw(index, &mut b)?;
        Record::decode(&b, seq).map_err(|e| {
            Error::corrupt(
                &self.path,
                Self::offset(index) as u64,
                Damage::Record,
                format!("key record {seq}: {e:?}"),
            )
        })
    }

    /// Writes record bytes at `index`.
    pub(crate) fn write(&mut self, index: u32, bytes: &[u8]) -> Result<()> {
        self.map
            .write(Self::offset(index), bytes)
            .ctx("write record", &self.path)
    }

    /// Makes records `from..to` durable.
    pub(crate) fn flush(&self, from: u32, to: u32) -> Result<()> {
        let (a, b) = (Self::offset(from), Self::offset(to));
        self.map.flush(a, b - a).ctx("msync", &self.path)
    }

    /// Records `from..to`, to make durable outside the store's lock.
    pub(crate) fn span(&self, from: u32, to: u32) -> Result<Span> {
        let (a, b) = (Self::offset(from), Self::offset(to));
        let range = self.map.span(a, b - a).ctx("span of records", &self.path)?;
        Ok(Span::new(range, &self.path))
    }

    /// Zeroes records `from..slots` and makes that durable (dropping a torn tail).
    pub(crate) fn zero_from(&mut self, from: u32, slots: u32) -> Result<()> {
        if from >= slots {
            return Ok(());
        }
        let zeros = vec![0u8; (slots - from) as usize * RECORD_SIZE];
        self.write(from, &zeros)?;
        self.flush(from, slots)
    }
}
