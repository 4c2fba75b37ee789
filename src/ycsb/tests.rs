//! Unit tests of the driver: key hash vectors, the generators' distributions, workload
//! mixes, the YCSB output format and JSON, and a tiny end-to-end run on the library.

use std::collections::HashMap;

use super::generator::{Latest, Rng, ScrambledZipfian, Zipfian, fnv64};
use super::report::Report;
use super::workload::{Chooser, Inserts, MAX_SCAN, OpKind, Workload, parse_list};
use super::{LibDb, Settings, Target, load, run};

#[test]
fn fnv64_matches_vectors_worked_out_from_the_definition() {
    // FNV-1a 64 over the 8 little-endian bytes, then the sign bit cleared (YCSB's abs).
    // Worked out with an independent implementation of the definition (Python big ints).
    assert_eq!(fnv64(0), 0x5738_07cd_d7e5_c63b);
    assert_eq!(fnv64(1), 0x7632_ced6_e2d5_105c);
    assert_eq!(fnv64(2), 0x1942_79bb_c207_31f9);
    assert_eq!(fnv64(1000), 0x529c_dc7d_a058_9924);
    // One byte by hand: (offset ^ 0x01) * prime, then seven zero bytes.
    let mut h: u64 = 0xCBF2_9CE4_8422_2325 ^ 1;
    h = h.wrapping_mul(0x100_0000_01B3);
    for _ in 0..7 {
        h = h.wrapping_mul(0x100_0000_01B3);
    }
    let abs = (h as i64).unsigned_abs();
    assert_eq!(fnv64(1), abs);
    assert!((0..10_000).all(|n| fnv64(n) < 1 << 63));
}

#[test]
fn rng_ranges() {
    let mut rng = Rng::new(7);
    for _ in 0..10_000 {
        let f = rng.next_f64();
        assert!((0.0..1.0).contains(&f));
        assert!(rng.below(10) < 10);
        assert!((1..=100).contains(&rng.between(1, 100)));
    }
}

fn histogram(mut draw: impl FnMut() -> u64, n: usize) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts.entry(draw()).or_default() += 1;
    }
    counts
}

#[test]
fn zipfian_item_zero_is_most_popular_and_ranks_decrease() {
    let mut rng = Rng::new(1);
    let mut z = Zipfian::new(0, 1000);
    let counts = histogram(|| z.next(&mut rng), 200_000);
    let c = |i: u64| counts.get(&i).copied().unwrap_or(0);
    assert!(counts.keys().all(|&k| k < 1000));
    let top = counts.values().copied().max().unwrap_or(0);
    assert_eq!(c(0), top, "item 0 is the most frequent");
    // Popularity falls with rank: each decade of ranks is drawn less than the one before.
    let decade = |lo: u64, hi: u64| (lo..hi).map(c).sum::<usize>() as f64 / (hi - lo) as f64;
    assert!(c(0) > c(1) && c(1) > c(2) && c(2) > c(9));
    assert!(decade(1, 10) > decade(10, 100) && decade(10, 100) > decade(100, 1000));
    // θ = 0.99: item 0 gets about 1/ζ(1000) ≈ 13% of the draws.
    let share = c(0) as f64 / 200_000.0;
    assert!((0.11..0.16).contains(&share), "item 0 share {share}");
}

#[test]
fn zipfian_grows_its_item_count() {
    let mut rng = Rng::new(2);
    let mut z = Zipfian::new(0, 10);
    assert!((0..1000).all(|_| z.next(&mut rng) < 10));
    assert!((0..1000).all(|_| z.next_over(&mut rng, 500) < 500));
    assert_eq!(z.items(), 500);
    // Grown incrementally, it draws like one built for 500 items.
    let fresh = Zipfian::new(0, 500);
    let (mut a, mut b) = (Rng::new(3), Rng::new(3));
    let mut grown = z.clone();
    let mut fresh = fresh.clone();
    assert!((0..1000).all(|_| grown.next(&mut a) == fresh.next(&mut b)));
}

#[test]
fn scrambled_zipfian_covers_the_range_and_is_skewed() {
    let mut rng = Rng::new(4);
    let mut z = ScrambledZipfian::new(100);
    let counts = histogram(|| z.next(&mut rng), 100_000);
    assert!(counts.keys().all(|&k| k < 100));
    assert_eq!(counts.len(), 100, "every item is drawn");
    let mut sorted: Vec<usize> = counts.values().copied().collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert!(
        sorted[0] > 4 * sorted[99],
        "skewed: {} vs {}",
        sorted[0],
        sorted[99]
    );
    // (Less skewed than the plain zipfian: the 10^10 draws fold onto 100 items.) The most
    // popular item is not simply item 0: popularity is scattered by the hash.
    let hottest = counts.iter().max_by_key(|(_, c)| **c).map(|(k, _)| *k);
    assert_eq!(hottest, Some(fnv64(0) % 100));
}

#[test]
fn latest_skews_to_the_most_recent_records() {
    let mut rng = Rng::new(5);
    let mut l = Latest::new(999);
    let counts = histogram(|| l.next(&mut rng, 999), 100_000);
    assert!(counts.keys().all(|&k| k <= 999));
    let c = |i: u64| counts.get(&i).copied().unwrap_or(0);
    assert!(c(999) > c(998) && c(998) > c(990));
    let recent: usize = (900..=999).map(c).sum();
    assert!(recent > 60_000, "the newest 10% get most draws: {recent}");
    // As records are added the newest one stays the most popular.
    let counts = histogram(|| l.next(&mut rng, 1999), 50_000);
    let top = counts.iter().max_by_key(|(_, c)| **c).map(|(k, _)| *k);
    assert_eq!(top, Some(1999));
}

#[test]
fn workloads_have_ycsb_mixes() {
    for w in "abcdef".chars() {
        let wl = Workload::get(w).unwrap();
        assert!((wl.mix.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    assert!(Workload::get('g').is_none());
    assert_eq!(parse_list("a,b,f").unwrap().len(), 3);
    assert!(parse_list("a,x").is_err());
    let mix = |w: char, kinds: usize| {
        let mut rng = Rng::new(6);
        let inserts = Inserts::new(1000);
        let mut ch = Chooser::new(Workload::get(w).unwrap(), 1000, 100_000);
        let mut seen = [0usize; 5];
        for _ in 0..100_000 {
            let op = ch.next(&mut rng, &inserts);
            if op.kind == OpKind::Insert {
                inserts.ack();
            }
            match op.kind {
                OpKind::Scan => assert!((1..=MAX_SCAN).contains(&op.len)),
                _ => assert_eq!(op.len, 1),
            }
            seen[op.kind.index()] += 1;
        }
        assert_eq!(seen.iter().filter(|&&n| n > 0).count(), kinds);
        seen
    };
    let a = mix('a', 2);
    assert!((45_000..55_000).contains(&a[OpKind::Read.index()]));
    let e = mix('e', 2);
    assert!((93_000..97_000).contains(&e[OpKind::Scan.index()]));
    let f = mix('f', 2);
    assert!(f[OpKind::ReadModifyWrite.index()] > 45_000);
    mix('c', 1);
    let d = mix('d', 2);
    assert!((3_000..7_000).contains(&d[OpKind::Insert.index()]));
}

#[test]
fn scan_lengths_span_one_to_a_hundred() {
    let mut rng = Rng::new(8);
    let inserts = Inserts::new(100);
    let mut ch = Chooser::new(Workload::get('e').unwrap(), 100, 10_000);
    let lens: Vec<usize> = (0..20_000)
        .map(|_| ch.next(&mut rng, &inserts))
        .filter(|op| op.kind == OpKind::Scan)
        .map(|op| op.len)
        .collect();
    assert_eq!(lens.iter().min(), Some(&1));
    assert_eq!(lens.iter().max(), Some(&MAX_SCAN));
}

#[test]
fn targets_parse() {
    assert_eq!(
        "lib:/tmp/x".parse::<Target>(),
        Ok(Target::Lib("/tmp/x".into()))
    );
    assert_eq!(
        "resp:127.0.0.1:8888".parse::<Target>(),
        Ok(Target::Resp("127.0.0.1:8888".into()))
    );
    assert!("resp:8888".parse::<Target>().is_err());
    assert!("nope".parse::<Target>().is_err());
}

#[test]
fn runs_on_the_library_and_prints_ycsb_format() {
    let tmp = crate::testing::tempdir();
    let db = LibDb::open(tmp.path()).unwrap();
    let connect = move || -> super::DbResult<Box<dyn super::Db>> { Ok(Box::new(db.clone())) };
    let settings = Settings {
        records: 500,
        operations: 1000,
        threads: 2,
        progress: false,
        seed: 1,
    };
    let loaded = load(&connect, &settings).unwrap();
    assert_eq!(loaded.operations(), 500);
    let phase = run(&connect, &settings, Workload::get('a').unwrap()).unwrap();
    assert_eq!(phase.operations(), 1000);
    assert_eq!(phase.errors(), 0);
    let read = phase.op(OpKind::Read).unwrap();
    assert_eq!(read.not_found, 0, "every read finds a loaded record");
    assert!(read.min_us <= read.p95_us && read.p95_us <= read.p99_us);
    assert!(read.p99_us <= read.max_us);
    let text = phase.ycsb();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("[OVERALL], RunTime(ms), "));
    assert!(lines[1].starts_with("[OVERALL], Throughput(ops/sec), "));
    for metric in [
        "Operations",
        "AverageLatency(us)",
        "MinLatency(us)",
        "MaxLatency(us)",
        "95thPercentileLatency(us)",
        "99thPercentileLatency(us)",
        "Return=OK",
    ] {
        for op in ["READ", "UPDATE"] {
            let prefix = format!("[{op}], {metric}, ");
            let line = lines.iter().find(|l| l.starts_with(&prefix));
            let value = line.and_then(|l| l[prefix.len()..].parse::<f64>().ok());
            assert!(value.is_some(), "missing or not a number: {prefix}");
        }
    }
    let report = Report {
        store: "toykv".into(),
        target: "lib:\"x\"".into(),
        workload: "a".into(),
        records: 500,
        operations: 1000,
        threads: 2,
        durability: "none".into(),
        phase,
        extra: vec![("disk_bytes".into(), 4096.0)],
    };
    let json = report.to_json();
    assert!(json.starts_with("{\"store\":\"toykv\",\"target\":\"lib:\\\"x\\\"\""));
    assert!(json.contains("\"op\":\"READ\"") && json.contains("\"quantiles\":[[0.5,"));
    assert!(json.ends_with(",\"disk_bytes\":4096}"));
}
