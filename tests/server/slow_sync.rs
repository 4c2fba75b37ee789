//! A slow sync delays only the writes that wait for it: at durability `always`, while the
//! journal's flush is held, the SETs waiting for it stay unanswered, and other connections'
//! PINGs and GETs of cached values are still answered.
//!
//! The store's files go through a [`Gated`] file system: the operating system's, except that
//! `sync` (`fdatasync`) waits while the test holds its [`Gate`] closed. The test asserts what
//! happened before what (a sync held at the gate, no SET answered, PING answered; then the gate
//! opened and the SETs answered), never how long anything took. Every read has a timeout (a
//! hang fails the test within seconds), and the gate opens when the test ends, however it
//! ends.

use std::any::Any;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use toykv::io::{Align, FileIo, Mode, Os, Reader, Region, Vfs};
use toykv::resp::Frame;
use toykv::server::Config;
use toykv::{Durability, Options};

use crate::{Client, TestServer, bulk, command, tempdir};

/// How long a reply that must come may take: far beyond need; only a hang reaches it.
const MUST: Duration = Duration::from_secs(10);
/// How long to watch for a reply that must not come yet.
const MUST_NOT: Duration = Duration::from_millis(300);

/// Whether syncs may pass, and how many are waiting.
#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    held: usize,
}

/// A gate syncs pass only while it is open.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn open(&self) {
        self.lock().closed = false;
        self.changed.notify_all();
    }

    /// Called by every sync: waits while the gate is closed.
    fn pass(&self) {
        let mut s = self.lock();
        if !s.closed {
            return;
        }
        s.held += 1;
        self.changed.notify_all();
        while s.closed {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.held -= 1;
        self.changed.notify_all();
    }

    /// Waits until at least one sync is held at the gate; false if none is within `wait`.
    fn await_held(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut s = self.lock();
        while s.held == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// Opens the gate when dropped: declared after the server, it drops first, so the server's
/// shutdown never waits on a held sync, even when the test fails.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// The operating system's file system, with every file's `sync` going through the gate.
#[derive(Debug)]
struct Gated(Arc<Gate>);

impl Vfs for Gated {
    fn open(&self, path: &Path, mode: Mode) -> io::Result<Arc<dyn FileIo>> {
        let inner = Os.open(path, mode)?;
        Ok(Arc::new(GatedFile {
            inner,
            gate: self.0.clone(),
        }))
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        Os.create_dir(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Os.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        Os.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        Os.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        Os.sync_dir(dir)
    }
    fn lock(&self, dir: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        Os.lock(dir)
    }
    fn reader(&self, io_uring: bool) -> Arc<dyn Reader> {
        Os.reader(io_uring)
    }
}

#[derive(Debug)]
struct GatedFile {
    inner: Arc<dyn FileIo>,
    gate: Arc<Gate>,
}

impl FileIo for GatedFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.inner.read_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.inner.write_at(buf, off)
    }
    fn sync(&self) -> io::Result<()> {
        self.gate.pass();
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
    fn map(&self) -> io::Result<Region> {
        self.inner.map()
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.fd()
    }
    fn align(&self) -> Align {
        self.inner.align()
    }
    fn direct(&self) -> bool {
        self.inner.direct()
    }
}

/// A server at durability `always` over gated files (the gate open), with `hot` set and read
/// once, so that it is in memory; and the gate, and a connection made before anything waits.
fn gated_server() -> (TestServer, Arc<Gate>, Client) {
    let gate = Arc::new(Gate::default());
    let options = Options::new()
        .durability(Durability::Always)
        .vfs(Arc::new(Gated(gate.clone())))
        .section_slots(64)
        .shards(2)
        .journal_bytes(1 << 20)
        .cache_bytes(16 << 20);
    let s = TestServer::start_with(tempdir(), options, Config::default());
    let mut c = s.connect();
    assert_eq!(c.call(&["SET", "hot", "cached"]), Frame::ok());
    assert_eq!(c.call(&["GET", "hot"]), bulk("cached"));
    (s, gate, c)
}

/// Checks that `c` answers PING and GET hot (within [`MUST`]) while writes wait on the gate.
fn answers(c: &mut Client, who: &str) {
    c.send(&command(&["PING"]));
    assert_eq!(
        c.read_within(MUST),
        Some(Frame::Simple("PONG".into())),
        "{who}: PING was not answered while SETs waited for a sync"
    );
    c.send(&command(&["GET", "hot"]));
    assert_eq!(
        c.read_within(MUST),
        Some(bulk("cached")),
        "{who}: GET of a cached key was not answered while SETs waited for a sync"
    );
}

#[test]
fn a_slow_sync_does_not_delay_ping_or_cached_gets_on_other_connections() {
    let (s, gate, mut idle) = gated_server();
    let _open = OpenOnDrop(gate.clone());

    gate.close();
    let mut writers: Vec<Client> = (0..4).map(|_| s.connect()).collect();
    for (i, w) in writers.iter_mut().enumerate() {
        w.send(&command(&["SET", &format!("w{i}"), &format!("value-{i}")]));
    }
    assert!(
        gate.await_held(MUST),
        "no SET's journal commit reached its sync"
    );
    for (i, w) in writers.iter_mut().enumerate() {
        assert_eq!(
            w.read_within(MUST_NOT),
            None,
            "SET w{i} was answered before its commit's sync returned"
        );
    }
    // A connection that was open before, and one made now.
    answers(&mut idle, "an open connection");
    let mut fresh = s.connect();
    answers(&mut fresh, "a new connection");
    for (i, w) in writers.iter_mut().enumerate() {
        assert_eq!(
            w.read_within(Duration::from_millis(1)),
            None,
            "SET w{i} was answered while the sync was still held"
        );
    }

    gate.open();
    for (i, w) in writers.iter_mut().enumerate() {
        assert_eq!(
            w.read_within(MUST),
            Some(Frame::ok()),
            "SET w{i} after the sync"
        );
    }
    for i in 0..4 {
        assert_eq!(
            fresh.call(&["GET", &format!("w{i}")]),
            bulk(format!("value-{i}"))
        );
    }
}

/// Pipelines of 16 SETs on as many connections as the server's runtime has worker threads
/// (two): were a pipeline waiting for its commit to hold a worker, none would be left.
#[test]
fn pipelines_waiting_on_a_slow_sync_do_not_delay_other_connections() {
    let (s, gate, mut idle) = gated_server();
    let _open = OpenOnDrop(gate.clone());

    gate.close();
    let mut writers: Vec<Client> = (0..2).map(|_| s.connect()).collect();
    for (w, c) in writers.iter_mut().enumerate() {
        let mut pipeline = Vec::new();
        for i in 0..16 {
            pipeline.extend(command(&[
                "SET",
                &format!("p{w}-{i}"),
                &format!("value-{i}"),
            ]));
        }
        c.send(&pipeline);
    }
    assert!(
        gate.await_held(MUST),
        "no pipeline's journal commit reached its sync"
    );
    for (w, c) in writers.iter_mut().enumerate() {
        assert_eq!(
            c.read_within(MUST_NOT),
            None,
            "a SET of pipeline {w} was answered before its commit's sync returned"
        );
    }
    answers(&mut idle, "an open connection");
    let mut fresh = s.connect();
    answers(&mut fresh, "a new connection");
    for (w, c) in writers.iter_mut().enumerate() {
        assert_eq!(
            c.read_within(Duration::from_millis(1)),
            None,
            "a SET of pipeline {w} was answered while the sync was still held"
        );
    }

    gate.open();
    for (w, c) in writers.iter_mut().enumerate() {
        for i in 0..16 {
            assert_eq!(
                c.read_within(MUST),
                Some(Frame::ok()),
                "SET p{w}-{i} after the sync"
            );
        }
    }
    for w in 0..2 {
        for i in 0..16 {
            assert_eq!(
                fresh.call(&["GET", &format!("p{w}-{i}")]),
                bulk(format!("value-{i}"))
            );
        }
    }
}
