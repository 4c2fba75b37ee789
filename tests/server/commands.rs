//! Every command's replies, in RESP2 and RESP3.

use std::collections::BTreeSet;

use toykv::keymode::KeyMode;
use toykv::resp::Frame;
use toykv::server::Config;

use crate::{TestServer, bulk, error};

fn ok() -> Frame {
    Frame::ok()
}

#[test]
fn strings() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(c.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(c.call(&["ping", "hi"]), bulk("hi"));
    assert_eq!(c.call(&["ECHO", "x y"]), bulk("x y"));
    assert_eq!(c.call(&["GET", "nope"]), Frame::Null);
    assert_eq!(c.call(&["SET", "k", "v"]), ok());
    assert_eq!(c.call(&["get", "k"]), bulk("v"));
    // Every byte value, 0 and 256 bytes long.
    let all: Vec<u8> = (0..=255u8).collect();
    assert_eq!(c.call(&[&b"SET"[..], b"bin", &all]), ok());
    assert_eq!(c.call(&["GET", "bin"]), Frame::Bulk(all));
    assert_eq!(c.call(&["SET", "empty", ""]), ok());
    assert_eq!(c.call(&["GET", "empty"]), bulk(""));
    // Keys: up to 8 bytes, zero-padded.
    assert_eq!(c.call(&["SET", "12345678", "x"]), ok());
    let e = c.call(&["SET", "123456789", "x"]);
    assert!(error(&e).contains("at most 8 bytes"), "{e:?}");
    let long = vec![b'v'; 257];
    let e = c.call(&[&b"SET"[..], b"k", &long]);
    assert!(error(&e).contains("at most 256 bytes"), "{e:?}");
    let e = c.call(&["SET", "k", "v", "EX", "10"]);
    assert!(error(&e).contains("'EX' is not supported"), "{e:?}");
    assert_eq!(c.call(&["GET", "k"]), bulk("v"));
}

#[test]
fn multi_key_commands() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(c.call(&["MSET", "a", "1", "b", "2", "c", "3"]), ok());
    assert_eq!(
        c.call(&["MGET", "a", "x", "c", "toolongkey"]),
        Frame::Array(vec![bulk("1"), Frame::Null, bulk("3"), Frame::Null])
    );
    assert_eq!(c.call(&["EXISTS", "a", "a", "x"]), Frame::Integer(2));
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(3));
    assert_eq!(c.call(&["DEL", "a", "x", "b"]), Frame::Integer(2));
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(1));
    let e = c.call(&["MSET", "a", "1", "b"]);
    assert!(error(&e).contains("wrong number of arguments"), "{e:?}");
    // A bad pair refuses the whole MSET before anything is written.
    let e = c.call(&["MSET", "p", "1", "waytoolongkey", "2"]);
    assert!(error(&e).starts_with("ERR"), "{e:?}");
    assert_eq!(c.call(&["EXISTS", "p"]), Frame::Integer(0));
}

#[test]
fn errors_name_the_command() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(
        error(&c.call(&["FLUSHALL"])),
        "ERR unknown command 'FLUSHALL'"
    );
    assert_eq!(
        error(&c.call(&["GET"])),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(c.call(&["SELECT", "0"]), ok());
    assert!(error(&c.call(&["SELECT", "1"])).contains("out of range"));
    assert!(error(&c.call(&["CONFIG", "SET", "x", "y"])).contains("not supported"));
    assert!(error(&c.call(&["CLIENT", "PAUSE", "10"])).contains("not supported"));
    assert_eq!(
        error(&c.call(&["CLIENT", "KILL", "x"])),
        "ERR No such client"
    );
}

#[test]
fn scan_walks_every_key_once() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    let mut want = BTreeSet::new();
    for i in 0..250 {
        let k = format!("k{i:03}");
        c.call(&["SET", &k, "v"]);
        want.insert(k.into_bytes());
    }
    let mut got = BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 100, "scan does not end");
        let Frame::Array(parts) = c.call(&["SCAN", &cursor, "COUNT", "7"]) else {
            panic!("bad SCAN reply")
        };
        let [Frame::Bulk(next), Frame::Array(keys)] = &parts[..] else {
            panic!("bad SCAN reply {parts:?}")
        };
        for k in keys {
            let Frame::Bulk(k) = k else { panic!() };
            assert!(got.insert(k.clone()), "key returned twice");
        }
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(got, want);
    assert!(rounds >= 36);
    // MATCH filters; TYPE other than string finds nothing.
    let Frame::Array(parts) = c.call(&["SCAN", "0", "MATCH", "k1?0", "COUNT", "1000"]) else {
        panic!()
    };
    assert_eq!(
        parts[1],
        Frame::Array((0..10).map(|i| bulk(format!("k1{i}0"))).collect())
    );
    let Frame::Array(parts) = c.call(&["SCAN", "0", "TYPE", "hash"]) else {
        panic!()
    };
    assert_eq!(parts[1], Frame::Array(vec![]));
    assert!(error(&c.call(&["SCAN", "x"])).contains("invalid cursor"));
    assert!(error(&c.call(&["SCAN", "0", "COUNT", "0"])).contains("out of range"));
}

#[test]
fn numeric_keys_and_range() {
    let config = Config {
        key_mode: KeyMode::Numeric,
        ..Config::default()
    };
    let s = TestServer::start(config);
    let mut c = s.connect();
    for i in (0..20).rev() {
        assert_eq!(
            c.call(&["SET", &format!("key:{i:012}"), &format!("v{i}")]),
            ok()
        );
    }
    assert_eq!(c.call(&["GET", "key:000000000007"]), bulk("v7"));
    assert_eq!(c.call(&["GET", "7"]), bulk("v7"));
    assert!(error(&c.call(&["GET", "nodigits"])).contains("no trailing"));
    assert_eq!(
        c.call(&["RANGE", "key:3", "5"]),
        Frame::Array(vec![
            bulk("3"),
            bulk("v3"),
            bulk("4"),
            bulk("v4"),
            bulk("5"),
            bulk("v5")
        ])
    );
    assert_eq!(
        c.call(&["RANGE", "-", "+", "LIMIT", "2"]),
        Frame::Array(vec![bulk("0"), bulk("v0"), bulk("1"), bulk("v1")])
    );
    assert_eq!(c.call(&["RANGE", "9", "3"]), Frame::Array(vec![]));
    assert_eq!(
        c.call(&["RANGE", "18", "+"]),
        Frame::Array(vec![bulk("18"), bulk("v18"), bulk("19"), bulk("v19")])
    );
    assert!(error(&c.call(&["RANGE", "1", "2", "LIMIT", "-1"])).contains("LIMIT"));
    assert!(error(&c.call(&["RANGE", "1", "2", "BOGUS"])).contains("syntax"));
}

#[test]
fn hello_switches_protocol() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(c.call(&["GET", "none"]), Frame::Null);
    let Frame::Array(flat) = c.call(&["HELLO", "2"]) else {
        panic!("RESP2 HELLO is a flat array")
    };
    assert_eq!(flat[4..6], [bulk("proto"), Frame::Integer(2)]);
    let Frame::Map(m) = c.call(&["HELLO", "3", "SETNAME", "tester"]) else {
        panic!("RESP3 HELLO is a map")
    };
    assert!(m.contains(&(bulk("proto"), Frame::Integer(3))));
    assert!(m.contains(&(bulk("server"), bulk("toykv"))));
    // RESP3 null, and the client name.
    c.send(b"*2\r\n$3\r\nGET\r\n$4\r\nnone\r\n");
    assert_eq!(c.read(), Some(Frame::Null));
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), bulk("tester"));
    assert!(error(&c.call(&["HELLO", "4"])).starts_with("NOPROTO"));
    assert!(matches!(c.call(&["CLIENT", "ID"]), Frame::Integer(_)));
    assert_eq!(c.call(&["CLIENT", "SETINFO", "LIB-NAME", "x"]), ok());
}

#[test]
fn info_command_and_config() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    c.call(&["SET", "a", "1"]);
    c.call(&["GET", "a"]);
    c.call(&["GET", "b"]);
    let Frame::Bulk(info) = c.call(&["INFO"]) else {
        panic!("INFO is a bulk string in RESP2")
    };
    let info = String::from_utf8(info).unwrap();
    for want in [
        "# Server\r\n",
        "# Clients\r\nconnected_clients:1\r\n",
        "keyspace_hits:1\r\nkeyspace_misses:1\r\n",
        "cmdstat_get:calls=2,",
        "latency_percentiles_usec_get:p50=",
        "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n",
        "# Storage\r\n",
        "key_mode:bytes\r\n",
        "gc_set_aside:0\r\n",
        "\r\ncache_capacity_bytes:",
        // GET a read the value from the write buffer and cached it; GET b found no key.
        "\r\ncache_used_bytes:293\r\ncache_entries:1\r\ncache_hits:0\r\ncache_misses:2\r\n",
    ] {
        assert!(info.contains(want), "INFO lacks {want:?}:\n{info}");
    }
    let Frame::Bulk(one) = c.call(&["INFO", "keyspace"]) else {
        panic!()
    };
    assert_eq!(one, b"# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n");
    assert_eq!(
        c.call(&["CONFIG", "GET", "maxclients"]),
        Frame::Array(vec![bulk("maxclients"), bulk("1000")])
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "save"]),
        Frame::Array(vec![bulk("save"), bulk("")])
    );
    assert_eq!(c.call(&["CONFIG", "GET", "nosuch*"]), Frame::Array(vec![]));
    let Frame::Array(cmds) = c.call(&["COMMAND"]) else {
        panic!()
    };
    assert_eq!(
        c.call(&["COMMAND", "COUNT"]),
        Frame::Integer(cmds.len() as i64)
    );
    assert_eq!(c.call(&["COMMAND", "DOCS"]), Frame::Array(vec![]));
}
