//! Stopping: the SHUTDOWN command, a graceful stop, and kill -9 of a server process while
//! clients write (every SET answered OK must be there after a restart).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::resp::Frame;
use toykv::server::{Config, Server};
use toykv::{Options, Store};

use crate::{Client, TestServer, bulk};

const CHILD_DIR: &str = "TOYKV_SERVER_CHILD";
/// `HOST:PORT` of a master the child replicates from, if set.
const CHILD_REPLICAOF: &str = "TOYKV_SERVER_CHILD_REPLICAOF";

#[test]
fn shutdown_command_stops_and_syncs() {
    let mut s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(c.call(&["SET", "kept", "yes"]), Frame::ok());
    c.send(b"*1\r\n$8\r\nSHUTDOWN\r\n");
    assert!(c.closed());
    s.wait().unwrap();
    let store = crate::reopen(s.dir.path());
    assert_eq!(
        store.get(*b"kept\0\0\0\0").unwrap().as_deref(),
        Some(&b"yes"[..])
    );
}

#[test]
fn graceful_stop_finishes_requests_in_flight() {
    let mut s = TestServer::start(Config::default());
    let mut c = s.connect();
    let mut batch = Vec::new();
    for i in 0..2000 {
        batch.extend(crate::command(&["SET", &format!("g{i}"), "v"]));
    }
    c.send(&batch);
    // Wait for the first reply so the batch is being served, then stop.
    assert_eq!(c.read(), Some(Frame::ok()));
    s.stop().unwrap();
    let mut answered = 1;
    while let Some(f) = c.read() {
        assert_eq!(f, Frame::ok());
        answered += 1;
    }
    let store = crate::reopen(s.dir.path());
    // Every SET answered is in the store.
    assert!(store.len() >= answered, "{} < {answered}", store.len());
    // New connections are refused once stopped.
    assert!(std::net::TcpStream::connect(s.addr).is_err());
}

/// The kill -9 child: serves the store in `TOYKV_SERVER_CHILD` on a free port and prints it;
/// a replica of `TOYKV_SERVER_CHILD_REPLICAOF` when that is set.
pub fn child_main() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    // The directory may still be held for a moment by a server the parent test just stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let store = loop {
        match Store::open_with(&dir, Options::new().section_slots(64)) {
            Err(toykv::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => break Arc::new(r.unwrap()),
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        let replicaof = std::env::var(CHILD_REPLICAOF).ok().map(|m| {
            let (host, port) = m.rsplit_once(':').unwrap();
            (host.to_string(), port.parse().unwrap())
        });
        let config = Config {
            dir: dir.into(),
            replicaof,
            ..Config::default()
        };
        Server::new(store, config)
            .run(listener, std::future::pending())
            .await
            .unwrap();
    });
}

fn spawn_child(dir: &std::path::Path) -> (Child, u16) {
    spawn_child_of(dir, None)
}

/// A server child process over `dir`, a replica of `master` if given; its port.
pub fn spawn_child_of(dir: &std::path::Path, master: Option<std::net::SocketAddr>) -> (Child, u16) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir);
    match master {
        Some(m) => command.env(CHILD_REPLICAOF, m.to_string()),
        None => command.env_remove(CHILD_REPLICAOF),
    };
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("child ended before printing its port")
            .unwrap();
        // libtest prints "test child_server ... " on the same line first.
        if let Some((_, p)) = line.split_once("PORT ") {
            break p.trim().parse().unwrap();
        }
    };
    (child, port)
}

#[test]
fn kill_9_loses_no_acknowledged_set() {
    let dir = crate::tempdir();
    let mut rng = StdRng::seed_from_u64(42);
    // For each key: the last value answered OK, and a value possibly in flight at the kill.
    let mut acked: HashMap<String, String> = HashMap::new();
    for round in 0..8 {
        let (mut child, port) = spawn_child(dir.path());
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        // Check what the previous round acknowledged.
        let mut check = Client::connect(addr);
        for (k, v) in &acked {
            assert_eq!(check.call(&["GET", k]), bulk(v), "round {round} key {k}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    let mut done: Vec<(String, String)> = Vec::new();
                    let mut pending = None;
                    for i in 0u64.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let (k, v) = (format!("w{w}k{}", i % 97), format!("r{round}i{i}"));
                        c.send(&crate::command(&["SET", &k, &v]));
                        pending = Some((k.clone(), v.clone()));
                        match c.read() {
                            Some(Frame::Simple(ok)) if ok == "OK" => done.push((k, v)),
                            _ => break,
                        }
                        pending = None;
                    }
                    (done, pending)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let mut maybe: HashMap<String, String> = HashMap::new();
        for w in writers {
            let (done, pending) = w.join().unwrap();
            for (k, v) in done {
                acked.insert(k, v);
            }
            if let Some((k, v)) = pending {
                maybe.insert(k, v);
            }
        }
        // The in-flight SET of each writer may or may not have landed: settle it.
        let (mut child, port) = spawn_child(dir.path());
        let mut c = Client::connect(([127, 0, 0, 1], port).into());
        for (k, v) in maybe {
            let got = c.call(&["GET", &k]);
            if got == bulk(&v) {
                acked.insert(k, v);
            } else if let Some(old) = acked.get(&k) {
                assert_eq!(got, bulk(old), "round {round} key {k}");
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(acked.len() > 100, "{}", acked.len());
}
