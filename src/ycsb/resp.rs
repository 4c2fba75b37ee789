//! The RESP client backend: one blocking TCP connection per benchmark thread, speaking RESP2
//! to a toykv server or to redis-server.
//!
//! Keys go on the wire as their 8 big-endian bytes (toykv's default `bytes` key mode maps them
//! back to the same `u64`), values as 256 raw bytes. Reads are `GET`, writes `SET`. Scans
//! differ:
//!
//! - toykv: `RANGE key + LIMIT n`, its ordered range scan.
//! - redis-server has no ordered scan, so, like YCSB's Redis binding, inserts also add the key
//!   to a sorted set (`ZADD ycsb:index 0 key`, pipelined with the `SET`); a scan is
//!   `ZRANGEBYLEX ycsb:index [key + LIMIT 0 n` then `MGET` of those keys. With every score 0
//!   the set orders members by their bytes, which is key order.
//!
//! Requests are encoded with [`encode_command`] and replies parsed with [`parse_reply`], the
//! server's own codec.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::resp::{Frame, encode_command, parse_reply};

use super::{Db, DbResult};

/// The sorted set that indexes keys on redis-server.
pub const REDIS_INDEX: &[u8] = b"ycsb:index";

/// How long a reply may take before the operation fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Which server is on the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// A toykv server: scans with `RANGE`.
    Toykv,
    /// redis-server: scans through the [`REDIS_INDEX`] sorted set.
    Redis,
}

/// A connection to a RESP server.
#[derive(Debug)]
pub struct RespDb {
    stream: TcpStream,
    flavor: Flavor,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Start of the unparsed bytes in `buf`.
    at: usize,
}

impl RespDb {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str, flavor: Flavor) -> DbResult<RespDb> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        Ok(RespDb {
            stream,
            flavor,
            out: Vec::with_capacity(512),
            buf: Vec::with_capacity(64 << 10),
            at: 0,
        })
    }

    /// Queues a command (sent by the next [`Self::replies`]).
    fn queue(&mut self, args: &[&[u8]]) {
        encode_command(args, &mut self.out);
    }

    /// Sends the queued commands and reads `n` replies; a server error fails the call.
    fn replies(&mut self, n: usize) -> DbResult<Vec<Frame>> {
        self.stream.write_all(&self.out)?;
        self.out.clear();
        let mut frames = Vec::with_capacity(n);
        while frames.len() < n {
            match parse_reply(&self.buf[self.at..])? {
                Some((Frame::Error(e), _)) => return Err(format!("server: {e}").into()),
                Some((frame, used)) => {
                    self.at += used;
                    frames.push(frame);
                }
                None => {
                    if self.at > 0 {
                        self.buf.drain(..self.at);
                        self.at = 0;
                    }
                    let len = self.buf.len();
                    self.buf.resize(len + (64 << 10), 0);
                    let got = match self.stream.read(&mut self.buf[len..]) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                            self.buf.truncate(len);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    self.buf.truncate(len + got);
                    if got == 0 {
                        return Err("the server closed the connection".into());
                    }
                }
            }
        }
        Ok(frames)
    }

    /// Sends one command and returns its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> DbResult<Frame> {
        self.queue(args);
        self.replies(1)?.pop().ok_or_else(|| "no reply".into())
    }

    fn set(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        self.call(&[b"SET", &key.to_be_bytes(), value]).map(drop)
    }
}

impl Db for RespDb {
    fn read(&mut self, key: u64) -> DbResult<bool> {
        Ok(!matches!(
            self.call(&[b"GET", &key.to_be_bytes()])?,
            Frame::Null
        ))
    }

    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        self.set(key, value)
    }

    fn insert(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        match self.flavor {
            Flavor::Toykv => self.set(key, value),
            Flavor::Redis => {
                let k = key.to_be_bytes();
                self.queue(&[b"SET", &k, value]);
                self.queue(&[b"ZADD", REDIS_INDEX, b"0", &k]);
                self.replies(2).map(drop)
            }
        }
    }

    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize> {
        let n = count.to_string();
        let k = start.to_be_bytes();
        match self.flavor {
            Flavor::Toykv => match self.call(&[b"RANGE", &k, b"+", b"LIMIT", n.as_bytes()])? {
                Frame::Array(items) => Ok(items.len() / 2),
                other => Err(format!("RANGE replied {other:?}").into()),
            },
            Flavor::Redis => {
                let from = [&b"["[..], &k].concat();
                let keys = match self.call(&[
                    b"ZRANGEBYLEX",
                    REDIS_INDEX,
                    &from,
                    b"+",
                    b"LIMIT",
                    b"0",
                    n.as_bytes(),
                ])? {
                    Frame::Array(keys) => keys,
                    other => return Err(format!("ZRANGEBYLEX replied {other:?}").into()),
                };
                if keys.is_empty() {
                    return Ok(0);
                }
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                for k in &keys {
                    if let Frame::Bulk(b) = k {
                        args.push(b);
                    }
                }
                match self.call(&args)? {
                    Frame::Array(vals) => Ok(vals.iter().filter(|v| **v != Frame::Null).count()),
                    other => Err(format!("MGET replied {other:?}").into()),
                }
            }
        }
    }
}
