//! The read cache: S3-FIFO over values, kept under the store's lock.
//!
//! Value sections are read with `O_DIRECT`, bypassing the kernel's page cache: without this
//! cache of values by key, a hot value would cost a disk read on every get.
//!
//! # Policy
//! S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023), with
//! three FIFO queues and a frequency of 0 to 3 per entry, raised by every hit or overwrite:
//! - *small*, 10% of the entries: a new key enters here. When the cache is full and small
//!   holds its share, small's oldest entry moves to main if it was used since it came in
//!   (frequency > 0), else it is evicted and its key remembered in the ghost queue.
//! - *main*, the other 90%: evicted from only when small is under its share. Like CLOCK, the
//!   oldest entry goes back to the tail with its frequency lowered by one if that is > 0, and
//!   is evicted otherwise.
//! - *ghost*: 32-bit fingerprints of keys only, as many as main holds, of entries recently
//!   evicted from small. A key inserted while its ghost is there goes straight to main: it was
//!   wanted twice. (Two keys sharing a fingerprint, one in four billion, only send a key to
//!   main early.)
//!
//! Keys used once (a scan, a bulk load) pass through small and never displace main's hot set.
//!
//! # Layout and size
//! Entries live in an arena of slots indexed by `u32`, allocated as the cache fills and never
//! beyond its capacity: per slot a [`Row`] (the 256 value bytes and a `u16` packing the
//! length, the frequency and the queue) and a [`Node`] (the key and the `u32` links of the
//! doubly linked queue the entry is in, so that removal is O(1) with no dead queue slots). A
//! free slot is chained through its links. The map from key to slot is an open-addressing
//! table of `u32` (a 27-bit slot index and 5 bits of the key's hash, to skip most
//! mismatches without touching the arena), at most half full, with backward-shift deletion
//! (no tombstones). The ghost queue is a ring of `u32` fingerprints and a table of the same
//! kind over it.
//!
//! The capacity is in bytes; each entry is charged [`ENTRY_BYTES`], 293 bytes, all-in:
//! 258 (row) + 16 (node) + 8 (two table buckets of 4 bytes) + 0.9 × (4 (ring) + 8 (two
//! buckets)) for the ghosts, which number at most main's 90% share. Every one of these
//! arrays is sized by the capacity (the tables at twice the entries they may hold) and grown
//! toward it as entries come in, never past it, so the cache's heap never exceeds
//! `capacity × ENTRY_BYTES` plus a fixed few hundred bytes (minimum table sizes).
//! A capacity under one entry disables the cache: nothing is allocated or stored, and gets
//! count neither as hits nor as misses.
//!
//! # Cost
//! Gets, inserts and removes are O(1) expected: a table at most half full costs about 1.5
//! probes to find a key and 2.5 to miss (consecutive `u32`s); eviction moves a bounded number
//! of entries (each pass through main lowers a frequency of at most 3).

use std::fmt;
use std::hash::BuildHasher;

use crate::key::{Key, VALUE_MAX, Value};

/// Bits of a table entry naming a slot; the others hold a tag from the hash.
const INDEX_BITS: u32 = 27;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// An empty table bucket (its index part, `INDEX_MASK`, is never a slot).
const EMPTY: u32 = u32::MAX;
/// Most entries one cache holds: slot indexes must fit in [`INDEX_BITS`] (at
/// [`ENTRY_BYTES`] each, about 36 GiB per shard).
const MAX_ENTRIES: usize = INDEX_MASK as usize;
/// No slot: the end of a queue or of the free list.
const NIL: u32 = u32::MAX;
/// Smallest table allocated.
const MIN_BUCKETS: usize = 16;

/// A slot's value and packed state: length in bits 0–8, frequency in bits 9–10, bit 11 set
/// when the entry is in main.
#[derive(Clone, Copy)]
struct Row {
    meta: u16,
    bytes: [u8; VALUE_MAX],
}

/// A slot's key and queue links (the free list's link in `next` while the slot is free).
#[derive(Clone, Copy, Debug)]
struct Node {
    key: Key,
    prev: u32,
    next: u32,
}

const LEN_MASK: u16 = 0x1ff;
const FREQ_SHIFT: u16 = 9;
const MAIN_BIT: u16 = 1 << 11;

/// Bytes charged per entry; see the module docs.
pub(crate) const ENTRY_BYTES: usize = size_of::<Row>()
    + size_of::<Node>()
    + 2 * size_of::<u32>()
    + (9 * (size_of::<u32>() + 2 * size_of::<u32>())).div_ceil(10);
const _: () = assert!(
    ENTRY_BYTES <= 300,
    "a cached value must cost at most 300 bytes"
);
const _: () = assert!(size_of::<Row>() == VALUE_MAX + 2 && size_of::<Node>() == 16);
const _: () = assert!(VALUE_MAX as u16 <= LEN_MASK);

/// Highest frequency: an entry survives at most this many passes through main unused.
const FREQ_MAX: u8 = 3;

/// Which queue holds an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

/// An open-addressing table of slot indexes with linear probing, at most half full; the
/// caller supplies the hash of an index (from what it names). Buckets are allocated as
/// entries come in, up to `most`.
#[derive(Debug, Default)]
struct Table {
    buckets: Vec<u32>,
    len: usize,
    /// Most buckets ever allocated: twice the entries the table may hold.
    most: usize,
}

/// The tag bits of a table entry for hash `h`.
fn tag(h: u64) -> u32 {
    ((h as u32) >> INDEX_BITS) << INDEX_BITS
}

impl Table {
    fn new(items: usize) -> Table {
        Table {
            buckets: Vec::new(),
            len: 0,
            most: items.saturating_mul(2).max(MIN_BUCKETS),
        }
    }

    /// The bucket a hash starts probing at.
    fn home(&self, h: u64) -> usize {
        ((u128::from(h) * self.buckets.len() as u128) >> 64) as usize
    }

    /// The bucket holding an index with hash `h` for which `eq` holds.
    fn find(&self, h: u64, eq: impl Fn(u32) -> bool) -> Option<usize> {
        let n = self.buckets.len();
        if n == 0 {
            return None;
        }
        let want = tag(h);
        let mut i = self.home(h);
        loop {
            let e = *self.buckets.get(i)?;
            if e == EMPTY {
                return None;
            }
            if e & !INDEX_MASK == want && eq(e & INDEX_MASK) {
                return Some(i);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// The index in bucket `b`.
    fn at(&self, b: usize) -> u32 {
        self.buckets.get(b).map_or(INDEX_MASK, |e| e & INDEX_MASK)
    }

    /// Adds `index` with hash `h`; `hash_of` gives the hash of any index held (to grow).
    fn insert(&mut self, h: u64, index: u32, hash_of: impl Fn(u32) -> u64) {
        if 2 * (self.len + 1) > self.buckets.len() {
            let n = (2 * self.buckets.len()).clamp(MIN_BUCKETS, self.most.max(2 * (self.len + 1)));
            let old = std::mem::replace(&mut self.buckets, vec![EMPTY; n]);
            for e in old.into_iter().filter(|&e| e != EMPTY) {
                self.place(hash_of(e & INDEX_MASK), e);
            }
        }
        self.place(h, tag(h) | index);
        self.len += 1;
    }

    /// Puts entry `e` in the first empty bucket from `h`'s home (there is one: the table is
    /// at most half full).
    fn place(&mut self, h: u64, e: u32) {
        let n = self.buckets.len();
        let mut i = self.home(h);
        while let Some(b) = self.buckets.get_mut(i) {
            if *b == EMPTY {
                *b = e;
                return;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// Empties bucket `b`, moving later entries of its cluster back so that every entry
    /// stays reachable from its home (no tombstones).
    fn remove(&mut self, b: usize, hash_of: impl Fn(u32) -> u64) {
        let n = self.buckets.len();
        if b >= n {
            return;
        }
        let (mut hole, mut j) = (b, b);
        loop {
            j = if j + 1 == n { 0 } else { j + 1 };
            let e = self.buckets[j];
            if e == EMPTY {
                break;
            }
            let k = self.home(hash_of(e & INDEX_MASK));
            // The entry at `j` may fill the hole unless its home lies in (hole, j].
            let stays = match hole <= j {
                true => hole < k && k <= j,
                false => hole < k || k <= j,
            };
            if !stays {
                self.buckets[hole] = e;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
    }
}

/// A FIFO queue of slots, linked through their [`Node`]s.
#[derive(Debug)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

/// Fingerprints of keys recently evicted from small: a ring, oldest overwritten first, and
/// a table over its positions.
#[derive(Debug, Default)]
struct Ghost {
    ring: Vec<u32>,
    /// Where the next fingerprint goes.
    at: usize,
    /// Most fingerprints remembered.
    cap: usize,
    table: Table,
}

/// The table hash of a fingerprint.
fn ghost_hash(fp: u32) -> u64 {
    (u64::from(fp) | u64::from(fp) << 32).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Ghost {
    fn new(cap: usize) -> Ghost {
        Ghost {
            cap,
            table: Table::new(cap),
            ..Ghost::default()
        }
    }

    /// Remembers `fp`, forgetting the oldest fingerprint once the ring is full.
    fn remember(&mut self, fp: u32) {
        if self.cap == 0 {
            return;
        }
        let pos = self.at;
        if let Some(&old) = self.ring.get(pos) {
            let ring = &self.ring;
            if let Some(b) = self.table.find(ghost_hash(old), |i| i as usize == pos) {
                self.table.remove(b, |i| {
                    ghost_hash(ring.get(i as usize).copied().unwrap_or(0))
                });
            }
            self.ring[pos] = fp;
        } else {
            grow(&mut self.ring, self.cap);
            self.ring.push(fp);
        }
        let ring = &self.ring;
        self.table.insert(ghost_hash(fp), pos as u32, |i| {
            ghost_hash(ring.get(i as usize).copied().unwrap_or(0))
        });
        self.at = (pos + 1) % self.cap;
    }

    /// Whether `fp` is remembered, forgetting it.
    fn recall(&mut self, fp: u32) -> bool {
        let ring = &self.ring;
        let hash_of = |i: u32| ghost_hash(ring.get(i as usize).copied().unwrap_or(0));
        match self
            .table
            .find(ghost_hash(fp), |i| ring.get(i as usize) == Some(&fp))
        {
            Some(b) => {
                self.table.remove(b, hash_of);
                true
            }
            None => false,
        }
    }
}

/// Makes room in `v` for one more element, growing it by at most its length (at least 16)
/// and never past `most` elements.
fn grow<T>(v: &mut Vec<T>, most: usize) {
    if v.len() == v.capacity() {
        let add = v.len().max(16).min(most.saturating_sub(v.len())).max(1);
        v.reserve_exact(add);
    }
}

/// Counters of a cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheStats {
    /// Gets answered from the cache.
    pub(crate) hits: u64,
    /// Gets not answered (0 while the cache is disabled).
    pub(crate) misses: u64,
    /// Entries evicted to make room (removals not included).
    pub(crate) evictions: u64,
    /// Entries held.
    pub(crate) entries: u64,
    /// Bytes charged for them: `entries * ENTRY_BYTES`.
    pub(crate) bytes: u64,
    /// Bytes the cache may charge: its capacity in entries times `ENTRY_BYTES`.
    pub(crate) capacity: u64,
}

/// An S3-FIFO cache of values by key; see the module docs.
pub(crate) struct Cache {
    /// Most entries held; 0 disables the cache.
    capacity: usize,
    /// Small's share of `capacity`.
    small_cap: usize,
    /// Seeded per process, so clients cannot pick colliding keys.
    hasher: foldhash::fast::RandomState,
    /// Slot by key.
    map: Table,
    rows: Vec<Row>,
    nodes: Vec<Node>,
    /// First free slot, chained through `Node::next`.
    free: u32,
    small: List,
    main: List,
    ghost: Ghost,
    /// Hits, misses and evictions (entries and bytes are counted by [`stats`](Self::stats)).
    counts: CacheStats,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity)
            .field("entries", &self.map.len)
            .field("small", &self.small.len)
            .field("main", &self.main.len)
            .field("ghosts", &self.ghost.table.len)
            .field("counts", &self.counts)
            .finish()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(0)
    }
}

impl Cache {
    /// A cache of at most `bytes` bytes, charging [`ENTRY_BYTES`] per entry. Allocates
    /// nothing until used.
    pub(crate) fn new(bytes: usize) -> Cache {
        let capacity = (bytes / ENTRY_BYTES).min(MAX_ENTRIES);
        let small_cap = (capacity / 10).max(1).min(capacity);
        Cache {
            capacity,
            small_cap,
            hasher: foldhash::fast::RandomState::default(),
            map: Table::new(capacity),
            rows: Vec::new(),
            nodes: Vec::new(),
            free: NIL,
            small: List::default(),
            main: List::default(),
            ghost: Ghost::new(capacity - small_cap),
            counts: CacheStats::default(),
        }
    }

    fn hash(&self, key: Key) -> u64 {
        key_hash(&self.hasher, key)
    }

    /// The slot holding `key` (with hash `h`), and its bucket.
    fn find(&self, h: u64, key: Key) -> Option<(usize, u32)> {
        let nodes = &self.nodes;
        let b = self
            .map
            .find(h, |i| nodes.get(i as usize).is_some_and(|n| n.key == key))?;
        Some((b, self.map.at(b)))
    }

    fn row(&mut self, slot: u32) -> Option<&mut Row> {
        self.rows.get_mut(slot as usize)
    }

    /// Raises the frequency of `slot`.
    fn touch(&mut self, slot: u32) {
        if let Some(r) = self.row(slot) {
            let f = ((r.meta >> FREQ_SHIFT) & 3).min(u16::from(FREQ_MAX - 1)) + 1;
            r.meta = (r.meta & !(3 << FREQ_SHIFT)) | f << FREQ_SHIFT;
        }
    }

    fn value(&self, slot: u32) -> Option<Value> {
        let r = self.rows.get(slot as usize)?;
        let mut v = Value::empty();
        *v.slot_mut() = r.bytes;
        v.set_len(usize::from(r.meta & LEN_MASK));
        Some(v)
    }

    /// Sets the value bytes of `slot`, keeping its frequency and queue.
    fn set_value(&mut self, slot: u32, value: &[u8]) {
        if let Some(r) = self.row(slot)
            && let Some(dst) = r.bytes.get_mut(..value.len())
        {
            dst.copy_from_slice(value);
            r.meta = (r.meta & !LEN_MASK) | value.len() as u16;
        }
    }

    /// The cached value of `key`, counting a hit or a miss; a hit raises its frequency.
    pub(crate) fn get(&mut self, key: Key) -> Option<Value> {
        if self.capacity == 0 {
            return None;
        }
        let Some((_, slot)) = self.find(self.hash(key), key) else {
            self.counts.misses += 1;
            return None;
        };
        self.touch(slot);
        self.counts.hits += 1;
        self.value(slot)
    }

    /// The cached value of `key`, if any, without counting or raising its frequency (for
    /// scans, which must not make what they pass over look hot).
    pub(crate) fn peek(&self, key: Key) -> Option<Value> {
        let (_, slot) = self.find(self.hash(key), key)?;
        self.value(slot)
    }

    /// The value written for `key`: replaces a cached value (without counting a use, so a
    /// write-heavy key does not look read-hot); a key not cached stays so. A freshly written
    /// value sits in the write buffer, in memory, until its bank is written out, when the
    /// shard admits it (see [`insert`](Self::insert)); so a stream of writes costs one
    /// lookup each here.
    pub(crate) fn write(&mut self, key: Key, value: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        if let Some((_, slot)) = self.find(self.hash(key), key) {
            match value.len() <= VALUE_MAX {
                true => self.set_value(slot, value),
                false => self.remove(key),
            }
        }
    }

    /// Caches `value` as the value of `key`. A cached key's value is replaced in place and
    /// counts as a use; a new key enters small (main if its ghost is remembered), evicting
    /// first if the cache is full.
    pub(crate) fn insert(&mut self, key: Key, value: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        if value.len() > VALUE_MAX {
            // Too long to be a value: never cached, and no older value may stay.
            self.remove(key);
            return;
        }
        let h = self.hash(key);
        if let Some((_, slot)) = self.find(h, key) {
            self.set_value(slot, value);
            self.touch(slot);
            return;
        }
        let seen = self.ghost.recall((h >> 32) as u32);
        while self.map.len >= self.capacity && self.evict() {}
        let slot = match self.free {
            NIL => {
                grow(&mut self.rows, self.capacity);
                grow(&mut self.nodes, self.capacity);
                self.rows.push(Row {
                    meta: 0,
                    bytes: [0; VALUE_MAX],
                });
                self.nodes.push(Node {
                    key,
                    prev: NIL,
                    next: NIL,
                });
                (self.nodes.len() - 1) as u32
            }
            slot => {
                self.free = self.nodes.get(slot as usize).map_or(NIL, |n| n.next);
                slot
            }
        };
        if let Some(n) = self.nodes.get_mut(slot as usize) {
            n.key = key;
        }
        if let Some(r) = self.row(slot) {
            r.meta = 0;
        }
        self.set_value(slot, value);
        self.push(if seen { Queue::Main } else { Queue::Small }, slot);
        let nodes = &self.nodes;
        let hasher = &self.hasher;
        self.map.insert(h, slot, |i| slot_hash(hasher, nodes, i));
    }

    /// Forgets `key`'s value.
    pub(crate) fn remove(&mut self, key: Key) {
        if let Some((b, slot)) = self.find(self.hash(key), key) {
            self.drop_slot(b, slot);
        }
    }

    /// Removes the entry in `slot` (found in bucket `b`) from the map and its queue, and
    /// frees the slot.
    fn drop_slot(&mut self, b: usize, slot: u32) {
        let nodes = &self.nodes;
        let hasher = &self.hasher;
        self.map.remove(b, |i| slot_hash(hasher, nodes, i));
        self.unlink(slot);
        if let Some(n) = self.nodes.get_mut(slot as usize) {
            n.next = self.free;
            self.free = slot;
        }
    }

    /// The queue `slot` is in.
    fn queue(&self, slot: u32) -> Queue {
        match self.rows.get(slot as usize).map_or(0, |r| r.meta) & MAIN_BIT {
            0 => Queue::Small,
            _ => Queue::Main,
        }
    }

    /// Appends `slot` to `queue`.
    fn push(&mut self, queue: Queue, slot: u32) {
        if let Some(r) = self.row(slot) {
            match queue {
                Queue::Small => r.meta &= !MAIN_BIT,
                Queue::Main => r.meta |= MAIN_BIT,
            }
        }
        let list = match queue {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
        };
        let tail = list.tail;
        if let Some(n) = self.nodes.get_mut(slot as usize) {
            n.prev = tail;
            n.next = NIL;
        }
        match self.nodes.get_mut(tail as usize) {
            Some(t) => t.next = slot,
            None => list.head = slot,
        }
        list.tail = slot;
        list.len += 1;
    }

    /// Takes `slot` out of its queue.
    fn unlink(&mut self, slot: u32) {
        let list = match self.queue(slot) {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
        };
        let Some(&Node { prev, next, .. }) = self.nodes.get(slot as usize) else {
            return;
        };
        match self.nodes.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => list.head = next,
        }
        match self.nodes.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => list.tail = prev,
        }
        list.len -= 1;
    }

    /// The counters.
    /// Whether the cache can hold anything (a capacity under one entry disables it).
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.map.len as u64,
            bytes: (self.map.len * ENTRY_BYTES) as u64,
            capacity: (self.capacity * ENTRY_BYTES) as u64,
            ..self.counts
        }
    }

    /// Evicts one entry: from small while it holds its share (or main is empty), else from
    /// main. False when the cache is empty.
    fn evict(&mut self) -> bool {
        let small_first = self.small.len >= self.small_cap || self.main.len == 0;
        (small_first && self.evict_from(Queue::Small)) || self.evict_from(Queue::Main)
    }

    /// Takes `queue`'s oldest entries until one unused is evicted (its key remembered as a
    /// ghost if it was in small). A used one goes to main's tail: from small as it is, from
    /// main with one use less (CLOCK). False when the queue empties first.
    fn evict_from(&mut self, queue: Queue) -> bool {
        loop {
            let slot = match queue {
                Queue::Small => self.small.head,
                Queue::Main => self.main.head,
            };
            let (Some(node), Some(row)) = (
                self.nodes.get(slot as usize).copied(),
                self.rows.get(slot as usize),
            ) else {
                return false;
            };
            let freq = (row.meta >> FREQ_SHIFT) & 3;
            self.unlink(slot);
            if freq == 0 {
                let h = self.hash(node.key);
                let nodes = &self.nodes;
                let found = self.map.find(h, |i| i == slot);
                if let Some(b) = found {
                    let hasher = &self.hasher;
                    self.map.remove(b, |i| slot_hash(hasher, nodes, i));
                }
                if let Some(n) = self.nodes.get_mut(slot as usize) {
                    n.next = self.free;
                    self.free = slot;
                }
                self.counts.evictions += 1;
                if queue == Queue::Small {
                    self.ghost.remember((h >> 32) as u32);
                }
                return true;
            }
            if queue == Queue::Main
                && let Some(r) = self.row(slot)
            {
                r.meta -= 1 << FREQ_SHIFT;
            }
            self.push(Queue::Main, slot);
        }
    }
}

/// The map's hash of `key`.
fn key_hash(hasher: &foldhash::fast::RandomState, key: Key) -> u64 {
    hasher.hash_one(u64::from_ne_bytes(key.0))
}

/// The map's hash of the key in arena slot `i` (what moving a table entry needs).
fn slot_hash(hasher: &foldhash::fast::RandomState, nodes: &[Node], i: u32) -> u64 {
    nodes
        .get(i as usize)
        .map_or_else(|| hasher.hash_one(0u64), |n| key_hash(hasher, n.key))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// A cache holding `n` entries.
    fn cache(n: usize) -> Cache {
        Cache::new(n * ENTRY_BYTES)
    }

    fn k(n: u64) -> Key {
        Key::from(n)
    }

    fn peek(c: &Cache, n: u64) -> Option<Vec<u8>> {
        c.peek(k(n)).map(|v| v.to_vec())
    }

    /// The entries of `queue`, walking its links forward (and checking them backward).
    fn walk(c: &Cache, queue: Queue) -> Vec<u32> {
        let list = match queue {
            Queue::Small => &c.small,
            Queue::Main => &c.main,
        };
        let (mut out, mut at, mut prev) = (Vec::new(), list.head, NIL);
        while at != NIL {
            let n = c.nodes[at as usize];
            assert_eq!(n.prev, prev);
            assert_eq!(c.queue(at), queue);
            out.push(at);
            (prev, at) = (at, n.next);
            assert!(out.len() <= c.nodes.len(), "a cycle in {queue:?}");
        }
        assert_eq!((list.tail, list.len), (prev, out.len()));
        out
    }

    /// Every (key, value) cached.
    fn entries(c: &Cache) -> Vec<(Key, Vec<u8>)> {
        let mut slots = walk(c, Queue::Small);
        slots.extend(walk(c, Queue::Main));
        let key = |s: u32| c.nodes[s as usize].key;
        slots
            .iter()
            .map(|&s| (key(s), c.value(s).unwrap().to_vec()))
            .collect()
    }

    /// The queues, the map, the free list and the arena agree, and stay within capacity.
    fn check_invariants(c: &Cache) {
        assert!(c.map.len <= c.capacity && c.ghost.table.len <= c.ghost.cap);
        assert!(c.nodes.len() <= c.capacity && c.rows.len() == c.nodes.len());
        assert!(c.ghost.ring.len() <= c.ghost.cap && c.map.buckets.len() <= 2 * c.capacity.max(8));
        assert!(c.ghost.cap + c.small_cap <= c.capacity.max(1));
        let mut slots = walk(c, Queue::Small);
        slots.extend(walk(c, Queue::Main));
        assert_eq!(slots.len(), c.map.len);
        for &s in &slots {
            let key = c.nodes[s as usize].key;
            assert_eq!(c.find(c.hash(key), key).map(|(_, s)| s), Some(s));
        }
        let (mut free, mut at) = (0, c.free);
        while at != NIL {
            free += 1;
            at = c.nodes[at as usize].next;
            assert!(free <= c.nodes.len());
        }
        assert_eq!(free + slots.len(), c.nodes.len());
        let filled = c.map.buckets.iter().filter(|&&e| e != EMPTY).count();
        assert_eq!(filled, c.map.len);
    }

    /// Whether `key`'s fingerprint is a ghost.
    fn ghost(c: &Cache, key: Key) -> bool {
        let fp = (c.hash(key) >> 32) as u32;
        c.ghost
            .table
            .find(ghost_hash(fp), |i| c.ghost.ring[i as usize] == fp)
            .is_some()
    }

    /// The queue of `key`'s entry.
    fn queue_of(c: &Cache, key: Key) -> Option<Queue> {
        c.find(c.hash(key), key).map(|(_, s)| c.queue(s))
    }

    #[test]
    fn an_entry_costs_at_most_300_bytes() {
        // Row (value and packed length) + node (key and links) + two map buckets + 9/10 of
        // a ghost (ring fingerprint and two buckets), rounded up.
        assert_eq!(ENTRY_BYTES, 258 + 16 + 8 + (9 * 12usize).div_ceil(10));
        assert_eq!(ENTRY_BYTES, 293);
        let c = Cache::new(1000 * ENTRY_BYTES);
        assert_eq!((c.capacity, c.map.most, c.ghost.cap), (1000, 2000, 900));
        assert_eq!(c.stats().capacity, 1000 * ENTRY_BYTES as u64);
    }

    #[test]
    fn the_arena_and_tables_never_outgrow_the_capacity() {
        let mut c = cache(1000);
        for n in 0..50_000u64 {
            c.insert(k(n % 3000), &[n as u8; 256]);
            if n % 7 == 0 {
                c.remove(k(n % 2999));
            }
            c.get(k(n % 1500));
        }
        check_invariants(&c);
        assert!(c.rows.capacity() <= 1000 && c.nodes.capacity() <= 1000);
        assert!(c.map.buckets.len() <= 2000 && c.ghost.ring.capacity() <= 900);
        assert!(c.ghost.table.buckets.len() <= 1800);
    }

    #[test]
    fn capacity_is_respected_in_bytes() {
        let bytes = 50 * ENTRY_BYTES + ENTRY_BYTES / 2;
        let mut c = Cache::new(bytes);
        for n in 0..1000u64 {
            c.insert(k(n), &n.to_le_bytes());
            c.get(k(n / 2));
            let st = c.stats();
            assert!(st.bytes <= bytes as u64);
            assert_eq!(st.bytes, st.entries * ENTRY_BYTES as u64);
        }
        assert_eq!((c.stats().entries, c.stats().evictions), (50, 950));
        check_invariants(&c);
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let mut c = cache(10);
        assert_eq!(c.get(k(1)), None);
        c.insert(k(1), b"one");
        assert_eq!(c.get(k(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(c.get(k(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(c.get(k(2)), None);
        // Peeks are not counted.
        assert!(c.peek(k(1)).is_some() && c.peek(k(2)).is_none());
        let st = c.stats();
        assert_eq!((st.hits, st.misses, st.entries), (2, 2, 1));
    }

    #[test]
    fn insert_overwrite_remove() {
        let mut c = cache(10);
        c.insert(k(1), b"a");
        c.insert(k(1), b"bb");
        assert_eq!(peek(&c, 1).as_deref(), Some(&b"bb"[..]));
        c.insert(k(2), &[7; 256]);
        assert_eq!(peek(&c, 2), Some(vec![7; 256]));
        assert_eq!(c.stats().entries, 2);
        c.remove(k(1));
        c.remove(k(1));
        assert_eq!((c.get(k(1)), c.stats().entries), (None, 1));
        // Too long to be a value: the old one goes rather than stays.
        c.insert(k(2), &[0; 257]);
        assert_eq!(peek(&c, 2), None);
        c.insert(k(1), b"");
        assert_eq!(peek(&c, 1), Some(vec![]));
        check_invariants(&c);
    }

    #[test]
    fn a_scan_does_not_evict_the_hot_set() {
        let cap = 1000;
        let mut c = cache(cap as usize);
        let hot = 0..cap * 8 / 10;
        hot.clone().for_each(|n| c.insert(k(n), b"hot"));
        for n in hot.clone().cycle().take(3 * hot.clone().count()) {
            assert!(c.get(k(n)).is_some());
        }
        // A one-pass scan over ten times the capacity: each key missed, then filled.
        for n in 1_000_000..1_000_000 + 10 * cap {
            assert_eq!(c.get(k(n)), None);
            c.insert(k(n), b"cold");
        }
        let kept = hot.clone().filter(|&n| c.peek(k(n)).is_some()).count();
        assert!(kept * 10 >= hot.count() * 9, "only {kept} hot keys left");
        assert!(c.stats().evictions >= 9 * cap);
        check_invariants(&c);
    }

    #[test]
    fn a_key_seen_again_after_eviction_goes_to_main() {
        let mut c = cache(100);
        c.insert(k(0), b"zero");
        // Push 0 out of small, unused: it becomes a ghost.
        (1..=100).for_each(|n| c.insert(k(n), b"x"));
        assert_eq!(peek(&c, 0), None);
        assert!(ghost(&c, k(0)));
        c.insert(k(0), b"zero again");
        assert_eq!(queue_of(&c, k(0)), Some(Queue::Main));
        assert!(!ghost(&c, k(0)));
        // Unused, it outlives one-time keys going through small; a new key does not.
        c.insert(k(500), b"new");
        assert_eq!(queue_of(&c, k(500)), Some(Queue::Small));
        (1000..1200).for_each(|n| c.insert(k(n), b"y"));
        assert_eq!(peek(&c, 0).as_deref(), Some(&b"zero again"[..]));
        assert_eq!(peek(&c, 500), None);
        check_invariants(&c);
    }

    #[test]
    fn writes_replace_cached_values_only() {
        let mut c = cache(4);
        for n in 0..4 {
            c.write(k(n), b"w");
        }
        // A write never admits a key: the value is in the write buffer until a get.
        assert_eq!(c.stats().entries, 0);
        for n in 0..4 {
            c.insert(k(n), b"r");
        }
        assert_eq!(c.stats().entries, 4);
        // Full: a new key's write is not cached, a cached key's write replaces its value.
        c.write(k(9), b"x");
        assert!(c.peek(k(9)).is_none());
        c.write(k(2), b"new");
        assert_eq!(c.peek(k(2)).unwrap().to_vec(), b"new");
        assert_eq!(c.stats().evictions, 0);
        // Reads still admit keys, evicting as usual.
        c.insert(k(9), b"x");
        assert_eq!(c.peek(k(9)).unwrap().to_vec(), b"x");
        assert_eq!(c.stats().evictions, 1);
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        for bytes in [0, ENTRY_BYTES - 1] {
            let mut c = Cache::new(bytes);
            c.insert(k(1), b"v");
            assert_eq!((c.get(k(1)), c.peek(k(1))), (None, None));
            c.remove(k(1));
            assert_eq!(c.stats(), CacheStats::default());
            assert_eq!((c.map.buckets.capacity(), c.rows.capacity()), (0, 0));
        }
    }

    #[test]
    fn churn_does_not_grow_the_queues() {
        let mut c = cache(1000);
        for n in (0..20_000).map(|n| n % 5) {
            c.insert(k(n), b"v");
            c.get(k(n));
            c.remove(k(n));
        }
        check_invariants(&c);
        // One entry at a time: its slot is reused, the arena does not grow.
        assert_eq!(c.nodes.len(), 1);
        // Ghosts recalled over and over: keys cycling through a small cache.
        let mut c = cache(20);
        (0..20_000).for_each(|n| c.insert(k(n % 40), b"v"));
        check_invariants(&c);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, Vec<u8>),
        Get(u64),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let value = prop::collection::vec(any::<u8>(), 0..=8);
        prop_oneof![
            4 => (0..24u64, value).prop_map(|(k, v)| Op::Insert(k, v)),
            4 => (0..24u64).prop_map(Op::Get),
            1 => (0..24u64).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Against a model of the latest value per key: a cached value is always the latest,
        /// a removed key is absent, a key just inserted is present.
        #[test]
        fn holds_only_the_latest_values(cap in 1..16usize, ops in prop::collection::vec(op(), 0..400)) {
            let (mut c, mut model, mut gets) = (cache(cap), HashMap::new(), 0);
            for op in ops {
                match op {
                    Op::Insert(n, v) => {
                        c.insert(k(n), &v);
                        prop_assert_eq!(peek(&c, n), Some(v.clone()));
                        model.insert(n, v);
                    }
                    Op::Get(n) => {
                        gets += 1;
                        if let Some(got) = c.get(k(n)) {
                            prop_assert_eq!(Some(&got.to_vec()), model.get(&n));
                        }
                    }
                    Op::Remove(n) => {
                        c.remove(k(n));
                        model.remove(&n);
                        prop_assert_eq!(peek(&c, n), None);
                    }
                }
                for (key, v) in entries(&c) {
                    prop_assert_eq!(Some(&v), model.get(&key.as_u64()));
                }
                check_invariants(&c);
            }
            let st = c.stats();
            prop_assert_eq!(st.hits + st.misses, gets);
        }
    }
}
