//! Opening a shard's directory: create it, or check every file and recover.
//!
//! 1. List the files; remove `*.tmp` left by an interrupted write-out or creation.
//! 2. No buffer and nothing written: create key section 0 and the buffer (a fresh shard).
//! 3. Open the buffer and every value section, checking headers and lengths.
//! 4. Open the key sections from the one the sync mark names as first (numbered without gaps;
//!    older ones left by an interrupted garbage collection are removed) and walk the log
//!    (the `recover` log walk). Zero a dropped tail and remove key sections after it.
//! 5. Build the index and the usage counts; check that every live value's section exists.
//! 6. Settle the banks: the one holding the last put's section goes on filling; one that holds
//!    live values of a section never written out (a crash during its write-out) is written
//!    out now; the other is free.
//! 7. Sync, so that records recovered from a crash are below the mark before any section
//!    number is used again.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Context, Damage, Error, Result};
use crate::format::{
    BANKS, BUFFER_NAME, Entry, MAX_SLOTS, RECORD_SIZE, bank_at, keys_name, parse_name,
};
use crate::io::Vfs;
use crate::options::Options;

use super::recover;
use super::{Counters, Inner};
use crate::store::buffer::Buffer;
use crate::store::index::SPAN;
use crate::store::keys::Section;
use crate::store::usage::Usage;
use crate::store::values::Values;

/// Opens or creates shard `id` in `dir` (the store holds the directory lock).
pub(super) fn open(dir: &Path, id: usize, options: &Options) -> Result<Inner> {
    let vfs: Arc<dyn Vfs> = options.vfs.clone();
    let slots = options.slots();
    vfs.create_dir(dir).ctx("create directory", dir)?;

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

    let buffer = Buffer::open(&*vfs, dir)?;
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
                Damage::Other,
                format!(
                    "value section {n} is past the last addressable section {}",
                    sections_max - 1
                ),
            ));
        }
        values.open(&*vfs, n)?;
    }

    let first = buffer.mark().first;
    let mut keys = open_keys(&*vfs, dir, slots, &buffer, &mut key_files)?;
    let mut walk = recover::walk(&keys, first, slots, &buffer, &values, options.keep_going)?;
    let refused = std::mem::take(&mut walk.bad);
    drop_tail(&mut keys, first, walk.end, slots)?;
    let keep = ((walk.end / u64::from(slots)).saturating_sub(u64::from(first)) + 1) as usize;
    if keys.len() > keep {
        for section in keys.drain(keep..) {
            vfs.remove(&section.path).ctx("remove", &section.path)?;
        }
        vfs.sync_dir(dir).ctx("fsync", dir)?;
    }

    let Some(index) = walk.log.build() else {
        return Err(Error::Full {
            what: "key records from the oldest live one to the newest",
            limit: SPAN,
        });
    };
    let mut usage = Usage::new(slots, first, walk.fills);
    usage.count(index.seqs());
    let mark = buffer.mark();
    let mut inner = Inner {
        id,
        dir: dir.to_path_buf(),
        vfs,
        _lock: None,
        slots,
        keys,
        first,
        buffer,
        values,
        index,
        usage,
        next_seq: walk.end,
        synced_seq: mark.synced.min(walk.end),
        generation: mark.generation,
        jobs: None,
        torn: walk.torn,
        failed: None,
        counters: Counters::default(),
        gc_skip: Default::default(),
        gc_on: options.gc,
        pinned: 0,
        pressure: false,
        refused,
    };
    settle_banks(&mut inner, walk.last)?;
    inner.sync_inline()?;
    Ok(inner)
}

/// Opens the key sections from the mark's first one, removing older ones (left by garbage
/// collection interrupted between its mark and its removal), and creating the first one of
/// an empty log.
fn open_keys(
    vfs: &dyn Vfs,
    dir: &Path,
    slots: u32,
    buffer: &Buffer,
    key_files: &mut Vec<u32>,
) -> Result<Vec<Section>> {
    let first = buffer.mark().first;
    let old: Vec<u32> = key_files.iter().copied().filter(|&n| n < first).collect();
    for &n in &old {
        let path = dir.join(keys_name(n));
        vfs.remove(&path).ctx("remove", &path)?;
    }
    if !old.is_empty() {
        vfs.sync_dir(dir).ctx("fsync", dir)?;
        key_files.retain(|&n| n >= first);
    }
    if key_files.is_empty() {
        if buffer.mark().synced > u64::from(first) * u64::from(slots) {
            return Err(Error::corrupt(
                dir.join(keys_name(first)),
                0,
                Damage::Missing,
                format!(
                    "key records up to {} were synced but no key section is left",
                    buffer.mark().synced
                ),
            ));
        }
        Section::create(vfs, dir, first, slots)?;
        vfs.sync_dir(dir).ctx("fsync", dir)?;
        key_files.push(first);
    }
    let mut keys = Vec::with_capacity(key_files.len());
    for (i, &n) in key_files.iter().enumerate() {
        let want = u64::from(first) + i as u64;
        if want != u64::from(n) {
            return Err(Error::corrupt(
                dir.join(keys_name(want as u32)),
                0,
                Damage::Missing,
                format!("key section is missing (next is {})", keys_name(n)),
            ));
        }
        keys.push(Section::open(vfs, dir, n, slots)?);
    }
    Ok(keys)
}

/// Checks that every live value's section exists, and sets the banks up: the one holding the
/// last put's section goes on filling; one whose section holds live values but was never
/// written out (a crash during its write-out) is written out now; any other is free.
fn settle_banks(inner: &mut Inner, last: Option<(u32, u32)>) -> Result<()> {
    let sections: Vec<u32> = inner.values.sections().collect();
    for n in sections {
        inner.usage.track(n);
    }
    for bank in 0..BANKS {
        let Some(t) = inner.buffer.sections()[bank] else {
            continue;
        };
        if inner.values.has(t) {
            continue;
        }
        match last {
            Some((l, index)) if l == t => {
                inner.buffer.resume(bank, index + 1);
                inner.usage.track(t);
            }
            _ if inner.usage.live(t) > 0 => {
                inner.write_out(bank)?;
                inner.usage.track(t);
            }
            _ => {
                let r = inner.buffer.clear(bank);
                inner.guard(r)?;
            }
        }
    }
    let Some(bad) = inner
        .usage
        .missing(|n| inner.values.has(n) || inner.buffer.holding(n).is_some())
    else {
        return Ok(());
    };
    // A bank whose header page is damaged may be the one that held the section.
    if let Some(bank) = inner.buffer.damaged() {
        return Err(Error::corrupt(
            &inner.buffer.path,
            bank_at(inner.slots, bank) as u64,
            Damage::Header,
            format!(
                "the header page of bank {bank} is damaged, and {} live keys point into value \
                 section {}, which no .v file holds",
                bad.1, bad.0
            ),
        ));
    }
    Err(Error::corrupt(
        inner.values.path(bad.0),
        0,
        Damage::Missing,
        format!(
            "value section is missing but {} live keys point into it",
            bad.1
        ),
    ))
}

/// Creates a fresh store: key section 0 and the buffer, then syncs the directory. Refuses when
/// the buffer is missing from a directory that holds data.
fn create(vfs: &dyn Vfs, dir: &Path, slots: u32, keys: &[u32], values: &[u32]) -> Result<()> {
    let missing = |what: &str| {
        Error::corrupt(
            dir.join(BUFFER_NAME),
            0,
            Damage::Missing,
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

/// Zeroes what follows the log's end in its key section.
fn drop_tail(keys: &mut [Section], first: u32, end: u64, slots: u32) -> Result<()> {
    let s = u64::from(slots);
    let last = (end / s).saturating_sub(u64::from(first)) as usize;
    if let Some(section) = keys.get_mut(last) {
        let from = (end % s) as u32;
        let mut rest = vec![0u8; (slots - from) as usize * RECORD_SIZE];
        section.read_raw(from, &mut rest)?;
        if rest.iter().any(|&b| b != 0) {
            section.zero_from(from, slots)?;
        }
    }
    Ok(())
}

/// Fails early, with the option to turn it off, when the file system refuses `O_DIRECT` or
/// needs a direct-I/O alignment above one page ([`Error::Alignment`]): opens the lock file
/// with it and asks its alignment.
pub(crate) fn probe_direct(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let path = dir.join(crate::format::LOCK_NAME);
    let mode = crate::io::Mode {
        create: false,
        write: false,
        direct: true,
    };
    match vfs.open(&path, mode) {
        // The bank write-outs and the journal align direct writes to one page: a device that
        // needs more would fail the first of them with EINVAL, after puts were accepted.
        Ok(f) => {
            let a = f.align();
            let need = a.mem.max(a.offset);
            if need > crate::format::PAGE {
                return Err(Error::Alignment {
                    path,
                    need,
                    max: crate::format::PAGE,
                });
            }
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Err(Error::DirectUnsupported { path, source: e })
        }
        Err(e) => Err(Error::io("open", &path, e)),
    }
}
