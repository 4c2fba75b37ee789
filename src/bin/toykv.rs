//! `toykv`: the admin tool for a toykv data directory no server has open. A thin front end over
//! [`toykv::admin`] (check, dump, stats) and [`toykv::Store`] (get, put, del, scan); run
//! `toykv --help`.

use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use toykv::admin::{self, readable};
use toykv::format::{BUFFER_NAME, STORE_NAME};
use toykv::keymode::KeyMode;
use toykv::{Error, Key, Options, Store};

const ABOUT: &str = "Admin tool for a toykv data directory (use it while no server has the \
                     directory open)";

const LONG_ABOUT: &str = "\
Admin tool for a toykv data directory. It works on the files directly, so it refuses to run \
while a server (or any store) has the directory open: the directory lock says so.

check, dump and stats only read. get, put, del and scan open the store as the server does, \
which recovers it after a crash (drops a torn unsynced tail) before answering.

Keys are mapped as the server maps them, with the key mode recorded in the directory's \
KEYMODE file (bytes when none is): in bytes mode a key is at most 8 bytes, padded with zero \
bytes; in numeric mode its trailing decimal digits are the key. Values are printed as text \
when they are printable UTF-8, otherwise as 0x followed by hex.

Exit codes: 0 success; 1 check found corruption, or get/del found no such key; 2 usage or \
I/O error (messages start with 'toykv:').";

#[derive(Parser, Debug)]
#[command(name = "toykv", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Verify every file, header, sync mark, key record and value, changing nothing.
    ///
    /// Prints each problem with its file and byte offset. A torn unsynced tail (records after
    /// the sync mark that open would drop) is a warning; damage before the sync mark, missing
    /// files, bad headers and damaged values are errors. Exits 0 when there are no errors, 1
    /// when there are.
    Check {
        /// The data directory.
        dir: PathBuf,
    },
    /// Print every written key record in log order, one line each, changing nothing.
    ///
    /// Each line: shard, sequence number in the shard's log, put or del, the key (hex, then as the key mode shows it),
    /// and for a put its slot, length and a value preview. Flags at the end of a line:
    /// [unsynced], [value checksum mismatch], [corrupt: ...], [dropped at open: ...].
    Dump {
        /// The data directory.
        dir: PathBuf,
    },
    /// Print counts and sizes in total and per shard: files, bytes, records, live keys, dead
    /// records, sections, banks, sync marks. Changes nothing.
    Stats {
        /// The data directory.
        dir: PathBuf,
    },
    /// Copy the store in SRC to the new directory DEST, consistently: the same snapshot a
    /// replica's full sync gets (written to DEST.partial, synced, then renamed). `toykv check
    /// DEST` passes on it and opening it gives every write SRC held. SRC must not be open
    /// (stop the server, or use its BGSAVE instead).
    Backup {
        /// The data directory to copy.
        src: PathBuf,
        /// Where the copy goes (must not exist).
        dest: PathBuf,
        /// Read and write value sections through the page cache instead of O_DIRECT.
        #[arg(long)]
        no_direct_io: bool,
    },
    /// Print the value of KEY (exit 1 if there is none).
    Get {
        #[command(flatten)]
        open: Open,
        /// The key.
        key: OsString,
    },
    /// Set KEY to VALUE (at most 256 bytes) and sync. Creates the store if DIR has none.
    Put {
        #[command(flatten)]
        open: Open,
        /// The key.
        key: OsString,
        /// The value: its bytes as given, or hex with --hex.
        value: OsString,
        /// VALUE is hexadecimal (an optional 0x, then two digits per byte).
        #[arg(long)]
        hex: bool,
    },
    /// Delete KEY and sync (exit 1 if there was none).
    Del {
        #[command(flatten)]
        open: Open,
        /// The key.
        key: OsString,
    },
    /// Print the keys from FROM to TO (inclusive; the ends when left out) with their values,
    /// in key order, one "KEY<tab>VALUE" line each.
    Scan {
        #[command(flatten)]
        open: Open,
        /// The first key.
        from: Option<OsString>,
        /// The last key.
        to: Option<OsString>,
        /// Print at most N keys.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Run YCSB workloads A-F against the library (a data directory) or a RESP server, and
    /// print YCSB's report: throughput and per-operation average, p95, p99 and max latency.
    Bench(toykv::ycsb::cli::BenchArgs),
}

/// How get, put, del and scan open the store.
#[derive(Args, Debug)]
struct Open {
    /// The data directory.
    dir: PathBuf,
    /// Read and write value sections through the page cache (with fdatasync) instead of
    /// O_DIRECT, for file systems that refuse O_DIRECT.
    #[arg(long)]
    no_direct_io: bool,
    /// The key mode (bytes or numeric). It must match the one recorded in DIR; put records it
    /// when none is (bytes by default).
    #[arg(long, value_name = "MODE")]
    key_mode: Option<KeyMode>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(Fail::Quiet) => ExitCode::SUCCESS,
        Err(Fail::Msg(msg)) => {
            eprintln!("toykv: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Why a command failed.
enum Fail {
    /// Standard output was closed (a pipe into `head`): stop without a message.
    Quiet,
    /// Print this and exit 2.
    Msg(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        match &e {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe => Fail::Quiet,
            Error::Locked { .. } => Fail::Msg(format!(
                "{e}: stop the server first (this tool works only on a directory no store has \
                 open)"
            )),
            _ => Fail::Msg(e.to_string()),
        }
    }
}

impl From<String> for Fail {
    fn from(e: String) -> Self {
        Fail::Msg(e)
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::BrokenPipe => Fail::Quiet,
            _ => Fail::Msg(format!("writing the output: {e}")),
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Fail> {
    let mut out = BufWriter::new(io::stdout().lock());
    let code = match command {
        Command::Bench(args) => {
            toykv::ycsb::cli::bench(&args, &mut out).map_err(|e| Fail::Msg(e.to_string()))?;
            ExitCode::SUCCESS
        }
        Command::Check { dir } => {
            let report = admin::check(&dir)?;
            writeln!(out, "{report}")?;
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Dump { dir } => {
            admin::dump(&dir, &mut out)?;
            ExitCode::SUCCESS
        }
        Command::Backup {
            src,
            dest,
            no_direct_io,
        } => {
            if !src.join(STORE_NAME).exists() {
                return Err(Fail::Msg(format!(
                    "no toykv store in {} (no {STORE_NAME} file)",
                    src.display()
                )));
            }
            let store = Store::open_with(&src, Options::new().direct_io(!no_direct_io))?;
            let started = std::time::Instant::now();
            let bytes = store.backup(&dest)?;
            let keys = store.len();
            store.close()?;
            writeln!(
                out,
                "backed up {keys} keys from {} to {} ({bytes} bytes of snapshot in {:.2} s)",
                src.display(),
                dest.display(),
                started.elapsed().as_secs_f64()
            )?;
            ExitCode::SUCCESS
        }
        Command::Stats { dir } => {
            writeln!(out, "{}", admin::stats(&dir)?)?;
            ExitCode::SUCCESS
        }
        Command::Get { open, key } => {
            let (store, mode) = open.store(false)?;
            match store.get(mode.key(key.as_bytes())?)? {
                Some(v) => {
                    writeln!(out, "{}", readable(&v))?;
                    ExitCode::SUCCESS
                }
                None => not_found(&key),
            }
        }
        Command::Put {
            open,
            key,
            value,
            hex,
        } => {
            let (store, mode) = open.store(true)?;
            let value = if hex {
                parse_hex(&value.to_string_lossy())?
            } else {
                value.as_bytes().to_vec()
            };
            store.put(mode.key(key.as_bytes())?, value)?;
            store.close()?;
            ExitCode::SUCCESS
        }
        Command::Del { open, key } => {
            let (store, mode) = open.store(false)?;
            let existed = store.delete(mode.key(key.as_bytes())?)?;
            store.close()?;
            if existed {
                ExitCode::SUCCESS
            } else {
                not_found(&key)
            }
        }
        Command::Scan {
            open,
            from,
            to,
            limit,
        } => {
            let (store, mode) = open.store(false)?;
            let bound = |k: Option<OsString>| -> Result<Bound<Key>, String> {
                k.map_or(Ok(Bound::Unbounded), |k| {
                    mode.key(k.as_bytes()).map(Bound::Included)
                })
            };
            let range = (bound(from)?, bound(to)?);
            for item in store.scan(range).take(limit.unwrap_or(usize::MAX)) {
                let (key, value) = item?;
                let key = mode.show(key);
                writeln!(out, "{}\t{}", key.escape_ascii(), readable(&value))?;
            }
            ExitCode::SUCCESS
        }
    };
    out.flush()?;
    Ok(code)
}

fn not_found(key: &OsString) -> ExitCode {
    eprintln!("toykv: key '{}' not found", key.to_string_lossy());
    ExitCode::from(1)
}

impl Open {
    /// Opens the store in `dir` with the section size and shard count it was created with
    /// (open takes both from its STORE file), and its key mode.
    /// Only `put` (`create`) may create a store, and it records the key mode if none is.
    fn store(&self, create: bool) -> Result<(Store, KeyMode), Fail> {
        let dir = &self.dir;
        let mode = if create {
            KeyMode::settle(dir, self.key_mode)?
        } else {
            // A version 1 directory (a buffer at its top, no STORE) is left to open to refuse.
            if !dir.join(STORE_NAME).exists() && !dir.join(BUFFER_NAME).exists() {
                return Err(Fail::Msg(format!(
                    "no toykv store in {} (no {STORE_NAME} file; `toykv check` tells more)",
                    dir.display()
                )));
            }
            recorded_mode(dir, self.key_mode)?
        };
        // Unset, the section size and shard count are the store's own.
        let options = Options::new().direct_io(!self.no_direct_io);
        Ok((Store::open_with(dir, options)?, mode))
    }
}

/// The mode recorded in `dir` (bytes when none), which `wanted` must match if given.
fn recorded_mode(dir: &Path, wanted: Option<KeyMode>) -> Result<KeyMode, String> {
    let recorded = KeyMode::recorded(dir).map_err(|e| format!("reading the key mode: {e}"))?;
    match (recorded, wanted) {
        (Some(r), Some(w)) if r != w => {
            Err(format!("{} uses --key-mode {r}, not {w}", dir.display()))
        }
        (Some(r), _) => Ok(r),
        (None, w) => Ok(w.unwrap_or_default()),
    }
}

/// Bytes from hex digits, with an optional `0x`.
fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if !digits.len().is_multiple_of(2) {
        return Err(format!("hex value '{s}' has an odd number of digits"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .filter(|d| d.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("'{s}' is not hexadecimal"))
        })
        .collect()
}
