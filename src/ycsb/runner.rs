//! The load and run phases: threads, timing, per-operation HdrHistograms, progress bars.
//!
//! Each thread gets its own [`Db`] handle, [`Rng`] and histograms; they are merged when the
//! phase ends. A failed operation is counted (`Return=ERROR`) and the phase goes on.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::generator::{Rng, fnv64};
use super::recorder::Recorder;
use super::report::Phase;
use super::workload::{Chooser, Inserts, OpKind, Workload};
use super::{Connect, Db, DbResult, VALUE_LEN};

/// Operations between progress-bar updates.
const TICK: u64 = 512;

/// Sizes and knobs of a benchmark.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Records the load phase inserts (numbers `0..records`).
    pub records: u64,
    /// Operations of each run phase, over all threads.
    pub operations: u64,
    /// Client threads.
    pub threads: usize,
    /// Show progress bars (they are drawn only when stderr is a terminal).
    pub progress: bool,
    /// Seeds every thread's generator (thread `t` uses `seed + t`).
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            records: 100_000,
            operations: 100_000,
            threads: 1,
            progress: true,
            seed: 0x5EED,
        }
    }
}

/// A progress bar for `len` operations, hidden when asked or when stderr is not a terminal.
fn bar(settings: &Settings, len: u64, prefix: String) -> ProgressBar {
    if !settings.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(prefix);
    bar
}

/// A 256-byte value, different for every write: random bytes with a fresh first word.
fn fresh(value: &mut [u8; VALUE_LEN], rng: &mut Rng) {
    value[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
}

fn random_value(rng: &mut Rng) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    for chunk in v.chunks_mut(8) {
        let bytes = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    v
}

/// Runs `body` on `settings.threads` threads, each with its own handle, generator and
/// recorder, then flushes through a fresh handle; returns the merged measurements and the time.
fn phase<F>(
    connect: Connect<'_>,
    settings: &Settings,
    name: String,
    total: u64,
    body: F,
) -> DbResult<Phase>
where
    F: Fn(usize, &mut dyn Db, &mut Rng, &mut Recorder, &ProgressBar) + Sync,
{
    let threads = settings.threads.max(1);
    // Connect before the clock starts.
    let mut handles = (0..threads)
        .map(|_| connect())
        .collect::<DbResult<Vec<_>>>()?;
    let bar = bar(settings, total, name.clone());
    let start = Instant::now();
    let results: Vec<DbResult<Recorder>> = std::thread::scope(|scope| {
        let spawned: Vec<_> = handles
            .iter_mut()
            .enumerate()
            .map(|(t, db)| {
                let (body, bar) = (&body, &bar);
                let seed = settings.seed.wrapping_add(t as u64);
                scope.spawn(move || -> DbResult<Recorder> {
                    let mut rng = Rng::new(seed);
                    let mut rec = Recorder::new()?;
                    body(t, db.as_mut(), &mut rng, &mut rec, bar);
                    Ok(rec)
                })
            })
            .collect();
        spawned
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a benchmark thread panicked".into()))
            })
            .collect()
    });
    let mut merged = Recorder::new()?;
    for r in results {
        merged.merge(r?)?;
    }
    if let Some(db) = handles.first_mut() {
        db.flush()?;
    }
    let runtime = start.elapsed();
    bar.finish_and_clear();
    Ok(Phase::new(name, runtime, merged))
}

/// The share of `total` that thread `t` of `threads` does: `(first, count)`.
fn share(total: u64, threads: usize, t: usize) -> (u64, u64) {
    let (n, t) = (threads as u64, t as u64);
    let first = total * t / n;
    (first, total * (t + 1) / n - first)
}

/// Load phase: inserts records `0..settings.records` (keys `fnv64(n)`), split across threads.
pub fn load(connect: Connect<'_>, settings: &Settings) -> DbResult<Phase> {
    let threads = settings.threads.max(1);
    phase(
        connect,
        settings,
        "load".into(),
        settings.records,
        |t, db, rng, rec, bar| {
            let (first, count) = share(settings.records, threads, t);
            let mut value = random_value(rng);
            for n in first..first + count {
                fresh(&mut value, rng);
                let start = Instant::now();
                let r = db.insert(fnv64(n), &value).map(|()| true);
                rec.record(OpKind::Insert, start.elapsed(), r);
                if (n - first + 1) % TICK == 0 {
                    bar.inc(TICK);
                }
            }
        },
    )
}

/// Run phase: `settings.operations` operations of `workload` over the loaded records.
pub fn run(connect: Connect<'_>, settings: &Settings, workload: Workload) -> DbResult<Phase> {
    let threads = settings.threads.max(1);
    let inserts = Inserts::new(settings.records);
    phase(
        connect,
        settings,
        format!("run {workload}"),
        settings.operations,
        |t, db, rng, rec, bar| {
            let (_, count) = share(settings.operations, threads, t);
            let mut chooser = Chooser::new(workload, settings.records, settings.operations);
            let mut value = random_value(rng);
            for i in 0..count {
                let op = chooser.next(rng, &inserts);
                let key = fnv64(op.record);
                fresh(&mut value, rng);
                let start = Instant::now();
                let r = match op.kind {
                    OpKind::Read => db.read(key),
                    OpKind::Update => db.update(key, &value).map(|()| true),
                    OpKind::Insert => db.insert(key, &value).map(|()| true),
                    OpKind::Scan => db.scan(key, op.len).map(|n| n > 0),
                    OpKind::ReadModifyWrite => db.read_modify_write(key, &value),
                };
                let took = start.elapsed();
                if op.kind == OpKind::Insert && r.is_ok() {
                    inserts.ack();
                }
                rec.record(op.kind, took, r);
                if (i + 1) % TICK == 0 {
                    bar.inc(TICK);
                }
            }
        },
    )
}
