//! `peers`: toykv against redb, heed (LMDB), fjall, sled and RocksDB on YCSB workloads A–F,
//! on the same machine in the same run, with the driver of `toykv::ycsb`.
//!
//! Each store runs in its own child process (this binary re-invoked with `--one STORE`), so
//! its peak memory (`VmHWM`) is its own. A child loads the records, syncs, runs each workload
//! in the order given (YCSB's advice: a,b,c,f,d,e, as D and E insert), and writes one JSON
//! report per phase into `--out`. The parent then writes `summary.md` there: per workload
//! throughput and p99 with toykv's ratio to each peer, and load time, data size on disk and
//! peak memory. `--hot` instead compares random gets over a hot set (toykv vs LMDB by default).
//!
//! ```text
//! cargo run --release -p peers -- --records 1000000 --operations 1000000 --threads 2 --out results
//! cargo run --release -p peers --features rocksdb -- --stores toykv,rocksdb ...
//! cargo run --release -p peers -- --hot --out results
//! ```

mod stores;
mod tables;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;
use toykv::ycsb::{DbResult, Report, Settings, Workload, load, run, workload::parse_list};

/// YCSB workloads A–F on toykv and its peers, each store in its own process.
#[derive(Parser, Debug, Clone)]
#[command(name = "peers")]
struct Cli {
    /// Stores to compare, comma-separated (toykv, redb, heed, fjall, sled, rocksdb).
    #[arg(long, default_value = "toykv,redb,heed,fjall,sled")]
    stores: String,
    /// Workloads, comma-separated, run in this order after one load.
    #[arg(long, default_value = "a,b,c,f,d,e")]
    workloads: String,
    /// Records loaded.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Operations per workload.
    #[arg(long, default_value_t = 100_000)]
    operations: u64,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Where the JSON reports and summary.md go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Where the stores' data directories go (default: OUT/data); removed after each store.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Hot-get comparison instead: load --hot-keys records, then uniform random gets with 1
    /// and 2 threads (default stores: toykv,heed).
    #[arg(long)]
    hot: bool,
    /// Records of the hot set.
    #[arg(long, default_value_t = 200_000)]
    hot_keys: u64,
    /// Gets per hot run.
    #[arg(long, default_value_t = 2_000_000)]
    hot_ops: u64,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
    /// Run one store in this process (what the parent starts each child with).
    #[arg(long, hide = true)]
    one: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.one {
        Some(store) => child(&cli, store),
        None => parent(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers: {e}");
            ExitCode::FAILURE
        }
    }
}

fn data_dir(cli: &Cli) -> PathBuf {
    cli.data.clone().unwrap_or_else(|| cli.out.join("data"))
}

/// Starts one child per store, then writes and prints the summary.
fn parent(cli: &Cli) -> DbResult<()> {
    std::fs::create_dir_all(&cli.out)?;
    let stores = if cli.hot && cli.stores == "toykv,redb,heed,fjall,sled" {
        "toykv,heed".to_string()
    } else {
        cli.stores.clone()
    };
    let exe = std::env::current_exe()?;
    let mut failed = Vec::new();
    for store in stores.split(',').filter(|s| !s.is_empty()) {
        eprintln!("== {store}");
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        args.push("--one".into());
        args.push(store.into());
        let status = Command::new(&exe).args(&args).status()?;
        if !status.success() {
            eprintln!("peers: {store} failed ({status})");
            failed.push(store.to_string());
        }
    }
    let summary = if cli.hot {
        tables::hot(&cli.out)?
    } else {
        tables::ycsb(&cli.out)?
    };
    let name = if cli.hot { "hot.md" } else { "summary.md" };
    std::fs::write(cli.out.join(name), &summary)?;
    println!("{summary}");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")).into())
    }
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// This process's peak resident memory in KiB (`VmHWM`), 0 when unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one store: load, then each workload (or the hot-get runs); writes its reports.
fn child(cli: &Cli, store: &str) -> DbResult<()> {
    let dir = data_dir(cli).join(store);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let connect = stores::open(store, &dir)?;
    let records = if cli.hot { cli.hot_keys } else { cli.records };
    let settings = Settings {
        records,
        operations: cli.operations,
        threads: cli.threads.max(1),
        progress: !cli.quiet,
        seed: 0x5EED,
    };
    let report = |workload: String, phase, threads, operations| Report {
        store: store.into(),
        target: "lib".into(),
        workload,
        records,
        operations,
        threads,
        durability: stores::DURABILITY.into(),
        phase,
        extra: Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    let mut reports = Vec::new();
    let loaded = load(&*connect, &settings)?;
    let loaded_bytes = disk_bytes(&dir) as f64;
    writeln!(out, "# {store}: load")?;
    write!(out, "{}", loaded.ycsb())?;
    let mut first = report("load".into(), loaded, settings.threads, records);
    first.extra.push(("disk_bytes".into(), loaded_bytes));
    reports.push(first);
    if cli.hot {
        // Warm-up, not reported: eight uniform passes' worth of gets touch all but 0.03% of
        // the keys, so every store starts with its hot set in memory (toykv's read cache
        // fills on gets, not on puts; the others' pages are in the page cache after the load).
        let mut hot = Settings {
            operations: cli.hot_keys * 8,
            threads: 2,
            ..settings.clone()
        };
        run(&*connect, &hot, Workload::uniform_reads())?;
        for threads in [1, 2] {
            hot.threads = threads;
            hot.operations = cli.hot_ops;
            let phase = run(&*connect, &hot, Workload::uniform_reads())?;
            writeln!(out, "# {store}: hot gets, {threads} threads")?;
            write!(out, "{}", phase.ycsb())?;
            reports.push(report(
                format!("hot-t{threads}"),
                phase,
                threads,
                cli.hot_ops,
            ));
        }
    } else {
        for w in parse_list(&cli.workloads)? {
            let phase = run(&*connect, &settings, w)?;
            writeln!(out, "# {store}: workload {w}")?;
            write!(out, "{}", phase.ycsb())?;
            reports.push(report(
                w.to_string(),
                phase,
                settings.threads,
                cli.operations,
            ));
        }
    }
    let final_bytes = disk_bytes(&dir) as f64;
    let peak = peak_rss_kib() as f64;
    let prefix = if cli.hot { "hot-" } else { "" };
    for mut r in reports {
        r.extra.push(("peak_rss_kib".into(), peak));
        r.extra.push(("final_disk_bytes".into(), final_bytes));
        let path = cli.out.join(format!("{prefix}{store}-{}.json", r.workload));
        std::fs::write(&path, r.to_json() + "\n")?;
    }
    drop(connect);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
