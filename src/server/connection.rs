//! One client connection: read, parse, execute, reply — in batches.
//!
//! Bytes are read in chunks of at most [`CHUNK`]; every complete command in the buffer runs and
//! its reply is appended to one output buffer, written with a single write before the next
//! read (so a pipeline of N commands costs one read and one write). A command larger than the
//! request limit is refused by the parser before it is buffered. The idle timeout bounds the
//! wait for the next command, the time a command may take to arrive in full (counted from its
//! first byte, so a client trickling bytes cannot hold a connection forever), and the wait for
//! a client to take its replies, so a stalled client holds only its own task and buffers.
//!
//! While it waits for input the connection also waits for messages pushed to it (pub/sub) and
//! writes them out, as many as are waiting in one write, and for its close signal
//! (`CLIENT KILL`, or its pushed messages past their limit; see `clients`), which also ends
//! a wait for the client to take output. Messages waiting when a pipeline starts are written
//! before its replies. A subscribed connection waiting for a command is not idle (Redis exempts
//! pub/sub clients from its timeout too).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, error, warn};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard};

use super::clients::{Client, Inbox, Pushed};
use super::command::{self, Effects, Flow, Reply, Session};
use super::stats::add;
use super::{Registered, Shared};
use crate::Commit;
use crate::resp::{Frame, Limits, Proto, encode_bulk, parse_command};

/// Most bytes read at once.
const CHUNK: usize = 64 * 1024;

/// Most bytes of pushed messages gathered for one write.
const PUSH_BATCH: usize = 64 * 1024;

/// A client connection.
pub(crate) struct Connection {
    /// Removes the connection from the client registry and pub/sub. First, so that it is
    /// dropped before the socket: once a client sees its connection closed, it is gone from
    /// `CLIENT LIST` and `PUBSUB NUMSUB`.
    _registered: Registered,
    shared: Arc<Shared>,
    socket: TcpStream,
    session: Session,
    stop: watch::Receiver<bool>,
    /// Its entry in the client registry, and the messages pushed to it.
    client: Arc<Client>,
    inbox: Inbox,
}

/// Counts a connection while it lives.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a wait ended.
enum Wake {
    Read(std::io::Result<usize>),
    Idle,
    Stop,
    Pushed(Pushed),
    Closed(String),
}

impl Connection {
    pub(crate) fn new(
        shared: Arc<Shared>,
        socket: TcpStream,
        id: u64,
        stop: watch::Receiver<bool>,
    ) -> Self {
        shared.clients.fetch_add(1, Ordering::Relaxed);
        let authed = shared.config.password.is_none();
        let (registered, client, inbox) = shared.register(
            id,
            socket.peer_addr().ok(),
            socket.local_addr().ok(),
            std::os::fd::AsRawFd::as_raw_fd(&socket),
        );
        Connection {
            _registered: registered,
            shared,
            socket,
            session: Session {
                id,
                proto: Proto::Resp2,
                authed,
                client: Some(client.clone()),
                ..Session::default()
            },
            stop,
            client,
            inbox,
        }
    }

    /// Serves the client until it leaves, misbehaves, idles out, or the server stops.
    pub(crate) async fn serve(mut self) {
        let _count = Counted(self.shared.clone());
        let peer = self.socket.peer_addr().ok();
        debug!(id = self.session.id, ?peer, "connected");
        let why = self.run().await;
        if let Some(p) = self.session.psync.take() {
            self.hand_over(p);
            return;
        }
        debug!(
            id = self.session.id,
            ?peer,
            name = ?self.session.name.as_deref().map(String::from_utf8_lossy),
            lib = ?self.session.lib_name.as_deref().map(String::from_utf8_lossy),
            "closed: {why}"
        );
    }

    /// Gives the socket to replication after a `PSYNC` (see `repl::master`).
    fn hand_over(self, p: command::Psync) {
        let id = self.session.id;
        let port = self.session.replica_port;
        let socket = match self.socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!(id, "cannot hand a replica's socket over: {e}");
                return;
            }
        };
        let peer = socket.peer_addr().ok();
        let ip = peer.map_or_else(|| "?".into(), |a| a.ip().to_string());
        let port = port.or(peer.map(|a| a.port())).unwrap_or(0);
        super::repl::serve_replica(
            self.shared.clone(),
            socket,
            id,
            ip,
            port,
            p.replid,
            p.offset,
        );
    }

    async fn run(&mut self) -> String {
        let limits = self.shared.config.limits;
        let idle = self.shared.config.idle_timeout;
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut out: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; CHUNK];
        // When the unfinished command at the start of `buf` began to arrive.
        let mut partial_since: Option<Instant> = None;
        // Whether the last read cannot have completed a command (see below).
        let mut nothing_new = false;
        // Bytes of pushed messages in `out`.
        let mut pushed = 0;
        loop {
            // Run every complete command that is buffered.
            let (used, flow, broken) = if nothing_new {
                (0, Flow::Next, None)
            } else {
                pushed += self.take_pushed(&mut out);
                self.execute(&buf, &mut out, &limits).await
            };
            buf.drain(..used.min(buf.len()));
            partial_since = match (buf.is_empty(), used > 0, partial_since) {
                (true, _, _) => None,
                (false, false, Some(t)) => Some(t),
                (false, _, _) => Some(Instant::now()),
            };
            if !out.is_empty() {
                if let Err(why) = self.write(&out, idle).await {
                    return why;
                }
                out.clear();
                self.client.sent(std::mem::take(&mut pushed));
            }
            if let Some(why) = broken {
                return why;
            }
            match flow {
                Flow::Next => {}
                Flow::Close => return "QUIT".into(),
                Flow::Shutdown => {
                    self.shared.stop.notify_one();
                    return "SHUTDOWN".into();
                }
                Flow::Replicate => return "a replica's PSYNC".into(),
            }
            if *self.stop.borrow() {
                return "server shutting down".into();
            }
            if let Some(why) = self.client.closing() {
                return why;
            }
            let wait = match partial_since {
                None if self.client.subscribed() => None,
                _ => idle,
            };
            let wake = tokio::select! {
                r = self.socket.read(&mut chunk) => Wake::Read(r),
                () = deadline(wait, partial_since) => Wake::Idle,
                _ = self.stop.changed() => Wake::Stop,
                Some(m) = self.inbox.recv() => Wake::Pushed(m),
                why = self.client.closed() => Wake::Closed(why),
            };
            match wake {
                Wake::Read(Ok(0)) => return "client closed".into(),
                Wake::Read(Ok(n)) => {
                    add(&self.shared.stats.input_bytes, n as u64);
                    let new = &chunk[..n];
                    // An unfinished inline command ends only at a newline: until one arrives
                    // (or the line reaches the request limit) parsing again would find
                    // nothing, and rescanning the whole line on every read would make a long
                    // line sent in small pieces cost quadratic time.
                    nothing_new = buf.first().is_some_and(|&b| b != b'*')
                        && !new.contains(&b'\n')
                        && buf.len() + n < limits.max_request;
                    buf.extend_from_slice(new);
                }
                Wake::Read(Err(e)) => return format!("read error: {e}"),
                Wake::Idle if partial_since.is_some() => {
                    return "request not completed within the idle timeout".into();
                }
                Wake::Idle => return "idle timeout".into(),
                Wake::Stop => return "server shutting down".into(),
                Wake::Pushed(m) => {
                    pushed += m.len();
                    if self.deliver() {
                        m.encode(self.session.proto, &mut out);
                    }
                    pushed += self.take_pushed(&mut out);
                    // No new input: write the messages and wait again.
                    nothing_new = true;
                }
                Wake::Closed(why) => return why,
            }
        }
    }

    /// Runs the complete commands at the start of `buf`, appending replies to `out`; returns
    /// the bytes used, what to do next, and why to close if the input was malformed.
    async fn execute(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        limits: &Limits,
    ) -> (usize, Flow, Option<String>) {
        let mut used = 0;
        let mut commands = Vec::new();
        let mut broken = None;
        while let Some(rest) = buf.get(used..) {
            match parse_command(rest, limits) {
                Ok(Some((args, n))) => {
                    used += n;
                    if !args.is_empty() {
                        commands.push(args);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        let (replies, flow) = self.run_commands(commands).await;
        self.session.observe();
        let proto = self.session.proto;
        for reply in &replies {
            match reply {
                Reply::Frame(f) => f.encode(proto, out),
                Reply::Value(v) => encode_bulk(v, out),
                Reply::Frames(frames) => frames.iter().for_each(|f| f.encode(proto, out)),
                // Every read was done before the replies were encoded.
                Reply::Read(_) | Reply::Wait(..) => {
                    Frame::err("ERR internal error: a reply was not made").encode(proto, out)
                }
            }
        }
        let why = match broken {
            Some(e) if flow == Flow::Next => {
                add(&self.shared.stats.protocol_errors, 1);
                warn!(id = self.session.id, "protocol error: {e}");
                Frame::err(format!("ERR Protocol error: {e}")).encode(proto, out);
                Some(format!("protocol error: {e}"))
            }
            _ => None,
        };
        (used, flow, why)
    }

    /// Runs a pipeline of commands in order; their replies (none for SHUTDOWN) and what to do
    /// next. Commands run here, on the runtime's worker thread, as long as they cannot wait
    /// (see [`command::fast`]); GETs that need the disk leave a read behind. The first
    /// command that might wait, and everything after it, runs on a blocking thread, where
    /// the GETs' reads are also done, all in one batch. Writes wait for the journal once, at
    /// the end, off the worker threads: no reply to a write leaves before the write is as
    /// durable as the store promises. Every command holds the server's gate shared, and
    /// `EXEC` holds it exclusively, so that nothing interleaves with a transaction.
    async fn run_commands(&mut self, commands: Vec<Vec<Vec<u8>>>) -> (Vec<Reply>, Flow) {
        let shared = self.shared.clone();
        let mut gate = Gate::Shared {
            _held: shared.gate.clone().read_owned().await,
        };
        let mut effects = Effects::default();
        let mut replies: Vec<Reply> = Vec::with_capacity(commands.len());
        let mut writes = Vec::new();
        let mut flow = Flow::Next;
        let mut slow = commands.len();
        for (i, argv) in commands.iter().enumerate() {
            let before = effects.commit;
            let Some((reply, f)) = command::fast(&shared, &mut self.session, argv, &mut effects)
            else {
                slow = i;
                break;
            };
            if effects.commit != before {
                writes.push(replies.len());
            }
            let reply = match self.session.wait.take() {
                Some((target, n, timeout)) => Reply::Wait(target, n, timeout),
                None => reply,
            };
            if !matches!(f, Flow::Shutdown | Flow::Replicate) {
                replies.push(reply);
            }
            flow = f;
            if flow != Flow::Next {
                slow = commands.len();
                break;
            }
        }
        let reads = replies.iter().any(|r| matches!(r, Reply::Read(_)));
        let rest: Vec<Vec<Vec<u8>>> = commands.into_iter().skip(slow).collect();
        let mut frames: Vec<Option<Reply>>;
        if rest.is_empty() && !reads {
            frames = replies.into_iter().map(Some).collect();
            drop(gate);
        } else {
            if rest.iter().any(|argv| command::exclusive(argv)) {
                drop(gate);
                gate = Gate::Alone {
                    _held: shared.gate.clone().write_owned().await,
                };
            }
            let session = std::mem::take(&mut self.session);
            let job = {
                let shared = shared.clone();
                move || slow_path(&shared, session, replies, rest, effects, writes, gate)
            };
            match tokio::task::spawn_blocking(job).await {
                Ok(done) => {
                    self.session = done.session;
                    frames = done.frames;
                    effects = done.effects;
                    writes = done.writes;
                    if done.flow != Flow::Next {
                        flow = done.flow;
                    }
                }
                Err(e) => {
                    error!(id = self.session.id, "a command panicked: {e}");
                    let reply = Frame::err("ERR internal error; closing the connection");
                    return (vec![Reply::Frame(reply)], Flow::Close);
                }
            }
        }
        let waited = durable(&shared, effects.commit).await;
        // A write whose commit failed is not acknowledged.
        if let Err(e) = waited {
            let reply = command::storage(e);
            for &at in &writes {
                if let Some(f) = frames.get_mut(at) {
                    *f = Some(Reply::Frame(reply.clone()));
                }
            }
        }
        if effects.pressed {
            hold_back(&shared).await;
        }
        // WAITs, in order: each after the writes before it are durable here.
        for f in frames.iter_mut() {
            if let Some(Reply::Wait(target, n, timeout)) = f {
                let got = shared.repl.wait(*target, *n, *timeout).await;
                *f = Some(Reply::Frame(Frame::Integer(got as i64)));
            }
        }
        (frames.into_iter().flatten().collect(), flow)
    }

    /// Whether pushed messages are written: not to a RESP2 client no longer subscribed (one
    /// published just before it unsubscribed), which would take it for a reply.
    fn deliver(&self) -> bool {
        self.session.proto == Proto::Resp3 || self.client.subscribed()
    }

    /// Appends the pushed messages waiting (up to [`PUSH_BATCH`]) to `out`; their bytes.
    fn take_pushed(&mut self, out: &mut Vec<u8>) -> usize {
        let deliver = self.deliver();
        self.inbox
            .drain(self.session.proto, deliver, out, PUSH_BATCH)
    }

    /// Writes `out`, giving up after the idle timeout (a client that does not read) or when
    /// the connection is asked to close.
    async fn write(&mut self, out: &[u8], idle: Option<Duration>) -> Result<(), String> {
        let socket = &mut self.socket;
        let write = async move {
            match idle {
                Some(t) => tokio::time::timeout(t, socket.write_all(out))
                    .await
                    .map_err(|_| "timed out writing to a client that does not read".to_string()),
                None => Ok(socket.write_all(out).await),
            }
        };
        // The write first: replies the socket takes at once are sent even to a connection
        // being closed (the caller of `CLIENT KILL … SKIPME no` gets its answer); only a write
        // that has to wait for the client gives way.
        let result = tokio::select! {
            biased;
            r = write => r?,
            why = self.client.closed() => return Err(why),
        };
        result.map_err(|e| format!("write error: {e}"))?;
        add(&self.shared.stats.output_bytes, out.len() as u64);
        Ok(())
    }
}

/// Sleeps for the idle timeout `d`, or forever when there is none. While a command is only
/// partly received (since `partial`), the timeout counts from its first byte, not from the
/// last read: a client that trickles a command a byte at a time (slowloris) is closed after
/// `d` like an idle one, instead of holding its connection forever.
async fn deadline(d: Option<Duration>, partial: Option<Instant>) {
    match (d, partial) {
        (Some(d), Some(since)) => match since.checked_add(d) {
            Some(end) => tokio::time::sleep_until(end.into()).await,
            None => std::future::pending().await,
        },
        (Some(d), None) => tokio::time::sleep(d).await,
        (None, _) => std::future::pending().await,
    }
}

/// The server's gate, held shared by a connection running commands and exclusively by one
/// running `EXEC`.
enum Gate {
    Shared { _held: OwnedRwLockReadGuard<()> },
    Alone { _held: OwnedRwLockWriteGuard<()> },
}

/// What the blocking part of a pipeline hands back.
struct Done {
    session: Session,
    /// Each reply in order; `None` where none is sent (SHUTDOWN).
    frames: Vec<Option<Reply>>,
    effects: Effects,
    /// Which replies are to writes (made errors if their commit fails).
    writes: Vec<usize>,
    flow: Flow,
}

/// The part of a pipeline that may block: reads the values GETs left behind, in one batch,
/// and runs the commands from the first that might wait.
fn slow_path(
    shared: &Shared,
    mut session: Session,
    replies: Vec<Reply>,
    rest: Vec<Vec<Vec<u8>>>,
    mut effects: Effects,
    mut writes: Vec<usize>,
    gate: Gate,
) -> Done {
    let mut frames: Vec<Option<Reply>> = Vec::with_capacity(replies.len() + rest.len());
    let mut pending = Vec::new();
    let mut places = Vec::new();
    for reply in replies {
        match reply {
            Reply::Read(p) => {
                places.push(frames.len());
                pending.push(*p);
                frames.push(None);
            }
            done => frames.push(Some(done)),
        }
    }
    if !pending.is_empty() {
        let started = Instant::now();
        let values = shared.store().read_many(pending);
        for (at, v) in places.into_iter().zip(values) {
            let reply = match v {
                Ok(v) => command::hit_or_miss(shared, Some(v.to_vec())),
                Err(e) => command::storage(e),
            };
            command::count_get(shared, started, &reply);
            frames[at] = Some(Reply::Frame(reply));
        }
    }
    let mut flow = Flow::Next;
    for argv in &rest {
        let before = effects.commit;
        let (reply, f) = command::execute(shared, &mut session, argv, &mut effects);
        if effects.commit != before {
            writes.push(frames.len());
        }
        let reply = match session.wait.take() {
            Some((target, n, timeout)) => Reply::Wait(target, n, timeout),
            None => reply,
        };
        frames.push((!matches!(f, Flow::Shutdown | Flow::Replicate)).then_some(reply));
        flow = f;
        if flow != Flow::Next {
            break;
        }
    }
    drop(gate);
    Done {
        session,
        frames,
        effects,
        writes,
        flow,
    }
}

/// Waits, without blocking the runtime, until `commit` is durable: the store's committer
/// thread calls back (at once when there is nothing to wait for).
async fn durable(shared: &Shared, commit: Commit) -> crate::Result<()> {
    if commit.is_none() {
        return Ok(());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    shared.store().notify(commit, move |r| {
        let _ = tx.send(r);
    });
    rx.await.unwrap_or_else(|_| {
        Err(crate::Error::Refused {
            why: "the store closed before the write was durable".into(),
        })
    })
}

/// Pauses while writes are held back for garbage collection (value space past its limit), up
/// to [`HOLD_MAX`], without blocking the runtime.
async fn hold_back(shared: &Shared) {
    let start = Instant::now();
    while shared.store().pressed() && start.elapsed() < HOLD_MAX {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The longest a connection pauses for garbage collection after its writes.
const HOLD_MAX: Duration = Duration::from_millis(100);
