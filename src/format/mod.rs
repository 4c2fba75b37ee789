//! The on-disk format: file names, sizes and the constants they derive from.
//!
//! # Files of a data directory
//!
//! A data directory holds `STORE` (a header page naming the shard count), the `LOCK` file, the
//! [`journal`] of durability `always` (once used), the [`intent`] of atomic batches (once
//! one ran), the server's replication [`position`] (between a clean shutdown and the next
//! start only) and one directory per shard, `shard-00` …
//! `shard-ff`. A key belongs to shard [`shard_of`]`(key, shards)`. Each shard directory holds:
//!
//! | name | kind | layout |
//! |---|---|---|
//! | `%08x.k` | key section `n` | header page, then `section_slots` [records](record) |
//! | `%08x.v` | value section `n` | header page, then `section_slots` slots of 256 bytes |
//! | `buffer.b` | write buffer | its own header page (with the sync marks), then [`BANKS`] banks, each the header page of the value section it fills followed by that section's slots |
//! | `*.tmp` | unfinished file | removed at open |
//!
//! Section numbers are hexadecimal, eight digits. All sizes derive from [`PAGE`] (4096),
//! [`SLOT_SIZE`] (256), [`RECORD_SIZE`] (32) and `section_slots` (65,536 by default; a power
//! of two from [`MIN_SECTION_SLOTS`] so that a section is a whole number of pages).
//!
//! Value slot `g` (a `u32`, so at most 2^32 slots per shard) lives in section
//! `g / section_slots` at index `g % section_slots`, at byte `PAGE + index * SLOT_SIZE` of its
//! `.v` file, or at [`bank_at`]` + PAGE + index * SLOT_SIZE` of `buffer.b` while that section is
//! in a bank (being filled, or written out in the background). A slot holds the value's bytes
//! followed by zeros. Garbage collection removes value sections whose values it moved, and
//! their numbers are used again, so slots are not in write order.
//!
//! A bank carries its value section's header page right before its slots, so a full bank
//! becomes a `.v` file with one aligned direct write of `[bank_at, bank_at + values_len)`.
//!
//! See [`header`] for the header page and sync marks, [`record`] for key records,
//! [`journal`] for the journal and [`position`] for the replication position;
//! `docs/FORMAT.md` has the same with a worked hex example.

mod bytes;
pub mod header;
pub mod intent;
pub mod journal;
pub mod position;
pub mod record;
pub mod snapshot;

pub use header::{HEADER_LEN, Header, HeaderError, Kind, MARK_A, MARK_B, MARK_LEN, Mark, PAGE};
pub use record::{Op, RECORD_SIZE, Record, RecordError};

use crate::key::VALUE_MAX;

/// Bytes in a value slot.
pub const SLOT_SIZE: usize = VALUE_MAX;
/// Default records per key section and slots per value section.
pub const DEFAULT_SECTION_SLOTS: u32 = 1 << 16;
/// Smallest section: one page of slots.
pub const MIN_SECTION_SLOTS: u32 = (PAGE / SLOT_SIZE) as u32;
/// Largest section the format allows.
pub const MAX_SECTION_SLOTS: u32 = 1 << 24;
/// Value slots the format can address: a slot number is a `u32`.
pub const MAX_SLOTS: u64 = 1 << 32;

/// Banks in the write buffer: one is filled while the other is written out.
pub const BANKS: usize = 2;
/// Offset in `buffer.b` of the first bank (after the buffer's own header page).
pub const BUFFER_BANKS_AT: usize = PAGE;
/// Most shards a store can have.
pub const MAX_SHARDS: u32 = 256;
/// Offset in a `.v` file of the first slot.
pub const VALUES_DATA_AT: usize = PAGE;
/// Offset in a `.k` file of the first record.
pub const KEYS_DATA_AT: usize = PAGE;

/// Name of the write buffer file.
pub const BUFFER_NAME: &str = "buffer.b";
/// Name of the file that describes the store.
pub const STORE_NAME: &str = "STORE";
/// Name of the lock file.
pub const LOCK_NAME: &str = "LOCK";
/// Suffix of an unfinished value section.
pub const TMP_SUFFIX: &str = ".tmp";

/// Checks a section size: a power of two in `MIN_SECTION_SLOTS..=MAX_SECTION_SLOTS`.
pub fn check_section_slots(n: u32) -> Result<(), String> {
    if n.is_power_of_two() && (MIN_SECTION_SLOTS..=MAX_SECTION_SLOTS).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "section_slots {n} is not a power of two from {MIN_SECTION_SLOTS} to {MAX_SECTION_SLOTS}"
        ))
    }
}

/// Length of a key section file.
pub const fn keys_len(section_slots: u32) -> u64 {
    (KEYS_DATA_AT + section_slots as usize * RECORD_SIZE) as u64
}

/// Length of a value section file.
pub const fn values_len(section_slots: u32) -> u64 {
    (VALUES_DATA_AT + section_slots as usize * SLOT_SIZE) as u64
}

/// Offset in `buffer.b` of bank `bank`: the header page of its value section, then its slots.
pub const fn bank_at(section_slots: u32, bank: usize) -> usize {
    BUFFER_BANKS_AT + bank * values_len(section_slots) as usize
}

/// Length of the buffer file.
pub const fn buffer_len(section_slots: u32) -> u64 {
    bank_at(section_slots, BANKS) as u64
}

/// Directory of shard `i`.
pub fn shard_name(i: u32) -> String {
    format!("shard-{i:02x}")
}

/// The shard of `key` in a store of `shards` shards: a fixed mix of the key's bytes (read
/// big-endian), so that neighbouring keys spread evenly. Part of the format: changing it would
/// lose keys.
pub fn shard_of(key: [u8; 8], shards: u32) -> u32 {
    // The finaliser of SplitMix64: every input bit affects every output bit.
    let mut z = u64::from_be_bytes(key);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((u128::from(z) * u128::from(shards.max(1))) >> 64) as u32
}

/// File name of key section `n`.
pub fn keys_name(n: u32) -> String {
    format!("{n:08x}.k")
}

/// File name of value section `n`.
pub fn values_name(n: u32) -> String {
    format!("{n:08x}.v")
}

/// What a directory entry is.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A key section with its number.
    Keys(u32),
    /// A value section with its number.
    Values(u32),
    /// The write buffer.
    Buffer,
    /// The lock file.
    Lock,
    /// A leftover of an interrupted flush.
    Tmp,
    /// Not a toykv file.
    Other,
}

/// Classifies a file name found in a data directory.
pub fn parse_name(name: &str) -> Entry {
    if name == BUFFER_NAME {
        return Entry::Buffer;
    }
    if name == LOCK_NAME {
        return Entry::Lock;
    }
    if name.ends_with(TMP_SUFFIX) {
        return Entry::Tmp;
    }
    let number = |stem: &str| {
        let ok = stem.len() == 8
            && stem
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        ok.then(|| u32::from_str_radix(stem, 16).ok()).flatten()
    };
    match name.rsplit_once('.') {
        Some((stem, "k")) => number(stem).map_or(Entry::Other, Entry::Keys),
        Some((stem, "v")) => number(stem).map_or(Entry::Other, Entry::Values),
        _ => Entry::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_derive_from_constants() {
        assert_eq!(SLOT_SIZE, 256);
        assert_eq!(values_len(DEFAULT_SECTION_SLOTS), 4096 + 16 * 1024 * 1024);
        assert_eq!(keys_len(DEFAULT_SECTION_SLOTS), 4096 + 2 * 1024 * 1024);
        assert_eq!(
            buffer_len(DEFAULT_SECTION_SLOTS),
            4096 + 2 * (4096 + 16 * 1024 * 1024)
        );
        assert_eq!(bank_at(16, 1), 4096 + 4096 + 16 * 256);
        assert_eq!(MIN_SECTION_SLOTS, 16);
    }

    #[test]
    fn section_sizes_checked() {
        assert!(check_section_slots(65536).is_ok());
        assert!(check_section_slots(16).is_ok());
        for bad in [0, 1, 8, 100, 1 << 25, u32::MAX] {
            assert!(check_section_slots(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&keys_name(0x1a)), Entry::Keys(0x1a));
        assert_eq!(parse_name(&values_name(u32::MAX)), Entry::Values(u32::MAX));
        assert_eq!(parse_name("buffer.b"), Entry::Buffer);
        assert_eq!(parse_name("00000001.v.tmp"), Entry::Tmp);
        for other in [
            "1.k",
            "0000000G.k",
            "0000000A.k",
            "x.v",
            "meta",
            "00000000.kk",
        ] {
            assert_eq!(parse_name(other), Entry::Other, "{other}");
        }
    }
}
