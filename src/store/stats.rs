//! [`Stats`]: counts describing an open store, summed over its shards.

use super::Store;

/// Statistics of an open store (sums over its shards).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys.
    pub keys: u64,
    /// Key records kept in key sections (the log's length since the oldest kept section).
    pub records: u64,
    /// Value slots holding live values.
    pub slots_used: u64,
    /// Value sections in `.v` files.
    pub value_sections: u64,
    /// Key section files.
    pub key_sections: u64,
    /// Shards.
    pub shards: u64,
    /// The durability chosen at open (`none`, `periodic:MS`, `always`).
    pub durability: String,
    /// Whether value sections use `O_DIRECT`.
    pub direct_io: bool,
    /// How batches of values ([`Store::get_many`], scans) are read: `"io_uring"`, or
    /// `"pread"` when io_uring is off ([`Options::io_uring`](crate::Options::io_uring),
    /// `TOYKV_NO_IO_URING=1`) or could not be set up.
    pub read_path: &'static str,
    /// What recovery dropped when the store was opened: set when the log ended at a damaged
    /// (torn or garbled) record after the last sync rather than at a never-written one.
    pub torn_tail: Option<String>,
    /// Gets answered by the read cache, without reading the value.
    pub cache_hits: u64,
    /// Gets the read cache could not answer, absent keys included (0 while it is disabled).
    pub cache_misses: u64,
    /// Values in the read cache.
    pub cache_entries: u64,
    /// Bytes the read cache charges for them, its use (see [`Options::cache_bytes`](crate::Options::cache_bytes)).
    pub cache_bytes: u64,
    /// Bytes the read cache may charge, its capacity: the size asked for (or the default),
    /// less what copies of recent sections may take ([`recent_sections`](Self::recent_sections)),
    /// rounded down to whole entries per shard.
    pub cache_capacity: u64,
    /// Value sections held in memory: copies of the latest sections written, from which reads
    /// take their values without the disk (a quarter of the cache's budget, see
    /// [`Options::cache_bytes`](crate::Options::cache_bytes)).
    pub recent_sections: u64,
    /// Bytes of those copies.
    pub recent_bytes: u64,
    /// Full banks written out to value sections since open.
    pub flushes: u64,
    /// Puts that had to wait for a bank's write-out since open.
    pub stalls: u64,
    /// Shard syncs since open (explicit, periodic, by collection, or a journal checkpoint).
    pub syncs: u64,
    /// Journal commits since open (durability `always`): one write and one flush each, for
    /// every writer waiting on any shard.
    pub journal_commits: u64,
    /// Journal checkpoints since open: every shard synced and the journal emptied.
    pub journal_checkpoints: u64,
    /// Value sections garbage collection removed since open.
    pub gc_sections: u64,
    /// Values garbage collection moved since open.
    pub gc_moved: u64,
    /// Key sections garbage collection removed since open.
    pub gc_key_sections: u64,
    /// Puts held back since open while value space was past 2 times the live values (plus
    /// one section), so that collection could catch up with a sustained stream of
    /// overwrites.
    pub gc_holds: u64,
    /// Value sections garbage collection set aside since open, one line each naming the
    /// file and why: a value in it fails its checksum or cannot be read (so it cannot be
    /// moved), or a live value was not found among the section's records. Such a section
    /// stays as it is (`toykv check` reports its damage) and is not counted as space
    /// collection can free, so puts are not held back for it.
    pub gc_set_aside: Vec<String>,
    /// Bytes of the store's files: value sections, key sections and buffers.
    pub disk_bytes: u64,
    /// Heap bytes of the in-memory indexes (every shard's).
    pub index_bytes: u64,
}

impl Store {
    /// Counts describing the store.
    pub fn stats(&self) -> Stats {
        let mut st = Stats {
            keys: 0,
            records: 0,
            slots_used: 0,
            value_sections: 0,
            key_sections: 0,
            shards: self.shards.len() as u64,
            durability: self.durability.to_string(),
            direct_io: false,
            read_path: self.reader.path(),
            torn_tail: None,
            cache_hits: 0,
            cache_misses: 0,
            cache_entries: 0,
            cache_bytes: 0,
            cache_capacity: 0,
            recent_sections: 0,
            recent_bytes: 0,
            flushes: 0,
            stalls: 0,
            syncs: 0,
            journal_commits: 0,
            journal_checkpoints: 0,
            gc_sections: 0,
            gc_moved: 0,
            gc_key_sections: 0,
            gc_holds: 0,
            gc_set_aside: Vec::new(),
            disk_bytes: 0,
            index_bytes: 0,
        };
        if let Some(j) = &self.journal {
            st.journal_commits = j.commits();
            st.journal_checkpoints = j.checkpoints();
        }
        for shard in self.shards.iter() {
            shard.tally(&mut st);
        }
        if st.torn_tail.is_none() {
            st.torn_tail = self.journal_torn.as_ref().map(ToString::to_string);
        }
        st
    }
}
