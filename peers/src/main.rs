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
//! Larger than memory: `--mem-limit 1G` runs each child in its own memory cgroup with that
//! limit, page cache included (see `cgroup`), and records the group's limit, peak and limit
//! hits; `--cache-bytes` sets every store's cache; `--drop-caches` syncs and drops the
//! kernel's caches before each store; `--timeout SECS` kills a child that runs longer, and
//! the summary says the store did not finish. `children.tsv` in `--out` has each child's
//! outcome.
//!
//! ```text
//! cargo run --release -p peers -- --records 1000000 --operations 1000000 --threads 2 --out results
//! cargo run --release -p peers --features rocksdb -- --stores toykv,rocksdb ...
//! cargo run --release -p peers -- --hot --out results
//! cargo run --release -p peers -- --records 8000000 --operations 200000 --mem-limit 1G \
//!     --cache-bytes 256M --drop-caches --timeout 900 --out results-ltm
//! ```

mod cgroup;
mod stores;
mod tables;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

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
    /// Warm-up passes over the hot set before the timed gets (not reported); 0 times the gets
    /// right after the load.
    #[arg(long, default_value_t = 8)]
    hot_warmup: u64,
    /// Run each store's process in a memory cgroup with this limit (page cache included),
    /// e.g. 1G; fails if no memory cgroup can be made (needs root).
    #[arg(long, value_parser = cgroup::parse_size)]
    mem_limit: Option<u64>,
    /// Cache size for every store that has one (toykv's read cache, redb, fjall, sled,
    /// RocksDB's block cache), e.g. 256M. Default: 256 MiB for the peers, toykv's default.
    #[arg(long, value_parser = cgroup::parse_size)]
    cache_bytes: Option<u64>,
    /// `sync` and drop the kernel's page cache (`/proc/sys/vm/drop_caches`, root) before
    /// each store; a warning if it cannot.
    #[arg(long)]
    drop_caches: bool,
    /// Seconds a store's process may run; then it is killed and reported as not finished.
    #[arg(long)]
    timeout: Option<u64>,
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

/// How one child ended, as `children.tsv` and the summary report it.
struct Outcome {
    store: String,
    /// `ok`, `did not finish (limit N s)`, `killed by the OOM killer`, `failed (...)`.
    status: String,
    seconds: f64,
    usage: Option<cgroup::Usage>,
    cgroup_version: u8,
    /// Whether the run as a whole fails for it (a time-out or an OOM kill under a memory
    /// limit is a result, not a failure).
    fatal: bool,
}

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}

/// `children.tsv`: one line per child, a header first.
fn outcomes_tsv(outcomes: &[Outcome]) -> String {
    let mut s = String::from(
        "store\tstatus\tseconds\tcgroup\tlimit_bytes\tpeak_bytes\tlimit_hits\toom_kills\n",
    );
    for o in outcomes {
        let u = o.usage.clone().unwrap_or_default();
        let limit = if o.usage.is_some() {
            u.limit.to_string()
        } else {
            "-".into()
        };
        s += &format!(
            "{}\t{}\t{:.1}\t{}\t{limit}\t{}\t{}\t{}\n",
            o.store,
            o.status,
            o.seconds,
            if o.cgroup_version > 0 {
                format!("v{}", o.cgroup_version)
            } else {
                "-".into()
            },
            opt(u.peak),
            opt(u.limit_hits),
            opt(u.oom_kills)
        );
    }
    s
}

/// `sync`, then drops the page cache, dentries and inodes; a warning if it cannot.
fn drop_caches() {
    match Command::new("sync").status() {
        Ok(s) if s.success() => {}
        other => eprintln!("peers: warning: sync failed ({other:?})"),
    }
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        eprintln!(
            "peers: warning: could not drop the page cache (/proc/sys/vm/drop_caches: {e}); \
             the store may start with its files cached"
        );
    }
}

/// Waits for `child`, killing it after `timeout`; `None` when it was killed for that.
fn wait_for(
    child: &mut std::process::Child,
    timeout: Option<Duration>,
) -> std::io::Result<Option<ExitStatus>> {
    let Some(timeout) = timeout else {
        return child.wait().map(Some);
    };
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() >= timeout {
            // SIGKILL; the shell exec'd the child, so this is the store's process itself.
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts one child per store, then writes and prints the summary.
fn parent(cli: &Cli) -> DbResult<()> {
    std::fs::create_dir_all(&cli.out)?;
    let stores = if cli.hot && cli.stores == "toykv,redb,heed,fjall,sled" {
        "toykv,heed".to_string()
    } else {
        cli.stores.clone()
    };
    let limiter = match cli.mem_limit {
        Some(_) => Some(cgroup::Limiter::new()?),
        None => None,
    };
    let exe = std::env::current_exe()?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let outcomes_name = if cli.hot {
        "hot-children.tsv"
    } else {
        "children.tsv"
    };
    for store in stores.split(',').filter(|s| !s.is_empty()) {
        eprintln!("== {store}");
        if cli.drop_caches {
            drop_caches();
        }
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        args.push("--one".into());
        args.push(store.into());
        let group = match (&limiter, cli.mem_limit) {
            (Some(l), Some(limit)) => {
                let name = format!("peers-{}-{store}", std::process::id());
                Some(l.create(&name, limit)?)
            }
            _ => None,
        };
        let mut command = match &group {
            // The shell moves itself into the group, then becomes the child: the store
            // never runs outside the limit.
            Some(g) => {
                eprintln!("   in cgroup {}", g.path().display());
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("echo $$ > \"$0\" || exit 125; exec \"$@\"")
                    .arg(g.procs())
                    .arg(&exe)
                    .args(&args);
                c
            }
            None => {
                let mut c = Command::new(&exe);
                c.args(&args);
                c
            }
        };
        let start = Instant::now();
        let waited = command
            .spawn()
            .and_then(|mut child| wait_for(&mut child, cli.timeout.map(Duration::from_secs)));
        let seconds = start.elapsed().as_secs_f64();
        let usage = group.as_ref().map(|g| g.usage());
        if let Some(g) = group {
            let path = g.path().to_path_buf();
            if let Err(e) = g.remove() {
                eprintln!("peers: warning: could not remove {}: {e}", path.display());
            }
        }
        let oom_killed = usage
            .as_ref()
            .and_then(|u| u.oom_kills)
            .is_some_and(|n| n > 0);
        let (status, fatal) = match waited {
            Ok(Some(s)) if s.success() => ("ok".to_string(), false),
            Ok(Some(s)) if oom_killed && s.code().is_none() => {
                ("killed by the OOM killer".to_string(), false)
            }
            Ok(Some(s)) if s.code() == Some(125) && usage.is_some() => {
                ("failed (could not join its cgroup)".to_string(), true)
            }
            Ok(Some(s)) => (format!("failed ({s})"), true),
            Ok(None) => (
                format!(
                    "did not finish (limit {} s)",
                    cli.timeout.unwrap_or_default()
                ),
                false,
            ),
            Err(e) => (format!("failed (could not start: {e})"), true),
        };
        if status != "ok" {
            eprintln!("peers: {store}: {status}");
            // A killed child leaves its data behind.
            let dir = data_dir(cli).join(store);
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        outcomes.push(Outcome {
            store: store.into(),
            status,
            seconds,
            usage,
            cgroup_version: limiter.as_ref().map_or(0, |l| l.version.number()),
            fatal,
        });
        std::fs::write(cli.out.join(outcomes_name), outcomes_tsv(&outcomes))?;
    }
    let summary = if cli.hot {
        tables::hot(&cli.out, cli.hot_warmup)?
    } else {
        let workloads: Vec<String> = parse_list(&cli.workloads)?
            .iter()
            .map(|w| w.to_string())
            .collect();
        tables::ycsb(&cli.out, &workloads)?
    };
    let name = if cli.hot { "hot.md" } else { "summary.md" };
    std::fs::write(cli.out.join(name), &summary)?;
    println!("{summary}");
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.fatal)
        .map(|o| o.store.as_str())
        .collect();
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
    let cache = cli
        .cache_bytes
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let connect = stores::open(store, &dir, cache)?;
    // Under --mem-limit, the limit of the group this process is in, read from inside: the
    // proof that the limit was applied.
    let seen_limit = match cli.mem_limit {
        Some(_) => Some(
            cgroup::own_limit()
                .ok_or("--mem-limit given, but this process is in no memory cgroup with a limit")?,
        ),
        None => None,
    };
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
    let prefix = if cli.hot { "hot-" } else { "" };
    let path = |r: &Report| cli.out.join(format!("{prefix}{store}-{}.json", r.workload));
    // Written as each phase ends (so a store killed later keeps the phases it finished),
    // then again at the end with the final peak memory and size on disk.
    let write = |r: &Report, final_bytes: f64| -> DbResult<()> {
        let mut r = r.clone();
        r.extra.push(("peak_rss_kib".into(), peak_rss_kib() as f64));
        r.extra.push(("final_disk_bytes".into(), final_bytes));
        if let Some(n) = cli.cache_bytes {
            r.extra.push(("cache_bytes".into(), n as f64));
        }
        if let Some(n) = seen_limit {
            r.extra.push(("cgroup_limit_bytes".into(), n as f64));
            if let Some(p) = cgroup::own_peak() {
                r.extra.push(("cgroup_peak_bytes".into(), p as f64));
            }
        }
        std::fs::write(path(&r), r.to_json() + "\n")?;
        Ok(())
    };
    let mut out = std::io::stdout().lock();
    let mut reports = Vec::new();
    let loaded = load(&*connect, &settings)?;
    let loaded_bytes = disk_bytes(&dir) as f64;
    writeln!(out, "# {store}: load")?;
    write!(out, "{}", loaded.ycsb())?;
    let mut first = report("load".into(), loaded, settings.threads, records);
    first.extra.push(("disk_bytes".into(), loaded_bytes));
    write(&first, loaded_bytes)?;
    reports.push(first);
    if cli.hot {
        // Warm-up, not reported: eight uniform passes' worth of gets (the default) touch all
        // but 0.03% of the keys, so every store starts with its hot set in memory. With
        // `--hot-warmup 0` the gets start right after the load.
        let mut hot = Settings {
            operations: cli.hot_keys * cli.hot_warmup,
            threads: 2,
            ..settings.clone()
        };
        if cli.hot_warmup > 0 {
            run(&*connect, &hot, Workload::uniform_reads())?;
        }
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
            let r = report(w.to_string(), phase, settings.threads, cli.operations);
            write(&r, disk_bytes(&dir) as f64)?;
            reports.push(r);
        }
    }
    let final_bytes = disk_bytes(&dir) as f64;
    for r in &reports {
        write(r, final_bytes)?;
    }
    drop(connect);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
