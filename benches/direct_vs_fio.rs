//! O_DIRECT random gets against fio's 4 KiB random reads on the same disk, in the same run.
//!
//! `cargo bench --bench direct_vs_fio` builds (once) a store of 4 M records with 256-byte
//! values (1 GiB of value sections) under `target/bench-data`, runs
//! `fio --rw=randread --bs=4k --direct=1 --ioengine=psync --iodepth=1` for 10 s on a 1 GiB file
//! in the same directory, then times single-threaded random gets for 10 s and prints both and
//! their ratio. Needs `fio` on the PATH (`apt-get install fio`); without it, prints only the
//! store's figure.

use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::{Options, Store};

mod common;

const N: u64 = 4 * 1024 * 1024 + 1;
const RUN: Duration = Duration::from_secs(10);

/// fio's read IOPS, from its terse output (field 8).
fn fio(dir: &std::path::Path) -> Option<f64> {
    let file = dir.join("fio.dat");
    let out = Command::new("fio")
        .args([
            "--name=randread",
            &format!("--filename={}", file.display()),
            "--size=1G",
            "--rw=randread",
            "--bs=4k",
            "--direct=1",
            "--ioengine=psync",
            "--iodepth=1",
            "--runtime=10",
            "--time_based",
            "--minimal",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("fio failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().last()?.split(';').nth(7)?.parse().ok()
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = common::filled("direct", N);
    let fio_iops = fio(dir.parent().unwrap_or(&dir));
    // The read cache off: every get is an O_DIRECT read.
    let store = Store::open_with(&dir, Options::new().cache_bytes(0)).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    // Warm up the index and the key sections' pages, then measure.
    for _ in 0..100_000 {
        store.get(rng.random_range(0..N)).unwrap();
    }
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < RUN {
        for _ in 0..256 {
            let v = store.get(rng.random_range(0..N)).unwrap().unwrap();
            assert_eq!(v.len(), 256);
        }
        n += 256;
    }
    let gets = n as f64 / start.elapsed().as_secs_f64();
    println!("toykv random get (O_DIRECT, 1 thread): {gets:.0} per second");
    match fio_iops {
        Some(iops) => println!(
            "fio randread 4k direct iodepth=1: {iops:.0} IOPS; toykv reaches {:.0}% of it",
            100.0 * gets / iops
        ),
        None => println!("fio not available: no comparison"),
    }
}
