//! What garbage collection needs to know: how many live values each value section holds, how
//! many live records each key section holds, and which records wrote into which section.
//!
//! A bank fills one section at a time, so every put from the first into a section up to the
//! first into the next one wrote into that section: a short list of *fills* — (first record,
//! section) — maps any record to its value section without reading the record. Garbage
//! collection moves a section's live values by scanning just the records of its latest fill.
//! All of it lives in memory; open rebuilds it from the log and the index.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

/// Where [`Usage::count`] is: the fill it reached, and the run of live values it has not yet
/// added to its section.
#[derive(Debug, Default)]
struct Tally {
    fill: usize,
    run: Option<(u32, u32)>,
}

/// Live counts and fills of one shard.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    slots: u32,
    /// (first record, section), by record: from that record on, puts went to that section.
    fills: Vec<(u64, u32)>,
    /// Live values per value section (sections in a bank included).
    live: BTreeMap<u32, u32>,
    /// Live records per key section, from key section `first`.
    klive: VecDeque<u32>,
    first: u32,
}

impl Usage {
    /// Usage of a log whose first key section is `first`, from the fills the walk found.
    pub(crate) fn new(slots: u32, first: u32, fills: Vec<(u64, u32)>) -> Usage {
        Usage {
            slots,
            fills,
            first,
            ..Usage::default()
        }
    }

    /// Counts the live records, given their sequence numbers in any order. They are put in
    /// order through a bitmap of the log (one bit a record from the first key section's
    /// first: 6 MiB for 50 M records) rather than sorted, then counted a word at a time: the
    /// bits of a word that share a fill and a key section are added with one popcount.
    pub(crate) fn count(&mut self, seqs: impl Iterator<Item = u64>) {
        let base = u64::from(self.first) * u64::from(self.slots);
        let mut bits: Vec<u64> = Vec::new();
        let mut below = Vec::new();
        for seq in seqs {
            let Some(i) = seq.checked_sub(base) else {
                below.push(seq);
                continue;
            };
            let word = (i / 64) as usize;
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            bits[word] |= 1 << (i % 64);
        }
        below.sort_unstable();
        let mut at = Tally::default();
        for seq in below {
            self.tally(&mut at, seq, 1);
        }
        for (w, &word) in bits.iter().enumerate() {
            let start = base + w as u64 * 64;
            let mut word = word;
            while word != 0 {
                let seq = start + u64::from(word.trailing_zeros());
                // Up to the next fill or key section, whichever comes first, in this word.
                let end = self.boundary(&mut at, seq).min(start + 64);
                let mask = match end - start {
                    64.. => u64::MAX,
                    n => (1 << n) - 1,
                };
                self.tally(&mut at, seq, (word & mask).count_ones());
                word &= !mask;
            }
        }
        if let Some((s, n)) = at.run {
            *self.live.entry(s).or_default() += n;
        }
    }

    /// Moves `at` to the fill holding `seq`; returns where that fill or `seq`'s key section
    /// ends, whichever is first.
    fn boundary(&self, at: &mut Tally, seq: u64) -> u64 {
        while at.fill + 1 < self.fills.len() && self.fills[at.fill + 1].0 <= seq {
            at.fill += 1;
        }
        let s = u64::from(self.slots);
        let section_end = (seq / s + 1) * s;
        self.fills
            .get(at.fill + 1)
            .map_or(section_end, |f| f.0.min(section_end))
    }

    /// Adds `n` live records from `seq` on, all in `seq`'s fill and key section.
    fn tally(&mut self, at: &mut Tally, seq: u64, n: u32) {
        self.boundary(at, seq);
        if let Some(&(start, section)) = self.fills.get(at.fill)
            && start <= seq
        {
            at.run = match at.run {
                Some((s, c)) if s == section => Some((s, c + n)),
                Some((s, c)) => {
                    *self.live.entry(s).or_default() += c;
                    Some((section, n))
                }
                None => Some((section, n)),
            };
        }
        self.count_key(seq, i64::from(n));
    }

    fn count_key(&mut self, seq: u64, add: i64) {
        let n = seq / u64::from(self.slots);
        let Some(i) = n.checked_sub(u64::from(self.first)) else {
            return;
        };
        let i = i as usize;
        if self.klive.len() <= i {
            self.klive.resize(i + 1, 0);
        }
        let c = &mut self.klive[i];
        *c = (i64::from(*c) + add).max(0) as u32;
    }

    /// The value section record `seq` wrote into, if it was a put.
    pub(crate) fn section_of(&self, seq: u64) -> Option<u32> {
        let i = self.fills.partition_point(|f| f.0 <= seq);
        i.checked_sub(1).map(|i| self.fills[i].1)
    }

    /// Notes a put by record `seq` into `section`.
    pub(crate) fn put(&mut self, seq: u64, section: u32) {
        if self.fills.last().map(|f| f.1) != Some(section) {
            self.fills.push((seq, section));
        }
        *self.live.entry(section).or_default() += 1;
        self.count_key(seq, 1);
    }

    /// Notes a delete record `seq`: it is dead as soon as written (nothing points at it).
    pub(crate) fn delete(&mut self, seq: u64) {
        self.count_key(seq, 0);
    }

    /// Notes that put record `seq` is no longer live (overwritten or deleted).
    pub(crate) fn kill(&mut self, seq: u64) {
        if let Some(section) = self.section_of(seq)
            && let Some(c) = self.live.get_mut(&section)
        {
            *c = c.saturating_sub(1);
        }
        self.count_key(seq, -1);
    }

    /// Live values in `section`.
    pub(crate) fn live(&self, section: u32) -> u32 {
        self.live.get(&section).copied().unwrap_or(0)
    }

    /// Forgets `section` (its file is gone).
    pub(crate) fn forget(&mut self, section: u32) {
        self.live.remove(&section);
    }

    /// Makes sure `section` is counted (as a section that exists) even with no live value.
    pub(crate) fn track(&mut self, section: u32) {
        self.live.entry(section).or_default();
    }

    /// A section with live values that `exists` denies, with its count.
    pub(crate) fn missing(&self, exists: impl Fn(u32) -> bool) -> Option<(u32, u32)> {
        self.live
            .iter()
            .find(|&(&n, &c)| c > 0 && !exists(n))
            .map(|(&n, &c)| (n, c))
    }

    /// Total live values.
    pub(crate) fn live_values(&self) -> u64 {
        self.live.values().map(|&c| u64::from(c)).sum()
    }

    /// The records of `section`'s latest fill: `start..end`, `end` bounded by `next_seq`.
    pub(crate) fn window(&self, section: u32, next_seq: u64) -> Option<Range<u64>> {
        let i = self.fills.iter().rposition(|f| f.1 == section)?;
        let end = self.fills.get(i + 1).map_or(next_seq, |f| f.0);
        Some(self.fills[i].0..end)
    }

    /// Live records in the first key section.
    pub(crate) fn first_live(&self) -> u32 {
        self.klive.front().copied().unwrap_or(0)
    }

    /// Live records in all key sections.
    pub(crate) fn live_records(&self) -> u64 {
        self.klive.iter().map(|&c| u64::from(c)).sum()
    }

    /// Notes that the first key section is gone; drops fills that only it used.
    pub(crate) fn drop_first(&mut self) {
        self.klive.pop_front();
        self.first += 1;
        let start = u64::from(self.first) * u64::from(self.slots);
        let keep = self.fills.partition_point(|f| f.0 <= start);
        if keep > 1 {
            self.fills.drain(..keep - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_map_records_to_sections() {
        let mut u = Usage::new(16, 0, vec![]);
        for seq in 0..5 {
            u.put(seq, 3);
        }
        u.delete(5);
        for seq in 6..9 {
            u.put(seq, 0);
        }
        assert_eq!(u.section_of(4), Some(3));
        assert_eq!(u.section_of(7), Some(0));
        assert_eq!((u.live(3), u.live(0)), (5, 3));
        u.kill(2);
        u.kill(7);
        assert_eq!((u.live(3), u.live(0)), (4, 2));
        assert_eq!(u.window(3, 9), Some(0..6));
        assert_eq!(u.window(0, 9), Some(6..9));
        assert_eq!(u.live_records(), 6);
        assert_eq!(u.live_values(), 6);
    }

    #[test]
    fn count_matches_incremental_tracking() {
        let fills = vec![(0, 1), (20, 0), (40, 2)];
        let mut u = Usage::new(16, 0, fills);
        u.count([45u64, 3, 21, 22, 4, 39].into_iter());
        assert_eq!((u.live(1), u.live(0), u.live(2)), (2, 3, 1));
        assert_eq!(u.live_records(), 6);
        assert_eq!(u.first_live(), 2);
    }

    proptest::proptest! {
        /// The bitmap count equals counting each record in order, one map entry at a time,
        /// with a first key section past 0 and fills that run into one another.
        #[test]
        fn count_equals_one_by_one(
            first in 0u32..4,
            steps in proptest::collection::vec((1u64..40, 0u32..5), 0..8),
            picks in proptest::collection::btree_set(0u64..400, 0..120),
        ) {
            let base = u64::from(first) * 16;
            let mut fills = Vec::new();
            let mut at = base.saturating_sub(10);
            for (len, section) in steps {
                fills.push((at, section));
                at += len;
            }
            let mut fast = Usage::new(16, first, fills.clone());
            let seqs: Vec<u64> = picks.iter().map(|p| base + p).rev().collect();
            fast.count(seqs.iter().copied());
            let mut slow = Usage::new(16, first, fills.clone());
            for &seq in picks.iter().map(|p| base + p).collect::<Vec<_>>().iter() {
                if let Some(&(_, section)) = fills.iter().rev().find(|f| f.0 <= seq) {
                    *slow.live.entry(section).or_default() += 1;
                }
                slow.count_key(seq, 1);
            }
            proptest::prop_assert_eq!(&fast.live, &slow.live);
            proptest::prop_assert_eq!(&fast.klive, &slow.klive);
        }
    }

    #[test]
    fn dropping_key_sections_prunes_fills() {
        let mut u = Usage::new(16, 0, vec![(0, 1), (10, 2), (20, 3), (40, 4)]);
        u.count([41u64].into_iter());
        u.drop_first();
        u.drop_first();
        // Records from 32 on remain: fill (20, 3) still covers 32..40.
        assert_eq!(u.section_of(35), Some(3));
        assert_eq!(u.section_of(41), Some(4));
        assert_eq!(u.first_live(), 1);
        assert_eq!(u.live_records(), 1);
    }
}
