//! Replication between in-process servers: a replica's full sync of existing data, the write
//! stream (SET, DEL, MSET and EXEC as batches), READONLY, WAIT, ROLE and the INFO fields
//! Sentinel reads, a partial resync after the link is cut for a second (through a proxy the
//! test controls), promotion with REPLICAOF NO ONE and the old replid kept, AUTH between
//! replica and master, CONFIG REWRITE, and BGSAVE under writes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use toykv::resp::Frame;
use toykv::server::Config;

use super::{TestServer, bulk, error};

pub(super) fn info(s: &TestServer, section: &str) -> BTreeMap<String, String> {
    info_at(s.addr, section)
}

/// `INFO section` of the server at `addr`, as fields.
pub(super) fn info_at(addr: SocketAddr, section: &str) -> BTreeMap<String, String> {
    let mut c = super::Client::connect(addr);
    let text = match c.call(&["INFO", section]) {
        Frame::Bulk(b) | Frame::Verbatim(_, b) => String::from_utf8(b).unwrap(),
        other => panic!("INFO: {other:?}"),
    };
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls `cond` for up to 20 s; panics with `what` if it never holds.
pub(super) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}

pub(super) fn replica_of(master: SocketAddr, extra: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config {
        replicaof: Some((master.ip().to_string(), master.port())),
        ..Config::default()
    };
    extra(&mut config);
    TestServer::start(config)
}

pub(super) fn linked(r: &TestServer) -> bool {
    info(r, "replication")
        .get("master_link_status")
        .map(String::as_str)
        == Some("up")
}

pub(super) fn value(i: u64) -> Vec<u8> {
    (0..(i % 257)).map(|j| (i ^ j) as u8).collect()
}

pub(super) fn key(i: u64) -> String {
    format!("k{i:07}")
}

/// Every key of `s`, with its value.
pub(super) fn contents(s: &TestServer) -> BTreeMap<Vec<u8>, Vec<u8>> {
    contents_at(s.addr)
}

/// Every key of the server at `addr`, with its value.
pub(super) fn contents_at(addr: SocketAddr) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut c = super::Client::connect(addr);
    let mut out = BTreeMap::new();
    let mut cursor = b"0".to_vec();
    loop {
        let Frame::Array(parts) = c.call(&[&b"SCAN"[..], &cursor, b"COUNT", b"1000"]) else {
            panic!("SCAN");
        };
        let (Frame::Bulk(next), Frame::Array(keys)) = (&parts[0], &parts[1]) else {
            panic!("SCAN reply");
        };
        for k in keys {
            let Frame::Bulk(k) = k else { panic!() };
            let Frame::Bulk(v) = c.call(&[&b"GET"[..], k]) else {
                panic!("GET of a scanned key")
            };
            out.insert(k.clone(), v);
        }
        if next == b"0" {
            return out;
        }
        cursor = next.clone();
    }
}

#[test]
fn a_replica_copies_the_data_follows_the_stream_and_refuses_writes() {
    let m = TestServer::start(Config::default());
    let mut mc = m.connect();
    for i in 0..3000u64 {
        mc.send(&super::command(&[
            b"SET".to_vec(),
            key(i).into_bytes(),
            value(i),
        ]));
    }
    for _ in 0..3000 {
        assert_eq!(mc.read(), Some(Frame::Simple("OK".into())));
    }
    let r = replica_of(m.addr, |_| {});
    eventually("the replica's link is up", || linked(&r));
    // The stream: SET, DEL, MSET (a batch) and MULTI/EXEC.
    assert_eq!(
        mc.call(&["SET", "k0000001", "new"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(mc.call(&["DEL", "k0000002"]), Frame::Integer(1));
    assert_eq!(
        mc.call(&["MSET", "a", "1", "b", "2"]),
        Frame::Simple("OK".into())
    );
    mc.call(&["MULTI"]);
    mc.call(&["SET", "c", "3"]);
    mc.call(&["DEL", "a"]);
    assert!(matches!(mc.call(&["EXEC"]), Frame::Array(_)));
    assert_eq!(mc.call(&["WAIT", "1", "5000"]), Frame::Integer(1));
    assert_eq!(contents(&r), contents(&m));
    let mut rc = r.connect();
    assert_eq!(rc.call(&["GET", "k0000001"]), bulk("new"));
    assert_eq!(rc.call(&["GET", "k0000002"]), Frame::Null);
    let refused = rc.call(&["SET", "x", "y"]);
    assert!(error(&refused).starts_with("READONLY"), "{refused:?}");
    // What Sentinel reads.
    let mi = info(&m, "replication");
    assert_eq!(mi["role"], "master");
    assert_eq!(mi["connected_slaves"], "1");
    let slave0 = &mi["slave0"];
    assert!(
        slave0.starts_with(&format!(
            "ip=127.0.0.1,port={},state=online,offset=",
            r.addr.port()
        )),
        "{slave0}"
    );
    let ri = info(&r, "replication");
    assert_eq!(ri["role"], "slave");
    assert_eq!(ri["master_port"], m.addr.port().to_string());
    assert_eq!(ri["slave_priority"], "100");
    assert_eq!(ri["slave_repl_offset"], mi["master_repl_offset"]);
    assert_eq!(ri["master_replid"], mi["master_replid"]);
    let run_id = &info(&m, "server")["run_id"];
    assert_eq!(run_id.len(), 40);
    assert!(run_id.bytes().all(|b| b.is_ascii_hexdigit()));
    // The order Sentinel relies on: role before the replica's fields.
    let text = match rc.call(&["INFO"]) {
        Frame::Bulk(b) | Frame::Verbatim(_, b) => String::from_utf8(b).unwrap(),
        other => panic!("{other:?}"),
    };
    assert!(text.find("role:slave").unwrap() < text.find("master_link_status").unwrap());
    // ROLE on both.
    let Frame::Array(role) = rc.call(&["ROLE"]) else {
        panic!()
    };
    assert_eq!(role[0], bulk("slave"));
    assert_eq!(role[3], bulk("connected"));
    let Frame::Array(role) = mc.call(&["ROLE"]) else {
        panic!()
    };
    assert_eq!(role[0], bulk("master"));
    let Frame::Array(replicas) = &role[2] else {
        panic!()
    };
    assert_eq!(replicas.len(), 1);
    // WAIT on a replica is an error; a WAIT for more replicas than exist times out with 1.
    assert!(error(&rc.call(&["WAIT", "1", "10"])).contains("replica"));
    assert_eq!(mc.call(&["WAIT", "2", "200"]), Frame::Integer(1));
}

/// A TCP proxy whose links can be cut: every connection through it is closed and new ones
/// are refused until it is restored.
struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    cuts: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn to(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let cuts: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let (o, c) = (open.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !o.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                c.lock().unwrap().push(client.try_clone().unwrap());
                c.lock().unwrap().push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, open, cuts }
    }

    /// Cuts every link and refuses new ones for `d`.
    fn cut_for(&self, d: Duration) {
        self.open.store(false, Ordering::SeqCst);
        for s in self.cuts.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(d);
        self.open.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_link_cut_for_a_second_resumes_with_a_partial_resync() {
    let m = TestServer::start(Config::default());
    let proxy = Proxy::to(m.addr);
    let r = replica_of(proxy.addr, |_| {});
    eventually("link up", || linked(&r));
    let mut mc = m.connect();
    for i in 0..200u64 {
        let args = [b"SET".to_vec(), key(i).into_bytes(), value(i)];
        assert_eq!(mc.call(&args), Frame::Simple("OK".into()));
    }
    assert_eq!(mc.call(&["WAIT", "1", "5000"]), Frame::Integer(1));
    let before = info(&m, "stats");
    // Writes go on while the link is down.
    let writer = {
        let addr = m.addr;
        std::thread::spawn(move || {
            let mut c = super::Client::connect(addr);
            for i in 200..1200u64 {
                let args = [b"SET".to_vec(), key(i).into_bytes(), value(i)];
                assert_eq!(c.call(&args), Frame::Simple("OK".into()));
            }
        })
    };
    proxy.cut_for(Duration::from_secs(1));
    writer.join().unwrap();
    eventually("link up again", || linked(&r));
    assert_eq!(mc.call(&["WAIT", "1", "10000"]), Frame::Integer(1));
    let after = info(&m, "stats");
    let n = |m: &BTreeMap<String, String>, k: &str| m[k].parse::<u64>().unwrap();
    assert_eq!(
        n(&after, "sync_partial_ok"),
        n(&before, "sync_partial_ok") + 1
    );
    assert_eq!(n(&after, "sync_full"), n(&before, "sync_full"));
    assert_eq!(contents(&r), contents(&m));
}

#[test]
fn a_promoted_replica_keeps_the_old_replid_so_others_continue_partially() {
    let m = TestServer::start(Config::default());
    let r1 = replica_of(m.addr, |_| {});
    let r2 = replica_of(m.addr, |_| {});
    eventually("both linked", || linked(&r1) && linked(&r2));
    let mut mc = m.connect();
    for i in 0..100u64 {
        mc.call(&[b"SET".to_vec(), key(i).into_bytes(), value(i)]);
    }
    assert_eq!(mc.call(&["WAIT", "2", "5000"]), Frame::Integer(2));
    let old_id = info(&m, "replication")["master_replid"].clone();
    // Failover by hand: promote r1, point r2 at it.
    let mut c1 = r1.connect();
    assert_eq!(
        c1.call(&["REPLICAOF", "NO", "ONE"]),
        Frame::Simple("OK".into())
    );
    let i1 = info(&r1, "replication");
    assert_eq!(i1["role"], "master");
    assert_eq!(i1["master_replid2"], old_id);
    assert_ne!(i1["master_replid"], old_id);
    let port = r1.addr.port().to_string();
    let mut c2 = r2.connect();
    assert_eq!(
        c2.call(&["SLAVEOF", "127.0.0.1", &port]),
        Frame::Simple("OK".into())
    );
    eventually("r2 follows r1", || {
        let i = info(&r2, "replication");
        i["master_port"] == port && i["master_link_status"] == "up"
    });
    let s1 = info(&r1, "stats");
    assert_eq!(s1["sync_partial_ok"], "1", "{s1:?}");
    assert_eq!(s1["sync_full"], "0");
    assert_eq!(
        c1.call(&["SET", "after", "failover"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(c1.call(&["WAIT", "1", "5000"]), Frame::Integer(1));
    assert_eq!(c2.call(&["GET", "after"]), bulk("failover"));
    assert_eq!(contents(&r2), contents(&r1));
}

#[test]
fn a_replica_authenticates_and_one_without_the_password_is_refused() {
    let m = TestServer::start(Config {
        password: Some("s3cret".into()),
        ..Config::default()
    });
    let bad = replica_of(m.addr, |_| {});
    let good = replica_of(m.addr, |c| c.masterauth = Some("s3cret".into()));
    eventually("the authenticated replica links", || linked(&good));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!linked(&bad), "a replica without the password linked");
    let mut mc = m.connect();
    assert_eq!(mc.call(&["AUTH", "s3cret"]), Frame::Simple("OK".into()));
    assert_eq!(info_authed(&m)["connected_slaves"], "1");
}

fn info_authed(s: &TestServer) -> BTreeMap<String, String> {
    let mut c = s.connect();
    c.call(&["AUTH", "s3cret"]);
    let (Frame::Bulk(b) | Frame::Verbatim(_, b)) = c.call(&["INFO", "replication"]) else {
        panic!()
    };
    String::from_utf8(b)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn config_rewrite_persists_the_role() {
    let tmp = super::tempdir();
    let file = tmp.path().join("toykv.conf");
    std::fs::write(&file, "# kept\n").unwrap();
    let s = TestServer::start(Config {
        config_file: Some(file.clone()),
        ..Config::default()
    });
    let mut c = s.connect();
    assert_eq!(
        c.call(&["REPLICAOF", "127.0.0.1", "1"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(c.call(&["CONFIG", "REWRITE"]), Frame::Simple("OK".into()));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# kept\nreplicaof 127.0.0.1 1\n"
    );
    assert_eq!(
        c.call(&["REPLICAOF", "NO", "ONE"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(c.call(&["CONFIG", "REWRITE"]), Frame::Simple("OK".into()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# kept\n");
    // Without a file: the error Sentinel tolerates.
    let plain = TestServer::start(Config::default());
    let e = plain.connect().call(&["CONFIG", "REWRITE"]);
    assert!(error(&e).contains("without a config file"), "{e:?}");
}

#[test]
fn bgsave_under_writes_holds_every_write_acknowledged_before_it() {
    let m = TestServer::start(Config::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (m.addr, stop.clone());
        std::thread::spawn(move || {
            let mut c = super::Client::connect(addr);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let args = [b"SET".to_vec(), key(i % 5000).into_bytes(), value(i)];
                assert_eq!(c.call(&args), Frame::Simple("OK".into()));
                i += 1;
            }
        })
    };
    let mut c = m.connect();
    for i in 0..2000u64 {
        let args = [b"SET".to_vec(), format!("b{i:07}").into_bytes(), value(i)];
        assert_eq!(c.call(&args), Frame::Simple("OK".into()));
    }
    let dest = m.dir.path().parent().unwrap().join(format!(
        "bgsave-{}",
        m.dir.path().file_name().unwrap().to_string_lossy()
    ));
    let dest_s = dest.to_str().unwrap();
    assert_eq!(
        c.call(&["BGSAVE", "INTO", dest_s]),
        Frame::Simple("Background saving started".into())
    );
    eventually("the save ends", || {
        let p = info(&m, "persistence");
        p["rdb_bgsave_in_progress"] == "0" && p["rdb_last_save_time"] != "0"
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(info(&m, "persistence")["rdb_last_bgsave_status"], "ok");
    let Frame::Integer(t) = c.call(&["LASTSAVE"]) else {
        panic!()
    };
    assert!(t > 0);
    let report = toykv::admin::check(&dest).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let copy = toykv::Store::open(&dest).unwrap();
    for i in 0..2000u64 {
        let k = toykv::keymode::KeyMode::Bytes
            .key(format!("b{i:07}").as_bytes())
            .unwrap();
        assert_eq!(copy.get(k).unwrap().as_deref(), Some(&value(i)[..]), "b{i}");
    }
    drop(copy);
    std::fs::remove_dir_all(&dest).unwrap();
}

#[test]
fn a_replica_with_another_key_mode_is_refused() {
    let m = TestServer::start(Config::default());
    let r = replica_of(m.addr, |c| c.key_mode = toykv::keymode::KeyMode::Numeric);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!linked(&r), "a replica with another key mode linked");
    assert_eq!(info(&m, "replication")["connected_slaves"], "0");
    assert_eq!(info(&m, "stats")["sync_full"], "0");
}

#[test]
fn a_failed_bgsave_is_reported_and_lastsave_stays() {
    let m = TestServer::start(Config::default());
    let mut c = m.connect();
    assert_eq!(c.call(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    // A directory that exists already: the save must fail, not overwrite it.
    let taken = super::tempdir();
    let dest = taken.path().to_str().unwrap().to_string();
    assert_eq!(
        c.call(&["BGSAVE", "INTO", &dest]),
        Frame::Simple("Background saving started".into())
    );
    eventually("the save ends", || {
        info(&m, "persistence")["rdb_bgsave_in_progress"] == "0"
    });
    let p = info(&m, "persistence");
    assert_eq!(p["rdb_last_bgsave_status"], "err");
    assert_eq!(p["rdb_last_save_time"], "0");
    assert_eq!(c.call(&["LASTSAVE"]), Frame::Integer(0));
    assert!(std::fs::read_dir(taken.path()).unwrap().next().is_none());
    // Bad arguments.
    assert!(error(&c.call(&["BGSAVE", "NOW"])).contains("syntax"));
}

#[test]
fn a_promotion_during_a_full_sync_drops_the_copy() {
    // A master with enough data that its full sync takes a while.
    let dir = super::tempdir();
    {
        let store = toykv::Store::open_with(dir.path(), super::options()).unwrap();
        let mut batch = toykv::Batch::new();
        for k in 0..200_000u64 {
            batch.put(k, value(k)).unwrap();
            if batch.len() == 60 {
                store.write(&batch).unwrap();
                batch.clear();
            }
        }
        store.close().unwrap();
    }
    let m = TestServer::start_in(dir, Config::default());
    let r = replica_of(m.addr, |_| {});
    eventually("the sync is under way", || {
        let i = info(&r, "replication");
        i["master_sync_in_progress"] == "1" || i["master_link_status"] == "up"
    });
    let mut c = r.connect();
    assert_eq!(
        c.call(&["REPLICAOF", "NO", "ONE"]),
        Frame::Simple("OK".into())
    );
    let Frame::Integer(at_promotion) = c.call(&["DBSIZE"]) else {
        panic!()
    };
    // Whatever the sync had done by then, nothing changes the promoted store afterwards:
    // a copy still arriving is dropped, not swapped in.
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(at_promotion));
    assert_eq!(info(&r, "replication")["role"], "master");
    assert_eq!(c.call(&["SET", "mine", "1"]), Frame::Simple("OK".into()));
}
