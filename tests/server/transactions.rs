//! MULTI, EXEC and DISCARD, with Redis's semantics, and the atomic visibility of MSET and of a
//! transaction's writes.
//!
//! Inside MULTI a command is checked (name, arity) and queued: `+QUEUED`, or an error that
//! dooms the transaction, whose EXEC then answers `EXECABORT` and runs nothing. EXEC runs the
//! queue in order and answers the array of their replies; DISCARD drops it. SET, GET, DEL,
//! MSET, MGET and EXISTS may be queued. The writes of one EXEC, like the pairs of one MSET,
//! become visible together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use toykv::resp::Frame;
use toykv::server::Config;

use crate::{Client, TestServer, bulk, command, error};

fn queued() -> Frame {
    Frame::Simple("QUEUED".into())
}

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

#[test]
fn exec_runs_the_queue_in_order_and_answers_every_reply() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(c.call(&["SET", "a", "old"]), Frame::ok());
    assert_eq!(c.call(&["MULTI"]), Frame::ok());
    assert_eq!(c.call(&["GET", "a"]), queued());
    assert_eq!(c.call(&["SET", "a", "new"]), queued());
    // A GET later in the transaction sees the SET before it.
    assert_eq!(c.call(&["GET", "a"]), queued());
    assert_eq!(c.call(&["MSET", "b", "2", "c", "3"]), queued());
    assert_eq!(c.call(&["MGET", "a", "b", "c", "z"]), queued());
    assert_eq!(c.call(&["EXISTS", "a", "b", "z"]), queued());
    assert_eq!(c.call(&["DEL", "c", "z"]), queued());
    assert_eq!(c.call(&["GET", "c"]), queued());
    assert_eq!(
        c.call(&["EXEC"]),
        Frame::Array(vec![
            bulk("old"),
            Frame::ok(),
            bulk("new"),
            Frame::ok(),
            Frame::Array(vec![bulk("new"), bulk("2"), bulk("3"), Frame::Null]),
            Frame::Integer(2),
            Frame::Integer(1),
            Frame::Null,
        ])
    );
    // Out of the transaction: commands run at once again.
    assert_eq!(c.call(&["GET", "a"]), bulk("new"));
    assert_eq!(c.call(&["GET", "c"]), Frame::Null);
    // An empty transaction answers an empty array.
    assert_eq!(c.call(&["MULTI"]), Frame::ok());
    assert_eq!(c.call(&["EXEC"]), Frame::Array(vec![]));
}

#[test]
fn queued_commands_run_only_at_exec() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    let mut other = s.connect();
    assert_eq!(c.call(&["MULTI"]), Frame::ok());
    assert_eq!(c.call(&["SET", "q", "1"]), queued());
    assert_eq!(c.call(&["DEL", "r"]), queued());
    assert_eq!(other.call(&["SET", "r", "kept"]), Frame::ok());
    assert_eq!(
        other.call(&["GET", "q"]),
        Frame::Null,
        "SET ran at queue time"
    );
    assert_eq!(
        c.call(&["EXEC"]),
        Frame::Array(vec![Frame::ok(), Frame::Integer(1)])
    );
    assert_eq!(other.call(&["GET", "q"]), bulk("1"));
    assert_eq!(other.call(&["GET", "r"]), Frame::Null);
}

#[test]
fn a_whole_transaction_pipelined_in_one_write() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    let mut bytes = command(&["MULTI"]);
    for i in 0..100 {
        bytes.extend(command(&["SET", &format!("t{i}"), &format!("v{i}")]));
    }
    bytes.extend(command(&["GET", "t42"]));
    bytes.extend(command(&["EXEC"]));
    bytes.extend(command(&["GET", "t99"]));
    c.send(&bytes);
    assert_eq!(c.read(), Some(Frame::ok()));
    for _ in 0..101 {
        assert_eq!(c.read(), Some(queued()));
    }
    let mut want = vec![Frame::ok(); 100];
    want.push(bulk("v42"));
    assert_eq!(c.read(), Some(Frame::Array(want)));
    assert_eq!(c.read(), Some(bulk("v99")));
}

#[test]
fn discard_drops_the_queue() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(c.call(&["MULTI"]), Frame::ok());
    assert_eq!(c.call(&["SET", "d", "1"]), queued());
    assert_eq!(c.call(&["DISCARD"]), Frame::ok());
    assert_eq!(c.call(&["GET", "d"]), Frame::Null);
    assert_eq!(c.call(&["SET", "d", "2"]), Frame::ok(), "still in MULTI");
    assert_eq!(error(&c.call(&["EXEC"])), "ERR EXEC without MULTI");
    // DISCARD outside a transaction is an error too, and changes nothing.
    assert!(error(&c.call(&["DISCARD"])).starts_with("ERR"));
    assert_eq!(c.call(&["GET", "d"]), bulk("2"));
}

#[test]
fn exec_without_multi_and_nested_multi_are_errors() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(error(&c.call(&["EXEC"])), "ERR EXEC without MULTI");
    assert_eq!(c.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(c.call(&["MULTI"]), Frame::ok());
    assert_eq!(c.call(&["SET", "n", "1"]), queued());
    // As in Redis, a nested MULTI is refused without ending or dooming the transaction.
    assert_eq!(
        error(&c.call(&["MULTI"])),
        "ERR MULTI calls can not be nested"
    );
    assert_eq!(c.call(&["SET", "m", "2"]), queued());
    assert_eq!(
        c.call(&["EXEC"]),
        Frame::Array(vec![Frame::ok(), Frame::ok()])
    );
    assert_eq!(
        c.call(&["MGET", "n", "m"]),
        Frame::Array(vec![bulk("1"), bulk("2")])
    );
    assert_eq!(error(&c.call(&["EXEC"])), "ERR EXEC without MULTI");
}

/// Runs MULTI, `bad`, a good SET, EXEC: `bad` is refused when queued, EXEC answers EXECABORT,
/// nothing runs, and the connection is out of the transaction.
fn aborts(c: &mut Client, bad: &[&str]) {
    assert_eq!(c.call(&["MULTI"]), Frame::ok());
    assert_eq!(c.call(&["SET", "x", "queued before"]), queued());
    let e = c.call(bad);
    assert!(error(&e).starts_with("ERR"), "{bad:?} when queued: {e:?}");
    assert_eq!(c.call(&["SET", "y", "queued after"]), queued());
    assert_eq!(error(&c.call(&["EXEC"])), EXECABORT, "after {bad:?}");
    assert_eq!(
        c.call(&["MGET", "x", "y"]),
        Frame::Array(vec![Frame::Null, Frame::Null])
    );
    assert_eq!(error(&c.call(&["EXEC"])), "ERR EXEC without MULTI");
}

#[test]
fn a_bad_command_in_the_queue_aborts_exec() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    aborts(&mut c, &["SET", "x"]);
    aborts(&mut c, &["GET"]);
    aborts(&mut c, &["EXISTS"]);
    aborts(&mut c, &["NOSUCHCOMMAND", "x"]);
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(0));
}

/// The `redis` crate's atomic pipeline sends MULTI, the commands and EXEC in one write, and
/// reads the EXEC array as the pipeline's results.
fn redis_crate_atomic_pipeline(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    type Bytes = Option<Vec<u8>>;
    let (old, got, both, n): (Bytes, Vec<u8>, Vec<Bytes>, i64) = redis::pipe()
        .atomic()
        .get("a")
        .set("a", "1")
        .ignore()
        .get("a")
        .mset(&[("b", "2"), ("c", "3")])
        .ignore()
        .mget(&["b", "c"])
        .exists(&["a", "b", "c", "z"])
        .query(&mut con)
        .unwrap();
    assert_eq!(old, None);
    assert_eq!(got, b"1");
    assert_eq!(both, vec![Some(b"2".to_vec()), Some(b"3".to_vec())]);
    assert_eq!(n, 3);
    let (deleted, gone): (i64, Option<Vec<u8>>) = redis::pipe()
        .atomic()
        .del(&["a", "b", "z"])
        .get("a")
        .query(&mut con)
        .unwrap();
    assert_eq!((deleted, gone), (2, None));
    // EXECABORT comes back as an error of the whole pipeline, and nothing ran.
    let e = redis::pipe()
        .atomic()
        .set("d", "1")
        .cmd("SET")
        .arg("d")
        .query::<()>(&mut con)
        .unwrap_err();
    assert_eq!(
        e.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort),
        "{e}"
    );
    let d: Option<Vec<u8>> = redis::cmd("GET").arg("d").query(&mut con).unwrap();
    assert_eq!(d, None);
}

#[test]
fn redis_crate_atomic_pipeline_resp2() {
    let s = TestServer::start(Config::default());
    redis_crate_atomic_pipeline(&format!("redis://{}/", s.addr));
}

#[test]
fn redis_crate_atomic_pipeline_resp3() {
    let s = TestServer::start(Config::default());
    redis_crate_atomic_pipeline(&format!("redis://{}/?protocol=resp3", s.addr));
}

/// Generations of the writer in [`writes_together_are_seen_together`]: a bound, should the
/// reader stop early.
const MAX_GENERATIONS: u64 = 1_000_000;
/// MGETs of the reader.
const READS: usize = 2_000;

/// The generation in a value `g<n>`.
fn generation(f: &Frame) -> u64 {
    match f {
        Frame::Bulk(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.strip_prefix('g'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a generation: {f:?}")),
        Frame::Null => 0,
        other => panic!("MGET item {other:?}"),
    }
}

/// One connection writes `k1` and `k2` with generation 1, 2, 3, … together (per `write`),
/// while another reads both with MGET [`READS`] times: it never sees them at different
/// generations, nor a generation go back.
fn writes_together_are_seen_together(write: fn(&mut Client, u64)) {
    let s = TestServer::start(Config::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = s.connect();
    let writer = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut g = 0;
            while !stop.load(Ordering::Relaxed) && g < MAX_GENERATIONS {
                g += 1;
                write(&mut w, g);
            }
            g
        })
    };
    let mut r = s.connect();
    let mut last = 0;
    let mut moved = 0;
    for n in 0..READS {
        let Frame::Array(items) = r.call(&["MGET", "k1", "k2"]) else {
            panic!("MGET did not answer an array")
        };
        let (g1, g2) = (generation(&items[0]), generation(&items[1]));
        assert_eq!(g1, g2, "read {n}: k1 and k2 are at different generations");
        assert!(g1 >= last, "read {n}: generation {g1} after {last}");
        moved += usize::from(g1 > last);
        last = g1;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer thread");
    assert!(written >= last);
    println!("{READS} reads saw {moved} generations change; {written} generations written");
}

#[test]
fn mset_pairs_are_seen_together() {
    writes_together_are_seen_together(|c, g| {
        let v = format!("g{g}");
        assert_eq!(c.call(&["MSET", "k1", &v, "k2", &v]), Frame::ok());
    });
}

#[test]
fn exec_writes_are_seen_together() {
    writes_together_are_seen_together(|c, g| {
        let v = format!("g{g}");
        let mut bytes = command(&["MULTI"]);
        bytes.extend(command(&["SET", "k1", &v]));
        bytes.extend(command(&["SET", "k2", &v]));
        bytes.extend(command(&["EXEC"]));
        c.send(&bytes);
        assert_eq!(c.read(), Some(Frame::ok()), "MULTI");
        assert_eq!(c.read(), Some(queued()));
        assert_eq!(c.read(), Some(queued()));
        assert_eq!(
            c.read(),
            Some(Frame::Array(vec![Frame::ok(), Frame::ok()])),
            "EXEC"
        );
    });
}
