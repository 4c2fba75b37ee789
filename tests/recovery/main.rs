//! Recovery from damaged files: truncation, flipped bytes, foreign files, missing files.
//!
//! Each test builds a small reference store (`section_slots(16)`, about a hundred puts and
//! deletes, so several `.k` and `.v` files and a partly filled buffer), keeps the model state
//! after every record (`states[i]` is the content after the first `i` records) and copies the
//! store once per damage case. The oracle for every case:
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
//! The crate is split by concern: [`reference`] builds the reference stores and holds the
//! oracle, [`damage`] the damage helpers and the case runner, and one module per group of
//! tests: [`truncation`] (with torn tails), [`flips`], [`files`] (foreign files, future
//! versions, missing files).

#[path = "../common/mod.rs"]
mod common;

mod damage;
mod files;
mod flips;
mod reference;
mod truncation;

use std::collections::BTreeMap;

use tempfile::TempDir;
use toykv::Options;

const SLOTS: u32 = 16;
const S: usize = SLOTS as usize;
/// Records (puts and deletes) in the reference store.
const OPS: usize = 109;
/// Keys of the reference store are `0..KEYS`; continuation writes use `0..CONT_KEYS`.
const KEYS: u64 = 40;
const CONT_KEYS: u64 = 70;
/// Run the write-close-reopen continuation on every `CONT_DROPPED`-th successful open that
/// dropped a tail, every `CONT_INTACT`-th one that did not, and on every one that returned
/// `Corrupt` for a read (it takes about 20 ms: a flush, a new key section, fsyncs).
const CONT_DROPPED: usize = 3;
const CONT_INTACT: usize = 20;

type Model = BTreeMap<u64, Vec<u8>>;

fn opts() -> Options {
    Options::new().section_slots(SLOTS)
}

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .tempdir_in(crate::common::base())
        .unwrap()
}
