//! `toykv bench`: its flags, and the run that loads once, runs each workload in turn and prints
//! YCSB's output (optionally also writing JSON).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::report::{Phase, Report};
use super::resp::{Flavor, RespDb};
use super::runner::{Settings, load, run};
use super::workload::{Workload, parse_list};
use super::{Db, DbResult, LibDb, Target};

/// Durability of the library target, in words (the peers report theirs alike).
pub const LIB_DURABILITY: &str = "no fsync per operation (toykv default: a put survives a \
                                  process crash; one sync at the end of each phase)";

/// Flags of `toykv bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Workloads to run after the load, comma-separated, in order (a to f). YCSB's advice is
    /// a,b,c,f,d,e: D and E insert.
    #[arg(long, short, default_value = "a", value_name = "LIST")]
    pub workload: String,
    /// Records the load phase inserts.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub records: u64,
    /// Operations of each workload's run.
    #[arg(long, default_value_t = 100_000, value_name = "M")]
    pub operations: u64,
    /// Client threads (each with its own connection for RESP targets).
    #[arg(long, default_value_t = 1, value_name = "T")]
    pub threads: usize,
    /// What to drive: lib:DIR (the library, data in DIR), resp:HOST:PORT (a toykv server) or
    /// redis:HOST:PORT (redis-server; scans use a sorted-set index).
    #[arg(long, default_value = "lib:ycsb-data", value_name = "TARGET")]
    pub target: Target,
    /// Skip the load phase (the records are already there).
    #[arg(long)]
    pub no_load: bool,
    /// Also write every phase as JSON (an array of objects) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The store's name in the JSON (default: toykv, or redis for a redis target).
    #[arg(long, value_name = "NAME")]
    pub store: Option<String>,
    /// No progress bars (they are never drawn when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// Seed of the key and value generators.
    #[arg(long, default_value_t = 0x5EED)]
    pub seed: u64,
}

/// Runs `toykv bench`; YCSB's output goes to `out`.
pub fn bench(args: &BenchArgs, out: &mut dyn Write) -> DbResult<()> {
    let workloads: Vec<Workload> = parse_list(&args.workload)?;
    let settings = Settings {
        records: args.records,
        operations: args.operations,
        threads: args.threads.max(1),
        progress: !args.quiet,
        seed: args.seed,
    };
    let (store, durability) = match &args.target {
        Target::Redis(_) => (
            "redis",
            "redis-server's own settings (e.g. appendfsync everysec)",
        ),
        Target::Resp(_) => ("toykv-server", "the server's settings"),
        Target::Lib(_) => ("toykv", LIB_DURABILITY),
    };
    let store = args.store.clone().unwrap_or_else(|| store.into());
    let lib = match &args.target {
        Target::Lib(dir) => Some(LibDb::open(dir)?),
        _ => None,
    };
    let target = args.target.clone();
    let connect = move || -> DbResult<Box<dyn Db>> {
        Ok(match (&target, &lib) {
            (_, Some(lib)) => Box::new(lib.clone()),
            (Target::Resp(addr), _) => Box::new(RespDb::connect(addr, Flavor::Toykv)?),
            (Target::Redis(addr), _) => Box::new(RespDb::connect(addr, Flavor::Redis)?),
            (Target::Lib(_), None) => return Err("library store not open".into()),
        })
    };
    let report = |workload: String, phase: Phase| Report {
        store: store.clone(),
        target: args.target.to_string(),
        workload,
        records: args.records,
        operations: args.operations,
        threads: settings.threads,
        durability: durability.into(),
        phase,
        extra: Vec::new(),
    };
    let mut reports = Vec::new();
    writeln!(
        out,
        "# toykv bench: target {}, {} records, {} operations per workload, {} threads",
        args.target, args.records, args.operations, settings.threads
    )?;
    if !args.no_load {
        let phase = load(&connect, &settings)?;
        writeln!(out, "# load")?;
        write!(out, "{}", phase.ycsb())?;
        reports.push(report("load".into(), phase));
    }
    for w in workloads {
        let phase = run(&connect, &settings, w)?;
        writeln!(out, "# workload {w}")?;
        write!(out, "{}", phase.ycsb())?;
        if let Some(e) = &phase.first_error {
            writeln!(out, "# first error: {e}")?;
        }
        reports.push(report(w.to_string(), phase));
        out.flush()?;
    }
    if let Some(path) = &args.json {
        let docs: Vec<String> = reports.iter().map(Report::to_json).collect();
        std::fs::write(path, format!("[{}]\n", docs.join(",\n")))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
