//! Background threads: writing full banks out, periodic syncs, garbage collection.
//!
//! - **Writers** take full banks from a crossbeam channel and write each to its `.v` file (one
//!   aligned direct write from the map, fdatasync, rename, directory sync) without the shard's
//!   lock, then register the file and free the bank. Puts go on into the other bank
//!   meanwhile; only a put that fills that one too before the write-out ends waits.
//! - The **syncer** (durability `periodic`) syncs every shard at the chosen interval.
//! - The **collector** (garbage collection on) runs [`Shard::gc_step`] on every shard until
//!   none has work, then sleeps a while.
//!
//! A failed write-out poisons the shard like a failed sync: its bank cannot be reused, so
//! writes are refused until the store is reopened, and recovery writes the bank out then.
//! Dropping [`Background`] stops the threads and waits for them; queued write-outs finish.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::error::Result;
use crate::options::Durability;

use super::shard::{Job, Shard};

/// How long the collector sleeps when no shard has work.
const GC_IDLE: Duration = Duration::from_millis(50);

/// The running background threads.
#[derive(Debug)]
pub(crate) struct Background {
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Background {
    /// Starts `writers` writer threads on `jobs`, the syncer for `periodic` durability and the
    /// collector when `gc` is on.
    pub(crate) fn start(
        shards: Arc<[Shard]>,
        jobs: Receiver<Job>,
        writers: usize,
        durability: Durability,
        gc: bool,
    ) -> Result<Background> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let mut bg = Background {
            stop: Some(stop),
            threads: Vec::new(),
        };
        for i in 0..writers.max(1) {
            let (shards, jobs) = (shards.clone(), jobs.clone());
            bg.spawn(format!("toykv-write-{i}"), move || {
                for job in jobs.iter() {
                    if let Some(shard) = shards.get(job.shard) {
                        shard.write_out(job.bank);
                    }
                }
            })?;
        }
        if let Durability::Periodic(every) = durability {
            let (shards, stopped) = (shards.clone(), stopped.clone());
            bg.spawn("toykv-sync".into(), move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    for shard in shards.iter() {
                        if let Err(e) = shard.sync() {
                            tracing::error!("periodic sync failed: {e}");
                        }
                    }
                }
            })?;
        }
        if gc {
            bg.spawn("toykv-gc".into(), move || collect(&shards, &stopped))?;
        }
        Ok(bg)
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map_err(|source| crate::Error::Spawn { name, source })?;
        self.threads.push(handle);
        Ok(())
    }

    /// Stops the threads (the writers once their channel is closed) and waits for them.
    pub(crate) fn stop(&mut self) {
        self.stop = None;
        for t in self.threads.drain(..) {
            // A panicking background thread has already reported itself; nothing to add.
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The collector's loop.
fn collect(shards: &[Shard], stopped: &Receiver<()>) {
    loop {
        let mut busy = false;
        for shard in shards {
            match shard.gc_step() {
                Ok(did) => busy |= did,
                Err(e) => tracing::error!("garbage collection failed: {e}"),
            }
            if let Err(TryRecvError::Disconnected) = stopped.try_recv() {
                return;
            }
        }
        let wait = if busy { Duration::ZERO } else { GC_IDLE };
        if let Err(RecvTimeoutError::Disconnected) = stopped.recv_timeout(wait) {
            return;
        }
    }
}
