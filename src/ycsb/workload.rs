//! YCSB's core workloads A–F: operation mixes, request distributions, and the per-thread
//! chooser that turns them into a stream of operations on record numbers.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::generator::{Latest, Rng, ScrambledZipfian};

/// Longest scan of workload E (lengths are uniform in `1..=MAX_SCAN`).
pub const MAX_SCAN: usize = 100;

/// An operation type, in the order YCSB reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Read one record.
    Read,
    /// Overwrite one existing record.
    Update,
    /// Insert a new record.
    Insert,
    /// Read up to 100 records in key order from a start key.
    Scan,
    /// Read a record, then write it (workload F).
    ReadModifyWrite,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 5] = [
        OpKind::Read,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::ReadModifyWrite,
    ];

    /// YCSB's name for it (`READ`, `UPDATE`, `INSERT`, `SCAN`, `READ-MODIFY-WRITE`).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "READ",
            OpKind::Update => "UPDATE",
            OpKind::Insert => "INSERT",
            OpKind::Scan => "SCAN",
            OpKind::ReadModifyWrite => "READ-MODIFY-WRITE",
        }
    }

    /// Its index in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How the run phase picks the records it touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Scrambled zipfian, θ = 0.99.
    Zipfian,
    /// The latest inserted records are the most popular (workload D).
    Latest,
    /// Every record equally likely.
    Uniform,
}

/// One of YCSB's core workloads: proportions of each operation and the request distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    /// Its letter, lower case.
    pub name: char,
    /// Proportions of read, update, insert, scan and read-modify-write, in [`OpKind::ALL`]
    /// order; they sum to 1.
    pub mix: [f64; 5],
    /// The request distribution.
    pub distribution: Distribution,
}

impl Workload {
    /// Workload `letter` (a–f, either case).
    pub fn get(letter: char) -> Option<Workload> {
        let (mix, distribution) = match letter.to_ascii_lowercase() {
            'a' => ([0.5, 0.5, 0.0, 0.0, 0.0], Distribution::Zipfian),
            'b' => ([0.95, 0.05, 0.0, 0.0, 0.0], Distribution::Zipfian),
            'c' => ([1.0, 0.0, 0.0, 0.0, 0.0], Distribution::Zipfian),
            'd' => ([0.95, 0.0, 0.05, 0.0, 0.0], Distribution::Latest),
            'e' => ([0.0, 0.0, 0.05, 0.95, 0.0], Distribution::Zipfian),
            'f' => ([0.5, 0.0, 0.0, 0.0, 0.5], Distribution::Zipfian),
            _ => return None,
        };
        Some(Workload {
            name: letter.to_ascii_lowercase(),
            mix,
            distribution,
        })
    }

    /// A custom workload of uniform random reads (the hot-get comparison).
    pub fn uniform_reads() -> Workload {
        Workload {
            name: 'u',
            mix: [1.0, 0.0, 0.0, 0.0, 0.0],
            distribution: Distribution::Uniform,
        }
    }

    /// The share of operations that insert.
    pub fn insert_share(&self) -> f64 {
        self.mix[OpKind::Insert.index()]
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut chars = s.trim().chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                Workload::get(c).ok_or_else(|| format!("unknown workload '{s}' (a to f)"))
            }
            _ => Err(format!("unknown workload '{s}' (a to f)")),
        }
    }
}

/// Parses a comma-separated list of workloads such as `a,b,c`.
pub fn parse_list(s: &str) -> Result<Vec<Workload>, String> {
    s.split(',')
        .filter(|w| !w.is_empty())
        .map(str::parse)
        .collect()
}

/// Record numbers inserted so far, shared by the threads of a run: inserts take the next
/// number, and "latest" reads see the last acknowledged one.
#[derive(Debug)]
pub struct Inserts {
    next: AtomicU64,
    acked: AtomicU64,
}

impl Inserts {
    /// After a load of `records` records (numbers `0..records`).
    pub fn new(records: u64) -> Self {
        Inserts {
            next: AtomicU64::new(records),
            acked: AtomicU64::new(records),
        }
    }

    /// The record number the next insert writes.
    pub fn take(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts one finished insert.
    pub fn ack(&self) {
        self.acked.fetch_add(1, Ordering::Release);
    }

    /// How many records exist (loaded plus acknowledged inserts). With several threads an
    /// insert may finish out of order, so the newest of these can, rarely, still be in flight.
    pub fn count(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }
}

/// One operation to perform: its kind, the record number, and for a scan its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// What to do.
    pub kind: OpKind,
    /// The record number (the key is `fnv64` of it).
    pub record: u64,
    /// Records to scan (1..=100); 1 for other kinds.
    pub len: usize,
}

/// A thread's stream of operations for a workload.
#[derive(Debug)]
pub struct Chooser {
    workload: Workload,
    cumulative: [f64; 5],
    zipf: ScrambledZipfian,
    latest: Latest,
}

impl Chooser {
    /// A chooser for a run after loading `records` records, expecting `operations` in all.
    pub fn new(workload: Workload, records: u64, operations: u64) -> Self {
        let mut cumulative = [0.0; 5];
        let mut sum = 0.0;
        for (c, p) in cumulative.iter_mut().zip(workload.mix) {
            sum += p;
            *c = sum;
        }
        // As YCSB: with inserts, the zipfian draws over the records expected by the end
        // (twice the expected inserts), retrying draws past the last existing record.
        let expected = (operations as f64 * workload.insert_share() * 2.0) as u64;
        Chooser {
            workload,
            cumulative,
            zipf: ScrambledZipfian::new(records + expected),
            latest: Latest::new(records.saturating_sub(1)),
        }
    }

    /// The next operation. `inserts` hands out new record numbers and bounds the existing ones.
    pub fn next(&mut self, rng: &mut Rng, inserts: &Inserts) -> Op {
        let u = rng.next_f64();
        let index = self.cumulative.iter().position(|&c| u < c).unwrap_or(0);
        let kind = OpKind::ALL[index];
        let record = match kind {
            OpKind::Insert => inserts.take(),
            _ => self.existing(rng, inserts),
        };
        let len = match kind {
            OpKind::Scan => rng.between(1, MAX_SCAN as u64) as usize,
            _ => 1,
        };
        Op { kind, record, len }
    }

    /// A record number that exists, drawn from the workload's distribution.
    fn existing(&mut self, rng: &mut Rng, inserts: &Inserts) -> u64 {
        let count = inserts.count().max(1);
        match self.workload.distribution {
            Distribution::Uniform => rng.below(count),
            Distribution::Latest => self.latest.next(rng, count - 1),
            Distribution::Zipfian => loop {
                let n = self.zipf.next(rng);
                if n < count {
                    break n;
                }
            },
        }
    }
}
