//! The in-memory index: an ordered map from key to the sequence number of its live record.
//!
//! A `BTreeMap<u64, u64>` (the key read big-endian, so integer order is byte order): put, get
//! and delete are O(log n). At open it is bulk-built from the key log in O(n) after a stable
//! radix sort, which keeps log order among equal keys so the last record of each key wins.
//! Built that way its leaves are full: about 20 bytes per live key (see `BENCHMARKS.md`).

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::key::Key;

/// Flag on a rebuild entry's sequence number marking a delete.
const TOMBSTONE: u64 = 1 << 63;

/// Key to sequence number of its live record.
#[derive(Debug, Default)]
pub(crate) struct Index {
    map: BTreeMap<u64, u64>,
}

/// The records read from the log at open, in log order, as (key, sequence | delete flag).
#[derive(Debug, Default)]
pub(crate) struct Log {
    entries: Vec<(u64, u64)>,
}

impl Log {
    /// Room for `n` records.
    pub(crate) fn with_capacity(n: usize) -> Log {
        Log {
            entries: Vec::with_capacity(n),
        }
    }

    /// Notes a put of `key` by record `seq`.
    pub(crate) fn put(&mut self, key: Key, seq: u64) {
        self.entries.push((key.as_u64(), seq));
    }

    /// Notes a delete of `key` by record `seq`.
    pub(crate) fn delete(&mut self, key: Key, seq: u64) {
        self.entries.push((key.as_u64(), seq | TOMBSTONE));
    }

    /// Builds the index: the last record of each key wins; deleted keys are left out.
    pub(crate) fn build(mut self) -> Index {
        radsort::sort_by_key(&mut self.entries, |e| e.0);
        let mut live: Vec<(u64, u64)> = Vec::with_capacity(self.entries.len());
        for (key, seq) in self.entries {
            match live.last_mut() {
                Some(last) if last.0 == key => last.1 = seq,
                _ => live.push((key, seq)),
            }
        }
        live.retain(|e| e.1 & TOMBSTONE == 0);
        Index {
            map: live.into_iter().collect(),
        }
    }
}

impl Index {
    /// The live record of `key`.
    pub(crate) fn get(&self, key: Key) -> Option<u64> {
        self.map.get(&key.as_u64()).copied()
    }

    /// Points `key` at record `seq`; returns the record it replaced.
    pub(crate) fn insert(&mut self, key: Key, seq: u64) -> Option<u64> {
        self.map.insert(key.as_u64(), seq)
    }

    /// Forgets `key`; returns its record, if it was there.
    pub(crate) fn remove(&mut self, key: Key) -> Option<u64> {
        self.map.remove(&key.as_u64())
    }

    /// The live records' sequence numbers, in key order.
    pub(crate) fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.values().copied()
    }

    /// Number of live keys.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Up to `n` entries with keys in `(from, to]`-style bounds, in key order.
    pub(crate) fn range(&self, from: Bound<Key>, to: Bound<Key>, n: usize) -> Vec<(Key, u64)> {
        let conv = |b: Bound<Key>| match b {
            Bound::Included(k) => Bound::Included(k.as_u64()),
            Bound::Excluded(k) => Bound::Excluded(k.as_u64()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let (lo, hi) = (conv(from), conv(to));
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
            (lo, hi)
        {
            // BTreeMap::range panics on inverted or empty-excluded ranges: answer them here.
            let empty =
                a > b || (a == b && !matches!((lo, hi), (Bound::Included(_), Bound::Included(_))));
            if empty {
                return Vec::new();
            }
        }
        self.map
            .range((lo, hi))
            .take(n)
            .map(|(&k, &s)| (Key::from(k), s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        let idx = log.build();
        assert_eq!(idx.get(Key::from(5)), Some(2));
        assert_eq!(idx.get(Key::from(1)), None);
        assert_eq!(idx.get(Key::from(9)), Some(6));
        assert_eq!(idx.len(), 2);
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

    proptest! {
        #[test]
        fn build_matches_replay(ops in proptest::collection::vec((0u64..20, any::<bool>()), 0..200)) {
            let mut log = Log::default();
            let mut model = BTreeMap::new();
            for (seq, (k, del)) in ops.into_iter().enumerate() {
                let seq = seq as u64;
                if del {
                    log.delete(Key::from(k), seq);
                    model.remove(&k);
                } else {
                    log.put(Key::from(k), seq);
                    model.insert(k, seq);
                }
            }
            let idx = log.build();
            prop_assert_eq!(idx.map, model);
        }
    }
}
