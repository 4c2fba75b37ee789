//! Fuzzes the server's command parser, `parse_command`, with two sets of limits.
//!
//! Properties checked (beyond "does not panic"):
//! - a parsed command consumed at least one byte, at most the input, and at most
//!   `max_request`; it has at most `max_args` arguments;
//! - the result depends only on the bytes present: every prefix of the input parses as
//!   "incomplete" or exactly as the whole input does, and so does the consumed part alone;
//! - a command parsed from a RESP array encodes back (`encode_command`) to bytes that parse as
//!   the same arguments, consuming exactly the encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toykv::resp::{Limits, encode_command, parse_command};

const SMALL: Limits = Limits {
    max_request: 64,
    max_args: 4,
};

fn check(buf: &[u8], limits: &Limits) {
    let full = parse_command(buf, limits);
    // Prefixes: a few cut points, chosen by the input's length so that they vary.
    for cut in [
        0,
        1,
        buf.len() / 3,
        buf.len() / 2,
        buf.len().saturating_sub(1),
    ] {
        if cut < buf.len() {
            let part = parse_command(&buf[..cut], limits);
            assert!(
                part == Ok(None) || part == full,
                "prefix {cut} of {} gave {part:?}, the whole {full:?}",
                buf.len()
            );
        }
    }
    let Ok(Some((args, used))) = full else {
        return;
    };
    assert!(used > 0, "consumed nothing");
    assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
    assert!(used <= limits.max_request, "consumed {used} over the limit");
    assert!(args.len() <= limits.max_args, "{} arguments", args.len());
    assert_eq!(
        parse_command(&buf[..used], limits),
        Ok(Some((args.clone(), used))),
        "the consumed bytes alone parse differently"
    );
    if buf[0] == b'*' && !args.is_empty() {
        let mut wire = Vec::new();
        encode_command(&args, &mut wire);
        assert_eq!(
            parse_command(&wire, &Limits::default()),
            Ok(Some((args.clone(), wire.len()))),
            "re-encoded command parses differently"
        );
    }
}

fuzz_target!(|buf: &[u8]| {
    check(buf, &Limits::default());
    check(buf, &SMALL);
});
