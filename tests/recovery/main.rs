//! Recovery from damaged files: truncation, flipped bytes, foreign files, missing files.
//!
//! Each test builds a small reference store (`section_slots(16)`, one shard, about a hundred
//! puts and deletes, so several `.k` and `.v` files and a partly filled bank of the buffer),
//! keeps the model state after every record (`states[i]` is the content after the first `i`
//! records) and copies the store once per damage case. The oracle for every case:
//!
//! - open fails with `Corrupt`, `Foreign` or `Version` whose message names the damaged file, or
//! - open succeeds with `stats().records == j` for some `j` at or after the last sync, and the
//!   content (`len`, `iter`, `get` of every key ever used) is exactly `states[j]`, except that a
//!   read whose value bytes were damaged may fail with `Corrupt` naming the file. Wrong bytes
//!   are never accepted.
//!
//! After a successful open the store must accept more writes and give them back after a reopen,
//! without the dropped tail coming back.
//!
//! # Layout (format version 2)
//!
//! The data directory holds `STORE` (one header page naming the shard count), `LOCK` and one
//! directory per shard; the reference stores have one shard, so every other file is in
//! [`SHARD`]: `%08x.k` key sections, `%08x.v` value sections and `buffer.b`, whose header page
//! holds the sync marks and which holds two banks, each the header page of the value section it
//! fills followed by that section's slots. File names in these tests are relative to the data
//! directory (`shard-00/00000003.k`), so they work with `Path::join` and appear in the errors.
//! The stores open with `Durability::None` and garbage collection off: the only syncs are the
//! explicit ones (and `close`), and no file appears or vanishes behind the test's back.
//!
//! The crate is split by concern: this file holds the parameters, the history written and the
//! tally of outcomes, [`reference`] builds the reference stores and holds the oracle, [`damage`]
//! the damage helpers and the case runner, and one module per group of tests: [`truncation`] (with torn tails), [`flips`], [`files`] (foreign files, future
//! versions, missing files, the `STORE` file and the shard directory).

#[path = "../common/mod.rs"]
mod common;

mod damage;
mod files;
mod flips;
mod reference;
mod truncation;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use tempfile::TempDir;
use toykv::{Durability, Error, Options};

const SLOTS: u32 = 16;
const S: usize = SLOTS as usize;
/// Records (puts and deletes) in the reference store.
const OPS: usize = 109;
/// Keys of the reference store are `0..KEYS`; continuation writes use `0..CONT_KEYS`.
const KEYS: u64 = 40;
const CONT_KEYS: u64 = 70;
/// Run the write-close-reopen continuation on every `CONT_DROPPED`-th successful open that
/// dropped a tail, every `CONT_INTACT`-th one that did not, and on every one that returned
/// `Corrupt` for a read (it takes about 20 ms: a write-out, a new key section, fsyncs).
const CONT_DROPPED: usize = 3;
const CONT_INTACT: usize = 20;

/// The directory of the reference stores' one shard (`format::shard_name(0)`).
const SHARD: &str = "shard-00";
/// The write buffer of that shard, relative to the data directory.
const BUF: &str = "shard-00/buffer.b";
/// The store file, at the top of the data directory (`format::STORE_NAME`).
const STORE: &str = "STORE";

type Model = BTreeMap<u64, Vec<u8>>;

/// One shard, no background sync, no garbage collection: a deterministic file set.
fn opts() -> Options {
    Options::new()
        .section_slots(SLOTS)
        .shards(1)
        .durability(Durability::None)
        .gc(false)
}

/// `name` (a file of a shard directory) relative to the data directory.
fn in_shard(name: &str) -> String {
    format!("{SHARD}/{name}")
}

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .tempdir_in(crate::common::base())
        .unwrap()
}

/// splitmix64: deterministic, no dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

pub(crate) enum Op {
    Put(u64, Vec<u8>),
    Delete(u64),
}

/// The reference history: every op writes exactly one record (deletes only of live keys).
pub(crate) fn history() -> Vec<Op> {
    const LENS: [usize; 12] = [0, 1, 2, 7, 32, 100, 128, 200, 255, 256, 17, 64];
    let mut rng = Rng(0x0074_6f79_6b76);
    let mut live = BTreeSet::new();
    (0..OPS)
        .map(|i| {
            if !live.is_empty() && rng.below(9) == 0 {
                let k = *live.iter().nth(rng.below(live.len())).unwrap();
                live.remove(&k);
                Op::Delete(k)
            } else {
                let k = rng.below(KEYS as usize) as u64;
                let len = if i % 3 == 0 {
                    rng.below(257)
                } else {
                    LENS[i % LENS.len()]
                };
                let mut v = rng.bytes(len);
                if len >= 2 {
                    // Distinct from every other version of the key.
                    v[0] = i as u8;
                    v[1] = k as u8;
                }
                live.insert(k);
                Op::Put(k, v)
            }
        })
        .collect()
}

/// Counts of outcomes for the report.
#[derive(Default, Debug)]
pub(crate) struct Tally {
    pub(crate) cases: usize,
    pub(crate) refused: BTreeMap<&'static str, usize>,
    pub(crate) intact: usize,
    pub(crate) dropped: usize,
    pub(crate) corrupt_reads: usize,
    pub(crate) continued: usize,
    /// Refusals caused by damage to the buffer that do not name the buffer (must stay 0).
    pub(crate) misnamed: usize,
    /// Continue after every successful open.
    pub(crate) always: bool,
}

impl Tally {
    pub(crate) fn report(&self, what: &str, started: Instant) {
        eprintln!(
            "{what}: {} cases; refused {:?}; opened intact {}, opened with a dropped tail {}, \
             opened with Corrupt reads {}; write+reopen checked {}; refusals naming the filling \
             section instead of the buffer {}; {:.2?}",
            self.cases,
            self.refused,
            self.intact,
            self.dropped,
            self.corrupt_reads,
            self.continued,
            self.misnamed,
            started.elapsed()
        );
    }
}

pub(crate) fn variant(e: &Error) -> &'static str {
    match e {
        Error::Corrupt { .. } => "Corrupt",
        Error::Foreign { .. } => "Foreign",
        Error::Version { .. } => "Version",
        Error::Io { .. } => "Io",
        Error::Mismatch { .. } => "Mismatch",
        _ => "other",
    }
}
