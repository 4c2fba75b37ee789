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
//! - *ghost*: keys only, as many as main holds, of entries recently evicted from small. A key
//!   inserted while its ghost is there goes straight to main: it was wanted twice.
//!
//! Keys used once (a scan, a bulk load) pass through small and never displace main's hot set.
//!
//! # Size
//! The capacity is in bytes; each entry is charged [`ENTRY_BYTES`] (about 340 on 64-bit
//! targets): its value (the 256-byte inline [`Value`] and its length, kept in a slab apart
//! from the map so that the map's entries stay small and cheap to insert and rehash), its
//! hash-map entry (key and bookkeeping), its queue slot, and its share of the ghost queue and
//! map; the tables' spare room is not counted.
//! A capacity under one entry disables the cache: nothing is allocated or stored, and gets
//! count neither as hits nor as misses.
//!
//! # Cost
//! Gets, inserts and removes are O(1) amortized. Queue slots are removed lazily: a slot names
//! its entry's generation and is dropped at the front once that entry is gone; a queue whose
//! dead slots outnumber its live ones is compacted, so churn cannot grow it without bound.

use std::collections::{HashMap, VecDeque};

use crate::key::{Key, Value};

/// Bytes charged per entry: value slot, map entry, queue slot, and a share of the ghost queue
/// and map.
pub(crate) const ENTRY_BYTES: usize =
    size_of::<Value>() + size_of::<u32>() + size_of::<(Key, Entry)>() + 3 * size_of::<Slot>();
const _: () = assert!(ENTRY_BYTES >= size_of::<Value>() + 48);

/// Highest frequency: an entry survives at most this many passes through main unused.
const FREQ_MAX: u8 = 3;

/// Dead queue slots tolerated beyond the live ones before a queue is compacted.
const SLACK: usize = 64;

/// A queue slot: a key and the generation of the entry (or ghost) it was pushed for.
type Slot = (Key, u64);

/// Which queue holds an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

/// A cached value.
#[derive(Debug)]
struct Entry {
    /// Index of the value in [`Cache::values`].
    slot: u32,
    /// Unique per insertion; queue slots of older insertions of the key are dead.
    generation: u64,
    freq: u8,
    queue: Queue,
}

/// A FIFO queue with lazily removed slots.
#[derive(Debug, Default)]
struct Fifo {
    slots: VecDeque<Slot>,
    /// Slots still naming a live entry.
    live: usize,
}

impl Fifo {
    fn push(&mut self, slot: Slot) {
        self.slots.push_back(slot);
        self.live += 1;
    }

    /// Takes the oldest live slot, dropping the dead ones before it.
    fn pop(&mut self, is_live: impl Fn(&Slot) -> bool) -> Option<Slot> {
        while let Some(slot) = self.slots.pop_front() {
            if is_live(&slot) {
                self.live -= 1;
                return Some(slot);
            }
        }
        None
    }

    /// Notes that a live slot died (its entry is already gone); compacts when dead slots
    /// dominate, which takes O(1) amortized per death.
    fn kill(&mut self, is_live: impl Fn(&Slot) -> bool) {
        self.live = self.live.saturating_sub(1);
        if self.slots.len() > 2 * self.live + SLACK {
            self.slots.retain(is_live);
        }
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
}

/// A hash map by key with foldhash's seeded hasher: several times faster than the default
/// SipHash for 8-byte keys, and seeded per process, so clients cannot pick colliding keys.
type Map<V> = HashMap<Key, V, foldhash::fast::RandomState>;

/// An S3-FIFO cache of values by key; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Most entries held; 0 disables the cache.
    capacity: usize,
    /// Small's share of `capacity`.
    small_cap: usize,
    /// Most ghosts remembered: main's share.
    ghost_cap: usize,
    map: Map<Entry>,
    /// The cached values, apart from the map so that the map's entries stay small (cheap to
    /// insert and to rehash); slots of removed entries are reused.
    values: Vec<Value>,
    free: Vec<u32>,
    small: Fifo,
    main: Fifo,
    /// Ghost keys with the generation of their ghost slot.
    ghosts: Map<u64>,
    ghost: Fifo,
    next_generation: u64,
    /// Hits, misses and evictions (entries and bytes are counted by [`stats`](Self::stats)).
    counts: CacheStats,
}

/// Whether `slot` names the entry `map` holds for its key.
fn live(map: &Map<Entry>, slot: &Slot) -> bool {
    map.get(&slot.0).is_some_and(|e| e.generation == slot.1)
}

impl Cache {
    /// A cache of at most `bytes` bytes, charging [`ENTRY_BYTES`] per entry. Allocates
    /// nothing until used.
    pub(crate) fn new(bytes: usize) -> Cache {
        let capacity = bytes / ENTRY_BYTES;
        let small_cap = (capacity / 10).max(1).min(capacity);
        Cache {
            capacity,
            small_cap,
            ghost_cap: capacity - small_cap,
            ..Cache::default()
        }
    }

    /// The cached value of `key`, counting a hit or a miss; a hit raises its frequency.
    pub(crate) fn get(&mut self, key: Key) -> Option<Value> {
        if self.capacity == 0 {
            return None;
        }
        let Some(e) = self.map.get_mut(&key) else {
            self.counts.misses += 1;
            return None;
        };
        e.freq = (e.freq + 1).min(FREQ_MAX);
        self.counts.hits += 1;
        self.values.get(e.slot as usize).cloned()
    }

    /// The cached value of `key`, if any, without counting or raising its frequency (for
    /// scans, which must not make what they pass over look hot).
    pub(crate) fn peek(&self, key: Key) -> Option<Value> {
        let e = self.map.get(&key)?;
        self.values.get(e.slot as usize).cloned()
    }

    /// The value written for `key`: replaces a cached value (without counting a use, so a
    /// write-heavy key does not look read-hot); a key not cached stays so. A freshly written
    /// value sits in the write buffer, in memory, until its bank is written out; a get after
    /// that caches it. So a stream of writes costs one lookup each and never evicts what
    /// reads made hot.
    pub(crate) fn write(&mut self, key: Key, value: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        if let Some(e) = self.map.get(&key) {
            let slot = e.slot as usize;
            match (Value::new(value), self.values.get_mut(slot)) {
                (Ok(v), Some(dst)) => *dst = v,
                _ => self.remove(key),
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
        let Ok(value) = Value::new(value) else {
            // Too long to be a value: never cached, and no older value may stay.
            self.remove(key);
            return;
        };
        if let Some(e) = self.map.get_mut(&key) {
            if let Some(v) = self.values.get_mut(e.slot as usize) {
                *v = value;
            }
            e.freq = (e.freq + 1).min(FREQ_MAX);
            return;
        }
        let seen = self.recall(key);
        while self.map.len() >= self.capacity && self.evict() {}
        let (queue, fifo) = match seen {
            true => (Queue::Main, &mut self.main),
            false => (Queue::Small, &mut self.small),
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        fifo.push((key, generation));
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(v) = self.values.get_mut(slot as usize) {
                    *v = value;
                }
                slot
            }
            None => {
                self.values.push(value);
                (self.values.len() - 1) as u32
            }
        };
        let entry = Entry {
            slot,
            generation,
            freq: 0,
            queue,
        };
        self.map.insert(key, entry);
    }

    /// Forgets `key`'s value.
    pub(crate) fn remove(&mut self, key: Key) {
        let Some(e) = self.map.remove(&key) else {
            return;
        };
        self.free.push(e.slot);
        let map = &self.map;
        match e.queue {
            Queue::Small => self.small.kill(|s| live(map, s)),
            Queue::Main => self.main.kill(|s| live(map, s)),
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.map.len() as u64,
            bytes: (self.map.len() * ENTRY_BYTES) as u64,
            ..self.counts
        }
    }

    /// Evicts one entry: from small while it holds its share (or main is empty), else from
    /// main. False when the cache is empty.
    fn evict(&mut self) -> bool {
        let small_first = self.small.live >= self.small_cap || self.main.live == 0;
        (small_first && self.evict_from(Queue::Small)) || self.evict_from(Queue::Main)
    }

    /// Takes `queue`'s oldest entries until one unused is evicted (its key remembered as a
    /// ghost if it was in small). A used one goes to main's tail: from small as it is, from
    /// main with one use less (CLOCK). False when the queue empties first.
    fn evict_from(&mut self, queue: Queue) -> bool {
        loop {
            let (map, fifo) = match queue {
                Queue::Small => (&self.map, &mut self.small),
                Queue::Main => (&self.map, &mut self.main),
            };
            let Some((key, generation)) = fifo.pop(|s| live(map, s)) else {
                return false;
            };
            let Some(e) = self.map.get_mut(&key) else {
                continue;
            };
            if e.freq == 0 {
                let slot = e.slot;
                self.map.remove(&key);
                self.free.push(slot);
                self.counts.evictions += 1;
                if queue == Queue::Small {
                    self.remember(key);
                }
                return true;
            }
            if queue == Queue::Main {
                e.freq -= 1;
            }
            e.queue = Queue::Main;
            self.main.push((key, generation));
        }
    }

    /// Remembers `key` in the ghost queue, forgetting the oldest ghosts beyond its share.
    fn remember(&mut self, key: Key) {
        if self.ghost_cap == 0 {
            return;
        }
        self.recall(key); // a cached key has no ghost, but keep the counts exact regardless
        self.next_generation += 1;
        self.ghosts.insert(key, self.next_generation);
        self.ghost.push((key, self.next_generation));
        while self.ghosts.len() > self.ghost_cap {
            let ghosts = &self.ghosts;
            let Some((old, _)) = self.ghost.pop(|s| ghosts.get(&s.0) == Some(&s.1)) else {
                break;
            };
            self.ghosts.remove(&old);
        }
    }

    /// Whether `key` has a ghost, forgetting it.
    fn recall(&mut self, key: Key) -> bool {
        if self.ghosts.remove(&key).is_none() {
            return false;
        }
        let ghosts = &self.ghosts;
        self.ghost.kill(|s| ghosts.get(&s.0) == Some(&s.1));
        true
    }
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

    /// Live counts agree with the map and the queues, which hold few dead slots.
    fn check_invariants(c: &Cache) {
        assert!(c.map.len() <= c.capacity && c.ghosts.len() <= c.ghost_cap);
        assert_eq!(c.small.live + c.main.live, c.map.len());
        assert_eq!(c.ghost.live, c.ghosts.len());
        for q in [&c.small, &c.main] {
            assert_eq!(q.slots.iter().filter(|s| live(&c.map, s)).count(), q.live);
        }
        for q in [&c.small, &c.main, &c.ghost] {
            assert!(q.slots.len() <= 2 * q.live + SLACK + 1, "{}", q.slots.len());
        }
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
        assert!(c.ghosts.contains_key(&k(0)));
        c.insert(k(0), b"zero again");
        assert_eq!(c.map[&k(0)].queue, Queue::Main);
        assert!(!c.ghosts.contains_key(&k(0)));
        // Unused, it outlives one-time keys going through small; a new key does not.
        c.insert(k(500), b"new");
        assert_eq!(c.map[&k(500)].queue, Queue::Small);
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
            assert_eq!((c.map.capacity(), c.small.slots.capacity()), (0, 0));
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
        assert!(c.small.slots.len() + c.main.slots.len() <= 2 * SLACK + 2);
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
                for (key, e) in &c.map {
                    let v = c.values[e.slot as usize].to_vec();
                    prop_assert_eq!(Some(&v), model.get(&key.as_u64()));
                }
                check_invariants(&c);
            }
            let st = c.stats();
            prop_assert_eq!(st.hits + st.misses, gets);
        }
    }
}
