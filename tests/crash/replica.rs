//! Replicas killed with SIGKILL: during the full sync of a million keys (at random moments
//! and at the kill point between the copy and the swap) and while the stream runs under
//! writes. The replica's directory must be a whole store after every kill — empty or a
//! complete copy, never half of one — and a replica started again must sync and converge to
//! the master's data, key by key.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use toykv::server::{Config, Server};
use toykv::{Batch, Durability, Options, Store};

use crate::common::Served;
use crate::running::{Plan, Role, Running};

/// The master a server child follows ("HOST PORT").
pub(crate) const ENV_REPLICAOF: &str = "TOYKV_CRASH_REPLICAOF";

fn value(k: u64) -> Vec<u8> {
    let len = (k % 29) as usize;
    (0..len)
        .map(|i| (k as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

/// A master over a fresh store in `dir` holding keys `0..n` (as 8-byte big-endian keys),
/// served in-process.
fn master(dir: &Path, n: u64) -> (Arc<Store>, Served<toykv::Result<()>>) {
    let store = Arc::new(
        Store::open_with(dir, Options::new().durability(Durability::None).shards(2)).unwrap(),
    );
    let mut batch = Batch::new();
    for k in 0..n {
        batch.put(k, value(k)).unwrap();
        if batch.len() == 20_000 {
            store.write(&batch).unwrap();
            batch.clear();
        }
    }
    store.write(&batch).unwrap();
    let config = Config {
        dir: dir.to_path_buf(),
        ..Config::default()
    };
    let s = store.clone();
    let served =
        Served::start(move |listener, shutdown| Server::new(s, config).run(listener, shutdown));
    (store, served)
}

fn spawn_replica(dir: &Path, master: std::net::SocketAddr, plan: Plan, what: &str) -> Running {
    let m = format!("127.0.0.1 {}", master.port());
    Running::spawn_with(
        dir,
        Role::Server,
        0,
        0,
        plan,
        Durability::None,
        what.to_string(),
        &[(ENV_REPLICAOF, &m)],
    )
}

/// Waits for the child's port.
fn port(r: &mut Running) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.port.is_none() {
        if r.next(deadline).is_none() {
            r.fail("the replica died before it listened");
        }
    }
    r.port.unwrap_or(0)
}

/// `INFO replication` of the server on `port`, as lines.
fn info(port: u16) -> String {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return String::new();
    };
    let Ok(mut con) = client.get_connection() else {
        return String::new();
    };
    redis::cmd("INFO")
        .arg("replication")
        .query::<String>(&mut con)
        .unwrap_or_default()
}

/// Waits until the replica on `port` is linked and at the master's offset `offset` or past.
fn converged(r: &mut Running, port: u16, offset: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = info(port);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix(':')))
                .map(str::trim)
                .map(String::from)
        };
        let up = field("master_link_status").as_deref() == Some("up");
        let at: u64 = field("slave_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if up && at >= offset {
            return;
        }
        if Instant::now() > deadline {
            r.fail(&format!(
                "the replica did not converge to offset {offset}: {text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The master's stream offset.
fn master_offset(addr: std::net::SocketAddr) -> u64 {
    let text = info(addr.port());
    text.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Opens the replica's directory after a kill: it must be a whole store. Returns its keys.
fn whole(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let store =
        crate::open(dir).unwrap_or_else(|e| panic!("the replica's directory does not open: {e}"));
    store
        .iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.as_u64(), v.to_vec())
        })
        .collect()
}

fn same(master: &Store, copy: &[(u64, Vec<u8>)]) {
    let want: Vec<(u64, Vec<u8>)> = master
        .iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.as_u64(), v.to_vec())
        })
        .collect();
    assert_eq!(want.len(), copy.len(), "key counts differ");
    for (w, c) in want.iter().zip(copy) {
        assert_eq!(w, c, "first difference");
    }
}

#[test]
fn kill9_replica_during_a_full_sync_of_a_million_keys() {
    const N: u64 = 1_000_000;
    let tmp = crate::parent::workdir();
    let (store, served) = master(&tmp.path().join("m"), N);
    let rdir = tmp.path().join("r");
    let sync_dir = tmp.path().join("r.sync");
    let mut rng = rand::rngs::StdRng::seed_from_u64(crate::parent::base_seed());
    // Killed at random moments while the copy arrives, then at the point between the
    // finished copy and the swap: each time the directory is the old store, whole.
    let mut cut = 0;
    for round in 0..4 {
        let plan = if round == 3 {
            Plan::Point {
                point: "replica-before-swap",
                nth: 1,
            }
        } else {
            Plan::Startup { delay_us: 0 }
        };
        let mut r = spawn_replica(
            &rdir,
            served.addr,
            plan,
            &format!("full sync round {round}"),
        );
        port(&mut r);
        if round == 3 {
            // It dies by itself at the point.
            r.await_point();
        } else {
            let end = Instant::now() + Duration::from_secs(60);
            while !sync_dir.exists() {
                if Instant::now() > end {
                    r.fail("no full sync began");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        }
        r.kill();
        // The old store (empty) or, had the sync finished before the kill, the whole copy:
        // never a part of it.
        let keys = whole(&rdir);
        if keys.is_empty() {
            cut += 1;
        } else {
            same(&store, &keys);
        }
    }
    println!("full syncs cut short by the kill: {cut} of 4");
    // Left alone, it syncs and converges.
    let mut r = spawn_replica(
        &rdir,
        served.addr,
        Plan::Startup { delay_us: 0 },
        "final sync",
    );
    let p = port(&mut r);
    converged(&mut r, p, master_offset(served.addr));
    r.kill();
    same(&store, &whole(&rdir));
}

#[test]
fn kill9_replica_while_the_stream_runs_under_writes() {
    let tmp = crate::parent::workdir();
    let (store, served) = master(&tmp.path().join("m"), 20_000);
    let rdir = tmp.path().join("r");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (served.addr, stop.clone());
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let mut con = client.get_connection().unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = (i * 7919) % 30_000;
                let key = k.to_be_bytes();
                if i % 5 == 4 {
                    let _: i64 = redis::cmd("DEL").arg(&key[..]).query(&mut con).unwrap();
                } else {
                    let v = value(k ^ i);
                    let _: () = redis::cmd("SET")
                        .arg(&key[..])
                        .arg(v)
                        .query(&mut con)
                        .unwrap();
                }
                i += 1;
            }
            i
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(crate::parent::base_seed() ^ 1);
    for round in 0..4 {
        let mut r = spawn_replica(
            &rdir,
            served.addr,
            Plan::Startup { delay_us: 0 },
            &format!("stream round {round}"),
        );
        let p = port(&mut r);
        converged(&mut r, p, 1);
        std::thread::sleep(Duration::from_millis(rng.random_range(50..500)));
        r.kill();
        whole(&rdir);
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(writes > 0);
    let mut r = spawn_replica(&rdir, served.addr, Plan::Startup { delay_us: 0 }, "final");
    let p = port(&mut r);
    converged(&mut r, p, master_offset(served.addr));
    r.kill();
    same(&store, &whole(&rdir));
}
