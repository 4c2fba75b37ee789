//! Markdown tables from the JSON reports the children wrote: per workload throughput and p99
//! with toykv's ratio to each store, the load table (time, size on disk, peak memory), and
//! the hot-get table. Stores whose process did not finish (`children.tsv`: timed out, killed)
//! get a row saying so in each table they have no report for, and under a memory limit a
//! table of each store's cgroup limit, peak and limit hits.

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
    cache_bytes: f64,
}

/// One line of `children.tsv` (written by the parent).
struct Child {
    store: String,
    status: String,
    seconds: f64,
    cgroup: String,
    limit: Option<f64>,
    peak: Option<f64>,
    limit_hits: String,
    oom_kills: String,
}

fn read_children(dir: &Path) -> Vec<Child> {
    let Ok(text) = std::fs::read_to_string(dir.join("children.tsv")) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() < 8 {
                return None;
            }
            Some(Child {
                store: f[0].into(),
                status: f[1].into(),
                seconds: f[2].parse().unwrap_or(0.0),
                cgroup: f[3].into(),
                limit: f[4].parse().ok(),
                peak: f[5].parse().ok(),
                limit_hits: f[6].into(),
                oom_kills: f[7].into(),
            })
        })
        .collect()
}

fn mib(n: Option<f64>) -> String {
    n.map_or_else(|| "–".into(), |n| format!("{:.1}", n / (1 << 20) as f64))
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
            cache_bytes: num(&v, "cache_bytes"),
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

/// A row for a store that has no report for a phase because its process did not finish.
enum Line<'a> {
    Report(&'a Row),
    Missing(&'a Child),
}

impl Line<'_> {
    fn store(&self) -> &str {
        match self {
            Line::Report(r) => &r.store,
            Line::Missing(c) => &c.store,
        }
    }
}

/// The YCSB summary: a load table, then one table per workload (each of `workloads`, and
/// any other the reports have), then, under a memory limit, the limit table.
pub fn ycsb(dir: &Path, workloads: &[String]) -> DbResult<String> {
    let mut rows = read_rows(dir, false)?;
    rows.sort_by_key(|r| (r.workload.clone(), order(&r.store)));
    let children = read_children(dir);
    let mut by_workload: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for w in std::iter::once("load").chain(workloads.iter().map(String::as_str)) {
        by_workload.entry(w.to_string()).or_default();
    }
    for r in &rows {
        by_workload
            .entry(r.workload.clone())
            .or_default()
            .push(Line::Report(r));
    }
    for lines in by_workload.values_mut() {
        for c in children.iter().filter(|c| c.status != "ok") {
            if !lines.iter().any(|l| l.store() == c.store) {
                lines.push(Line::Missing(c));
            }
        }
        lines.sort_by_key(|l| order(l.store()));
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
        if first.cache_bytes > 0.0 {
            let _ = writeln!(
                s,
                "Caches: {} MiB in every store that has one (toykv's read cache, redb, fjall, \
                 sled, RocksDB's block cache); LMDB has only the page cache.\n",
                mib(Some(first.cache_bytes))
            );
        }
    }
    let limited: Vec<&Child> = children.iter().filter(|c| c.limit.is_some()).collect();
    if let Some(c) = limited.first() {
        let _ = writeln!(
            s,
            "Each store's process ran in its own memory cgroup ({}) limited to {} MiB, page \
             cache included.\n",
            c.cgroup,
            mib(c.limit)
        );
    }
    let _ = writeln!(s, "### Load\n");
    let _ = writeln!(
        s,
        "| store | load time (s) | inserts/s | on disk after load (MiB) | peak RSS (MiB) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for line in by_workload.get("load").into_iter().flatten() {
        let r = match line {
            Line::Report(r) => r,
            Line::Missing(c) => {
                let _ = writeln!(s, "| {} | {} | – | – | – |", c.store, c.status);
                continue;
            }
        };
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
        let toykv = rs.iter().find_map(|l| match l {
            Line::Report(r) if r.store == "toykv" => Some(*r),
            _ => None,
        });
        let _ = writeln!(s, "\n### Workload {} ({})\n", w.to_uppercase(), describe(w));
        let _ = writeln!(
            s,
            "| store | ops/s | p99 per op (µs) | toykv ÷ store, ops/s | toykv ÷ store, worst p99 |"
        );
        let _ = writeln!(s, "|---|---:|---|---:|---:|");
        for line in rs {
            let r = match line {
                Line::Report(r) => r,
                Line::Missing(c) => {
                    let _ = writeln!(s, "| {} | {} | – | – | – |", c.store, c.status);
                    continue;
                }
            };
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
    if !limited.is_empty() {
        let _ = writeln!(s, "\n### Memory limit\n");
        let _ = writeln!(
            s,
            "| store | outcome | wall time (s) | limit (MiB) | peak incl. page cache (MiB) | limit hits | OOM kills |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
        for c in limited {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {} | {} | {} | {} |",
                c.store,
                c.status,
                c.seconds,
                mib(c.limit),
                mib(c.peak),
                c.limit_hits,
                c.oom_kills
            );
        }
    }
    Ok(s)
}

/// The hot-get summary: gets/s and latency per store and thread count.
pub fn hot(dir: &Path, warmup: u64) -> DbResult<String> {
    let mut rows = read_rows(dir, true)?;
    rows.retain(|r| r.workload.starts_with("hot-"));
    rows.sort_by_key(|r| (r.threads, order(&r.store)));
    let mut s = String::new();
    let what = Workload::uniform_reads();
    if let Some(first) = rows.first() {
        let _ = writeln!(
            s,
            "{} records loaded, then uniform random gets (workload '{}') {}. \
             Durability: {}.\n",
            first.records,
            what.name,
            match warmup {
                0 => "right after the load, no warm-up".to_string(),
                n => format!("after a warm-up of {n} gets per key"),
            },
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
