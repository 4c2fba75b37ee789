//! Real process crashes: a child process writes to a store and is killed with SIGKILL at a
//! random moment (often while it flushes the write buffer to a value section or creates a key
//! section); the parent then reopens the store and checks it against a model.
//!
//! The guarantee under test (crate docs): a put or delete that returned `Ok` survives kill -9
//! at any moment, and nothing that was never written appears. The single operation that was in
//! flight when the signal landed may or may not have taken effect, but it is all or nothing.
//!
//! The child is this test binary re-executed with `--exact child_writer` and the store's
//! directory, the seed and the section size in environment variables. It runs the
//! deterministic operation sequence [`ops`]`(seed)` and prints one line per acknowledged
//! operation, so the parent only needs the count: it regenerates the same sequence from the
//! seed. Before an operation that will flush the write buffer (or create a key section) the
//! child prints a marker line and waits for a one-byte go-ahead on stdin, so the parent can
//! aim its kill at the flush (at once, or after a delay of up to a few milliseconds) instead
//! of landing wherever the child has got to while the parent read the pipe.
//!
//! After each kill the parent reopens the store and checks, besides the contents (scan and
//! point reads), that the log holds exactly the acknowledged records plus at most the
//! in-flight one, that the slots used match, and that a torn tail, if recovery reports one,
//! is the in-flight record.
//!
//! The kill timing is not reproducible, but the operations are: every failure names the base
//! seed, which `TOYKV_CRASH_BASE_SEED=<seed>` replays. `TOYKV_CRASH_VERBOSE=1` prints every
//! round; `TOYKV_CRASH_KEEP=1` keeps the data directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::format::{DEFAULT_SECTION_SLOTS, KEYS_DATA_AT, RECORD_SIZE, TMP_SUFFIX, keys_name};
use toykv::{Options, Store};

/// Data directory of the child; its presence makes `child_writer` run.
const ENV_DIR: &str = "TOYKV_CRASH_CHILD";
/// Seed of the child's operation sequence.
const ENV_SEED: &str = "TOYKV_CRASH_SEED";
/// `section_slots` of the store.
const ENV_SLOTS: &str = "TOYKV_CRASH_SLOTS";
/// Operations after which the child stops and waits to be killed.
const ENV_MAX_OPS: &str = "TOYKV_CRASH_MAX_OPS";
/// Overrides the base seed of a parent test (printed by every run).
const ENV_BASE_SEED: &str = "TOYKV_CRASH_BASE_SEED";

/// Tag that starts every protocol line the child prints (the test harness prints other lines
/// on the same stdout).
const TAG: &str = "@toykv-crash ";

/// Keys are drawn from `0..KEYS`, so overwrites and deletes of live keys are common.
const KEYS: u64 = 500;

/// Longest wait for one line from the child, and for it to die after SIGKILL.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a round may take.
const ROUND_TIMEOUT: Duration = Duration::from_secs(90);

/// One operation of the child's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Put `value(seed, n, key, len)` at `key`, where `n` is the op number.
    Put { key: u64, len: usize },
    /// Delete `key`.
    Delete { key: u64 },
    /// `Store::sync` (changes nothing visible; exercises sync marks).
    Sync,
}

impl Op {
    fn key(self) -> Option<u64> {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => Some(key),
            Op::Sync => None,
        }
    }
}

/// The deterministic, endless operation sequence of `seed`, shared by child and parent: 84%
/// puts of 0 to 256 bytes, 15% deletes, 1% syncs.
fn ops(seed: u64) -> impl Iterator<Item = Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    std::iter::from_fn(move || {
        let roll = rng.random_range(0..100u32);
        let key = rng.random_range(0..KEYS);
        Some(match roll {
            0 => Op::Sync,
            1..=15 => Op::Delete { key },
            _ => Op::Put {
                key,
                len: rng.random_range(0..=256usize),
            },
        })
    })
}

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value op `n` of sequence `seed` puts at `key`: checkable, and unique per put.
fn value(seed: u64, n: u64, key: u64, len: usize) -> Vec<u8> {
    let mut x = mix(seed ^ mix(n ^ mix(key)));
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x = mix(x);
        let take = (len - v.len()).min(8);
        v.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    v
}

fn env_u64(name: &str) -> u64 {
    let s = std::env::var(name).unwrap_or_else(|_| panic!("child: {name} is not set"));
    s.parse()
        .unwrap_or_else(|e| panic!("child: {name}={s:?} is not a number: {e}"))
}

fn options(slots: u32) -> Options {
    Options::new().section_slots(slots)
}

/// The child process. NOT A TEST ON ITS OWN: it is the entry point the crash tests re-execute
/// this binary into, and it returns at once (doing nothing) when `TOYKV_CRASH_CHILD` is unset,
/// as in a normal `cargo test` run.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let seed = env_u64(ENV_SEED);
    let slots = u32::try_from(env_u64(ENV_SLOTS)).expect("child: section slots fit in u32");
    let max_ops = env_u64(ENV_MAX_OPS);
    let s = u64::from(slots);

    let store = Store::open_with(&dir, options(slots))
        .unwrap_or_else(|e| panic!("child: open {}: {e}", Path::new(&dir).display()));
    let mut out = std::io::stdout().lock();
    let mut say = |line: std::fmt::Arguments<'_>| {
        // A failed write means the parent is gone: stop.
        if writeln!(out, "{TAG}{line}")
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(2);
        }
    };
    // After a marker the child waits for the parent's go-ahead (one byte on stdin), so that a
    // kill aimed at the marked operation lands during it, not thousands of ops later when the
    // parent has caught up with the pipe.
    let mut stdin = std::io::stdin().lock();
    let mut go = |n: u64| {
        let mut b = [0u8; 1];
        if stdin.read_exact(&mut b).is_err() {
            // The parent is gone.
            std::process::exit(2);
        }
        assert_eq!(b[0], b'g', "child: bad go-ahead before op {n}");
    };
    say(format_args!("O"));
    for (n, op) in (0..max_ops).zip(ops(seed)) {
        let st = store.stats();
        // The put that takes the first slot of a section not yet begun flushes the buffer.
        if matches!(op, Op::Put { .. })
            && st.slots_used.is_multiple_of(s)
            && st.slots_used / s > st.value_sections
        {
            say(format_args!("F {n}"));
            go(n);
        }
        // The record after the last one of the last key section creates a key section.
        if op != Op::Sync && st.records == st.key_sections * s {
            say(format_args!("K {n}"));
            go(n);
        }
        match op {
            Op::Put { key, len } => {
                let v = value(seed, n, key, len);
                store
                    .put(key, &v)
                    .unwrap_or_else(|e| panic!("child: op {n} {op:?}: {e}"));
                say(format_args!("A {n}"));
            }
            Op::Delete { key } => {
                let existed = store
                    .delete(key)
                    .unwrap_or_else(|e| panic!("child: op {n} {op:?}: {e}"));
                say(format_args!("A {n} {}", u8::from(existed)));
            }
            Op::Sync => {
                store
                    .sync()
                    .unwrap_or_else(|e| panic!("child: op {n} {op:?}: {e}"));
                say(format_args!("A {n}"));
            }
        }
    }
    say(format_args!("END"));
    // Wait to be killed. The parent holds our stdin open; if it dies, stdin ends and so do we.
    let _ = stdin.read_to_end(&mut Vec::new());
}

/// When the parent kills the child.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Once `n` operations have been acknowledged, after a sleep of `delay_us`.
    Acks { n: u64, delay_us: u64 },
    /// After the `nth` marker of `kind` (`'F'` buffer flush, `'K'` new key section), then
    /// `then_acks` more acknowledgements, then a sleep of `delay_us`.
    Marker {
        kind: char,
        nth: u32,
        then_acks: u32,
        delay_us: u64,
    },
    /// `delay_us` after spawning it: during start-up or while it opens (recovers) the store.
    Startup { delay_us: u64 },
}

/// A line of the child's protocol.
#[derive(Debug)]
enum Msg {
    Opened,
    /// Operation `n` returned `Ok`; for deletes, whether the key existed.
    Ack(u64, Option<bool>),
    Marker(char, u64),
    End,
}

fn parse(line: &str) -> Option<Result<Msg, String>> {
    let at = line.find(TAG)?;
    let rest = &line[at + TAG.len()..];
    let bad = || Err(format!("bad protocol line {line:?}"));
    let words: Vec<&str> = rest.split_whitespace().collect();
    let num = |w: &str| w.parse::<u64>().ok();
    Some(match words.as_slice() {
        ["O"] => Ok(Msg::Opened),
        ["END"] => Ok(Msg::End),
        ["A", n] => num(n).map_or_else(bad, |n| Ok(Msg::Ack(n, None))),
        ["A", n, e @ ("0" | "1")] => num(n).map_or_else(bad, |n| Ok(Msg::Ack(n, Some(*e == "1")))),
        [k @ ("F" | "K"), n] => {
            num(n).map_or_else(bad, |n| Ok(Msg::Marker(k.as_bytes()[0] as char, n)))
        }
        _ => bad(),
    })
}

/// A running child with its stdout lines arriving on a channel and its stderr collected.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    /// Context for failure messages.
    what: String,
    /// Acknowledged operations: their delete results, in order.
    acks: Vec<Option<bool>>,
    /// Markers seen (kind, op number).
    markers: Vec<(char, u64)>,
}

impl Running {
    fn spawn(dir: &Path, seed: u64, slots: u32, max_ops: u64, what: String) -> Running {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(ENV_DIR, dir)
            .env(ENV_SEED, seed.to_string())
            .env(ENV_SLOTS, slots.to_string())
            .env(ENV_MAX_OPS, max_ops.to_string())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: spawn child: {e}"));
        let mut stdin = child.stdin.take().expect("child stdin");
        let stdout = child.stdout.take().expect("child stdout");
        let mut stderr = child.stderr.take().expect("child stderr");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Let the child go on at once after a marker: the test thread then kills it
                // right away or after a delay, while the marked operation runs. (The write
                // fails only if the child died, which the test thread finds out.)
                if let Some(Ok(Msg::Marker(..))) = parse(&line) {
                    let _ = stdin.write_all(b"g").and_then(|()| stdin.flush());
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
            // `stdin` closes here, after the child's stdout: the child never waits on a
            // closed stdin while it lives.
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Running {
            child,
            lines,
            stderr: Some(stderr),
            what,
            acks: Vec::new(),
            markers: Vec::new(),
        }
    }

    /// Kills the child (if still alive), waits for it, and panics with `why` and its stderr.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        panic!(
            "{}: {why}\nchild status: {status:?}; acknowledged ops: {}\n--- child stderr ---\n{stderr}--- end ---",
            self.what,
            self.acks.len()
        );
    }

    /// Records one protocol message; returns it.
    fn take(&mut self, line: &str) -> Option<Msg> {
        let msg = match parse(line)? {
            Ok(m) => m,
            Err(e) => self.fail(&e),
        };
        match msg {
            Msg::Ack(n, del) => {
                if n != self.acks.len() as u64 {
                    self.fail(&format!(
                        "ack for op {n} but {} ops were acknowledged before",
                        self.acks.len()
                    ));
                }
                self.acks.push(del);
            }
            Msg::Marker(k, n) => self.markers.push((k, n)),
            Msg::End => self.fail("the child ran out of operations before the planned kill"),
            Msg::Opened => {}
        }
        Some(msg)
    }

    /// The next protocol message; fails on timeout or if the child's stdout ends (it exited
    /// by itself).
    fn next(&mut self, deadline: Instant) -> Msg {
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(LINE_TIMEOUT);
            match self.lines.recv_timeout(wait) {
                Ok(line) => {
                    if let Some(msg) = self.take(&line) {
                        return msg;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail("timed out waiting for the child"),
                Err(RecvTimeoutError::Disconnected) => self
                    .fail("the child's stdout closed before it was killed (it exited by itself)"),
            }
        }
    }

    /// Runs `plan`, sends SIGKILL, waits for the child to die and reads the rest of its output.
    fn kill_per(&mut self, plan: Plan) {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        match plan {
            Plan::Startup { delay_us } => thread::sleep(Duration::from_micros(delay_us)),
            Plan::Acks { n, delay_us } => {
                while (self.acks.len() as u64) < n {
                    self.next(deadline);
                }
                thread::sleep(Duration::from_micros(delay_us));
            }
            Plan::Marker {
                kind,
                nth,
                then_acks,
                delay_us,
            } => {
                let mut seen = 0;
                while seen < nth {
                    if let Msg::Marker(k, _) = self.next(deadline)
                        && k == kind
                    {
                        seen += 1;
                    }
                }
                let want = self.acks.len() as u64 + u64::from(then_acks);
                while (self.acks.len() as u64) < want {
                    self.next(deadline);
                }
                thread::sleep(Duration::from_micros(delay_us));
            }
        }
        if let Err(e) = self.child.kill() {
            self.fail(&format!("kill: {e}"));
        }
        let status: ExitStatus = match self.child.wait() {
            Ok(s) => s,
            Err(e) => self.fail(&format!("wait: {e}")),
        };
        // Acknowledgements written before the kill may still be in the pipe.
        loop {
            match self.lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    self.take(&line);
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail("the child's stdout stayed open after it was killed")
                }
            }
        }
        if status.signal() != Some(libc::SIGKILL) {
            self.fail(&format!(
                "the child was not killed by SIGKILL but ended with {status}"
            ));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Model = BTreeMap<u64, Vec<u8>>;

fn show(v: Option<&Vec<u8>>) -> String {
    match v {
        None => "absent".to_string(),
        Some(v) => format!(
            "{} bytes {:02x?}{}",
            v.len(),
            &v[..v.len().min(12)],
            if v.len() > 12 { "…" } else { "" }
        ),
    }
}

/// One test's parameters.
struct Variant {
    name: &'static str,
    slots: u32,
    /// Operations per child at most (it then waits to be killed).
    max_ops: u64,
    plans: fn(round: usize, rng: &mut StdRng) -> Plan,
    rounds: usize,
}

/// What the whole run saw, for the summary and the final assertions.
#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    acked_ops: u64,
    in_flight_applied: usize,
    in_flight_dropped: usize,
    /// Kills that left a `.tmp` value section behind: they landed inside a flush.
    inside_flush: usize,
    /// Reopens whose recovery found a half-written record (the in-flight one).
    torn: usize,
    /// Value sections in the store at the end.
    value_sections: u64,
}

/// `TOYKV_CRASH_VERBOSE=1` prints every round.
fn verbose() -> bool {
    std::env::var_os("TOYKV_CRASH_VERBOSE").is_some()
}

fn base_seed() -> u64 {
    match std::env::var(ENV_BASE_SEED) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|e| panic!("{ENV_BASE_SEED}={s:?}: {e}")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

fn run(v: &Variant) -> Tally {
    let started = Instant::now();
    let base = base_seed();
    println!(
        "[{}] base seed {base} (replay the operations with {ENV_BASE_SEED}={base})",
        v.name
    );
    let mut tmp = tempfile::Builder::new()
        .prefix("toykv-crash-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    // `TOYKV_CRASH_KEEP=1` keeps the data directory (named in failure messages) for a
    // post-mortem.
    tmp.disable_cleanup(std::env::var_os("TOYKV_CRASH_KEEP").is_some());
    let dir = tmp.path().join("data");
    let s = u64::from(v.slots);
    let mut rng = StdRng::seed_from_u64(base);
    let mut model = Model::new();
    // What the store held after the last reopen.
    let (mut records, mut slots_used) = (0u64, 0u64);
    let mut tally = Tally::default();

    for round in 0..v.rounds {
        let seed = mix(base ^ mix(round as u64));
        let plan = (v.plans)(round, &mut rng);
        let what = format!(
            "[{}] base seed {base}, round {round}, child seed {seed}, plan {plan:?}",
            v.name
        );
        let mut child = Running::spawn(&dir, seed, v.slots, v.max_ops, what.clone());
        child.kill_per(plan);
        let acks = std::mem::take(&mut child.acks);
        let markers = std::mem::take(&mut child.markers);
        drop(child);
        tally.kills += 1;
        tally.acked_ops += acks.len() as u64;

        let left_tmp = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(TMP_SUFFIX))
            })
            .unwrap_or(false);
        if left_tmp {
            tally.inside_flush += 1;
        }

        // Replay the acknowledged operations on the model.
        let mut seq = ops(seed);
        for (n, del) in acks.iter().enumerate() {
            let op = seq.next().expect("endless sequence");
            match op {
                Op::Put { key, len } => {
                    model.insert(key, value(seed, n as u64, key, len));
                    records += 1;
                    slots_used += 1;
                }
                Op::Delete { key } => {
                    let existed = model.remove(&key).is_some();
                    assert_eq!(
                        *del,
                        Some(existed),
                        "{what}: op {n} {op:?} returned {del:?}, the model says the key existed: {existed}"
                    );
                    records += u64::from(existed);
                }
                Op::Sync => {}
            }
        }
        let n = acks.len() as u64;
        let in_flight = seq.next().expect("endless sequence");
        let (before, after) = match in_flight {
            Op::Put { key, len } => (model.get(&key).cloned(), Some(value(seed, n, key, len))),
            Op::Delete { key } => (model.get(&key).cloned(), None),
            Op::Sync => (None, None),
        };
        // Whether the in-flight op writes a key record (and, for a put, takes a slot).
        let writes = match in_flight {
            Op::Put { .. } => true,
            Op::Delete { key } => model.contains_key(&key),
            Op::Sync => false,
        };
        let what = format!(
            "{what}: {n} ops acknowledged, in flight op {n} {in_flight:?}, markers {:?}",
            &markers[markers.len().saturating_sub(4)..]
        );

        let store = Store::open_with(&dir, options(v.slots))
            .unwrap_or_else(|e| panic!("{what}: reopen after the kill failed: {e}"));
        let st = store.stats();

        // The log holds exactly the acknowledged records, plus perhaps the in-flight one.
        let applied = match st.records.checked_sub(records) {
            Some(0) => false,
            Some(1) if writes => true,
            _ => panic!(
                "{what}: the store holds {} key records; {records} were acknowledged{}",
                st.records,
                if writes { " (+1 in flight)" } else { "" }
            ),
        };
        let want_slots = slots_used + u64::from(applied && matches!(in_flight, Op::Put { .. }));
        assert_eq!(
            st.slots_used, want_slots,
            "{what}: slots used after reopen (in-flight op applied: {applied})"
        );
        // Every full section is a value file, except that the last one's flush may have been
        // cut short (then its put was not applied).
        let full = st.slots_used / s;
        assert!(
            st.value_sections == full
                || (st.value_sections + 1 == full && st.slots_used.is_multiple_of(s)),
            "{what}: {} value sections for {} used slots",
            st.value_sections,
            st.slots_used
        );

        // A torn tail can only be the in-flight record, cut mid-copy by the signal.
        if let Some(torn) = &st.torn_tail {
            let file = keys_name((st.records / s) as u32);
            let off = KEYS_DATA_AT + (st.records % s) as usize * RECORD_SIZE;
            assert!(
                writes
                    && !applied
                    && torn.contains(&file)
                    && torn.contains(&format!("offset {off} ")),
                "{what}: recovery dropped a damaged record that is not the in-flight one ({file} offset {off}): {torn}"
            );
            tally.torn += 1;
        }

        // Contents: scan and point reads.
        let scanned: Model = store
            .iter()
            .map(|r| {
                r.map(|(k, v)| (k.as_u64(), v.to_vec()))
                    .unwrap_or_else(|e| panic!("{what}: scan after reopen: {e}"))
            })
            .collect();
        for key in 0..KEYS {
            let got = store
                .get(key)
                .unwrap_or_else(|e| panic!("{what}: get {key} after reopen: {e}"))
                .map(|v| v.to_vec());
            assert_eq!(
                got.as_ref(),
                scanned.get(&key),
                "{what}: get and scan disagree on key {key}"
            );
        }
        assert_eq!(
            st.keys as usize,
            scanned.len(),
            "{what}: stats().keys against the scan"
        );
        let flight_key = in_flight.key();
        for key in model.keys().chain(scanned.keys()) {
            if Some(*key) == flight_key {
                continue;
            }
            let (want, got) = (model.get(key), scanned.get(key));
            assert!(
                want == got,
                "{what}: key {key} should be {} but is {}",
                show(want),
                show(got)
            );
        }
        if let Some(key) = flight_key {
            let got = scanned.get(&key).cloned();
            let want = if applied { &after } else { &before };
            assert!(
                got == *want,
                "{what}: in-flight key {key} is {} but should be {} (in-flight op {}; before {}, after {})",
                show(got.as_ref()),
                show(want.as_ref()),
                if applied { "applied" } else { "not applied" },
                show(before.as_ref()),
                show(after.as_ref()),
            );
        }
        if verbose() {
            println!(
                "[{}] round {round}: {plan:?}: {n} acked, in flight {in_flight:?} {}, .tmp left: {left_tmp}, last markers {:?}",
                v.name,
                if !writes {
                    "(writes nothing)"
                } else if applied {
                    "applied"
                } else {
                    "not applied"
                },
                &markers[markers.len().saturating_sub(2)..]
            );
        }
        if writes {
            if applied {
                tally.in_flight_applied += 1;
            } else {
                tally.in_flight_dropped += 1;
            }
        }

        // Resolve the in-flight op from the store's actual state.
        if applied {
            records += 1;
            if let Op::Put { .. } = in_flight {
                slots_used += 1;
            }
        }
        if let Some(key) = flight_key {
            match scanned.get(&key) {
                Some(v) => model.insert(key, v.clone()),
                None => model.remove(&key),
            };
        }
        assert_eq!(model, scanned, "{what}: model after resolving");
        assert_eq!((records, slots_used), (st.records, st.slots_used));

        let is_last = round + 1 == v.rounds;
        drop(store);
        if is_last {
            // Recovery zeroed any dropped tail: a second open finds a clean log and the same
            // contents.
            let store = Store::open_with(&dir, options(v.slots))
                .unwrap_or_else(|e| panic!("{what}: second reopen failed: {e}"));
            let st = store.stats();
            assert_eq!(st.torn_tail, None, "{what}: torn tail on the second reopen");
            assert_eq!((st.records, st.slots_used), (records, slots_used), "{what}");
            let again: Model = store
                .iter()
                .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).expect("scan"))
                .collect();
            assert_eq!(again, model, "{what}: contents on the second reopen");
            tally.value_sections = st.value_sections;
            println!(
                "[{}] final store: {} keys, {} records, {} slots used, {} value sections, {} key sections",
                v.name, st.keys, st.records, st.slots_used, st.value_sections, st.key_sections
            );
        }
    }
    println!(
        "[{}] {} kills in {:.1?}: {} acknowledged ops, in-flight writes applied {} / dropped {}, \
         {} kills inside a flush (.tmp left), {} torn in-flight records",
        v.name,
        tally.kills,
        started.elapsed(),
        tally.acked_ops,
        tally.in_flight_applied,
        tally.in_flight_dropped,
        tally.inside_flush,
        tally.torn
    );
    tally
}

/// Plans for 16-slot sections: a flush every 16 puts and a new key section every 16 records.
fn small_plan(round: usize, rng: &mut StdRng) -> Plan {
    let delay = |rng: &mut StdRng| {
        if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(0..=3000)
        }
    };
    match round % 8 {
        0 | 4 => Plan::Acks {
            n: rng.random_range(1..=300),
            delay_us: delay(rng),
        },
        1 | 5 => Plan::Marker {
            kind: 'F',
            nth: rng.random_range(1..=3),
            then_acks: 0,
            delay_us: delay(rng),
        },
        2 => Plan::Marker {
            kind: 'F',
            nth: rng.random_range(1..=3),
            then_acks: rng.random_range(0..=2),
            delay_us: 0,
        },
        3 => Plan::Marker {
            kind: 'K',
            nth: rng.random_range(1..=3),
            then_acks: 0,
            delay_us: delay(rng),
        },
        6 => Plan::Startup {
            delay_us: rng.random_range(0..=20_000),
        },
        _ => Plan::Acks {
            n: rng.random_range(1..=5),
            delay_us: 0,
        },
    }
}

#[test]
fn kill9_small_sections() {
    let t = run(&Variant {
        name: "16 slots",
        slots: 16,
        max_ops: 2000,
        plans: small_plan,
        rounds: 48,
    });
    assert_eq!(t.kills, 48);
}

/// Plans for the default 16 MiB sections: a few kills before, at, inside and right after a
/// buffer flush.
fn default_plan(round: usize, rng: &mut StdRng) -> Plan {
    let flush = |then_acks, delay_us| Plan::Marker {
        kind: 'F',
        nth: 1,
        then_acks,
        delay_us,
    };
    match round {
        0 => Plan::Acks {
            n: rng.random_range(1_000..=5_000),
            delay_us: rng.random_range(0..=3_000),
        },
        1 => flush(0, 0),
        2 => flush(0, rng.random_range(0..=3_000)),
        3 => flush(0, rng.random_range(0..=30_000)),
        4 => flush(1, 0),
        _ => Plan::Acks {
            n: rng.random_range(1..=50),
            delay_us: rng.random_range(0..=3_000),
        },
    }
}

#[test]
fn kill9_default_sections() {
    let t = run(&Variant {
        name: "65536 slots",
        slots: DEFAULT_SECTION_SLOTS,
        max_ops: 200_000,
        plans: default_plan,
        rounds: 6,
    });
    assert_eq!(t.kills, 6);
    assert!(
        t.value_sections >= 1,
        "no 16 MiB flush completed during the test: {t:?}"
    );
}
