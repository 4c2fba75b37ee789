//! Showing replies to a person, in the style of `redis-cli`.
//!
//! | reply | shown as |
//! |---|---|
//! | simple string | `OK` |
//! | error | `(error) ERR …` |
//! | integer | `(integer) 3` |
//! | bulk string, printable UTF-8 | `"hello"` (quoted, `"` `\` `\n` `\r` `\t` escaped) |
//! | bulk string, anything else | `0x00ff10 (3 bytes)` (after 32 bytes the hex ends in `…`) |
//! | null | `(nil)` |
//! | array, push | `1) …` `2) …`, nested arrays indented under their number |
//! | RESP3 map | `1# key => value` |
//! | RESP3 set | `1~ …` |
//! | double, boolean, big number | `(double) 1.5`, `(true)`, `(big number) 123` |
//! | verbatim string (`INFO`) | its text, as lines |
//!
//! Quoted text uses the escapes the [`split`](super::split()) accepts, so it can be typed back.

use std::fmt::Write as _;

use crate::resp::Frame;

/// Bytes of a binary value shown in hex before the rest is elided.
const HEX_SHOWN: usize = 32;

/// Shows a reply; lines are separated by `\n`, with no newline at the end.
pub fn show(frame: &Frame) -> String {
    match frame {
        Frame::Simple(s) => s.clone(),
        Frame::Error(e) => format!("(error) {e}"),
        Frame::BlobError(e) => format!("(error) {}", String::from_utf8_lossy(e)),
        Frame::Integer(n) => format!("(integer) {n}"),
        Frame::Bulk(b) => value(b),
        Frame::Null => "(nil)".into(),
        Frame::Double(d) => format!("(double) {d}"),
        Frame::Boolean(b) => format!("({b})"),
        Frame::BigNumber(n) => format!("(big number) {n}"),
        Frame::Verbatim(_, text) => text_block(text),
        Frame::Array(items) | Frame::Push(items) => list(items, ')', "(empty array)"),
        Frame::Set(items) => list(items, '~', "(empty set)"),
        Frame::Map(pairs) => map(pairs),
    }
}

/// Shows a flat `key value key value …` array (a `RANGE` reply) as numbered
/// `key => value` lines; anything else as [`show`] does.
pub fn show_pairs(frame: &Frame) -> String {
    match frame {
        Frame::Array(items) if items.is_empty() => "(no keys)".into(),
        Frame::Array(items) if items.len() % 2 == 0 => {
            let pairs: Vec<(Frame, Frame)> = items
                .chunks_exact(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            numbered(pairs.iter().map(|(k, v)| pair(k, v)), pairs.len(), ')')
        }
        other => show(other),
    }
}

/// Shows a text reply (`INFO` in RESP2 is a bulk string) as its lines; anything else as
/// [`show`] does.
pub fn show_text(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(text) | Frame::Verbatim(_, text) => text_block(text),
        other => show(other),
    }
}

/// A value: quoted text if it is printable UTF-8, else hex with its length.
pub fn value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text)
            if text
                .chars()
                .all(|c| !c.is_control() || "\n\r\t".contains(c)) =>
        {
            quote(text)
        }
        _ => hex(bytes),
    }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::from("0x");
    for b in bytes.iter().take(HEX_SHOWN) {
        let _ = write!(out, "{b:02x}");
    }
    if bytes.len() > HEX_SHOWN {
        out.push('…');
    }
    let unit = if bytes.len() == 1 { "byte" } else { "bytes" };
    let _ = write!(out, " ({} {unit})", bytes.len());
    out
}

/// Text as lines: CRLF becomes LF, trailing line ends are dropped.
fn text_block(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text).replace("\r\n", "\n");
    text.trim_end_matches(['\n', '\r']).to_string()
}

fn list(items: &[Frame], marker: char, empty: &str) -> String {
    if items.is_empty() {
        return empty.into();
    }
    numbered(items.iter().map(show), items.len(), marker)
}

fn map(pairs: &[(Frame, Frame)]) -> String {
    if pairs.is_empty() {
        return "(empty map)".into();
    }
    numbered(pairs.iter().map(|(k, v)| pair(k, v)), pairs.len(), '#')
}

/// `key => value`, a value of several lines indented under its first.
fn pair(key: &Frame, value: &Frame) -> String {
    let head = format!("{} => ", show(key).replace('\n', " "));
    indent(&head, &show(value))
}

/// Numbers each entry (`1) `, right-aligned to the widest number) and indents its
/// continuation lines under it.
fn numbered(entries: impl Iterator<Item = String>, n: usize, marker: char) -> String {
    let width = n.to_string().len();
    let mut out = Vec::with_capacity(n);
    for (i, entry) in entries.enumerate() {
        let label = format!("{:>width$}{marker} ", i + 1);
        out.push(indent(&label, &entry));
    }
    out.join("\n")
}

/// `head` before the first line of `body`, spaces as wide as `head` before the others.
fn indent(head: &str, body: &str) -> String {
    let pad = " ".repeat(head.chars().count());
    let mut out = String::new();
    for (i, line) in body.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(if i == 0 { head } else { &pad });
        out.push_str(line);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Frame {
        Frame::Bulk(s.to_vec())
    }

    #[test]
    fn scalars() {
        assert_eq!(show(&Frame::ok()), "OK");
        assert_eq!(show(&Frame::Simple("PONG".into())), "PONG");
        assert_eq!(show(&Frame::Integer(-3)), "(integer) -3");
        assert_eq!(show(&Frame::Null), "(nil)");
        assert_eq!(show(&Frame::Double(1.5)), "(double) 1.5");
        assert_eq!(show(&Frame::Boolean(true)), "(true)");
        assert_eq!(show(&Frame::BigNumber("123".into())), "(big number) 123");
    }

    #[test]
    fn errors() {
        assert_eq!(
            show(&Frame::err("ERR unknown command 'foo'")),
            "(error) ERR unknown command 'foo'"
        );
        assert_eq!(
            show(&Frame::BlobError(b"SYNTAX bad".to_vec())),
            "(error) SYNTAX bad"
        );
    }

    #[test]
    fn text_is_quoted_and_escaped() {
        assert_eq!(show(&bulk(b"hello")), r#""hello""#);
        assert_eq!(show(&bulk(b"")), r#""""#);
        assert_eq!(show(&bulk(b"a \"b\" \\ c")), r#""a \"b\" \\ c""#);
        assert_eq!(show(&bulk(b"l1\nl2\tx\r")), r#""l1\nl2\tx\r""#);
        assert_eq!(show(&bulk("héllo 日本".as_bytes())), "\"héllo 日本\"");
    }

    #[test]
    fn binary_is_hex_with_length() {
        assert_eq!(show(&bulk(&[0x00, 0xff])), "0x00ff (2 bytes)");
        assert_eq!(show(&bulk(&[0x07])), "0x07 (1 byte)");
        // Valid UTF-8 with a control character is not text.
        assert_eq!(show(&bulk(b"ab\x00")), "0x616200 (3 bytes)");
        // Invalid UTF-8.
        assert_eq!(show(&bulk(b"caf\xe9")), "0x636166e9 (4 bytes)");
        let long: Vec<u8> = (0..=255).collect();
        let shown = show(&bulk(&long));
        assert!(shown.starts_with("0x000102"), "{shown}");
        assert!(shown.ends_with("1e1f… (256 bytes)"), "{shown}");
    }

    #[test]
    fn shown_text_splits_back() {
        for v in [&b"a b"[..], b"say \"hi\"", b"back\\slash", b"tab\there"] {
            let shown = show(&bulk(v));
            assert_eq!(
                super::super::split(&shown).unwrap(),
                [v.to_vec()],
                "{shown}"
            );
        }
    }

    #[test]
    fn arrays_are_numbered() {
        let f = Frame::Array(vec![bulk(b"a"), Frame::Null, Frame::Integer(1)]);
        assert_eq!(show(&f), "1) \"a\"\n2) (nil)\n3) (integer) 1");
        assert_eq!(show(&Frame::Array(vec![])), "(empty array)");
    }

    #[test]
    fn numbers_are_right_aligned() {
        let f = Frame::Array((0..10).map(Frame::Integer).collect());
        let shown = show(&f);
        assert!(shown.starts_with(" 1) (integer) 0\n 2)"), "{shown}");
        assert!(shown.ends_with("\n10) (integer) 9"), "{shown}");
    }

    #[test]
    fn nested_arrays_are_indented() {
        let f = Frame::Array(vec![
            bulk(b"0"),
            Frame::Array(vec![bulk(b"x"), Frame::Array(vec![bulk(b"y"), bulk(b"z")])]),
            Frame::Array(vec![]),
        ]);
        let want = "1) \"0\"\n\
                    2) 1) \"x\"\n   \
                       2) 1) \"y\"\n      \
                          2) \"z\"\n\
                    3) (empty array)";
        assert_eq!(show(&f), want);
    }

    #[test]
    fn resp3_maps_and_sets() {
        let f = Frame::Map(vec![
            (bulk(b"server"), bulk(b"toykv")),
            (bulk(b"proto"), Frame::Integer(3)),
            (bulk(b"modules"), Frame::Array(vec![])),
        ]);
        assert_eq!(
            show(&f),
            "1# \"server\" => \"toykv\"\n2# \"proto\" => (integer) 3\n3# \"modules\" => (empty array)"
        );
        assert_eq!(show(&Frame::Map(vec![])), "(empty map)");
        let set = Frame::Set(vec![
            Frame::Simple("write".into()),
            Frame::Simple("fast".into()),
        ]);
        assert_eq!(show(&set), "1~ write\n2~ fast");
    }

    #[test]
    fn map_values_of_several_lines_are_indented() {
        let f = Frame::Map(vec![(
            bulk(b"k"),
            Frame::Array(vec![Frame::Integer(1), Frame::Integer(2)]),
        )]);
        assert_eq!(
            show(&f),
            "1# \"k\" => 1) (integer) 1\n          2) (integer) 2"
        );
    }

    #[test]
    fn verbatim_text_is_shown_as_lines() {
        let f = Frame::Verbatim("txt".into(), b"# Keyspace\r\ndb0:keys=2\r\n".to_vec());
        assert_eq!(show(&f), "# Keyspace\ndb0:keys=2");
        assert_eq!(
            show_text(&bulk(b"# Server\r\nos:linux\r\n")),
            "# Server\nos:linux"
        );
        assert_eq!(show_text(&Frame::err("ERR x")), "(error) ERR x");
    }

    #[test]
    fn range_replies_as_pairs() {
        let f = Frame::Array(vec![bulk(b"a"), bulk(b"1"), bulk(b"b"), bulk(&[0, 255])]);
        assert_eq!(
            show_pairs(&f),
            "1) \"a\" => \"1\"\n2) \"b\" => 0x00ff (2 bytes)"
        );
        assert_eq!(show_pairs(&Frame::Array(vec![])), "(no keys)");
        assert_eq!(show_pairs(&Frame::err("ERR x")), "(error) ERR x");
        // An odd array is not pairs.
        assert_eq!(show_pairs(&Frame::Array(vec![bulk(b"a")])), "1) \"a\"");
    }
}
