//! The server's command line: flags (each with an environment variable), logging, signals.
//! `examples/server.rs` is just [`main`].

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use super::{Config, Server};
use crate::format::{MAX_SHARDS, STORE_NAME};
use crate::keymode::KeyMode;
use crate::resp::Limits;
use crate::{Durability, Options, Store};

/// toykv server: a Redis-protocol (RESP2/RESP3) server over a toykv data directory.
///
/// Every setting can also come from the environment variable shown. Logs go to stderr;
/// set their level with RUST_LOG (error, warn, info, debug, trace; default info).
/// SIGINT, SIGTERM and the SHUTDOWN command stop it gracefully: no new connections, requests
/// in flight finish, the store is synced, the replication position is kept in the data
/// directory (REPLPOS, so that replicas continue partially after the restart), exit status 0.
#[derive(Parser, Debug, Clone)]
#[command(name = "toykv-server", version)]
pub struct Flags {
    /// TCP port to listen on.
    #[arg(long, env = "SERVER_PORT", default_value_t = 8888)]
    pub port: u16,

    /// Address to listen on. Anything but loopback needs --requirepass (or --protected-mode no).
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Data directory (created if missing).
    #[arg(long, env = "DB_DIR", default_value = "./toydb")]
    pub dir: PathBuf,

    /// Password clients must give with AUTH (or HELLO 3 AUTH default PASSWORD).
    #[arg(long, env = "REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,

    /// Refuse to listen beyond loopback without a password (yes or no).
    #[arg(long, env = "PROTECTED_MODE", default_value = "yes", value_parser = yes_no, action = clap::ArgAction::Set)]
    pub protected_mode: bool,

    /// How client keys become 8-byte store keys: bytes (at most 8 bytes, zero-padded) or
    /// numeric (trailing decimal digits as a number, for keys like key:000000012345). Fixed
    /// when the directory is first served; defaults to what it was created with, else bytes.
    #[arg(long, env = "KEY_MODE")]
    pub key_mode: Option<KeyMode>,

    /// Most clients connected at once; more are told so and closed.
    #[arg(long, env = "MAX_CLIENTS", default_value_t = 1000)]
    pub max_clients: usize,

    /// Largest request (one command) in bytes.
    #[arg(long, env = "MAX_REQUEST", default_value_t = 1 << 20)]
    pub max_request: usize,

    /// Close clients idle (or not reading replies) this many seconds; 0 = never.
    #[arg(long, env = "IDLE_TIMEOUT", default_value_t = 300)]
    pub idle_timeout: u64,

    /// Close a subscriber whose published messages not yet written pass this many bytes
    /// (Redis's client-output-buffer-limit pubsub).
    #[arg(long, env = "PUBSUB_LIMIT", value_name = "BYTES", default_value_t = 32 << 20)]
    pub pubsub_limit: usize,

    /// Bytes of the read cache (O_DIRECT bypasses the kernel's page cache, so hot values are
    /// cached here); 0 turns the cache off. Default: a quarter of the machine's memory or of
    /// the process's memory cgroup limit, whichever is smaller.
    #[arg(long, env = "CACHE_BYTES", value_name = "BYTES")]
    pub cache_bytes: Option<usize>,

    /// Read and write value sections with O_DIRECT (true or false). Turn off on file systems
    /// that refuse O_DIRECT; buffered I/O with fdatasync is used instead.
    #[arg(long, env = "DIRECT_IO", default_value_t = true, action = clap::ArgAction::Set)]
    pub direct_io: bool,

    /// What a write survives once it is acknowledged. none: a crash of the server process
    /// (the kernel writes it back; power loss may lose what was not synced yet); always: power
    /// loss too (in the journal before the reply; concurrent writers share its flushes); periodic or
    /// periodic:MS: as none, plus a sync of everything every MS milliseconds (default 1000), so
    /// power loss loses at most about that much.
    #[arg(
        long,
        env = "DURABILITY",
        default_value = "periodic:1000",
        value_name = "none|always|periodic[:MS]"
    )]
    pub durability: Durability,

    /// Number of shards (1 to 256) of a new store; default: one per core. An existing store
    /// keeps the number it was created with (recorded in its STORE file).
    #[arg(long, env = "SHARDS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SHARDS)))]
    pub shards: Option<u32>,

    /// Turn background garbage collection off (in the environment: NO_GC=true): the space of
    /// overwritten and deleted values is then not reclaimed while the server runs.
    #[arg(long, env = "NO_GC")]
    pub no_gc: bool,

    /// Start as a replica of this master: "HOST PORT" or HOST:PORT. Its data replaces this
    /// directory's (a full sync) unless a partial resync is possible.
    #[arg(long, env = "REPLICAOF", value_name = "HOST PORT", value_parser = parse_master)]
    pub replicaof: Option<(String, u16)>,

    /// The password to give the master (its --requirepass).
    #[arg(long, env = "MASTERAUTH", hide_env_values = true)]
    pub masterauth: Option<String>,

    /// Sentinel promotes the replica with the lowest priority first; 0: never this one.
    #[arg(long, env = "REPLICA_PRIORITY")]
    pub replica_priority: Option<u32>,

    /// A configuration file: read at start (replicaof, masterauth, replica-priority; flags
    /// win), and where CONFIG REWRITE (sent by Sentinel) writes the role.
    #[arg(long, env = "CONFIG_FILE", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Bytes of the replication backlog: how far behind a replica may fall and still continue
    /// without a full sync.
    #[arg(long, env = "REPL_BACKLOG_SIZE", default_value_t = super::DEFAULT_BACKLOG)]
    pub repl_backlog_size: usize,
}

/// Parses "HOST PORT" or "HOST:PORT".
fn parse_master(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .trim()
        .rsplit_once(' ')
        .or_else(|| s.trim().rsplit_once(':'))
        .ok_or_else(|| format!("expected \"HOST PORT\" or HOST:PORT, got {s:?}"))?;
    let port = port
        .trim()
        .parse()
        .map_err(|_| format!("{port:?} is not a port"))?;
    Ok((host.trim().to_string(), port))
}

impl Flags {
    /// The store options these flags ask for, for the data directory `dir`: the shard count
    /// only if `dir` holds no store yet. The section size is left unset, so the store opens
    /// with the one it was created with.
    pub fn options(&self, dir: &std::path::Path) -> Options {
        let mut options = Options::new()
            .direct_io(self.direct_io)
            .durability(self.durability)
            .gc(!self.no_gc);
        if let Some(n) = self.cache_bytes {
            options = options.cache_bytes(n);
        }
        if let Some(n) = self.shards
            && !dir.join(STORE_NAME).exists()
        {
            options = options.shards(n);
        }
        options
    }
}

fn yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("expected yes or no, got '{s}'")),
    }
}

/// Parses flags, sets up logging, serves until a signal or SHUTDOWN; the exit status says how
/// it went.
pub fn main() -> ExitCode {
    let flags = Flags::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(flags, signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the store and serves it with `flags` until `shutdown` completes.
pub async fn serve(flags: Flags, shutdown: impl Future<Output = ()>) -> crate::Result<()> {
    let addr = std::net::SocketAddr::new(flags.bind, flags.port);
    // Refuse before touching the data directory (checked again on the bound address).
    config(&flags).check_exposure(addr)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error::Net {
            op: "bind",
            addr: addr.to_string(),
            source: e,
        })?;
    serve_on(flags, listener, shutdown).await
}

/// As [`serve`], on a listener already bound (tests bind port 0): `flags.bind` and
/// `flags.port` are ignored for the listener's address.
pub async fn serve_on(
    flags: Flags,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> crate::Result<()> {
    let addr = listener.local_addr().map_err(|e| crate::Error::Net {
        op: "local_addr",
        addr: flags.bind.to_string(),
        source: e,
    })?;
    let mut config = config(&flags);
    if let Some(path) = &flags.config {
        let file = super::conf::read(path)?;
        config.replicaof = config.replicaof.or(file.replicaof);
        config.masterauth = config.masterauth.or(file.masterauth);
        config.replica_priority = flags
            .replica_priority
            .or(file.replica_priority)
            .unwrap_or(config.replica_priority);
    }
    config.check_exposure(addr)?;
    config.key_mode = KeyMode::settle(&config.dir, flags.key_mode)
        .map_err(|why| crate::Error::Refused { why })?;
    let key_mode = config.key_mode;
    let options = flags.options(&config.dir);
    // A replica reopens the copy a full sync made with the shard count that copy records.
    let mut reopen = options.clone();
    reopen.shards = None;
    config.store_options = reopen;
    let store = Arc::new(Store::open_with(&config.dir, options)?);
    let stats = store.stats();
    if let Some(asked) = flags.shards
        && u64::from(asked) != stats.shards
    {
        warn!(
            shards = stats.shards,
            asked,
            "the store keeps the shard count it was created with; --shards applies only to a new store"
        );
    }
    info!(
        keys = store.len(),
        %key_mode,
        shards = stats.shards,
        durability = %stats.durability,
        gc = !flags.no_gc,
        "store opened"
    );
    Server::new(store, config).run(listener, shutdown).await
}

/// The server settings of `flags` (the key mode is settled against the directory later).
fn config(flags: &Flags) -> Config {
    Config {
        dir: flags.dir.clone(),
        bind: flags.bind.to_string(),
        port: flags.port,
        max_clients: flags.max_clients,
        limits: Limits {
            max_request: flags.max_request,
            ..Limits::default()
        },
        idle_timeout: (flags.idle_timeout > 0).then(|| Duration::from_secs(flags.idle_timeout)),
        password: flags.requirepass.clone(),
        protected: flags.protected_mode,
        key_mode: KeyMode::default(),
        replicaof: flags.replicaof.clone(),
        masterauth: flags.masterauth.clone(),
        replica_priority: flags.replica_priority.unwrap_or(100),
        config_file: flags.config.clone(),
        backlog_bytes: flags.repl_backlog_size,
        store_options: Options::new(),
        pubsub_limit: flags.pubsub_limit,
    }
}

/// Completes on SIGINT or SIGTERM.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop the server with SHUTDOWN");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
    }
}
