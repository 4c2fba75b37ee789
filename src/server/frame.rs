//! RESP2/RESP3 frames: parsing and encoding.
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

use std::fmt::Display;
use std::io::Write as _;
use std::ops::Range;

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

fn fail<T>(msg: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    /// An error reply; `msg` is used verbatim, so it includes its prefix (`"ERR ..."`).
    pub fn err(msg: impl Into<String>) -> Frame {
        Frame::Error(msg.into())
    }

    /// Appends the wire form of the frame for `proto` to `out`.
    pub fn encode(&self, proto: Proto, out: &mut Vec<u8>) {
        let v3 = proto == Proto::Resp3;
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => line(out, b'-', s.as_bytes()),
            Frame::Integer(n) => head(out, b':', n),
            Frame::Bulk(b) => blob(out, b'$', b),
            Frame::Null if v3 => out.extend_from_slice(b"_\r\n"),
            Frame::Null => out.extend_from_slice(b"$-1\r\n"),
            Frame::Array(items) => many(out, b'*', items, proto),
            Frame::Set(items) => many(out, if v3 { b'~' } else { b'*' }, items, proto),
            Frame::Push(items) => many(out, if v3 { b'>' } else { b'*' }, items, proto),
            Frame::Map(pairs) => {
                if v3 {
                    head(out, b'%', pairs.len());
                } else {
                    head(out, b'*', pairs.len().saturating_mul(2));
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Frame::Double(d) if v3 => line(out, b',', double(*d).as_bytes()),
            Frame::Double(d) => blob(out, b'$', double(*d).as_bytes()),
            Frame::Boolean(b) if v3 => {
                out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" })
            }
            Frame::Boolean(b) => out.extend_from_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
            Frame::Verbatim(format, text) if v3 => {
                let format = if format.len() == 3 { format } else { "txt" };
                head(out, b'=', text.len().saturating_add(4));
                out.extend_from_slice(format.as_bytes());
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Verbatim(_, text) => blob(out, b'$', text),
            Frame::BigNumber(s) if v3 => line(out, b'(', s.as_bytes()),
            Frame::BigNumber(s) => blob(out, b'$', s.as_bytes()),
            Frame::BlobError(b) if v3 => blob(out, b'!', b),
            Frame::BlobError(b) => line(out, b'-', String::from_utf8_lossy(b).as_bytes()),
        }
    }
}

/// Appends `args` as a command: an array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    head(out, b'*', args.len());
    for a in args {
        blob(out, b'$', a.as_ref());
    }
}

fn head(out: &mut Vec<u8>, tag: u8, n: impl Display) {
    out.push(tag);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}\r\n");
}

fn line(out: &mut Vec<u8>, tag: u8, text: &[u8]) {
    out.push(tag);
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

fn blob(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
    head(out, tag, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn many(out: &mut Vec<u8>, tag: u8, items: &[Frame], proto: Proto) {
    head(out, tag, items.len());
    for f in items {
        f.encode(proto, out);
    }
}

/// The shortest text that reads back as `d`: `1.5`, `1`, `1e300`, `inf`, `-inf`, `nan`.
fn double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else if d == 0.0 || (1e-5..1e17).contains(&d.abs()) {
        format!("{d}")
    } else {
        format!("{d:e}")
    }
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

    /// A reply length or count: `Some(None)` is the null length `-1`.
    fn len(&mut self, what: &str) -> Step<Option<usize>> {
        match need!(self.int(what)) {
            -1 => Ok(Some(None)),
            n => match usize::try_from(n) {
                Ok(n) if n <= MAX_BULK => Ok(Some(Some(n))),
                _ => fail(format!("invalid {what}")),
            },
        }
    }

    /// A reply length that may not be null.
    fn count(&mut self, what: &str) -> Step<usize> {
        match need!(self.len(what)) {
            Some(n) => Ok(Some(n)),
            None => fail(format!("invalid {what}")),
        }
    }

    /// A text line of a reply, as lossy UTF-8.
    fn text(&mut self, what: &str) -> Step<String> {
        Ok(self
            .line(MAX_LINE, what)?
            .map(|t| String::from_utf8_lossy(t).into_owned()))
    }

    /// `n` frames at `depth`.
    fn frames(&mut self, n: usize, depth: usize) -> Step<Vec<Frame>> {
        // Every frame takes some bytes: wait for them before reserving room for `n`.
        if n.saturating_mul(MIN_FRAME) > self.rest().len() {
            return Ok(None);
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(need!(self.frame(depth)));
        }
        Ok(Some(items))
    }

    /// `n` key/value pairs at `depth`.
    fn pairs(&mut self, n: usize, depth: usize) -> Step<Vec<(Frame, Frame)>> {
        let mut it = need!(self.frames(n.saturating_mul(2), depth)).into_iter();
        let mut pairs = Vec::with_capacity(n);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(Some(pairs))
    }

    /// One frame; aggregates hold frames at `depth + 1`.
    fn frame(&mut self, depth: usize) -> Step<Frame> {
        if depth > MAX_DEPTH {
            return fail(format!("reply nested deeper than {MAX_DEPTH}"));
        }
        let Some(kind) = self.byte() else {
            return Ok(None);
        };
        let inner = depth + 1;
        let frame = match kind {
            b'+' => Frame::Simple(need!(self.text("simple string"))),
            b'-' => Frame::Error(need!(self.text("error"))),
            b':' => Frame::Integer(need!(self.int("integer"))),
            b'$' => match need!(self.len("bulk length")) {
                None => Frame::Null,
                Some(n) => Frame::Bulk(need!(self.take(n)).to_vec()),
            },
            b'*' => match need!(self.len("multibulk length")) {
                None => Frame::Null,
                Some(n) => Frame::Array(need!(self.frames(n, inner))),
            },
            b'_' => {
                need!(self.line(0, "null"));
                Frame::Null
            }
            b',' => Frame::Double(parse_double(need!(self.line(MAX_LINE, "double")))?),
            b'#' => match need!(self.line(1, "boolean")) {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return fail("invalid boolean"),
            },
            b'=' => {
                let n = need!(self.count("verbatim length"));
                verbatim(need!(self.take(n)))?
            }
            b'(' => Frame::BigNumber(big_number(need!(self.line(MAX_LINE, "big number")))?),
            b'!' => {
                let n = need!(self.count("blob error length"));
                Frame::BlobError(need!(self.take(n)).to_vec())
            }
            b'%' => {
                let n = need!(self.count("map length"));
                Frame::Map(need!(self.pairs(n, inner)))
            }
            b'~' => {
                let n = need!(self.count("set length"));
                Frame::Set(need!(self.frames(n, inner)))
            }
            b'>' => {
                let n = need!(self.count("push length"));
                Frame::Push(need!(self.frames(n, inner)))
            }
            b'|' => {
                // The attribute is read and dropped; the frame it annotates follows.
                let n = need!(self.count("attribute length"));
                need!(self.pairs(n, inner));
                need!(self.frame(inner))
            }
            other => return fail(format!("unknown reply type '{}'", other.escape_ascii())),
        };
        Ok(Some(frame))
    }
}

fn parse_double(text: &[u8]) -> Result<f64, ProtocolError> {
    let parsed = std::str::from_utf8(text).ok().and_then(|t| match t {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" | "-nan" => Some(f64::NAN),
        t => t.parse().ok(),
    });
    parsed.map_or_else(|| fail("invalid double"), Ok)
}

fn big_number(text: &[u8]) -> Result<String, ProtocolError> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return fail("invalid big number");
    }
    Ok(String::from_utf8_lossy(text).into_owned())
}

fn verbatim(data: &[u8]) -> Result<Frame, ProtocolError> {
    match (data.get(..3), data.get(3), data.get(4..)) {
        (Some(format), Some(b':'), Some(text)) => Ok(Frame::Verbatim(
            String::from_utf8_lossy(format).into_owned(),
            text.to_vec(),
        )),
        _ => fail("invalid verbatim string"),
    }
}

/// Parses one reply frame (any RESP2 or RESP3 type, nested aggregates; RESP3 attributes are
/// skipped) from the start of `buf`. Returns the frame and the bytes consumed, `Ok(None)` if
/// more input is needed, or an error for malformed input. Nesting is capped at
/// [`MAX_DEPTH`]; lengths and counts above [`MAX_BULK`] are refused, and room for a declared
/// count is reserved only once the bytes for it have arrived.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let mut r = Reader { buf, pos: 0 };
    Ok(r.frame(0)?.map(|f| (f, r.pos)))
}

/// Parses one command from the start of `buf`: a RESP array of bulk strings, or an inline
/// command (a line of space-separated words, as redis-cli/redis-benchmark send `PING\r\n`,
/// with Redis's quoting rules: "..." with \n \r \t \xHH \\ \" escapes, and '...'; a line
/// ending in \n or \r\n). Returns the arguments and the bytes consumed, Ok(None) if more input
/// is needed, or an error for malformed input or limits exceeded. An empty inline line
/// (just "\r\n") yields Some((vec![], consumed)) which the caller skips; so do `*0` and `*-1`.
/// A declared bulk length or array count above the limits is an error immediately (before the
/// data arrives); an inline line longer than max_request without a newline is an error too
/// (no unbounded buffering). Non-bulk items inside a command array (e.g. "*1\r\n:1\r\n") are
/// an error.
#[allow(clippy::type_complexity)] // the signature the server and client are written against
pub fn parse_command(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Vec<Vec<u8>>, usize)>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => multibulk(buf, limits),
        Some(_) => inline(buf, limits),
    }
}

fn multibulk(buf: &[u8], limits: &Limits) -> Step<(Vec<Vec<u8>>, usize)> {
    let mut r = Reader { buf, pos: 1 };
    let count = need!(r.int("multibulk length"));
    if count == 0 || count == -1 {
        return Ok(Some((Vec::new(), r.pos)));
    }
    let count = match usize::try_from(count) {
        Ok(n) if n <= limits.max_args => n,
        _ => return fail("invalid multibulk length"),
    };
    if count.saturating_mul(MIN_ARG).saturating_add(r.pos) > limits.max_request {
        return fail(format!("request exceeds {} bytes", limits.max_request));
    }
    // Spans first: nothing is copied until the whole command is here.
    let mut spans: Vec<Range<usize>> = Vec::with_capacity(count.min(r.rest().len() / MIN_ARG));
    for _ in 0..count {
        match r.byte() {
            None => return Ok(None),
            Some(b'$') => {}
            Some(b) => return fail(format!("expected '$', got '{}'", b.escape_ascii())),
        }
        let len = match usize::try_from(need!(r.int("bulk length"))) {
            Ok(n) if n <= limits.max_request => n,
            _ => return fail("invalid bulk length"),
        };
        let start = r.pos;
        if start.saturating_add(len).saturating_add(2) > limits.max_request {
            return fail(format!("request exceeds {} bytes", limits.max_request));
        }
        need!(r.take(len));
        spans.push(start..start + len);
    }
    let args = spans
        .into_iter()
        .map(|s| buf.get(s).unwrap_or_default().to_vec())
        .collect();
    Ok(Some((args, r.pos)))
}

fn inline(buf: &[u8], limits: &Limits) -> Step<(Vec<Vec<u8>>, usize)> {
    let window = buf.get(..limits.max_request).unwrap_or(buf);
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        // The newline, when it comes, would make the request longer than the limit.
        if window.len() >= limits.max_request {
            return fail("too big inline request");
        }
        return Ok(None);
    };
    let line = window.get(..nl).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args = split(line, limits.max_args).map_err(|e| ProtocolError(e.into()))?;
    Ok(Some((args, nl + 1)))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn hex(b: Option<&u8>) -> Option<u8> {
    let c = char::from(*b?);
    c.to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Splits an inline line into words like Redis's `sdssplitargs`: whitespace separates words;
/// `"..."` takes the escapes `\xHH \n \r \t \b \a` (and `\c` for any other `c`); `'...'`
/// takes `\'`. A closing quote must be followed by whitespace or the end of the line.
fn split(line: &[u8], max_args: usize) -> Result<Vec<Vec<u8>>, &'static str> {
    const UNBALANCED: &str = "unbalanced quotes in request";
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(args);
        }
        if args.len() >= max_args {
            return Err("too many arguments");
        }
        let mut word = Vec::new();
        let mut quote = None;
        while let Some(&c) = line.get(i) {
            let next = line.get(i + 1).copied();
            match quote {
                Some(q) if c == q => {
                    if next.is_some_and(|n| !is_space(n)) {
                        return Err(UNBALANCED);
                    }
                    i += 1;
                    quote = None;
                    break;
                }
                Some(b'"') if c == b'\\' && next.is_some() => {
                    let hi_lo = (hex(line.get(i + 2)), hex(line.get(i + 3)));
                    match (next, hi_lo) {
                        (Some(b'x'), (Some(hi), Some(lo))) => {
                            word.push((hi << 4) | lo);
                            i += 4;
                        }
                        (Some(n), _) => {
                            word.push(match n {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => other,
                            });
                            i += 2;
                        }
                        (None, _) => i += 1,
                    }
                }
                Some(b'\'') if c == b'\\' && next == Some(b'\'') => {
                    word.push(b'\'');
                    i += 2;
                }
                Some(_) => {
                    word.push(c);
                    i += 1;
                }
                None if is_space(c) => break,
                None if c == b'"' || c == b'\'' => {
                    quote = Some(c);
                    i += 1;
                }
                None => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        if quote.is_some() {
            return Err(UNBALANCED);
        }
        args.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Cmds = Vec<Vec<Vec<u8>>>;

    fn enc(f: &Frame, proto: Proto) -> Vec<u8> {
        let mut out = Vec::new();
        f.encode(proto, &mut out);
        out
    }

    type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, ProtocolError>;

    fn cmd(buf: &[u8]) -> Parsed {
        parse_command(buf, &Limits::default())
    }

    fn args(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    /// Parses every complete command at the front of `buf`, removing it.
    fn drain(buf: &mut Vec<u8>, limits: &Limits, out: &mut Cmds) -> Result<(), ProtocolError> {
        while let Some((a, n)) = parse_command(buf, limits)? {
            assert!(n > 0 && n <= buf.len());
            buf.drain(..n);
            out.push(a);
        }
        Ok(())
    }

    /// Feeds `input` in pieces cut at `cuts`, parsing after each piece.
    fn feed(input: &[u8], cuts: &[usize], limits: &Limits) -> (Cmds, Option<ProtocolError>) {
        let (mut buf, mut out, mut last) = (Vec::new(), Vec::new(), 0);
        for &c in cuts.iter().chain([input.len()].iter()) {
            buf.extend_from_slice(&input[last..c]);
            last = c;
            if let Err(e) = drain(&mut buf, limits, &mut out) {
                return (out, Some(e));
            }
        }
        (out, None)
    }

    /// What `f` parses back as after encoding it for `proto`.
    fn expect(f: &Frame, proto: Proto) -> Frame {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let list = |v: &[Frame]| v.iter().map(|f| expect(f, proto)).collect();
        let v3 = proto == Proto::Resp3;
        match f {
            Frame::Simple(s) => Frame::Simple(clean(s)),
            Frame::Error(s) => Frame::Error(clean(s)),
            Frame::BigNumber(s) if v3 => Frame::BigNumber(clean(s)),
            Frame::Array(v) => Frame::Array(list(v)),
            Frame::Set(v) if v3 => Frame::Set(list(v)),
            Frame::Push(v) if v3 => Frame::Push(list(v)),
            Frame::Map(m) if v3 => Frame::Map(
                m.iter()
                    .map(|(k, v)| (expect(k, proto), expect(v, proto)))
                    .collect(),
            ),
            f if v3 => f.clone(),
            Frame::Map(m) => Frame::Array(
                m.iter()
                    .flat_map(|(k, v)| [expect(k, proto), expect(v, proto)])
                    .collect(),
            ),
            Frame::Set(v) | Frame::Push(v) => Frame::Array(list(v)),
            Frame::Double(d) => Frame::Bulk(double(*d).into_bytes()),
            Frame::Boolean(b) => Frame::Integer(i64::from(*b)),
            Frame::Verbatim(_, t) => Frame::Bulk(t.clone()),
            Frame::BigNumber(s) => Frame::Bulk(s.clone().into_bytes()),
            Frame::BlobError(b) => Frame::Error(clean(&String::from_utf8_lossy(b))),
            f => f.clone(),
        }
    }

    fn samples() -> Vec<Frame> {
        vec![
            Frame::ok(),
            Frame::Simple(String::new()),
            Frame::err("ERR unknown command 'x'"),
            Frame::Integer(0),
            Frame::Integer(i64::MIN),
            Frame::Integer(i64::MAX),
            Frame::Bulk(b"a\r\nb\0".to_vec()),
            Frame::Bulk(Vec::new()),
            Frame::Null,
            Frame::Array(Vec::new()),
            Frame::Array(vec![
                Frame::Integer(1),
                Frame::Null,
                Frame::Bulk(b"x".to_vec()),
            ]),
            Frame::Map(vec![
                (Frame::Simple("k".into()), Frame::Integer(1)),
                (
                    Frame::Bulk(b"m".to_vec()),
                    Frame::Array(vec![Frame::Boolean(true)]),
                ),
            ]),
            Frame::Double(1.5),
            Frame::Double(-0.25),
            Frame::Double(1e300),
            Frame::Double(3e-10),
            Frame::Double(f64::INFINITY),
            Frame::Double(f64::NEG_INFINITY),
            Frame::Boolean(true),
            Frame::Boolean(false),
            Frame::Verbatim("txt".into(), b"Some string".to_vec()),
            Frame::Verbatim("mkd".into(), Vec::new()),
            Frame::Set(vec![Frame::Integer(1), Frame::Simple("a".into())]),
            Frame::Push(vec![
                Frame::Bulk(b"message".to_vec()),
                Frame::Bulk(b"ch".to_vec()),
            ]),
            Frame::BigNumber("3492890328409238509324850943850943825024385".into()),
            Frame::BigNumber("-12".into()),
            Frame::BlobError(b"SYNTAX invalid\r\nsyntax".to_vec()),
        ]
    }

    #[test]
    fn every_type_round_trips_in_both_protocols() {
        for proto in [Proto::Resp2, Proto::Resp3] {
            for f in samples() {
                let wire = enc(&f, proto);
                let (back, n) = parse_reply(&wire).unwrap().unwrap();
                assert_eq!(back, expect(&f, proto), "{proto:?} {wire:?}");
                assert_eq!(n, wire.len());
                for cut in 0..wire.len() {
                    assert_eq!(parse_reply(&wire[..cut]), Ok(None), "{wire:?} at {cut}");
                }
            }
        }
    }

    #[test]
    fn wire_forms() {
        let cases: &[(Frame, &[u8], &[u8])] = &[
            (Frame::ok(), b"+OK\r\n", b"+OK\r\n"),
            (Frame::Null, b"$-1\r\n", b"_\r\n"),
            (Frame::Integer(-7), b":-7\r\n", b":-7\r\n"),
            (
                Frame::Bulk(b"foo".to_vec()),
                b"$3\r\nfoo\r\n",
                b"$3\r\nfoo\r\n",
            ),
            (Frame::Boolean(true), b":1\r\n", b"#t\r\n"),
            (Frame::Boolean(false), b":0\r\n", b"#f\r\n"),
            (Frame::Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
            (Frame::Double(2.0), b"$1\r\n2\r\n", b",2\r\n"),
            (Frame::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n"),
            (
                Frame::Double(f64::NEG_INFINITY),
                b"$4\r\n-inf\r\n",
                b",-inf\r\n",
            ),
            (Frame::Double(f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n"),
            (Frame::Double(1e300), b"$5\r\n1e300\r\n", b",1e300\r\n"),
            (
                Frame::Map(vec![(Frame::Simple("a".into()), Frame::Integer(1))]),
                b"*2\r\n+a\r\n:1\r\n",
                b"%1\r\n+a\r\n:1\r\n",
            ),
            (Frame::Set(vec![]), b"*0\r\n", b"~0\r\n"),
            (
                Frame::Push(vec![Frame::Null]),
                b"*1\r\n$-1\r\n",
                b">1\r\n_\r\n",
            ),
            (
                Frame::Verbatim("txt".into(), b"Some string".to_vec()),
                b"$11\r\nSome string\r\n",
                b"=15\r\ntxt:Some string\r\n",
            ),
            (
                Frame::Verbatim("toolong".into(), b"x".to_vec()),
                b"$1\r\nx\r\n",
                b"=5\r\ntxt:x\r\n",
            ),
            (Frame::BigNumber("12".into()), b"$2\r\n12\r\n", b"(12\r\n"),
            (
                Frame::BlobError(b"E\nx".to_vec()),
                b"-E x\r\n",
                b"!3\r\nE\nx\r\n",
            ),
            (Frame::err("ERR a\r\nb"), b"-ERR a  b\r\n", b"-ERR a  b\r\n"),
            (Frame::Simple("a\nb".into()), b"+a b\r\n", b"+a b\r\n"),
        ];
        for (f, v2, v3) in cases {
            assert_eq!(enc(f, Proto::Resp2), *v2, "{f:?}");
            assert_eq!(enc(f, Proto::Resp3), *v3, "{f:?}");
        }
        let Frame::Double(d) = parse_reply(b",nan\r\n").unwrap().unwrap().0 else {
            panic!("not a double");
        };
        assert!(d.is_nan());
        let mut out = Vec::new();
        encode_command(&["SET", "k", ""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(Frame::err("ERR x"), Frame::Error("ERR x".into()));
        let e = ProtocolError("invalid bulk length".into());
        assert_eq!(e.to_string(), "invalid bulk length");
        assert_eq!(
            e.reply(),
            Frame::err("ERR Protocol error: invalid bulk length")
        );
        let l = Limits::default();
        assert_eq!((l.max_request, l.max_args), (1 << 20, 1 << 16));
    }

    #[test]
    fn reply_edge_cases() {
        let ok = |b: &[u8], f: Frame| assert_eq!(parse_reply(b), Ok(Some((f, b.len()))), "{b:?}");
        ok(b"*-1\r\n", Frame::Null);
        ok(b"$-1\r\n", Frame::Null);
        ok(b"_\r\n", Frame::Null);
        ok(b",1e3\r\n", Frame::Double(1000.0));
        ok(b",+inf\r\n", Frame::Double(f64::INFINITY));
        ok(b"|1\r\n+key\r\n+val\r\n:5\r\n", Frame::Integer(5));
        ok(
            b"*1\r\n|1\r\n+a\r\n+b\r\n#t\r\n",
            Frame::Array(vec![Frame::Boolean(true)]),
        );
        assert_eq!(parse_reply(b""), Ok(None));
        assert_eq!(parse_reply(b"*3\r\n:1\r\n"), Ok(None));
        assert_eq!(parse_reply(b"$5\r\nabc\r\n"), Ok(None));
        // A huge count waits for its bytes instead of reserving room for it.
        assert_eq!(parse_reply(b"*100000000\r\n:1\r\n"), Ok(None));
        assert_eq!(parse_reply(b"%100000000\r\n"), Ok(None));
        for bad in [
            &b"*9999999999999\r\n"[..],
            b"$9999999999999\r\n",
            b"$-2\r\n",
            b"*-2\r\n",
            b"%-1\r\n",
            b"$x\r\n",
            b":1.5\r\n",
            b":99999999999999999999\r\n",
            b":\r\n",
            b":-\r\n",
            b"#x\r\n",
            b"#tt\r\n",
            b"_x\r\n",
            b",\r\n",
            b",abc\r\n",
            b"(12a\r\n",
            b"(\r\n",
            b"=3\r\ntxt\r\n",
            b"=5\r\ntxt-x\r\n",
            b"$3\r\nabcd\r\n",
            b"+a\rb\r\n",
            b"+a\nb\r\n",
            b"?1\r\n",
            b"*?\r\n",
            b"$0000000000000000000000000000000000000001\r\n",
        ] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
        let nest = |depth: usize| {
            let mut b = b"*1\r\n".repeat(depth);
            b.extend_from_slice(b":1\r\n");
            b
        };
        assert!(parse_reply(&nest(MAX_DEPTH)).unwrap().is_some());
        assert!(parse_reply(&nest(MAX_DEPTH + 1)).is_err());
        assert!(parse_reply(&b"|0\r\n".repeat(1000)).is_err());
    }

    #[test]
    fn multibulk_commands() {
        let b = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
        assert_eq!(cmd(b), Ok(Some((args(&["GET", "a"]), b.len()))));
        let b = b"*1\r\n$4\r\na\r\nb\r\n";
        assert_eq!(cmd(b), Ok(Some((vec![b"a\r\nb".to_vec()], b.len()))));
        assert_eq!(cmd(b"*0\r\n"), Ok(Some((vec![], 4))));
        assert_eq!(cmd(b"*-1\r\n"), Ok(Some((vec![], 5))));
        assert_eq!(cmd(b""), Ok(None));
        assert_eq!(cmd(b"*"), Ok(None));
        assert_eq!(cmd(b"*2\r"), Ok(None));
        assert_eq!(cmd(b"*2\r\n$3\r\nGET\r\n"), Ok(None));
        assert_eq!(cmd(b"*2\r\n$3\r\nGET\r\n$1\r\na\r"), Ok(None));
        for bad in [
            &b"*-2\r\n"[..],
            b"*abc\r\n",
            b"*\r\n",
            b"*1\n",
            b"*1\rx",
            b"*+1\r\n",
            b"* 1\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n+OK\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$x\r\n",
            b"*1\r\n$\r\n",
            b"*1\r\n$3\r\nabcd\r\n",
            b"*1\r\n$3\r\nabc\n",
            b"*2\r\n$1\r\na\r\n*1\r\n",
            b"*99999999999999999999999\r\n",
            b"*00000000000000000000000000000000000001\r\n",
        ] {
            assert!(cmd(bad).is_err(), "{bad:?}");
        }
        let e = cmd(b"*1\r\n:1\r\n").unwrap_err();
        assert_eq!(e.0, "expected '$', got ':'");
    }

    #[test]
    fn inline_commands() {
        let one = |line: &str| {
            let (a, n) = cmd(line.as_bytes()).unwrap().unwrap();
            assert_eq!(n, line.len(), "{line:?}");
            a
        };
        assert_eq!(one("PING\r\n"), args(&["PING"]));
        assert_eq!(one("PING\n"), args(&["PING"]));
        assert_eq!(one("  set  a\tb  \r\n"), args(&["set", "a", "b"]));
        assert_eq!(one("\r\n"), args(&[]));
        assert_eq!(one("\n"), args(&[]));
        assert_eq!(one("   \r\n"), args(&[]));
        assert_eq!(one("set \"a b\" 'c d'\r\n"), args(&["set", "a b", "c d"]));
        assert_eq!(one("x \"\" ''\n"), args(&["x", "", ""]));
        assert_eq!(
            one(concat!(
                r#"x "\x41\x7a\n\r\t\b\a\\\"\q\xZZ" 'it\'s \n'"#,
                "\n"
            )),
            vec![
                b"x".to_vec(),
                b"Az\n\r\t\x08\x07\\\"qxZZ".to_vec(),
                b"it's \\n".to_vec()
            ]
        );
        assert_eq!(one("a\"b c\" d\n"), args(&["ab c", "d"]));
        assert_eq!(one("\"\\xff\"\n"), vec![vec![0xff]]);
        assert_eq!(one("caf\u{e9}\n"), args(&["caf\u{e9}"]));
        assert_eq!(cmd(b"PIN"), Ok(None));
        assert_eq!(cmd(b"PING\r"), Ok(None));
        for bad in [
            "\"abc\n",
            "'abc\n",
            "\"a\"b\n",
            "'a'b\n",
            "\"a\\\"\n",
            "x \"\\\n",
        ] {
            let e = cmd(bad.as_bytes()).unwrap_err();
            assert_eq!(e.0, "unbalanced quotes in request", "{bad:?}");
        }
    }

    #[test]
    fn pipelined_and_fragmented() {
        let mut input = Vec::new();
        encode_command(&["SET", "key", "v\r\nalue"], &mut input);
        input.extend_from_slice(b"PING\r\n\r\nget 'a b'\n");
        encode_command(&["DEL"], &mut input);
        input.extend_from_slice(b"*0\r\n*-1\r\n");
        encode_command::<&str>(&[], &mut input);
        encode_command(&["", "x"], &mut input);
        let want: Cmds = vec![
            args(&["SET", "key", "v\r\nalue"]),
            args(&["PING"]),
            vec![],
            args(&["get", "a b"]),
            args(&["DEL"]),
            vec![],
            vec![],
            vec![],
            args(&["", "x"]),
        ];
        // One after another from one buffer.
        let (mut pos, mut got) = (0, Vec::new());
        while let Some((a, n)) = cmd(&input[pos..]).unwrap() {
            got.push(a);
            pos += n;
        }
        assert_eq!((got, pos), (want.clone(), input.len()));
        let limits = Limits::default();
        // Every split into two pieces, and byte by byte.
        for cut in 0..=input.len() {
            assert_eq!(
                feed(&input, &[cut], &limits),
                (want.clone(), None),
                "cut {cut}"
            );
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(feed(&input, &every, &limits), (want, None));
    }

    #[test]
    fn limits_refuse_before_data() {
        let d = Limits::default();
        let small = Limits {
            max_request: 64,
            max_args: 4,
        };
        let err = |b: &[u8], l: &Limits| assert!(parse_command(b, l).is_err(), "{b:?}");
        err(b"*1\r\n$9999999999\r\n", &d);
        err(b"*1\r\n$9999999999999999999999\r\n", &d);
        err(b"*1\r\n$1048576\r\n", &d);
        err(b"*2\r\n$1048570\r\n", &d);
        err(b"*100000\r\n", &d);
        err(b"*65537\r\n", &d);
        err(b"*5\r\n", &small);
        err(b"*4\r\n$60\r\n", &small);
        err(b"*4\r\n$1\r\na\r\n$50\r\n", &small);
        err(b"a b c d e\n", &small);
        err(&[b'a'; 64], &small);
        err(&vec![b'a'; 1 << 20], &d);
        // A line of exactly max_request bytes (newline included) is accepted; one more is not.
        let mut line = vec![b'a'; 64];
        line.push(b'\n');
        err(&line, &small);
        line.remove(0);
        assert_eq!(parse_command(&line[..63], &small), Ok(None));
        assert_eq!(
            parse_command(&line, &small),
            Ok(Some((vec![vec![b'a'; 63]], 64)))
        );
        assert_eq!(parse_command(b"*2\r\n$1000000\r\n", &d), Ok(None));
        assert_eq!(parse_command(b"*4\r\n", &small), Ok(None));
        assert_eq!(
            parse_command(b"a b c d\n", &small)
                .unwrap()
                .unwrap()
                .0
                .len(),
            4
        );
        // Exactly max_request bytes is accepted.
        let mut exact = Vec::new();
        encode_command(&[vec![b'x'; 64 - 11]], &mut exact);
        assert_eq!(exact.len(), 64);
        assert_eq!(parse_command(&exact, &small).unwrap().unwrap().1, 64);
        let mut over = Vec::new();
        encode_command(&[vec![b'x'; 64 - 10]], &mut over);
        err(&over[..12], &small);
    }

    fn junk() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            any::<u8>(),
            prop::sample::select(b"*$+-:_,#=(!%~>|\r\n0123456789- \"'\\xtf".to_vec()),
        ];
        prop::collection::vec(byte, 0..200)
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let leaf = prop_oneof![
            "[^\r\n]{0,12}".prop_map(Frame::Simple),
            ".{0,12}".prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Integer),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(Frame::Bulk),
            Just(Frame::Null),
            {
                use prop::num::f64::{INFINITE, NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
                POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE
            }
            .prop_map(Frame::Double),
            any::<bool>().prop_map(Frame::Boolean),
            ("[a-z]{3}", prop::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(f, t)| Frame::Verbatim(f, t)),
            "-?[0-9]{1,40}".prop_map(Frame::BigNumber),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(Frame::BlobError),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            let list = prop::collection::vec(inner.clone(), 0..5);
            prop_oneof![
                list.clone().prop_map(Frame::Array),
                list.clone().prop_map(Frame::Set),
                list.prop_map(Frame::Push),
                prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in junk()) {
            let small = Limits { max_request: 40, max_args: 3 };
            for limits in [Limits::default(), small] {
                let full = parse_command(&buf, &limits);
                // Any prefix gives `None` or the same answer as the whole.
                for cut in 0..buf.len() {
                    let part = parse_command(&buf[..cut], &limits);
                    prop_assert!(part == Ok(None) || part == full, "cut {}", cut);
                }
            }
            // Debug text, so that a NaN double compares equal to itself.
            let full = format!("{:?}", parse_reply(&buf));
            for cut in 0..buf.len() {
                let part = parse_reply(&buf[..cut]);
                prop_assert!(part == Ok(None) || format!("{part:?}") == full, "cut {}", cut);
            }
        }

        #[test]
        fn commands_round_trip(
            cmds in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..30), 1..6),
                1..4,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut input = Vec::new();
            for c in &cmds {
                encode_command(c, &mut input);
            }
            let cut = cut.index(input.len() + 1);
            prop_assert_eq!(feed(&input, &[cut], &Limits::default()), (cmds, None));
        }

        #[test]
        fn frames_round_trip(f in frame(), v3 in any::<bool>()) {
            let proto = if v3 { Proto::Resp3 } else { Proto::Resp2 };
            let mut wire = enc(&f, proto);
            let len = wire.len();
            wire.extend_from_slice(b":1\r\n");
            prop_assert_eq!(parse_reply(&wire), Ok(Some((expect(&f, proto), len))));
            let cut = len / 2;
            prop_assert_eq!(parse_reply(&wire[..cut]), Ok(None));
        }
    }
}
