//! Key commands: GET, SET, DEL, EXISTS, MGET, MSET, DBSIZE, SCAN and RANGE.
//!
//! `RANGE min max [LIMIT n]` is toykv's ordered inclusive range scan: `min` and `max` are keys
//! (or `-` and `+` for the ends of the key space); the reply is a flat array
//! `key1 value1 key2 value2 …` in key order.

use std::ops::Bound;

use tracing::error;

use super::{Ctx, Effects, Flow, Reply, int, syntax, word};
use crate::Lookup;
use crate::key::{Key, VALUE_MAX};
use crate::resp::Frame;
use crate::server::Shared;
use crate::server::glob;
use crate::server::stats::add;

/// Most keys one `RANGE` returns when no `LIMIT` is given, and the cap on `LIMIT` and on
/// `SCAN … COUNT`, so one command cannot build an unbounded reply.
pub(crate) const MAX_BATCH: usize = 10_000;

fn key(ctx: &Ctx<'_>, raw: &[u8]) -> Result<Key, Frame> {
    ctx.shared
        .config
        .key_mode
        .key(raw)
        .map_err(|e| Frame::err(format!("ERR {e}")))
}

pub(crate) fn storage(e: crate::Error) -> Frame {
    error!("storage error: {e}");
    Frame::err(format!("ERR storage: {e}"))
}

fn check_value(v: &[u8]) -> Result<(), Frame> {
    if v.len() > VALUE_MAX {
        return Err(Frame::err(format!(
            "ERR value is {} bytes; toykv values are at most {VALUE_MAX} bytes",
            v.len()
        )));
    }
    Ok(())
}

fn reply(r: Result<Frame, Frame>) -> (Frame, Flow) {
    (r.unwrap_or_else(|e| e), Flow::Next)
}

pub(super) fn get(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let k = key(ctx, &ctx.args[0])?;
        let got = ctx.data.get(k).map_err(storage)?;
        Ok(hit_or_miss(ctx.shared, got))
    })())
}

/// GET on an async worker: the answer when no disk read is needed, the read to do when one
/// is; `None` when the shard's lock is held long.
pub(super) fn get_fast(shared: &Shared, args: &[Vec<u8>]) -> Option<Reply> {
    let k = match shared.config.key_mode.key(&args[0]) {
        Ok(k) => k,
        Err(e) => return Some(Reply::Frame(Frame::err(format!("ERR {e}")))),
    };
    Some(match shared.store().try_lookup(k)? {
        Ok(Lookup::Ready(Some(v))) => {
            add(&shared.stats.hits, 1);
            Reply::Value(v)
        }
        Ok(Lookup::Ready(None)) => Reply::Frame(hit_or_miss(shared, None)),
        Ok(Lookup::Pending(p)) => Reply::Read(Box::new(p)),
        Err(e) => Reply::Frame(storage(e)),
    })
}

/// A GET's value as a bulk string, or nil, counting the hit or miss (for the connection,
/// which reads the values [`get_fast`] handed over).
pub(crate) fn hit_or_miss(shared: &Shared, v: Option<Vec<u8>>) -> Frame {
    let stats = &shared.stats;
    match v {
        Some(v) => {
            add(&stats.hits, 1);
            Frame::Bulk(v)
        }
        None => {
            add(&stats.misses, 1);
            Frame::Null
        }
    }
}

/// Refuses SET's options, which toykv does not have.
fn set_args(args: &[Vec<u8>]) -> Result<(), Frame> {
    match args.get(2) {
        Some(opt) => Err(Frame::err(format!(
            "ERR SET option '{}' is not supported by toykv (only SET key value)",
            String::from_utf8_lossy(opt)
        ))),
        None => check_value(&args[1]),
    }
}

pub(super) fn set(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        set_args(ctx.args)?;
        let k = key(ctx, &ctx.args[0])?;
        ctx.data.put(&[(k, &ctx.args[1])]).map_err(storage)?;
        Ok(Frame::ok())
    })())
}

/// SET on an async worker; `None` (nothing done) when the put would wait.
pub(super) fn set_fast(shared: &Shared, args: &[Vec<u8>], effects: &mut Effects) -> Option<Frame> {
    if let Err(e) = set_args(args) {
        return Some(e);
    }
    let k = match shared.config.key_mode.key(&args[0]) {
        Ok(k) => k,
        Err(e) => return Some(Frame::err(format!("ERR {e}"))),
    };
    Some(match shared.store().try_put(k, &args[1]) {
        Ok(Some(q)) => {
            effects.commit = effects.commit.max(q.commit);
            effects.pressed |= q.pressed;
            Frame::ok()
        }
        Ok(None) => return None,
        Err(e) => storage(e),
    })
}

/// DEL of one key on an async worker; `None` (nothing done) for several keys (one atomic
/// batch, where blocking is allowed) or when the delete would wait.
pub(super) fn del_fast(shared: &Shared, args: &[Vec<u8>], effects: &mut Effects) -> Option<Frame> {
    let [raw] = args else {
        return None;
    };
    let k = match shared.config.key_mode.key(raw) {
        Ok(k) => k,
        Err(e) => return Some(Frame::err(format!("ERR {e}"))),
    };
    Some(match shared.store().try_delete(k) {
        Ok(Some(q)) => {
            effects.commit = effects.commit.max(q.commit);
            Frame::Integer(i64::from(q.existed))
        }
        Ok(None) => return None,
        Err(e) => storage(e),
    })
}

/// DEL deletes its keys atomically (one batch when there are several).
pub(super) fn del(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let keys = ctx
            .args
            .iter()
            .map(|a| key(ctx, a))
            .collect::<Result<Vec<_>, _>>()?;
        let n = ctx.data.delete(&keys).map_err(storage)?;
        Ok(Frame::Integer(n as i64))
    })())
}

pub(super) fn exists(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let mut n = 0;
        for a in ctx.args {
            let k = key(ctx, a)?;
            n += i64::from(ctx.data.exists(k));
        }
        Ok(Frame::Integer(n))
    })())
}

/// MGET reads every value in one batch (the disk reads submitted together); like Redis, a key
/// that cannot exist reads as nil rather than failing the command.
pub(super) fn mget(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let mut keys = Vec::with_capacity(ctx.args.len());
        let mut places = Vec::with_capacity(ctx.args.len());
        for a in ctx.args {
            let k = key(ctx, a).ok();
            places.push(k.map(|_| keys.len()));
            keys.extend(k);
        }
        let mut got = ctx.data.get_many(&keys).into_iter();
        let mut out = Vec::with_capacity(places.len());
        for place in places {
            out.push(match place.and_then(|_| got.next()) {
                Some(v) => v.map_err(storage)?.map_or(Frame::Null, Frame::Bulk),
                None => Frame::Null,
            });
        }
        Ok(Frame::Array(out))
    })())
}

/// MSET checks every key and value first, then writes the pairs as one atomic batch: they
/// become visible together, survive a crash together and, with durability `always`, share
/// one journal commit.
pub(super) fn mset(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        if !ctx.args.len().is_multiple_of(2) {
            return Err(Frame::err(
                "ERR wrong number of arguments for 'mset' command",
            ));
        }
        let mut pairs = Vec::with_capacity(ctx.args.len() / 2);
        for p in ctx.args.chunks_exact(2) {
            check_value(&p[1])?;
            pairs.push((key(ctx, &p[0])?, p[1].as_slice()));
        }
        ctx.data.put(&pairs).map_err(storage)?;
        Ok(Frame::ok())
    })())
}

pub(super) fn dbsize(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    (Frame::Integer(ctx.shared.store().len() as i64), Flow::Next)
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`. The cursor is `0` to start, else one more
/// than the number of the last key returned (keys as big-endian `u64`s), so a scan resumes in
/// key order and sees every key that exists throughout it. `0` back means done.
pub(super) fn scan(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let cursor: u64 = std::str::from_utf8(&ctx.args[0])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Frame::err("ERR invalid cursor"))?;
        let (mut pattern, mut count, mut only_strings) = (None, 10usize, true);
        let mut rest = ctx.args[1..].iter();
        while let Some(opt) = rest.next() {
            let val = rest.next().ok_or_else(syntax)?;
            match word(opt).as_str() {
                "match" => pattern = Some(val.clone()),
                "count" => {
                    count = int(val)
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| Frame::err("ERR value is out of range, must be positive"))?
                        as usize;
                }
                "type" => only_strings = word(val) == "string",
                _ => return Err(syntax()),
            }
        }
        let from = if cursor == 0 {
            Bound::Unbounded
        } else {
            Bound::Included(Key::from(cursor))
        };
        let batch = count.min(MAX_BATCH);
        let mode = ctx.shared.config.key_mode;
        let mut found = ctx
            .shared
            .store()
            .keys::<Key, _>((from, Bound::Unbounded), batch + 1);
        // One key past the batch tells whether there is more.
        let more = found.len() > batch;
        found.truncate(batch);
        let next = match found.last() {
            Some(k) if more => k.as_u64().saturating_add(1),
            _ => 0,
        };
        let keys = found
            .into_iter()
            .map(|k| mode.show(k))
            .filter(|shown| {
                only_strings && pattern.as_deref().is_none_or(|p| glob::matches(p, shown))
            })
            .map(Frame::Bulk)
            .collect();
        Ok(Frame::Array(vec![
            Frame::Bulk(next.to_string().into_bytes()),
            Frame::Array(keys),
        ]))
    })())
}

/// `RANGE min max [LIMIT n]`.
pub(super) fn range(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let bound = |raw: &[u8], end: &[u8]| -> Result<Bound<Key>, Frame> {
            if raw == end {
                Ok(Bound::Unbounded)
            } else {
                key(ctx, raw).map(Bound::Included)
            }
        };
        let lo = bound(&ctx.args[0], b"-")?;
        let hi = bound(&ctx.args[1], b"+")?;
        let limit = match ctx.args.get(2..) {
            Some([opt, n]) if word(opt) == "limit" => int(n)
                .filter(|&n| n >= 0)
                .ok_or_else(|| Frame::err("ERR LIMIT must be a non-negative integer"))?
                as usize,
            Some([]) | None => MAX_BATCH,
            Some(_) => return Err(syntax()),
        };
        let mode = ctx.shared.config.key_mode;
        let mut out = Vec::new();
        let store = ctx.shared.store();
        for item in store.scan::<Key, _>((lo, hi)).take(limit.min(MAX_BATCH)) {
            let (k, v) = item.map_err(storage)?;
            out.push(Frame::Bulk(mode.show(k)));
            out.push(Frame::Bulk(v.to_vec()));
        }
        Ok(Frame::Array(out))
    })())
}
