//! Transactions: MULTI, EXEC and DISCARD.
//!
//! After `MULTI` the connection queues commands (`+QUEUED`) instead of running them; a
//! command refused while queueing (unknown, wrong arity, or not one of [`QUEUEABLE`]) makes
//! `EXEC` discard the whole transaction with `-EXECABORT`, as Redis does. `EXEC` runs with
//! every other connection held off (the connection takes the server's gate exclusively), so
//! no other command interleaves with it; its commands read through the transaction's own
//! writes, and those writes are applied at the end as one atomic batch — visible, durable
//! and crash-safe together, with one journal commit under durability `always`.
//!
//! Commands that touch no keys (CLIENT, CONFIG, PUBLISH, SCRIPT, SLAVEOF/REPLICAOF) queue too and simply run at `EXEC`; an error from one is an
//! element of `EXEC`'s array, never `EXECABORT` (Sentinel's failover block depends on it).

use std::collections::HashMap;

use super::{Ctx, Data, Flow, Queued, run};
use crate::key::Key;
use crate::resp::Frame;
use crate::{Batch, Result, Store};

/// Commands a transaction may queue. Those that touch no keys (CLIENT, CONFIG, PUBLISH,
/// SCRIPT, SLAVEOF…) simply run at `EXEC`, in order, and an error from one is an element of
/// `EXEC`'s array like any reply (Sentinel's failover queues `SLAVEOF`, `CONFIG REWRITE` and
/// `CLIENT KILL` and tolerates their errors, but not `EXECABORT`). A name here with no
/// command in the table is refused as unknown when queued, like any unknown command; so
/// `slaveof` and `replicaof` are listed ahead of their commands.
pub(crate) const QUEUEABLE: &[&str] = &[
    // Keys, and no-ops.
    "set",
    "get",
    "del",
    "mset",
    "mget",
    "exists",
    "ping",
    "echo",
    // Administration.
    "client",
    "config",
    "publish",
    "script",
    // Replication.
    "slaveof",
    "replicaof",
];

pub(super) fn multi(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    if ctx.session.multi.is_some() {
        return (Frame::err("ERR MULTI calls can not be nested"), Flow::Next);
    }
    ctx.session.multi = Some(Queued::default());
    (Frame::ok(), Flow::Next)
}

pub(super) fn discard(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    match ctx.session.multi.take() {
        Some(_) => (Frame::ok(), Flow::Next),
        None => (Frame::err("ERR DISCARD without MULTI"), Flow::Next),
    }
}

pub(super) fn exec(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let Some(queued) = ctx.session.multi.take() else {
        return (Frame::err("ERR EXEC without MULTI"), Flow::Next);
    };
    if queued.refused {
        let e = "EXECABORT Transaction discarded because of previous errors.";
        return (Frame::err(e), Flow::Next);
    }
    let store = ctx.shared.store();
    let mut view = View {
        store: &store,
        written: HashMap::new(),
        batch: Batch::new(),
    };
    let mut replies = Vec::with_capacity(queued.commands.len());
    // `CLIENT LIST` shows `exec` for this connection, not the last command queued.
    let cmd = std::mem::take(&mut ctx.session.last_cmd);
    for argv in &queued.commands {
        let (reply, _) = run(ctx.shared, ctx.session, argv, &mut view);
        replies.push(reply.into_frame());
    }
    ctx.session.last_cmd = cmd;
    // The writes, all at once: if they cannot be applied, none was.
    let batch = view.batch;
    match ctx.data.apply(&batch) {
        Ok(()) => (Frame::Array(replies), Flow::Next),
        Err(e) => (super::keys::storage(e), Flow::Next),
    }
}

/// The store as a transaction sees it: its own writes first, kept for one batch at the end.
struct View<'a> {
    store: &'a Store,
    /// Keys the transaction wrote: the value, or `None` for a delete.
    written: HashMap<Key, Option<Vec<u8>>>,
    batch: Batch,
}

impl Data for View<'_> {
    fn get(&mut self, key: Key) -> Result<Option<Vec<u8>>> {
        match self.written.get(&key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.store.get(key)?.map(|v| v.to_vec())),
        }
    }

    fn get_many(&mut self, keys: &[Key]) -> Vec<Result<Option<Vec<u8>>>> {
        keys.iter().map(|&k| self.get(k)).collect()
    }

    fn exists(&mut self, key: Key) -> bool {
        match self.written.get(&key) {
            Some(v) => v.is_some(),
            None => self.store.contains(key),
        }
    }

    fn put(&mut self, pairs: &[(Key, &[u8])]) -> Result<()> {
        for &(k, v) in pairs {
            self.batch.put(k, v)?;
            self.written.insert(k, Some(v.to_vec()));
        }
        Ok(())
    }

    fn delete(&mut self, keys: &[Key]) -> Result<usize> {
        let mut n = 0;
        for &k in keys {
            n += usize::from(self.exists(k));
            self.batch.delete(k)?;
            self.written.insert(k, None);
        }
        Ok(n)
    }

    fn apply(&mut self, batch: &Batch) -> Result<()> {
        // (EXEC cannot be queued, so this is not reached; a batch would join this one.)
        let _ = batch;
        Err(crate::Error::Refused {
            why: "EXEC inside a transaction".into(),
        })
    }
}
