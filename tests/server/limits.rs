//! Limits and security: connection cap, request size, idle timeout, slow and stalled clients,
//! protected mode, AUTH.

use std::time::{Duration, Instant};

use toykv::resp::{Frame, Limits};
use toykv::server::{Config, Server};

use crate::{TestServer, command, error, options, tempdir};

#[test]
fn connection_cap_refuses_with_an_error() {
    let s = TestServer::start(Config {
        max_clients: 2,
        ..Config::default()
    });
    let mut a = s.connect();
    let mut b = s.connect();
    assert_eq!(a.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(b.call(&["PING"]), Frame::Simple("PONG".into()));
    let mut c = s.connect();
    let Some(Frame::Error(e)) = c.read() else {
        panic!("expected an error")
    };
    assert_eq!(e, "ERR max number of clients reached");
    assert!(c.closed());
    // A slot frees up when a client leaves.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = s.connect();
        d.send(&command(&["PING"]));
        match d.read() {
            Some(Frame::Simple(p)) if p == "PONG" => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("slot not freed: {other:?}"),
        }
    }
}

#[test]
fn oversized_request_is_refused_before_it_arrives() {
    let s = TestServer::start(Config {
        limits: Limits {
            max_request: 4096,
            ..Limits::default()
        },
        ..Config::default()
    });
    let mut c = s.connect();
    // Declares a 1 GB argument: refused at once, without waiting for (or buffering) it.
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000000\r\n");
    let Some(Frame::Error(e)) = c.read() else {
        panic!("expected a protocol error")
    };
    assert!(e.starts_with("ERR Protocol error"), "{e}");
    assert!(c.closed());
    // An inline line that never ends.
    let mut c = s.connect();
    c.send(&vec![b'a'; 10_000]);
    let Some(Frame::Error(e)) = c.read() else {
        panic!("expected a protocol error")
    };
    assert!(e.starts_with("ERR Protocol error"), "{e}");
    let mut ok = s.connect();
    assert_eq!(ok.call(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn idle_clients_are_closed() {
    let s = TestServer::start(Config {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    });
    let mut c = s.connect();
    assert_eq!(c.call(&["PING"]), Frame::Simple("PONG".into()));
    let t = Instant::now();
    assert!(c.closed());
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_stalled_client_does_not_block_others() {
    let s = TestServer::start(Config::default());
    // One client stops in the middle of a command; another never reads its replies.
    let mut half = s.connect();
    half.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nab");
    let mut deaf = s.connect();
    let value = vec![b'x'; 256];
    deaf.call(&[&b"SET"[..], b"big", &value]);
    let mut flood = Vec::new();
    for _ in 0..20_000 {
        flood.extend(command(&["GET", "big"]));
    }
    let writer = std::thread::spawn(move || {
        // The server's replies (5 MB) back up; this write may block: that is the point.
        let _ = std::io::Write::write_all(&mut deaf.stream, &flood);
        deaf
    });
    let mut good = s.connect();
    let t = Instant::now();
    for i in 0..200 {
        assert_eq!(good.call(&["SET", "g", &i.to_string()]), Frame::ok());
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    half.send(b"c\r\n");
    assert_eq!(half.read(), Some(Frame::ok()));
    drop(writer);
}

#[test]
fn auth_is_required_when_a_password_is_set() {
    let s = TestServer::start(Config {
        password: Some("s3cret".into()),
        ..Config::default()
    });
    let mut c = s.connect();
    assert_eq!(
        error(&c.call(&["GET", "k"])),
        "NOAUTH Authentication required."
    );
    assert!(error(&c.call(&["AUTH", "wrong"])).starts_with("WRONGPASS"));
    assert!(error(&c.call(&["AUTH", "bob", "s3cret"])).starts_with("WRONGPASS"));
    assert!(error(&c.call(&["HELLO", "3"])).starts_with("NOAUTH"));
    assert_eq!(c.call(&["AUTH", "s3cret"]), Frame::ok());
    assert_eq!(c.call(&["GET", "k"]), Frame::Null);
    let mut d = s.connect();
    let Frame::Map(m) = d.call(&["HELLO", "3", "AUTH", "default", "s3cret"]) else {
        panic!("HELLO with AUTH")
    };
    assert!(!m.is_empty());
    assert_eq!(d.call(&["PING"]), Frame::Simple("PONG".into()));
    // Without a password configured, AUTH says so.
    let open = TestServer::start(Config::default());
    let mut e = open.connect();
    assert!(error(&e.call(&["AUTH", "x"])).contains("without any password configured"));
}

#[test]
fn protected_mode_refuses_to_listen_beyond_loopback_without_a_password() {
    let dir = tempdir();
    let store = std::sync::Arc::new(toykv::Store::open_with(dir.path(), options()).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        Server::new(store.clone(), Config::default())
            .run(listener, std::future::pending())
            .await
    });
    let e = result.unwrap_err();
    assert!(matches!(e, toykv::Error::Refused { .. }), "{e}");
    assert!(e.to_string().contains("--requirepass"), "{e}");
    // With a password it starts (and stops when asked).
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let config = Config {
            password: Some("pw".into()),
            ..Config::default()
        };
        Server::new(store.clone(), config)
            .run(listener, tokio::time::sleep(Duration::from_millis(50)))
            .await
    });
    result.unwrap();
}
