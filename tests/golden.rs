//! Golden bytes: the hex examples of `docs/FORMAT.md`, read from the document itself, against
//! what the public `toykv::format` encoders produce today. The document cannot drift from the
//! format, and a change of the format shows here as the first byte that differs.
//!
//! Every `xxd` dump in the document (lines `OFFSET: hhhh hhhh …  ascii`) is checked, in
//! order, against the bytes the test builds for that example; a dump the test does not know
//! fails the test, so a new example gets a golden check too.

use std::fmt::Write as _;
use std::path::Path;

use toykv::Key;
use toykv::format::intent::{Span, encode_intent};
use toykv::format::journal::{Frame, JournalHeader, encode_batch, encode_delete, encode_put};
use toykv::format::position::{Position, ReplId};
use toykv::format::record::value_crc;
use toykv::format::snapshot as snap;
use toykv::format::{
    DEFAULT_SECTION_SLOTS, Header, KEYS_DATA_AT, Kind, MARK_A, Mark, Op, PAGE, RECORD_SIZE, Record,
    SLOT_SIZE, bank_at,
};

/// One `xxd` line of the document: where it is, its offset, its bytes and its ASCII column.
#[derive(Debug)]
struct Line {
    line: usize,
    offset: u64,
    bytes: Vec<u8>,
    ascii: String,
}

/// The `xxd` dumps of the document, one per fenced block holding any, in order.
fn dumps(text: &str) -> Vec<Vec<Line>> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut block: Vec<Line> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.starts_with("```") {
            if fenced && !block.is_empty() {
                out.push(std::mem::take(&mut block));
            }
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        if let Some(line) = parse(i + 1, l) {
            block.push(line);
        }
    }
    out
}

/// Parses an `xxd` line: `0000abcd: 746f 796b …  toykv...`.
fn parse(line: usize, l: &str) -> Option<Line> {
    let (off, rest) = l.split_once(": ")?;
    if off.len() != 8 || !off.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let offset = u64::from_str_radix(off, 16).ok()?;
    // The hex column is 8 groups of 4 digits (fewer on a short last line), then two spaces.
    let (hex, ascii) = rest.split_once("  ")?;
    let digits: String = hex.split(' ').collect();
    assert!(
        digits.len().is_multiple_of(2) && digits.bytes().all(|b| b.is_ascii_hexdigit()),
        "FORMAT.md line {line}: unreadable hex column {hex:?}"
    );
    let bytes = (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect();
    Some(Line {
        line,
        offset,
        bytes,
        ascii: ascii.trim_start().to_string(),
    })
}

/// The bytes of a file as far as an example shows them: pieces at their offsets, zeros
/// between pieces within one page.
struct Image {
    name: &'static str,
    pieces: Vec<(u64, Vec<u8>)>,
}

impl Image {
    fn new(name: &'static str) -> Image {
        Image {
            name,
            pieces: Vec::new(),
        }
    }

    /// `bytes` at `offset`, followed by zeros to `len` bytes.
    fn at(mut self, offset: usize, bytes: &[u8], len: usize) -> Image {
        let mut b = bytes.to_vec();
        b.resize(len.max(bytes.len()), 0);
        self.pieces.push((offset as u64, b));
        self
    }

    fn byte(&self, offset: u64) -> Option<u8> {
        self.pieces.iter().find_map(|(at, b)| {
            offset
                .checked_sub(*at)
                .and_then(|i| b.get(i as usize).copied())
        })
    }
}

/// What `xxd` shows for a byte in its ASCII column.
fn shown(b: u8) -> char {
    if b.is_ascii_graphic() || b == b' ' {
        b as char
    } else {
        '.'
    }
}

/// The examples of `docs/FORMAT.md`, in the document's order, from today's encoders.
fn examples() -> Vec<Image> {
    let slots = DEFAULT_SECTION_SLOTS;
    let header = |kind, section| {
        Header {
            kind,
            section_slots: slots,
            section,
        }
        .encode()
    };
    let record = Record {
        key: Key::from(42u64),
        seq: 0,
        op: Op::Put {
            slot: 0,
            len: 5,
            value_crc: value_crc(b"hello"),
        },
    }
    .encode();
    assert_eq!(record.len(), RECORD_SIZE);
    let mark = Mark {
        generation: 1,
        synced: 1,
        first: 0,
    }
    .encode();
    let journal = JournalHeader {
        len: 64 << 10,
        epoch: 1,
    };
    // The epoch's first frame starts with its mark (no batch yet: 0), then the put.
    let mut payload = Vec::new();
    encode_batch(&mut payload, 0);
    encode_put(&mut payload, 1u64.to_be_bytes(), b"hello");
    let frame = Frame {
        len: payload.len() as u32,
        epoch: 1,
        number: 0,
        count: 2,
    };
    let mut frame_bytes = vec![0u8; frame.blocks() as usize * 4096];
    frame.encode(&payload, &mut frame_bytes);
    // The prose describes frames 1 and 2 too; their payloads are built here so that a change
    // of the entry encoding shows even though the document gives no dump of them.
    let (mut put_x, mut del) = (Vec::new(), Vec::new());
    encode_put(&mut put_x, 2u64.to_be_bytes(), b"x");
    encode_delete(&mut del, 2u64.to_be_bytes());
    assert_eq!(put_x, [1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, b'x']);
    assert_eq!(del, [2, 0, 0, 0, 0, 0, 0, 0, 2]);

    let mut entries = Vec::new();
    encode_put(&mut entries, 1u64.to_be_bytes(), b"hello");
    encode_put(&mut entries, 2u64.to_be_bytes(), b"x");
    let span = Span {
        shard: 0,
        count: 2,
        first: 0,
    };
    let mut intent = Vec::new();
    encode_intent(1, 2, &[span], &entries, &mut intent);

    let mut snapshot = snap::head(1).to_vec();
    snapshot.extend(snap::file_header("KEYMODE", 6));
    snapshot.extend(snap::data_header(b"bytes\n"));
    snapshot.extend(b"bytes\n");
    snapshot.extend(snap::tail(1));

    let position = Position {
        replid: ReplId::parse("5f0c1d4e2b7a98c3e6d1f0a4b3c2d1e0f9a8b7c6").unwrap(),
        offset: 5000,
        replid2: ReplId::parse("0123456789abcdef0123456789abcdef01234567").unwrap(),
        second_offset: Some(1001),
        keys: 42,
    }
    .encode();

    let bank = bank_at(slots, 1);
    vec![
        Image::new("STORE header (2 shards)").at(0, &header(Kind::Store, 2), PAGE),
        Image::new("key section 0 header and record 0 (put of key 42, \"hello\")")
            .at(0, &header(Kind::Keys, 0), PAGE)
            .at(KEYS_DATA_AT, &record, 2 * RECORD_SIZE),
        Image::new("sync mark A (generation 1, synced 1, first 0)").at(MARK_A, &mark, mark.len()),
        Image::new("bank 1 header page (value section 0)").at(bank, &header(Kind::Values, 0), PAGE),
        Image::new("value \"hello\" in slot 0 of bank 1").at(bank + PAGE, b"hello", SLOT_SIZE),
        Image::new("journal header of epoch 1 (slot 1)").at(
            journal.slot_at() as usize,
            &journal.encode(),
            4096,
        ),
        Image::new("journal frame 0 (the epoch's mark, put of key 1, \"hello\")").at(
            2 * 4096,
            &frame_bytes,
            0,
        ),
        Image::new("intent of batch 1 (puts of keys 1 and 2, shard 0)").at(0, &intent, 0),
        Image::new("snapshot stream of one file, KEYMODE").at(0, &snapshot, 0),
        Image::new("replication position (offset 5000, second offset 1001, 42 keys)")
            .at(0, &position, 0),
    ]
}

/// Every difference between the document's dumps and the examples, one message each.
fn differences(doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(doc).unwrap();
    let dumps = dumps(&text);
    let examples = examples();
    let mut out = Vec::new();
    if dumps.len() != examples.len() {
        out.push(format!(
            "{} has {} hex dumps; this test knows {} examples ({:?}): add the new one here",
            doc.display(),
            dumps.len(),
            examples.len(),
            examples.iter().map(|e| e.name).collect::<Vec<_>>()
        ));
    }
    for (dump, ex) in dumps.iter().zip(&examples) {
        'lines: for l in dump {
            let mut ascii = String::new();
            for (i, &got) in l.bytes.iter().enumerate() {
                let at = l.offset + i as u64;
                let Some(want) = ex.byte(at) else {
                    out.push(format!(
                        "example {:?}, FORMAT.md line {}: the document shows offset {at:#x}, \
                         which the example does not cover",
                        ex.name, l.line
                    ));
                    continue 'lines;
                };
                if got != want {
                    out.push(format!(
                        "example {:?}, FORMAT.md line {}: first differing byte at offset {at:#x}: \
                         the document says {got:02x}, the encoder gives {want:02x}",
                        ex.name, l.line
                    ));
                    continue 'lines;
                }
                ascii.push(shown(got));
            }
            if l.ascii != ascii {
                out.push(format!(
                    "example {:?}, FORMAT.md line {}: ASCII column {:?}, the bytes show {ascii:?}",
                    ex.name, l.line, l.ascii
                ));
            }
        }
    }
    out
}

#[test]
fn format_md_examples_are_todays_bytes() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md");
    let diffs = differences(&doc);
    let mut msg = String::new();
    for d in &diffs {
        writeln!(msg, "{d}").unwrap();
    }
    assert!(
        diffs.is_empty(),
        "docs/FORMAT.md disagrees with the format:\n{msg}"
    );
}

/// The check itself: a changed byte in a copy of the document is named, with its example,
/// line and offset.
#[test]
fn a_changed_byte_is_named() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let changed = text.replacen(
        "00000030: 0000 0000 0000 0000 0000 0000 7274 b8c9",
        "00000030: 0000 0000 0000 0000 0000 0000 7275 b8c9",
        1,
    );
    assert_ne!(
        changed, text,
        "the STORE example's last line is where the test expects it"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("FORMAT.md");
    std::fs::write(&copy, changed).unwrap();
    let diffs = differences(&copy);
    assert_eq!(diffs.len(), 1, "{diffs:#?}");
    assert!(
        diffs[0].contains("STORE header")
            && diffs[0].contains("offset 0x3d")
            && diffs[0].contains("says 75, the encoder gives 74"),
        "{}",
        diffs[0]
    );
}
