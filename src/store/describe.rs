//! The `STORE` file: the shard count of a data directory, and the commit point of its
//! creation.
//!
//! A new store creates its shard directories first (each complete: buffer, first key section,
//! synced) and writes `STORE` last, under a temporary name renamed into place, then syncs the
//! directory. So a `STORE` on disk means every shard it names was made, and at open:
//!
//! - `STORE` present: every shard directory it names must exist; a missing one is reported,
//!   never recreated empty (its keys would silently vanish);
//! - `STORE` absent, no shard directory: a new store;
//! - `STORE` absent, shard directories present: either a creation that crashed before its
//!   commit point (no shard holds a record: creation starts over) or a lost `STORE` (some
//!   shard holds data: refused, since the shard count, and with it where each key lives,
//!   is unknown).

use std::io;
use std::path::Path;

use crate::error::{Context, Damage, Error, Result};
use crate::format::{
    BUFFER_NAME, Entry, HEADER_LEN, Header, KEYS_DATA_AT, Kind, MAX_SHARDS, PAGE, RECORD_SIZE,
    STORE_NAME, keys_name, parse_name, shard_name,
};
use crate::io::{Mode, Vfs};
use crate::options::{Options, default_shards};

use super::file::create_complete;
use super::file::header_error;

const READ: Mode = Mode {
    create: false,
    write: false,
    direct: false,
};

/// The shard count and section size of the store in `dir` (for a new store, those `options`
/// ask for, else the defaults), and whether the store is new (then [`write()`] must follow once
/// its shards exist).
pub(super) fn read(vfs: &dyn Vfs, dir: &Path, options: &Options) -> Result<(u32, u32, bool)> {
    let names = vfs.list(dir).ctx("list", dir)?;
    let path = dir.join(STORE_NAME);
    if !names.iter().any(|n| n == STORE_NAME) {
        if names.iter().any(|n| n == BUFFER_NAME) {
            return Err(Error::Version {
                file: dir.join(BUFFER_NAME),
                expected: crate::format::header::VERSION,
                got: 1,
            });
        }
        for name in names.iter().filter(|n| n.starts_with("shard-")) {
            let shard = dir.join(name);
            if holds_data(vfs, &shard)? {
                return Err(Error::corrupt(
                    &path,
                    0,
                    Damage::Missing,
                    format!(
                        "the store file is missing while {} holds data; the shard count is unknown",
                        shard.display()
                    ),
                ));
            }
        }
        let shards = options.shards.unwrap_or_else(default_shards);
        return Ok((shards, options.slots(), true));
    }
    let file = vfs.open(&path, READ).ctx("open", &path)?;
    let mut page = [0u8; HEADER_LEN];
    file.read_at(&mut page, 0).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::corrupt(
            &path,
            0,
            Damage::Length,
            "store file is shorter than its header",
        ),
        _ => Error::io("read header", &path, e),
    })?;
    let header =
        Header::decode(&page, Kind::Store).map_err(|e| header_error(&path, Kind::Store, e))?;
    let shards = header.section;
    if !(1..=MAX_SHARDS).contains(&shards) {
        return Err(Error::corrupt(
            &path,
            0,
            Damage::Header,
            format!("store file names {shards} shards"),
        ));
    }
    for (what, stored, requested) in [
        ("section_slots", header.section_slots, options.section_slots),
        ("shards", shards, options.shards),
    ] {
        if let Some(req) = requested
            && req != stored
        {
            return Err(Error::Mismatch {
                dir: dir.to_path_buf(),
                what,
                stored: stored.into(),
                requested: req.into(),
            });
        }
    }
    for i in 0..shards {
        let name = shard_name(i);
        if !names.contains(&name) {
            return Err(Error::corrupt(
                dir.join(&name),
                0,
                Damage::LostShard,
                format!("shard directory is missing; the store file names {shards} shards"),
            ));
        }
    }
    Ok((shards, header.section_slots, false))
}

/// Writes `STORE` for a new store whose `shards` shard directories are complete: the commit
/// point of its creation.
pub(super) fn write(vfs: &dyn Vfs, dir: &Path, options: &Options, shards: u32) -> Result<()> {
    let header = Header {
        kind: Kind::Store,
        section_slots: options.slots(),
        section: shards,
    };
    create_complete(
        vfs,
        &dir.join(STORE_NAME),
        PAGE as u64,
        &[(0, &header.encode())],
    )?;
    vfs.sync_dir(dir).ctx("fsync", dir)
}

/// Whether a shard directory left without a `STORE` holds any record: a value section, a key
/// section past the first, or a first key section whose first record is not blank.
fn holds_data(vfs: &dyn Vfs, shard: &Path) -> Result<bool> {
    for name in vfs.list(shard).ctx("list", shard)? {
        match parse_name(&name) {
            Entry::Values(_) => return Ok(true),
            Entry::Keys(n) if n > 0 => return Ok(true),
            _ => {}
        }
    }
    let path = shard.join(keys_name(0));
    let file = match vfs.open(&path, READ) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let mut rec = [0u8; RECORD_SIZE];
    match file.read_at(&mut rec, KEYS_DATA_AT as u64) {
        Ok(()) => Ok(rec.iter().any(|&b| b != 0)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io("read", &path, e)),
    }
}
