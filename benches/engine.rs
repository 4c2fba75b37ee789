//! Criterion benchmarks of the engine: put, get from the buffer, get through O_DIRECT from a
//! value section, get of a hot set from the read cache, scan, and open (index rebuild) at 1 M
//! and 10 M records. The buffer, O_DIRECT and scan figures use a store opened with the read
//! cache off (`cache_bytes(0)`), so they keep measuring those paths.
//!
//! `cargo bench --bench engine` runs them all; `TOYKV_BENCH_BIG=0` skips the 10 M-record open.
//! Data goes under `target/bench-data` (a real file system; tmpfs would hide O_DIRECT).
//! The open benchmark also prints the index's heap memory per live key, measured with a
//! counting allocator.

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use toykv::{Options, Store};

mod common;
use common::counting::{self, Counting};
use common::{SLOTS, VALUE, data_dir, filled, order};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Puts of 256-byte values into a fresh store each, which grows during the measurement
/// (criterion runs a few million iterations), flushes included.
fn put(c: &mut Criterion) {
    let mut g = c.benchmark_group("put");
    g.throughput(Throughput::Elements(1));
    let dir = data_dir("put-seq");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let mut k = 0u64;
    g.bench_function("256B sequential keys", |b| {
        b.iter(|| {
            store.put(k, VALUE).unwrap();
            k += 1;
        })
    });
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);

    let dir = data_dir("put-random");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    g.bench_function("256B random keys", |b| {
        b.iter(|| store.put(rng.random::<u64>(), VALUE).unwrap())
    });
    println!("random-key store held {} keys at the end", store.len());
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn get(c: &mut Criterion) {
    // 3 sections: keys of the first two are in .v files, the rest in the buffer.
    let n = 2 * SLOTS + SLOTS / 2;
    let dir = filled("get", n);
    let uncached = || Store::open_with(&dir, Options::new().cache_bytes(0)).unwrap();
    let store = uncached();
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    // Which keys are where: record order equals slot order here (no deletes, no overwrites).
    let (mut in_buffer, mut in_values) = (Vec::new(), Vec::new());
    for (i, k) in order(n).enumerate() {
        if i as u64 >= 2 * SLOTS {
            in_buffer.push(k);
        } else {
            in_values.push(k);
        }
    }
    let mut rng = StdRng::seed_from_u64(2);
    g.bench_function("from buffer", |b| {
        b.iter(|| {
            let k = in_buffer[rng.random_range(0..in_buffer.len())];
            store.get(k).unwrap().unwrap()
        })
    });
    g.bench_function("O_DIRECT from value section", |b| {
        b.iter(|| {
            let k = in_values[rng.random_range(0..in_values.len())];
            store.get(k).unwrap().unwrap()
        })
    });
    // The same directory with the default read cache: 4096 keys of the value sections, read
    // twice first so they are cached (and marked used), then read at random.
    drop(store);
    let store = Store::open(&dir).unwrap();
    let hot = &in_values[..4096];
    for &k in hot.iter().chain(hot) {
        store.get(k).unwrap().unwrap();
    }
    let misses = store.stats().cache_misses;
    assert_eq!(misses, hot.len() as u64);
    g.bench_function("hot set from the cache", |b| {
        b.iter(|| {
            let k = hot[rng.random_range(0..hot.len())];
            store.get(k).unwrap().unwrap()
        })
    });
    assert_eq!(
        store.stats().cache_misses,
        misses,
        "a hot key left the cache"
    );
    g.finish();
    drop(store);
    let store = uncached();

    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(100));
    g.bench_function("100 keys from a random start", |b| {
        b.iter(|| {
            let start = rng.random_range(0..n - 100);
            let got = store.scan(start..).take(100).count();
            assert_eq!(got, 100);
        })
    });
    g.finish();
}

/// Opens the store at `dir` once and prints heap bytes per live key (the index dominates).
fn report_memory(dir: &Path, n: u64) {
    let before = counting::live();
    let store = Store::open(dir).unwrap();
    let after = counting::live();
    assert_eq!(store.len() as u64, n);
    println!(
        "open {n} records: heap after open {:.1} MiB = {:.1} bytes per live key",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / n as f64
    );
}

fn open(c: &mut Criterion) {
    let mut sizes = vec![1_000_000u64];
    if std::env::var("TOYKV_BENCH_BIG").as_deref() != Ok("0") {
        sizes.push(10_000_000);
    }
    let mut g = c.benchmark_group("open");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for n in sizes {
        let dir = filled(&format!("open-{n}"), n);
        report_memory(&dir, n);
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("rebuild {n} records"), |b| {
            b.iter_batched(
                || (),
                |()| Store::open(&dir).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, put, get, open);
criterion_main!(benches);
