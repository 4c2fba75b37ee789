//! Durability `always` through the store's journal: one flush per commit, whatever the shard
//! count (the format is in [`crate::format::journal`]).
//!
//! A put or delete is applied to its shard as with any durability (value in the bank, record
//! in the key section, index) and, under the same shard lock, its journal entry is appended
//! to the store's pending bytes; it gets a *ticket*, the entry's number. So per key the
//! journal holds operations in the order the shard applied them. The writer then waits until
//! its ticket is durable:
//!
//! - one writer at a time leads a commit: it takes every pending entry (its own and those
//!   of every writer that came meanwhile, across all shards), writes them as frames with one
//!   aligned direct write and syncs the journal; then it wakes every waiter at once;
//! - a commit that does not fit in the rest of the file is made durable by a *checkpoint*
//!   instead: every shard is synced (its sync mark then covers every entry taken, since an
//!   entry is appended only after its operation is applied) and the next epoch's header is
//!   written, which empties the journal.
//!
//! The first frame of each epoch starts with the epoch's mark, the end entry of the last
//! atomic batch a commit took before the epoch began (see [`crate::format::journal`]): open
//! tells from it whether the batch of the intent was durable before the epoch.
//!
//! The shards' own files are synced only by checkpoints, write-outs and garbage collection,
//! as with durability `none`; what a power loss takes from them, replay gives back. A failed
//! write or sync of the journal poisons it: the kernel may have dropped what it held, so
//! every later put and delete is refused until the store is reopened.
//!
//! The journal knows nothing of shards: a commit that must checkpoint, and
//! [`Journal::checkpoint`], call the `sync` they are given (the store's: every shard synced).
//!
//! At open, [`recover`] reads the current epoch's frames; the store replays them into the
//! shards before anything else runs, syncs the shards and starts the next epoch.

mod recover;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Context, Error, Result};
use crate::format::TMP_SUFFIX;
use crate::format::journal::{
    BLOCK, DELETE_LEN, FRAME_HEADER_LEN, FRAMES_AT, Frame, JOURNAL_NAME, JournalHeader,
    PAYLOAD_MAX, encode_batch, encode_delete, encode_put, split,
};
use crate::io::{AlignedBuf, FileIo, Mode, Vfs};
use crate::key::Key;

pub(crate) use recover::Found;
pub(crate) use recover::{Torn, find, open};

/// The longest a leader waits for the writers of the last commit to come back.
const GATHER: Duration = Duration::from_micros(100);

/// Bytes of an epoch's mark (a batch end entry).
const MARK_LEN: usize = DELETE_LEN;

/// Bytes of zeros written at a time while making a journal.
const CHUNK: usize = 1 << 20;

/// The store's journal, open for commits.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: Arc<dyn FileIo>,
    len: u64,
    /// Entries not yet taken by a commit.
    pending: Mutex<Pending>,
    /// Who leads, what is durable.
    state: Mutex<Turn>,
    /// Signalled, to every waiter at once, when a commit ends.
    done: Condvar,
    /// Where the next frame goes; only the leader touches it.
    writer: Mutex<Writer>,
    /// Set with [`Turn::failed`], for a check without the lock.
    broken: AtomicBool,
    /// Commits written since open.
    commits: AtomicU64,
    /// Checkpoints since open (the journal emptied into the shards' synced files).
    checkpoints: AtomicU64,
    /// Waiters that must not block, for the committer thread (see [`notify`](Self::notify)).
    notices: Mutex<Notices>,
    /// Signalled when a notice is queued or the committer must stop.
    queued: Condvar,
}

/// What is called once a ticket is durable, or its commit failed.
pub(crate) type Notice = Box<dyn FnOnce(Result<()>) + Send>;

#[derive(Default)]
struct Notices {
    /// (ticket, what to call), in no particular order.
    waiting: Vec<(u64, Notice)>,
    stop: bool,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("waiting", &self.waiting.len())
            .field("stop", &self.stop)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Tickets handed out.
    issued: u64,
    /// The number of the last atomic batch whose entries were appended (0: none).
    batch: u64,
}

#[derive(Debug, Default)]
struct Turn {
    leading: bool,
    /// Tickets up to this one are durable.
    durable: u64,
    /// Set by a failed write or sync: (operation, error).
    failed: Option<(&'static str, String)>,
}

#[derive(Debug)]
struct Writer {
    epoch: u64,
    number: u64,
    at: u64,
    buf: AlignedBuf,
    /// The pending bytes' next buffer (swapped in when a commit takes them).
    spare: Vec<u8>,
    /// Tickets taken by the last commit, and how many that was.
    taken: u64,
    last: u64,
    /// The number of the last atomic batch whose end entry a commit took (0: none).
    taken_batch: u64,
    /// The epoch's mark: the last batch whose end entry was taken before the epoch began,
    /// durable in the shards. The epoch's first frame starts with its end entry (see
    /// [`crate::format::journal`]).
    covered: u64,
}

impl Journal {
    /// Makes a new journal of `len` bytes in `dir` (see the format's creation order); batches
    /// up to number `covered` are durable in the shards.
    pub(crate) fn create(
        vfs: &dyn Vfs,
        dir: &Path,
        len: u64,
        direct: bool,
        covered: u64,
    ) -> Result<Journal> {
        let path = dir.join(JOURNAL_NAME);
        let tmp = dir.join(format!("{JOURNAL_NAME}{TMP_SUFFIX}"));
        let mode = Mode {
            create: true,
            write: true,
            direct,
        };
        let file = vfs.open(&tmp, mode).ctx("create", &tmp)?;
        file.set_len(0).ctx("truncate", &tmp)?;
        let zeros = AlignedBuf::new(CHUNK, BLOCK);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(CHUNK as u64) as usize;
            file.write_at(&zeros.bytes()[..n], at).ctx("write", &tmp)?;
            at += n as u64;
        }
        let header = JournalHeader { len, epoch: 1 };
        write_header(&*file, &tmp, header)?;
        vfs.rename(&tmp, &path).ctx("rename", &tmp)?;
        vfs.sync_dir(dir).ctx("fsync", dir)?;
        let file = vfs
            .open(
                &path,
                Mode {
                    create: false,
                    ..mode
                },
            )
            .ctx("open", &path)?;
        Ok(Journal::new(file, path, header, covered))
    }

    /// Continues a recovered journal whose entries were replayed and synced into the shards:
    /// starts the next epoch, so that they never replay again over later writes. Even when
    /// no frame was read: a commit of several frames torn by power loss can leave a later
    /// frame of the epoch behind its lost first one, and new commits of the same epoch would
    /// lead replay back to it. Batches up to number `covered` are durable in the shards.
    pub(super) fn resume(found: Found, covered: u64) -> Result<Journal> {
        let Found {
            file, path, header, ..
        } = found;
        let next = JournalHeader {
            epoch: header.epoch + 1,
            ..header
        };
        write_header(&*file, &path, next)?;
        Ok(Journal::new(file, path, next, covered))
    }

    fn new(file: Arc<dyn FileIo>, path: PathBuf, header: JournalHeader, covered: u64) -> Journal {
        Journal {
            path,
            file,
            len: header.len,
            pending: Mutex::new(Pending {
                batch: covered,
                ..Pending::default()
            }),
            state: Mutex::new(Turn::default()),
            done: Condvar::new(),
            writer: Mutex::new(Writer {
                epoch: header.epoch,
                number: 0,
                at: FRAMES_AT,
                buf: AlignedBuf::new(BLOCK, BLOCK),
                spare: Vec::new(),
                taken: 0,
                last: 0,
                taken_batch: covered,
                covered,
            }),
            broken: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            notices: Mutex::new(Notices::default()),
            queued: Condvar::new(),
        }
    }

    /// Calls `notice` once `ticket` is durable (or its commit failed), from the committer
    /// thread ([`commit_loop`](Self::commit_loop)); never blocks. For waiters that must not:
    /// the committer leads one commit after another while any wait, so every write applied
    /// while a commit runs joins the next one.
    pub(crate) fn notify(&self, ticket: u64, notice: Notice) {
        let mut n = self.notices.lock();
        if n.stop {
            drop(n);
            notice(Err(Error::Refused {
                why: format!("the store is closing; write {ticket} was not waited for"),
            }));
            return;
        }
        n.waiting.push((ticket, notice));
        drop(n);
        self.queued.notify_one();
    }

    /// The committer thread's loop: while notices wait, commits everything pending and calls
    /// those whose tickets are durable; returns once [`stop_notices`](Self::stop_notices) was
    /// called and none is left.
    pub(crate) fn commit_loop(&self, sync: &dyn Fn() -> Result<()>) {
        loop {
            let want = {
                let mut n = self.notices.lock();
                while n.waiting.is_empty() && !n.stop {
                    self.queued.wait(&mut n);
                }
                if n.waiting.is_empty() {
                    return;
                }
                n.waiting.iter().map(|&(t, _)| t).max().unwrap_or(0)
            };
            let r = self.wait(want, sync);
            let durable = self.state.lock().durable;
            let ready: Vec<(u64, Notice)> = {
                let mut n = self.notices.lock();
                let (ready, rest) = std::mem::take(&mut n.waiting)
                    .into_iter()
                    .partition(|&(t, _)| t <= durable || r.is_err());
                n.waiting = rest;
                ready
            };
            for (_, notice) in ready {
                notice(match &r {
                    Ok(()) => Ok(()),
                    Err(_) => Err(self.failure()),
                });
            }
        }
    }

    /// Tells the committer thread to return once every waiting notice is called.
    pub(crate) fn stop_notices(&self) {
        self.notices.lock().stop = true;
        self.queued.notify_all();
    }

    /// Commits written since open.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Checkpoints since open.
    pub(crate) fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// Refuses writes once a commit failed.
    pub(crate) fn writable(&self) -> Result<()> {
        if !self.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self.failure())
    }

    fn failure(&self) -> Error {
        let (op, why) = self
            .state
            .lock()
            .failed
            .clone()
            .unwrap_or(("commit", "the journal failed".into()));
        Error::Failed {
            op,
            path: self.path.clone(),
            why,
        }
    }

    /// Appends a put's entry; its ticket. Call with the shard's lock held, after the put.
    pub(crate) fn put(&self, key: Key, value: &[u8]) -> u64 {
        let mut p = self.pending.lock();
        encode_put(&mut p.bytes, key.0, value);
        p.issued += 1;
        p.issued
    }

    /// Appends a delete's entry; its ticket. Call with the shard's lock held, after the
    /// delete.
    pub(crate) fn delete(&self, key: Key) -> u64 {
        let mut p = self.pending.lock();
        encode_delete(&mut p.bytes, key.0);
        p.issued += 1;
        p.issued
    }

    /// Appends an atomic batch's `count` entries (`entries`, encoded) and its end entry for
    /// batch `id`, in one go so that a commit takes all of them or none; the ticket of the
    /// last. Call with the lock of every shard the batch wrote to held, after the batch.
    pub(crate) fn batch(&self, entries: &[u8], count: u32, id: u64) -> u64 {
        let mut p = self.pending.lock();
        p.bytes.extend_from_slice(entries);
        encode_batch(&mut p.bytes, id);
        p.issued += u64::from(count) + 1;
        p.batch = p.batch.max(id);
        p.issued
    }

    /// Returns once `ticket` is durable, leading commits or waiting for them.
    pub(crate) fn wait(&self, ticket: u64, sync: &dyn Fn() -> Result<()>) -> Result<()> {
        let mut turn = self.state.lock();
        loop {
            if turn.durable >= ticket {
                return Ok(());
            }
            if turn.failed.is_some() {
                drop(turn);
                return Err(self.failure());
            }
            if !turn.leading {
                turn.leading = true;
                drop(turn);
                let r = self.writer.lock().commit(self, sync);
                turn = self.state.lock();
                turn.leading = false;
                match r {
                    Ok(upto) => turn.durable = turn.durable.max(upto),
                    Err(e) => {
                        poison(&mut turn, &self.broken, &e);
                        self.done.notify_all();
                        return Err(e);
                    }
                }
                self.done.notify_all();
                continue;
            }
            self.done.wait(&mut turn);
        }
    }

    /// Makes everything applied so far durable and empties the journal: syncs every shard,
    /// then starts the next epoch. For [`Store::sync`](crate::Store::sync) (and so close),
    /// and for commits that do not fit.
    pub(crate) fn checkpoint(&self, sync: &dyn Fn() -> Result<()>) -> Result<()> {
        self.writable()?;
        let r = self.writer.lock().checkpoint(self, sync);
        if let Err(e) = &r {
            poison(&mut self.state.lock(), &self.broken, e);
            self.done.notify_all();
        }
        r
    }
}

/// Records a failed commit or checkpoint: every later write is refused until reopen, since
/// the kernel may have dropped what the journal or a shard held.
fn poison(turn: &mut Turn, broken: &AtomicBool, e: &Error) {
    // Any failure poisons here, not only a failed sync: the entries the commit took are no
    // longer pending, so they cannot be retried.
    let op = e.op_name("commit");
    if turn.failed.is_none() {
        turn.failed = Some((op, e.to_string()));
    }
    broken.store(true, Ordering::Release);
}

impl Writer {
    /// Commits every pending entry; the tickets now durable.
    fn commit(&mut self, j: &Journal, sync: &dyn Fn() -> Result<()>) -> Result<u64> {
        // The writers the last commit released are on their way back with their next entry:
        // give them a moment, so that one flush covers them all.
        let start = Instant::now();
        while j.pending.lock().issued - self.taken < self.last && start.elapsed() < GATHER {
            std::thread::yield_now();
        }
        let (bytes, upto) = {
            let mut p = j.pending.lock();
            let bytes = std::mem::replace(&mut p.bytes, std::mem::take(&mut self.spare));
            self.taken_batch = self.taken_batch.max(p.batch);
            (bytes, p.issued)
        };
        let r = self.write(j, sync, &bytes);
        self.last = upto - self.taken;
        self.taken = upto;
        self.spare = bytes;
        self.spare.clear();
        r.map(|()| upto)
    }

    fn write(&mut self, j: &Journal, sync: &dyn Fn() -> Result<()>, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        // The epoch's first frame starts with its mark: the end entry of the last batch taken
        // before the epoch began (see the format's recovery).
        let marked;
        let bytes = if self.number == 0 {
            let mut b = Vec::with_capacity(MARK_LEN + bytes.len());
            encode_batch(&mut b, self.covered);
            b.extend_from_slice(bytes);
            marked = b;
            &marked[..]
        } else {
            bytes
        };
        let max = PAYLOAD_MAX.min((j.len - FRAMES_AT) as usize - FRAME_HEADER_LEN);
        let pieces = split(bytes, max)
            .map_err(|why| Error::internal(&j.path, format!("pending journal entries: {why}")))?;
        let frames: Vec<Frame> = pieces
            .iter()
            .enumerate()
            .map(|(i, &(a, b, count))| Frame {
                len: (b - a) as u32,
                epoch: self.epoch,
                number: self.number + i as u64,
                count,
            })
            .collect();
        let blocks: u64 = frames.iter().map(Frame::blocks).sum();
        let size = blocks * BLOCK as u64;
        if self.at + size > j.len {
            // Every entry taken is applied already: the checkpoint's shard syncs cover them.
            return self.checkpoint(j, sync);
        }
        if self.buf.len() < size as usize {
            self.buf = AlignedBuf::new((size as usize).next_power_of_two(), BLOCK);
        }
        let out = &mut self.buf.bytes_mut()[..size as usize];
        let mut off = 0;
        for (f, &(a, b, _)) in frames.iter().zip(&pieces) {
            let n = f.blocks() as usize * BLOCK;
            f.encode(&bytes[a..b], &mut out[off..off + n]);
            off += n;
        }
        j.file.write_at(out, self.at).ctx("write", &j.path)?;
        crate::kill::point("journal-written");
        j.file.sync().ctx("fdatasync", &j.path)?;
        crate::kill::point("journal-synced");
        self.at += size;
        self.number += frames.len() as u64;
        j.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn checkpoint(&mut self, j: &Journal, sync: &dyn Fn() -> Result<()>) -> Result<()> {
        // Every batch taken so far is applied whole: the sync makes it durable in the shards.
        let covered = self.taken_batch;
        sync()?;
        crate::kill::point("checkpoint");
        let next = JournalHeader {
            len: j.len,
            epoch: self.epoch + 1,
        };
        write_header(&*j.file, &j.path, next)?;
        self.epoch = next.epoch;
        self.number = 0;
        self.at = FRAMES_AT;
        self.covered = covered;
        j.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Writes `header` into its slot and syncs.
pub(super) fn write_header(file: &dyn FileIo, path: &Path, header: JournalHeader) -> Result<()> {
    let mut block = AlignedBuf::new(BLOCK, BLOCK);
    let h = header.encode();
    block.bytes_mut()[..h.len()].copy_from_slice(&h);
    file.write_at(block.bytes(), header.slot_at())
        .ctx("write", path)?;
    file.sync().ctx("fdatasync", path)
}
