//! What hostile clients cost well-behaved ones: p99 latency of GET and SET through the server,
//! first alone (baseline), then during an attack by a connection flood, slowloris sockets and
//! garbage frames together.
//!
//! `cargo bench --bench hostile` (optional arguments: seconds per phase, default 5;
//! `HOSTILE_ATTACKS=flood,slowloris,garbage` runs only some attackers). Prints the
//! baseline and attacked p50/p99, their ratio, what the attackers did, and the process RSS;
//! exits 1 when the attacked p99 is 2× the baseline or more.
//!
//! Everything runs in this process: the server (Tokio, 2 workers, as on the 2-core CI machine),
//! two well-behaved clients (one command at a time: SET then GET of 256-byte values over
//! 10,000 keys), and the attackers:
//! - flood: fills every free connection slot, then keeps opening connections (each refused
//!   with an error and closed) and churning 50 held ones every 100 ms;
//! - slowloris: 200 sockets each trickling a byte of an unfinished SET every 100 ms, reopened
//!   when the server closes them (after the 2 s idle timeout, counted from the first byte);
//! - garbage: one thread sending 1,000 garbage and oversized frames a second (random bytes,
//!   huge or negative lengths, deep and invalid arrays, 1 MiB lines), each on a new connection.

#[path = "../tests/common/attack.rs"]
mod attack;
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attack::{
    Client, Rng, SLOW_COMMAND, Served, garbage, percentile, raise_fd_limit, rss_kib, send_garbage,
};
use toykv::Options;
use toykv::resp::Frame;
use toykv::server::Config;

const CLIENTS: usize = 2;
const KEYS: u64 = 10_000;
const MAX_CLIENTS: usize = 1000;
const SLOWLORIS: usize = 200;
/// Garbage frames a second, each on a new connection (this process shares the 2 cores with
/// the server: an attacker without a rate would measure the machine, not the server).
const GARBAGE_RATE: f64 = 1000.0;

type Attacker = fn(SocketAddr, &AtomicBool, &Counters);

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    refused: AtomicU64,
    held: AtomicU64,
    slow_closed: AtomicU64,
    garbage: AtomicU64,
}

/// Runs the well-behaved clients for `secs`; returns GET and SET latencies.
fn measure(clients: &mut [Client], secs: f64) -> (Vec<Duration>, Vec<Duration>) {
    let value = vec![0x5a_u8; 256];
    std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(n, c)| {
                let value = &value;
                s.spawn(move || {
                    let (mut gets, mut sets) = (Vec::new(), Vec::new());
                    let mut rng = Rng::new(n as u64 + 1);
                    let end = Instant::now() + Duration::from_secs_f64(secs);
                    while Instant::now() < end {
                        let key = (rng.below(KEYS)).to_string();
                        let t = Instant::now();
                        let r = c.call(&[b"SET", key.as_bytes(), value]).expect("SET");
                        sets.push(t.elapsed());
                        assert_eq!(r, Frame::ok());
                        let t = Instant::now();
                        let r = c.call(&[b"GET", key.as_bytes()]).expect("GET");
                        gets.push(t.elapsed());
                        assert_eq!(r, Frame::Bulk(value.clone()), "GET {key}");
                    }
                    (gets, sets)
                })
            })
            .collect();
        let (mut gets, mut sets) = (Vec::new(), Vec::new());
        for h in handles {
            let (g, s) = h.join().expect("client thread");
            gets.extend(g);
            sets.extend(s);
        }
        (gets, sets)
    })
}

fn report(name: &str, gets: &mut [Duration], sets: &mut [Duration]) -> (Duration, Duration) {
    let (g50, g99) = (percentile(gets, 50.0), percentile(gets, 99.0));
    let (s50, s99) = (percentile(sets, 50.0), percentile(sets, 99.0));
    println!(
        "{name:>9}: GET n={} p50 {g50:?} p99 {g99:?} | SET n={} p50 {s50:?} p99 {s99:?}",
        gets.len(),
        sets.len()
    );
    (g99, s99)
}

fn slowloris(addr: SocketAddr, stop: &AtomicBool, c: &Counters) {
    let open = || {
        let s = TcpStream::connect(addr).ok()?;
        s.set_nonblocking(true).ok()?;
        Some((s, 0usize))
    };
    let mut socks: Vec<Option<(TcpStream, usize)>> = (0..SLOWLORIS).map(|_| open()).collect();
    while !stop.load(Ordering::Relaxed) {
        for slot in &mut socks {
            let gone = match slot {
                None => true,
                Some((s, i)) => {
                    let mut scratch = [0u8; 256];
                    let closed = match s.read(&mut scratch) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != ErrorKind::WouldBlock,
                    };
                    let byte = SLOW_COMMAND[*i % SLOW_COMMAND.len()];
                    *i += 1;
                    closed
                        || matches!(s.write(&[byte]), Err(e) if e.kind() != ErrorKind::WouldBlock)
                }
            };
            if gone {
                if slot.is_some() {
                    c.slow_closed.fetch_add(1, Ordering::Relaxed);
                }
                *slot = open();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn flood(addr: SocketAddr, stop: &AtomicBool, c: &Counters) {
    let mut held: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Top up to 2,000 connections; refused ones read an error and EOF.
        while held.len() < 2000 && !stop.load(Ordering::Relaxed) {
            let Ok(s) = TcpStream::connect(addr) else {
                break;
            };
            c.opened.fetch_add(1, Ordering::Relaxed);
            held.push(s);
        }
        let mut kept = Vec::with_capacity(held.len());
        for mut s in held.drain(..) {
            let _ = s.set_nonblocking(true);
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => {}
                Ok(_) => {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => kept.push(s),
                Err(_) => {}
            }
        }
        // Churn: let 50 served ones go.
        let churn = kept.len().min(50);
        kept.drain(..churn);
        c.held.store(kept.len() as u64, Ordering::Relaxed);
        held = kept;
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spray(addr: SocketAddr, stop: &AtomicBool, c: &Counters) {
    let mut rng = Rng::new(0xBAD);
    let mut i = 0;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let frame = garbage(&mut rng, i);
        let _ = send_garbage(addr, &frame, Duration::from_secs(10));
        c.garbage.fetch_add(1, Ordering::Relaxed);
        i += 1;
        // At most GARBAGE_RATE frames a second.
        let due = start + Duration::from_secs_f64(i as f64 / GARBAGE_RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5.0);
    raise_fd_limit(16_384);
    let dir = common::data_dir("hostile");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let config = Config {
        max_clients: MAX_CLIENTS,
        idle_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let server = Served::start(&dir, config, Options::new(), 2);
    let addr = server.addr;
    // Fill the keys, then warm up.
    {
        let mut c = Client::connect(addr).expect("connect");
        let value = vec![0x5a_u8; 256];
        for k in 0..KEYS {
            let key = k.to_string();
            let r = c.call(&[b"SET", key.as_bytes(), &value]).expect("SET");
            assert_eq!(r, Frame::ok());
        }
    }
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| Client::connect(addr).expect("connect"))
        .collect();
    measure(&mut clients, 1.0);
    let rss0 = rss_kib();
    let (mut gets, mut sets) = measure(&mut clients, secs);
    let base = report("baseline", &mut gets, &mut sets);

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    // HOSTILE_ATTACKS=flood,slowloris,garbage (the default: all three) picks attackers.
    let chosen = std::env::var("HOSTILE_ATTACKS").unwrap_or_else(|_| "all".into());
    let attackers: Vec<_> = [
        ("slowloris", slowloris as Attacker),
        ("flood", flood),
        ("garbage", spray),
    ]
    .into_iter()
    .filter(|(name, _)| chosen == "all" || chosen.split(',').any(|c| c == *name))
    .map(|(_, f)| {
        let (stop, c) = (stop.clone(), counters.clone());
        std::thread::spawn(move || f(addr, &stop, &c))
    })
    .collect();
    // Let the flood fill the slots and the slowloris sockets reach their deadline once (the
    // well-behaved clients keep going, so the idle timeout does not close them).
    measure(&mut clients, 3.0);
    let (mut gets, mut sets) = measure(&mut clients, secs);
    let rss1 = rss_kib();
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().expect("attacker");
    }
    let hit = report("attacked", &mut gets, &mut sets);
    let c = &*counters;
    println!(
        "   attack: flood opened {} connections, {} refused, {} held at the end; {} slowloris \
         sockets closed by the server; {} garbage frames",
        c.opened.load(Ordering::Relaxed),
        c.refused.load(Ordering::Relaxed),
        c.held.load(Ordering::Relaxed),
        c.slow_closed.load(Ordering::Relaxed),
        c.garbage.load(Ordering::Relaxed)
    );
    println!("      rss: {rss0} KiB before the attack, {rss1} KiB during");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let (rg, rs) = (ratio(hit.0, base.0), ratio(hit.1, base.1));
    println!("    ratio: attacked p99 / baseline p99: GET {rg:.2}x, SET {rs:.2}x (limit 2x)");
    for mut cl in clients {
        assert_eq!(
            cl.call(&["PING"]).expect("PING"),
            Frame::Simple("PONG".into())
        );
    }
    server.stop().expect("server stop");
    let _ = std::fs::remove_dir_all(&dir);
    if rg >= 2.0 || rs >= 2.0 {
        println!("FAIL: the attack more than doubles p99 latency");
        std::process::exit(1);
    }
}
