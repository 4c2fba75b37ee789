//! The one error type of the crate.
//!
//! Every failure names what went wrong and where: the file, the byte offset, and what was
//! expected against what was found. Operating-system errors keep their [`std::io::Error`] as
//! the [`source`](std::error::Error::source). A missing key is not an error: reads return
//! `Ok(None)`.

use std::io;
use std::path::PathBuf;

/// Result type of every fallible toykv operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in toykv.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sync (`fdatasync`, `fsync` of a directory, `msync`) failed. The kernel may have
    /// dropped the dirty data it held, so a store that meets this refuses writes until it is
    /// reopened (see [`Error::Failed`] and [`Error::poisons`]).
    #[error("{op} {}: {source}", path.display())]
    Sync {
        /// Which sync.
        op: SyncOp,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error the operating system reported.
        source: io::Error,
    },

    /// An operating-system call other than a sync failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"open"`, `"read"`, `"rename"`, …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error the operating system reported.
        source: io::Error,
    },

    /// Bytes on disk do not match what the format requires: a bad checksum, an impossible field,
    /// a missing or truncated file. Data is never returned from a place that fails its check.
    #[error("corruption in {} at offset {offset}: {what}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged header, record or slot in that file.
        offset: u64,
        /// What kind of damage it is: what a caller decides on (the text is for people).
        damage: Damage,
        /// What is wrong there.
        what: String,
    },

    /// A file does not start with a toykv header of the kind its name promises.
    #[error("{} is not a toykv {kind} file (magic {got:02x?})", file.display())]
    Foreign {
        /// The file.
        file: PathBuf,
        /// The kind of file its name promises (`"key section"`, …).
        kind: &'static str,
        /// The first bytes found.
        got: Vec<u8>,
    },

    /// A file was written by a format version this build does not read.
    #[error("{} has format version {got}; this build reads version {expected}", file.display())]
    Version {
        /// The file.
        file: PathBuf,
        /// The version this build reads.
        expected: u32,
        /// The version found in the file.
        got: u32,
    },

    /// The options ask for a parameter that differs from the one the store was created with.
    #[error("store at {} was created with {what} = {stored}; the options ask for {requested}", dir.display())]
    Mismatch {
        /// The data directory.
        dir: PathBuf,
        /// The parameter.
        what: &'static str,
        /// Its value in the store's files.
        stored: u64,
        /// Its value in the options.
        requested: u64,
    },

    /// An option is out of its range.
    #[error("invalid option {what}: {why}")]
    Option {
        /// The option.
        what: &'static str,
        /// Why it is refused.
        why: String,
    },

    /// A value is longer than a slot.
    #[error("value of {len} bytes is longer than the maximum of {max} bytes")]
    ValueTooLong {
        /// Length of the value offered.
        len: usize,
        /// The maximum length.
        max: usize,
    },

    /// An atomic batch puts more values into one shard than its write buffer's bank holds.
    #[error("batch puts {puts} values into shard {shard}, whose bank holds {max}: split the batch")]
    BatchTooLarge {
        /// The shard.
        shard: usize,
        /// Values the batch puts there.
        puts: usize,
        /// Values a bank holds (slots per section).
        max: usize,
    },

    /// An atomic batch's entries take more bytes than a batch may.
    #[error("batch of {bytes} bytes of entries; a batch holds at most {max}: split it")]
    BatchBytes {
        /// Bytes the entries would take.
        bytes: usize,
        /// The most a batch may take ([`MAX_BATCH_BYTES`](crate::format::intent::MAX_BATCH_BYTES)).
        max: usize,
    },

    /// Every value slot (or key record number) the format can address is used.
    #[error("store is full: all {limit} {what} are used")]
    Full {
        /// What ran out (`"value slots"`, `"key records"`).
        what: &'static str,
        /// How many the format can address.
        limit: u64,
    },

    /// Another process (or another `Store` in this one) has the data directory open.
    #[error("data directory {} is locked by another process or store", dir.display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },

    /// The file system refused `O_DIRECT`.
    #[error(
        "the file system under {} refuses O_DIRECT ({source}); open with \
         `Options::new().direct_io(false)` to use buffered I/O with fdatasync instead",
        path.display()
    )]
    DirectUnsupported {
        /// The file that could not be opened with `O_DIRECT`.
        path: PathBuf,
        /// The error the operating system reported.
        source: io::Error,
    },

    /// The device under the data directory asks for a direct-I/O alignment larger than the
    /// store's write-outs and journal use (one page): direct writes would fail with `EINVAL`.
    #[error(
        "the device under {} needs direct I/O aligned to {need} bytes; toykv aligns direct \
         writes to at most {max} bytes; open with `Options::new().direct_io(false)` to use \
         buffered I/O with fdatasync instead",
        path.display()
    )]
    Alignment {
        /// The file whose direct-I/O alignment was asked.
        path: PathBuf,
        /// The alignment the device needs (the larger of its buffer and offset alignments).
        need: usize,
        /// The largest alignment toykv supports.
        max: usize,
    },

    /// A network operation of the server failed.
    #[error("{op} {addr}: {source}")]
    Net {
        /// What was being done (`"bind"`, `"accept"`, …).
        op: &'static str,
        /// The address concerned.
        addr: String,
        /// The error the operating system reported.
        source: io::Error,
    },

    /// A snapshot stream (a full sync, a backup) that cannot be read: cut short, damaged,
    /// or not a snapshot.
    #[error("snapshot {from}, byte {at}: {what}")]
    Snapshot {
        /// Where the stream came from (a peer's address, a file).
        from: String,
        /// The byte of the stream where it went wrong.
        at: u64,
        /// What was wrong.
        what: String,
        /// The I/O error behind it, if one was.
        #[source]
        source: Option<io::Error>,
    },

    /// The server refuses to run as configured.
    #[error("refusing to start: {why}")]
    Refused {
        /// Why, and what to change.
        why: String,
    },

    /// A thread of the store panicked (a bug in toykv, not damage on disk).
    #[error("{what} panicked")]
    Panicked {
        /// What the thread was doing.
        what: String,
    },

    /// A background thread could not be started.
    #[error("starting thread {name}: {source}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// The error the operating system reported.
        source: io::Error,
    },

    /// The store found its own in-memory state inconsistent (a bug in toykv, not damage on
    /// disk).
    #[error("internal error in {}: {what}", path.display())]
    Internal {
        /// The file or directory whose state is inconsistent.
        path: PathBuf,
        /// What is inconsistent.
        what: String,
    },

    /// An earlier fsync or msync failed; the kernel may have dropped the data it held, so the
    /// store refuses writes until it is reopened and recovered from disk.
    #[error("store refuses writes: an earlier {op} of {} failed ({why}); reopen the store", path.display())]
    Failed {
        /// The failed operation.
        op: &'static str,
        /// The file it concerned.
        path: PathBuf,
        /// The error it reported.
        why: String,
    },
}

/// What kind of damage an [`Error::Corrupt`] reports, chosen where the error is made: callers
/// (`toykv check`, tests) decide on this, never on the error's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Damage {
    /// A file or section that should exist does not (a key or value section, the write
    /// buffer, the `STORE` file).
    Missing,
    /// A shard directory the `STORE` file names is gone.
    LostShard,
    /// A file of the wrong length: shorter than its header, or longer or shorter than its
    /// parameters make it.
    Length,
    /// A header that does not decode, or whose parameters disagree with the file's name or
    /// the other files (or a journal header that was lost).
    Header,
    /// A key record, or a journal frame or entry, that fails its checks.
    Record,
    /// A value whose bytes do not match the checksum its key record holds.
    Value,
    /// Anything else: a state of the files (or of their use) that none of the above names.
    Other,
}

/// The syncs whose failure poisons a store: see [`Error::Sync`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncOp {
    /// `fdatasync` of a file.
    Fdatasync,
    /// `fsync` (of a directory, after a create, rename or remove).
    Fsync,
    /// `msync` of a range of a memory map.
    Msync,
}

impl SyncOp {
    /// The system call's name.
    pub fn name(self) -> &'static str {
        match self {
            SyncOp::Fdatasync => "fdatasync",
            SyncOp::Fsync => "fsync",
            SyncOp::Msync => "msync",
        }
    }

    /// The sync named `op`, if `op` names one. Only [`Error::io`] uses this: the engine
    /// passes operation names as literals (`.ctx("fsync", dir)`), and this typed variant is
    /// chosen once, where the error is made; the decision to poison then looks at the
    /// variant ([`Error::poisons`]), never at a name or a message.
    fn named(op: &str) -> Option<SyncOp> {
        [SyncOp::Fdatasync, SyncOp::Fsync, SyncOp::Msync]
            .into_iter()
            .find(|s| s.name() == op)
    }
}

impl std::fmt::Display for SyncOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Error {
    /// Wraps an operating-system error with what was done and to which path: an
    /// [`Error::Sync`] when `op` is `"fdatasync"`, `"fsync"` or `"msync"`, else an
    /// [`Error::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match SyncOp::named(op) {
            Some(op) => Error::Sync { op, path, source },
            None => Error::Io { op, path, source },
        }
    }

    /// Whether this failure poisons the store: a failed sync may have lost data the kernel
    /// held, so nothing written since the last good sync can be trusted to reach the disk.
    pub fn poisons(&self) -> bool {
        matches!(self, Error::Sync { .. })
    }

    /// The name of the failed operation, for [`Error::Failed`]: the system call of a sync
    /// or of another operating-system error, else `what` for any other failure.
    pub(crate) fn op_name(&self, what: &'static str) -> &'static str {
        match self {
            Error::Sync { op, .. } => op.name(),
            Error::Io { op, .. } => op,
            _ => what,
        }
    }

    /// A panicked thread's report: `what` it was doing.
    pub(crate) fn panicked(what: impl Into<String>) -> Self {
        Error::Panicked { what: what.into() }
    }

    /// The result of a joined thread: its own, or [`Error::Panicked`] if it panicked.
    pub(crate) fn joined<T>(
        r: std::thread::Result<Result<T>>,
        what: impl Into<String>,
    ) -> Result<T> {
        r.unwrap_or_else(|_| Err(Error::panicked(what)))
    }

    /// An inconsistency of the store's in-memory state concerning `path`.
    pub(crate) fn internal(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Internal {
            path: path.into(),
            what: what.into(),
        }
    }

    /// A corruption report: `damage` of `file` at `offset`, `what` saying what it is.
    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        damage: Damage,
        what: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            damage,
            what: what.into(),
        }
    }

    /// The kind of damage, if this is an [`Error::Corrupt`].
    pub fn damage(&self) -> Option<Damage> {
        match self {
            Error::Corrupt { damage, .. } => Some(*damage),
            _ => None,
        }
    }
}

/// Adds the operation and path to an `io::Result`.
pub(crate) trait Context<T> {
    /// Turns the error into [`Error::Io`] naming `op` and `path`.
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_error_keeps_source_and_names_path() {
        let e = Error::io("read", "/x/0.v", io::Error::from_raw_os_error(libc::EIO));
        assert!(e.to_string().contains("/x/0.v"));
        assert!(e.to_string().starts_with("read "));
        let src = e.source().expect("source kept");
        assert!(src.to_string().contains("Input/output error"));
    }

    #[test]
    fn syncs_are_typed_and_only_they_poison() {
        let eio = || io::Error::from_raw_os_error(libc::EIO);
        for (name, op) in [
            ("fdatasync", SyncOp::Fdatasync),
            ("fsync", SyncOp::Fsync),
            ("msync", SyncOp::Msync),
        ] {
            let e = Error::io(name, "/x/0.v", eio());
            assert!(matches!(&e, Error::Sync { op: o, .. } if *o == op), "{e:?}");
            assert!(e.poisons());
            assert!(
                e.to_string().starts_with(&format!("{name} /x/0.v: ")),
                "{e}"
            );
            assert!(e.source().is_some());
            assert_eq!(e.op_name("commit"), name);
        }
        for name in [
            "read",
            "write",
            "open",
            "remove",
            "rename",
            "mmap",
            "write header",
        ] {
            let e = Error::io(name, "/x/0.v", eio());
            assert!(matches!(e, Error::Io { op, .. } if op == name), "{e:?}");
            assert!(!e.poisons());
            assert_eq!(e.op_name("commit"), name);
        }
        let e = Error::corrupt("/x/0.v", 0, Damage::Other, "bad");
        assert!(!e.poisons());
        assert_eq!(e.op_name("commit"), "commit");
    }

    #[test]
    fn a_panicked_thread_is_panicked() {
        let r: Result<()> = Error::joined(
            std::thread::spawn(|| -> Result<()> { panic!("on purpose") }).join(),
            "opening /d/shard-00",
        );
        let e = r.unwrap_err();
        assert!(matches!(&e, Error::Panicked { what } if what == "opening /d/shard-00"));
        assert_eq!(e.to_string(), "opening /d/shard-00 panicked");
        assert!(!e.poisons());
        let ok: Result<u8> = Error::joined(std::thread::spawn(|| Ok(7)).join(), "x");
        assert_eq!(ok.unwrap(), 7);
    }

    #[test]
    fn internal_and_spawn_errors_say_what() {
        let e = Error::internal("/d/shard-00/buffer.b", "the active bank holds no section");
        assert_eq!(
            e.to_string(),
            "internal error in /d/shard-00/buffer.b: the active bank holds no section"
        );
        let e = Error::Spawn {
            name: "toykv-gc".into(),
            source: io::Error::from_raw_os_error(libc::EAGAIN),
        };
        assert!(
            e.to_string().starts_with("starting thread toykv-gc: "),
            "{e}"
        );
    }

    #[test]
    fn direct_error_names_the_option() {
        let e = Error::DirectUnsupported {
            path: "/d/0.v".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(e.to_string().contains("direct_io(false)"));
    }

    #[test]
    fn alignment_error_names_path_and_sizes() {
        let e = Error::Alignment {
            path: "/d/LOCK".into(),
            need: 8192,
            max: 4096,
        };
        let s = e.to_string();
        assert!(
            s.contains("/d/LOCK") && s.contains("8192") && s.contains("4096"),
            "{s}"
        );
    }

    #[test]
    fn corrupt_names_file_and_offset() {
        let e = Error::corrupt("/d/00000000.k", 4128, Damage::Record, "bad record checksum");
        let s = e.to_string();
        assert!(s.contains("/d/00000000.k") && s.contains("4128") && s.contains("checksum"));
        assert_eq!(e.damage(), Some(Damage::Record));
    }

    #[test]
    fn damage_is_structure_not_text() {
        // The same message with two kinds of damage: the text is the same, the kind differs.
        let a = Error::corrupt("/d/0.v", 0, Damage::Missing, "value section is missing");
        let b = Error::corrupt("/d/0.v", 0, Damage::Other, "value section is missing");
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(
            a.to_string(),
            "corruption in /d/0.v at offset 0: value section is missing"
        );
        assert_eq!(a.damage(), Some(Damage::Missing));
        assert_eq!(b.damage(), Some(Damage::Other));
        assert_eq!(Error::internal("/d", "x").damage(), None);
    }
}
