//! The YCSB driver end to end: `toykv bench` on the library target (the binary and the
//! function behind it), and the RESP backend against a server started in-process. These
//! check that every workload runs, finds its records and reports in YCSB's format; they
//! assert nothing about speed.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use toykv::server::{Config, Server};
use toykv::ycsb::cli::{BenchArgs, bench};
use toykv::ycsb::resp::{Flavor, RespDb};
use toykv::ycsb::{Db, Settings, Target, Workload, load, run};
use toykv::{Options, Store};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ycsb")
        .tempdir_in(common::base())
        .unwrap()
}

fn args(target: Target, workloads: &str, json: Option<std::path::PathBuf>) -> BenchArgs {
    BenchArgs {
        workload: workloads.into(),
        records: 300,
        operations: 400,
        threads: 2,
        target,
        no_load: false,
        json,
        store: None,
        quiet: true,
        seed: 9,
    }
}

/// The sections of YCSB output per workload header (`# load`, `# workload a`, ...).
fn sections(out: &str) -> Vec<(String, Vec<String>)> {
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines() {
        if let Some(h) = line
            .strip_prefix("# ")
            .filter(|h| !h.starts_with("toykv bench"))
        {
            found.push((h.to_string(), Vec::new()));
        } else if let Some((_, lines)) = found.last_mut() {
            lines.push(line.to_string());
        }
    }
    found
}

fn value(lines: &[String], prefix: &str) -> Option<f64> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn bench_binary_runs_all_workloads_on_the_library() {
    let tmp = tempdir();
    let json = tmp.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_toykv"))
        .args([
            "bench",
            "-q",
            "--workload",
            "a,b,c,f,d,e",
            "--records",
            "300",
        ])
        .args(["--operations", "400", "--threads", "2", "--target"])
        .arg(format!("lib:{}", tmp.path().join("data").display()))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let found = sections(&stdout);
    let names: Vec<&str> = found.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        names,
        [
            "load",
            "workload a",
            "workload b",
            "workload c",
            "workload f",
            "workload d",
            "workload e"
        ]
    );
    for (name, lines) in &found {
        let total = if name == "load" { 300.0 } else { 400.0 };
        let ops: f64 = lines
            .iter()
            .filter(|l| l.contains("], Operations, "))
            .filter_map(|l| l.rsplit(", ").next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(ops, total, "{name}");
        assert!(value(lines, "[OVERALL], Throughput(ops/sec), ").is_some());
        assert!(!lines.iter().any(|l| l.contains("Return=ERROR")), "{name}");
    }
    // Reads of C all find their records; E scans; F reads and writes.
    let c = &found[3].1;
    assert_eq!(value(c, "[READ], Return=OK, "), Some(400.0));
    assert!(value(&found[6].1, "[SCAN], Operations, ").is_some());
    assert!(
        value(
            &found[4].1,
            "[READ-MODIFY-WRITE], 99thPercentileLatency(us), "
        )
        .is_some()
    );
    let json = std::fs::read_to_string(json).unwrap();
    assert!(json.starts_with("[{\"store\":\"toykv\""));
    assert_eq!(json.matches("\"workload\":").count(), 7);
}

#[test]
fn loaded_keys_are_fnv_hashes_of_record_numbers() {
    let tmp = tempdir();
    let dir = tmp.path().join("data");
    let mut out = Vec::new();
    bench(&args(Target::Lib(dir.clone()), "c", None), &mut out).unwrap();
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.len(), 300);
    let expected: HashSet<u64> = (0..300).map(toykv::ycsb::fnv64).collect();
    for item in store.iter() {
        let (key, value) = item.unwrap();
        assert!(expected.contains(&key.as_u64()));
        assert_eq!(value.len(), toykv::ycsb::VALUE_LEN);
    }
}

/// A server over a fresh store, in-process on an ephemeral port; stops when dropped.
struct Running {
    addr: String,
    served: common::Served<toykv::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        let dir = tempdir();
        let store = Arc::new(Store::open_with(dir.path(), Options::new()).unwrap());
        let config = Config {
            dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let served = common::Served::start(move |listener, shutdown| {
            Server::new(store, config).run(listener, shutdown)
        });
        Running {
            addr: served.addr.to_string(),
            served,
            _dir: dir,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.served.shutdown();
        let _ = self.served.wait(Duration::from_secs(20));
    }
}

#[test]
fn resp_backend_against_an_in_process_server() {
    let server = Running::start();
    let mut db = RespDb::connect(&server.addr, Flavor::Toykv).unwrap();
    assert!(!db.read(7).unwrap());
    db.insert(7, &[1u8; 256]).unwrap();
    db.insert(9, &[2u8; 256]).unwrap();
    assert!(db.read(7).unwrap());
    assert_eq!(db.scan(0, 100).unwrap(), 2);
    assert_eq!(db.scan(8, 100).unwrap(), 1);
    assert!(db.read_modify_write(9, &[3u8; 256]).unwrap());

    let addr = server.addr.clone();
    let connect = move || -> toykv::ycsb::DbResult<Box<dyn Db>> {
        Ok(Box::new(RespDb::connect(&addr, Flavor::Toykv)?))
    };
    let settings = Settings {
        records: 300,
        operations: 400,
        threads: 2,
        progress: false,
        seed: 3,
    };
    load(&connect, &settings).unwrap();
    for w in "abcfde".chars() {
        let phase = run(&connect, &settings, Workload::get(w).unwrap()).unwrap();
        assert_eq!(phase.operations(), 400, "workload {w}");
        assert_eq!(phase.errors(), 0, "workload {w}: {:?}", phase.first_error);
    }
    // And through `toykv bench --target resp:...`, which skips the load on request.
    let mut out = Vec::new();
    let mut a = args(Target::Resp(server.addr.clone()), "b", None);
    a.no_load = true;
    bench(&a, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("# workload b\n[OVERALL], RunTime(ms), "));
    assert!(!out.contains("# load"));
}
