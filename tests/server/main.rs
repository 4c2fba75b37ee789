//! Integration tests of the server: each starts a server in-process on port 0 over a store in
//! its own temporary directory and speaks raw RESP to it over TCP.
//!
//! Modules: [`commands`] (every command's replies), [`wire`] (pipelining, fragments, inline
//! commands, garbage), [`limits`] (connection cap, request size, idle timeout, slow clients,
//! protected mode, AUTH), [`lifecycle`] (SHUTDOWN, graceful stop, kill -9 of a server child
//! process), [`interop`] (the Rust `redis` crate, RESP2 and RESP3), [`engine`] (the durability,
//! shards and GC flags, and the INFO fields of the engine's counters), [`transactions`]
//! (MULTI, EXEC, DISCARD, and the atomic visibility of MSET and EXEC), [`slow_sync`] (writes
//! waiting on a held journal sync delay no other connection), [`pubsub`] (pub/sub in RESP2 and
//! RESP3, CLIENT LIST/INFO/KILL, Sentinel's failover block, a subscriber that does not read),
//! [`replication`], [`restart`] (the replication position across graceful restarts, kill -9
//! and damaged position files).

#[path = "../common/mod.rs"]
mod common;

mod commands;
mod engine;
mod interop;
mod lifecycle;
mod limits;
mod pubsub;
mod replication;
mod restart;
mod slow_sync;
mod transactions;
mod wire;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use toykv::resp::{Frame, parse_reply};
use toykv::server::{Config, Server};
use toykv::{Options, Store};

/// A running server and what it needs.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: TempDir,
    served: common::Served<toykv::Result<()>>,
    waited: bool,
}

pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("server")
        .tempdir_in(crate::common::base())
        .unwrap()
}

/// Store options for tests: small sections so flushes happen.
pub fn options() -> Options {
    Options::new().section_slots(64)
}

/// Opens the store a stopped server left in `dir`, retrying while it is locked for up to two
/// seconds: a child process another test is spawning at that moment holds a copy of the
/// lock's descriptor until its `exec`. A store that stays locked is a real failure.
pub fn reopen(dir: &std::path::Path) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Store::open_with(dir, options()) {
            Err(toykv::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => return r.unwrap(),
        }
    }
}

impl TestServer {
    /// Starts a server with `config` (its `dir` is replaced by a fresh temp dir).
    pub fn start(config: Config) -> TestServer {
        Self::start_in(tempdir(), config)
    }

    /// Starts a server over the store in `dir`.
    pub fn start_in(dir: TempDir, config: Config) -> TestServer {
        Self::start_with(dir, options(), config)
    }

    /// Starts a server over the store in `dir`, opened with `options`.
    pub fn start_with(dir: TempDir, options: Options, config: Config) -> TestServer {
        Self::start_at(dir, options, 0, config)
    }

    /// Starts a server over the store in `dir`, opened with `options` (waiting up to 10 s
    /// while a stopped server's threads still hold it), on loopback port `port` (0: any).
    pub fn start_at(dir: TempDir, options: Options, port: u16, mut config: Config) -> TestServer {
        config.dir = dir.path().to_path_buf();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let store = loop {
            match Store::open_with(dir.path(), options.clone()) {
                Err(toykv::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break Arc::new(r.unwrap()),
            }
        };
        let served = common::Served::start_at(port, move |listener, shutdown| {
            Server::new(store, config).run(listener, shutdown)
        });
        TestServer {
            addr: served.addr,
            dir,
            served,
            waited: false,
        }
    }

    /// A client connection with a read timeout.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Waits for the server's `run` to return (after SHUTDOWN or [`stop`](Self::stop)).
    pub fn wait(&mut self) -> toykv::Result<()> {
        assert!(!self.waited, "waited twice");
        self.waited = true;
        self.served
            .wait(Duration::from_secs(20))
            .expect("server did not stop")
    }

    /// Triggers the graceful shutdown and waits for it.
    pub fn stop(&mut self) -> toykv::Result<()> {
        self.served.shutdown();
        self.wait()
    }

    /// Stops the server gracefully and hands back its directory, to start another server on.
    pub fn stop_keeping_dir(mut self) -> TempDir {
        self.stop().unwrap();
        std::mem::replace(&mut self.dir, tempdir())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.served.shutdown();
        if !self.waited {
            let _ = self.served.wait(Duration::from_secs(10));
        }
    }
}

/// A raw RESP client.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply; `None` when the server closed the connection.
    pub fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, n)) = parse_reply(&self.buf).unwrap() {
                self.buf.drain(..n);
                return Some(frame);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                // A signal (or io_uring's task work, when a ring this thread used is torn
                // down) interrupts a read that has a timeout: read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads one reply if it arrives within `wait` (at least a millisecond); `None` if none
    /// did. Panics if the server closed the connection. The usual read timeout is restored.
    pub fn read_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = std::time::Instant::now() + wait;
        let reply = loop {
            if let Some((frame, n)) = parse_reply(&self.buf).unwrap() {
                self.buf.drain(..n);
                break Some(frame);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break None;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None;
                }
                Err(e) => panic!("read: {e}"),
            }
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        reply
    }

    /// Sends a command and reads its reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Frame {
        self.send(&command(args));
        self.read().expect("connection closed")
    }

    /// Whether the server closed the connection (reads until EOF, skipping replies).
    pub fn closed(&mut self) -> bool {
        while self.read().is_some() {}
        true
    }
}

/// A command as a RESP array of bulk strings.
pub fn command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    toykv::resp::encode_command(args, &mut out);
    out
}

/// A bulk reply.
pub fn bulk(s: impl AsRef<[u8]>) -> Frame {
    Frame::Bulk(s.as_ref().to_vec())
}

/// An error reply's text.
pub fn error(f: &Frame) -> &str {
    match f {
        Frame::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The child-process entry for the kill -9 test (see [`lifecycle`]); does nothing in a normal
/// run.
#[test]
fn child_server() {
    lifecycle::child_main();
}
