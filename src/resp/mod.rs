//! RESP2/RESP3 frames: parsing and encoding. The server parses commands and encodes replies
//! with it; the client and the YCSB driver's RESP backend encode commands and parse replies.
//! Compiled with any of the `server`, `client` and `cli` features.
//!
//! # Wire format
//!
//! Every frame starts with a type byte; lines end in `\r\n`. Lengths and counts are decimal.
//!
//! | type | form | [`Frame`] | in RESP2 |
//! |---|---|---|---|
//! | simple string | `+OK\r\n` | `Simple` | same |
//! | error | `-ERR bad\r\n` | `Error` | same |
//! | integer | `:42\r\n` | `Integer` | same |
//! | bulk string | `$3\r\nfoo\r\n` | `Bulk` | same |
//! | null | `_\r\n` | `Null` | `$-1\r\n` (and `*-1\r\n` parses as `Null`) |
//! | array | `*2\r\n` + 2 frames | `Array` | same |
//! | map | `%1\r\n` + key, value | `Map` | array of 2n frames |
//! | double | `,1.5\r\n`, `,inf\r\n`, `,nan\r\n` | `Double` | bulk of the text |
//! | boolean | `#t\r\n` | `Boolean` | `:1` / `:0` |
//! | verbatim | `=8\r\ntxt:text\r\n` | `Verbatim` | bulk of the text |
//! | set, push | `~n`, `>n` + n frames | `Set`, `Push` | array |
//! | big number | `(123\r\n` | `BigNumber` | bulk of the digits |
//! | blob error | `!3\r\nERR\r\n` | `BlobError` | simple error |
//! | attribute | `\|n` + n pairs, then a frame | skipped | - |
//!
//! Commands ([`parse_command`]) are an array of bulk strings, or an *inline* line of words
//! (`PING\r\n`, as typed in telnet) split with Redis's quoting rules. Both parsers return
//! `Ok(None)` while input is incomplete, decide only from the bytes present (so any split of
//! the input gives the same result) and check every declared length against the limits before
//! allocating for it. Streamed RESP3 aggregates (`*?`) are not supported.

/// A parse step: `Ok(None)` when the input ends first.
type Step<T> = Result<Option<T>, ProtocolError>;

/// The value of a [`Step`], or returns `Ok(None)` from the caller when more input is needed.
macro_rules! need {
    ($step:expr) => {
        match $step? {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

// The submodules come after `need!` so that they can use it.
mod command;
mod encode;
mod reply;
#[cfg(test)]
mod tests;

pub use command::parse_command;
pub use encode::{encode_bulk, encode_command};
pub use reply::parse_reply;

/// Protocol version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Proto {
    /// RESP2, the default until a client sends `HELLO 3`.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

/// A reply (or, client side, any frame received).
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK`; `\r` and `\n` are sent as spaces.
    Simple(String),
    /// `-ERR ...`: the text after `-`; `\r` and `\n` are sent as spaces.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$n`, a binary-safe string.
    Bulk(Vec<u8>),
    /// RESP2 `$-1`, RESP3 `_`.
    Null,
    /// `*n`; a RESP2 null array `*-1` parses as [`Frame::Null`].
    Array(Vec<Frame>),
    /// RESP3 `%n`; a flat array of 2n items in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `,x`; a bulk string of its text in RESP2.
    Double(f64),
    /// RESP3 `#t`/`#f`; integer 1/0 in RESP2.
    Boolean(bool),
    /// RESP3 `=n` (format, text); the format is 3 bytes (another is sent as `txt`). A bulk
    /// string of the text in RESP2.
    Verbatim(String, Vec<u8>),
    /// RESP3 `~n`; an array in RESP2.
    Set(Vec<Frame>),
    /// RESP3 `>n`; an array in RESP2.
    Push(Vec<Frame>),
    /// RESP3 `(n`: the decimal digits; a bulk string in RESP2.
    BigNumber(String),
    /// RESP3 `!n`; a simple error (lossy UTF-8) in RESP2.
    BlobError(Vec<u8>),
}

/// Limits the parser enforces before allocating.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request (one command: all its bytes on the wire) accepted.
    pub max_request: usize,
    /// Most arguments in one command.
    pub max_args: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request: 1 << 20,
            max_args: 1 << 16,
        }
    }
}

/// Why input was refused; the server replies "-ERR Protocol error: {0}" and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    /// The reply a server sends before closing: `-ERR Protocol error: ...`.
    pub fn reply(&self) -> Frame {
        Frame::err(format!("ERR Protocol error: {}", self.0))
    }
}

/// Deepest nesting of aggregates [`parse_reply`] accepts.
pub const MAX_DEPTH: usize = 64;
/// Largest bulk length or element count [`parse_reply`] accepts (Redis's `proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 << 20;
/// Longest simple string, error, big number or double line [`parse_reply`] accepts.
const MAX_LINE: usize = 1 << 20;
/// Longest length or count line (an `i64` has at most 20 characters).
const NUM_LINE: usize = 32;
/// Fewest bytes a command argument takes: `$0\r\n\r\n`.
const MIN_ARG: usize = 6;
/// Fewest bytes a reply frame takes: `+\r\n`.
const MIN_FRAME: usize = 3;

fn fail<T>(msg: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

/// A decimal `i64`: an optional `-`, then digits.
fn int(text: &[u8]) -> Option<i64> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = i64::from(c - b'0');
        n = n.checked_mul(10)?;
        n = if neg {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

/// A position in the input; every read returns `Ok(None)` if the input ends first.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// A line of at most `max` bytes, ending in `\r\n`.
    fn line(&mut self, max: usize, what: &str) -> Step<&'a [u8]> {
        let rest = self.rest();
        let window = rest.get(..max.saturating_add(1)).unwrap_or(rest);
        let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
            if window.len() > max {
                return fail(format!("{what} line too long"));
            }
            return Ok(None);
        };
        match (rest.get(end), rest.get(end + 1)) {
            (Some(b'\r'), None) => Ok(None),
            (Some(b'\r'), Some(b'\n')) => {
                self.pos += end + 2;
                Ok(rest.get(..end))
            }
            _ => fail(format!("{what} line not ended by CRLF")),
        }
    }

    /// A decimal integer line.
    fn int(&mut self, what: &str) -> Step<i64> {
        match int(need!(self.line(NUM_LINE, what))) {
            Some(n) => Ok(Some(n)),
            None => fail(format!("invalid {what}")),
        }
    }

    /// `n` bytes followed by `\r\n`.
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let rest = self.rest();
        let Some(data) = rest.get(..n) else {
            return Ok(None);
        };
        match (rest.get(n), rest.get(n.saturating_add(1))) {
            (None, _) | (Some(b'\r'), None) => Ok(None),
            (Some(b'\r'), Some(b'\n')) => {
                self.pos += n + 2;
                Ok(Some(data))
            }
            _ => fail("bulk data not followed by CRLF"),
        }
    }
}
