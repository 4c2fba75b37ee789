//! Key commands: GET, SET, DEL, EXISTS, MGET, MSET, DBSIZE, SCAN and RANGE.
//!
//! `RANGE min max [LIMIT n]` is toykv's ordered inclusive range scan: `min` and `max` are keys
//! (or `-` and `+` for the ends of the key space); the reply is a flat array
//! `key1 value1 key2 value2 …` in key order.

use std::ops::Bound;

use tracing::error;

use super::{Ctx, Flow, int, syntax, word};
use crate::Lookup;
use crate::key::{Key, VALUE_MAX, Value};
use crate::resp::Frame;
use crate::server::blocking;
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

fn storage(e: crate::Error) -> Frame {
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

/// Gets a value; a read that must wait on the disk runs where blocking is allowed, so other
/// connections are served meanwhile (cache hits and buffer reads do not pay for that).
fn value(ctx: &Ctx<'_>, k: Key) -> Result<Option<Value>, Frame> {
    let store = &ctx.shared.store;
    match store.lookup(k).map_err(storage)? {
        Lookup::Ready(v) => Ok(v),
        Lookup::Pending(p) => blocking(|| store.read(p)).map(Some).map_err(storage),
    }
}

fn reply(r: Result<Frame, Frame>) -> (Frame, Flow) {
    (r.unwrap_or_else(|e| e), Flow::Next)
}

pub(super) fn get(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let k = key(ctx, &ctx.args[0])?;
        let got = value(ctx, k)?;
        let stats = &ctx.shared.stats;
        Ok(match got {
            Some(v) => {
                add(&stats.hits, 1);
                Frame::Bulk(v.to_vec())
            }
            None => {
                add(&stats.misses, 1);
                Frame::Null
            }
        })
    })())
}

pub(super) fn set(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        if let Some(opt) = ctx.args.get(2) {
            return Err(Frame::err(format!(
                "ERR SET option '{}' is not supported by toykv (only SET key value)",
                String::from_utf8_lossy(opt)
            )));
        }
        let k = key(ctx, &ctx.args[0])?;
        let v = &ctx.args[1];
        check_value(v)?;
        ctx.shared.store.put(k, v).map_err(storage)?;
        Ok(Frame::ok())
    })())
}

pub(super) fn del(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let keys = ctx
            .args
            .iter()
            .map(|a| key(ctx, a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut n = 0;
        for k in keys {
            n += i64::from(ctx.shared.store.delete(k).map_err(storage)?);
        }
        Ok(Frame::Integer(n))
    })())
}

pub(super) fn exists(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let mut n = 0;
        for a in ctx.args {
            let k = key(ctx, a)?;
            n += i64::from(ctx.shared.store.contains(k));
        }
        Ok(Frame::Integer(n))
    })())
}

pub(super) fn mget(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    reply((|| {
        let store = &ctx.shared.store;
        let mut out = Vec::with_capacity(ctx.args.len());
        // Values that need the disk: their place in `out` and their key, read in one batch.
        let mut pending = Vec::new();
        for a in ctx.args {
            // Like Redis, a key that cannot exist reads as nil rather than failing the batch.
            let Ok(k) = key(ctx, a) else {
                out.push(Frame::Null);
                continue;
            };
            match store.lookup(k).map_err(storage)? {
                Lookup::Ready(v) => out.push(bulk_or_nil(v)),
                Lookup::Pending(_) => {
                    pending.push((out.len(), k));
                    out.push(Frame::Null);
                }
            }
        }
        if !pending.is_empty() {
            let keys: Vec<Key> = pending.iter().map(|&(_, k)| k).collect();
            let got = blocking(|| store.get_many(&keys));
            for (&(at, _), r) in pending.iter().zip(got) {
                let v = r.map_err(storage)?;
                if let Some(slot) = out.get_mut(at) {
                    *slot = bulk_or_nil(v);
                }
            }
        }
        Ok(Frame::Array(out))
    })())
}

/// A value as a bulk string, or nil.
fn bulk_or_nil(v: Option<Value>) -> Frame {
    v.map_or(Frame::Null, |v| Frame::Bulk(v.to_vec()))
}

/// MSET checks every key and value first, then writes the pairs in order. It is not atomic
/// across a crash: a crash midway can keep a prefix of the pairs (each pair is intact).
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
            pairs.push((key(ctx, &p[0])?, &p[1]));
        }
        for (k, v) in pairs {
            ctx.shared.store.put(k, v).map_err(storage)?;
        }
        Ok(Frame::ok())
    })())
}

pub(super) fn dbsize(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    (Frame::Integer(ctx.shared.store.len() as i64), Flow::Next)
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
            .store
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
        for item in ctx
            .shared
            .store
            .scan::<Key, _>((lo, hi))
            .take(limit.min(MAX_BATCH))
        {
            let (k, v) = item.map_err(storage)?;
            out.push(Frame::Bulk(mode.show(k)));
            out.push(Frame::Bulk(v.to_vec()));
        }
        Ok(Frame::Array(out))
    })())
}
