//! One client connection: read, parse, execute, reply — in batches.
//!
//! Bytes are read in chunks of at most [`CHUNK`]; every complete command in the buffer runs and
//! its reply is appended to one output buffer, written with a single write before the next
//! read (so a pipeline of N commands costs one read and one write). A command larger than the
//! request limit is refused by the parser before it is buffered. The idle timeout bounds the
//! wait for the next command, the time a command may take to arrive in full (counted from its
//! first byte, so a client trickling bytes cannot hold a connection forever), and the wait for
//! a client to take its replies, so a stalled client holds only its own task and buffers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::command::{self, Flow, Session};
use super::stats::add;
use super::{Shared, blocking};
use crate::resp::{Frame, Limits, Proto, parse_command};

/// Most bytes read at once.
const CHUNK: usize = 64 * 1024;

/// A client connection.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    socket: TcpStream,
    session: Session,
    stop: watch::Receiver<bool>,
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
        Connection {
            shared,
            socket,
            session: Session {
                id,
                proto: Proto::Resp2,
                authed,
                name: None,
                lib_name: None,
                lib_ver: None,
            },
            stop,
        }
    }

    /// Serves the client until it leaves, misbehaves, idles out, or the server stops.
    pub(crate) async fn serve(mut self) {
        let _count = Counted(self.shared.clone());
        let peer = self.socket.peer_addr().ok();
        debug!(id = self.session.id, ?peer, "connected");
        let why = self.run().await;
        debug!(
            id = self.session.id,
            ?peer,
            name = ?self.session.name.as_deref().map(String::from_utf8_lossy),
            lib = ?self.session.lib_name.as_deref().map(String::from_utf8_lossy),
            "closed: {why}"
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
        loop {
            // Run every complete command that is buffered.
            let (used, flow, broken) = if nothing_new {
                (0, Flow::Next, None)
            } else {
                self.execute(&buf, &mut out, &limits)
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
            }
            if *self.stop.borrow() {
                return "server shutting down".into();
            }
            let wake = tokio::select! {
                r = self.socket.read(&mut chunk) => Wake::Read(r),
                () = deadline(idle, partial_since) => Wake::Idle,
                _ = self.stop.changed() => Wake::Stop,
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
            }
        }
    }

    /// Runs the complete commands at the start of `buf`, appending replies to `out`; returns
    /// the bytes used, what to do next, and why to close if the input was malformed.
    ///
    /// A batch with a command that reads values (which may wait on the disk: a get through
    /// O_DIRECT) runs where blocking is allowed, so other connections keep being served and
    /// their reads wait on the disk in parallel; other batches run in place, which is cheaper.
    fn execute(
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
        let reads = commands
            .iter()
            .any(|args| args.first().is_some_and(|name| command::reads_values(name)));
        let run = || {
            let mut flow = Flow::Next;
            for args in &commands {
                let (reply, f) = command::execute(&self.shared, &mut self.session, args);
                if f != Flow::Shutdown {
                    reply.encode(self.session.proto, out);
                }
                flow = f;
                if flow != Flow::Next {
                    return (flow, None);
                }
            }
            let why = broken.map(|e| {
                add(&self.shared.stats.protocol_errors, 1);
                warn!(id = self.session.id, "protocol error: {e}");
                Frame::err(format!("ERR Protocol error: {e}")).encode(self.session.proto, out);
                format!("protocol error: {e}")
            });
            (flow, why)
        };
        let (flow, why) = if reads { blocking(run) } else { run() };
        (used, flow, why)
    }

    /// Writes `out`, giving up after the idle timeout (a client that does not read).
    async fn write(&mut self, out: &[u8], idle: Option<Duration>) -> Result<(), String> {
        let write = self.socket.write_all(out);
        let result = match idle {
            Some(t) => tokio::time::timeout(t, write)
                .await
                .map_err(|_| "timed out writing to a client that does not read".to_string())?,
            None => write.await,
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
