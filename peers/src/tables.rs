//! Markdown tables from the JSON reports the children wrote: per workload throughput and p99
//! with toykv's ratio to each store, the load table (time, size on disk, peak memory), and
//! the hot-get table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;
use toykv::ycsb::{DbResult, Workload};

/// One report file, the fields the tables use.
struct Row {
    store: String,
    workload: String,
    threads: u64,
    throughput: f64,
    runtime_ms: f64,
    records: u64,
    /// `(op, p50, p99)` per operation type.
    ops: Vec<(String, f64, f64)>,
    disk_bytes: f64,
    peak_rss_kib: f64,
    errors: u64,
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn read_rows(dir: &Path, hot: bool) -> DbResult<Vec<Row>> {
    let mut rows = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| n.starts_with("hot-") == hot)
        })
        .collect();
    paths.sort();
    for path in paths {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let ops = v
            .get("ops")
            .and_then(Value::as_array)
            .map(|ops| {
                ops.iter()
                    .map(|o| {
                        let op = o.get("op").and_then(Value::as_str).unwrap_or("?");
                        (op.to_string(), num(o, "p50_us"), num(o, "p99_us"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.push(Row {
            store: text("store"),
            workload: text("workload"),
            threads: num(&v, "threads") as u64,
            throughput: num(&v, "throughput"),
            runtime_ms: num(&v, "runtime_ms"),
            records: num(&v, "records") as u64,
            ops,
            disk_bytes: num(&v, "disk_bytes"),
            peak_rss_kib: num(&v, "peak_rss_kib"),
            errors: num(&v, "errors") as u64,
        });
    }
    Ok(rows)
}

/// Stores in a fixed order: toykv first, then as listed in `stores::ALL`.
fn order(store: &str) -> usize {
    crate::stores::ALL
        .iter()
        .position(|s| *s == store)
        .unwrap_or(usize::MAX)
}

fn worst_p99(row: &Row) -> f64 {
    row.ops.iter().map(|o| o.2).fold(0.0, f64::max)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn describe(w: &str) -> &'static str {
    match w {
        "a" => "50% read, 50% update, zipfian",
        "b" => "95% read, 5% update, zipfian",
        "c" => "100% read, zipfian",
        "d" => "95% read, 5% insert, latest",
        "e" => "95% scan (1–100), 5% insert, zipfian",
        "f" => "50% read, 50% read-modify-write, zipfian",
        _ => "",
    }
}

/// The YCSB summary: a load table, then one table per workload.
pub fn ycsb(dir: &Path) -> DbResult<String> {
    let mut rows = read_rows(dir, false)?;
    rows.sort_by_key(|r| (r.workload.clone(), order(&r.store)));
    let mut by_workload: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        by_workload.entry(r.workload.clone()).or_default().push(r);
    }
    let mut s = String::new();
    if let Some(first) = rows.first() {
        let _ = writeln!(
            s,
            "{} records of 8-byte keys and 256-byte values, {} client threads. Durability: {}.\n",
            first.records,
            first.threads,
            crate::stores::DURABILITY
        );
    }
    let _ = writeln!(s, "### Load\n");
    let _ = writeln!(
        s,
        "| store | load time (s) | inserts/s | on disk after load (MiB) | peak RSS (MiB) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for r in by_workload.get("load").into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.0} | {:.1} | {:.1} |",
            r.store,
            r.runtime_ms / 1000.0,
            r.throughput,
            r.disk_bytes / (1 << 20) as f64,
            r.peak_rss_kib / 1024.0
        );
    }
    for (w, rs) in &by_workload {
        if w == "load" {
            continue;
        }
        let toykv = rs.iter().find(|r| r.store == "toykv");
        let _ = writeln!(s, "\n### Workload {} ({})\n", w.to_uppercase(), describe(w));
        let _ = writeln!(
            s,
            "| store | ops/s | p99 per op (µs) | toykv ÷ store, ops/s | toykv ÷ store, worst p99 |"
        );
        let _ = writeln!(s, "|---|---:|---|---:|---:|");
        for r in rs {
            let p99: Vec<String> = r
                .ops
                .iter()
                .map(|(op, _, p99)| format!("{} {p99:.1}", op.to_lowercase()))
                .collect();
            let errors = if r.errors > 0 {
                format!(" ({} errors)", r.errors)
            } else {
                String::new()
            };
            let (tr, pr) = match toykv {
                Some(t) => (
                    ratio(t.throughput, r.throughput),
                    ratio(worst_p99(t), worst_p99(r)),
                ),
                None => ("–".into(), "–".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {:.0}{errors} | {} | {tr} | {pr} |",
                r.store,
                r.throughput,
                p99.join(", ")
            );
        }
    }
    Ok(s)
}

/// The hot-get summary: gets/s and latency per store and thread count.
pub fn hot(dir: &Path) -> DbResult<String> {
    let mut rows = read_rows(dir, true)?;
    rows.retain(|r| r.workload.starts_with("hot-"));
    rows.sort_by_key(|r| (r.threads, order(&r.store)));
    let mut s = String::new();
    let what = Workload::uniform_reads();
    if let Some(first) = rows.first() {
        let _ = writeln!(
            s,
            "{} records loaded, then uniform random gets (workload '{}') after a warm-up of eight gets per key. \
             Durability: {}.\n",
            first.records,
            what.name,
            crate::stores::DURABILITY
        );
    }
    let _ = writeln!(
        s,
        "| store | threads | gets/s | p50 (µs) | p99 (µs) | toykv ÷ store, gets/s | peak RSS (MiB) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let toykv = rows
            .iter()
            .find(|t| t.store == "toykv" && t.threads == r.threads);
        let (p50, p99) = r.ops.first().map_or((0.0, 0.0), |o| (o.1, o.2));
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {p50:.2} | {p99:.2} | {} | {:.1} |",
            r.store,
            r.threads,
            r.throughput,
            toykv.map_or("–".into(), |t| ratio(t.throughput, r.throughput)),
            r.peak_rss_kib / 1024.0
        );
    }
    Ok(s)
}
