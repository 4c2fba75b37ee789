//! Tests of encoding and [`parse_reply`]; the command parser's are in [`commands`].

use super::encode::double;
use super::*;
use proptest::prelude::*;

mod commands;

fn enc(f: &Frame, proto: Proto) -> Vec<u8> {
    let mut out = Vec::new();
    f.encode(proto, &mut out);
    out
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
