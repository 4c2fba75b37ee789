//! The replication position across restarts (`REPLPOS`, see `src/server/repl/position.rs`):
//! a replica stopped gracefully and started again continues partially, so do the replicas of
//! a master stopped gracefully and started again on its directory and port; a replica killed
//! with SIGKILL (a child process) and one whose position file is corrupt, truncated, foreign
//! or describes other data copy the store again (a full sync). Each ends with the replica
//! holding exactly the master's data. And the offset is exact: against a stand-in master, a
//! transaction counts only once its `EXEC` is applied, so a link cut inside one asks for it
//! again from its `MULTI`, and a graceful stop keeps the offset of the last byte applied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use tempfile::TempDir;
use toykv::format::position::POSITION_NAME;
use toykv::resp::Frame;
use toykv::server::Config;

use super::replication::{
    contents, contents_at, eventually, info, info_at, key, linked, replica_of, value,
};
use super::{Client, TestServer};

fn count(m: &BTreeMap<String, String>, k: &str) -> u64 {
    m[k].parse().unwrap()
}

/// How many full syncs, partial resyncs and refused partial resyncs a master served between
/// two of its `INFO stats`.
fn syncs(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> [u64; 3] {
    ["sync_full", "sync_partial_ok", "sync_partial_err"].map(|k| count(after, k) - count(before, k))
}

/// `SET`s keys `range` on the server at `addr` (the value depends on `round` too, so that a
/// key written again gets a new value).
fn write(addr: SocketAddr, range: std::ops::Range<u64>, round: u64) {
    let mut c = Client::connect(addr);
    for i in range {
        let args = [b"SET".to_vec(), key(i).into_bytes(), value(i + round)];
        assert_eq!(c.call(&args), Frame::ok(), "SET {}", key(i));
    }
}

/// `WAIT n` on the master at `addr`: every replica has everything written so far.
fn wait_for(addr: SocketAddr, n: i64) {
    let mut c = Client::connect(addr);
    assert_eq!(
        c.call(&["WAIT", &n.to_string(), "10000"]),
        Frame::Integer(n)
    );
}

fn kept(dir: &Path) -> bool {
    dir.join(POSITION_NAME).exists()
}

/// A replica of `master` over `dir`.
fn replica_in(dir: TempDir, master: SocketAddr) -> TestServer {
    let config = Config {
        replicaof: Some((master.ip().to_string(), master.port())),
        ..Config::default()
    };
    TestServer::start_at(dir, super::options(), 0, config)
}

fn linked_at(addr: SocketAddr) -> bool {
    info_at(addr, "replication")
        .get("master_link_status")
        .is_some_and(|s| s == "up")
}

/// A replica of `m` that received 300 keys and was then stopped gracefully: its directory,
/// holding the position it kept.
fn stopped_replica(m: &TestServer) -> tempfile::TempDir {
    let r = replica_of(m.addr, |_| {});
    eventually("link up", || linked(&r));
    write(m.addr, 0..300, 0);
    wait_for(m.addr, 1);
    let dir = r.stop_keeping_dir();
    assert!(kept(dir.path()), "a graceful stop keeps the position");
    dir
}

#[test]
fn a_replica_stopped_gracefully_continues_partially_after_its_restart() {
    let m = TestServer::start(Config::default());
    let dir = stopped_replica(&m);
    let before = info(&m, "stats");
    // The master goes on taking writes (new keys and overwrites) while the replica is down.
    write(m.addr, 200..1200, 1);
    let r = replica_in(dir, m.addr);
    // Removed before the first command is answered.
    info(&r, "server");
    assert!(!kept(r.dir.path()), "the position is removed at start");
    // And while it comes back.
    let writer = {
        let addr = m.addr;
        std::thread::spawn(move || write(addr, 1000..1500, 2))
    };
    eventually("link up again", || linked(&r));
    writer.join().unwrap();
    wait_for(m.addr, 1);
    let after = info(&m, "stats");
    assert_eq!(syncs(&before, &after), [0, 1, 0], "{after:?}");
    let (mi, ri) = (info(&m, "replication"), info(&r, "replication"));
    assert_eq!(ri["master_replid"], mi["master_replid"]);
    assert_eq!(ri["slave_repl_offset"], mi["master_repl_offset"]);
    let want = contents(&m);
    assert_eq!(want.len(), 1500);
    assert_eq!(contents(&r), want);
}

#[test]
fn a_master_restarted_cleanly_lets_its_replicas_continue() {
    // The master with durability always: its final sync is a checkpoint of the journal.
    let options = super::options().durability(toykv::Durability::Always);
    let m = TestServer::start_with(super::tempdir(), options.clone(), Config::default());
    let port = m.addr.port();
    let r1 = replica_of(m.addr, |_| {});
    let r2 = replica_of(m.addr, |_| {});
    eventually("both linked", || linked(&r1) && linked(&r2));
    write(m.addr, 0..500, 0);
    // Both replicas have the whole stream before the stop. (The shutdown also waits for
    // them, but only up to 2 s: on a loaded machine that may not be enough, and a replica
    // behind would then need a full sync, which is right but not what this test is about.)
    wait_for(m.addr, 2);
    let old = info(&m, "replication");
    let dir = m.stop_keeping_dir();
    assert!(kept(dir.path()));
    let m = TestServer::start_at(dir, options, port, Config::default());
    assert_eq!(m.addr.port(), port);
    let new = info(&m, "replication");
    assert!(!kept(m.dir.path()));
    assert_eq!(new["master_replid"], old["master_replid"]);
    assert!(
        count(&new, "master_repl_offset") >= count(&old, "master_repl_offset"),
        "{new:?}"
    );
    assert_eq!(new["repl_backlog_active"], "1");
    eventually("both replicas attached again", || {
        info(&m, "replication")["connected_slaves"] == "2" && linked(&r1) && linked(&r2)
    });
    let stats = info(&m, "stats");
    assert_eq!(stats["sync_partial_ok"], "2", "{stats:?}");
    assert_eq!(stats["sync_full"], "0", "{stats:?}");
    write(m.addr, 400..1000, 1);
    wait_for(m.addr, 2);
    let want = contents(&m);
    assert_eq!(want.len(), 1000);
    assert_eq!(contents(&r1), want);
    assert_eq!(contents(&r2), want);
}

#[test]
fn a_master_that_never_had_a_replica_keeps_no_position() {
    let m = TestServer::start(Config::default());
    write(m.addr, 0..10, 0);
    let dir = m.stop_keeping_dir();
    assert!(
        !kept(dir.path()),
        "its offset counted nothing: no position to keep"
    );
}

#[test]
fn a_replica_killed_hard_does_a_full_sync_after_its_restart() {
    let m = TestServer::start(Config::default());
    let dir = stopped_replica(&m);
    // A child process starts from the kept position (and removes it), then is killed.
    let before = info(&m, "stats");
    let (mut child, port) = super::lifecycle::spawn_child_of(dir.path(), Some(m.addr));
    let child_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    eventually("the child's link is up", || linked_at(child_addr));
    assert!(!kept(dir.path()), "the child removed the position at start");
    let mid = info(&m, "stats");
    assert_eq!(syncs(&before, &mid), [0, 1, 0], "{mid:?}");
    write(m.addr, 300..600, 1);
    wait_for(m.addr, 1);
    assert_eq!(contents_at(child_addr), contents(&m));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!kept(dir.path()), "SIGKILL leaves no position");
    write(m.addr, 500..700, 2);
    let before = info(&m, "stats");
    let r = replica_in(dir, m.addr);
    eventually("link up after the crash", || linked(&r));
    wait_for(m.addr, 1);
    let after = info(&m, "stats");
    assert_eq!(syncs(&before, &after)[..2], [1, 0], "{after:?}");
    let want = contents(&m);
    assert_eq!(want.len(), 700);
    assert_eq!(contents(&r), want);
}

#[test]
fn a_corrupt_truncated_foreign_or_stale_position_means_a_full_sync() {
    let m = TestServer::start(Config::default());
    let mut r = replica_of(m.addr, |_| {});
    eventually("link up", || linked(&r));
    type Spoil = fn(&Path);
    let spoils: [(&str, Spoil); 4] = [
        ("a flipped byte", |d| {
            let p = d.join(POSITION_NAME);
            let mut b = std::fs::read(&p).unwrap();
            b[20] ^= 0x10;
            std::fs::write(&p, b).unwrap();
        }),
        ("truncated", |d| {
            let p = d.join(POSITION_NAME);
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..100]).unwrap();
        }),
        ("foreign", |d| {
            std::fs::write(d.join(POSITION_NAME), "replicaof 10.0.0.1 6379\n").unwrap();
        }),
        ("the data changed after the shutdown", |d| {
            let store = super::reopen(d);
            store.put(*b"intruder", b"x").unwrap();
            store.close().unwrap();
        }),
    ];
    for (round, (what, spoil)) in spoils.into_iter().enumerate() {
        let round = round as u64;
        write(m.addr, round * 100..round * 100 + 300, round);
        wait_for(m.addr, 1);
        let dir = r.stop_keeping_dir();
        assert!(kept(dir.path()), "{what}");
        spoil(dir.path());
        let before = info(&m, "stats");
        r = replica_in(dir, m.addr);
        eventually("link up", || linked(&r));
        assert!(!kept(r.dir.path()), "{what}: the file is removed at start");
        wait_for(m.addr, 1);
        let after = info(&m, "stats");
        assert_eq!(syncs(&before, &after)[..2], [1, 0], "{what}: {after:?}");
        assert_eq!(contents(&r), contents(&m), "{what}");
    }
}

/// Reads one command from `s` (a replica talking to a test's stand-in master).
fn next_command(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    use std::io::Read;
    loop {
        if let Some((argv, n)) =
            toykv::resp::parse_command(buf, &toykv::resp::Limits::default()).unwrap()
        {
            buf.drain(..n);
            return argv;
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => panic!("the replica closed the link"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("the replica went silent: {e}"),
        }
    }
}

/// Plays a master's part of the handshake on a replica's new link; the offset its `PSYNC`
/// asks for.
fn handshake(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> String {
    use std::io::Write;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    loop {
        let argv = next_command(s, buf);
        let name = String::from_utf8_lossy(&argv[0]).to_ascii_uppercase();
        match name.as_str() {
            "PING" => s.write_all(b"+PONG\r\n").unwrap(),
            "REPLCONF" => s.write_all(b"+OK\r\n").unwrap(),
            "PSYNC" => return String::from_utf8(argv[2].clone()).unwrap(),
            other => panic!("unexpected {other} in the handshake"),
        }
    }
}

/// Reads the replica's `REPLCONF ACK`s until one says `offset`; one past it fails.
fn acked(s: &mut std::net::TcpStream, buf: &mut Vec<u8>, offset: usize) {
    loop {
        let argv = next_command(s, buf);
        let [name, sub, n] = &argv[..] else {
            panic!("{argv:?} from the replica")
        };
        assert!(name.eq_ignore_ascii_case(b"replconf") && sub.eq_ignore_ascii_case(b"ack"));
        let n: usize = String::from_utf8_lossy(n).parse().unwrap();
        assert!(n <= offset, "the replica acknowledged {n}, past {offset}");
        if n == offset {
            return;
        }
    }
}

#[test]
fn a_transaction_counts_only_once_applied_so_a_cut_inside_it_resends_it_whole() {
    use std::io::Write;
    use toykv::format::position::Position;
    let id = "0123456789abcdef".repeat(3)[..40].to_string();
    // What the stand-in master sends: an empty store as the full sync's copy, then a stream.
    let source = super::tempdir();
    let snapshot = {
        let store = toykv::Store::open_with(source.path(), super::options()).unwrap();
        let (snap, ()) = store.snapshot(|| ()).unwrap();
        let mut bytes = Vec::new();
        snap.write_to(&mut bytes).unwrap();
        bytes
    };
    let cmd = |args: &[&str]| super::command(args);
    let set0 = cmd(&["SET", "k0", "v0"]);
    let multi = cmd(&["MULTI"]);
    let (set_a, set_b) = (cmd(&["SET", "a", "1"]), cmd(&["SET", "b", "2"]));
    let exec = cmd(&["EXEC"]);
    let set1 = cmd(&["SET", "k1", "v1"]);

    let master = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = replica_in(super::tempdir(), master.local_addr().unwrap());
    // First link: the copy at offset 0, a write, and half a transaction; then the master
    // closes its side (the replica reads all of it before it sees the end).
    let (mut s, _) = master.accept().unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        handshake(&mut s, &mut buf),
        "1",
        "a new replica asks from offset 1"
    );
    s.write_all(format!("+FULLRESYNC {id} 0\r\n${}\r\n", snapshot.len()).as_bytes())
        .unwrap();
    s.write_all(&snapshot).unwrap();
    s.write_all(&[&set0[..], &multi, &set_a].concat()).unwrap();
    acked(&mut s, &mut buf, set0.len());
    s.shutdown(std::net::Shutdown::Write).unwrap();
    drop(s);
    // Second link: the replica asks for the stream from the transaction's MULTI.
    let (mut s, _) = master.accept().unwrap();
    let mut buf = Vec::new();
    assert_eq!(handshake(&mut s, &mut buf), (set0.len() + 1).to_string());
    s.write_all(format!("+CONTINUE {id}\r\n").as_bytes())
        .unwrap();
    s.write_all(&[&multi[..], &set_a, &set_b, &exec, &set1].concat())
        .unwrap();
    let end = set0.len() + multi.len() + set_a.len() + set_b.len() + exec.len() + set1.len();
    acked(&mut s, &mut buf, end);
    let mut c = r.connect();
    for (k, v) in [("k0", "v0"), ("a", "1"), ("b", "2"), ("k1", "v1")] {
        assert_eq!(c.call(&["GET", k]), super::bulk(v), "{k}");
    }
    // A graceful stop keeps exactly that offset.
    let dir = r.stop_keeping_dir();
    let kept = Position::decode(&std::fs::read(dir.path().join(POSITION_NAME)).unwrap()).unwrap();
    assert_eq!(
        (kept.replid.as_str(), kept.offset, kept.keys),
        (&id[..], end as u64, 4)
    );
}
