//! The Rust `redis` crate against the server, in RESP2 and RESP3.

use redis::Commands;
use toykv::server::Config;

use crate::TestServer;

fn check(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = con.set("a", b"1".as_slice()).unwrap();
    let _: () = con.set("b", vec![0u8, 255, 10, 13]).unwrap();
    let a: Vec<u8> = con.get("a").unwrap();
    assert_eq!(a, b"1");
    let both: Vec<Option<Vec<u8>>> = con.mget(&["a", "b", "c"]).unwrap();
    assert_eq!(
        both,
        vec![Some(b"1".to_vec()), Some(vec![0, 255, 10, 13]), None]
    );
    let n: i64 = con.exists(&["a", "b", "c"]).unwrap();
    assert_eq!(n, 2);
    let mut keys: Vec<String> = con.scan().unwrap().map(|k| k.unwrap()).collect();
    keys.sort();
    assert_eq!(keys, vec!["a", "b"]);
    let deleted: i64 = con.del(&["a", "c"]).unwrap();
    assert_eq!(deleted, 1);
    let none: Option<Vec<u8>> = con.get("a").unwrap();
    assert_eq!(none, None);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 1);
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let err = con.set::<_, _, ()>("toolongkey", "x").unwrap_err();
    assert!(err.to_string().contains("at most 8 bytes"), "{err}");
}

#[test]
fn redis_crate_resp2() {
    let s = TestServer::start(Config::default());
    check(&format!("redis://{}/", s.addr));
}

#[test]
fn redis_crate_resp3() {
    let s = TestServer::start(Config::default());
    check(&format!("redis://{}/?protocol=resp3", s.addr));
}
