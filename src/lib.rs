//! toykv: a storage engine for fixed-size records.
//!
//! Keys are 8 bytes, ordered as bytes (a `u64` is stored big-endian, so numeric order is key
//! order). Values are 0 to 256 bytes, each in a fixed 256-byte slot. Operations: put, get,
//! delete, ordered inclusive range scan, sync.
//!
//! ```
//! # fn main() -> toykv::Result<()> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let data = tmp.path().join("data");
//! use toykv::Store;
//!
//! let store = Store::open(&data)?;              // creates or reopens
//! store.put(42u64, b"hello")?;                  // a key is a u64 (big-endian) or a [u8; 8]
//! assert_eq!(store.get(42u64)?.as_deref(), Some(&b"hello"[..]));
//! for item in store.scan(0u64..=100) {          // ordered, inclusive
//!     let (key, value) = item?;
//!     println!("{} -> {:?}", key.as_u64(), &value[..]);
//! }
//! assert!(store.delete(42u64)?);
//! store.sync()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! On-disk format version 2. A data directory holds `STORE` (a header page naming the shard
//! count and section size), `LOCK`, the `journal` once the store was opened with
//! [`Durability::Always`], and one directory per shard, `shard-00` … `shard-ff`. A
//! key belongs to shard [`format::shard_of`] (SplitMix64's finaliser of its bytes, then
//! multiply-shift onto the shard count); each shard is a complete store with its own files,
//! index, read cache and lock, so operations on different shards run in parallel. In each
//! shard directory, keys and values are kept apart in three kinds of file:
//!
//! - `.k` **key sections** of 65,536 32-byte records (key, sequence number, value slot, length,
//!   kind, value checksum, record checksum), memory-mapped. They form the shard's log; the
//!   in-memory index is rebuilt from it at open.
//! - `.v` **value sections** of 65,536 slots × 256 bytes (16 MiB), written once and read with
//!   real `O_DIRECT`, one aligned block per get.
//! - `buffer.b` the memory-mapped **write buffer**: a header page holding the two sync marks,
//!   then two **banks**, each holding one value section. Puts fill one bank while a
//!   background thread writes the other, once full, to its `.v` file with one aligned direct
//!   write (**background flush**); a put waits only if it fills its bank before that ends.
//!
//! Every file starts with a 4096-byte header page (magic, version, parameters, checksum).
//! [`format`](mod@format) documents every byte; `docs/FORMAT.md` has a worked example.
//!
//! **Durability** ([`Durability`], chosen at each open): a sync makes the new values, then the
//! new key records, then the sync mark durable; `None` syncs only on [`Store::sync`],
//! `Periodic` (the default, every second) also from a background thread. `Always` writes
//! each put or delete to the store's **journal** before it returns: one writer at a time
//! commits every waiting writer's entries, on every shard, with one aligned direct write and
//! one flush (group commit). When the journal (64 MiB) is full, a checkpoint syncs every shard
//! and empties it; open replays what it holds.
//!
//! **Garbage collection** ([`Options::gc`], on by default; [`Store::gc`]): a value section
//! that is mostly dead has its live values put again and is removed, its number used again
//! for a later section; a key section is dropped from the front of the log once none of its
//! records is live, after the sync mark names the next section as the first one kept. Puts
//! wait for collection while value files hold more than 2 times their live values.
//!
//! | option | default | |
//! |---|---|---|
//! | [`Options::durability`] | `Periodic(1 s)` | what a returned write survives: `None`, `Periodic(t)`, `Always` |
//! | [`Options::shards`] | [`default_shards`] (one per core) | 1 to 256; fixed at creation, recorded in `STORE` |
//! | [`Options::gc`] | `true` | background garbage collection |
//! | [`Options::cache_bytes`] | [`default_cache_bytes`]: a quarter of the memory the process may use | the read cache (S3-FIFO); 0 turns it off |
//! | [`Options::direct_io`] | `true` | `O_DIRECT` for value sections; off: page cache and `fdatasync` |
//! | [`Options::section_slots`] | the store's own; 65,536 for a new store | records per key section, slots per value section; fixed at creation, recorded in `STORE` |
//! | [`Options::journal_bytes`] | 64 MiB | the journal of `Always`, made when first needed |
//!
//! The server takes the same settings as flags: `--durability none|always|periodic[:MS]`,
//! `--shards N` (a new store only), `--no-gc`, `--cache-bytes`, `--direct-io`; see
//! [`server::launch`].
//!
//! The source follows the same split. The engine (everything but the last four rows) is what
//! `cargo build --no-default-features` builds; Cargo features add the rest:
//!
//! | module | concern | feature |
//! |---|---|---|
//! | [`format`](mod@format) | byte layout: headers, sync marks, key records, the journal, file names | |
//! | [`io`] | the I/O traits; memory maps as uniquely owned regions and msync-only spans; the OS implementation (the only `unsafe`); the copy-on-write overlay `toykv check` opens through; `io::sim`, the power-loss simulator, with `sim` | |
//! | `store` | the engine, one module per on-disk object: `describe` (`STORE`), `keys` (a `.k` section), `values` (`.v` sections), `buffer` (`buffer.b`: sync marks, the two banks and their hand-off), `journal` (the journal of `Always`: commits, checkpoints, reading it at open), `file` (what the files share); in memory: `index`, `usage`, `cache` (S3-FIFO); `shard` (a shard's private state, its operations in children `write`, `read`, `sync`, `gc`, `open`, `recover`, `check`); `background` (write-outs, periodic syncs, the collector); `check` (open's recovery run read-only, for `toykv check`); `scan`, `stats` | |
//! | [`key`] | [`Key`] and [`Value`] | |
//! | [`keymode`] | client keys (any bytes) to store keys, and the `KEYMODE` file that records the mode | |
//! | `kill` | kill points for crash tests; without the feature they compile to nothing | `kill-points` |
//! | [`error`] | the [`Error`] enum | |
//! | [`options`] | [`Options`] | |
//! | [`admin`] | `check`, `dump` and `stats` of a data directory, behind the `toykv` binary: they run open's own recovery read-only and report what it found | |
//! | [`resp`] | RESP2/RESP3 frames: parsing and encoding, for the server, the client and the YCSB driver | any of `server`, `client`, `cli` |
//! | [`server`] | the Redis-protocol server: `connection`, `command` (one file per family), `stats`, `glob`, `launch` (flags) | `server` |
//! | [`client`] | the interactive and one-shot client behind `examples/client.rs` | `client` |
//! | [`ycsb`] | the YCSB-style benchmark driver behind `toykv bench`: generators, workloads A–F, runner, RESP and library backends | `cli` |
//!
//! Features: `server`, `client` and `cli` (the `toykv` binary) are on by default; `sim` and
//! `kill-points` are for tests (the crate's own tests turn them on). The README's "Cargo
//! features" table lists what each one pulls in.
//!
//! # Guarantees
//!
//! - A put or delete that returned `Ok` survives a crash of the process (kill -9) at any
//!   moment: its bytes are in shared memory maps, which the kernel keeps.
//! - With [`Durability::Always`] it also survives power loss once it returns (it is in the
//!   journal, and open replays the journal into the shards); with
//!   `Periodic`, once the next periodic sync ran. [`Store::sync`] makes everything before it
//!   survive power loss in any mode. Writes after the last sync may be lost on power loss, but
//!   what survives of a shard is a prefix of them: never a hole, never a wrong value.
//! - What `Always` does not promise. A put or delete is applied to its shard first and then
//!   waits for its journal commit, so:
//!   1. while it waits it is already visible: a [`Store::get`] from another thread can
//!      return a value whose commit has not finished, and which a power loss before that
//!      commit then takes away. Redis with `appendfsync always` has the same property: a
//!      command changes the dataset at once, and other clients served before that event-loop
//!      iteration's AOF write and fsync can read the change;
//!   2. a put or delete that returned an error because its commit failed is not undone: it
//!      stays visible until the store is reopened, and after a restart it may be there or not
//!      (its frame may have reached the disk, and its shard's memory-mapped files keep it
//!      across a process crash). An error from a write means "not known to be durable", not
//!      "not done"; the failed commit refuses every later write until reopen.
//! - Recovery drops a torn tail of unsynced records; damage before the last sync is reported
//!   as [`Error::Corrupt`] naming the file, the offset and the kind of damage ([`Damage`]).
//!   Every value read is checked against a CRC-32C; data that fails is never returned.
//! - A failed fsync or msync poisons the store: writes are refused until it is reopened.
//! - One process at a time: the directory is locked.
//! - With direct I/O off ([`Options::direct_io`]) value sections use the page cache and
//!   `fdatasync`; the guarantees are the same.

#![deny(unsafe_code)]
// The docs above link the modules of the default features; a build without one of them
// leaves those links dangling (the default and all-features docs check every link).
#![cfg_attr(
    not(all(feature = "server", feature = "client", feature = "cli")),
    allow(rustdoc::broken_intra_doc_links)
)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod format;
pub mod io;
pub mod key;
pub mod keymode;
#[cfg(feature = "kill-points")]
pub mod kill;
#[cfg(not(feature = "kill-points"))]
mod kill;
mod memory;
pub mod options;
#[cfg(any(feature = "server", feature = "client", feature = "cli"))]
pub mod resp;
#[cfg(feature = "server")]
pub mod server;
mod store;

/// The in-memory index, reachable by `benches/index.rs` only: not part of the API.
#[doc(hidden)]
pub mod bench {
    pub use crate::store::index::{Index, Log};
}
#[cfg(test)]
mod testing;
// The YCSB-style benchmark driver (`toykv bench`, the `peers` package); its docs: src/ycsb/mod.rs.
#[cfg(feature = "cli")]
pub mod ycsb;

pub use error::{Damage, Error, Result};
pub use key::{KEY_LEN, Key, VALUE_MAX, Value};
pub use options::{Durability, Options, default_cache_bytes, default_shards};
pub use store::{
    Applied, Batch, Change, Commit, Feed, GET_MANY_CHUNK, Lookup, PendingRead, Quick, Scan,
    Snapshot, Stats, Store, restore,
};
