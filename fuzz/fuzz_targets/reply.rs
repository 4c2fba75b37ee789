//! Fuzzes the reply parser, `parse_reply` (every RESP2 and RESP3 type).
//!
//! Properties checked (beyond "does not panic"):
//! - a parsed frame consumed at least one byte and at most the input;
//! - every prefix of the input parses as "incomplete" or exactly as the whole input;
//! - the consumed bytes alone parse the same;
//! - the frame encoded again (RESP3, which can say everything) parses back to the same frame,
//!   consuming exactly the encoding, after the one normalisation the encoder documents
//!   (a verbatim format that is not 3 bytes is sent as `txt`); encoded for RESP2 it parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toykv::resp::{Frame, Proto, parse_reply};

/// Debug text: compares NaN doubles as equal to themselves.
fn text<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

/// Equal, or equal but for NaN doubles (formatting only when `==` says no: it is slow).
fn same<T: std::fmt::Debug + PartialEq>(a: &T, b: &T) -> bool {
    a == b || text(a) == text(b)
}

fn normalise(f: &Frame) -> Frame {
    let list = |v: &[Frame]| v.iter().map(normalise).collect();
    match f {
        Frame::Verbatim(format, t) if format.len() != 3 => Frame::Verbatim("txt".into(), t.clone()),
        Frame::Array(v) => Frame::Array(list(v)),
        Frame::Set(v) => Frame::Set(list(v)),
        Frame::Push(v) => Frame::Push(list(v)),
        Frame::Map(m) => Frame::Map(
            m.iter()
                .map(|(k, v)| (normalise(k), normalise(v)))
                .collect(),
        ),
        f => f.clone(),
    }
}

fuzz_target!(|buf: &[u8]| {
    let full = parse_reply(buf);
    for cut in [
        0,
        1,
        buf.len() / 3,
        buf.len() / 2,
        buf.len().saturating_sub(1),
    ] {
        if cut < buf.len() {
            let part = parse_reply(&buf[..cut]);
            assert!(
                part == Ok(None) || same(&part, &full),
                "prefix {cut} of {} gave {part:?}, the whole {full:?}",
                buf.len()
            );
        }
    }
    let Ok(Some((frame, used))) = full else {
        return;
    };
    assert!(used > 0, "consumed nothing");
    assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
    let alone = parse_reply(&buf[..used]);
    assert!(
        same(&alone, &Ok(Some((frame.clone(), used)))),
        "the consumed bytes alone parse differently: {alone:?}"
    );
    let mut wire = Vec::new();
    frame.encode(Proto::Resp3, &mut wire);
    let again = parse_reply(&wire);
    assert!(
        same(&again, &Ok(Some((normalise(&frame), wire.len())))),
        "RESP3 re-encoding {:?} of {frame:?} parses as {again:?}",
        String::from_utf8_lossy(&wire)
    );
    let mut v2 = Vec::new();
    frame.encode(Proto::Resp2, &mut v2);
    assert!(
        matches!(parse_reply(&v2), Ok(Some((_, n))) if n == v2.len()),
        "RESP2 encoding {:?} does not parse",
        String::from_utf8_lossy(&v2)
    );
});
