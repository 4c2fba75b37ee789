//! The in-memory index: an ordered map from key to the sequence number of its live record.
//!
//! **Shape.** A B+tree whose leaves hold up to [`LEAF_MAX`] entries in one array, each the key
//! (`u64`, the key read big-endian, so integer order is byte order) beside the low 32 bits of
//! its record's sequence number (12 bytes, packed: the number comes in the cache line the
//! search loaded, and an insert shifts one array). Inner nodes hold up to [`INNER_MAX`] children and the
//! smallest key of every child but the first, inline (one allocation a node, no box between
//! levels). Get, insert and remove are O(log n); a range walks the leaves in key order. A
//! search in a node guesses the place by interpolation between the node's bounds and loads a
//! window of [`WINDOW`] bytes around it at once (see [`search`]): on random keys, one memory
//! round trip a level where a binary search would take several. Nodes shrink as keys go: a
//! leaf under a quarter full joins a neighbour (or takes half of it), and so do inner nodes.
//!
//! **Size.** An entry costs 12 bytes, and a leaf's array grows in steps of an eighth of their
//! length (not doubling), so they stay about 94 % full; a split leaves two halves that keep
//! only what they hold. With the inner nodes (one key and one child per leaf) an index costs
//! about 13 bytes per live key however it was filled (`cargo bench --bench index`,
//! BENCHMARKS.md), against 18 (bulk-built) to 27 (random inserts) for the
//! `BTreeMap<u64, u64>` it replaced.
//!
//! **Sequence numbers in 32 bits.** The index keeps `top`, the highest sequence number it has
//! been given, and stores `seq mod 2^32`; a stored value `s` reads back as the one number in
//! `(top − 2^32, top]` congruent to it. That is exact while every live record is less than
//! [`SPAN`] records older than the newest: the shard refuses a record that would break it
//! (`Error::Full`), and garbage collection moves old live records forward long before.
//!
//! **Build.** At open the log's records are sorted by key, then sequence number, so that
//! among equal keys the last record wins: in place, into buckets by the top bits of the key,
//! then each bucket in cache (see [`sort`]). They are deduplicated in place, and packed into
//! leaves seven-eighths full, then the levels above them are built: O(n).

use std::ops::Bound;

use crate::key::Key;

/// Live records must be fewer than this many records older than the newest one.
pub(crate) const SPAN: u64 = 1 << 32;

/// Most keys in a leaf.
const LEAF_MAX: usize = 256;

/// Bytes in a cache line.
const LINE: usize = 64;

/// Bytes an interpolated search loads around its guess: four cache lines.
const WINDOW: usize = 4 * LINE;

/// Most children of an inner node.
const INNER_MAX: usize = 64;

/// Flag on a rebuild entry's sequence number marking a delete.
const TOMBSTONE: u64 = 1 << 63;

/// Key to sequence number of its live record.
#[derive(Debug)]
pub struct Index {
    root: Node,
    len: usize,
    /// The highest sequence number given; stored ones are read back relative to it.
    top: u64,
    /// Fan-outs: [`LEAF_MAX`] and [`INNER_MAX`], smaller in tests to make deep trees.
    leaf_max: usize,
    inner_max: usize,
}

#[derive(Debug)]
enum Node {
    Leaf(Leaf),
    Inner(Inner),
}

/// Entries sorted by key.
#[derive(Debug, Default)]
struct Leaf {
    ents: Vec<Ent>,
}

/// A key and the low 32 bits of its record's sequence number: 12 bytes, side by side so that
/// the sequence number is in the cache line the search loaded.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct Ent {
    key: u64,
    seq: u32,
}

/// What a node's search reads: the key of each item.
trait Keyed: Copy {
    fn key(self) -> u64;
}

impl Keyed for u64 {
    fn key(self) -> u64 {
        self
    }
}

impl Keyed for Ent {
    fn key(self) -> u64 {
        self.key
    }
}

/// What a descent carries: the fan-outs, and the bounds of the node's keys.
#[derive(Debug, Clone, Copy)]
struct Fan {
    leaf: usize,
    inner: usize,
    lo: u64,
    hi: u64,
}

/// `kids[i]` holds keys in `[seps[i - 1], seps[i])` (open at the ends).
#[derive(Debug)]
struct Inner {
    seps: Vec<u64>,
    kids: Vec<Node>,
}

/// The records read from the log at open, in log order, as (key, sequence | delete flag).
#[derive(Debug, Default)]
pub struct Log {
    entries: Vec<(u64, u64)>,
}

impl Log {
    /// Room for `n` records.
    pub fn with_capacity(n: usize) -> Log {
        let mut entries = Vec::with_capacity(n);
        crate::io::huge_pages(entries.spare_capacity_mut());
        Log { entries }
    }

    /// Notes a put of `key` by record `seq`.
    pub fn put(&mut self, key: Key, seq: u64) {
        self.entries.push((key.as_u64(), seq));
    }

    /// Notes a delete of `key` by record `seq`.
    pub fn delete(&mut self, key: Key, seq: u64) {
        self.entries.push((key.as_u64(), seq | TOMBSTONE));
    }

    /// Builds the index: the last record of each key wins; deleted keys are left out.
    /// `None` when live records are [`SPAN`] or more apart.
    pub fn build(self) -> Option<Index> {
        Index::build(self, LEAF_MAX, INNER_MAX)
    }
}

impl Default for Index {
    fn default() -> Index {
        Index::new(LEAF_MAX, INNER_MAX)
    }
}

impl Index {
    fn new(leaf_max: usize, inner_max: usize) -> Index {
        Index {
            root: Node::Leaf(Leaf::default()),
            len: 0,
            top: 0,
            leaf_max,
            inner_max,
        }
    }

    fn build(log: Log, leaf_max: usize, inner_max: usize) -> Option<Index> {
        let mut entries = sort(log.entries);
        // In one pass, in place: the last record of each key wins, deletes drop out, and the
        // live records' sequence numbers are bounded.
        let (mut n, mut i, mut lo, mut hi) = (0, 0, u64::MAX, 0);
        while let Some(&(key, first)) = entries.get(i) {
            let mut last = first;
            i += 1;
            while let Some(&(k, seq)) = entries.get(i)
                && k == key
            {
                last = seq;
                i += 1;
            }
            if last & TOMBSTONE == 0 {
                entries[n] = (key, last);
                n += 1;
                lo = lo.min(last);
                hi = hi.max(last);
            }
        }
        entries.truncate(n);
        let mut index = Index::new(leaf_max, inner_max);
        if n == 0 {
            return Some(index);
        }
        if hi - lo >= SPAN {
            return None;
        }
        index.top = hi;
        index.len = entries.len();
        // Leaves seven-eighths full, evenly: room for inserts before the first split.
        let per = (leaf_max * 7 / 8).max(1);
        let count = entries.len().div_ceil(per);
        let mut level: Vec<(u64, Node)> = Vec::with_capacity(count);
        let mut rest = &entries[..];
        for i in 0..count {
            let take = rest.len() / (count - i);
            let (part, tail) = rest.split_at(take);
            rest = tail;
            let leaf = Leaf {
                ents: part
                    .iter()
                    .map(|e| Ent {
                        key: e.0,
                        seq: e.1 as u32,
                    })
                    .collect(),
            };
            level.push((part[0].0, Node::Leaf(leaf)));
        }
        drop(entries);
        // At least three children each, so none is left with one when they are spread evenly.
        let per = (inner_max * 7 / 8).max(3).min(inner_max);
        while level.len() > 1 {
            let count = level.len().div_ceil(per);
            let mut up = Vec::with_capacity(count);
            let mut nodes = level.into_iter();
            let total = nodes.len();
            let mut done = 0;
            for i in 0..count {
                let take = (total - done) / (count - i);
                done += take;
                let mut inner = Inner {
                    seps: Vec::with_capacity(take - 1),
                    kids: Vec::with_capacity(take),
                };
                let mut low = 0;
                for (j, (min, node)) in nodes.by_ref().take(take).enumerate() {
                    if j == 0 {
                        low = min;
                    } else {
                        inner.seps.push(min);
                    }
                    inner.kids.push(node);
                }
                up.push((low, Node::Inner(inner)));
            }
            level = up;
        }
        if let Some((_, root)) = level.pop() {
            index.root = root;
        }
        Some(index)
    }

    /// The fan-outs, and the bounds of the whole key space.
    fn fan(&self) -> Fan {
        Fan {
            leaf: self.leaf_max,
            inner: self.inner_max,
            lo: 0,
            hi: u64::MAX,
        }
    }

    /// Reads a stored sequence number back (see the module doc).
    fn seq(&self, stored: u32) -> u64 {
        self.top - u64::from((self.top as u32).wrapping_sub(stored))
    }

    /// The live record of `key`.
    pub fn get(&self, key: Key) -> Option<u64> {
        let key = key.as_u64();
        let (mut node, mut lo, mut hi) = (&self.root, 0, u64::MAX);
        loop {
            match node {
                Node::Inner(inner) => {
                    let i;
                    (i, lo, hi) = inner.pick(key, lo, hi);
                    node = &inner.kids[i];
                }
                Node::Leaf(leaf) => {
                    let i = search(&leaf.ents, key, lo, hi).ok()?;
                    return Some(self.seq(leaf.ents[i].seq));
                }
            }
        }
    }

    /// Points `key` at record `seq`; returns the record it replaced. `seq` must be less than
    /// [`SPAN`] records older than every live record and the newest (the shard checks).
    pub fn insert(&mut self, key: Key, seq: u64) -> Option<u64> {
        debug_assert!(self.len == 0 || self.top.abs_diff(seq) < SPAN);
        let (old, split) = self.root.insert(key.as_u64(), seq as u32, self.fan());
        if let Some((sep, right)) = split {
            let left = std::mem::replace(&mut self.root, Node::Leaf(Leaf::default()));
            self.root = Node::Inner(Inner {
                seps: vec![sep],
                kids: vec![left, right],
            });
        }
        // Read back against the top before this record raises it.
        let old = old.map(|s| self.seq(s));
        if old.is_none() {
            self.len += 1;
        }
        if self.len == 1 || seq > self.top {
            self.top = seq;
        }
        old
    }

    /// Forgets `key`; returns its record, if it was there.
    pub fn remove(&mut self, key: Key) -> Option<u64> {
        let (old, _) = self.root.remove(key.as_u64(), self.fan());
        while let Node::Inner(inner) = &mut self.root
            && inner.kids.len() == 1
            && let Some(kid) = inner.kids.pop()
        {
            self.root = kid;
        }
        let old = self.seq(old?);
        self.len -= 1;
        Some(old)
    }

    /// The live records' sequence numbers, in key order.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(_, s)| s)
    }

    /// Every entry in key order.
    fn iter(&self) -> Iter<'_> {
        let mut iter = Iter {
            index: self,
            stack: Vec::new(),
            leaf: None,
        };
        match &self.root {
            Node::Leaf(leaf) => iter.leaf = Some((leaf, 0)),
            Node::Inner(inner) => iter.stack.push((inner, 0)),
        }
        iter
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes the index holds (what it asked the allocator for; the allocator's own
    /// bookkeeping is not counted). Walks the inner nodes: O(leaves / [`INNER_MAX`]).
    pub fn bytes(&self) -> usize {
        fn node(n: &Node) -> usize {
            match n {
                Node::Leaf(leaf) => leaf.ents.capacity() * size_of::<Ent>(),
                Node::Inner(inner) => {
                    inner.seps.capacity() * size_of::<u64>()
                        + inner.kids.capacity() * size_of::<Node>()
                        + inner.kids.iter().map(node).sum::<usize>()
                }
            }
        }
        node(&self.root)
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Up to `n` entries with keys within the bounds, in key order.
    pub fn range(&self, from: Bound<Key>, to: Bound<Key>, n: usize) -> Vec<(Key, u64)> {
        let (lo, hi) = (from.map(Key::as_u64), to.map(Key::as_u64));
        let mut out = Vec::new();
        if n > 0 {
            self.collect(&self.root, lo, hi, n, &mut out);
        }
        out
    }

    fn collect(
        &self,
        node: &Node,
        lo: Bound<u64>,
        hi: Bound<u64>,
        n: usize,
        out: &mut Vec<(Key, u64)>,
    ) {
        match node {
            Node::Inner(inner) => {
                let start = match lo {
                    Bound::Included(a) | Bound::Excluded(a) => inner.pick(a, 0, u64::MAX).0,
                    Bound::Unbounded => 0,
                };
                for i in start..inner.kids.len() {
                    if i > 0 && past(inner.seps[i - 1], hi) {
                        return;
                    }
                    self.collect(&inner.kids[i], lo, hi, n, out);
                    if out.len() >= n {
                        return;
                    }
                }
            }
            Node::Leaf(leaf) => {
                let start = match lo {
                    Bound::Included(a) => leaf.ents.partition_point(|e| e.key() < a),
                    Bound::Excluded(a) => leaf.ents.partition_point(|e| e.key() <= a),
                    Bound::Unbounded => 0,
                };
                for &Ent { key, seq } in leaf.ents.get(start..).unwrap_or_default() {
                    if past(key, hi) || out.len() >= n {
                        return;
                    }
                    out.push((Key::from(key), self.seq(seq)));
                }
            }
        }
    }
}

/// Where `key` would be among `n` sorted keys spread evenly over `[lo, hi]`: at most `n`.
fn guess(n: usize, key: u64, lo: u64, hi: u64) -> usize {
    if hi <= lo {
        return 0;
    }
    let at = key.saturating_sub(lo) as f64 / (hi - lo) as f64 * n as f64;
    (at as usize).min(n)
}

/// Where `key` is in the sorted `keys` (as `binary_search`), all of which lie in
/// `[lo, hi]`. Nodes are usually not in the CPU's caches, and a binary search's loads depend
/// on one another: each cache line it touches is one memory round trip after the last. So
/// the search first guesses the place by interpolation between the bounds, loads a window of
/// [`WINDOW`] bytes around it at once (one round trip), and is done if the key falls inside;
/// keys spread evenly (random ones) almost always do. Otherwise it binary-searches the side
/// the key is on.
fn search<T: Keyed>(items: &[T], key: u64, lo: u64, hi: u64) -> Result<usize, usize> {
    let n = items.len();
    let find = |part: &[T]| part.binary_search_by_key(&key, |e| e.key());
    let window = WINDOW / size_of::<T>();
    if n <= window || hi <= lo {
        return find(items);
    }
    let a = guess(n, key, lo, hi).saturating_sub(window / 2);
    let b = (a + window).min(n);
    let part = &items[a..b];
    let mut x = 0u64;
    for e in part.iter().step_by(LINE / size_of::<T>()) {
        x ^= e.key();
    }
    std::hint::black_box(x);
    let shift = |r: Result<usize, usize>, by: usize| r.map(|i| i + by).map_err(|i| i + by);
    match (part.first(), part.last()) {
        (Some(first), _) if key < first.key() && a > 0 => find(&items[..a]),
        (_, Some(last)) if key > last.key() && b < n => shift(find(&items[b..]), b),
        _ => shift(find(part), a),
    }
}

/// Sorts the log's entries by key, log order kept among equal keys (in sequence order, which
/// is log order). One pass moves them, in place, into buckets by their top bits (after the
/// smallest key is taken off, so that dense keys spread too): at most 4,096 buckets, few
/// enough that each one's write position stays in cache. Each bucket, some hundreds of KiB,
/// is then sorted inside the CPU's caches by [`refine`]. A radix sort of the whole log would
/// make eight passes over memory, and a second buffer as large as the log (fresh memory the
/// kernel must zero: on this project's virtual machine, as long as the sort itself).
fn sort(mut entries: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let n = entries.len();
    let Some((min, max)) = bounds(&entries) else {
        return entries;
    };
    // At least one bit: keys spanning all 64 bits would otherwise be shifted by 64 (which
    // wraps in a release build: a bucket far out of range).
    let bits = (n / 16_384).max(2).ilog2().min(12);
    let span = 64 - (max - min).leading_zeros();
    if n < 1 << 14 || span <= bits {
        radsort::sort_by_key(&mut entries, |e| e.0);
        return entries;
    }
    let shift = span - bits;
    let bucket = |key: u64| ((key - min) >> shift) as usize;
    let mut starts = vec![0usize; (1 << bits) + 1];
    for e in &entries {
        starts[bucket(e.0) + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    // In place (an American flag sort): take the first misplaced entry of a bucket and swap
    // it into the next free place of its own bucket, until what comes back belongs here.
    let mut next = starts.clone();
    for b in 0..1 << bits {
        while next[b] < starts[b + 1] {
            let mut e = entries[next[b]];
            loop {
                let d = bucket(e.0);
                if d == b {
                    break;
                }
                std::mem::swap(&mut e, &mut entries[next[d]]);
                next[d] += 1;
            }
            entries[next[b]] = e;
            next[b] += 1;
        }
    }
    let mut scratch = Scratch::default();
    for w in starts.windows(2) {
        refine(&mut entries[w[0]..w[1]], &mut scratch);
    }
    entries
}

/// What entries are sorted by: key, then sequence number (without the delete flag).
fn order(e: &(u64, u64)) -> (u64, u64) {
    (e.0, e.1 & !TOMBSTONE)
}

/// The smallest and the largest key.
fn bounds(entries: &[(u64, u64)]) -> Option<(u64, u64)> {
    let first = entries.first()?.0;
    Some(
        entries
            .iter()
            .fold((first, first), |(a, b), e| (a.min(e.0), b.max(e.0))),
    )
}

/// Runs at most this long are sorted by insertion.
const SMALL: usize = 32;

/// What [`refine`] reuses from bucket to bucket.
#[derive(Default)]
struct Scratch {
    out: Vec<(u64, u64)>,
    starts: Vec<usize>,
}

/// Sorts one bucket by [`order`]. A second scatter by the next bits of the bucket's own key
/// range leaves runs of a few entries on random keys, each then sorted by insertion: two
/// passes in cache, where a radix sort of random 64-bit keys makes seven. Runs longer than
/// [`SMALL`] (keys written many times) are radix-sorted.
fn refine(part: &mut [(u64, u64)], scratch: &mut Scratch) {
    let Some((min, max)) = bounds(part).filter(|_| part.len() > SMALL) else {
        insertion(part);
        return;
    };
    let span = 64 - (max - min).leading_zeros();
    if span == 0 {
        // One key, written many times.
        radsort::sort_by_key(part, order);
        return;
    }
    let bits = (part.len() / 2).max(2).ilog2().min(14).min(span);
    let shift = span - bits;
    let slot = |key: u64| ((key - min) >> shift) as usize;
    let starts = &mut scratch.starts;
    starts.clear();
    starts.resize((1 << bits) + 1, 0);
    for e in part.iter() {
        starts[slot(e.0) + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let out = &mut scratch.out;
    out.clear();
    out.resize(part.len(), (0, 0));
    // `starts[s]` moves on to the end of slot `s` as it fills, so afterwards slot `s` is
    // `starts[s - 1]..starts[s]`.
    for e in part.iter() {
        let s = slot(e.0);
        out[starts[s]] = *e;
        starts[s] += 1;
    }
    part.copy_from_slice(out);
    let mut at = 0;
    for &end in starts.iter().take(1 << bits) {
        let run = &mut part[at..end];
        if run.len() > SMALL {
            radsort::sort_by_key(run, order);
        } else {
            insertion(run);
        }
        at = end;
    }
}

/// Sorts a few entries by [`order`].
fn insertion(part: &mut [(u64, u64)]) {
    for i in 1..part.len() {
        let e = part[i];
        let mut j = i;
        while j > 0 && order(&part[j - 1]) > order(&e) {
            part[j] = part[j - 1];
            j -= 1;
        }
        part[j] = e;
    }
}

/// Whether `key` lies beyond the upper bound `hi`.
fn past(key: u64, hi: Bound<u64>) -> bool {
    match hi {
        Bound::Included(b) => key > b,
        Bound::Excluded(b) => key >= b,
        Bound::Unbounded => false,
    }
}

impl Node {
    /// Inserts; returns the stored sequence number replaced, and the new right sibling (with
    /// its smallest key) when this node split.
    fn insert(&mut self, key: u64, seq: u32, fan: Fan) -> (Option<u32>, Option<(u64, Node)>) {
        match self {
            Node::Leaf(leaf) => leaf.insert(key, seq, fan),
            Node::Inner(inner) => {
                let (i, lo, hi) = inner.pick(key, fan.lo, fan.hi);
                let (old, split) = inner.kids[i].insert(key, seq, Fan { lo, hi, ..fan });
                let Some((sep, node)) = split else {
                    return (old, None);
                };
                inner.seps.insert(i, sep);
                inner.kids.insert(i + 1, node);
                if inner.kids.len() <= fan.inner {
                    return (old, None);
                }
                let (up, right) = inner.halve();
                (old, Some((up, Node::Inner(right))))
            }
        }
    }

    /// Removes; returns the stored sequence number, and whether this node is now small
    /// enough to merge with a sibling.
    fn remove(&mut self, key: u64, fan: Fan) -> (Option<u32>, bool) {
        match self {
            Node::Leaf(leaf) => {
                let old = leaf.remove(key, fan);
                let n = leaf.ents.len();
                (old, n == 0 || n * 4 < fan.leaf)
            }
            Node::Inner(inner) => {
                let (i, lo, hi) = inner.pick(key, fan.lo, fan.hi);
                let (old, small) = inner.kids[i].remove(key, Fan { lo, hi, ..fan });
                if small {
                    inner.merge(i, fan);
                }
                let n = inner.kids.len();
                (old, n == 1 || n * 4 < fan.inner)
            }
        }
    }
}

impl Inner {
    /// The child that holds `key`, and its bounds, for a node whose keys lie in `[lo, hi]`.
    fn pick(&self, key: u64, lo: u64, hi: u64) -> (usize, u64, u64) {
        // The headers of the children around the guess, loaded with the separators: the
        // one picked is then at hand (one memory round trip a level, not two).
        let at = guess(self.seps.len(), key, lo, hi);
        let mut x = 0usize;
        for kid in self.kids.iter().skip(at.saturating_sub(2)).take(5) {
            x ^= match kid {
                Node::Leaf(leaf) => leaf.ents.len(),
                Node::Inner(inner) => inner.kids.len(),
            };
        }
        std::hint::black_box(x);
        let i = match search(&self.seps, key, lo, hi) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        let lo = if i > 0 { self.seps[i - 1] } else { lo };
        let hi = self.seps.get(i).map_or(hi, |&s| s.saturating_sub(1));
        (i, lo, hi)
    }

    /// Joins the small child `i` with a neighbour, then halves the result again if it is
    /// more than three quarters of a leaf or more than an inner node holds (so neither
    /// is small any more).
    fn merge(&mut self, i: usize, fan: Fan) {
        if self.kids.len() < 2 {
            return;
        }
        let a = if i + 1 < self.kids.len() { i } else { i - 1 };
        let right = self.kids.remove(a + 1);
        let sep = self.seps.remove(a);
        let split = match (&mut self.kids[a], right) {
            (Node::Leaf(left), Node::Leaf(mut right)) => {
                left.ents.reserve_exact(right.ents.len());
                left.ents.append(&mut right.ents);
                (left.ents.len() > fan.leaf * 3 / 4).then(|| {
                    let (sep, right) = left.halve();
                    (sep, Node::Leaf(right))
                })
            }
            (Node::Inner(left), Node::Inner(mut right)) => {
                left.seps.push(sep);
                left.seps.append(&mut right.seps);
                left.kids.append(&mut right.kids);
                (left.kids.len() > fan.inner).then(|| {
                    let (sep, right) = left.halve();
                    (sep, Node::Inner(right))
                })
            }
            _ => unreachable!("siblings are at the same depth"),
        };
        if let Some((sep, node)) = split {
            self.seps.insert(a, sep);
            self.kids.insert(a + 1, node);
        }
    }

    /// Moves the upper half of the children to a new right sibling; returns it with the
    /// separator between the two.
    fn halve(&mut self) -> (u64, Inner) {
        let mid = self.kids.len() / 2;
        let kids = self.kids.split_off(mid);
        let seps = self.seps.split_off(mid);
        let up = self.seps.pop().unwrap_or_default();
        self.kids.shrink_to_fit();
        self.seps.shrink_to_fit();
        (up, Inner { seps, kids })
    }
}

impl Leaf {
    fn insert(&mut self, key: u64, seq: u32, fan: Fan) -> (Option<u32>, Option<(u64, Node)>) {
        let leaf_max = fan.leaf;
        let i = match search(&self.ents, key, fan.lo, fan.hi) {
            Ok(i) => return (Some(std::mem::replace(&mut self.ents[i].seq, seq)), None),
            Err(i) => i,
        };
        if self.ents.len() < leaf_max {
            self.room(leaf_max);
            self.ents.insert(i, Ent { key, seq });
            return (None, None);
        }
        let mid = self.ents.len() / 2;
        let (sep, mut right) = self.halve();
        let half = if i <= mid { &mut *self } else { &mut right };
        let at = if i <= mid { i } else { i - mid };
        half.room(leaf_max);
        half.ents.insert(at, Ent { key, seq });
        (None, Some((sep, Node::Leaf(right))))
    }

    /// Moves the upper half of the keys to a new right sibling; returns it with its
    /// smallest key. Each half keeps an eighth more room than it holds.
    fn halve(&mut self) -> (u64, Leaf) {
        let mid = self.ents.len() / 2;
        let right = Leaf {
            ents: self.ents.split_off(mid),
        };
        self.ents.shrink_to(mid + mid / 8);
        (right.ents.first().map_or(0, |e| e.key()), right)
    }

    /// Room for one more key, growing by an eighth (at least four) up to `leaf_max`.
    fn room(&mut self, leaf_max: usize) {
        let len = self.ents.len();
        if len < self.ents.capacity() {
            return;
        }
        let add = (len / 8).max(4).min(leaf_max.saturating_sub(len)).max(1);
        self.ents.reserve_exact(add);
    }

    fn remove(&mut self, key: u64, fan: Fan) -> Option<u32> {
        let i = search(&self.ents, key, fan.lo, fan.hi).ok()?;
        let old = self.ents.remove(i).seq;
        let len = self.ents.len();
        if self.ents.capacity() > len + len / 4 + 8 {
            self.ents.shrink_to(len + len / 8);
        }
        Some(old)
    }
}

/// Entries in key order.
struct Iter<'a> {
    index: &'a Index,
    stack: Vec<(&'a Inner, usize)>,
    leaf: Option<(&'a Leaf, usize)>,
}

impl Iterator for Iter<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        loop {
            if let Some((leaf, i)) = &mut self.leaf {
                if let Some(&Ent { key, seq }) = leaf.ents.get(*i) {
                    *i += 1;
                    return Some((key, self.index.seq(seq)));
                }
                self.leaf = None;
            }
            let (inner, i) = self.stack.last_mut()?;
            let Some(kid) = inner.kids.get(*i) else {
                self.stack.pop();
                continue;
            };
            *i += 1;
            match kid {
                Node::Leaf(leaf) => self.leaf = Some((leaf, 0)),
                Node::Inner(inner) => self.stack.push((inner, 0)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    impl Index {
        /// Checks the tree's invariants: every leaf at one depth, keys strictly increasing
        /// and within their separators, sizes within the fan-outs, `len` right.
        fn verify(&self) {
            fn walk(
                node: &Node,
                lo: Option<u64>,
                hi: Option<u64>,
                depth: usize,
                leaves: &mut Vec<usize>,
                idx: &Index,
                root: bool,
            ) -> usize {
                match node {
                    Node::Leaf(leaf) => {
                        let keys: Vec<u64> = leaf.ents.iter().map(|e| e.key()).collect();
                        assert!(keys.len() <= idx.leaf_max);
                        assert!(root || !keys.is_empty(), "empty leaf left in the tree");
                        assert!(keys.windows(2).all(|w| w[0] < w[1]));
                        if let (Some(lo), Some(&k)) = (lo, keys.first()) {
                            assert!(k >= lo);
                        }
                        if let (Some(hi), Some(&k)) = (hi, keys.last()) {
                            assert!(k < hi);
                        }
                        leaves.push(depth);
                        keys.len()
                    }
                    Node::Inner(inner) => {
                        assert_eq!(inner.seps.len() + 1, inner.kids.len());
                        assert!(inner.kids.len() <= idx.inner_max);
                        assert!(!root || inner.kids.len() >= 2, "root with one child");
                        assert!(inner.seps.windows(2).all(|w| w[0] < w[1]));
                        let mut n = 0;
                        for (i, kid) in inner.kids.iter().enumerate() {
                            let l = if i == 0 { lo } else { Some(inner.seps[i - 1]) };
                            let h = inner.seps.get(i).copied().or(hi);
                            n += walk(kid, l, h, depth + 1, leaves, idx, false);
                        }
                        n
                    }
                }
            }
            let mut leaves = Vec::new();
            let n = walk(&self.root, None, None, 0, &mut leaves, self, true);
            assert_eq!(n, self.len);
            assert!(
                leaves.windows(2).all(|w| w[0] == w[1]),
                "leaves at different depths"
            );
        }
    }

    /// A xorshift generator: the same numbers every run.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// A log of `(key, seq, delete)` records, and the map its replay leaves.
    fn replay(ops: impl IntoIterator<Item = (u64, u64, bool)>) -> (Log, BTreeMap<u64, u64>) {
        let (mut log, mut model) = (Log::default(), BTreeMap::new());
        for (key, seq, del) in ops {
            if del {
                log.delete(Key::from(key), seq);
                model.remove(&key);
            } else {
                log.put(Key::from(key), seq);
                model.insert(key, seq);
            }
        }
        (log, model)
    }

    #[test]
    fn last_record_wins_and_deletes_drop() {
        let mut log = Log::default();
        log.put(Key::from(5), 0);
        log.put(Key::from(1), 1);
        log.put(Key::from(5), 2);
        log.delete(Key::from(1), 3);
        log.put(Key::from(9), 4);
        log.delete(Key::from(9), 5);
        log.put(Key::from(9), 6);
        let idx = log.build().unwrap();
        assert_eq!(idx.get(Key::from(5)), Some(2));
        assert_eq!(idx.get(Key::from(1)), None);
        assert_eq!(idx.get(Key::from(9)), Some(6));
        assert_eq!(idx.len(), 2);
    }

    /// Logs big enough for the bucketed sort, with dense keys, random ones and both, many
    /// overwritten and deleted: the build equals a replay.
    #[test]
    fn big_logs_build_like_a_replay() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15u64);
        for kind in 0..3 {
            let mut ops = Vec::new();
            for seq in 0..200_000u64 {
                let r = next();
                let key = match kind {
                    0 => r % 50_000,
                    1 => r,
                    _ if r.is_multiple_of(2) => r % 1000,
                    _ => r | 1 << 63,
                };
                ops.push((key, seq, r.is_multiple_of(7)));
            }
            let (log, model) = replay(ops);
            let idx = log.build().unwrap();
            idx.verify();
            assert!(idx.iter().eq(model.into_iter()), "kind {kind}");
        }
    }

    /// The in-place bucket sort and its refinement order like a stable sort by key, on
    /// dense, random, clustered and heavily repeated keys, with deletes flagged.
    #[test]
    fn sort_is_a_stable_sort_by_key() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1Du64);
        for kind in 0..5 {
            for n in [1usize, 33, 16_384, 100_000] {
                let entries: Vec<(u64, u64)> = (0..n as u64)
                    .map(|seq| {
                        let r = next();
                        let key = match kind {
                            0 => r % (n as u64 / 2 + 1),
                            1 => r,
                            2 => 7,
                            3 => (r % 64) << 40 | (r >> 58),
                            _ => u64::MAX - r % 100,
                        };
                        (key, seq | if r.is_multiple_of(5) { TOMBSTONE } else { 0 })
                    })
                    .collect();
                let mut want = entries.clone();
                want.sort_by_key(|e| e.0);
                assert!(sort(entries) == want, "kind {kind}, {n} entries");
            }
        }
    }

    #[test]
    fn a_log_wider_than_the_span_is_refused() {
        let mut log = Log::default();
        log.put(Key::from(1), 10);
        log.put(Key::from(2), 10 + SPAN);
        assert!(log.build().is_none());
        let mut log = Log::default();
        log.put(Key::from(1), 10);
        log.put(Key::from(2), 9 + SPAN);
        let idx = log.build().unwrap();
        assert_eq!(idx.get(Key::from(1)), Some(10));
        assert_eq!(idx.get(Key::from(2)), Some(9 + SPAN));
    }

    #[test]
    fn inverted_and_empty_ranges_are_empty_not_panics() {
        let mut idx = Index::default();
        for k in 0..10u64 {
            idx.insert(Key::from(k), k);
        }
        let r = |a: Bound<u64>, b: Bound<u64>| {
            let c = |x: Bound<u64>| x.map(Key::from);
            idx.range(c(a), c(b), usize::MAX).len()
        };
        assert_eq!(r(Bound::Included(5), Bound::Included(3)), 0);
        assert_eq!(r(Bound::Excluded(5), Bound::Excluded(5)), 0);
        assert_eq!(r(Bound::Included(5), Bound::Excluded(5)), 0);
        assert_eq!(r(Bound::Included(5), Bound::Included(5)), 1);
        assert_eq!(r(Bound::Unbounded, Bound::Excluded(3)), 3);
        assert_eq!(r(Bound::Excluded(7), Bound::Unbounded), 2);
    }

    /// A million random inserts, overwrites and removes on the real fan-outs, against a
    /// `BTreeMap`, with the invariants checked along the way.
    #[test]
    fn deep_tree_matches_btreemap() {
        let mut idx = Index::default();
        let mut model = BTreeMap::new();
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15u64);
        for seq in 0..1_000_000u64 {
            let r = next();
            let key = r % 300_000 * 0x0001_0000_0001;
            if r >> 62 == 0 && seq > 500_000 {
                assert_eq!(idx.remove(Key::from(key)), model.remove(&key));
            } else {
                assert_eq!(idx.insert(Key::from(key), seq), model.insert(key, seq));
            }
            if seq % 100_000 == 0 {
                idx.verify();
            }
        }
        idx.verify();
        assert_eq!(idx.len(), model.len());
        assert!(idx.iter().eq(model.iter().map(|(&k, &s)| (k, s))));
        // 12 bytes an entry, the growth room, and the inner nodes: 13 a key after random
        // inserts; removes leave leaves emptier (merged below a quarter), hence the margin.
        let per = idx.bytes() as f64 / idx.len() as f64;
        assert!((12.0..15.0).contains(&per), "{per} bytes per key");
        let keys: Vec<u64> = model.keys().copied().collect();
        for w in keys.chunks(997) {
            let (a, b) = (w[0], w[w.len() - 1]);
            let got = idx.range(
                Bound::Included(Key::from(a)),
                Bound::Included(Key::from(b)),
                500,
            );
            let want: Vec<(Key, u64)> = model
                .range(a..=b)
                .take(500)
                .map(|(&k, &s)| (Key::from(k), s))
                .collect();
            assert_eq!(got, want);
        }
        for key in keys {
            assert_eq!(idx.remove(Key::from(key)), model.remove(&key));
        }
        idx.verify();
        assert_eq!(idx.len(), 0);
        assert!(matches!(idx.root, Node::Leaf(_)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u64),
        Delete(u64),
        Range(Bound<u64>, Bound<u64>, usize),
        Reopen,
    }

    fn bound() -> impl Strategy<Value = Bound<u64>> {
        prop_oneof![
            Just(Bound::Unbounded),
            (0u64..600).prop_map(Bound::Included),
            (0u64..600).prop_map(Bound::Excluded),
            Just(Bound::Included(0)),
            Just(Bound::Excluded(u64::MAX)),
            Just(Bound::Included(u64::MAX)),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..500).prop_map(Op::Put),
            1 => any::<u64>().prop_map(Op::Put),
            3 => (0u64..500).prop_map(Op::Delete),
            1 => (bound(), bound(), 0usize..40).prop_map(|(a, b, n)| Op::Range(a, b, n)),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #[test]
        fn build_matches_replay(ops in proptest::collection::vec((0u64..20, any::<bool>()), 0..200)) {
            let (log, model) = replay(ops.into_iter().enumerate().map(|(s, (k, d))| (k, s as u64, d)));
            let idx = log.build().unwrap();
            idx.verify();
            prop_assert!(idx.iter().eq(model.into_iter()));
        }

        /// Inserts, overwrites, deletes, ranges with every kind of bound, and rebuilds from
        /// the log, on small fan-outs (deep trees), with sequence numbers that cross 2^32,
        /// against a `BTreeMap`.
        #[test]
        fn model(
            ops in proptest::collection::vec(op(), 0..2000),
            start in prop_oneof![Just(0u64), Just(SPAN - 300), (0u64..1 << 40)],
            leaf in 2usize..9,
            inner in 3usize..7,
        ) {
            let mut idx = Index::new(leaf, inner);
            let mut model: BTreeMap<u64, u64> = BTreeMap::new();
            let mut log = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                let seq = start + n as u64;
                match op {
                    Op::Put(k) => {
                        prop_assert_eq!(idx.insert(Key::from(k), seq), model.insert(k, seq));
                        log.push((k, seq, false));
                    }
                    Op::Delete(k) => {
                        let had = model.remove(&k);
                        prop_assert_eq!(idx.remove(Key::from(k)), had);
                        if had.is_some() {
                            log.push((k, seq, true));
                        }
                    }
                    Op::Range(a, b, n) => {
                        let got = idx.range(a.map(Key::from), b.map(Key::from), n);
                        let want: Vec<(Key, u64)> = if invalid(a, b) {
                            Vec::new()
                        } else {
                            model.range((a, b)).take(n).map(|(&k, &s)| (Key::from(k), s)).collect()
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Reopen => {
                        let (l, _) = replay(log.iter().copied());
                        idx = Index::build(l, leaf, inner).unwrap();
                    }
                }
                idx.verify();
                prop_assert_eq!(idx.len(), model.len());
            }
            prop_assert!(idx.iter().eq(model.iter().map(|(&k, &s)| (k, s))));
            for (&k, &s) in &model {
                prop_assert_eq!(idx.get(Key::from(k)), Some(s));
            }
        }
    }

    /// Bounds `BTreeMap::range` panics on: start after end, or equal and not both included.
    fn invalid(a: Bound<u64>, b: Bound<u64>) -> bool {
        match (a, b) {
            (Bound::Included(x), Bound::Included(y)) => x > y,
            (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
                x >= y
            }
            _ => false,
        }
    }
}
