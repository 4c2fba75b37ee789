//! The engine at scale: puts from 1–8 threads, put latency across bank write-outs, each
//! durability mode, cold gets from 16 threads against fio at iodepth 16, `get_many` from one
//! thread against fio with io_uring at iodepth 64, and garbage collection (space after 10×
//! overwrites, open time before and after).
//!
//! `cargo bench --bench scale` runs everything; `cargo bench --bench scale -- put` (or
//! `latency`, `durability`, `cold`, `many`, `gc`) runs one part; `-- huge` runs the 100 M-key
//! scale run and `-- open` times opens of a kept store of `OPEN_KEYS` records (both only when
//! named). Sizes shrink with `SCALE_QUICK=1`.
//! Figures go to stdout, one line each, and into `BENCHMARKS.md` by hand.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{VALUE, data_dir};
use toykv::{Durability, Options, Store};

fn quick() -> bool {
    std::env::var_os("SCALE_QUICK").is_some()
}

fn fresh(name: &str, opts: Options) -> (std::path::PathBuf, Store) {
    let dir = data_dir(name);
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_with(&dir, opts).expect("open");
    (dir, store)
}

/// Aggregate puts per second with `threads` threads writing `total` keys, each thread its own
/// sequential range (so the threads never touch the same key).
fn put_rate(threads: u64, total: u64, opts: Options, random: bool) -> f64 {
    let (dir, store) = fresh("scale-put", opts);
    let store = Arc::new(store);
    let per = total / threads;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..per {
                    let k = if random {
                        (t * per + i).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    } else {
                        t * per + i
                    };
                    store.put(k, VALUE).expect("put");
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    (per * threads) as f64 / secs
}

fn put() {
    let total = if quick() { 400_000 } else { 10_000_000 };
    // `PUT_KEYS=random` (or `sequential`) and `PUT_THREADS=2` narrow the run.
    let keys = std::env::var("PUT_KEYS").unwrap_or_default();
    let threads: Vec<u64> = std::env::var("PUT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(vec![1, 2, 4, 8], |t| vec![t]);
    for random in [false, true] {
        if (keys == "random" && !random) || (keys == "sequential" && random) {
            continue;
        }
        for &threads in &threads {
            let mut opts = Options::new().durability(Durability::None).gc(false);
            if let Some(n) = std::env::var("PUT_SHARDS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                opts = opts.shards(n);
            }
            let rate = put_rate(threads, total, opts, random);
            let keys = if random { "random" } else { "sequential" };
            println!(
                "put durability=none threads={threads} keys={keys} total={total}: {:.2} M/s",
                rate / 1e6
            );
        }
    }
}

/// Percentiles of per-put latency over enough puts to cross many bank write-outs.
fn latency() {
    let per = if quick() { 200_000 } else { 2_000_000 };
    for threads in [1u64, 4] {
        let opts = Options::new().durability(Durability::None).gc(false);
        let (dir, store) = fresh("scale-latency", opts);
        let store = Arc::new(store);
        let mut all: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let store = store.clone();
                    s.spawn(move || {
                        let mut lat = Vec::with_capacity(per as usize);
                        for i in 0..per {
                            let t0 = Instant::now();
                            store.put(t * per + i, VALUE).expect("put");
                            lat.push(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                        }
                        lat
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        all.sort_unstable();
        let st = store.stats();
        let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1e3;
        println!(
            "put latency threads={threads} puts={} flushes={} stalls={}: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            all.len(),
            st.flushes,
            st.stalls,
            p(0.5),
            p(0.99),
            p(0.999),
            p(1.0)
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn durability() {
    let secs = if quick() { 1.0 } else { 5.0 };
    let modes = [
        Durability::None,
        Durability::Periodic(Duration::from_secs(1)),
        Durability::Always,
    ];
    for mode in modes {
        for threads in [1u64, 4, 16] {
            let opts = Options::new().durability(mode).gc(false);
            let (dir, store) = fresh("scale-durability", opts);
            let store = Arc::new(store);
            let done = AtomicU64::new(0);
            let t0 = Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    let (store, done) = (store.clone(), &done);
                    s.spawn(move || {
                        let mut i = 0u64;
                        while t0.elapsed().as_secs_f64() < secs {
                            store.put((t << 40) | i, VALUE).expect("put");
                            i += 1;
                        }
                        done.fetch_add(i, Ordering::Relaxed);
                    });
                }
            });
            let el = t0.elapsed().as_secs_f64();
            let n = done.load(Ordering::Relaxed);
            let st = store.stats();
            // With `always` the flushes are journal commits; shard syncs are checkpoints.
            let flushes = (st.syncs + st.journal_commits).max(1);
            println!(
                "durability={mode} writers={threads}: {:.0} puts/s ({} flushes: {} journal commits, {} checkpoints, {} shard syncs; {:.1} puts per flush)",
                n as f64 / el,
                flushes,
                st.journal_commits,
                st.journal_checkpoints,
                st.syncs,
                n as f64 / flushes as f64
            );
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// fio's random-read IOPS at `iodepth` with `engine` on a 1 GiB file beside the data.
fn fio(dir: &Path, engine: &str, iodepth: u32, secs: u32) -> Option<f64> {
    let file = dir.join("fio.dat");
    let out = Command::new("fio")
        .args(["--name=cold", "--rw=randread", "--bs=4k", "--direct=1"])
        .arg(format!("--ioengine={engine}"))
        .arg(format!("--iodepth={iodepth}"))
        .arg("--size=1g")
        .arg(format!("--runtime={secs}"))
        .args(["--time_based", "--output-format=terse", "--terse-version=3"])
        .arg(format!("--filename={}", file.display()))
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(';').nth(7)?.parse().ok()
}

fn cold() {
    let n: u64 = if quick() { 300_000 } else { 4_000_000 };
    let dir = common::filled(&format!("scale-cold-{n}"), n);
    let opts = Options::new().cache_bytes(0).gc(false);
    let store = Arc::new(Store::open_with(&dir, opts).expect("open"));
    let secs = if quick() { 2.0 } else { 10.0 };
    let threads = 16u64;
    let done = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (store, done) = (store.clone(), &done);
            s.spawn(move || {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut i = 0u64;
                while t0.elapsed().as_secs_f64() < secs {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let v = store.get(x % n).expect("get");
                    assert!(v.is_some());
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
            });
        }
    });
    let gets = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    drop(store);
    let parent = dir.parent().unwrap_or(&dir).to_path_buf();
    match fio(&parent, "libaio", 16, secs as u32) {
        Some(iops) => println!(
            "cold get threads=16 keys={n}: {gets:.0} gets/s; fio randread 4k iodepth=16: {iops:.0} IOPS; ratio {:.0}%",
            100.0 * gets / iops
        ),
        None => println!("cold get threads=16 keys={n}: {gets:.0} gets/s; fio not available"),
    }
}

/// `get_many` of random keys from one thread, 64 and 1024 keys a call, cache off, against fio
/// with io_uring at iodepth 64 on the same disk, before and after.
fn many() {
    let n: u64 = if quick() { 300_000 } else { 4_000_000 };
    let dir = common::filled(&format!("scale-cold-{n}"), n);
    let parent = dir.parent().unwrap_or(&dir).to_path_buf();
    let secs = if quick() { 2.0 } else { 10.0 };
    let fio_before = fio(&parent, "io_uring", 64, secs as u32);
    let opts = Options::new().cache_bytes(0).gc(false);
    let store = Store::open_with(&dir, opts).expect("open");
    let path = store.stats().read_path;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for batch in [64usize, 1024] {
        let mut keys = vec![0u64; batch];
        let mut values = 0u64;
        let cpu0 = cpu_secs();
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < secs {
            for k in keys.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *k = x % n;
            }
            for r in store.get_many(&keys) {
                assert!(r.expect("get_many").is_some());
            }
            values += batch as u64;
        }
        let wall = t0.elapsed().as_secs_f64();
        let rate = values as f64 / wall;
        let busy = 100.0 * (cpu_secs() - cpu0) / wall;
        println!(
            "get_many({batch}) 1 thread keys={n} read_path={path}: {rate:.0} values/s, \
             CPU {busy:.0}% of one core (user + system)"
        );
    }
    drop(store);
    let fio_after = fio(&parent, "io_uring", 64, secs as u32);
    match (fio_before, fio_after) {
        (Some(a), Some(b)) => {
            println!("fio randread 4k io_uring iodepth=64: {a:.0} IOPS before, {b:.0} IOPS after")
        }
        _ => println!("fio not available"),
    }
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the 12th
    // and 13th, in clock ticks of 1/100 s.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// Bytes of `.v`, `.k` and other files under `dir`.
fn kinds(dir: &Path) -> [u64; 3] {
    let mut out = [0u64; 3];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let sub = kinds(&e.path());
            (0..3).for_each(|i| out[i] += sub[i]);
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let i = if name.ends_with(".v") {
            0
        } else if name.ends_with(".k") {
            1
        } else {
            2
        };
        out[i] += m.len();
    }
    out
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn gc() {
    let live: u64 = if quick() { 200_000 } else { 2_000_000 };
    let rounds = 10;
    let opts = || Options::new().durability(Durability::None);
    let (dir, store) = fresh("scale-gc", opts());
    for k in 0..live {
        store.put(k, VALUE).expect("put");
    }
    // Live data: each live key's value slot and key record.
    let base = live * (toykv::format::SLOT_SIZE + toykv::format::RECORD_SIZE) as u64;
    let mut x = 7u64;
    let t0 = Instant::now();
    let mut peak = 0u64;
    for r in 1..=rounds {
        for _ in 0..live {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            store.put(x % live, VALUE).expect("put");
        }
        let b = dir_bytes(&dir);
        peak = peak.max(b);
        let [v, k, other] = kinds(&dir);
        let mib = |x: u64| x as f64 / 1048576.0;
        println!(
            "gc overwrite round {r}: dir {:.0} MiB = {:.2}x live data (values {:.0}, keys {:.0}, buffers and other {:.0} MiB)",
            mib(b),
            b as f64 / base as f64,
            mib(v),
            mib(k),
            mib(other)
        );
    }
    let el = t0.elapsed().as_secs_f64();
    let st = store.stats();
    println!(
        "gc {rounds}x overwrites of {live} keys: {:.2} M puts/s with collection running; peak dir {:.2}x live; moved {} values, removed {} value and {} key sections",
        (rounds * live) as f64 / el / 1e6,
        peak as f64 / base as f64,
        st.gc_moved,
        st.gc_sections,
        st.gc_key_sections
    );
    store.close().expect("close");

    // Open time with the history, then after collection.
    let (dir2, hist) = fresh("scale-gc-history", opts().gc(false));
    for k in 0..live {
        hist.put(k, VALUE).expect("put");
    }
    for _ in 0..rounds * live {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        hist.put(x % live, VALUE).expect("put");
    }
    hist.close().expect("close");
    let t = Instant::now();
    let s = Store::open_with(&dir2, opts().gc(false)).expect("open");
    let before = t.elapsed();
    let records = s.stats().records;
    s.gc().expect("gc");
    let after_bytes = dir_bytes(&dir2);
    s.close().expect("close");
    let t = Instant::now();
    let s = Store::open_with(&dir2, opts().gc(false)).expect("open");
    let after = t.elapsed();
    println!(
        "open with {records} records of history: {:.0} ms; after gc ({} records, dir {:.2}x live): {:.0} ms",
        before.as_secs_f64() * 1e3,
        s.stats().records,
        after_bytes as f64 / base as f64,
        after.as_secs_f64() * 1e3
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// Resident anonymous memory of this process (heap: the index, the cache, buffers in
/// flight), from `/proc/self/status`; file pages mapped from key sections are not in it.
fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Key `i` of the scale run: a bijection of `0..2^64`, so keys are random-looking and
/// distinct.
fn scattered(i: u64) -> u64 {
    (i ^ 0x5DEE_CE66_D1CE_4E5B).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The scale run (issue 16): `HUGE_KEYS` (default 100 M) random keys of 256-byte values,
/// durability `none`, two writer threads; reopen; 10 % overwritten with collection on, then
/// a full collection; reopen; `toykv check` (the library function the command runs; about
/// 20 minutes at 100 M keys; `HUGE_CHECK=0` skips it). Writes
/// the load rate over time to `target/bench-data/huge-load.csv` (plotted by
/// `benches/scale_plot.py`) and removes the data at the end.
fn huge() {
    let n: u64 = std::env::var("HUGE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 2_000_000 } else { 100_000_000 });
    let opts = || Options::new().durability(Durability::None);
    let anon0 = rss_anon();
    let (dir, store) = fresh("scale-huge", opts());
    let store = Arc::new(store);
    let done = AtomicU64::new(0);
    let threads = 2u64;
    let mut csv = String::from("seconds,keys,rate_per_s,rss_anon_bytes,index_bytes\n");
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (store, done) = (store.clone(), &done);
            s.spawn(move || {
                let (mut i, mut count) = (t, 0);
                while i < n {
                    store.put(scattered(i), VALUE).expect("put");
                    i += threads;
                    count += 1;
                    if count == 65_536 {
                        done.fetch_add(count, Ordering::Relaxed);
                        count = 0;
                    }
                }
                done.fetch_add(count, Ordering::Relaxed);
            });
        }
        let (mut last, mut last_t) = (0u64, 0.0f64);
        loop {
            std::thread::sleep(Duration::from_secs(2).min(Duration::from_millis(n / 1000)));
            let now = t0.elapsed().as_secs_f64();
            let d = done.load(Ordering::Relaxed).min(n);
            let rate = (d - last) as f64 / (now - last_t);
            let index = store.stats().index_bytes;
            csv.push_str(&format!("{now:.1},{d},{rate:.0},{},{index}\n", rss_anon()));
            println!(
                "huge load: {now:6.1} s {:6.1} M keys, {:.2} M puts/s, anon {:.2} GiB",
                d as f64 / 1e6,
                rate / 1e6,
                rss_anon() as f64 / (1u64 << 30) as f64
            );
            (last, last_t) = (d, now);
            if d >= n {
                break;
            }
        }
    });
    let load = t0.elapsed().as_secs_f64();
    let _ = std::fs::write(data_dir("huge-load.csv"), &csv);
    let st = store.stats();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "huge load of {} keys: {:.1} s = {:.2} M puts/s; index {:.2} B/key ({:.2} GiB), resident anonymous memory {:.2} B/key ({:.2} GiB); disk {:.1} GiB ({:.2}x the values)",
        st.keys,
        load,
        n as f64 / load / 1e6,
        st.index_bytes as f64 / st.keys as f64,
        gib(st.index_bytes),
        (rss_anon() - anon0) as f64 / st.keys as f64,
        gib(rss_anon() - anon0),
        gib(dir_bytes(&dir)),
        dir_bytes(&dir) as f64 / (n * 256) as f64
    );
    let Ok(store) = Arc::try_unwrap(store) else {
        panic!("writers still hold the store");
    };
    store.close().expect("close");

    let reopen = |what: &str| {
        let anon = rss_anon();
        let t = Instant::now();
        let s = Store::open_with(&dir, opts()).expect("reopen");
        let secs = t.elapsed().as_secs_f64();
        let st = s.stats();
        println!(
            "huge reopen ({what}): {:.2} s for {} records = {:.1} M records/s; {} live keys; index {:.2} B/key, resident anonymous memory {:.2} B/key",
            secs,
            st.records,
            st.records as f64 / secs / 1e6,
            st.keys,
            st.index_bytes as f64 / st.keys as f64,
            rss_anon().saturating_sub(anon) as f64 / st.keys as f64
        );
        s
    };
    let s = reopen("after the load");

    // 10 % overwritten, random keys among those loaded, collection on.
    let over = n / 10;
    let disk0 = dir_bytes(&dir);
    let t = Instant::now();
    std::thread::scope(|sc| {
        for t in 0..threads {
            let s = &s;
            sc.spawn(move || {
                let mut x = 0x2545_F491_4F6C_DD1Du64 ^ t;
                for _ in 0..over / threads {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    s.put(scattered(x % n), VALUE).expect("put");
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    let st = s.stats();
    println!(
        "huge overwrite of {over} keys: {:.1} s = {:.2} M puts/s; disk {:.1} -> {:.1} GiB; collection moved {} values ({} sections)",
        secs,
        over as f64 / secs / 1e6,
        gib(disk0),
        gib(dir_bytes(&dir)),
        st.gc_moved,
        st.gc_sections
    );
    let before = dir_bytes(&dir);
    let t = Instant::now();
    s.gc().expect("gc");
    let st = s.stats();
    println!(
        "huge full collection: {:.1} s; disk {:.1} -> {:.1} GiB; moved {} values in all, {} value sections removed; write amplification (values written / values put) {:.2}",
        t.elapsed().as_secs_f64(),
        gib(before),
        gib(dir_bytes(&dir)),
        st.gc_moved,
        st.gc_sections,
        (n + over + st.gc_moved) as f64 / (n + over) as f64
    );
    s.close().expect("close");
    let s = reopen("after the overwrites and collection");
    s.close().expect("close");
    if std::env::var("HUGE_CHECK").is_ok_and(|v| v == "0") {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let t = Instant::now();
    let report = toykv::admin::check(&dir).expect("check");
    println!(
        "huge check: {:.1} s, {}",
        t.elapsed().as_secs_f64(),
        if report.problems.is_empty() {
            "no problem".to_string()
        } else {
            format!("{} problems: {:?}", report.problems.len(), report.problems)
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Open time of a store of `OPEN_KEYS` (default 20 M) records made once and kept: five
/// opens with a warm page cache, each timed. The keys are `0..n` ([`common::filled`]), or
/// with `OPEN_SCATTERED=1` the huge run's keys spread over all 64 bits, put by two threads.
fn open() {
    let n: u64 = std::env::var("OPEN_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 1_000_000 } else { 20_000_000 });
    let dir = if std::env::var("OPEN_SCATTERED").is_ok_and(|v| v == "1") {
        scattered_store(n)
    } else {
        common::filled(&format!("scale-open-{n}"), n)
    };
    for _ in 0..5 {
        let t = Instant::now();
        let s = Store::open_with(&dir, Options::new().gc(false)).expect("open");
        let secs = t.elapsed().as_secs_f64();
        let records = s.stats().records;
        println!(
            "open of {records} records: {secs:.2} s = {:.1} M records/s",
            records as f64 / secs / 1e6
        );
        s.close().expect("close");
    }
}

/// A store of `n` keys [`scattered`] over all 64 bits, put by two threads at durability
/// `none`; made once and kept.
fn scattered_store(n: u64) -> std::path::PathBuf {
    let dir = data_dir(&format!("scale-open-scattered-{n}"));
    let done = dir.join("FILLED");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let opts = Options::new().durability(Durability::None).gc(false);
    let store = Store::open_with(&dir, opts).expect("open");
    std::thread::scope(|s| {
        for t in 0..2 {
            let store = &store;
            s.spawn(move || {
                for i in (t..n).step_by(2) {
                    store.put(scattered(i), VALUE).expect("put");
                }
            });
        }
    });
    store.close().expect("close");
    std::fs::write(&done, b"").expect("mark");
    dir
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    println!(
        "machine: {} cores; shards per store: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        toykv::default_shards()
    );
    if run("put") {
        put();
    }
    if run("latency") {
        latency();
    }
    if run("durability") {
        durability();
    }
    if run("cold") {
        cold();
    }
    if run("many") {
        many();
    }
    if run("gc") {
        gc();
    }
    if only.iter().any(|o| o == "open") {
        open();
    }
    // Not in a plain run: it takes about ten minutes and 33 GB of disk.
    if only.iter().any(|o| o == "huge") {
        huge();
    }
}
