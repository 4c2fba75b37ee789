//! What a benchmark thread measures: one HdrHistogram of latencies per operation type, and
//! the count of each outcome. [`Phase`](super::Phase) is made from the merged recorders of a
//! phase's threads.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::DbResult;
use super::workload::OpKind;

/// Latencies above this (in nanoseconds) are recorded as this: one minute.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// What one thread measured.
pub(crate) struct Recorder {
    pub(crate) hists: Vec<Histogram<u64>>,
    /// Per kind: OK, NOT_FOUND, ERROR counts.
    pub(crate) returns: [[u64; 3]; 5],
    pub(crate) first_error: Option<String>,
}

impl Recorder {
    pub(crate) fn new() -> DbResult<Recorder> {
        let hists = OpKind::ALL
            .iter()
            .map(|_| Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Recorder {
            hists,
            returns: [[0; 3]; 5],
            first_error: None,
        })
    }

    /// Records one operation that took `took` and returned `outcome` (found or not).
    pub(crate) fn record(&mut self, kind: OpKind, took: Duration, outcome: DbResult<bool>) {
        let i = kind.index();
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        if let Some(h) = self.hists.get_mut(i) {
            h.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
        }
        let column = match outcome {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                self.first_error.get_or_insert_with(|| e.to_string());
                2
            }
        };
        self.returns[i][column] += 1;
    }

    /// Adds another thread's measurements.
    pub(crate) fn merge(&mut self, other: Recorder) -> DbResult<()> {
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            mine.add(theirs)?;
        }
        for (mine, theirs) in self.returns.iter_mut().zip(other.returns) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}
