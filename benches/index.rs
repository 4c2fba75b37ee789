//! The in-memory index against the structures it was chosen over (issue 16), on random keys.
//!
//! Candidates, each mapping a `u64` key to a record's sequence number:
//! - `BTreeMap<u64, u64>`: the index before issue 16;
//! - `BTreeMap<u64, u32>`: the same with the 32-bit sequence numbers the new index stores;
//! - `sorted blocks`: leaves of up to 256 sorted entries in one `Vec`, found by binary search
//!   over a `Vec` of fence keys (two levels, no tree);
//! - `ART (congee)`: an adaptive radix tree, `congee::U64Congee` (a guard pinned per call);
//! - `toykv Index`: the B+tree `src/store/index.rs` now uses.
//!
//! For each size N (keys from a xorshift generator): fill with N random keys (the rate of the
//! whole fill), heap bytes per key (a counting allocator: bytes asked for, not the allocator's
//! own overhead) and resident bytes per key (`/proc/self/statm` before and after, which
//! includes it), then 1 M more random inserts at that size, 1 M overwrites, 1 M gets, 100 K
//! scans of 100 keys, 1 M removes; and for the index, a build from an N-record log.
//!
//! `cargo bench --bench index` runs 1 M and 10 M keys; `-- huge` adds 100 M keys for the
//! index alone; `-- N` runs one size N.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Instant;

use toykv::bench::{Index, Log};

mod common;
use common::counting::{self, Counting};
use toykv::key::Key;

#[global_allocator]
static ALLOC: Counting = Counting;

/// Resident bytes of this process.
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What every candidate does.
trait Map {
    const NAME: &'static str;
    fn new() -> Self;
    fn insert(&mut self, key: u64, seq: u64) -> Option<u64>;
    fn get(&self, key: u64) -> Option<u64>;
    fn remove(&mut self, key: u64) -> Option<u64>;
    /// Sums the sequence numbers of up to `n` keys from `from` on.
    fn scan(&self, from: u64, n: usize) -> u64;
}

impl Map for BTreeMap<u64, u64> {
    const NAME: &'static str = "BTreeMap<u64, u64>";
    fn new() -> Self {
        BTreeMap::new()
    }
    fn insert(&mut self, key: u64, seq: u64) -> Option<u64> {
        BTreeMap::insert(self, key, seq)
    }
    fn get(&self, key: u64) -> Option<u64> {
        BTreeMap::get(self, &key).copied()
    }
    fn remove(&mut self, key: u64) -> Option<u64> {
        BTreeMap::remove(self, &key)
    }
    fn scan(&self, from: u64, n: usize) -> u64 {
        self.range(from..).take(n).map(|(_, &s)| s).sum()
    }
}

impl Map for BTreeMap<u64, u32> {
    const NAME: &'static str = "BTreeMap<u64, u32>";
    fn new() -> Self {
        BTreeMap::new()
    }
    fn insert(&mut self, key: u64, seq: u64) -> Option<u64> {
        BTreeMap::insert(self, key, seq as u32).map(u64::from)
    }
    fn get(&self, key: u64) -> Option<u64> {
        BTreeMap::get(self, &key).map(|&s| u64::from(s))
    }
    fn remove(&mut self, key: u64) -> Option<u64> {
        BTreeMap::remove(self, &key).map(u64::from)
    }
    fn scan(&self, from: u64, n: usize) -> u64 {
        self.range(from..).take(n).map(|(_, &s)| u64::from(s)).sum()
    }
}

impl Map for Index {
    const NAME: &'static str = "toykv Index (B+tree)";
    fn new() -> Self {
        Index::default()
    }
    fn insert(&mut self, key: u64, seq: u64) -> Option<u64> {
        Index::insert(self, Key::from(key), seq)
    }
    fn get(&self, key: u64) -> Option<u64> {
        Index::get(self, Key::from(key))
    }
    fn remove(&mut self, key: u64) -> Option<u64> {
        Index::remove(self, Key::from(key))
    }
    fn scan(&self, from: u64, n: usize) -> u64 {
        let r = self.range(Bound::Included(Key::from(from)), Bound::Unbounded, n);
        r.iter().map(|&(_, s)| s).sum()
    }
}

/// Two levels: fence keys (each block's smallest key) over blocks of sorted entries.
struct Blocks {
    fences: Vec<u64>,
    blocks: Vec<Vec<(u64, u32)>>,
}

const BLOCK: usize = 256;

impl Blocks {
    fn block(&self, key: u64) -> usize {
        self.fences.partition_point(|&f| f <= key).saturating_sub(1)
    }
}

impl Map for Blocks {
    const NAME: &'static str = "sorted blocks + fence keys";
    fn new() -> Self {
        Blocks {
            fences: vec![0],
            blocks: vec![Vec::new()],
        }
    }
    fn insert(&mut self, key: u64, seq: u64) -> Option<u64> {
        let b = self.block(key);
        let block = &mut self.blocks[b];
        match block.binary_search_by_key(&key, |e| e.0) {
            Ok(i) => Some(u64::from(std::mem::replace(&mut block[i].1, seq as u32))),
            Err(i) => {
                block.insert(i, (key, seq as u32));
                if block.len() > BLOCK {
                    let right = block.split_off(block.len() / 2);
                    block.shrink_to_fit();
                    self.fences.insert(b + 1, right[0].0);
                    self.blocks.insert(b + 1, right);
                }
                None
            }
        }
    }
    fn get(&self, key: u64) -> Option<u64> {
        let block = &self.blocks[self.block(key)];
        let i = block.binary_search_by_key(&key, |e| e.0).ok()?;
        Some(u64::from(block[i].1))
    }
    fn remove(&mut self, key: u64) -> Option<u64> {
        let b = self.block(key);
        let block = &mut self.blocks[b];
        let i = block.binary_search_by_key(&key, |e| e.0).ok()?;
        let old = block.remove(i).1;
        if block.is_empty() && self.blocks.len() > 1 {
            self.blocks.remove(b);
            let f = self.fences.remove(b);
            if b == 0 {
                self.fences[0] = f;
            }
        }
        Some(u64::from(old))
    }
    fn scan(&self, from: u64, n: usize) -> u64 {
        let b = self.block(from);
        let i = self.blocks[b].partition_point(|e| e.0 < from);
        let first = self.blocks[b][i..].iter();
        let rest = self.blocks[b + 1..].iter().flatten();
        first.chain(rest).take(n).map(|e| u64::from(e.1)).sum()
    }
}

struct Art(congee::U64Congee<usize>);

impl Map for Art {
    const NAME: &'static str = "ART (congee 0.4)";
    fn new() -> Self {
        Art(congee::U64Congee::new())
    }
    fn insert(&mut self, key: u64, seq: u64) -> Option<u64> {
        let g = congee::epoch::pin();
        let old = self.0.insert(key, seq as usize, &g).ok()?;
        old.map(|s| s as u64)
    }
    fn get(&self, key: u64) -> Option<u64> {
        let g = congee::epoch::pin();
        self.0.get(key, &g).map(|s| s as u64)
    }
    fn remove(&mut self, key: u64) -> Option<u64> {
        let g = congee::epoch::pin();
        self.0.remove(key, &g).map(|s| s as u64)
    }
    fn scan(&self, from: u64, n: usize) -> u64 {
        let g = congee::epoch::pin();
        let mut out = vec![([0u8; 8], 0usize); n];
        let got = self.0.range(from, u64::MAX, &mut out, &g);
        out[..got].iter().map(|&(_, s)| s as u64).sum()
    }
}

/// xorshift64: random keys without a library in the timed loops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Nanoseconds per operation of `n` runs of `f`.
fn per_op(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn run<M: Map>(n: u64) {
    const OPS: u64 = 1_000_000;
    let (heap0, rss0) = (counting::live(), rss());
    let mut map = M::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t = Instant::now();
    for seq in 0..n {
        map.insert(rng.next(), seq);
    }
    let fill = n as f64 / t.elapsed().as_secs_f64() / 1e6;
    let heap = (counting::live() - heap0) as f64 / n as f64;
    let resident = (rss() - rss0) as f64 / n as f64;
    let mut seq = n;
    let insert = per_op(OPS, |_| {
        map.insert(rng.next(), seq);
        seq += 1;
    });
    // Existing keys: replay the generator from the start.
    let mut old = Rng(0x9E37_79B9_7F4A_7C15);
    let overwrite = per_op(OPS, |_| {
        map.insert(old.next(), seq);
        seq += 1;
    });
    let mut old = Rng(0x9E37_79B9_7F4A_7C15);
    let mut hits = 0u64;
    let get = per_op(OPS, |_| hits += u64::from(map.get(old.next()).is_some()));
    let mut sum = 0u64;
    let scan = per_op(OPS / 10, |_| {
        sum = sum.wrapping_add(map.scan(rng.next(), 100))
    });
    let mut old = Rng(0x9E37_79B9_7F4A_7C15);
    let remove = per_op(OPS, |_| hits += u64::from(map.remove(old.next()).is_some()));
    std::hint::black_box((sum, hits));
    println!(
        "| {} | {} | {fill:.2} M/s | {heap:.1} | {resident:.1} | {insert:.0} | {overwrite:.0} | {get:.0} | {scan:.0} | {remove:.0} |",
        M::NAME,
        millions(n),
    );
}

/// A log of `n` random puts, built into the index: records per second and bytes per key.
fn build(n: u64) {
    let (heap0, rss0) = (counting::live(), rss());
    let mut log = Log::with_capacity(n as usize);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for seq in 0..n {
        log.put(Key::from(rng.next()), seq);
    }
    let t = Instant::now();
    let Some(index) = log.build() else {
        return;
    };
    let secs = t.elapsed().as_secs_f64();
    let heap = (counting::live() - heap0) as f64 / n as f64;
    let resident = (rss() - rss0) as f64 / n as f64;
    println!(
        "| build from a log of {} random records | {:.0} ms = {:.1} M records/s | index heap {heap:.1} B/key, resident {resident:.1} B/key (with what the log's freed pages left) |",
        millions(n),
        secs * 1e3,
        n as f64 / secs / 1e6
    );
    std::hint::black_box(index.len());
}

fn millions(n: u64) -> String {
    format!("{} M", n as f64 / 1e6)
}

/// Runs candidate `name` at `n` keys in this process.
fn one(name: &str, n: u64) {
    match name {
        "btree64" => run::<BTreeMap<u64, u64>>(n),
        "btree32" => run::<BTreeMap<u64, u32>>(n),
        "blocks" => run::<Blocks>(n),
        "art" => run::<Art>(n),
        "index" => run::<Index>(n),
        "build" => build(n),
        _ => eprintln!("unknown candidate {name}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [flag, name, n] = &args[..]
        && flag == "--one"
    {
        one(name, n.parse().unwrap_or(1_000_000));
        return;
    }
    let huge = args.iter().any(|a| a == "huge");
    let mut sizes: Vec<u64> = match args.iter().find_map(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![1_000_000, 10_000_000],
    };
    let only = std::env::var("TOYKV_INDEX_ONLY").ok();
    // Each candidate in a process of its own, so resident memory is its own.
    let spawn = |name: &str, n: u64| {
        if only.as_deref().is_some_and(|o| o != name) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let _ = std::process::Command::new(exe)
            .args(["--one", name, &n.to_string()])
            .status();
    };
    println!(
        "| structure | keys | fill rate | heap B/key | resident B/key | insert ns | overwrite ns | get ns | scan 100 ns | remove ns |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for name in ["btree64", "btree32", "blocks", "art", "index"] {
            if name != "blocks" || n <= 10_000_000 {
                spawn(name, n);
            }
        }
    }
    if huge {
        spawn("index", 100_000_000);
        sizes.push(100_000_000);
    }
    println!();
    for &n in &sizes {
        spawn("build", n);
    }
}
