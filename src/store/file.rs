//! What the store's files share: creating a file complete under a temporary name, a range
//! of a mapped file to make durable outside the shard's lock, and the error for a header
//! that does not decode.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Damage, Error, Result};
use crate::format::{HeaderError, Kind, TMP_SUFFIX};
use crate::io::{self, FileIo, Mode, Vfs};

/// Creates `path` complete: writes `parts` (offset, bytes) into a preallocated file of `len`
/// bytes under a temporary name, syncs it, and renames it into place. The caller syncs the
/// directory.
pub(crate) fn create_complete(
    vfs: &dyn Vfs,
    path: &Path,
    len: u64,
    parts: &[(u64, &[u8])],
) -> Result<Arc<dyn FileIo>> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mode = Mode {
        create: true,
        write: true,
        direct: false,
    };
    let file = vfs.open(&tmp, mode).ctx("create", &tmp)?;
    file.set_len(0).ctx("truncate", &tmp)?;
    file.allocate(len).ctx("allocate", &tmp)?;
    for (off, bytes) in parts {
        file.write_at(bytes, *off).ctx("write header", &tmp)?;
    }
    file.sync().ctx("fdatasync", &tmp)?;
    vfs.rename(&tmp, path).ctx("rename", &tmp)?;
    Ok(file)
}

/// A range of a mapped file to make durable outside the shard's lock (an [`io::Span`]: it
/// can only msync, never touch the bytes), with the file's path for errors.
#[derive(Debug)]
pub(crate) struct Span {
    range: io::Span,
    path: PathBuf,
}

impl Span {
    /// A span of `range`, part of the file at `path`.
    pub(crate) fn new(range: io::Span, path: &Path) -> Span {
        Span {
            range,
            path: path.to_path_buf(),
        }
    }

    /// msyncs the range.
    pub(crate) fn flush(&self) -> Result<()> {
        if self.range.is_empty() {
            return Ok(());
        }
        self.range.flush().ctx("msync", &self.path)
    }
}

/// Turns a header decoding failure into the crate error for `path`.
pub(crate) fn header_error(path: &Path, kind: Kind, e: HeaderError) -> Error {
    match e {
        HeaderError::Magic(got) => Error::Foreign {
            file: path.to_path_buf(),
            kind: kind.name(),
            got,
        },
        HeaderError::Version(got) => Error::Version {
            file: path.to_path_buf(),
            expected: crate::format::header::VERSION,
            got,
        },
        HeaderError::Bad(why) => Error::corrupt(
            path,
            0,
            Damage::Header,
            format!("{} header: {why}", kind.name()),
        ),
    }
}
