//! The store side of `toykv check`: open's own recovery, run read-only.
//!
//! [`check`] opens the store through an [`Overlay`] of the operating system's files with the
//! code [`Store::open_with`](super::Store::open_with) runs (reading `STORE`, finding the
//! journal, opening every shard, replaying the journal), with durability `none`, no garbage
//! collection, no cache and no background threads. Recovery runs for real but nothing on disk
//! changes: what it would repair stays in the overlay, which records it as [`Change`]s. Instead
//! of stopping at the first refusal, each step's error is collected and the next step runs
//! (every shard is opened, whatever the others did), and with `Options::keep_going` a shard's
//! log walk ([`recover`](super::recover)) skips damaged synced records, handing each back.
//! The journal is replayed only when nothing was refused (as open would). Once the store is
//! open, every record of every shard's recovered log is read back, and every live value is
//! read with the get path and checked against its checksum.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Error, Result};
use crate::format::journal::{JournalOp, decode_entry};
use crate::format::{
    BUFFER_NAME, DEFAULT_SECTION_SLOTS, HEADER_LEN, Header, KEYS_DATA_AT, Kind, MAX_SHARDS, Mark,
    PAGE, RECORD_SIZE, STORE_NAME, parse_name, shard_name,
};
use crate::io::{Change, Mode, Os, Overlay, Vfs};
use crate::options::{Durability, Options};

use super::shard::Shard;
use super::{describe, journal};

pub(crate) use super::shard::{LogCounts, Reads as Values, Seen};

/// What [`check`] found in one shard directory.
#[derive(Debug, Default)]
pub(crate) struct ShardChecked {
    /// The shard's number.
    pub(crate) id: u32,
    /// Its directory.
    pub(crate) dir: PathBuf,
    /// The newest valid sync mark on disk (all zero when none is).
    pub(crate) mark: Mark,
    /// Whether open accepts it.
    pub(crate) opened: bool,
    /// When the log ended at a damaged unsynced record: where and why.
    pub(crate) torn: Option<String>,
    /// The recovered log (the journal's replay included): files, records, live keys.
    pub(crate) log: LogCounts,
    /// The sequence number after the recovered log, before the journal's replay.
    pub(crate) recovered: u64,
    /// Written records after the end of the log, which open zeroes or removes.
    pub(crate) dropped: u64,
}

/// What the journal holds, as open reads it.
#[derive(Debug)]
pub(crate) struct JournalChecked {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    pub(crate) epoch: u64,
    pub(crate) frames: u64,
    pub(crate) puts: u64,
    pub(crate) deletes: u64,
    /// Why the block after the last frame was not one, when it looked like a torn commit.
    pub(crate) torn: Option<journal::Torn>,
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Records per key section (from `STORE`, else the default).
    pub(crate) slots: u32,
    /// No `STORE`, no shard holding data: open makes a new store (not run here).
    pub(crate) fresh: bool,
    /// Every error open would stop at: `STORE`, each shard, the journal.
    pub(crate) errors: Vec<Error>,
    /// Live values that fail their checks (open succeeds; their gets fail).
    pub(crate) values: Vec<Error>,
    /// What recovery changed before the journal's replay: what open repairs.
    pub(crate) changes: Vec<Change>,
    /// Each shard directory opened, in order.
    pub(crate) shards: Vec<ShardChecked>,
    /// The journal, if any was read.
    pub(crate) journal: Option<JournalChecked>,
}

const READ: Mode = Mode {
    create: false,
    write: false,
    direct: false,
};

/// Runs open's recovery of the store in `dir` read-only (see the [module docs](self)), shows
/// each record of the recovered logs to `visit`, shard by shard in log order, and reads
/// `values`. Fails only when the directory is locked ([`Error::Locked`]) or cannot be listed,
/// or when `visit` fails; everything open would refuse is in [`Checked::errors`].
pub(crate) fn check(
    dir: &Path,
    values: Values,
    visit: &mut dyn FnMut(&Seen<'_>) -> io::Result<()>,
) -> Result<Checked> {
    let base: Arc<dyn Vfs> = Arc::new(Os);
    let names = base.list(dir).ctx("list", dir)?;
    let _lock = base.lock(dir).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::Locked {
            dir: dir.to_path_buf(),
        },
        _ => Error::io("lock", dir, e),
    })?;
    let overlay = Arc::new(Overlay::new(base.clone()));
    let header = store_header(&*base, dir);
    let mut options = Options::new()
        .vfs(overlay.clone())
        .durability(Durability::None)
        .gc(false)
        .cache_bytes(0)
        .direct_io(false);
    options.keep_going = true;
    if let Some(h) = header {
        options = options.section_slots(h.section_slots);
    }
    let mut c = Checked::default();
    let (count, slots, fresh) = match describe::read(&*overlay, dir, &options) {
        Ok(r) => r,
        Err(e) => {
            c.errors.push(e);
            let n = header.map_or(0, |h| h.section);
            let slots = header.map_or(DEFAULT_SECTION_SLOTS, |h| h.section_slots);
            (if n <= MAX_SHARDS { n } else { 0 }, slots, false)
        }
    };
    let options = options.section_slots(slots);
    c.slots = slots;
    c.fresh = fresh;
    let found = match journal::find(dir, &options, fresh) {
        Ok(f) => f,
        Err(e) => {
            c.errors.push(e);
            None
        }
    };
    c.journal = found.as_ref().map(|f| {
        let (mut puts, mut deletes, mut at) = (0, 0, 0);
        while let Some(Ok((op, n))) = f
            .entries
            .get(at..)
            .filter(|b| !b.is_empty())
            .map(decode_entry)
        {
            match op {
                JournalOp::Put(..) => puts += 1,
                JournalOp::Delete(_) => deletes += 1,
                JournalOp::Batch(_) => {}
            }
            at += n;
        }
        JournalChecked {
            path: f.path.clone(),
            len: f.file.len().unwrap_or(f.header.len),
            epoch: f.header.epoch,
            frames: f.frames,
            puts,
            deletes,
            torn: f.torn.clone(),
        }
    });
    if fresh {
        return Ok(c);
    }
    let mut shards = Vec::new();
    for i in 0..count {
        let name = shard_name(i);
        if !names.contains(&name) {
            continue; // reported by describe
        }
        let path = dir.join(&name);
        let mut s = ShardChecked {
            id: i,
            mark: found_mark(&*base, &path),
            dir: path,
            ..ShardChecked::default()
        };
        match Shard::open(&s.dir, i as usize, &options, 0) {
            Ok(shard) => {
                let mut r = shard.recovered();
                // Damaged synced records recovery skipped: open proper refuses the shard.
                s.opened = r.refused.is_empty();
                c.errors.append(&mut r.refused);
                s.log.banks = r.banks;
                s.torn = r.torn;
                s.recovered = r.next;
                shards.push((c.shards.len(), shard));
            }
            Err(e) => c.errors.push(e),
        }
        c.shards.push(s);
    }
    c.changes = overlay.changes();
    for s in &mut c.shards {
        s.dropped = dropped(&*base, s, &c.changes);
    }
    if c.errors.is_empty() {
        // Every shard opened (else `STORE` or a shard was refused), in shard order.
        let (at, opened): (Vec<usize>, Vec<Shard>) = shards.into_iter().unzip();
        let replayed = super::recover(dir, &options, found, &opened);
        shards = at.into_iter().zip(opened).collect();
        if let Err(e) = replayed {
            c.errors.push(e);
        }
    }
    for (at, shard) in &shards {
        let s = &mut c.shards[*at];
        s.log = shard.visit_log(
            s.id,
            s.mark.synced,
            s.recovered,
            values,
            &mut c.values,
            visit,
        )?;
    }
    Ok(c)
}

/// The `STORE` header of `dir`, if it decodes.
pub(crate) fn store_header(vfs: &dyn Vfs, dir: &Path) -> Option<Header> {
    let file = vfs.open(&dir.join(STORE_NAME), READ).ok()?;
    let mut head = [0u8; HEADER_LEN];
    file.read_at(&mut head, 0).ok()?;
    Header::decode(&head, Kind::Store).ok()
}

/// The newest valid sync mark in the buffer of shard directory `dir` on disk.
fn found_mark(vfs: &dyn Vfs, dir: &Path) -> Mark {
    let mut page = [0u8; PAGE];
    let read = vfs
        .open(&dir.join(BUFFER_NAME), READ)
        .and_then(|f| f.read_at(&mut page, 0));
    match read {
        Ok(()) => Mark::newest(&page).0,
        Err(_) => Mark::default(),
    }
}

/// Written records that `changes` zero or remove from the key sections of shard `s` after its
/// log's end (the torn tail), counted in the files on disk.
fn dropped(vfs: &dyn Vfs, s: &ShardChecked, changes: &[Change]) -> u64 {
    let is_keys = |p: &Path| p.parent() == Some(&s.dir) && p.extension().is_some_and(|e| e == "k");
    let mut n = 0;
    for change in changes {
        let (path, from, len) = match change {
            Change::Write { path, off, len } if is_keys(path) => (path, *off, *len),
            Change::Remove(path) if is_keys(path) => {
                let name = path.file_name().map(|f| f.to_string_lossy().into_owned());
                if let Some(crate::format::Entry::Keys(k)) = name.as_deref().map(parse_name)
                    && k < s.mark.first
                {
                    continue; // older than the log: not records of it
                }
                (path, KEYS_DATA_AT as u64, u64::MAX)
            }
            _ => continue,
        };
        let Ok(file) = vfs.open(path, READ) else {
            continue;
        };
        let end = file.len().unwrap_or(0).min(from.saturating_add(len));
        let mut b = vec![0u8; end.saturating_sub(from) as usize];
        if file.read_at(&mut b, from).is_ok() {
            n += b
                .chunks(RECORD_SIZE)
                .filter(|r| r.iter().any(|&x| x != 0))
                .count() as u64;
        }
    }
    n
}
