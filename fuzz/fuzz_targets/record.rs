//! Fuzzes the key record decoder, `Record::decode`.
//!
//! Input: a mode byte, the 8-byte sequence number the record's position implies, then the
//! 32-byte record. Random records almost never carry a valid CRC-32C, so some modes first
//! write the right checksum, and the right sequence number, so that the checks behind them
//! (sequence, reserved byte, kind, length, delete fields) are reached.
//!
//! Properties: only an all-zero record is `Empty`; a decoded record has the expected sequence
//! number and a length of at most 256; it is canonical (encoding gives back the 32 bytes) and
//! round-trips; the same bytes at another position are refused. A record built from
//! arbitrary fields round-trips when its length is at most 256.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/crc.rs"]
mod crc;
use crc::crc32c;
use toykv::format::{Op, RECORD_SIZE, Record, RecordError};
use toykv::{Key, VALUE_MAX};

/// Offsets from the format docs: sequence at 8, CRC-32C of bytes 0..28 at 28.
const SEQ_AT: usize = 8;
const CRC_AT: usize = 28;

fuzz_target!(|data: &[u8]| {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let mode = byte(0);
    let seq = u64::from_le_bytes(std::array::from_fn(|i| byte(1 + i)));
    let mut rec: [u8; RECORD_SIZE] = std::array::from_fn(|i| byte(9 + i));
    if mode & 0x02 != 0 {
        rec[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_le_bytes());
    }
    if mode & 0x01 != 0 {
        let crc = crc32c(&rec[..CRC_AT]);
        rec[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    }
    match Record::decode(&rec, seq) {
        Ok(r) => {
            assert_eq!(r.seq, seq);
            if let Op::Put { len, .. } = r.op {
                assert!(usize::from(len) <= VALUE_MAX, "{r:?}");
            }
            assert_eq!(r.encode(), rec, "not canonical: {r:?}");
            assert_eq!(Record::decode(&r.encode(), seq), Ok(r));
            assert!(Record::decode(&rec, seq.wrapping_add(1)).is_err());
        }
        Err(RecordError::Empty) => assert!(rec.iter().all(|&b| b == 0)),
        Err(RecordError::Bad(_)) => assert!(rec.iter().any(|&b| b != 0)),
    }
    // A record built from arbitrary fields.
    let key = Key(std::array::from_fn(|i| byte(41 + i)));
    let len = u16::from_le_bytes([byte(49), byte(50)]);
    let op = if mode & 0x04 != 0 {
        Op::Delete
    } else {
        Op::Put {
            slot: u32::from_le_bytes(std::array::from_fn(|i| byte(51 + i))),
            len,
            value_crc: u32::from_le_bytes(std::array::from_fn(|i| byte(55 + i))),
        }
    };
    let r = Record { key, seq, op };
    let got = Record::decode(&r.encode(), seq);
    if matches!(op, Op::Put { .. }) && usize::from(len) > VALUE_MAX {
        assert!(matches!(got, Err(RecordError::Bad(_))), "{r:?}: {got:?}");
    } else {
        assert_eq!(got, Ok(r));
    }
});
