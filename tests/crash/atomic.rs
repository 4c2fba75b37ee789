//! What a server child promises about whole writes when SIGKILL lands at a random moment:
//!
//! - [`replied_sets`]: at durability `always`, every SET whose `+OK` reached a client survives,
//!   with several connections pipelining at once (their replies may wait on one shared journal
//!   commit, off the runtime's worker threads).
//! - [`all_or_nothing`]: a batch of [`PAIRS`] writes, sent as one `MSET` or as one pipelined
//!   `MULTI` / 1000 × `SET` / `EXEC`, is applied whole or not at all: after the kill every one
//!   of the keys holds the same generation, and that generation is the last one acknowledged
//!   or the one that was in flight.
//!
//! The parent speaks raw RESP (every read has a timeout) to a server child started by
//! [`Running::spawn`] with the durability in its environment, and after each kill reopens the
//! store with the library, with the options the child's flags ask for.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::resp::{Frame, encode_command, parse_reply};
use toykv::{Durability, Store};

use crate::ENV_BASE_SEED;
use crate::ops::{mix, value};
use crate::parent::{base_seed, create, verbose, workdir};
use crate::running::{Plan, ROUND_TIMEOUT, Role, Running};

/// Longest a client waits for one read or write: far beyond any reply, so only a hung server
/// reaches it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A raw RESP connection to a server child.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next reply; an error once the connection fails (the server died) or after
    /// [`IO_TIMEOUT`].
    fn read(&mut self) -> io::Result<Frame> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((frame, n))) => {
                    self.buf.drain(..n);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unparsable reply: {}", e.0),
                    ));
                }
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Why a client stopped: the connection failed (the expected end: the server was killed), or
/// the server said something the protocol does not allow (a test failure).
enum Stop {
    Gone,
    Wrong(String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        if e.kind() == io::ErrorKind::InvalidData {
            Stop::Wrong(e.to_string())
        } else {
            Stop::Gone
        }
    }
}

/// Spawns a server child on `dir` at `durability` and waits until it listens; returns it and
/// its port.
fn start(dir: &Path, durability: Durability, what: &str) -> (Running, u16) {
    let mut child = Running::spawn(
        dir,
        Role::Server,
        0,
        0,
        Plan::Startup { delay_us: 0 },
        durability,
        what.to_string(),
    );
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while child.port.is_none() {
        if child.next(deadline).is_none() {
            child.fail("the server died before it listened");
        }
    }
    let port = child.port.unwrap_or_default();
    (child, port)
}

/// Opens the store in `dir` with the options a server child at `durability` opens it with,
/// retrying while it is locked (see [`crate::open`]) for up to two seconds.
fn open_as(dir: &Path, durability: Durability) -> toykv::Result<Store> {
    let options = crate::server::flags(dir, &durability.to_string()).options(dir);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Store::open_with(dir, options.clone()) {
            Err(toykv::Error::Locked { .. }) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// What a loop saw, for its summary and final assertions.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) kills: usize,
    /// SETs answered `+OK` ([`replied_sets`]) or batches acknowledged ([`all_or_nothing`]).
    pub(crate) acked: u64,
    /// Kills with a batch in flight after which it was found applied, or not.
    pub(crate) in_flight_applied: usize,
    pub(crate) in_flight_dropped: usize,
}

// ---------------------------------------------------------------------------------------------
// Replied SETs under `always`.

/// Client connections of [`replied_sets`], each on its own thread.
const WRITERS: u64 = 4;
/// SETs per pipeline (one write).
const PIPELINE: u64 = 16;

/// The key SET number `n` of writer `w` in round `round` writes: unique per write.
fn set_key(round: usize, w: u64, n: u64) -> u64 {
    ((round as u64) << 40) | (w << 32) | n
}

/// The value a SET of `key` writes: derived from the key, 0 to 256 bytes.
fn set_value(base: u64, key: u64) -> Vec<u8> {
    value(base, 0, key, (mix(key ^ base) % 257) as usize)
}

/// What one writer did: the SET numbers answered `+OK`, how many it sent (a prefix of its
/// numbers), and a reply it should not have got.
struct Written {
    acked: Vec<u64>,
    sent: u64,
    wrong: Option<String>,
}

/// Writer `w`: pipelines of [`PIPELINE`] SETs, each reply read in order, until its connection
/// fails or `stop`; counts every `+OK` in `acks`.
fn set_writer(
    port: u16,
    base: u64,
    round: usize,
    w: u64,
    stop: &AtomicBool,
    acks: &AtomicU64,
) -> Written {
    let mut out = Written {
        acked: Vec::new(),
        sent: 0,
        wrong: None,
    };
    let Ok(mut conn) = Conn::connect(port) else {
        return out;
    };
    let mut run = || -> Result<(), Stop> {
        while !stop.load(Ordering::Relaxed) {
            let mut batch = Vec::new();
            let first = out.sent;
            for n in first..first + PIPELINE {
                let key = set_key(round, w, n);
                encode_command(
                    &[&b"SET"[..], &key.to_be_bytes(), &set_value(base, key)],
                    &mut batch,
                );
            }
            out.sent += PIPELINE;
            conn.send(&batch)?;
            for n in first..first + PIPELINE {
                match conn.read()? {
                    Frame::Simple(s) if s == "OK" => {
                        out.acked.push(n);
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        return Err(Stop::Wrong(format!(
                            "writer {w}: SET number {n} was answered {other:?}"
                        )));
                    }
                }
            }
        }
        Ok(())
    };
    if let Err(Stop::Wrong(why)) = run() {
        out.wrong = Some(why);
    }
    out
}

/// The loop of "replied SETs survive kill -9 under always": each round starts a server child
/// at durability `always`, lets [`WRITERS`] connections pipeline SETs of unique keys at it,
/// kills it at a random moment once a first SET was answered, and reopens the store: every
/// SET answered `+OK` in any round is there with its exact value, and every key there is one
/// a writer sent, with its value.
pub(crate) fn replied_sets(rounds: usize) -> Tally {
    let started = Instant::now();
    let base = base_seed();
    let name = "server, always, replied SETs";
    println!("[{name}] base seed {base} ({ENV_BASE_SEED}={base} reuses the values and delays)");
    let tmp = workdir();
    let dir = tmp.path().join("data");
    create(&dir, 64, 2);
    let mut rng = StdRng::seed_from_u64(base);
    let mut tally = Tally::default();
    // Every acknowledged key of every round, and how many SETs each (round, writer) sent.
    let mut acked: Vec<u64> = Vec::new();
    let mut sent: HashMap<(usize, u64), u64> = HashMap::new();
    for round in 0..rounds {
        let delay_us = rng.random_range(0..=250_000u64);
        let what = format!(
            "[{name}] base seed {base}, round {round}, kill {delay_us} µs after the first +OK, dir {}",
            dir.display()
        );
        let (mut child, port) = start(&dir, Durability::Always, &what);
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (stop, acks) = (stop.clone(), acks.clone());
                thread::spawn(move || set_writer(port, base, round, w, &stop, &acks))
            })
            .collect();
        // Kill at a random moment after the first acknowledgement (so that every round has
        // something to check).
        let deadline = Instant::now() + IO_TIMEOUT;
        while acks.load(Ordering::Relaxed) == 0 {
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
                child.fail("no SET was answered in 30 s");
            }
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_micros(delay_us));
        child.kill();
        stop.store(true, Ordering::Relaxed);
        let mut round_acked = 0;
        for (w, h) in writers.into_iter().enumerate() {
            let w = w as u64;
            let out = h.join().expect("writer thread");
            if let Some(why) = out.wrong {
                panic!("{what}: {why}");
            }
            round_acked += out.acked.len();
            acked.extend(out.acked.iter().map(|&n| set_key(round, w, n)));
            sent.insert((round, w), out.sent);
        }
        drop(child);
        tally.kills += 1;
        tally.acked += round_acked as u64;

        let store = open_as(&dir, Durability::Always)
            .unwrap_or_else(|e| panic!("{what}: reopen after the kill failed: {e}"));
        let found: HashMap<u64, Vec<u8>> = store
            .iter()
            .map(|r| {
                r.map(|(k, v)| (k.as_u64(), v.to_vec()))
                    .unwrap_or_else(|e| panic!("{what}: scan after reopen: {e}"))
            })
            .collect();
        for &key in &acked {
            let want = set_value(base, key);
            match found.get(&key) {
                Some(v) if *v == want => {}
                got => panic!(
                    "{what}: the SET of key {key:#x} (round {}, writer {}, number {}) was \
                     answered +OK but the key holds {:?} after the kill ({} bytes expected)",
                    key >> 40,
                    (key >> 32) & 0xff,
                    key & 0xffff_ffff,
                    got.map(|v| v.len()),
                    want.len()
                ),
            }
        }
        for (&key, v) in &found {
            let (r, w, n) = ((key >> 40) as usize, (key >> 32) & 0xff, key & 0xffff_ffff);
            assert!(
                sent.get(&(r, w)).is_some_and(|&s| n < s),
                "{what}: key {key:#x} was never sent"
            );
            assert!(
                *v == set_value(base, key),
                "{what}: key {key:#x} holds a value no SET wrote"
            );
        }
        if verbose() {
            let applied = found
                .keys()
                .filter(|&&k| (k >> 40) as usize == round)
                .count();
            println!(
                "[{name}] round {round}: {round_acked} SETs answered, {} unanswered ones applied, {} keys in all",
                applied - round_acked,
                found.len()
            );
        }
        store
            .close()
            .unwrap_or_else(|e| panic!("{what}: close after the check: {e}"));
    }
    println!(
        "[{name}] {} kills in {:.1?}: {} SETs answered +OK, all found",
        tally.kills,
        started.elapsed(),
        tally.acked
    );
    tally
}

// ---------------------------------------------------------------------------------------------
// Batches: all or nothing.

/// Keys of one batch.
pub(crate) const PAIRS: usize = 1000;
/// Length of each value of a batch.
const VALUE_LEN: usize = 200;

/// How a batch is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// `MSET k0 v k1 v … k999 v`.
    Mset,
    /// `MULTI`, `SET k0 v` … `SET k999 v`, `EXEC`, in one write.
    Multi,
}

/// The client's name of key `i` (at most 8 bytes, so the store's key is it zero-padded).
fn pair_key(i: usize) -> String {
    format!("k{i}")
}

/// The store's key for `pair_key(i)`.
fn store_key(i: usize) -> [u8; 8] {
    let mut k = [0u8; 8];
    let name = pair_key(i);
    k[..name.len()].copy_from_slice(name.as_bytes());
    k
}

/// The value generation `g` writes at key `i`: `g` in ten decimal digits after a `g`, the key,
/// then bytes derived from both, [`VALUE_LEN`] bytes in all.
fn gen_value(g: u64, i: usize) -> Vec<u8> {
    let mut v = format!("g{g:010}k{i:04}:").into_bytes();
    let mut x = mix((g << 16) ^ i as u64);
    while v.len() < VALUE_LEN {
        x = mix(x);
        let take = (VALUE_LEN - v.len()).min(8);
        v.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    v
}

/// The generation a value written by [`gen_value`] names.
fn parse_gen(v: &[u8]) -> Option<u64> {
    let digits = v.get(1..11)?;
    (v.first() == Some(&b'g'))
        .then(|| std::str::from_utf8(digits).ok()?.parse().ok())
        .flatten()
}

/// The bytes of generation `g` sent as `batch`, in one write.
fn request(batch: Batch, g: u64) -> Vec<u8> {
    let mut out = Vec::new();
    match batch {
        Batch::Mset => {
            let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
            for i in 0..PAIRS {
                args.push(pair_key(i).into_bytes());
                args.push(gen_value(g, i));
            }
            encode_command(&args, &mut out);
        }
        Batch::Multi => {
            encode_command(&["MULTI"], &mut out);
            for i in 0..PAIRS {
                encode_command(
                    &[&b"SET"[..], pair_key(i).as_bytes(), &gen_value(g, i)],
                    &mut out,
                );
            }
            encode_command(&["EXEC"], &mut out);
        }
    }
    out
}

/// Reads the replies to one batch: `+OK` for MSET; `+OK`, [`PAIRS`] × `+QUEUED` and an array
/// of [`PAIRS`] × `+OK` for MULTI/EXEC.
fn await_batch(conn: &mut Conn, batch: Batch, g: u64) -> Result<(), Stop> {
    let ok = |f: &Frame| matches!(f, Frame::Simple(s) if s == "OK");
    let wrong = |what: &str, f: Frame| {
        Err(Stop::Wrong(format!(
            "generation {g}: {what} was answered {f:?}"
        )))
    };
    match batch {
        Batch::Mset => {
            let f = conn.read()?;
            if !ok(&f) {
                return wrong("MSET", f);
            }
        }
        Batch::Multi => {
            let f = conn.read()?;
            if !ok(&f) {
                return wrong("MULTI", f);
            }
            for i in 0..PAIRS {
                let f = conn.read()?;
                if !matches!(&f, Frame::Simple(s) if s == "QUEUED") {
                    return wrong(&format!("the queued SET {}", pair_key(i)), f);
                }
            }
            match conn.read()? {
                Frame::Array(items) if items.len() == PAIRS && items.iter().all(ok) => {}
                f => return wrong("EXEC", f),
            }
        }
    }
    Ok(())
}

/// When the parent kills a batch round's server.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// The client sends generation after generation, each once the last was acknowledged;
    /// the parent kills `delay_us` after the client connected.
    Stream { delay_us: u64 },
    /// The client has `first` generations acknowledged, then sends one more; the parent kills
    /// `delay_us` after the client said it is about to send it, without waiting for its reply.
    InFlight { first: u64, delay_us: u64 },
}

/// What a batch client did: the last generation acknowledged (the round's starting one if
/// none), the last sent, and a reply it should not have got.
struct Sent {
    acked: u64,
    sent: u64,
    wrong: Option<String>,
}

/// A batch client: generations `from + 1`, `from + 2`, … per `kill`, until the connection
/// fails (or, for [`Kill::InFlight`], the last batch was answered). Sends on `sending` the
/// generation it is about to send last.
fn batch_client(port: u16, batch: Batch, from: u64, kill: Kill, sending: &Sender<u64>) -> Sent {
    let mut out = Sent {
        acked: from,
        sent: from,
        wrong: None,
    };
    let Ok(mut conn) = Conn::connect(port) else {
        return out;
    };
    let mut run = || -> Result<(), Stop> {
        let last = match kill {
            Kill::Stream { .. } => from + 1_000_000,
            Kill::InFlight { first, .. } => from + first + 1,
        };
        for g in from + 1..=last {
            if g == last {
                let _ = sending.send(g);
            }
            out.sent = g;
            conn.send(&request(batch, g))?;
            await_batch(&mut conn, batch, g)?;
            out.acked = g;
        }
        Ok(())
    };
    if let Err(Stop::Wrong(why)) = run() {
        out.wrong = Some(why);
    }
    out
}

/// The loop of "a batch of [`PAIRS`] writes is all or nothing": each round starts a server
/// child at `durability` on the same store, sends generations of the batch per a random
/// [`Kill`], kills the child, and reopens the store: every key holds the same generation (0:
/// absent, before the first), which is the last acknowledged one or the one in flight; the
/// store holds nothing else.
pub(crate) fn all_or_nothing(batch: Batch, durability: Durability, rounds: usize) -> Tally {
    let started = Instant::now();
    let base = base_seed();
    let name = format!("server, {durability}, {batch:?} of {PAIRS}");
    println!("[{name}] base seed {base} ({ENV_BASE_SEED}={base} replays the kill plans)");
    let tmp = workdir();
    let dir = tmp.path().join("data");
    // 1024-slot sections: one batch puts about 500 values into each shard (an atomic batch
    // may put at most a bank's worth into one shard), so about every other batch moves on
    // to the other bank part way and hands a full one to the background writer (and, at
    // `always`, write-outs interleave with journal commits).
    create(&dir, 1024, 2);
    let mut rng = StdRng::seed_from_u64(base);
    let mut tally = Tally::default();
    // The generation every key holds, as the last check found it.
    let mut stored = 0u64;
    for round in 0..rounds {
        // Half the rounds kill right after the last batch was sent (within 800 µs: while it
        // arrives or is parsed), the others anywhere up to 50 ms later (while it is applied,
        // committed, answered), or at a random moment of a stream of batches.
        let kill = match round % 4 {
            0 | 2 => Kill::InFlight {
                first: rng.random_range(0..=2),
                delay_us: rng.random_range(0..=800),
            },
            1 => Kill::InFlight {
                first: rng.random_range(0..=2),
                delay_us: rng.random_range(0..=50_000),
            },
            _ => Kill::Stream {
                delay_us: rng.random_range(0..=150_000),
            },
        };
        let what = format!(
            "[{name}] base seed {base}, round {round}, {kill:?}, from generation {stored}, dir {}",
            dir.display()
        );
        let (mut child, port) = start(&dir, durability, &what);
        let (tx, rx) = channel();
        let client = thread::spawn(move || batch_client(port, batch, stored, kill, &tx));
        match kill {
            Kill::Stream { delay_us } => thread::sleep(Duration::from_micros(delay_us)),
            Kill::InFlight { delay_us, .. } => {
                if rx.recv_timeout(IO_TIMEOUT * 2).is_err() {
                    // The client ended before its last batch (it says why), or hangs; the
                    // failure shows the server child's stderr too (why it refused or died).
                    let why = if client.is_finished() {
                        let out = client.join().expect("client thread");
                        format!(
                            "the client stopped at generation {}: {}",
                            out.sent,
                            out.wrong.as_deref().unwrap_or("its connection failed")
                        )
                    } else {
                        format!(
                            "the client did not reach its last batch in {:?}",
                            IO_TIMEOUT * 2
                        )
                    };
                    child.fail(&why);
                }
                thread::sleep(Duration::from_micros(delay_us));
            }
        }
        child.kill();
        let out = client.join().expect("client thread");
        drop(child);
        if let Some(why) = out.wrong {
            panic!("{what}: {why}");
        }
        tally.kills += 1;
        tally.acked += out.acked - stored;
        let what = format!(
            "{what}: generation {} acknowledged last, {} sent last",
            out.acked, out.sent
        );

        let store = open_as(&dir, durability)
            .unwrap_or_else(|e| panic!("{what}: reopen after the kill failed: {e}"));
        let keys: Vec<[u8; 8]> = (0..PAIRS).map(store_key).collect();
        let gens: Vec<u64> = store
            .get_many(&keys)
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let v =
                    r.unwrap_or_else(|e| panic!("{what}: get {} after reopen: {e}", pair_key(i)));
                let Some(v) = v else { return 0 };
                let g = parse_gen(&v).unwrap_or_else(|| {
                    panic!(
                        "{what}: {} holds {:02x?}…, no generation's value",
                        pair_key(i),
                        &v[..v.len().min(16)]
                    )
                });
                assert!(
                    *v == gen_value(g, i),
                    "{what}: {} holds a damaged value of generation {g}",
                    pair_key(i)
                );
                g
            })
            .collect();
        let mut by_gen: BTreeMap<u64, usize> = BTreeMap::new();
        for &g in &gens {
            *by_gen.entry(g).or_default() += 1;
        }
        assert!(
            by_gen.len() == 1,
            "{what}: the keys hold different generations (generation: keys) {by_gen:?}; \
             the first keys: {:?}",
            &gens[..gens.len().min(20)]
        );
        let g = gens[0];
        let in_flight = (out.sent > out.acked).then_some(out.sent);
        assert!(
            g == out.acked || Some(g) == in_flight,
            "{what}: the keys hold generation {g}, neither the last acknowledged ({}) nor the \
             one in flight ({in_flight:?})",
            out.acked
        );
        let want_len = if g == 0 { 0 } else { PAIRS };
        assert_eq!(
            store.len(),
            want_len,
            "{what}: the store holds keys besides the batch's"
        );
        if in_flight.is_some() {
            if g == out.sent {
                tally.in_flight_applied += 1;
            } else {
                tally.in_flight_dropped += 1;
            }
        }
        if verbose() {
            println!(
                "[{name}] round {round}: {kill:?}: acknowledged {} → {}, in flight {in_flight:?}, found {g}",
                stored, out.acked
            );
        }
        stored = g;
        store
            .close()
            .unwrap_or_else(|e| panic!("{what}: close after the check: {e}"));
    }
    println!(
        "[{name}] {} kills in {:.1?}: {} batches acknowledged, in flight at the kill: applied {} / dropped {}",
        tally.kills,
        started.elapsed(),
        tally.acked,
        tally.in_flight_applied,
        tally.in_flight_dropped
    );
    tally
}
