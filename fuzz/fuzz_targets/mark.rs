//! Fuzzes the sync mark decoder, `Mark::decode`, and the choice between the two copies,
//! `Mark::newest`.
//!
//! The first input byte says which of the two 24-byte marks that follow get a correct
//! CRC-32C written first (random bytes almost never carry one).
//!
//! Properties: a decoded mark is canonical (encoding it gives back its 24 bytes); a mark with
//! a correct checksum always decodes; `newest` agrees with a model: the valid copy with the
//! higher generation (the first on a tie), the next mark going to the other copy's place; no
//! valid copy gives generation 0, synced 0, next at `MARK_A`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/crc.rs"]
mod crc;
use crc::crc32c;
use toykv::format::{MARK_A, MARK_B, MARK_LEN, Mark, PAGE};

/// Offset of a mark's CRC-32C (docs: bytes 20..24, over 0..20).
const CRC_AT: usize = 20;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut marks = [[0u8; MARK_LEN]; 2];
    for (i, m) in marks.iter_mut().enumerate() {
        for (j, x) in m.iter_mut().enumerate() {
            *x = rest.get(i * MARK_LEN + j).copied().unwrap_or(0);
        }
        if sel & (1 << i) != 0 {
            let crc = crc32c(&m[..CRC_AT]);
            m[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let decoded = marks.map(|m| Mark::decode(&m));
    for (m, d) in marks.iter().zip(decoded) {
        let valid = crc32c(&m[..CRC_AT]).to_le_bytes() == m[CRC_AT..];
        assert_eq!(d.is_some(), valid, "{m:?}");
        if let Some(d) = d {
            assert_eq!(&d.encode(), m, "not canonical: {d:?}");
            assert_eq!(Mark::decode(&d.encode()), Some(d));
        }
    }
    let mut page = [0u8; PAGE];
    page[MARK_A..MARK_A + MARK_LEN].copy_from_slice(&marks[0]);
    page[MARK_B..MARK_B + MARK_LEN].copy_from_slice(&marks[1]);
    let want = match decoded {
        [Some(a), Some(b)] if b.generation > a.generation => (b, MARK_A),
        [Some(a), _] => (a, MARK_B),
        [None, Some(b)] => (b, MARK_A),
        [None, None] => (Mark::default(), MARK_A),
    };
    assert_eq!(Mark::newest(&page), want);
});
