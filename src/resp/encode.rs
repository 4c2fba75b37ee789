//! Encoding: [`Frame::encode`] and [`encode_command`].

use std::fmt::Display;
use std::io::Write as _;

use super::{Frame, Proto};

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

/// Appends `bytes` as a bulk string (the same in RESP2 and RESP3), without making a
/// [`Frame`] of them first.
pub fn encode_bulk(bytes: &[u8], out: &mut Vec<u8>) {
    blob(out, b'$', bytes);
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
pub(super) fn double(d: f64) -> String {
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
