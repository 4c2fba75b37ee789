//! Showing keys, values and records to people: in [`dump`](super::dump) and by the `toykv`
//! command-line tool.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::format::{Op, Record};
use crate::key::Key;
use crate::server::keymode::KeyMode;

use super::walk::{Seen, Status};

/// Longest value preview in a dump, in bytes.
const PREVIEW: usize = 48;

/// Whether `bytes` are UTF-8 text without control characters.
fn printable(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A value as people read it: the text itself when it is printable UTF-8 (no control
/// characters), else `0x` followed by its bytes in hex.
///
/// ```
/// use toykv::admin::readable;
/// assert_eq!(readable(b"hello"), "hello");
/// assert_eq!(readable(&[0, 255]), "0x00ff");
/// ```
pub fn readable(value: &[u8]) -> String {
    match printable(value) {
        Some(text) => text.to_string(),
        None => format!("0x{}", hex(value)),
    }
}

/// A key in hex, then as `mode` shows it to clients: quoted (escaped) bytes without their zero
/// padding in [`KeyMode::Bytes`], the number in [`KeyMode::Numeric`].
///
/// ```
/// use toykv::admin::show_key;
/// use toykv::server::keymode::KeyMode;
/// assert_eq!(show_key(KeyMode::Bytes, (*b"k1\0\0\0\0\0\0").into()), r#"6b31000000000000 "k1""#);
/// assert_eq!(show_key(KeyMode::Numeric, 42u64.into()), "000000000000002a 42");
/// ```
pub fn show_key(mode: KeyMode, key: Key) -> String {
    let shown = mode.show(key);
    match mode {
        KeyMode::Bytes => format!("{} \"{}\"", hex(&key.bytes()), shown.escape_ascii()),
        KeyMode::Numeric => format!("{} {}", hex(&key.bytes()), String::from_utf8_lossy(&shown)),
    }
}

/// A value for a dump: quoted escaped text or `0x` hex, cut at [`PREVIEW`] bytes with `…`.
fn preview(value: &[u8]) -> String {
    let cut = value.len() > PREVIEW;
    let head = &value[..value.len().min(PREVIEW)];
    // Cutting may split a UTF-8 character: then fall back to the valid prefix's length.
    let text = printable(value).map(|_| match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    });
    let more = if cut { "…" } else { "" };
    match text {
        Some(t) => format!("\"{}\"{more}", t.escape_debug()),
        None => format!("0x{}{more}", hex(head)),
    }
}

/// One line of a dump for `seen`.
pub(crate) fn dump_line(out: &mut impl Write, mode: KeyMode, seen: &Seen<'_>) -> io::Result<()> {
    let mut line = format!("{} ", seen.seq);
    match seen.record {
        Some(Record { key, op, .. }) => match op {
            Op::Put { slot, len, .. } => {
                let value = seen.value.map_or_else(|| "(not read)".to_string(), preview);
                let _ = write!(
                    line,
                    "put key={} slot={slot} len={len} value={value}",
                    show_key(mode, key)
                );
            }
            Op::Delete => {
                let _ = write!(line, "del key={}", show_key(mode, key));
            }
        },
        None => {
            let name = seen
                .file
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let why = seen.why.unwrap_or("does not decode");
            let _ = write!(line, "bad {name} offset {}: {why}", seen.offset);
        }
    }
    if seen.value_ok == Some(false) {
        line.push_str(" [value checksum mismatch]");
    }
    let why = seen.why.filter(|_| seen.record.is_some());
    match (seen.status, why) {
        (Status::Synced, _) => {}
        (Status::Unsynced, _) => line.push_str(" [unsynced]"),
        (Status::Corrupt, Some(why)) => {
            let _ = write!(line, " [corrupt: synced but {why}]");
        }
        (Status::Corrupt, None) => line.push_str(" [corrupt: synced]"),
        (Status::Dropped, Some(why)) => {
            let _ = write!(line, " [dropped at open: {why}]");
        }
        (Status::Dropped, None) => line.push_str(" [dropped at open]"),
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_text_or_hex() {
        assert_eq!(readable(b""), "");
        assert_eq!(readable("héllo wörld".as_bytes()), "héllo wörld");
        assert_eq!(readable(b"tab\there"), "0x7461620968657265");
        assert_eq!(readable(&[0xff, 0x00]), "0xff00");
    }

    #[test]
    fn previews_are_quoted_and_cut() {
        assert_eq!(preview(b"hi \"x\""), r#""hi \"x\"""#);
        assert_eq!(preview(&[1, 2]), "0x0102");
        let long = [b'a'; 100];
        assert_eq!(preview(&long), format!("\"{}\"…", "a".repeat(PREVIEW)));
        let bin = [7u8; 100];
        assert_eq!(preview(&bin), format!("0x{}…", "07".repeat(PREVIEW)));
        // A cut through a multi-byte character keeps the whole characters before it.
        let mut text = "a".repeat(PREVIEW - 1);
        text.push_str("éé");
        assert_eq!(
            preview(text.as_bytes()),
            format!("\"{}\"…", "a".repeat(PREVIEW - 1))
        );
    }

    #[test]
    fn keys_show_hex_and_mode() {
        let k = Key::from(*b"a\0b\0\0\0\0\0");
        assert_eq!(show_key(KeyMode::Bytes, k), r#"6100620000000000 "a\x00b""#);
        assert_eq!(
            show_key(KeyMode::Bytes, Key::from(0u64)),
            r#"0000000000000000 """#
        );
        assert_eq!(
            show_key(KeyMode::Numeric, Key::from(12345u64)),
            "0000000000003039 12345"
        );
    }
}
