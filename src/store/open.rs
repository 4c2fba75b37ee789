//! Opening a data directory: create it, or check every file and recover.
//!
//! 1. Take the directory lock; list the files; remove `*.tmp` left by an interrupted flush.
//! 2. No buffer and nothing written: create key section 0 and the buffer (a fresh store).
//! 3. Open the buffer and every value section, checking headers and lengths. The section the
//!    buffer fills is one past the last value section; the buffer's template header is
//!    rewritten if a crash interrupted a flush after its rename.
//! 4. Open the key sections (numbered 0, 1, … without gaps) and walk the log
//!    ([`recover`](super::recover)). Zero a dropped tail and remove key sections after it.
//! 5. Build the index.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Context, Error, Result};
use crate::format::{BUFFER_NAME, Entry, MAX_SLOTS, RECORD_SIZE, keys_name, parse_name};
use crate::io::Vfs;
use crate::options::Options;

use super::Inner;
use super::buffer::Buffer;
use super::keys::Section;
use super::recover;
use super::values::Values;

/// Opens or creates the store in `dir`.
pub(super) fn open(dir: &Path, options: Options) -> Result<Inner> {
    options.check()?;
    let vfs: Arc<dyn Vfs> = options.vfs.clone();
    let slots = options.section_slots;
    vfs.create_dir(dir).ctx("create directory", dir)?;
    let lock = vfs.lock(dir).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::Locked {
            dir: dir.to_path_buf(),
        },
        _ => Error::io("lock", dir, e),
    })?;

    if options.direct_io {
        probe_direct(&*vfs, dir)?;
    }

    let (mut key_files, mut value_files, mut has_buffer, mut tmp) = (vec![], vec![], false, vec![]);
    for name in vfs.list(dir).ctx("list", dir)? {
        match parse_name(&name) {
            Entry::Keys(n) => key_files.push(n),
            Entry::Values(n) => value_files.push(n),
            Entry::Buffer => has_buffer = true,
            Entry::Tmp => tmp.push(name),
            Entry::Lock | Entry::Other => {}
        }
    }
    key_files.sort_unstable();
    value_files.sort_unstable();
    for name in &tmp {
        let path = dir.join(name);
        vfs.remove(&path).ctx("remove", &path)?;
    }

    if !has_buffer {
        create(&*vfs, dir, slots, &key_files, &value_files)?;
        key_files = vec![0];
        value_files.clear();
    } else if !tmp.is_empty() {
        vfs.sync_dir(dir).ctx("fsync", dir)?;
    }

    let mut buffer = Buffer::open(&*vfs, dir)?;
    if buffer.slots() != slots {
        return Err(Error::Mismatch {
            dir: dir.to_path_buf(),
            what: "section_slots",
            stored: buffer.slots().into(),
            requested: slots.into(),
        });
    }
    let sections_max = MAX_SLOTS / u64::from(slots);
    let mut values = Values::new(dir, options.direct_io, slots);
    for &n in &value_files {
        if u64::from(n) >= sections_max {
            return Err(Error::corrupt(
                values.path(n),
                0,
                format!(
                    "value section {n} is past the last addressable section {}",
                    sections_max - 1
                ),
            ));
        }
        values.open(&*vfs, n)?;
    }
    let filling = values.last().map_or(0, |n| n + 1);
    if let Some(moved) = buffer.template.filter(|&t| t > filling) {
        // A flush renames its `.v` into place durably before the buffer moves on.
        return Err(Error::corrupt(
            values.path(filling),
            0,
            format!("value section is missing: the buffer has moved on to section {moved}"),
        ));
    }
    if buffer.template != Some(filling) {
        buffer.reset(filling)?;
    }

    if key_files.is_empty() {
        if values.count() > 0 {
            return Err(Error::corrupt(
                dir.join(keys_name(0)),
                0,
                "key sections are missing but value sections exist",
            ));
        }
        Section::create(&*vfs, dir, 0, slots)?;
        vfs.sync_dir(dir).ctx("fsync", dir)?;
        key_files.push(0);
    }
    let mut keys = Vec::with_capacity(key_files.len());
    for (want, &n) in key_files.iter().enumerate() {
        if want as u64 != u64::from(n) {
            return Err(Error::corrupt(
                dir.join(keys_name(want as u32)),
                0,
                format!("key section is missing (next is {})", keys_name(n)),
            ));
        }
        keys.push(Section::open(&*vfs, dir, n, slots)?);
    }

    let walk = recover::walk(&keys, 0, slots, &buffer, &values)?;
    drop_tail(&*vfs, dir, &mut keys, walk.end, slots)?;

    let mark = buffer.mark;
    let s = u64::from(slots);
    let next_slot = walk
        .last_slot
        .map_or(0, |l| u64::from(l) + 1)
        .max(u64::from(buffer.section) * s);
    Ok(Inner {
        dir: dir.to_path_buf(),
        vfs,
        _lock: lock,
        slots,
        keys,
        first: 0,
        buffer,
        values,
        index: walk.log.build(),
        next_seq: walk.end,
        synced_seq: mark.synced,
        next_slot,
        generation: mark.generation,
        torn: walk.torn,
        failed: None,
    })
}

/// Creates a fresh store: key section 0 and the buffer, then syncs the directory. Refuses when
/// the buffer is missing from a directory that holds data.
fn create(vfs: &dyn Vfs, dir: &Path, slots: u32, keys: &[u32], values: &[u32]) -> Result<()> {
    let missing = |what: &str| {
        Error::corrupt(
            dir.join(BUFFER_NAME),
            0,
            format!("the write buffer is missing but {what}"),
        )
    };
    if !values.is_empty() {
        return Err(missing("value sections exist"));
    }
    // Key sections without a buffer: creation was interrupted. Only empty ones may go.
    for &n in keys {
        let section = Section::open(vfs, dir, n, slots)?;
        let mut first = [0u8; RECORD_SIZE];
        section.read_raw(0, &mut first)?;
        if first.iter().any(|&b| b != 0) {
            return Err(missing("key sections hold records"));
        }
    }
    for &n in keys {
        let path = dir.join(keys_name(n));
        vfs.remove(&path).ctx("remove", &path)?;
    }
    Section::create(vfs, dir, 0, slots)?;
    Buffer::create(vfs, dir, slots)?;
    vfs.sync_dir(dir).ctx("fsync", dir)
}

/// Zeroes what follows the log's end in its section and removes later key sections.
fn drop_tail(
    vfs: &dyn Vfs,
    dir: &Path,
    keys: &mut Vec<Section>,
    end: u64,
    slots: u32,
) -> Result<()> {
    let s = u64::from(slots);
    let last = (end / s) as usize;
    if let Some(section) = keys.get_mut(last) {
        let from = (end % s) as u32;
        let mut rest = vec![0u8; (slots - from) as usize * RECORD_SIZE];
        section.read_raw(from, &mut rest)?;
        if rest.iter().any(|&b| b != 0) {
            section.zero_from(from, slots)?;
        }
    }
    if keys.len() > last + 1 {
        for section in keys.drain(last + 1..) {
            vfs.remove(&section.path).ctx("remove", &section.path)?;
        }
        vfs.sync_dir(dir).ctx("fsync", dir)?;
    }
    Ok(())
}

/// Fails early, with the option to turn it off, when the file system refuses `O_DIRECT`: opens
/// the lock file with it.
fn probe_direct(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let path = dir.join(crate::format::LOCK_NAME);
    let mode = crate::io::Mode {
        create: false,
        write: false,
        direct: true,
    };
    match vfs.open(&path, mode) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Err(Error::DirectUnsupported { path, source: e })
        }
        Err(e) => Err(Error::io("open", &path, e)),
    }
}
