//! Ordered range scans.

use std::collections::VecDeque;
use std::ops::Bound;

use crate::error::Result;
use crate::key::{Key, Value};

use super::Store;

/// Keys fetched per lock acquisition, at most.
const BATCH: usize = 64;
/// The first batch: batches then double up to [`BATCH`], so that a scan the caller stops
/// after a few items reads few values.
const FIRST_BATCH: usize = 8;

/// An ordered scan over a key range; see [`Store::scan`]. Yields `(key, value)` pairs; after
/// an error it ends.
#[derive(Debug)]
pub struct Scan<'a> {
    store: &'a Store,
    from: Bound<Key>,
    to: Bound<Key>,
    ready: VecDeque<(Key, Value)>,
    done: bool,
    batch: usize,
}

impl<'a> Scan<'a> {
    pub(super) fn new(store: &'a Store, from: Bound<Key>, to: Bound<Key>) -> Self {
        Scan {
            store,
            from,
            to,
            ready: VecDeque::new(),
            done: false,
            batch: FIRST_BATCH,
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Key, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        // Loops only when every key of a batch was deleted between finding it and reading it.
        while self.ready.is_empty() && !self.done {
            let want = self.batch;
            self.batch = (want * 2).min(BATCH);
            match self.store.batch(self.from, self.to, want) {
                Ok(batch) => {
                    self.done = !batch.more;
                    if let Some(last) = batch.last {
                        self.from = Bound::Excluded(last);
                    }
                    self.ready.extend(batch.items);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

impl std::iter::FusedIterator for Scan<'_> {}

/// One batch of a scan (see `Store::batch`).
#[derive(Debug)]
pub(super) struct Batch {
    /// The entries found, in key order.
    pub(super) items: Vec<(Key, Value)>,
    /// The last key the batch looked at (its entry may be gone: deleted meanwhile).
    pub(super) last: Option<Key>,
    /// Whether the range may hold more keys: the batch found as many as it asked for.
    pub(super) more: bool,
}
