//! Fuzzes the file header decoder, `Header::decode`, for the three kinds of file.
//!
//! The first input byte picks the expected kind and a mode; the rest is the header. Since a
//! random header almost never has a valid CRC-32C, half of the runs first write the right
//! checksum (and, in some, the right magic) so that the field checks behind it are reached.
//!
//! Properties: a decoded header has the expected kind and a valid `section_slots`; it is
//! canonical (encoding it gives back exactly the 64 bytes it came from) and round-trips; the
//! same bytes are refused as any other kind. Headers built from arbitrary field values encode
//! and decode back, exactly when `section_slots` is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/crc.rs"]
mod crc;
use crc::crc32c;
use toykv::format::{HEADER_LEN, Header, HeaderError, Kind, check_section_slots};

/// Offset of the CRC-32C in the header (docs: bytes 60..64, over 0..60).
const CRC_AT: usize = 60;
const KINDS: [Kind; 4] = [Kind::Keys, Kind::Values, Kind::Buffer, Kind::Store];

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, x) in w.iter_mut().enumerate() {
        *x = b.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(sel % 4)];
    let mut bytes = rest.to_vec();
    if sel & 0x08 != 0 {
        bytes.resize(bytes.len().max(HEADER_LEN), 0);
        if sel & 0x10 != 0 {
            bytes[..8].copy_from_slice(&kind.magic());
        }
        let crc = crc32c(&bytes[..CRC_AT]);
        bytes[CRC_AT..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }
    match Header::decode(&bytes, kind) {
        Ok(h) => {
            assert_eq!(h.kind, kind);
            assert!(check_section_slots(h.section_slots).is_ok(), "{h:?}");
            assert_eq!(
                &h.encode()[..],
                &bytes[..HEADER_LEN],
                "not canonical: {h:?}"
            );
            assert_eq!(Header::decode(&h.encode(), kind), Ok(h));
            for other in KINDS.into_iter().filter(|&k| k != kind) {
                assert!(
                    matches!(Header::decode(&bytes, other), Err(HeaderError::Magic(_))),
                    "{kind:?} header accepted as {other:?}"
                );
            }
        }
        Err(HeaderError::Magic(m)) => assert_ne!(m, kind.magic()),
        Err(_) => {}
    }
    // A header made from arbitrary fields.
    let h = Header {
        kind,
        section_slots: u32_at(rest, 0),
        section: u32_at(rest, 4),
    };
    let got = Header::decode(&h.encode(), kind);
    if check_section_slots(h.section_slots).is_ok() {
        assert_eq!(got, Ok(h));
    } else {
        assert!(matches!(got, Err(HeaderError::Bad(_))), "{h:?}: {got:?}");
    }
});
