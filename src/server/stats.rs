//! Server counters for `INFO`: connections, commands, bytes, hits and misses, and per-command
//! calls, failures and latency (a histogram of power-of-two microsecond buckets, so
//! percentiles are upper bounds within a factor of two, kept with atomics: no lock on the
//! command path).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Histogram buckets: bucket `i` counts latencies below `2^i` microseconds.
const BUCKETS: usize = 40;

/// Counters of one command.
#[derive(Debug)]
pub struct CommandStats {
    calls: AtomicU64,
    failed: AtomicU64,
    usec: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats {
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            usec: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl CommandStats {
    /// Records one call that took `took` and failed or not.
    pub fn record(&self, took: Duration, failed: bool) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Relaxed);
        self.usec.fetch_add(us, Relaxed);
        if failed {
            self.failed.fetch_add(1, Relaxed);
        }
        let bucket = (u64::BITS - us.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed)
    }

    /// The `INFO commandstats` line body: `calls=…,usec=…,usec_per_call=…,rejected_calls=0,failed_calls=…`.
    pub fn line(&self) -> String {
        let calls = self.calls();
        let usec = self.usec.load(Relaxed);
        let per = if calls == 0 {
            0.0
        } else {
            usec as f64 / calls as f64
        };
        format!(
            "calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls=0,failed_calls={}",
            self.failed.load(Relaxed)
        )
    }

    /// Upper bound, in microseconds, of the `q` quantile (0..=1) of latencies.
    pub fn percentile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return 1u64 << i;
            }
        }
        1u64 << (BUCKETS - 1)
    }
}

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused because the server was full.
    pub rejected: AtomicU64,
    /// Commands executed.
    pub commands: AtomicU64,
    /// Bytes read from clients.
    pub input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub output_bytes: AtomicU64,
    /// Reads of keys that existed.
    pub hits: AtomicU64,
    /// Reads of keys that did not.
    pub misses: AtomicU64,
    /// Protocol errors (connections closed for malformed input).
    pub protocol_errors: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// Reads a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_bound_latencies() {
        let s = CommandStats::default();
        for _ in 0..99 {
            s.record(Duration::from_micros(3), false);
        }
        s.record(Duration::from_micros(1000), true);
        assert_eq!(s.calls(), 100);
        assert_eq!(s.percentile(0.5), 4);
        assert_eq!(s.percentile(0.99), 4);
        assert_eq!(s.percentile(1.0), 1024);
        assert!(
            s.line()
                .starts_with("calls=100,usec=1297,usec_per_call=12.97")
        );
        assert!(s.line().ends_with("failed_calls=1"));
    }

    #[test]
    fn empty_stats_are_zero() {
        let s = CommandStats::default();
        assert_eq!(s.percentile(0.99), 0);
        s.record(Duration::from_secs(1 << 40), false);
        assert_eq!(s.percentile(1.0), 1 << (BUCKETS - 1));
    }
}
