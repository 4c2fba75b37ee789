//! The journal: the store-level log that makes puts and deletes durable with durability
//! `always`, one flush per commit for every shard at once.
//!
//! # File
//!
//! `journal` at the top of the data directory, [`BLOCK`]-aligned and of a fixed length chosen
//! when it is made (`Options::journal_bytes`, 64 MiB by default). It is made under
//! `journal.tmp`, zero-filled to its full length (so that commits overwrite allocated blocks
//! and an `fdatasync` has no metadata to write), given its first header, synced and renamed
//! into place: a file named `journal` always has a valid header. Integers are little-endian.
//!
//! | blocks | content |
//! |---|---|
//! | 0 and 1 | header slots: epoch `e` lives in slot `e % 2` |
//! | 2 … | frames of the current epoch, one after the other, each starting on a block |
//!
//! # Header (64 bytes at the start of its slot; the rest of the block is zero)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `magic`: `toykv.j\0` |
//! | 8 | 4 | `version`: the format version, 2 |
//! | 12 | 4 | `block`: 4096 |
//! | 16 | 8 | `len`: the file's length in bytes |
//! | 24 | 8 | `epoch`: higher is newer |
//! | 32 | 28 | reserved, zero |
//! | 60 | 4 | CRC-32C of bytes 0..60 |
//!
//! The header with the higher epoch among the slots that decode is current. A *checkpoint*
//! (every shard synced, so everything the journal holds is durable in the shards) starts the
//! next epoch by writing its header into the other slot: a torn header write leaves the old
//! one valid, and its frames still replay.
//!
//! # Frame (one commit)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `magic`: `tkvj` |
//! | 4 | 4 | `len`: payload bytes |
//! | 8 | 8 | `epoch`: the header's epoch when it was written |
//! | 16 | 8 | `number`: 0 for the first frame of the epoch, then one more each |
//! | 24 | 4 | `count`: entries in the payload |
//! | 28 | 4 | CRC-32C of bytes 0..28 and of the payload |
//! | 32 | `len` | entries |
//!
//! followed by zeros to the next block boundary, where the next frame starts. An entry is an
//! operation byte ([`PUT`] or [`DELETE`]), the 8-byte key and, for a put, the value's length
//! (`u16`) and its bytes; or [`BATCH`] and a batch's 8-byte number (little-endian), which
//! follows the entries of an atomic batch (see [`intent`](super::intent)): replay applies
//! nothing for it, it tells open that the batch of that number is in the journal whole. The
//! first frame of every epoch starts with such an entry, the epoch's *mark*: the number of the
//! last batch whose entries a commit took before the epoch began (0: none), durable in the
//! shards by the checkpoint (or open) that started the epoch. Open tells from it whether the
//! batch of the intent was durable before the epoch or never reached the journal.
//!
//! # Invariants and recovery
//!
//! One commit is written (one aligned direct write) and synced before the next is written,
//! and a put is acknowledged only after the sync of the frame holding it. So the frames of
//! the current epoch are a gap-free run from block 2; the first block that is not the next
//! frame of the epoch (wrong magic, epoch or number, or a failed checksum: a frame of an
//! older epoch, zeros, or a commit torn by power loss, never acknowledged) ends the journal.
//! Opening a store replays every entry of the current epoch in order into the shards — the
//! operations of one key are journaled in the order the shard applied them — syncs the
//! shards and starts the next epoch. Replaying twice (a crash during replay) ends in the same
//! state: per key, the last journaled operation wins.

use super::bytes::{u16_at, u32_at, u64_at};
use super::header::VERSION;
use crate::key::VALUE_MAX;

/// The journal's block: every frame starts on one, and direct I/O on any device up to
/// 4096-byte logical blocks is aligned.
pub const BLOCK: usize = 4096;
/// The journal's file name, at the top of the data directory.
pub const JOURNAL_NAME: &str = "journal";
/// Header slots at the start of the file, one block each.
pub const SLOTS: usize = 2;
/// Where the first frame of an epoch starts.
pub const FRAMES_AT: u64 = (SLOTS * BLOCK) as u64;
/// The default journal length: 64 MiB.
pub const DEFAULT_JOURNAL_BYTES: u64 = 64 << 20;
/// The smallest journal length accepted (16 blocks).
pub const MIN_JOURNAL_BYTES: u64 = 16 * BLOCK as u64;

const MAGIC: [u8; 8] = *b"toykv.j\0";
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + MAGIC.len();
const BLOCK_AT: usize = VERSION_AT + size_of::<u32>();
const LEN_AT: usize = BLOCK_AT + size_of::<u32>();
const EPOCH_AT: usize = LEN_AT + size_of::<u64>();
const RESERVED_AT: usize = EPOCH_AT + size_of::<u64>();
/// Length of the header, checksum included.
pub const JOURNAL_HEADER_LEN: usize = 64;
const CRC_AT: usize = JOURNAL_HEADER_LEN - size_of::<u32>();

const FRAME_MAGIC: [u8; 4] = *b"tkvj";
const F_MAGIC_AT: usize = 0;
const F_LEN_AT: usize = F_MAGIC_AT + FRAME_MAGIC.len();
const F_EPOCH_AT: usize = F_LEN_AT + size_of::<u32>();
const F_NUMBER_AT: usize = F_EPOCH_AT + size_of::<u64>();
const F_COUNT_AT: usize = F_NUMBER_AT + size_of::<u64>();
const F_CRC_AT: usize = F_COUNT_AT + size_of::<u32>();
/// Length of a frame's header.
pub const FRAME_HEADER_LEN: usize = F_CRC_AT + size_of::<u32>();

/// Operation byte of a put entry.
pub const PUT: u8 = 1;
/// Operation byte of a delete entry.
pub const DELETE: u8 = 2;
/// Operation byte of the entry that ends an atomic batch's entries.
pub const BATCH: u8 = 3;
const KEY_LEN: usize = 8;
/// Length of a delete entry (and of a put entry before its value length).
pub const DELETE_LEN: usize = 1 + KEY_LEN;
/// Longest entry: a put of a 256-byte value.
pub const ENTRY_MAX: usize = DELETE_LEN + size_of::<u16>() + VALUE_MAX;

/// The payload of one frame is at most this long; a commit with more is split into frames.
pub const PAYLOAD_MAX: usize = 256 << 10;

/// A decoded journal header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalHeader {
    /// The file's length.
    pub len: u64,
    /// The epoch: frames of this epoch replay.
    pub epoch: u64,
}

impl JournalHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; JOURNAL_HEADER_LEN] {
        let mut b = [0u8; JOURNAL_HEADER_LEN];
        b[MAGIC_AT..VERSION_AT].copy_from_slice(&MAGIC);
        b[VERSION_AT..BLOCK_AT].copy_from_slice(&VERSION.to_le_bytes());
        b[BLOCK_AT..LEN_AT].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[LEN_AT..EPOCH_AT].copy_from_slice(&self.len.to_le_bytes());
        b[EPOCH_AT..RESERVED_AT].copy_from_slice(&self.epoch.to_le_bytes());
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header slot; why not, if it does not.
    pub fn decode(b: &[u8]) -> Result<JournalHeader, String> {
        let Some(b) = b.get(..JOURNAL_HEADER_LEN) else {
            return Err(format!("{} bytes, short of a header", b.len()));
        };
        if b.iter().all(|&x| x == 0) {
            return Err("all zeros".into());
        }
        if b[MAGIC_AT..VERSION_AT] != MAGIC {
            return Err(format!("magic {:02x?}, not a journal's", &b[..VERSION_AT]));
        }
        if crc32c::crc32c(&b[..CRC_AT]) != u32_at(b, CRC_AT) {
            return Err("checksum mismatch".into());
        }
        let version = u32_at(b, VERSION_AT);
        if version != VERSION {
            return Err(format!("version {version}, this build reads {VERSION}"));
        }
        let block = u32_at(b, BLOCK_AT);
        if block as usize != BLOCK {
            return Err(format!("block size {block}, expected {BLOCK}"));
        }
        let len = u64_at(b, LEN_AT);
        if len < MIN_JOURNAL_BYTES || !len.is_multiple_of(BLOCK as u64) {
            return Err(format!(
                "length {len} is not a whole number of blocks from {MIN_JOURNAL_BYTES}"
            ));
        }
        Ok(JournalHeader {
            len,
            epoch: u64_at(b, EPOCH_AT),
        })
    }

    /// Offset of the slot this header is written to.
    pub fn slot_at(&self) -> u64 {
        (self.epoch % SLOTS as u64) * BLOCK as u64
    }
}

/// One journaled operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalOp<'a> {
    /// A put of a value.
    Put([u8; 8], &'a [u8]),
    /// A delete.
    Delete([u8; 8]),
    /// The end of atomic batch number `.0`'s entries (nothing to apply).
    Batch(u64),
}

/// Appends the entry of a put to `out`. The value must be at most [`VALUE_MAX`] bytes.
pub fn encode_put(out: &mut Vec<u8>, key: [u8; 8], value: &[u8]) {
    out.push(PUT);
    out.extend_from_slice(&key);
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// Appends the entry of a delete to `out`.
pub fn encode_delete(out: &mut Vec<u8>, key: [u8; 8]) {
    out.push(DELETE);
    out.extend_from_slice(&key);
}

/// Appends the entry that ends atomic batch `id`'s entries.
pub fn encode_batch(out: &mut Vec<u8>, id: u64) {
    out.push(BATCH);
    out.extend_from_slice(&id.to_le_bytes());
}

/// The entry at the start of `b` and its length; why not, if none decodes.
pub fn decode_entry(b: &[u8]) -> Result<(JournalOp<'_>, usize), String> {
    let (Some(&op), Some(key)) = (b.first(), b.get(1..DELETE_LEN)) else {
        return Err(format!("{} bytes left, short of an entry", b.len()));
    };
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(key);
    match op {
        DELETE => Ok((JournalOp::Delete(k), DELETE_LEN)),
        BATCH => Ok((JournalOp::Batch(u64::from_le_bytes(k)), DELETE_LEN)),
        PUT => {
            let Some(l) = b.get(DELETE_LEN..DELETE_LEN + 2) else {
                return Err("a put entry ends before its value length".into());
            };
            let n = usize::from(u16_at(l, 0));
            if n > VALUE_MAX {
                return Err(format!(
                    "a put entry's value length {n} is above {VALUE_MAX}"
                ));
            }
            let at = DELETE_LEN + 2;
            let Some(v) = b.get(at..at + n) else {
                return Err(format!("a put entry's {n}-byte value runs past the frame"));
            };
            Ok((JournalOp::Put(k, v), at + n))
        }
        other => Err(format!(
            "entry operation byte {other}, expected {PUT}, {DELETE} or {BATCH}"
        )),
    }
}

/// The start of each entry of `payload` (which holds whole entries), for splitting it into
/// frames of at most [`PAYLOAD_MAX`] bytes: `(start, end, count)` of each frame's share.
pub fn split(payload: &[u8], max: usize) -> Result<Vec<(usize, usize, u32)>, String> {
    let mut out = Vec::new();
    let (mut start, mut at, mut count) = (0usize, 0usize, 0u32);
    while at < payload.len() {
        let (_, n) = decode_entry(&payload[at..])?;
        if at + n - start > max && count > 0 {
            out.push((start, at, count));
            (start, count) = (at, 0);
        }
        at += n;
        count += 1;
    }
    if count > 0 {
        out.push((start, at, count));
    }
    Ok(out)
}

/// A frame's header, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Payload bytes.
    pub len: u32,
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Its number in the epoch.
    pub number: u64,
    /// Entries in the payload.
    pub count: u32,
}

impl Frame {
    /// Blocks the frame takes, header and padding included.
    pub fn blocks(&self) -> u64 {
        (FRAME_HEADER_LEN + self.len as usize).div_ceil(BLOCK) as u64
    }

    /// Writes the frame's header and `payload` at the start of `out` (which must hold
    /// [`blocks`](Self::blocks) blocks) and zeros after them to its end.
    pub fn encode(&self, payload: &[u8], out: &mut [u8]) {
        let end = FRAME_HEADER_LEN + payload.len();
        out[F_MAGIC_AT..F_LEN_AT].copy_from_slice(&FRAME_MAGIC);
        out[F_LEN_AT..F_EPOCH_AT].copy_from_slice(&self.len.to_le_bytes());
        out[F_EPOCH_AT..F_NUMBER_AT].copy_from_slice(&self.epoch.to_le_bytes());
        out[F_NUMBER_AT..F_COUNT_AT].copy_from_slice(&self.number.to_le_bytes());
        out[F_COUNT_AT..F_CRC_AT].copy_from_slice(&self.count.to_le_bytes());
        out[FRAME_HEADER_LEN..end].copy_from_slice(payload);
        out[end..].fill(0);
        let crc = frame_crc(&out[..F_CRC_AT], payload);
        out[F_CRC_AT..FRAME_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads the header at the start of `b` if it is a frame of `epoch` numbered `number`;
    /// `None` otherwise (the end of the journal). The payload is checked by [`Frame::check`].
    pub fn peek(b: &[u8], epoch: u64, number: u64) -> Option<Frame> {
        Frame::read(b).filter(|f| f.epoch == epoch && f.number == number)
    }

    /// Reads the header at the start of `b` if it has a frame's magic and a possible length,
    /// whatever its epoch and number.
    pub fn read(b: &[u8]) -> Option<Frame> {
        let h = b.get(..FRAME_HEADER_LEN)?;
        if h[F_MAGIC_AT..F_LEN_AT] != FRAME_MAGIC {
            return None;
        }
        let f = Frame {
            len: u32_at(h, F_LEN_AT),
            epoch: u64_at(h, F_EPOCH_AT),
            number: u64_at(h, F_NUMBER_AT),
            count: u32_at(h, F_COUNT_AT),
        };
        (f.len as usize <= PAYLOAD_MAX).then_some(f)
    }

    /// Whether the frame's checksum holds over `b`, which starts with its header and holds at
    /// least its payload.
    pub fn check(&self, b: &[u8]) -> bool {
        let end = FRAME_HEADER_LEN + self.len as usize;
        let Some(payload) = b.get(FRAME_HEADER_LEN..end) else {
            return false;
        };
        frame_crc(&b[..F_CRC_AT], payload) == u32_at(b, F_CRC_AT)
    }
}

fn frame_crc(head: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(head), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_refuses_damage() {
        let h = JournalHeader {
            len: 1 << 20,
            epoch: 7,
        };
        let b = h.encode();
        assert_eq!(JournalHeader::decode(&b), Ok(h));
        assert_eq!(h.slot_at(), BLOCK as u64);
        for i in 0..JOURNAL_HEADER_LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(JournalHeader::decode(&d).is_err(), "byte {i}");
        }
        assert!(
            JournalHeader::decode(&[0; 64])
                .unwrap_err()
                .contains("zeros")
        );
        assert!(JournalHeader::decode(&b[..10]).is_err());
    }

    #[test]
    fn entries_round_trip_and_split() {
        let mut p = Vec::new();
        encode_put(&mut p, *b"key00001", b"hello");
        encode_delete(&mut p, *b"key00002");
        encode_put(&mut p, *b"key00003", &[7u8; VALUE_MAX]);
        let (a, n) = decode_entry(&p).unwrap();
        assert_eq!(
            (a, n),
            (JournalOp::Put(*b"key00001", b"hello"), DELETE_LEN + 2 + 5)
        );
        let (b, m) = decode_entry(&p[n..]).unwrap();
        assert_eq!((b, m), (JournalOp::Delete(*b"key00002"), DELETE_LEN));
        let (c, l) = decode_entry(&p[n + m..]).unwrap();
        assert_eq!(c, JournalOp::Put(*b"key00003", &[7u8; VALUE_MAX]));
        assert_eq!(l, ENTRY_MAX);
        assert_eq!(split(&p, PAYLOAD_MAX).unwrap(), vec![(0, p.len(), 3)]);
        assert_eq!(
            split(&p, n + m).unwrap(),
            vec![(0, n + m, 2), (n + m, p.len(), 1)]
        );
        // One entry longer than the limit still gets a frame of its own.
        assert_eq!(split(&p, 1).unwrap().len(), 3);
        assert!(decode_entry(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_entry(&p[..n - 1]).is_err());
        let mut long = p[..DELETE_LEN].to_vec();
        long.extend_from_slice(&300u16.to_le_bytes());
        assert!(decode_entry(&long).unwrap_err().contains("300"));
    }

    #[test]
    fn frames_encode_peek_and_check() {
        let mut p = Vec::new();
        encode_put(&mut p, *b"abcdefgh", b"v");
        let f = Frame {
            len: p.len() as u32,
            epoch: 3,
            number: 5,
            count: 1,
        };
        assert_eq!(f.blocks(), 1);
        let mut out = vec![0xAAu8; BLOCK];
        f.encode(&p, &mut out);
        assert!(out[FRAME_HEADER_LEN + p.len()..].iter().all(|&b| b == 0));
        assert_eq!(Frame::peek(&out, 3, 5), Some(f));
        assert!(f.check(&out));
        assert_eq!(Frame::peek(&out, 4, 5), None);
        assert_eq!(Frame::peek(&out, 3, 6), None);
        for i in 0..FRAME_HEADER_LEN + p.len() {
            let mut d = out.clone();
            d[i] ^= 1;
            let ok = Frame::peek(&d, 3, 5).is_some_and(|g| g.check(&d));
            assert!(!ok, "byte {i}");
        }
        let big = Frame {
            len: (BLOCK - FRAME_HEADER_LEN + 1) as u32,
            ..f
        };
        assert_eq!(big.blocks(), 2);
    }
}
