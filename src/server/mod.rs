//! The Redis-protocol server.
//!
//! [`Server::run`] takes an already-bound listener and a shutdown future (tests bind port 0;
//! the `server` example passes SIGINT/SIGTERM). Each connection is a task; commands run
//! against the shared [`Store`] and replies go back in RESP2, or RESP3 after `HELLO 3`.
//! Pipelined commands are parsed and answered in batches: one write per batch of replies.
//!
//! - Nothing on the runtime's worker threads waits on the disk (see `connection`): commands
//!   that cannot wait run there, the first one that might (and everything after it in the
//!   pipeline) runs on a blocking thread, GETs that need the disk are read there in one
//!   batch, and a pipeline's writes wait once for the journal through
//!   [`Store::notify`](crate::Store::notify), whose committer thread leads one commit after
//!   another while anyone waits.
//! - A gate (an async read-write lock) is held shared by every connection running commands
//!   and exclusively by one running `EXEC`, so that a transaction runs alone.
//! - [`resp`](crate::resp): the wire format; [`command`]: what each command does (one file per family);
//!   `connection`: the per-client read/execute/write loop with its limits;
//!   [`keymode`](crate::keymode): client keys to store keys; [`stats`]: the counters behind `INFO`;
//!   [`glob`]: `MATCH` patterns; `clients`: the registry of live connections (`CLIENT LIST`,
//!   `CLIENT KILL`); `pubsub`: channels, patterns and delivery of published messages.
//! - Pub/sub: `PUBLISH` never waits; each connection writes the messages pushed to it while it
//!   waits for its next command, and one whose unwritten messages pass
//!   [`Config::pubsub_limit`] is closed (Redis's `client-output-buffer-limit pubsub`).
//! - Limits: a connection cap (past it a client gets an error and is closed), a maximum request
//!   size checked before anything is allocated for it, an idle timeout that also bounds how long
//!   a reply may wait for a client that does not read.
//! - Security: a server listening on anything but loopback refuses to start without a password
//!   unless protected mode is turned off, as Redis does. `AUTH` compares in constant time.
//! - Shutdown (the future, or the `SHUTDOWN` command): stop accepting, let every connection
//!   finish the commands it has read, take the gate (nothing changes the store any more), let
//!   a master's replicas acknowledge the whole stream, stop replication, sync the store, keep
//!   the replication position in the data directory (`REPLPOS`, read and removed at the next
//!   start; see `repl`), return.

mod clients;
pub mod command;
pub mod conf;
mod connection;
pub mod glob;
pub mod launch;
mod pubsub;
mod repl;
pub mod stats;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info, warn};

use crate::Store;
use crate::error::{Error, Result};
use crate::keymode::KeyMode;
use crate::resp::Limits;
use stats::{CommandStats, Stats};

/// How long shutdown waits for connections to finish before syncing anyway.
const DRAIN: Duration = Duration::from_secs(5);
/// How long shutdown then waits for the gate (every command, and a replica's link, done):
/// without it the store may still change, and no replication position is kept.
const SHUTDOWN_GATE: Duration = Duration::from_secs(2);
/// How long a master's shutdown waits for its replicas to acknowledge the whole stream, so
/// that after its restart they continue partially from the position it keeps.
const SHUTDOWN_ACKS: Duration = Duration::from_secs(2);

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The data directory (reported by `INFO` and `CONFIG GET dir`).
    pub dir: PathBuf,
    /// The address asked for (reported by `CONFIG GET bind`).
    pub bind: String,
    /// The port (set from the listener by [`Server::run`]).
    pub port: u16,
    /// Most clients connected at once.
    pub max_clients: usize,
    /// Protocol limits.
    pub limits: Limits,
    /// Close a client idle (or not reading its replies) this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// The password `AUTH` must give, if any.
    pub password: Option<String>,
    /// Refuse to listen beyond loopback without a password.
    pub protected: bool,
    /// How client keys map to store keys.
    pub key_mode: KeyMode,
    /// Replicate from this master (`host`, `port`) from the start.
    pub replicaof: Option<(String, u16)>,
    /// The password a replica gives its master.
    pub masterauth: Option<String>,
    /// Sentinel's `slave_priority`: lower is promoted first; 0 never.
    pub replica_priority: u32,
    /// The configuration file `CONFIG REWRITE` writes the role to, if any.
    pub config_file: Option<PathBuf>,
    /// Bytes of the replication backlog.
    pub backlog_bytes: usize,
    /// How a replica reopens its store after a full sync.
    pub store_options: crate::Options,
    /// Most bytes of published messages a subscriber may have waiting to be written; past it
    /// the subscriber is closed (Redis's `client-output-buffer-limit pubsub`, 32 MiB hard).
    pub pubsub_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("toydb"),
            bind: "127.0.0.1".into(),
            port: 8888,
            max_clients: 1000,
            limits: Limits::default(),
            idle_timeout: Some(Duration::from_secs(300)),
            password: None,
            protected: true,
            key_mode: KeyMode::Bytes,
            replicaof: None,
            masterauth: None,
            replica_priority: 100,
            config_file: None,
            backlog_bytes: DEFAULT_BACKLOG,
            store_options: crate::Options::new(),
            pubsub_limit: 32 << 20,
        }
    }
}

/// Bytes of the replication backlog by default.
pub const DEFAULT_BACKLOG: usize = 64 << 20;

impl Config {
    /// Protected mode: refuses to serve on `addr` beyond loopback without a password.
    pub fn check_exposure(&self, addr: std::net::SocketAddr) -> Result<()> {
        if addr.ip().is_loopback() || self.password.is_some() || !self.protected {
            return Ok(());
        }
        Err(Error::Refused {
            why: format!(
                "listening on {addr} (beyond loopback) without a password: set one with \
                 --requirepass (or REQUIREPASS), or turn protected mode off with \
                 --protected-mode no"
            ),
        })
    }
}

/// State every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The store, swapped whole by a replica's full sync (see [`store`](Self::store)).
    store: arc_swap::ArcSwap<Store>,
    /// Replication: role, stream, replicas.
    pub(crate) repl: Arc<repl::Repl>,
    /// Set when the server shuts down.
    stopping: std::sync::atomic::AtomicBool,
    /// This, for commands that start threads.
    this: std::sync::Weak<Shared>,
    /// Background saves (`BGSAVE`, `LASTSAVE`).
    pub(crate) saves: parking_lot::Mutex<Saves>,
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    /// One per entry of [`command::COMMANDS`].
    pub(crate) commands: Vec<CommandStats>,
    pub(crate) clients: AtomicUsize,
    pub(crate) started: Instant,
    /// Notified by the `SHUTDOWN` command.
    pub(crate) stop: Notify,
    /// Held shared while a connection runs commands, exclusively while one runs `EXEC`.
    pub(crate) gate: Arc<tokio::sync::RwLock<()>>,
    /// Every live connection.
    pub(crate) registry: clients::Clients,
    /// Every pub/sub subscription.
    pub(crate) pubsub: pubsub::PubSub,
}

impl Shared {
    /// Registers connection `id` (see [`clients::Clients::register`]): the guard that removes
    /// it (and its subscriptions) when dropped, its entry, and its inbox.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: u64,
        addr: Option<std::net::SocketAddr>,
        laddr: Option<std::net::SocketAddr>,
        fd: i32,
    ) -> (Registered, Arc<clients::Client>, clients::Inbox) {
        let (client, inbox) = self.registry.register(id, addr, laddr, fd);
        let guard = Registered {
            shared: self.clone(),
            id,
        };
        (guard, client, inbox)
    }
}

/// A connection's place in the registry and in pub/sub, given up when it is dropped, however
/// the connection ends.
pub(crate) struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        // The registry first: once a subscriber is gone from pub/sub (NUMSUB), it is gone
        // from CLIENT LIST too.
        self.shared.registry.remove(self.id);
        self.shared.pubsub.forget(self.id);
    }
}

impl Shared {
    /// The store now.
    pub(crate) fn store(&self) -> arc_swap::Guard<Arc<Store>> {
        self.store.load()
    }

    /// Replaces the store (a replica's full sync, with the gate held exclusively).
    pub(crate) fn set_store(&self, store: Arc<Store>) {
        self.store.store(store);
    }

    /// This, shared (`None` once the server has stopped).
    pub(crate) fn arc(&self) -> Option<Arc<Shared>> {
        self.this.upgrade()
    }

    /// Whether the server is shutting down.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// What `BGSAVE` did last.
#[derive(Debug, Default)]
pub(crate) struct Saves {
    /// Whether one runs now.
    pub(crate) running: bool,
    /// When the last one that succeeded began (Unix seconds).
    pub(crate) last_ok: u64,
    /// Whether the last one failed.
    pub(crate) failed: bool,
    /// Where the last one went.
    pub(crate) last_dir: Option<PathBuf>,
}

/// A server over one store.
#[derive(Debug)]
pub struct Server {
    store: Arc<Store>,
    config: Config,
}

impl Server {
    /// A server for `store` with `config`.
    pub fn new(store: Arc<Store>, config: Config) -> Server {
        Server { store, config }
    }

    /// Serves clients from `listener` until `shutdown` completes or a client sends
    /// `SHUTDOWN`; then stops accepting, lets connections finish what they have read, syncs
    /// the store and keeps the replication position (see the module doc). Starts from the
    /// position a clean shutdown kept in `config.dir`, if any (read and removed first).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let addr = listener.local_addr().map_err(|e| Error::Net {
            op: "local_addr",
            addr: self.config.bind.clone(),
            source: e,
        })?;
        let mut config = self.config;
        config.port = addr.port();
        config.check_exposure(addr)?;
        repl::clean_leftovers(&config.dir);
        if let Err(why) = repl::check_room(&config.dir) {
            warn!("this server cannot become a replica: {why}");
        }
        // Read and removed before any command runs or any write is applied: a crash from
        // here on leaves no position to reuse.
        let kept = repl::take_position(&config.dir, self.store.len() as u64);
        let repl = Arc::new(repl::Repl::new(
            config.key_mode,
            config.backlog_bytes,
            kept.as_ref(),
        ));
        self.store.set_feed(repl.clone());
        let pubsub = pubsub::PubSub::new(config.pubsub_limit);
        let shared = Arc::new_cyclic(|this| Shared {
            this: this.clone(),
            store: arc_swap::ArcSwap::new(self.store),
            repl,
            stopping: std::sync::atomic::AtomicBool::new(false),
            saves: parking_lot::Mutex::new(Saves::default()),
            config,
            stats: Stats::default(),
            commands: command::COMMANDS
                .iter()
                .map(|_| CommandStats::default())
                .collect(),
            clients: AtomicUsize::new(0),
            started: Instant::now(),
            stop: Notify::new(),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            registry: clients::Clients::default(),
            pubsub,
        });
        info!(%addr, dir = %shared.config.dir.display(), "toykv listening");
        if let Some((host, port)) = shared.config.replicaof.clone()
            && let Some(epoch) = shared.repl.follow(host, port)
        {
            repl::start_link(shared.clone(), epoch);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let next_id = AtomicU64::new(1);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = &mut shutdown => break,
                () = shared.stop.notified() => break,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            stats::add(&shared.stats.connections, 1);
            if shared.clients.load(Ordering::Relaxed) >= shared.config.max_clients {
                stats::add(&shared.stats.rejected, 1);
                warn!(%peer, "refused: max number of clients reached");
                // Best effort, never waiting on the client.
                let _ = socket.try_write(b"-ERR max number of clients reached\r\n");
                continue;
            }
            let _ = socket.set_nodelay(true);
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let conn = connection::Connection::new(shared.clone(), socket, id, stop_rx.clone());
            let done = done_tx.clone();
            tokio::spawn(async move {
                conn.serve().await;
                drop(done);
            });
        }
        info!("shutting down: no new connections; finishing requests in flight");
        shared.stopping.store(true, Ordering::Relaxed);
        drop(listener);
        let _ = stop_tx.send(true);
        drop(done_tx);
        if tokio::time::timeout(DRAIN, done_rx.recv()).await.is_err() {
            warn!("connections still open after {DRAIN:?}; syncing anyway");
        }
        // Held to the end: no command runs, and a replica's link applies nothing, from here.
        let gate = tokio::time::timeout(SHUTDOWN_GATE, shared.gate.clone().write_owned())
            .await
            .ok();
        if gate.is_none() {
            warn!(
                "commands still running after {SHUTDOWN_GATE:?}; the replication position is \
                 not kept (replicas will need a full sync after the restart)"
            );
        } else {
            settle_replicas(&shared).await;
        }
        shared.repl.stop();
        let kept = gate
            .as_ref()
            .and_then(|_| shared.repl.keep(shared.store().len() as u64));
        // The sync waits on the disk: off the runtime's worker threads.
        let store = shared.store().clone();
        let dir = shared.config.dir.clone();
        tokio::task::spawn_blocking(move || {
            store.sync()?;
            if let Some(p) = kept {
                match repl::save_position(&dir, &p) {
                    Ok(()) => info!(
                        replid = %p.replid,
                        offset = p.offset,
                        "replication position kept for the restart"
                    ),
                    Err(e) => warn!(
                        dir = %dir.display(),
                        "cannot keep the replication position ({e}); replicas will need a \
                         full sync after the restart"
                    ),
                }
            }
            Ok::<(), Error>(())
        })
        .await
        .map_err(|e| Error::Refused {
            why: format!("the final sync panicked: {e}"),
        })??;
        info!("store synced; bye");
        drop(gate);
        Ok(())
    }
}

/// A master's shutdown, with the gate held (the stream grows no more): asks its replicas to
/// acknowledge and waits up to [`SHUTDOWN_ACKS`] until each has the whole stream, so that
/// after a restart they continue from the position kept (Redis waits the same way, up to
/// its `shutdown-timeout`).
async fn settle_replicas(shared: &Shared) {
    let n = shared.repl.attached();
    if n == 0 {
        return;
    }
    let target = shared.repl.wait_target();
    let got = shared.repl.wait(target, n, Some(SHUTDOWN_ACKS)).await;
    if got < n {
        warn!(
            replicas = n,
            acknowledged = got,
            offset = target,
            "not every replica acknowledged the whole stream within {SHUTDOWN_ACKS:?}; those \
             behind will need a full sync after the restart"
        );
    } else {
        info!(
            replicas = n,
            offset = target,
            "replicas have the whole stream"
        );
    }
}
