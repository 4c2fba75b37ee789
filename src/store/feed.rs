//! The change feed: what a store tells an observer of each write it applies, for a
//! replication stream (the server's) or any other follower of the store's changes.
//!
//! The store calls [`Feed::change`] while it holds the lock of every shard the write
//! changes, after applying it: so the calls for writes to one key come in the order those
//! writes were applied, an atomic [`Batch`] comes in one call, and a
//! [`snapshot`](crate::Store::snapshot) (which holds every shard) falls between two calls,
//! never inside one. Writes that change nothing are not fed: a delete of an absent key, and
//! what garbage collection or recovery moves. The call must be quick and must not touch the
//! store: it runs under the shards' locks.

use super::Batch;
use crate::key::Key;

/// One applied write.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// `key` now holds the value.
    Put(Key, &'a [u8]),
    /// `key` was deleted.
    Delete(Key),
    /// A batch was applied whole ([`Batch::entries`] lists what it did).
    Batch(&'a Batch),
}

/// What observes a store's writes; installed with [`Store::set_feed`](crate::Store::set_feed).
pub trait Feed: Send + Sync + std::fmt::Debug {
    /// Called with each applied write, under the locks of the shards it changed.
    fn change(&self, change: Change<'_>);
}
