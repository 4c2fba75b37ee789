//! Settings for [`Store::open_with`](crate::Store::open_with).

use std::fmt;
use std::sync::Arc;

use crate::format::{DEFAULT_SECTION_SLOTS, check_section_slots};
use crate::io::{Os, Vfs};

/// Default size of the read cache: 256 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// How to open a store. Build with [`Options::new`] and the setters:
///
/// ```
/// use toykv::Options;
/// let opts = Options::new().direct_io(false);
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) direct_io: bool,
    pub(crate) section_slots: u32,
    pub(crate) cache_bytes: usize,
    pub(crate) vfs: Arc<dyn Vfs>,
}

impl Options {
    /// Defaults: direct I/O on, 65,536 records per section, a 256 MiB read cache, the operating
    /// system's files.
    pub fn new() -> Self {
        Options {
            direct_io: true,
            section_slots: DEFAULT_SECTION_SLOTS,
            cache_bytes: DEFAULT_CACHE_BYTES,
            vfs: Arc::new(Os),
        }
    }

    /// Reads and writes value sections with `O_DIRECT` (default `true`). Turn it off on file
    /// systems that refuse `O_DIRECT` (the store then says so when it opens): value sections
    /// then go through the page cache and are made durable with `fdatasync`, which gives the
    /// same guarantees at the cost of double caching.
    pub fn direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    /// Records per key section and slots per value section: a power of two from 16 to 2^24
    /// (default 65,536, i.e. 16 MiB value sections). Fixed when a store is created; opening it
    /// with another value is refused. Small sections exist for tests that must cross section
    /// boundaries quickly.
    pub fn section_slots(mut self, n: u32) -> Self {
        self.section_slots = n;
        self
    }

    /// Size of the read cache in bytes (default 256 MiB); 0 turns it off. Direct I/O bypasses
    /// the kernel's page cache, so the store caches values itself: recently and frequently
    /// read ones, by S3-FIFO, which a scan or a bulk load of keys used once does not flush.
    /// Each cached value is charged about 330 bytes (its 256-byte slot plus bookkeeping), so
    /// the default holds about 800,000 values. Memory is taken as values are cached, not
    /// up front. [`Stats`](crate::Stats) counts hits and misses.
    pub fn cache_bytes(mut self, n: usize) -> Self {
        self.cache_bytes = n;
        self
    }

    /// The I/O layer (default: the operating system). Tests pass a [`SimFs`](crate::io::SimFs)
    /// to simulate power loss or inject faults.
    pub fn vfs(mut self, vfs: Arc<dyn Vfs>) -> Self {
        self.vfs = vfs;
        self
    }

    /// Checks the settings.
    pub(crate) fn check(&self) -> crate::Result<()> {
        check_section_slots(self.section_slots).map_err(|why| crate::Error::Option {
            what: "section_slots",
            why,
        })
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
            .field("section_slots", &self.section_slots)
            .field("cache_bytes", &self.cache_bytes)
            .field("vfs", &self.vfs)
            .finish()
    }
}
