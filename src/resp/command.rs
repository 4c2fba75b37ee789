//! Command parsing: [`parse_command`], RESP arrays of bulk strings and inline commands.

use std::ops::Range;

use super::{Limits, MIN_ARG, ProtocolError, Reader, Step, fail};

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
