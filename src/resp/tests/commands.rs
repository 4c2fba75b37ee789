//! Tests of [`parse_command`], and of both parsers on arbitrary bytes.

use crate::resp::{Limits, ProtocolError, encode_command, parse_command, parse_reply};
use proptest::prelude::*;

type Cmds = Vec<Vec<Vec<u8>>>;

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

}
