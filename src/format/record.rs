//! Key records: the 32-byte entries of a key section.
//!
//! A key section is a header page followed by `section_slots` records; record `i` of section
//! `s` is record number (sequence) `s * section_slots + i` of the store's log, at file offset
//! `PAGE + i * RECORD_SIZE`. Integers are little-endian; the key is stored as its 8 bytes, so a
//! `u64` key appears big-endian.
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 8 | `key` | the key's bytes |
//! | 8 | 8 | `seq` | the record's sequence number; must equal its position |
//! | 16 | 4 | `slot` | global value slot (`section * section_slots + index`); 0 for a delete |
//! | 20 | 2 | `len` | value length, 0..=256; 0 for a delete |
//! | 22 | 1 | `kind` | 1 = put, 2 = delete; 0 = never written |
//! | 23 | 1 | reserved | zero |
//! | 24 | 4 | `value_crc` | CRC-32C of the value's `len` bytes |
//! | 28 | 4 | `crc` | CRC-32C of bytes 0..28 |
//!
//! Because `crc` covers `value_crc`, one record checksum protects key, sequence, position,
//! length and the value bytes; recovery checks records without reading values, and every
//! read of a value checks it against `value_crc`.
//!
//! Invariants: sequence numbers have no gaps (each shard has its own log); slots are not in
//! write order, since garbage collection frees value sections whose numbers are used again.
//! An all-zero record (`kind` 0) marks the end of the written log. A record that fails its
//! checks is, before the shard's sync mark, corruption; after it, the torn tail.

use super::bytes::{u16_at, u32_at, u64_at};
use crate::key::{KEY_LEN, Key, VALUE_MAX};

const KEY_AT: usize = 0;
const SEQ_AT: usize = KEY_AT + KEY_LEN;
const SLOT_AT: usize = SEQ_AT + size_of::<u64>();
const LEN_AT: usize = SLOT_AT + size_of::<u32>();
const KIND_AT: usize = LEN_AT + size_of::<u16>();
const RESERVED_AT: usize = KIND_AT + size_of::<u8>();
const VALUE_CRC_AT: usize = RESERVED_AT + size_of::<u8>();
const CRC_AT: usize = VALUE_CRC_AT + size_of::<u32>();
/// Bytes in a key record.
pub const RECORD_SIZE: usize = CRC_AT + size_of::<u32>();

const PUT: u8 = 1;
const DELETE: u8 = 2;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The key holds `len` bytes in `slot`, with checksum `value_crc`.
    Put {
        /// Global value slot.
        slot: u32,
        /// Value length.
        len: u16,
        /// CRC-32C of the value.
        value_crc: u32,
    },
    /// The key was deleted.
    Delete,
}

/// A decoded key record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The key.
    pub key: Key,
    /// The record's sequence number.
    pub seq: u64,
    /// Put or delete.
    pub op: Op,
}

/// How a record slot fails to hold a record.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    /// All zero: never written.
    Empty,
    /// Anything else, with the reason.
    Bad(String),
}

impl Record {
    /// Encodes the record into its 32 bytes.
    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[KEY_AT..SEQ_AT].copy_from_slice(&self.key.0);
        b[SEQ_AT..SLOT_AT].copy_from_slice(&self.seq.to_le_bytes());
        let (slot, len, kind, value_crc) = match self.op {
            Op::Put {
                slot,
                len,
                value_crc,
            } => (slot, len, PUT, value_crc),
            Op::Delete => (0, 0, DELETE, 0),
        };
        b[SLOT_AT..LEN_AT].copy_from_slice(&slot.to_le_bytes());
        b[LEN_AT..KIND_AT].copy_from_slice(&len.to_le_bytes());
        b[KIND_AT] = kind;
        b[VALUE_CRC_AT..CRC_AT].copy_from_slice(&value_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks one record; `seq` is the sequence its position implies.
    pub fn decode(b: &[u8; RECORD_SIZE], seq: u64) -> Result<Record, RecordError> {
        if b.iter().all(|&x| x == 0) {
            return Err(RecordError::Empty);
        }
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        let stored = u32_at(b, CRC_AT);
        if crc != stored {
            return Err(RecordError::Bad(format!(
                "record checksum {stored:08x}, computed {crc:08x}"
            )));
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&b[KEY_AT..SEQ_AT]);
        let got = u64_at(b, SEQ_AT);
        if got != seq {
            return Err(RecordError::Bad(format!(
                "record holds sequence {got}, its position is {seq}"
            )));
        }
        if b[RESERVED_AT] != 0 {
            return Err(RecordError::Bad("reserved record byte is not zero".into()));
        }
        let slot = u32_at(b, SLOT_AT);
        let len = u16_at(b, LEN_AT);
        let value_crc = u32_at(b, VALUE_CRC_AT);
        let op = match b[KIND_AT] {
            PUT if usize::from(len) <= VALUE_MAX => Op::Put {
                slot,
                len,
                value_crc,
            },
            PUT => {
                return Err(RecordError::Bad(format!(
                    "value length {len} over {VALUE_MAX}"
                )));
            }
            DELETE if slot == 0 && len == 0 && value_crc == 0 => Op::Delete,
            DELETE => return Err(RecordError::Bad("delete record with a value".into())),
            k => return Err(RecordError::Bad(format!("unknown record kind {k}"))),
        };
        Ok(Record {
            key: Key(key),
            seq,
            op,
        })
    }
}

/// The checksum stored for a value.
pub fn value_crc(value: &[u8]) -> u32 {
    crc32c::crc32c(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put(key: u64, seq: u64, slot: u32, value: &[u8]) -> Record {
        Record {
            key: Key::from(key),
            seq,
            op: Op::Put {
                slot,
                len: value.len() as u16,
                value_crc: value_crc(value),
            },
        }
    }

    #[test]
    fn layout_is_32_bytes() {
        assert_eq!(RECORD_SIZE, 32);
        assert_eq!(crate::format::PAGE % RECORD_SIZE, 0);
    }

    #[test]
    fn zero_record_is_empty_not_valid() {
        assert_eq!(
            Record::decode(&[0; RECORD_SIZE], 0),
            Err(RecordError::Empty)
        );
    }

    #[test]
    fn all_zero_key_and_value_are_valid() {
        let r = put(0, 0, 0, &[]);
        assert_eq!(Record::decode(&r.encode(), 0), Ok(r));
    }

    #[test]
    fn misplaced_record_is_refused() {
        let r = put(5, 10, 3, b"x");
        assert!(matches!(
            Record::decode(&r.encode(), 11),
            Err(RecordError::Bad(_))
        ));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let good = put(0x0102030405060708, 77, 99, b"hello").encode();
        for bit in 0..RECORD_SIZE * 8 {
            let mut b = good;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Record::decode(&b, 77).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn known_bytes() {
        // The example in docs/FORMAT.md: key 42 put with "hello" in slot 0 as record 0.
        let b = put(42, 0, 0, b"hello").encode();
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex,
            format!(
                "000000000000002a{}{}{}0100{:08x}{:08x}",
                "0000000000000000",
                "00000000",
                "0500",
                value_crc(b"hello").swap_bytes(),
                crc32c::crc32c(&b[..28]).swap_bytes()
            )
        );
    }

    proptest! {
        #[test]
        fn round_trip(key: u64, seq: u64, slot: u32, value in proptest::collection::vec(any::<u8>(), 0..=VALUE_MAX), del: bool) {
            let r = if del {
                Record { key: Key::from(key), seq, op: Op::Delete }
            } else {
                put(key, seq, slot, &value)
            };
            prop_assert_eq!(Record::decode(&r.encode(), seq), Ok(r));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::array::uniform32(any::<u8>()), seq: u64) {
            let _ = Record::decode(&bytes, seq);
        }
    }
}
