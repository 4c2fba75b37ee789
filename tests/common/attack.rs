//! Hostile clients against a real server on loopback, shared by `tests/hostile.rs` (what must
//! hold) and `benches/hostile.rs` (what it costs well-behaved clients): a connection flood,
//! slowloris sockets, garbage and oversized frames, and a well-behaved RESP client.
//!
//! The server runs in this process, on its own Tokio runtime and thread, over a store in a
//! temporary directory, exactly as `Server::run` is used by the `server` example.

#![allow(dead_code)] // each user takes what it needs

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use toykv::resp::{Frame, encode_command, parse_reply};
use toykv::server::{Config, Server};
use toykv::{Options, Store};

/// The reply a refused connection gets.
pub const REFUSED: &str = "ERR max number of clients reached";

/// Raises this process's open-file limit to at least `want` (up to the hard limit; as root, the
/// hard limit too). Returns the soft limit in force afterwards.
pub fn raise_fd_limit(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= want {
        return soft;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, want, hard.max(want)).is_ok() {
        return want;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// This process's resident set size in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A server running in this process.
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<toykv::Result<()>>,
}

impl Served {
    /// Starts a server with `config` over a store in `dir` (`workers` Tokio threads).
    pub fn start(dir: &Path, mut config: Config, options: Options, workers: usize) -> Served {
        config.dir = dir.to_path_buf();
        let store = Arc::new(Store::open_with(dir, options).expect("open the store"));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let _ = addr_tx.send(listener.local_addr().expect("address"));
                let r = Server::new(store, config)
                    .run(listener, async {
                        let _ = stop_rx.await;
                    })
                    .await;
                let _ = done_tx.send(r);
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        Served {
            addr,
            stop: Some(stop_tx),
            done,
        }
    }

    /// Stops the server gracefully and returns what `run` returned.
    pub fn stop(mut self) -> toykv::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not stop")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
            let _ = self.done.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// A small, seedable pseudo-random generator (xorshift64*), so that runs replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A command as a RESP array of bulk strings.
pub fn command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(args, &mut out);
    out
}

/// A well-behaved client: one command at a time, waits for each reply.
#[derive(Debug)]
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// Reads one reply; `None` when the server closed the connection.
    pub fn read(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((frame, n))) => {
                    self.buf.drain(..n);
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(ErrorKind::InvalidData, e)),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
                // A signal (or io_uring's task work, when a ring this thread used is torn
                // down) interrupts a read that has a timeout: read again.
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a command and reads its reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Frame> {
        self.stream.write_all(&command(args))?;
        self.read()?
            .ok_or_else(|| std::io::Error::new(ErrorKind::UnexpectedEof, "server closed"))
    }
}

/// What became of the connections of a flood.
#[derive(Debug, Default)]
pub struct Flood {
    /// Connections the server serves (they answered PING).
    pub served: Vec<Client>,
    /// Connections refused with the error reply and then closed by the server.
    pub refused: usize,
    /// Connections refused without the reply arriving (reset), still closed.
    pub reset: usize,
    /// Anything else (should stay 0): a wrong reply, or a refused one left open.
    pub odd: Vec<String>,
}

/// Opens `n` connections at once, then finds out which the server serves and which it refused.
pub fn flood(addr: SocketAddr, n: usize) -> Flood {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        match Client::connect(addr) {
            Ok(c) => conns.push(c),
            Err(e) => panic!("connect {} of {n}: {e}", conns.len()),
        }
    }
    let mut out = Flood::default();
    for mut c in conns {
        let _ = c.stream.set_read_timeout(Some(Duration::from_secs(10)));
        // A refused connection has its error waiting (or is closed); a served one answers.
        let sent = c.stream.write_all(&command(&["PING"]));
        match c.read() {
            Ok(Some(Frame::Simple(p))) if p == "PONG" && sent.is_ok() => out.served.push(c),
            Ok(Some(Frame::Error(e))) if e == REFUSED => match c.read() {
                Ok(None) => out.refused += 1,
                other => out.odd.push(format!("refused but not closed: {other:?}")),
            },
            Ok(None) => out.reset += 1,
            other => out.odd.push(format!("{other:?}")),
        }
    }
    out
}

/// The partial command a slowloris socket trickles: a SET whose value never ends.
pub const SLOW_COMMAND: &[u8] = b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$200\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// Sockets that send a partial command one byte every `every`, until the server closes each.
/// Returns, for each socket, how long after its first byte the server closed it (`None`: still
/// open after `give_up`).
pub fn slowloris(
    addr: SocketAddr,
    n: usize,
    every: Duration,
    give_up: Duration,
) -> Vec<Option<Duration>> {
    let mut socks: Vec<Option<TcpStream>> = (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            Some(s)
        })
        .collect();
    let start = Instant::now();
    let mut closed = vec![None; n];
    let mut i = 0;
    while start.elapsed() < give_up && socks.iter().any(Option::is_some) {
        let byte = SLOW_COMMAND[i % SLOW_COMMAND.len()];
        for (k, slot) in socks.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            let mut scratch = [0u8; 256];
            let gone = match s.read(&mut scratch) {
                Ok(0) => true,
                Ok(_) => false, // a reply (none is expected before the command ends)
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(_) => true,
            } || matches!(s.write(&[byte]), Err(e) if e.kind() != ErrorKind::WouldBlock);
            if gone {
                closed[k] = Some(start.elapsed());
                *slot = None;
            }
        }
        i += 1;
        std::thread::sleep(every);
    }
    closed
}

/// Garbage frame number `i` of a run: random bytes, huge and negative lengths and counts,
/// deep and invalid arrays, overlong lines, unbalanced quotes, and valid-looking commands with
/// random arguments.
pub fn garbage(rng: &mut Rng, i: usize) -> Vec<u8> {
    let n = rng.below(400) as usize + 1;
    match i % 16 {
        0 | 1 => rng.bytes(n),
        2 => {
            // Random bytes made of protocol characters, more likely to go deep in the parser.
            const ALPHABET: &[u8] = b"*$+-:_,#=(!%~>|\r\n0123456789-\"'\\ x";
            (0..n)
                .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
                .collect()
        }
        3 => format!("*1\r\n${}\r\n", rng.next()).into_bytes(),
        4 => format!(
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n",
            (1u64 << 31) + rng.below(1 << 40)
        )
        .into_bytes(),
        5 => format!("*{}\r\n", rng.next() | (1 << 62)).into_bytes(),
        6 => format!("*-{}\r\n", rng.below(1000) + 2).into_bytes(),
        7 => format!("*1\r\n$-{}\r\n", rng.below(1000) + 2).into_bytes(),
        8 => b"*1\r\n".repeat(rng.below(5000) as usize + 1),
        9 => b"*2\r\n:1\r\n*1\r\n$1\r\na\r\n".to_vec(),
        10 => b"*99999999999999999999999999\r\n".to_vec(),
        11 if i % 64 == 11 => {
            // An inline line longer than the default request limit (1 MiB), never ended.
            vec![b'a'; (1 << 20) + 1 + rng.below(4096) as usize]
        }
        11 => vec![b'a'; n * 10],
        12 => b"SET \"unbalanced\r\nGET 'x\r\n".to_vec(),
        13 => {
            let (name_len, arg_len) = (rng.below(12) as usize + 1, rng.below(300) as usize);
            let name = rng.bytes(name_len);
            let arg = rng.bytes(arg_len);
            command(&[name, arg])
        }
        14 => {
            let mut v = command(&["SET", "k"]);
            v.extend_from_slice(&rng.bytes(n));
            v
        }
        _ => {
            let mut v = b"*2\r\n$3\r\nGET\r\n$".to_vec();
            v.extend_from_slice(&rng.bytes(n));
            v
        }
    }
}

/// How the server dealt with one garbage frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It replied (with valid RESP) and closed the connection when the client finished.
    Closed { replies: usize, errors: usize },
    /// The reply was not valid RESP.
    BadReply(String),
    /// It neither replied nor closed in time.
    Hung,
}

/// Sends `frame` on a new connection, ends the client's side, and reads until the server
/// closes.
pub fn send_garbage(addr: SocketAddr, frame: &[u8], wait: Duration) -> Outcome {
    let Ok(mut c) = Client::connect(addr) else {
        return Outcome::BadReply("connect failed".into());
    };
    let _ = c.stream.set_read_timeout(Some(wait));
    // The server may close before taking all of a long frame: a failed write is fine.
    let _ = c.stream.write_all(frame);
    let _ = c.stream.shutdown(Shutdown::Write);
    let (mut replies, mut errors) = (0, 0);
    loop {
        match c.read() {
            Ok(Some(f)) => {
                replies += 1;
                if matches!(f, Frame::Error(_)) {
                    errors += 1;
                }
            }
            Ok(None) => return Outcome::Closed { replies, errors },
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Outcome::Hung;
            }
            Err(e) if e.kind() == ErrorKind::InvalidData => {
                return Outcome::BadReply(e.to_string());
            }
            Err(_) => return Outcome::Closed { replies, errors },
        }
    }
}

/// The p-th percentile (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}
