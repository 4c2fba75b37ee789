//! Reply parsing: [`parse_reply`], every RESP2 and RESP3 type.

use super::{Frame, MAX_BULK, MAX_DEPTH, MAX_LINE, MIN_FRAME, ProtocolError, Reader, Step, fail};

impl Reader<'_> {
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
