//! Splitting a typed line into arguments.
//!
//! Words are separated by spaces or tabs. Quotes group words and can be adjacent to other text
//! (`key"a b"` is one argument `keya b`), as in a shell:
//!
//! - `"..."` understands `\xHH` (any byte, so binary values can be typed), `\n`, `\r`, `\t`,
//!   `\0`, `\\` and `\"`; any other `\c` stands for `c`.
//! - `'...'` is literal except for `\'`.
//! - `""` and `''` are empty arguments.
//!
//! This is the quoting [`show`](super::show()) uses for text, so a value printed by the client
//! can be pasted back.

use std::fmt;

/// Why a line could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// A quote was opened and never closed.
    Unbalanced(char),
    /// `\x` not followed by two hexadecimal digits.
    BadHex,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::Unbalanced(q) => write!(f, "unbalanced quotes: a {q} is never closed"),
            SplitError::BadHex => write!(f, "\\x must be followed by two hex digits, as in \\x0a"),
        }
    }
}

impl std::error::Error for SplitError {}

fn hex_digit(c: char) -> Option<u8> {
    c.to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut tmp = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
}

/// Splits `line` into arguments (bytes: `\xHH` may make them invalid UTF-8). A blank line
/// gives no arguments.
pub fn split(line: &str) -> Result<Vec<Vec<u8>>, SplitError> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            match c {
                '"' => double_quoted(&mut chars, &mut arg)?,
                '\'' => single_quoted(&mut chars, &mut arg)?,
                c => push_char(&mut arg, c),
            }
        }
        args.push(arg);
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// The rest of a `"..."` after its opening quote.
fn double_quoted(chars: &mut Chars<'_>, arg: &mut Vec<u8>) -> Result<(), SplitError> {
    loop {
        match chars.next() {
            None => return Err(SplitError::Unbalanced('"')),
            Some('"') => return Ok(()),
            Some('\\') => match chars.next() {
                None => return Err(SplitError::Unbalanced('"')),
                Some('x') => {
                    let hi = chars.next().and_then(hex_digit);
                    let lo = chars.next().and_then(hex_digit);
                    match (hi, lo) {
                        (Some(hi), Some(lo)) => arg.push(hi << 4 | lo),
                        _ => return Err(SplitError::BadHex),
                    }
                }
                Some('n') => arg.push(b'\n'),
                Some('r') => arg.push(b'\r'),
                Some('t') => arg.push(b'\t'),
                Some('0') => arg.push(0),
                Some(c) => push_char(arg, c),
            },
            Some(c) => push_char(arg, c),
        }
    }
}

/// The rest of a `'...'` after its opening quote.
fn single_quoted(chars: &mut Chars<'_>, arg: &mut Vec<u8>) -> Result<(), SplitError> {
    loop {
        match chars.next() {
            None => return Err(SplitError::Unbalanced('\'')),
            Some('\'') => return Ok(()),
            Some('\\') if chars.peek() == Some(&'\'') => {
                chars.next();
                arg.push(b'\'');
            }
            Some(c) => push_char(arg, c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Vec<u8>> {
        split(line).unwrap()
    }

    fn text(line: &str) -> Vec<String> {
        words(line)
            .into_iter()
            .map(|w| String::from_utf8(w).unwrap())
            .collect()
    }

    #[test]
    fn plain_words() {
        assert_eq!(text("get 42"), ["get", "42"]);
        assert_eq!(text("  put\tk   v  "), ["put", "k", "v"]);
        assert!(words("").is_empty());
        assert!(words("   \t ").is_empty());
    }

    #[test]
    fn double_quotes_group_and_escape() {
        assert_eq!(text(r#"put k "a b""#), ["put", "k", "a b"]);
        assert_eq!(text(r#"put k "say \"hi\"""#), ["put", "k", "say \"hi\""]);
        assert_eq!(text(r#""a\nb\tc\rd\\e""#), ["a\nb\tc\rd\\e"]);
        assert_eq!(text(r#""\q""#), ["q"]);
    }

    #[test]
    fn hex_escapes_make_binary() {
        assert_eq!(
            words(r#"put k "\x00\xff\x7F""#),
            [b"put".to_vec(), b"k".to_vec(), vec![0x00, 0xff, 0x7f]]
        );
        assert_eq!(words(r#""\0""#), [vec![0u8]]);
        assert_eq!(split(r#""\x4""#), Err(SplitError::BadHex));
        assert_eq!(split(r#""\xzz""#), Err(SplitError::BadHex));
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(text(r"put k 'x y'"), ["put", "k", "x y"]);
        assert_eq!(text(r"'\x00'"), [r"\x00"]);
        assert_eq!(text(r"'it\'s'"), ["it's"]);
        assert_eq!(text(r#"'a "b" c'"#), [r#"a "b" c"#]);
    }

    #[test]
    fn empty_quotes_are_empty_arguments() {
        assert_eq!(text(r#"put k """#), ["put", "k", ""]);
        assert_eq!(text("put k ''"), ["put", "k", ""]);
    }

    #[test]
    fn quotes_join_adjacent_text() {
        assert_eq!(text(r#"key"a b"c"#), ["keya bc"]);
        assert_eq!(text(r#"'a'"b""#), ["ab"]);
    }

    #[test]
    fn unicode_passes_through() {
        assert_eq!(text("put k héllo"), ["put", "k", "héllo"]);
        assert_eq!(text("\"日本\""), ["日本"]);
    }

    #[test]
    fn unbalanced_quotes_are_errors() {
        assert_eq!(split(r#"put k "abc"#), Err(SplitError::Unbalanced('"')));
        assert_eq!(split("put k 'abc"), Err(SplitError::Unbalanced('\'')));
        assert_eq!(split(r#""abc\"#), Err(SplitError::Unbalanced('"')));
        let msg = split("'x").unwrap_err().to_string();
        assert!(msg.contains("unbalanced"), "{msg}");
    }

    #[test]
    fn range_open_ends_are_plain_words() {
        assert_eq!(text("RANGE - + LIMIT 3"), ["RANGE", "-", "+", "LIMIT", "3"]);
    }
}
