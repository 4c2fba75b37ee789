//! The batch intent: what makes an atomic batch of puts and deletes all-or-nothing across a
//! crash, whatever the durability.
//!
//! # File
//!
//! `intent` at the top of the data directory, made by the first atomic batch. Every batch
//! rewrites it in place from offset 0, in one write, before it changes any shard; with
//! durability `always` that write is also synced first. Integers are little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `magic`: `toykv.i\0` |
//! | 8 | 4 | `version`: 1 |
//! | 12 | 4 | `count`: entries in the payload |
//! | 16 | 8 | `id`: the batch's number, one more than the last batch's |
//! | 24 | 4 | `len`: payload bytes |
//! | 28 | 4 | `spans`: shards the batch writes records to |
//! | 32 | 28 | reserved, zero |
//! | 60 | 4 | CRC-32C of bytes 0..60, of the spans and of the payload |
//! | 64 | 16 × `spans` | per shard: `shard` (u32), `count` (u32) records, `first` (u64) record number |
//! | … | `len` | the entries, encoded as the journal's ([`journal`](super::journal)) |
//!
//! The file may be longer than the current batch (an earlier, larger one): the bytes past
//! the payload mean nothing. A batch holds at most [`MAX_BATCH_BYTES`] of entries, so open reads
//! at most [`MAX_INTENT_LEN`] bytes of the file.
//!
//! # Invariants and recovery
//!
//! A batch holds the lock of every shard it changes from before it writes its intent until
//! it has applied every entry, and writes no shard before its intent is written. With
//! durability `always` it first waits, under the store's batch lock, until the batch before it
//! is durable: at most one batch, the one whose intent is on disk, is applied and not durable. Its records
//! in shard `s` are numbers `first .. first + count` of that shard's log (a delete of a key
//! that does not exist writes no record, and the batch counts only records). So at open, with
//! each shard's log recovered:
//!
//! - an intent that does not decode was never written whole (no shard was changed): nothing
//!   to do;
//! - a shard whose log reaches `first + count` holds its part of the batch (and perhaps later
//!   writes); a shard whose log ends before holds only a prefix of its part and nothing after
//!   it, so open applies that shard's entries of the batch again, in order (applying one twice
//!   ends in the same state);
//! - with durability `always`, this happens after the journal's replay, and not at all when
//!   the replay met the batch's end entry ([`BATCH`](super::journal::BATCH)) with its `id`,
//!   or the epoch's mark (the end entry that starts the epoch's first frame) at or past it:
//!   the batch is durable whole, and the epoch's writes to its keys come after it;
//! - when the replay applied anything else, every shard takes its entries of the batch again,
//!   not only those whose log ends short: the epoch starts with a mark before the batch, so
//!   the batch never reached the journal and every replayed entry comes before it; the replay
//!   may have put older values of some of its keys back while keys the epoch never wrote kept
//!   the batch's. It is the only batch not durable, so no other can be half undone. (An epoch
//!   with no mark, from an older build, cannot tell a batch older than the epoch from one not
//!   durable: there only a shard that ends short makes every shard take the batch again.)
//!   This happens before the shards are synced and the journal's next epoch starts; the
//!   shards are synced even when nothing changed, since the next epoch's mark says the batch
//!   is durable in them.

use super::bytes::{u32_at, u64_at};

/// The intent's file name, at the top of the data directory.
pub const INTENT_NAME: &str = "intent";
/// The intent format's version.
pub const INTENT_VERSION: u32 = 1;

const MAGIC: [u8; 8] = *b"toykv.i\0";
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + MAGIC.len();
const COUNT_AT: usize = VERSION_AT + size_of::<u32>();
const ID_AT: usize = COUNT_AT + size_of::<u32>();
const LEN_AT: usize = ID_AT + size_of::<u64>();
const SPANS_AT: usize = LEN_AT + size_of::<u32>();
const RESERVED_AT: usize = SPANS_AT + size_of::<u32>();
/// Bytes before the spans.
pub const INTENT_HEADER_LEN: usize = 64;
const CRC_AT: usize = INTENT_HEADER_LEN - size_of::<u32>();
/// Bytes of one span.
pub const SPAN_LEN: usize = 16;
/// The most bytes of entries one batch may hold (about 60,000 puts of 256-byte values).
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// The longest intent: the header, a span for each of the most shards a store can have, and
/// the most entries. Open reads no more of an `intent` file than this.
pub const MAX_INTENT_LEN: usize =
    INTENT_HEADER_LEN + super::MAX_SHARDS as usize * SPAN_LEN + MAX_BATCH_BYTES;

/// A batch's records in one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The shard.
    pub shard: u32,
    /// Records the batch writes there.
    pub count: u32,
    /// The number of the first of them in the shard's log.
    pub first: u64,
}

/// A decoded intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent<'a> {
    /// The batch's number.
    pub id: u64,
    /// Entries in the payload.
    pub count: u32,
    /// Where its records go, per shard.
    pub spans: Vec<Span>,
    /// The entries.
    pub payload: &'a [u8],
}

/// The bytes of the intent of batch `id`: `count` entries in `payload`, records in `spans`.
pub fn encode_intent(id: u64, count: u32, spans: &[Span], payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.resize(INTENT_HEADER_LEN, 0);
    out[MAGIC_AT..VERSION_AT].copy_from_slice(&MAGIC);
    out[VERSION_AT..COUNT_AT].copy_from_slice(&INTENT_VERSION.to_le_bytes());
    out[COUNT_AT..ID_AT].copy_from_slice(&count.to_le_bytes());
    out[ID_AT..LEN_AT].copy_from_slice(&id.to_le_bytes());
    out[LEN_AT..SPANS_AT].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[SPANS_AT..RESERVED_AT].copy_from_slice(&(spans.len() as u32).to_le_bytes());
    for s in spans {
        out.extend_from_slice(&s.shard.to_le_bytes());
        out.extend_from_slice(&s.count.to_le_bytes());
        out.extend_from_slice(&s.first.to_le_bytes());
    }
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[..CRC_AT]), &out[INTENT_HEADER_LEN..]);
    out[CRC_AT..INTENT_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes an intent file's bytes, or says why they are not an intent (a write cut short,
/// or not this format).
pub fn decode_intent(b: &[u8]) -> Result<Intent<'_>, String> {
    let Some(h) = b.get(..INTENT_HEADER_LEN) else {
        return Err(format!("{} bytes, short of an intent's header", b.len()));
    };
    if h[MAGIC_AT..VERSION_AT] != MAGIC {
        return Err(format!("magic {:02x?}, not an intent's", &h[..VERSION_AT]));
    }
    let len = u32_at(h, LEN_AT) as usize;
    let spans = u32_at(h, SPANS_AT) as usize;
    let end = spans
        .checked_mul(SPAN_LEN)
        .and_then(|n| n.checked_add(INTENT_HEADER_LEN + len));
    let Some(body) = end.and_then(|end| b.get(INTENT_HEADER_LEN..end)) else {
        return Err(format!(
            "{spans} spans and a {len}-byte payload run past the file's {} bytes",
            b.len()
        ));
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..CRC_AT]), body);
    if crc != u32_at(h, CRC_AT) {
        return Err("checksum mismatch".into());
    }
    let version = u32_at(h, VERSION_AT);
    if version != INTENT_VERSION {
        return Err(format!(
            "version {version}, this build reads {INTENT_VERSION}"
        ));
    }
    let (table, payload) = body.split_at(spans * SPAN_LEN);
    let spans = table
        .chunks_exact(SPAN_LEN)
        .map(|s| Span {
            shard: u32_at(s, 0),
            count: u32_at(s, 4),
            first: u64_at(s, 8),
        })
        .collect();
    Ok(Intent {
        id: u64_at(h, ID_AT),
        count: u32_at(h, COUNT_AT),
        spans,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::journal::{encode_delete, encode_put};

    #[test]
    fn an_intent_decodes_as_written_and_refuses_a_cut_or_flipped_copy() {
        let mut payload = Vec::new();
        encode_put(&mut payload, 7u64.to_be_bytes(), b"seven");
        encode_delete(&mut payload, 8u64.to_be_bytes());
        let spans = [
            Span {
                shard: 0,
                count: 1,
                first: 10,
            },
            Span {
                shard: 3,
                count: 1,
                first: 99,
            },
        ];
        let mut b = Vec::new();
        encode_intent(42, 2, &spans, &payload, &mut b);
        let i = decode_intent(&b).unwrap();
        assert_eq!(
            (i.id, i.count, &i.spans[..], i.payload),
            (42, 2, &spans[..], &payload[..])
        );
        // Longer files (an earlier, larger batch) decode the same.
        b.extend_from_slice(&[0xAA; 100]);
        assert_eq!(decode_intent(&b).unwrap().payload, &payload[..]);
        let whole = INTENT_HEADER_LEN + 2 * SPAN_LEN + payload.len();
        assert!(
            decode_intent(&b[..whole - 1])
                .unwrap_err()
                .contains("run past")
        );
        b[INTENT_HEADER_LEN + 8] ^= 1;
        assert!(decode_intent(&b).unwrap_err().contains("checksum"));
        assert!(decode_intent(&[0u8; 10]).is_err());
        assert!(decode_intent(&[0u8; 100]).unwrap_err().contains("magic"));
    }
}
