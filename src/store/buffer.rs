//! The write buffer (`buffer.b`): the value section being filled, memory-mapped.
//!
//! Layout: the buffer's header page (with the store's sync marks), the header page of the value
//! section it fills, then that section's slots. A put copies its value into a slot (a memory store, so it survives a
//! process crash at once); `sync` msyncs the slots. When the section is full its header page
//! and slots go to a new `.v` file in one aligned direct write straight from the map (see
//! [`Store`](super::Store)); then the buffer is [`reset`](Buffer::reset) to the next section.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Error, Result};
use crate::format::{
    BUFFER_DATA_AT, BUFFER_NAME, BUFFER_VALUES_AT, HEADER_LEN, Header, Kind, MARK_A, MARK_B,
    MARK_LEN, Mark, PAGE, SLOT_SIZE, buffer_len,
};
use crate::io::{FileIo, Map, Mode, Vfs};
use crate::key::VALUE_MAX;

use super::header_error;
use super::keys::create_complete;

/// The open write buffer.
#[derive(Debug)]
pub(crate) struct Buffer {
    pub(crate) path: PathBuf,
    _file: Arc<dyn FileIo>,
    map: Box<dyn Map>,
    /// The value section being filled.
    pub(crate) section: u32,
    /// At open: the section the template header named, if it was intact.
    pub(crate) template: Option<u32>,
    slots: u32,
    /// The newest valid sync mark found or written.
    pub(crate) mark: Mark,
    /// Where the next mark goes (the older copy).
    mark_at: usize,
}

impl Buffer {
    /// Creates the buffer for section 0, complete with both headers, under a temporary name
    /// and renamed into place (see [`create_complete`]); the caller syncs the directory.
    pub(crate) fn create(vfs: &dyn Vfs, dir: &Path, slots: u32) -> Result<Buffer> {
        let path = dir.join(BUFFER_NAME);
        let mut header = Header {
            kind: Kind::Buffer,
            section_slots: slots,
            section: 0,
        };
        let own = header.encode();
        header.kind = Kind::Values;
        let template = header.encode();
        let parts: [(u64, &[u8]); 2] = [(0, &own), (BUFFER_VALUES_AT as u64, &template)];
        let file = create_complete(vfs, &path, buffer_len(slots), &parts)?;
        let map = file.map().ctx("mmap", &path)?;
        Ok(Buffer {
            path,
            _file: file,
            map,
            section: 0,
            template: Some(0),
            slots,
            mark: Mark::default(),
            mark_at: MARK_A,
        })
    }

    /// Opens the buffer and checks its header. [`template`](Self::template) is the section the
    /// value-section template names (`None` when torn); the store checks it against the `.v`
    /// files and resets the buffer. A buffer cut short after its headers is extended with zeros.
    pub(crate) fn open(vfs: &dyn Vfs, dir: &Path) -> Result<Buffer> {
        let path = dir.join(BUFFER_NAME);
        let mode = Mode {
            create: false,
            write: true,
            direct: false,
        };
        let file = vfs.open(&path, mode).ctx("open", &path)?;
        let len = file.len().ctx("stat", &path)?;
        let mut pages = [0u8; BUFFER_DATA_AT];
        if len < BUFFER_DATA_AT as u64 {
            return Err(Error::corrupt(
                &path,
                len,
                format!(
                    "write buffer is {len} bytes, shorter than its {BUFFER_DATA_AT} bytes of headers"
                ),
            ));
        }
        file.read_at(&mut pages, 0).ctx("read header", &path)?;
        let mut page = [0u8; PAGE];
        page.copy_from_slice(&pages[..PAGE]);
        let (mark, mark_at) = Mark::newest(&page);
        let own = Header::decode(&pages[..HEADER_LEN], Kind::Buffer)
            .map_err(|e| header_error(&path, Kind::Buffer, e))?;
        // The value-section header page is a template rewritten at every reset; the section
        // it names is only a hint (the store derives the section from the `.v` files and
        // rewrites the template if it is torn or stale).
        let template = Header::decode(
            &pages[BUFFER_VALUES_AT..BUFFER_VALUES_AT + HEADER_LEN],
            Kind::Values,
        )
        .ok()
        .filter(|h| h.section_slots == own.section_slots)
        .map(|h| h.section);
        let want = buffer_len(own.section_slots);
        if len > want {
            return Err(Error::corrupt(
                &path,
                want,
                format!("write buffer is {len} bytes, longer than {want}"),
            ));
        }
        if len < want {
            file.allocate(want).ctx("allocate", &path)?;
        }
        let map = file.map().ctx("mmap", &path)?;
        Ok(Buffer {
            path,
            _file: file,
            map,
            section: template.unwrap_or(0),
            template,
            slots: own.section_slots,
            mark,
            mark_at,
        })
    }

    /// Slots per section, as the header records.
    pub(crate) fn slots(&self) -> u32 {
        self.slots
    }

    fn slot_at(index: u32) -> usize {
        BUFFER_DATA_AT + index as usize * SLOT_SIZE
    }

    /// Writes `value` (zero-padded to a whole slot) into slot `index`.
    pub(crate) fn write(&mut self, index: u32, value: &[u8]) -> Result<()> {
        let mut slot = [0u8; SLOT_SIZE];
        let Some(dst) = slot.get_mut(..value.len()) else {
            return Err(Error::ValueTooLong {
                len: value.len(),
                max: VALUE_MAX,
            });
        };
        dst.copy_from_slice(value);
        self.map
            .write(Self::slot_at(index), &slot)
            .ctx("write value", &self.path)
    }

    /// Reads slot `index` into `out`.
    pub(crate) fn read(&self, index: u32, out: &mut [u8; SLOT_SIZE]) -> Result<()> {
        self.map
            .read(Self::slot_at(index), out)
            .ctx("read value", &self.path)
    }

    /// File offset of slot `index`, for error messages.
    pub(crate) fn offset(index: u32) -> u64 {
        Self::slot_at(index) as u64
    }

    /// Makes slots `0..used` durable.
    pub(crate) fn sync(&self, used: u32) -> Result<()> {
        if used == 0 {
            return Ok(());
        }
        self.map
            .flush(BUFFER_DATA_AT, used as usize * SLOT_SIZE)
            .ctx("msync", &self.path)
    }

    /// Records that key records `0..synced` are durable: writes the older sync mark copy and
    /// syncs it.
    pub(crate) fn set_mark(&mut self, generation: u64, synced: u64) -> Result<()> {
        let mark = Mark { generation, synced };
        let at = self.mark_at;
        self.map
            .write(at, &mark.encode())
            .ctx("write sync mark", &self.path)?;
        self.map.flush(at, MARK_LEN).ctx("msync", &self.path)?;
        self.mark = mark;
        self.mark_at = if at == MARK_A { MARK_B } else { MARK_A };
        Ok(())
    }

    /// Writes the value section (its header page and all slots) to `dst` in one write.
    pub(crate) fn copy_out(&self, dst: &dyn FileIo) -> Result<()> {
        let len = PAGE + self.slots as usize * SLOT_SIZE;
        self.map
            .copy_to(BUFFER_VALUES_AT, len, dst, 0)
            .ctx("write value section from", &self.path)
    }

    /// Moves the buffer on to `section`: rewrites the value-section template page and syncs
    /// it. The buffer's own header never changes after creation. Old slot contents stay until
    /// overwritten; no record points at them.
    pub(crate) fn reset(&mut self, section: u32) -> Result<()> {
        let header = Header {
            kind: Kind::Values,
            section_slots: self.slots,
            section,
        };
        self.map
            .write(BUFFER_VALUES_AT, &header.encode())
            .ctx("write header", &self.path)?;
        self.map
            .flush(BUFFER_VALUES_AT, PAGE)
            .ctx("msync", &self.path)?;
        self.section = section;
        Ok(())
    }
}
