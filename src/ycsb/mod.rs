//! A YCSB-style benchmark driver: YCSB's core workloads A–F against toykv (the library, or a
//! server over RESP) or any store that implements [`Db`].
//!
//! It follows YCSB's core workload rules: a load phase inserts `records` records named by
//! [`fnv64`] of their number (`insertorder=hashed`); a run phase performs `operations`
//! operations drawn from the workload's mix, picking records by scrambled zipfian (θ = 0.99),
//! "latest" for D, scans of 1–100 records for E, read-modify-write for F. Every value is
//! [`VALUE_LEN`] bytes. Latencies go into one HdrHistogram per operation type and are printed
//! in YCSB's output format ([`report`]).
//!
//! - [`generator`]: fnv64, the PRNG, zipfian, scrambled zipfian, latest.
//! - [`workload`]: workloads A–F and the per-thread operation chooser.
//! - [`runner`]: the load and run phases on threads, with progress bars.
//! - `recorder`: what one thread measures (histograms, outcome counts), merged into a phase.
//! - [`report`]: results, YCSB's text format, JSON.
//! - [`cli`]: the `toykv bench` subcommand.
//! - [`resp`]: the RESP client backend (toykv's server or redis-server); [`LibDb`] the library.
//!
//! The `toykv bench` subcommand drives it; the `peers` workspace package runs the same
//! workloads on other embedded stores.

pub mod cli;
pub mod generator;
mod recorder;
pub mod report;
pub mod resp;
pub mod runner;
#[cfg(test)]
mod tests;
pub mod workload;

use std::path::Path;
use std::sync::Arc;

use crate::{Options, Store};

pub use generator::fnv64;
pub use report::{OpStats, Phase, Report};
pub use runner::{Settings, load, run};
pub use workload::{OpKind, Workload};

/// Bytes in every value the driver writes.
pub const VALUE_LEN: usize = 256;

/// Any error a store reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a store operation.
pub type DbResult<T> = Result<T, BoxError>;

/// A store under test, as one thread sees it. Keys are `u64`s compared as big-endian bytes
/// (numeric order); values are [`VALUE_LEN`] bytes.
pub trait Db: Send {
    /// Reads `key`; `Ok(false)` when it does not exist.
    fn read(&mut self, key: u64) -> DbResult<bool>;
    /// Overwrites `key` with `value`.
    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()>;
    /// Inserts `key` with `value`.
    fn insert(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        self.update(key, value)
    }
    /// Reads up to `count` records in key order from `start` (inclusive); returns how many.
    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize>;
    /// Reads `key`, then writes `value` to it; `Ok(false)` when it did not exist.
    fn read_modify_write(&mut self, key: u64, value: &[u8]) -> DbResult<bool> {
        let found = self.read(key)?;
        self.update(key, value)?;
        Ok(found)
    }
    /// Makes everything written so far durable (called once after the load and after each
    /// run, and counted in that phase's time).
    fn flush(&mut self) -> DbResult<()> {
        Ok(())
    }
}

/// Makes one [`Db`] handle per benchmark thread (each thread calls it once).
pub type Connect<'a> = &'a (dyn Fn() -> DbResult<Box<dyn Db>> + Sync);

/// toykv as a library: one shared [`Store`], a handle per thread.
#[derive(Clone, Debug)]
pub struct LibDb {
    store: Arc<Store>,
}

impl LibDb {
    /// Opens (or creates) the store in `dir` through the public API.
    ///
    /// Durability: toykv's default, no fsync per operation (a put survives a process crash;
    /// [`Db::flush`] syncs). When the engine grows `Options::durability(...)`, set it here so
    /// that it matches what the peers are given.
    pub fn open(dir: &Path) -> DbResult<LibDb> {
        let options = Options::new();
        Ok(LibDb {
            store: Arc::new(Store::open_with(dir, options)?),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

impl Db for LibDb {
    fn read(&mut self, key: u64) -> DbResult<bool> {
        Ok(self.store.get(key)?.is_some())
    }

    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        Ok(self.store.put(key, value)?)
    }

    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize> {
        let mut n = 0;
        for item in self.store.scan(start..=u64::MAX).take(count) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> DbResult<()> {
        Ok(self.store.sync()?)
    }
}

/// Where `toykv bench` sends its operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The library, over the data directory given.
    Lib(std::path::PathBuf),
    /// A toykv server at `host:port` (scans with `RANGE`).
    Resp(String),
    /// A redis-server at `host:port` (scans with a sorted-set index, as YCSB's Redis binding).
    Redis(String),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("lib", dir)) if !dir.is_empty() => Ok(Target::Lib(dir.into())),
            Some(("resp", addr)) if addr.contains(':') => Ok(Target::Resp(addr.into())),
            Some(("redis", addr)) if addr.contains(':') => Ok(Target::Redis(addr.into())),
            _ => Err(format!(
                "bad target '{s}': expected lib:DIR, resp:HOST:PORT or redis:HOST:PORT"
            )),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Lib(dir) => write!(f, "lib:{}", dir.display()),
            Target::Resp(addr) => write!(f, "resp:{addr}"),
            Target::Redis(addr) => write!(f, "redis:{addr}"),
        }
    }
}
