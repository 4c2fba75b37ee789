//! File headers and sync marks.
//!
//! # Header page
//!
//! Every toykv file starts with a header page of [`PAGE`] (4096) bytes, so the data after it
//! starts aligned for direct I/O on any device up to 4096-byte logical blocks. The page holds a
//! 64-byte header at offset 0; the rest is zero except for the sync marks in the buffer's.
//! Integers are little-endian.
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 8 | `magic` | `toykv.k\0`, `toykv.v\0`, `toykv.b\0` or `toykv.s\0`: the file kind |
//! | 8 | 4 | `version` | format version, [`VERSION`] |
//! | 12 | 4 | `page` | header page length, 4096 |
//! | 16 | 4 | `section_slots` | records per key section = slots per value section |
//! | 20 | 4 | `slot_size` | bytes per value slot, 256 |
//! | 24 | 4 | `record_size` | bytes per key record, 32 |
//! | 28 | 4 | `section` | this file's section number; in `STORE`, the number of shards |
//! | 32 | 28 | reserved | zero |
//! | 60 | 4 | `crc` | CRC-32C of bytes 0..60 |
//!
//! A header never changes after its file is made durable. (The buffer carries, besides its own
//! header, one header page per bank naming the value section the bank holds: it is rewritten
//! when the bank takes a new section, and zeroed when the bank is freed; see `store::buffer`.)
//! The `STORE` file at the top of a data directory is
//! one header page of kind `toykv.s\0` whose `section` field is the store's shard count.
//!
//! # Sync marks (in `buffer.b`)
//!
//! The store records how many key records were durable at the last `sync()`, so that
//! recovery can tell a torn tail (records after the mark: dropped) from corruption or a lost
//! file (records before it: reported). Two copies live in different 512-byte sectors of the
//! buffer's header page, at [`MARK_A`] and [`MARK_B`]; a sync overwrites the older copy, so a
//! write torn by power loss leaves the other intact. Each mark is 24 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `generation`: higher is newer |
//! | 8 | 8 | `synced`: key records 0..synced of the log are durable |
//! | 16 | 4 | `first`: the lowest key section kept; garbage collection removed those below |
//! | 20 | 4 | `crc`: CRC-32C of bytes 0..20 |
//!
//! A mark whose checksum fails (all zeros included) counts as absent.

use super::bytes::{put_u32, u32_at, u64_at};
use super::{RECORD_SIZE, SLOT_SIZE};

/// Length of the header page at the start of every file.
pub const PAGE: usize = 4096;
/// The format version this build writes and reads.
pub const VERSION: u32 = 2;

const MAGIC_LEN: usize = 8;
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + MAGIC_LEN;
const PAGE_AT: usize = VERSION_AT + size_of::<u32>();
const SLOTS_AT: usize = PAGE_AT + size_of::<u32>();
const SLOT_SIZE_AT: usize = SLOTS_AT + size_of::<u32>();
const RECORD_SIZE_AT: usize = SLOT_SIZE_AT + size_of::<u32>();
const SECTION_AT: usize = RECORD_SIZE_AT + size_of::<u32>();
const RESERVED_AT: usize = SECTION_AT + size_of::<u32>();
/// Length of the header proper, checksum included.
pub const HEADER_LEN: usize = 64;
const CRC_AT: usize = HEADER_LEN - size_of::<u32>();

/// Offset of the first sync mark in the buffer's header page.
pub const MARK_A: usize = 512;
/// Offset of the second sync mark, in another sector.
pub const MARK_B: usize = 1024;
const MARK_GEN_AT: usize = 0;
const MARK_SYNCED_AT: usize = MARK_GEN_AT + size_of::<u64>();
const MARK_FIRST_AT: usize = MARK_SYNCED_AT + size_of::<u64>();
const MARK_CRC_AT: usize = MARK_FIRST_AT + size_of::<u32>();
/// Length of one sync mark.
pub const MARK_LEN: usize = MARK_CRC_AT + size_of::<u32>();

/// The kinds of file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `.k`: a key section.
    Keys,
    /// `.v`: a value section.
    Values,
    /// `.b`: the write buffer.
    Buffer,
    /// `STORE`: the store's description (its shard count).
    Store,
}

impl Kind {
    /// The magic bytes that open a file of this kind.
    pub const fn magic(self) -> [u8; MAGIC_LEN] {
        match self {
            Kind::Keys => *b"toykv.k\0",
            Kind::Values => *b"toykv.v\0",
            Kind::Buffer => *b"toykv.b\0",
            Kind::Store => *b"toykv.s\0",
        }
    }

    /// A name for error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Keys => "key section",
            Kind::Values => "value section",
            Kind::Buffer => "write buffer",
            Kind::Store => "store file",
        }
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The file kind.
    pub kind: Kind,
    /// Records per key section, slots per value section.
    pub section_slots: u32,
    /// The section this file holds (0 in the buffer's own header; the shard count in `STORE`).
    pub section: u32,
}

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The magic is not the expected kind's; holds the bytes found.
    Magic(Vec<u8>),
    /// The version is not [`VERSION`].
    Version(u32),
    /// The checksum fails or a field is impossible.
    Bad(String),
}

impl Header {
    /// Encodes the header into its 64 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[MAGIC_AT..VERSION_AT].copy_from_slice(&self.kind.magic());
        put_u32(&mut b, VERSION_AT, VERSION);
        put_u32(&mut b, PAGE_AT, PAGE as u32);
        put_u32(&mut b, SLOTS_AT, self.section_slots);
        put_u32(&mut b, SLOT_SIZE_AT, SLOT_SIZE as u32);
        put_u32(&mut b, RECORD_SIZE_AT, RECORD_SIZE as u32);
        put_u32(&mut b, SECTION_AT, self.section);
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        put_u32(&mut b, CRC_AT, crc);
        b
    }

    /// Decodes and checks a header of the expected kind from the first bytes of a file.
    pub fn decode(b: &[u8], kind: Kind) -> Result<Header, HeaderError> {
        let Some(b) = b.get(..HEADER_LEN) else {
            return Err(HeaderError::Bad(format!(
                "file too short for a header: {} of {HEADER_LEN} bytes",
                b.len()
            )));
        };
        if b[MAGIC_AT..VERSION_AT] != kind.magic() {
            return Err(HeaderError::Magic(b[MAGIC_AT..VERSION_AT].to_vec()));
        }
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        if crc != u32_at(b, CRC_AT) {
            return Err(HeaderError::Bad(format!(
                "header checksum {:08x}, computed {crc:08x}",
                u32_at(b, CRC_AT)
            )));
        }
        let version = u32_at(b, VERSION_AT);
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let field = |at: usize, want: usize, what: &str| {
            let got = u32_at(b, at);
            if got as usize == want {
                Ok(())
            } else {
                Err(HeaderError::Bad(format!(
                    "{what} is {got}, expected {want}"
                )))
            }
        };
        field(PAGE_AT, PAGE, "header page length")?;
        field(SLOT_SIZE_AT, SLOT_SIZE, "slot size")?;
        field(RECORD_SIZE_AT, RECORD_SIZE, "record size")?;
        if b[RESERVED_AT..CRC_AT].iter().any(|&x| x != 0) {
            return Err(HeaderError::Bad(
                "reserved header bytes are not zero".into(),
            ));
        }
        let section_slots = u32_at(b, SLOTS_AT);
        if let Err(why) = super::check_section_slots(section_slots) {
            return Err(HeaderError::Bad(why));
        }
        Ok(Header {
            kind,
            section_slots,
            section: u32_at(b, SECTION_AT),
        })
    }
}

/// A sync mark: key records `0..synced` were durable at sync `generation`, and key sections
/// below `first` were removed by garbage collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Mark {
    /// Increases with every sync of the shard.
    pub generation: u64,
    /// Durable records at the start of the log.
    pub synced: u64,
    /// The lowest key section the log keeps.
    pub first: u32,
}

impl Mark {
    /// Encodes the mark into its [`MARK_LEN`] bytes.
    pub fn encode(&self) -> [u8; MARK_LEN] {
        let mut b = [0u8; MARK_LEN];
        b[MARK_GEN_AT..MARK_SYNCED_AT].copy_from_slice(&self.generation.to_le_bytes());
        b[MARK_SYNCED_AT..MARK_FIRST_AT].copy_from_slice(&self.synced.to_le_bytes());
        put_u32(&mut b, MARK_FIRST_AT, self.first);
        let crc = crc32c::crc32c(&b[..MARK_CRC_AT]);
        put_u32(&mut b, MARK_CRC_AT, crc);
        b
    }

    /// Decodes one mark; `None` when its checksum fails.
    pub fn decode(b: &[u8; MARK_LEN]) -> Option<Mark> {
        if crc32c::crc32c(&b[..MARK_CRC_AT]) != u32_at(b, MARK_CRC_AT) {
            return None;
        }
        Some(Mark {
            generation: u64_at(b, MARK_GEN_AT),
            synced: u64_at(b, MARK_SYNCED_AT),
            first: u32_at(b, MARK_FIRST_AT),
        })
    }

    /// The newer of the two copies in a header page, and the offset the next mark goes to.
    pub fn newest(page: &[u8; PAGE]) -> (Mark, usize) {
        let read = |at: usize| {
            let mut b = [0u8; MARK_LEN];
            b.copy_from_slice(&page[at..at + MARK_LEN]);
            Mark::decode(&b)
        };
        match (read(MARK_A), read(MARK_B)) {
            (Some(a), Some(b)) if b.generation > a.generation => (b, MARK_A),
            (Some(a), _) => (a, MARK_B),
            (None, Some(b)) => (b, MARK_A),
            (None, None) => (Mark::default(), MARK_A),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn page_with(h: &Header) -> [u8; PAGE] {
        let mut p = [0u8; PAGE];
        p[..HEADER_LEN].copy_from_slice(&h.encode());
        p
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            kind: Kind::Keys,
            section_slots: 65536,
            section: 7,
        };
        assert_eq!(Header::decode(&page_with(&h), Kind::Keys), Ok(h));
    }

    #[test]
    fn wrong_kind_is_foreign() {
        let h = Header {
            kind: Kind::Values,
            section_slots: 64,
            section: 0,
        };
        let got = Header::decode(&page_with(&h), Kind::Keys);
        assert_eq!(got, Err(HeaderError::Magic(b"toykv.v\0".to_vec())));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let h = Header {
            kind: Kind::Buffer,
            section_slots: 16,
            section: 3,
        };
        let good = h.encode();
        for bit in 0..HEADER_LEN * 8 {
            let mut b = good;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::decode(&b, Kind::Buffer).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn future_version_is_named() {
        let h = Header {
            kind: Kind::Keys,
            section_slots: 64,
            section: 0,
        };
        let mut b = h.encode();
        put_u32(&mut b, VERSION_AT, 9);
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        put_u32(&mut b, CRC_AT, crc);
        assert_eq!(Header::decode(&b, Kind::Keys), Err(HeaderError::Version(9)));
    }

    #[test]
    fn short_input_is_refused() {
        assert!(matches!(
            Header::decode(&[0u8; 10], Kind::Keys),
            Err(HeaderError::Bad(_))
        ));
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![Just(Kind::Keys), Just(Kind::Values), Just(Kind::Buffer)]
    }

    proptest! {
        #[test]
        fn header_round_trip(kind in kind(), shift in 4u32..=24, section: u32) {
            let h = Header { kind, section_slots: 1 << shift, section };
            prop_assert_eq!(Header::decode(&page_with(&h), kind), Ok(h));
        }

        #[test]
        fn impossible_section_slots_are_refused(kind in kind(), slots: u32, section: u32) {
            let h = Header { kind, section_slots: slots, section };
            let got = Header::decode(&h.encode(), kind);
            if super::super::check_section_slots(slots).is_ok() {
                prop_assert_eq!(got, Ok(h));
            } else {
                prop_assert!(matches!(got, Err(HeaderError::Bad(_))), "{:?}", got);
            }
        }

        #[test]
        fn decoded_garbage_is_canonical(kind in kind(), bytes in proptest::collection::vec(any::<u8>(), 0..100), fix_crc: bool) {
            let mut b = bytes;
            if fix_crc && b.len() >= HEADER_LEN {
                b[..MAGIC_LEN].copy_from_slice(&kind.magic());
                let crc = crc32c::crc32c(&b[..CRC_AT]);
                put_u32(&mut b, CRC_AT, crc);
            }
            if let Ok(h) = Header::decode(&b, kind) {
                prop_assert_eq!(&h.encode()[..], &b[..HEADER_LEN]);
            }
        }

        #[test]
        fn mark_round_trip(generation: u64, synced: u64, first: u32) {
            let m = Mark { generation, synced, first };
            prop_assert_eq!(Mark::decode(&m.encode()), Some(m));
        }

        #[test]
        fn decoded_mark_is_canonical(b in proptest::array::uniform24(any::<u8>())) {
            if let Some(m) = Mark::decode(&b) {
                prop_assert_eq!(m.encode(), b);
            }
        }
    }

    #[test]
    fn newest_mark_wins_and_torn_mark_falls_back() {
        let mut p = [0u8; PAGE];
        assert_eq!(Mark::newest(&p), (Mark::default(), MARK_A));
        let m1 = Mark {
            generation: 1,
            synced: 10,
            first: 0,
        };
        p[MARK_A..MARK_A + MARK_LEN].copy_from_slice(&m1.encode());
        assert_eq!(Mark::newest(&p), (m1, MARK_B));
        let m2 = Mark {
            generation: 2,
            synced: 20,
            first: 3,
        };
        p[MARK_B..MARK_B + MARK_LEN].copy_from_slice(&m2.encode());
        assert_eq!(Mark::newest(&p), (m2, MARK_A));
        p[MARK_B + 3] ^= 0x10; // torn write of the newer copy
        assert_eq!(Mark::newest(&p), (m1, MARK_B));
    }
}
