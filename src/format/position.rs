//! The replication position: where in its replication stream a server stopped, kept across a
//! clean restart so that replicas (and the server itself, as a replica) continue with a
//! partial resync instead of copying the whole store again (Redis keeps the same in the
//! `repl-id`/`repl-offset` fields of the RDB it writes at shutdown).
//!
//! # File
//!
//! `REPLPOS` at the top of the data directory, written by the server at a graceful shutdown
//! once nothing can change the store any more and the store is synced, under `REPLPOS.tmp`
//! (written, fdatasynced, renamed into place, directory fsynced). The server reads and
//! removes it (and fsyncs the directory) at start, before it takes any command or applies any
//! write: after a crash there is no file, so a position is never used with data it does not
//! describe. Integers are little-endian; ids are 40 ASCII hex digits.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `magic`: `toykv.r\0` |
//! | 8 | 4 | `version`: 1 |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | `offset`: the stream's offset (bytes since `replid` began): the store holds exactly the stream's writes before it |
//! | 24 | 8 | `second_offset`: the first offset `replid2` does not cover (Redis's `second_repl_offset`); 0: none |
//! | 32 | 8 | `keys`: the live keys the store held; a start over another number ignores the file |
//! | 40 | 40 | `replid`: the replication id |
//! | 80 | 40 | `replid2`: the id before the last change of id, or 40 `0`s |
//! | 120 | 4 | reserved, zero |
//! | 124 | 4 | CRC-32C of bytes 0..124 |
//!
//! The file is exactly [`POSITION_LEN`] bytes: a shorter or longer one, another magic or
//! version, a checksum that fails, an id that is not 40 hex digits or a `second_offset` past
//! `offset + 1` is refused ([`PositionError`]) and the server starts without a position.

use super::bytes::{put_u32, u32_at, u64_at};

/// The position's file name, at the top of the data directory.
pub const POSITION_NAME: &str = "REPLPOS";
/// The name it is written under before being renamed into place.
pub const POSITION_TMP_NAME: &str = "REPLPOS.tmp";
/// The position format's version.
pub const POSITION_VERSION: u32 = 1;
/// Bytes of a replication id.
pub const ID_LEN: usize = 40;

const MAGIC: [u8; 8] = *b"toykv.r\0";
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + MAGIC.len();
const RESERVED_AT: usize = VERSION_AT + size_of::<u32>();
const OFFSET_AT: usize = RESERVED_AT + size_of::<u32>();
const SECOND_AT: usize = OFFSET_AT + size_of::<u64>();
const KEYS_AT: usize = SECOND_AT + size_of::<u64>();
const REPLID_AT: usize = KEYS_AT + size_of::<u64>();
const REPLID2_AT: usize = REPLID_AT + ID_LEN;
const RESERVED2_AT: usize = REPLID2_AT + ID_LEN;
const CRC_AT: usize = RESERVED2_AT + size_of::<u32>();
/// Bytes of the file.
pub const POSITION_LEN: usize = CRC_AT + size_of::<u32>();

/// A replication id: 40 ASCII hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReplId([u8; ID_LEN]);

impl ReplId {
    /// The id `s`, if it is 40 ASCII hex digits.
    pub fn parse(s: &str) -> Option<ReplId> {
        let b: [u8; ID_LEN] = s.as_bytes().try_into().ok()?;
        b.iter().all(u8::is_ascii_hexdigit).then_some(ReplId(b))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only hex digits get in (`parse`, `decode`): always ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for ReplId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for ReplId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server's replication position at a clean shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The replication id.
    pub replid: ReplId,
    /// The stream's offset: the store holds exactly the writes of the stream before it.
    pub offset: u64,
    /// The id before the last change of id (40 `0`s when none).
    pub replid2: ReplId,
    /// The first offset `replid2` does not cover, if there is a second id.
    pub second_offset: Option<u64>,
    /// Live keys in the store.
    pub keys: u64,
}

/// Why bytes are not a position.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// Not [`POSITION_LEN`] bytes (a write cut short, or another file).
    #[error("{0} bytes, not the {POSITION_LEN} of a replication position")]
    Length(usize),
    /// Another kind of file; holds the magic found.
    #[error("magic {0:02x?}, not a replication position's")]
    Magic(Vec<u8>),
    /// The checksum fails.
    #[error("checksum mismatch")]
    Checksum,
    /// Another version of the format.
    #[error("version {0}, this build reads {POSITION_VERSION}")]
    Version(u32),
    /// A field that cannot be: says which and why.
    #[error("{0}")]
    Field(String),
}

impl Position {
    /// The file's bytes.
    pub fn encode(&self) -> [u8; POSITION_LEN] {
        let mut b = [0u8; POSITION_LEN];
        b[MAGIC_AT..VERSION_AT].copy_from_slice(&MAGIC);
        put_u32(&mut b, VERSION_AT, POSITION_VERSION);
        b[OFFSET_AT..SECOND_AT].copy_from_slice(&self.offset.to_le_bytes());
        b[SECOND_AT..KEYS_AT].copy_from_slice(&self.second_offset.unwrap_or(0).to_le_bytes());
        b[KEYS_AT..REPLID_AT].copy_from_slice(&self.keys.to_le_bytes());
        b[REPLID_AT..REPLID2_AT].copy_from_slice(&self.replid.0);
        b[REPLID2_AT..RESERVED2_AT].copy_from_slice(&self.replid2.0);
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        put_u32(&mut b, CRC_AT, crc);
        b
    }

    /// Decodes the file's bytes, or says why they are not a position.
    pub fn decode(b: &[u8]) -> Result<Position, PositionError> {
        if b.len() != POSITION_LEN {
            return Err(PositionError::Length(b.len()));
        }
        if b[MAGIC_AT..VERSION_AT] != MAGIC {
            return Err(PositionError::Magic(b[MAGIC_AT..VERSION_AT].to_vec()));
        }
        if crc32c::crc32c(&b[..CRC_AT]) != u32_at(b, CRC_AT) {
            return Err(PositionError::Checksum);
        }
        let version = u32_at(b, VERSION_AT);
        if version != POSITION_VERSION {
            return Err(PositionError::Version(version));
        }
        let id = |at: usize, name: &str| {
            let mut raw = [0u8; ID_LEN];
            raw.copy_from_slice(&b[at..at + ID_LEN]);
            if raw.iter().all(u8::is_ascii_hexdigit) {
                Ok(ReplId(raw))
            } else {
                Err(PositionError::Field(format!(
                    "{name} {:?} is not 40 hex digits",
                    String::from_utf8_lossy(&raw)
                )))
            }
        };
        let offset = u64_at(b, OFFSET_AT);
        let second = u64_at(b, SECOND_AT);
        if second > offset.saturating_add(1) {
            return Err(PositionError::Field(format!(
                "second_offset {second} is past offset {offset} + 1"
            )));
        }
        Ok(Position {
            replid: id(REPLID_AT, "replid")?,
            offset,
            replid2: id(REPLID2_AT, "replid2")?,
            second_offset: (second != 0).then_some(second),
            keys: u64_at(b, KEYS_AT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Position {
        Position {
            replid: ReplId::parse("5f0c1d4e2b7a98c3e6d1f0a4b3c2d1e0f9a8b7c6").unwrap(),
            offset: 5000,
            replid2: ReplId::parse("0123456789abcdef0123456789abcdef01234567").unwrap(),
            second_offset: Some(1001),
            keys: 42,
        }
    }

    #[test]
    fn layout_is_as_documented() {
        assert_eq!(POSITION_LEN, 128);
        assert_eq!(
            (OFFSET_AT, SECOND_AT, KEYS_AT, REPLID_AT, REPLID2_AT, CRC_AT),
            (16, 24, 32, 40, 80, 124)
        );
        let b = example().encode();
        assert_eq!(&b[..8], b"toykv.r\0");
        assert_eq!(u64_at(&b, 16), 5000);
        assert_eq!(&b[40..80], b"5f0c1d4e2b7a98c3e6d1f0a4b3c2d1e0f9a8b7c6");
    }

    #[test]
    fn a_position_round_trips() {
        let p = example();
        assert_eq!(Position::decode(&p.encode()), Ok(p));
        let fresh = Position {
            replid2: ReplId::parse(&"0".repeat(40)).unwrap(),
            second_offset: None,
            offset: 0,
            keys: 0,
            ..p
        };
        assert_eq!(Position::decode(&fresh.encode()), Ok(fresh));
        let far = Position {
            offset: u64::MAX,
            second_offset: Some(u64::MAX),
            keys: u64::MAX,
            ..p
        };
        assert_eq!(Position::decode(&far.encode()), Ok(far));
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let b = example().encode();
        for n in 0..POSITION_LEN {
            assert_eq!(Position::decode(&b[..n]), Err(PositionError::Length(n)));
        }
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(
            Position::decode(&long),
            Err(PositionError::Length(POSITION_LEN + 1))
        );
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let b = example().encode();
        for i in 0..POSITION_LEN {
            for bit in 0..8 {
                let mut c = b;
                c[i] ^= 1 << bit;
                let e = Position::decode(&c).unwrap_err();
                if i < VERSION_AT {
                    assert!(matches!(e, PositionError::Magic(_)), "byte {i}: {e}");
                } else {
                    assert_eq!(e, PositionError::Checksum, "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn impossible_fields_are_refused_even_with_a_good_checksum() {
        let reseal = |mut b: [u8; POSITION_LEN]| {
            let crc = crc32c::crc32c(&b[..CRC_AT]);
            put_u32(&mut b, CRC_AT, crc);
            b
        };
        let mut b = example().encode();
        put_u32(&mut b, VERSION_AT, 2);
        assert_eq!(Position::decode(&reseal(b)), Err(PositionError::Version(2)));
        let mut b = example().encode();
        b[REPLID_AT + 3] = b'g';
        let e = Position::decode(&reseal(b)).unwrap_err();
        assert!(e.to_string().contains("replid"), "{e}");
        let mut b = example().encode();
        b[REPLID2_AT] = 0;
        let e = Position::decode(&reseal(b)).unwrap_err();
        assert!(e.to_string().contains("replid2"), "{e}");
        let mut b = example().encode();
        b[SECOND_AT..KEYS_AT].copy_from_slice(&5002u64.to_le_bytes());
        let e = Position::decode(&reseal(b)).unwrap_err();
        assert!(e.to_string().contains("second_offset"), "{e}");
        let e = Position::decode(b"hello, this is not a position").unwrap_err();
        assert!(e.to_string().contains("29 bytes"), "{e}");
    }

    #[test]
    fn ids_must_be_40_hex_digits() {
        assert!(ReplId::parse(&"a".repeat(40)).is_some());
        assert!(ReplId::parse(&"A".repeat(40)).is_some());
        assert!(ReplId::parse(&"a".repeat(39)).is_none());
        assert!(ReplId::parse(&"a".repeat(41)).is_none());
        assert!(ReplId::parse(&format!("{}z", "a".repeat(39))).is_none());
        assert!(ReplId::parse("?").is_none());
        assert_eq!(
            ReplId::parse(&"b".repeat(40)).unwrap().as_str(),
            "b".repeat(40)
        );
    }
}
