//! The wire: pipelines, fragments, inline commands, and garbage.

use std::io::Write;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::resp::Frame;
use toykv::server::Config;

use crate::{TestServer, bulk, command};

#[test]
fn pipeline_of_a_thousand_commands_in_one_write() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend(command(&["SET", &format!("p{i}"), &format!("value-{i}")]));
        batch.extend(command(&["GET", &format!("p{i}")]));
    }
    c.send(&batch);
    for i in 0..500 {
        assert_eq!(c.read(), Some(Frame::ok()));
        assert_eq!(c.read(), Some(bulk(format!("value-{i}"))));
    }
}

#[test]
fn commands_split_at_every_byte() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    let mut bytes = command(&["SET", "frag", "ment"]);
    bytes.extend(command(&["GET", "frag"]));
    bytes.extend(b"PING\r\n");
    for b in &bytes {
        c.stream.write_all(&[*b]).unwrap();
        c.stream.flush().unwrap();
    }
    assert_eq!(c.read(), Some(Frame::ok()));
    assert_eq!(c.read(), Some(bulk("ment")));
    assert_eq!(c.read(), Some(Frame::Simple("PONG".into())));
}

#[test]
fn inline_commands() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    c.send(b"SET inl \"a b\"\r\nGET inl\r\n\r\nPING\n");
    assert_eq!(c.read(), Some(Frame::ok()));
    assert_eq!(c.read(), Some(bulk("a b")));
    assert_eq!(c.read(), Some(Frame::Simple("PONG".into())));
}

#[test]
fn garbage_closes_only_its_connection() {
    let s = TestServer::start(Config::default());
    let mut rng = StdRng::seed_from_u64(9);
    for round in 0..200 {
        let mut c = s.connect();
        let n = rng.random_range(1..2000);
        let mut junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        if round % 2 == 0 {
            // Start like a command, then go wrong.
            junk.splice(0..0, b"*3\r\n$3\r\nSET\r\n$".iter().copied());
        }
        let _ = c.stream.write_all(&junk);
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        // Whatever it answers, it ends the conversation rather than hanging or crashing.
        c.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(c.closed());
    }
    let mut c = s.connect();
    assert_eq!(c.call(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn protocol_error_is_reported_then_closed() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    c.send(b"*1\r\n:5\r\n");
    let Some(Frame::Error(e)) = c.read() else {
        panic!("expected a protocol error")
    };
    assert!(e.starts_with("ERR Protocol error"), "{e}");
    assert!(c.closed());
}
