//! Results: per-operation statistics, YCSB's text output and a JSON form for scripts.
//!
//! YCSB's format, one `[SECTION], metric, value` line each:
//!
//! ```text
//! [OVERALL], RunTime(ms), 1520
//! [OVERALL], Throughput(ops/sec), 65789.47
//! [READ], Operations, 50021
//! [READ], AverageLatency(us), 3.41
//! [READ], MinLatency(us), 0.81
//! [READ], MaxLatency(us), 812.03
//! [READ], 95thPercentileLatency(us), 6.12
//! [READ], 99thPercentileLatency(us), 11.9
//! [READ], Return=OK, 50021
//! ```
//!
//! Latencies are measured in nanoseconds and printed in microseconds with fractions (YCSB
//! prints whole microseconds, too coarse for an in-process store).

use std::fmt::{self, Write as _};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::recorder::Recorder;
use super::workload::OpKind;

/// Quantiles kept for latency-distribution plots.
pub const QUANTILES: [f64; 8] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0];

/// Statistics of one operation type in one phase. Latencies in microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct OpStats {
    /// The operation type.
    pub kind: OpKind,
    /// Operations done.
    pub count: u64,
    /// Mean latency.
    pub avg_us: f64,
    /// Least latency.
    pub min_us: f64,
    /// Greatest latency.
    pub max_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// `Return=OK` count.
    pub ok: u64,
    /// `Return=NOT_FOUND` count.
    pub not_found: u64,
    /// `Return=ERROR` count.
    pub errors: u64,
    /// `(quantile, latency)` at each of [`QUANTILES`].
    pub quantiles: Vec<(f64, f64)>,
}

impl OpStats {
    fn new(kind: OpKind, h: &Histogram<u64>, returns: [u64; 3]) -> OpStats {
        let us = |ns: u64| ns as f64 / 1000.0;
        OpStats {
            kind,
            count: h.len(),
            avg_us: h.mean() / 1000.0,
            min_us: us(h.min()),
            max_us: us(h.max()),
            p50_us: us(h.value_at_quantile(0.5)),
            p95_us: us(h.value_at_quantile(0.95)),
            p99_us: us(h.value_at_quantile(0.99)),
            ok: returns[0],
            not_found: returns[1],
            errors: returns[2],
            quantiles: QUANTILES
                .iter()
                .map(|&q| (q, us(h.value_at_quantile(q))))
                .collect(),
        }
    }
}

/// The result of one phase (the load, or one workload's run).
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// `load` or `run X`.
    pub name: String,
    /// Wall time, including the final flush.
    pub runtime: Duration,
    /// Statistics of each operation type that ran, in YCSB's order.
    pub ops: Vec<OpStats>,
    /// The first error message, if any operation failed.
    pub first_error: Option<String>,
}

impl Phase {
    pub(crate) fn new(name: String, runtime: Duration, rec: Recorder) -> Phase {
        let ops = OpKind::ALL
            .iter()
            .zip(rec.hists.iter().zip(rec.returns))
            .filter(|(_, (h, _))| !h.is_empty())
            .map(|(&kind, (h, returns))| OpStats::new(kind, h, returns))
            .collect();
        Phase {
            name,
            runtime,
            ops,
            first_error: rec.first_error,
        }
    }

    /// Operations done, all types together.
    pub fn operations(&self) -> u64 {
        self.ops.iter().map(|o| o.count).sum()
    }

    /// Failed operations.
    pub fn errors(&self) -> u64 {
        self.ops.iter().map(|o| o.errors).sum()
    }

    /// Operations per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.runtime.as_secs_f64();
        if secs > 0.0 {
            self.operations() as f64 / secs
        } else {
            0.0
        }
    }

    /// The statistics of `kind`, if any ran.
    pub fn op(&self, kind: OpKind) -> Option<&OpStats> {
        self.ops.iter().find(|o| o.kind == kind)
    }

    /// The largest p99 over the operation types: the phase's tail latency.
    pub fn worst_p99_us(&self) -> f64 {
        self.ops.iter().map(|o| o.p99_us).fold(0.0, f64::max)
    }

    /// Writes the phase in YCSB's text format.
    pub fn write_ycsb(&self, out: &mut impl fmt::Write) -> fmt::Result {
        writeln!(out, "[OVERALL], RunTime(ms), {}", self.runtime.as_millis())?;
        writeln!(
            out,
            "[OVERALL], Throughput(ops/sec), {:.2}",
            self.throughput()
        )?;
        for o in &self.ops {
            let name = o.kind.name();
            writeln!(out, "[{name}], Operations, {}", o.count)?;
            writeln!(out, "[{name}], AverageLatency(us), {:.3}", o.avg_us)?;
            writeln!(out, "[{name}], MinLatency(us), {:.3}", o.min_us)?;
            writeln!(out, "[{name}], MaxLatency(us), {:.3}", o.max_us)?;
            writeln!(out, "[{name}], 95thPercentileLatency(us), {:.3}", o.p95_us)?;
            writeln!(out, "[{name}], 99thPercentileLatency(us), {:.3}", o.p99_us)?;
            for (label, n) in [
                ("OK", o.ok),
                ("NOT_FOUND", o.not_found),
                ("ERROR", o.errors),
            ] {
                if n > 0 {
                    writeln!(out, "[{name}], Return={label}, {n}")?;
                }
            }
        }
        Ok(())
    }

    /// The phase in YCSB's text format.
    pub fn ycsb(&self) -> String {
        let mut s = String::new();
        let _ = self.write_ycsb(&mut s);
        s
    }
}

/// A phase with what it ran against: one JSON document.
#[derive(Clone, Debug)]
pub struct Report {
    /// The store's name (`toykv`, `redb`, `redis`, ...).
    pub store: String,
    /// How it was reached (`lib:DIR`, `resp:HOST:PORT`, ...).
    pub target: String,
    /// The workload letter, or `load`.
    pub workload: String,
    /// Records loaded.
    pub records: u64,
    /// Operations per run.
    pub operations: u64,
    /// Client threads.
    pub threads: usize,
    /// The durability setting, in words.
    pub durability: String,
    /// The measurements.
    pub phase: Phase,
    /// Further numbers (`disk_bytes`, `peak_rss_kib`, ...).
    pub extra: Vec<(String, f64)>,
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `x` as a JSON number (non-finite numbers become 0).
fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "0".into()
    }
}

impl Report {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let p = &self.phase;
        let mut s = String::from("{");
        let _ = write!(
            s,
            "\"store\":{},\"target\":{},\"workload\":{},\"records\":{},\"operations\":{},\
             \"threads\":{},\"durability\":{},\"runtime_ms\":{},\"throughput\":{},\"errors\":{},",
            json_str(&self.store),
            json_str(&self.target),
            json_str(&self.workload),
            self.records,
            self.operations,
            self.threads,
            json_str(&self.durability),
            json_num(p.runtime.as_secs_f64() * 1000.0),
            json_num(p.throughput()),
            p.errors(),
        );
        let ops: Vec<String> = p
            .ops
            .iter()
            .map(|o| {
                let q: Vec<String> = o
                    .quantiles
                    .iter()
                    .map(|(q, v)| format!("[{},{}]", json_num(*q), json_num(*v)))
                    .collect();
                format!(
                    "{{\"op\":{},\"count\":{},\"avg_us\":{},\"min_us\":{},\"max_us\":{},\
                     \"p50_us\":{},\"p95_us\":{},\"p99_us\":{},\"ok\":{},\"not_found\":{},\
                     \"errors\":{},\"quantiles\":[{}]}}",
                    json_str(o.kind.name()),
                    o.count,
                    json_num(o.avg_us),
                    json_num(o.min_us),
                    json_num(o.max_us),
                    json_num(o.p50_us),
                    json_num(o.p95_us),
                    json_num(o.p99_us),
                    o.ok,
                    o.not_found,
                    o.errors,
                    q.join(",")
                )
            })
            .collect();
        let _ = write!(s, "\"ops\":[{}]", ops.join(","));
        for (k, v) in &self.extra {
            let _ = write!(s, ",{}:{}", json_str(k), json_num(*v));
        }
        s.push('}');
        s
    }
}
