//! The crash loop against the real server: a child process serves the store over RESP, the
//! parent's client runs the operation sequence (one command at a time, so at most one is in
//! flight), and the child dies by SIGKILL — from the parent at a random moment, or by itself
//! at a kill point inside a write-out, a sync or garbage collection. The parent then opens the
//! store with the library, checks it against the acknowledged replies, and starts the next
//! server on it.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::child::say;
use crate::ops::{Model, Op, mix, ops, value};
use crate::parent::{Tally, base_seed, create, settle, workdir};
use crate::running::{Plan, ROUND_TIMEOUT, Role, Running};
use crate::{ENV_BASE_SEED, ENV_DURABILITY};

/// The flags a server child serves `dir` with at `durability`: the parent's checks open the
/// store with the options they ask for ([`toykv::server::launch::Flags::options`]).
pub(crate) fn flags(dir: &Path, durability: &str) -> toykv::server::launch::Flags {
    <toykv::server::launch::Flags as clap::Parser>::try_parse_from([
        "toykv-server",
        "--dir",
        &dir.to_string_lossy(),
        "--durability",
        durability,
    ])
    .unwrap_or_else(|e| panic!("server flags: {e}"))
}

/// The server child: serves `dir` on a loopback port it prints, until killed, at the
/// durability in [`ENV_DURABILITY`] (`none` when unset).
pub(crate) fn serve(dir: &Path) {
    let durability = std::env::var(ENV_DURABILITY).unwrap_or_else(|_| "none".into());
    let mut flags = flags(dir, &durability);
    // A replica child (see `replica`) follows the master the parent names.
    if let Ok(master) = std::env::var(crate::replica::ENV_REPLICAOF) {
        let (host, port) = master.split_once(' ').expect("child: HOST PORT");
        flags.replicaof = Some((host.to_string(), port.parse().expect("child: port")));
    }
    await_unlocked(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child: runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("child: bind");
        let port = listener.local_addr().expect("child: local_addr").port();
        let served = tokio::spawn(toykv::server::launch::serve_on(
            flags,
            listener,
            std::future::pending(),
        ));
        // The store opens inside `serve_on`; tell the parent where to connect once it accepts.
        for _ in 0..1000 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        say(format_args!("P {port}"));
        match served.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("child: serve: {e}"),
            Err(e) => panic!("child: server task: {e}"),
        }
    });
}

/// Waits, for up to two seconds, until no process holds the lock of the store in `dir` (the
/// server opens it without retrying). The parent closed its store before spawning this
/// child, but a child another test thread was spawning at that moment holds a copy of its
/// descriptor, and with it the lock, until its `exec` (see [`crate::open`]); once free, the
/// lock stays free, since nothing forks from the parent's closed store any more. A lock held
/// longer is left for the server to report.
fn await_unlocked(dir: &Path) {
    let Ok(file) = std::fs::File::open(dir.join(toykv::format::LOCK_NAME)) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs operations of sequence `seed` against the server on `port` until the connection
/// fails (the server died) or `stop_after` were acknowledged; returns the delete results of
/// the acknowledged ones.
fn client(port: u16, seed: u64, stop_after: u64) -> Vec<Option<bool>> {
    let mut acks = Vec::new();
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return acks;
    };
    let Ok(mut con) = client.get_connection() else {
        return acks;
    };
    for (n, op) in (0..stop_after).zip(ops(seed)) {
        let ok = match op {
            Op::Put { key, len } => redis::cmd("SET")
                .arg(&key.to_be_bytes()[..])
                .arg(value(seed, n, key, len))
                .query::<String>(&mut con)
                .map(|_| None),
            Op::Delete { key } => redis::cmd("DEL")
                .arg(&key.to_be_bytes()[..])
                .query::<i64>(&mut con)
                .map(|d| Some(d == 1)),
            Op::Sync => Ok(None),
        };
        match ok {
            Ok(del) => acks.push(del),
            Err(_) => break,
        }
    }
    acks
}

/// Plans for the server: kills by the parent after some acknowledged commands, kills at kill
/// points, kills during start-up.
fn plan(round: usize, rng: &mut StdRng) -> Plan {
    match round % 4 {
        0 | 1 => Plan::Acks {
            n: rng.random_range(1..=200),
            delay_us: rng.random_range(0..=2000),
        },
        2 => Plan::Point {
            point: toykv::kill::POINTS[rng.random_range(0..toykv::kill::POINTS.len())],
            nth: rng.random_range(1..=2),
        },
        _ => Plan::Startup {
            delay_us: rng.random_range(0..=30_000),
        },
    }
}

pub(crate) fn run(rounds: usize) -> Tally {
    let started = Instant::now();
    let base = base_seed();
    println!("[server] base seed {base} (replay the operations with {ENV_BASE_SEED}={base})");
    let tmp = workdir();
    let dir = tmp.path().join("data");
    create(&dir, 16, 2);
    let mut rng = StdRng::seed_from_u64(base);
    let mut model = Model::new();
    let mut tally = Tally::default();
    for round in 0..rounds {
        let seed = mix(base ^ mix(round as u64));
        let plan = plan(round, &mut rng);
        let what = format!(
            "[server] base seed {base}, round {round}, seed {seed}, plan {plan:?}, dir {}",
            dir.display()
        );
        let max_ops = 400;
        let mut child = Running::spawn(
            &dir,
            Role::Server,
            seed,
            max_ops,
            plan,
            toykv::Durability::None,
            what.clone(),
        );
        let mut acks = Vec::new();
        let mut fired = false;
        if let Plan::Startup { delay_us } = plan {
            std::thread::sleep(Duration::from_micros(delay_us));
        } else {
            let deadline = Instant::now() + ROUND_TIMEOUT;
            while child.port.is_none() {
                if child.next(deadline).is_none() {
                    child.fail("the server died before it listened");
                }
            }
            let port = child.port.unwrap_or_default();
            match plan {
                Plan::Acks { n, delay_us } => {
                    let c = std::thread::spawn(move || client(port, seed, max_ops));
                    // Kill while the client still runs: wait for the acknowledgements to pass
                    // `n`, measured by time since they arrive on another thread.
                    std::thread::sleep(Duration::from_micros(n * 60 + delay_us));
                    child.kill();
                    acks = c.join().expect("client thread");
                }
                Plan::Point { .. } => {
                    acks = client(port, seed, max_ops);
                    // The server died at its point (the client saw the connection drop) or
                    // the client ran out of operations first.
                    fired = acks.len() < max_ops as usize;
                }
                Plan::Startup { .. } => {}
            }
        }
        child.kill();
        drop(child);
        settle(
            &mut tally, &mut model, &dir, seed, plan, fired, &acks, &what,
        );
    }
    println!(
        "[server] {} kills in {:.1?}: {} acknowledged commands, in-flight applied {} / dropped {}, \
         kill points fired {:?}, not reached {}",
        tally.kills,
        started.elapsed(),
        tally.acked_ops,
        tally.in_flight_applied,
        tally.in_flight_dropped,
        tally.fired,
        tally.missed
    );
    tally
}
