//! The engine behind the server: the flags that choose its options (durability, shards,
//! garbage collection), and the INFO fields that report its counters.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use toykv::Durability;
use toykv::resp::Frame;
use toykv::server::Config;
use toykv::server::launch::{Flags, serve_on};

use crate::{Client, TestServer, bulk, tempdir};

/// The text of `INFO section`.
fn info(c: &mut Client, section: &str) -> String {
    match c.call(&["INFO", section]) {
        Frame::Bulk(b) => String::from_utf8(b).unwrap(),
        other => panic!("INFO replied {other:?}"),
    }
}

/// The value of `name` in an INFO reply.
fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO lacks {name}:\n{info}"))
}

/// A numeric INFO field.
fn num(info: &str, name: &str) -> u64 {
    let v = field(info, name);
    v.parse()
        .unwrap_or_else(|_| panic!("INFO {name}:{v} is not a number"))
}

/// Polls `INFO` until `done` holds, for at most 30 s; returns the last reply.
fn wait_for(c: &mut Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = info(c, "everything");
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what} never happened:\n{now}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The engine fields INFO shows, by section.
const PERSISTENCE: [&str; 7] = [
    "loading",
    "durability",
    "syncs",
    "journal_commits",
    "journal_checkpoints",
    "flushes",
    "stalls",
];
const STORAGE: [&str; 5] = [
    "shards",
    "disk_bytes",
    "gc_sections",
    "gc_moved",
    "gc_key_sections",
];

#[test]
fn info_reports_engine_counters_as_they_move() {
    // Sections of 64 slots: banks fill, get written out and collected after a few hundred SETs.
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    let persistence = info(&mut c, "persistence");
    assert!(
        persistence.starts_with("# Persistence\r\n"),
        "{persistence}"
    );
    for name in PERSISTENCE {
        field(&persistence, name);
    }
    let storage = info(&mut c, "storage");
    for name in STORAGE {
        num(&storage, name);
    }
    assert_eq!(field(&persistence, "loading"), "0");
    assert_eq!(field(&persistence, "durability"), "periodic:1000ms");
    assert_eq!(num(&persistence, "flushes"), 0);
    assert_eq!(
        num(&storage, "shards"),
        u64::from(toykv::default_shards()),
        "a new store has one shard per core"
    );
    let empty_disk = num(&storage, "disk_bytes");
    assert!(empty_disk > 0);
    assert_eq!(num(&storage, "gc_sections"), 0);

    // 1000 keys, then 3 overwrites of 9 keys in 10: every early section keeps a tenth of its
    // values live, so collecting it moves them; the early key sections end up dead.
    let key = |i: u32| format!("k{i:04}");
    let (mut batch, mut sets) = (Vec::new(), 0);
    let mut last = vec![String::new(); 1000];
    for round in 0..4 {
        for i in (0..1000u32).filter(|i| round == 0 || i % 10 != 0) {
            let v = format!("r{round}-{i}");
            batch.extend(crate::command(&["SET", &key(i), &v]));
            last[i as usize] = v;
            sets += 1;
        }
    }
    c.send(&batch);
    for n in 0..sets {
        assert_eq!(c.read(), Some(Frame::ok()), "SET {n} of {sets}");
    }
    let written = info(&mut c, "storage");
    assert!(
        num(&written, "disk_bytes") > empty_disk,
        "1000 live values need value sections:\n{written}"
    );
    let settled = wait_for(&mut c, "write-out, sync and garbage collection", |i| {
        [
            "flushes",
            "syncs",
            "gc_sections",
            "gc_moved",
            "gc_key_sections",
        ]
        .iter()
        .all(|f| num(i, f) > 0)
    });
    for name in PERSISTENCE.iter().chain(&STORAGE) {
        field(&settled, name);
    }
    // Garbage collection moved values, it did not lose them.
    for (i, v) in last.iter().enumerate() {
        assert_eq!(c.call(&["GET", &key(i as u32)]), bulk(v), "key {i}");
    }
}

/// A server started by [`serve_on`] with command-line flags, on port 0.
struct FlagServer {
    addr: SocketAddr,
    served: crate::common::Served<toykv::Result<()>>,
}

impl FlagServer {
    /// Serves `dir` with `args` (after `--dir DIR`).
    fn start(dir: &Path, args: &[&str]) -> FlagServer {
        let dir = dir.to_str().unwrap();
        let argv = ["toykv-server", "--dir", dir]
            .into_iter()
            .chain(args.iter().copied());
        let flags = Flags::try_parse_from(argv).unwrap();
        let served = crate::common::Served::start(move |listener, shutdown| {
            serve_on(flags, listener, shutdown)
        });
        FlagServer {
            addr: served.addr,
            served,
        }
    }

    fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server gracefully and returns how `serve_on` ended.
    fn stop(mut self) -> toykv::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> toykv::Result<()> {
        self.served.shutdown();
        self.served
            .wait(Duration::from_secs(20))
            .expect("server did not stop")
    }
}

#[test]
fn durability_shards_and_gc_flags_reach_the_store() {
    let dir = tempdir();
    let s = FlagServer::start(
        dir.path(),
        &["--durability", "always", "--shards", "3", "--no-gc"],
    );
    let mut c = s.connect();
    let before = info(&mut c, "everything");
    assert_eq!(field(&before, "durability"), "always");
    assert_eq!(num(&before, "shards"), 3);
    // With durability always, every acknowledged SET was committed to the journal: one
    // client, one commit each.
    for i in 0..20 {
        assert_eq!(c.call(&["SET", &format!("a{i}"), "v"]), Frame::ok());
    }
    let after = info(&mut c, "persistence");
    assert!(
        num(&after, "journal_commits") >= num(&before, "journal_commits") + 20,
        "before:\n{before}\nafter:\n{after}"
    );
    drop(c);
    s.stop().unwrap();

    // An existing store keeps its shard count; durability is chosen at each start.
    let s = FlagServer::start(dir.path(), &["--durability", "none", "--shards", "5"]);
    let mut c = s.connect();
    let before = info(&mut c, "everything");
    assert_eq!(field(&before, "durability"), "none");
    assert_eq!(num(&before, "shards"), 3);
    assert_eq!(c.call(&["GET", "a7"]), bulk("v"));
    for i in 0..20 {
        assert_eq!(c.call(&["SET", &format!("b{i}"), "v"]), Frame::ok());
    }
    let after = info(&mut c, "persistence");
    assert_eq!(
        num(&after, "syncs"),
        num(&before, "syncs"),
        "durability none syncs only when asked"
    );
    drop(c);
    s.stop().unwrap();

    // Periodic syncs happen on their own.
    let s = FlagServer::start(dir.path(), &["--durability", "periodic:20"]);
    let mut c = s.connect();
    assert_eq!(
        field(&info(&mut c, "persistence"), "durability"),
        "periodic:20ms"
    );
    assert_eq!(c.call(&["SET", "c", "v"]), Frame::ok());
    let start = num(&info(&mut c, "persistence"), "syncs");
    wait_for(&mut c, "a periodic sync", |i| num(i, "syncs") > start);
    drop(c);
    s.stop().unwrap();
}

#[test]
fn bad_engine_flags_are_refused_with_a_reason() {
    let parse = |args: &[&str]| Flags::try_parse_from(["toykv-server"].iter().chain(args));
    let defaults = parse(&[]).unwrap();
    assert_eq!(
        defaults.durability,
        Durability::Periodic(Duration::from_secs(1))
    );
    assert_eq!(defaults.shards, None);
    assert!(!defaults.no_gc);
    for (text, want) in [
        ("none", Durability::None),
        ("always", Durability::Always),
        ("periodic", Durability::Periodic(Duration::from_secs(1))),
        (
            "periodic:250",
            Durability::Periodic(Duration::from_millis(250)),
        ),
    ] {
        assert_eq!(parse(&["--durability", text]).unwrap().durability, want);
    }
    assert_eq!(parse(&["--shards", "256"]).unwrap().shards, Some(256));
    for (args, why) in [
        (
            &["--durability", "sometimes"][..],
            "expected none, always, periodic or periodic:MS",
        ),
        (
            &["--durability", "periodic:0"],
            "expected none, always, periodic or periodic:MS",
        ),
        (
            &["--durability", "periodic:x"],
            "expected none, always, periodic or periodic:MS",
        ),
        (&["--shards", "0"], "0 is not in 1..=256"),
        (&["--shards", "257"], "257 is not in 1..=256"),
        (&["--shards", "many"], "invalid digit"),
        (&["--no-gc", "yes"], "unexpected argument"),
    ] {
        let e = parse(args).unwrap_err().to_string();
        assert!(e.contains(why), "{args:?}: {e}");
    }
}

/// A new store of one shard with 64-slot sections, closed: a server opens it with the size it
/// was made with, so a few hundred SETs fill several banks.
fn small_store() -> tempfile::TempDir {
    let dir = tempdir();
    let options = toykv::Options::new().section_slots(64).shards(1);
    toykv::Store::open_with(dir.path(), options)
        .unwrap()
        .close()
        .unwrap();
    dir
}

#[test]
fn no_gc_leaves_garbage_for_the_next_start() {
    // A store made with small sections: the server opens it with the size it was made with.
    let dir = small_store();
    let overwrite = |c: &mut Client, round: u32| {
        let mut batch = Vec::new();
        for i in 0..640 {
            batch.extend(crate::command(&[
                "SET",
                &format!("k{}", i % 10),
                &format!("{round}"),
            ]));
        }
        c.send(&batch);
        for n in 0..640 {
            assert_eq!(c.read(), Some(Frame::ok()), "SET {n}");
        }
    };
    let s = FlagServer::start(dir.path(), &["--no-gc"]);
    let mut c = s.connect();
    overwrite(&mut c, 1);
    // 640 puts fill 10 banks of 64; the 10th stays active, the others are written out.
    wait_for(&mut c, "write-outs", |i| num(i, "flushes") >= 9);
    std::thread::sleep(Duration::from_millis(300));
    let idle = info(&mut c, "everything");
    assert_eq!(num(&idle, "shards"), 1);
    assert_eq!(num(&idle, "gc_sections"), 0, "{idle}");
    assert_eq!(num(&idle, "gc_key_sections"), 0, "{idle}");
    drop(c);
    s.stop().unwrap();

    let s = FlagServer::start(dir.path(), &[]);
    let mut c = s.connect();
    let collected = wait_for(&mut c, "garbage collection", |i| {
        num(i, "gc_sections") > 0 && num(i, "gc_key_sections") > 0
    });
    assert!(num(&collected, "disk_bytes") < num(&idle, "disk_bytes"));
    for i in 0..10 {
        assert_eq!(c.call(&["GET", &format!("k{i}")]), bulk("1"));
    }
}

#[test]
fn mget_reads_values_on_disk_in_one_batch_and_in_order() {
    // Small sections and no cache: most values are in value sections, read from disk.
    let dir = small_store();
    let s = FlagServer::start(dir.path(), &["--cache-bytes", "0", "--no-gc"]);
    let mut c = s.connect();
    for i in 0..300 {
        let v = format!("value-{i}-{}", "x".repeat(i % 200));
        assert_eq!(c.call(&["SET", &format!("k{i}"), &v]), Frame::ok());
    }
    assert_eq!(c.call(&["DEL", "k7"]), Frame::Integer(1));
    wait_for(&mut c, "write-outs", |i| num(i, "flushes") >= 4);
    // Every key, one deleted, one never written, one repeated, and one that cannot be a key.
    let mut args: Vec<String> = vec!["MGET".into()];
    args.extend((0..300).rev().map(|i| format!("k{i}")));
    args.extend([
        "nope".into(),
        "k5".into(),
        "a-key-longer-than-eight-bytes".into(),
    ]);
    let Frame::Array(got) = c.call(&args) else {
        panic!("MGET did not answer an array");
    };
    let want = |i: usize| bulk(format!("value-{i}-{}", "x".repeat(i % 200)));
    assert_eq!(got.len(), 303);
    for (n, i) in (0..300).rev().enumerate() {
        let expected = if i == 7 { Frame::Null } else { want(i) };
        assert_eq!(got[n], expected, "k{i}");
    }
    assert_eq!(got[300], Frame::Null);
    assert_eq!(got[301], want(5));
    assert_eq!(got[302], Frame::Null);
    drop(c);
    s.stop().unwrap();
}
