//! Value sections (`.v`): full sections of 256-byte slots, read with real `O_DIRECT`.
//!
//! A section file is written once, by a buffer flush, and never changes. A get reads only the
//! aligned block that holds its slot (512 bytes on most disks, 4096 on 4Kn devices) into an
//! aligned buffer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Error, Result};
use crate::format::{
    HEADER_LEN, Header, Kind, PAGE, SLOT_SIZE, TMP_SUFFIX, VALUES_DATA_AT, values_len, values_name,
};
use crate::io::{AlignedBuf, FileIo, Mode, Vfs};

use super::buffer::Buffer;
use super::header_error;

/// The open value sections.
#[derive(Debug)]
pub(crate) struct Values {
    dir: PathBuf,
    direct: bool,
    slots: u32,
    files: BTreeMap<u32, (PathBuf, Arc<dyn FileIo>)>,
}

/// One value slot in a value section.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The section file.
    pub(crate) path: PathBuf,
    file: Arc<dyn FileIo>,
    /// Byte offset of the slot in the file.
    pub(crate) offset: u64,
}

impl Slot {
    /// Reads the slot into `out`, reading only the aligned block around it into an aligned
    /// buffer.
    pub(crate) fn read(&self, out: &mut [u8; SLOT_SIZE]) -> Result<()> {
        let a = self.file.align();
        let (start, len) = a.cover(self.offset, SLOT_SIZE);
        let mut block = AlignedBuf::new(len, a.mem);
        self.file
            .read_at(block.bytes_mut(), start)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Error::corrupt(
                    &self.path,
                    self.offset,
                    "value section ends before this slot",
                ),
                _ => Error::io("read", &self.path, e),
            })?;
        let at = (self.offset - start) as usize;
        out.copy_from_slice(&block.bytes()[at..at + SLOT_SIZE]);
        Ok(())
    }
}

/// Opens a value file, turning a refusal of `O_DIRECT` into a clear error.
fn open(vfs: &dyn Vfs, path: &Path, mode: Mode) -> Result<Arc<dyn FileIo>> {
    vfs.open(path, mode).map_err(|e| {
        if mode.direct && e.raw_os_error() == Some(libc::EINVAL) {
            Error::DirectUnsupported {
                path: path.to_path_buf(),
                source: e,
            }
        } else {
            Error::io("open", path, e)
        }
    })
}

impl Values {
    /// No sections yet.
    pub(crate) fn new(dir: &Path, direct: bool, slots: u32) -> Values {
        Values {
            dir: dir.to_path_buf(),
            direct,
            slots,
            files: BTreeMap::new(),
        }
    }

    /// Opens section `n` and checks its length and header.
    pub(crate) fn open(&mut self, vfs: &dyn Vfs, n: u32) -> Result<()> {
        let path = self.dir.join(values_name(n));
        let mode = Mode {
            create: false,
            write: false,
            direct: self.direct,
        };
        let file = open(vfs, &path, mode)?;
        let len = file.len().ctx("stat", &path)?;
        let want = values_len(self.slots);
        if len != want {
            return Err(Error::corrupt(
                &path,
                len.min(want),
                format!("value section is {len} bytes, expected {want}"),
            ));
        }
        let a = file.align();
        let mut page = AlignedBuf::new(PAGE.max(a.offset), a.mem);
        file.read_at(page.bytes_mut(), 0)
            .ctx("read header", &path)?;
        let header = Header::decode(&page.bytes()[..HEADER_LEN], Kind::Values)
            .map_err(|e| header_error(&path, Kind::Values, e))?;
        if header.section != n || header.section_slots != self.slots {
            return Err(Error::corrupt(
                &path,
                0,
                format!(
                    "header says section {} of {} slots; expected section {n} of {}",
                    header.section, header.section_slots, self.slots
                ),
            ));
        }
        self.files.insert(n, (path, file));
        Ok(())
    }

    /// Whether section `n` exists.
    pub(crate) fn has(&self, n: u32) -> bool {
        self.files.contains_key(&n)
    }

    /// The highest section number.
    pub(crate) fn last(&self) -> Option<u32> {
        self.files.keys().next_back().copied()
    }

    /// Writes the full buffer out as section `buffer.section`: to a temporary file in one
    /// aligned write, fdatasync, rename, directory sync. Afterwards the section is readable
    /// here and durable.
    pub(crate) fn flush(&mut self, vfs: &dyn Vfs, buffer: &Buffer) -> Result<()> {
        let n = buffer.section;
        let path = self.dir.join(values_name(n));
        let tmp = self.dir.join(format!("{}{TMP_SUFFIX}", values_name(n)));
        let mode = Mode {
            create: true,
            write: true,
            direct: self.direct,
        };
        let file = open(vfs, &tmp, mode)?;
        file.set_len(0).ctx("truncate", &tmp)?;
        buffer.copy_out(&*file)?;
        file.sync().ctx("fdatasync", &tmp)?;
        vfs.rename(&tmp, &path).ctx("rename", &tmp)?;
        vfs.sync_dir(&self.dir).ctx("fsync", &self.dir)?;
        self.files.insert(n, (path, file));
        Ok(())
    }

    /// A handle on slot `index` of section `n`, to read without holding the store's lock
    /// (value sections never change once written).
    pub(crate) fn slot(&self, n: u32, index: u32) -> Result<Slot> {
        let Some((path, file)) = self.files.get(&n) else {
            let path = self.dir.join(values_name(n));
            return Err(Error::corrupt(path, 0, "value section is missing"));
        };
        Ok(Slot {
            path: path.clone(),
            file: file.clone(),
            offset: (VALUES_DATA_AT + index as usize * SLOT_SIZE) as u64,
        })
    }

    /// Path of section `n`, for error messages.
    pub(crate) fn path(&self, n: u32) -> PathBuf {
        self.dir.join(values_name(n))
    }

    /// Whether value files use `O_DIRECT`.
    pub(crate) fn direct(&self) -> bool {
        self.direct
    }

    /// Number of value sections.
    pub(crate) fn count(&self) -> usize {
        self.files.len()
    }
}
