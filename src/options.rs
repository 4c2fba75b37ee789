//! Settings for [`Store::open_with`](crate::Store::open_with).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::format::journal::{BLOCK, DEFAULT_JOURNAL_BYTES, MIN_JOURNAL_BYTES};
use crate::format::{DEFAULT_SECTION_SLOTS, MAX_SHARDS, check_section_slots};
use crate::io::{Os, Vfs};

/// Size of the read cache when the memory the process may use cannot be read: 256 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// The share of the process's memory the default read cache takes: a quarter. The rest is
/// for the index (about 13 bytes a key), the page cache of the memory-mapped key sections
/// (32 bytes a record) and write buffers (two sections' values per shard), the kernel's own
/// caching, and the rest of the process (a server's connections and their buffers).
pub const CACHE_FRACTION: usize = 4;

/// Default size of the read cache: a [`CACHE_FRACTION`]th of the memory this process may
/// use, which is the machine's memory (`MemTotal` in `/proc/meminfo`) or its memory cgroup's
/// limit (v1 `memory.limit_in_bytes`, v2 `memory.max`, of the process's own cgroup),
/// whichever is smaller; [`DEFAULT_CACHE_BYTES`] when none of these can be read.
pub fn default_cache_bytes() -> usize {
    crate::memory::process_limit().map_or(DEFAULT_CACHE_BYTES, |n| {
        usize::try_from(n / CACHE_FRACTION as u64).unwrap_or(usize::MAX)
    })
}

/// What a put or delete survives once it returns; see [`Options::durability`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A crash of the process, not of the machine: writes are stores into shared maps, which
    /// the kernel writes back on its own schedule. [`Store::sync`](crate::Store::sync) (or
    /// `close`) makes everything before it survive power loss too.
    None,
    /// As `None`, and a background thread syncs every shard at this interval: a power loss
    /// loses at most about the last interval of writes (Redis's `appendfsync everysec`).
    Periodic(Duration),
    /// Power loss too: a put returns only once it is on stable storage, in the store's
    /// journal. Concurrent writers, on any shard, share one journal write and flush (group
    /// commit). Other threads can read a put before its commit ends, and a put whose commit
    /// failed is not undone (see the crate's Guarantees).
    Always,
}

impl Default for Durability {
    /// `Periodic(1 s)`.
    fn default() -> Self {
        Durability::Periodic(Duration::from_secs(1))
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::None => f.write_str("none"),
            Durability::Periodic(d) => write!(f, "periodic:{}ms", d.as_millis()),
            Durability::Always => f.write_str("always"),
        }
    }
}

impl FromStr for Durability {
    type Err = String;

    /// `none`, `always`, `periodic` (1 s) or `periodic:MS` (milliseconds, at least 1).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("durability {s:?}: expected none, always, periodic or periodic:MS");
        match s {
            "none" => Ok(Durability::None),
            "always" => Ok(Durability::Always),
            "periodic" => Ok(Durability::default()),
            _ => {
                let ms = s
                    .strip_prefix("periodic:")
                    .and_then(|v| v.trim_end_matches("ms").parse::<u64>().ok())
                    .filter(|&ms| ms > 0)
                    .ok_or_else(bad)?;
                Ok(Durability::Periodic(Duration::from_millis(ms)))
            }
        }
    }
}

/// Default shard count for a new store: the machine's available parallelism, at least 1 and
/// at most 64.
pub fn default_shards() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() as u32)
        .clamp(1, 64)
}

/// How to open a store. Build with [`Options::new`] and the setters:
///
/// ```
/// use toykv::Options;
/// let opts = Options::new().direct_io(false);
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) direct_io: bool,
    pub(crate) io_uring: bool,
    pub(crate) section_slots: Option<u32>,
    pub(crate) cache_bytes: Option<usize>,
    pub(crate) shards: Option<u32>,
    pub(crate) durability: Durability,
    pub(crate) gc: bool,
    pub(crate) journal_bytes: u64,
    pub(crate) vfs: Arc<dyn Vfs>,
    /// For `toykv check` only: recovery goes on past damaged synced key records, skipping
    /// them, and hands them back instead of refusing the shard at the first.
    pub(crate) keep_going: bool,
}

impl Options {
    /// Defaults: direct I/O on, the section size and shard count an existing store was created
    /// with (65,536 records per section and one shard per core for a new store), a read cache
    /// of a quarter of the memory the process may use ([`default_cache_bytes`]), durability `periodic` (1 s), garbage collection on, the
    /// operating system's files.
    pub fn new() -> Self {
        Options {
            direct_io: true,
            io_uring: true,
            section_slots: None,
            cache_bytes: None,
            shards: None,
            durability: Durability::default(),
            gc: true,
            journal_bytes: DEFAULT_JOURNAL_BYTES,
            vfs: Arc::new(Os),
            keep_going: false,
        }
    }

    /// Number of shards (1 to 256) of a new store; each has its own files, lock and
    /// background write-outs, and a key goes to one by a hash of its bytes. Fixed when the
    /// store is created (recorded in its `STORE` file): opening with another number is
    /// refused; left unset, an existing store opens with its own and a new one gets
    /// [`default_shards`].
    pub fn shards(mut self, n: u32) -> Self {
        self.shards = Some(n);
        self
    }

    /// What a put or delete survives once it returns (default [`Durability::Periodic`], 1 s).
    /// Not recorded: each open chooses.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Runs garbage collection in a background thread (default `true`). Off, space is only
    /// reclaimed by [`Store::gc`](crate::Store::gc).
    pub fn gc(mut self, on: bool) -> Self {
        self.gc = on;
        self
    }

    /// Reads and writes value sections with `O_DIRECT` (default `true`). Turn it off on file
    /// systems that refuse `O_DIRECT` (the store then says so when it opens): value sections
    /// then go through the page cache and are made durable with `fdatasync`, which gives the
    /// same guarantees at the cost of double caching.
    pub fn direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    /// Reads batches of values ([`Store::get_many`](crate::Store::get_many), scans) through
    /// io_uring when the kernel allows it (default `true`); `false`, or the environment
    /// variable `TOYKV_NO_IO_URING=1`, forces the `pread` fallback. Where io_uring cannot be
    /// set up (disabled, blocked by a container's seccomp profile, an old kernel) the store
    /// falls back by itself; [`Stats::read_path`](crate::Stats::read_path) says which path
    /// it uses.
    pub fn io_uring(mut self, on: bool) -> Self {
        self.io_uring = on;
        self
    }

    /// Whether to try io_uring: the setting, unless `TOYKV_NO_IO_URING` is set (to anything
    /// but empty or `0`).
    pub(crate) fn wants_io_uring(&self) -> bool {
        let forced_off =
            std::env::var_os("TOYKV_NO_IO_URING").is_some_and(|v| !v.is_empty() && v != "0");
        self.io_uring && !forced_off
    }

    /// Records per key section and slots per value section: a power of two from 16 to 2^24.
    /// Fixed when a store is created (recorded in its `STORE` file): opening it with another
    /// value is refused; left unset, an existing store opens with its own and a new one gets
    /// 65,536 ([`DEFAULT_SECTION_SLOTS`], 16 MiB value sections). Small sections exist for
    /// tests that must cross section boundaries quickly.
    pub fn section_slots(mut self, n: u32) -> Self {
        self.section_slots = Some(n);
        self
    }

    /// The section size asked for, else the default: what a new store is created with. Open
    /// replaces an unset one by the store's own before opening its shards.
    pub(crate) fn slots(&self) -> u32 {
        self.section_slots.unwrap_or(DEFAULT_SECTION_SLOTS)
    }

    /// Size of the read cache in bytes, split evenly over the shards (default
    /// [`default_cache_bytes`]: a quarter of the machine's memory or of the process's memory
    /// cgroup limit, whichever is smaller); 0 turns it off. Direct I/O bypasses the kernel's
    /// page cache, so the store caches values itself, in two parts:
    ///
    /// - up to a quarter of each shard's share, in whole sections, keeps copies of the latest
    ///   value sections written (each bank's slots, copied by the background writer once the
    ///   bank is written out), so what was just written is read from memory; the oldest copy
    ///   goes first;
    /// - the rest caches values by key, recently and frequently read ones, by S3-FIFO, which a
    ///   scan or keys read once do not flush. Each value is charged 293 bytes all-in (its 256
    ///   bytes, key, links, table and ghost shares), so 1 GiB holds about 3.6 million values.
    ///
    /// Memory is taken as values are cached and sections written, not up front.
    /// [`Stats`](crate::Stats) shows the capacity, use, hits and misses, and the sections
    /// held.
    pub fn cache_bytes(mut self, n: usize) -> Self {
        self.cache_bytes = Some(n);
        self
    }

    /// The read cache's size asked for, else [`default_cache_bytes`].
    pub(crate) fn cache(&self) -> usize {
        self.cache_bytes.unwrap_or_else(default_cache_bytes)
    }

    /// Length of the journal that durability `always` commits to (default 64 MiB; a
    /// multiple of 4096 from 65,536). Used when the journal is made, zero-filled, the first
    /// time the store opens with `always`; a longer one needs fewer checkpoints (every shard
    /// synced, about once per 16,000 commits at the default).
    pub fn journal_bytes(mut self, n: u64) -> Self {
        self.journal_bytes = n;
        self
    }

    /// The I/O layer (default: the operating system). Tests pass a `SimFs` (`io::sim`,
    /// feature `sim`) to simulate power loss or inject faults.
    pub fn vfs(mut self, vfs: Arc<dyn Vfs>) -> Self {
        self.vfs = vfs;
        self
    }

    /// Checks the settings.
    pub(crate) fn check(&self) -> crate::Result<()> {
        if let Some(n) = self.section_slots {
            check_section_slots(n).map_err(|why| crate::Error::Option {
                what: "section_slots",
                why,
            })?;
        }
        if let Some(n) = self.shards
            && !(1..=MAX_SHARDS).contains(&n)
        {
            return Err(crate::Error::Option {
                what: "shards",
                why: format!("{n} is not from 1 to {MAX_SHARDS}"),
            });
        }
        if self.journal_bytes < MIN_JOURNAL_BYTES
            || !self.journal_bytes.is_multiple_of(BLOCK as u64)
        {
            return Err(crate::Error::Option {
                what: "journal_bytes",
                why: format!(
                    "{} is not a multiple of {BLOCK} from {MIN_JOURNAL_BYTES}",
                    self.journal_bytes
                ),
            });
        }
        if self.durability == Durability::Periodic(Duration::ZERO) {
            return Err(crate::Error::Option {
                what: "durability",
                why: "a periodic sync needs an interval above zero".into(),
            });
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("direct_io", &self.direct_io)
            .field("io_uring", &self.io_uring)
            .field("section_slots", &self.section_slots)
            .field("cache_bytes", &self.cache_bytes)
            .field("shards", &self.shards)
            .field("durability", &self.durability)
            .field("gc", &self.gc)
            .field("journal_bytes", &self.journal_bytes)
            .field("vfs", &self.vfs)
            .finish()
    }
}
