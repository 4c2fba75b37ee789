//! The replication position kept across a clean restart: written into the data directory at
//! a graceful shutdown, read and removed at the next start (the bytes are
//! [`format::position`](crate::format::position)'s).
//!
//! # When a position is written
//!
//! Only when it is exactly the stream position the store's content corresponds to. The
//! server writes it at the end of a graceful shutdown with its gate held exclusively (no
//! command runs, and a replica's link applies nothing: it applies each read of the stream,
//! and swaps in a full sync's copy, holding the gate), after the role's threads are stopped
//! and the store is synced; and only once the position means something (the backlog exists:
//! a master that never had a replica counts no offset). A replica whose full sync was under
//! way keeps its old data and its old position, which still agree.
//!
//! # Why it is removed at start
//!
//! The file describes the data as the shutdown left it. Read at start, it is removed (and
//! the directory fsynced) before the server takes a command or applies a write, so after a
//! later crash (kill -9, power loss) there is no file and the server starts as it always
//! did: a new replication id, a full sync. A file that cannot be removed is not used. A
//! missing file is normal; an unreadable, corrupt, truncated or foreign one is ignored with a
//! warning naming the file and what was wrong, as is one saved with another number of keys
//! than the store holds (not the data it was saved with).

use std::io::Write as _;
use std::path::Path;

use tracing::{info, warn};

use crate::format::position::{POSITION_NAME, POSITION_TMP_NAME, Position};

/// Writes `p` as `dir`'s position: under a temporary name, fdatasynced, renamed into place,
/// the directory fsynced.
pub(crate) fn save(dir: &Path, p: &Position) -> std::io::Result<()> {
    let tmp = dir.join(POSITION_TMP_NAME);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&p.encode())?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(POSITION_NAME))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Why a position file was not used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ignored {
    /// It could not be read.
    Unreadable(String),
    /// Its bytes are not a position.
    Bad(crate::format::position::PositionError),
    /// It was saved over another number of keys than the store holds.
    Keys { saved: u64, found: u64 },
    /// It could not be removed (a later crash could reuse it).
    Kept(String),
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ignored::Unreadable(e) => write!(f, "cannot read it: {e}"),
            Ignored::Bad(e) => write!(f, "not a valid replication position: {e}"),
            Ignored::Keys { saved, found } => write!(
                f,
                "saved over {saved} keys but the store holds {found}: not the data it describes"
            ),
            Ignored::Kept(e) => write!(f, "cannot remove it: {e}"),
        }
    }
}

/// Reads and removes `dir`'s position (and any `REPLPOS.tmp` a shutdown cut short left),
/// fsyncing the directory: the position if there was a usable one for a store of `keys`
/// keys, `Ok(None)` if there was none, or why the one there was is not used.
pub(crate) fn take_from(dir: &Path, keys: u64) -> Result<Option<Position>, Ignored> {
    let path = dir.join(POSITION_NAME);
    let tmp = dir.join(POSITION_TMP_NAME);
    let left = std::fs::remove_file(&tmp).is_ok();
    let read = match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            // Unreadable: still try to remove it, so it cannot be used later.
            let _ = std::fs::remove_file(&path);
            let _ = sync_dir(dir);
            return Err(Ignored::Unreadable(e.to_string()));
        }
    };
    let Some(bytes) = read else {
        if left {
            sync_dir(dir).map_err(|e| Ignored::Kept(e.to_string()))?;
        }
        return Ok(None);
    };
    std::fs::remove_file(&path)
        .and_then(|()| sync_dir(dir))
        .map_err(|e| Ignored::Kept(e.to_string()))?;
    let p = Position::decode(&bytes).map_err(Ignored::Bad)?;
    if p.keys != keys {
        return Err(Ignored::Keys {
            saved: p.keys,
            found: keys,
        });
    }
    Ok(Some(p))
}

/// [`take_from`], logged: the position to start from, if any.
pub(crate) fn take(dir: &Path, keys: u64) -> Option<Position> {
    let path = dir.join(POSITION_NAME);
    match take_from(dir, keys) {
        Ok(Some(p)) => {
            info!(
                file = %path.display(),
                replid = %p.replid,
                offset = p.offset,
                "replication position kept from a clean shutdown: replicas may continue from it"
            );
            Some(p)
        }
        Ok(None) => None,
        Err(why) => {
            warn!(
                file = %path.display(),
                "replication position ignored ({why}); starting with a new replication id \
                 (replicas will need a full sync)"
            );
            None
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::position::{POSITION_LEN, PositionError, ReplId};

    fn position(keys: u64) -> Position {
        Position {
            replid: ReplId::parse(&"ab".repeat(20)).unwrap(),
            offset: 77,
            replid2: ReplId::parse(&"0".repeat(40)).unwrap(),
            second_offset: None,
            keys,
        }
    }

    #[test]
    fn a_saved_position_is_taken_once() {
        let d = crate::testing::tempdir();
        assert_eq!(take_from(d.path(), 3), Ok(None));
        save(d.path(), &position(3)).unwrap();
        assert!(!d.path().join(POSITION_TMP_NAME).exists());
        assert_eq!(take_from(d.path(), 3), Ok(Some(position(3))));
        assert!(!d.path().join(POSITION_NAME).exists());
        // Taken: a second start (as after a crash) finds nothing.
        assert_eq!(take_from(d.path(), 3), Ok(None));
    }

    #[test]
    fn a_bad_file_is_ignored_with_the_reason_and_removed() {
        let d = crate::testing::tempdir();
        let path = d.path().join(POSITION_NAME);
        let good = position(3).encode();
        let mut flipped = good;
        flipped[50] ^= 0x01;
        let cases: [(&[u8], Ignored); 3] = [
            (&good[..60], Ignored::Bad(PositionError::Length(60))),
            (&flipped, Ignored::Bad(PositionError::Checksum)),
            (
                b"replicaof 10.0.0.1 6379\n",
                Ignored::Bad(PositionError::Length(24)),
            ),
        ];
        for (bytes, why) in cases {
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(take_from(d.path(), 3), Err(why));
            assert!(!path.exists());
        }
        save(d.path(), &position(3)).unwrap();
        assert_eq!(
            take_from(d.path(), 4),
            Err(Ignored::Keys { saved: 3, found: 4 })
        );
        assert!(!path.exists());
        // What the warning says names what was wrong.
        let text = Ignored::Bad(PositionError::Length(60)).to_string();
        assert!(
            text.contains(&format!("60 bytes, not the {POSITION_LEN}")),
            "{text}"
        );
    }

    #[test]
    fn a_leftover_temporary_file_is_removed_and_never_used() {
        let d = crate::testing::tempdir();
        std::fs::write(d.path().join(POSITION_TMP_NAME), position(0).encode()).unwrap();
        assert_eq!(take_from(d.path(), 0), Ok(None));
        assert!(!d.path().join(POSITION_TMP_NAME).exists());
    }
}
