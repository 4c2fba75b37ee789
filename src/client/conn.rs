//! A small blocking RESP connection over [`TcpStream`].
//!
//! [`Conn::call`] writes one command as an array of bulk strings and reads one reply with
//! [`parse_reply`] from a buffer that keeps whatever arrived after it. RESP3 push frames
//! (out-of-band messages) are skipped.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::resp::{Frame, ProtocolError, encode_command, parse_reply};

/// How long a read or a write waits, unless [`Conn::set_timeout`] says otherwise.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client says when a server cannot be reached.
pub const START_HINT: &str =
    "is the server running? start it with: cargo run --release --example server";

/// Why a connection or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address did not resolve (or resolved to nothing).
    #[error("could not resolve {addr}: {why}")]
    Resolve {
        /// The address given.
        addr: String,
        /// What the resolver said.
        why: String,
    },
    /// No connection could be made.
    #[error("could not connect to {addr}: {} ({START_HINT})", plain(.source))]
    Connect {
        /// The address given.
        addr: String,
        /// The error of the last address tried.
        source: io::Error,
    },
    /// The server turned the connection away (too many clients).
    #[error("{addr} refused the connection: {why}")]
    Refused {
        /// The address given.
        addr: String,
        /// The server's error reply.
        why: String,
    },
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// Reading or writing failed (a read timeout is one).
    #[error("connection error: {}", plain(.0))]
    Io(#[from] io::Error),
    /// The server sent something that is not RESP.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
}

/// An I/O error without the ` (os error N)` suffix: `Connection refused`.
fn plain(e: &io::Error) -> String {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return "timed out".into();
    }
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text.get(..at).unwrap_or(&text).to_string(),
        None => text,
    }
}

/// A connection to a server.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    /// Bytes received and not yet parsed.
    buf: Vec<u8>,
    addr: String,
}

impl Conn {
    /// Connects to `addr` (`host:port`), trying each address it resolves to for at most
    /// `timeout`. Reads and writes then time out after [`IO_TIMEOUT`], until
    /// [`set_timeout`](Self::set_timeout) says otherwise.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Conn, ClientError> {
        let resolve = |why: String| ClientError::Resolve {
            addr: addr.to_string(),
            why,
        };
        let targets: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| resolve(plain(&e)))?
            .collect();
        let mut last = None;
        for target in targets {
            match TcpStream::connect_timeout(&target, timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Conn {
                        stream,
                        buf: Vec::new(),
                        addr: addr.to_string(),
                    };
                    conn.set_timeout(IO_TIMEOUT)?;
                    return Ok(conn);
                }
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(source) => Err(ClientError::Connect {
                addr: addr.to_string(),
                source,
            }),
            None => Err(resolve("no addresses".into())),
        }
    }

    /// The address this connection was made to, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sets how long a read or a write may wait (zero: forever).
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        let timeout = Some(timeout).filter(|t| !t.is_zero());
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)?;
        Ok(())
    }

    /// Sends one command and returns its reply (an error reply is `Ok(Frame::Error)`).
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Frame, ClientError> {
        self.send(args)?;
        self.read()
    }

    /// Sends one command without waiting for the reply.
    pub fn send(&mut self, args: &[&[u8]]) -> Result<(), ClientError> {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        self.stream.write_all(&out)?;
        Ok(())
    }

    /// Reads the next reply, skipping RESP3 push frames.
    pub fn read(&mut self) -> Result<Frame, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((frame, used)) = parse_reply(&self.buf)? {
                self.buf.drain(..used);
                if matches!(frame, Frame::Push(_)) {
                    continue;
                }
                return Ok(frame);
            }
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    /// Whether the server has closed its end (say, after its idle timeout), checked without
    /// waiting. Unread replies do not count as closed.
    pub fn is_closed(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut probe = [0u8; 1];
        let closed = match self.stream.peek(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        closed || self.stream.set_nonblocking(false).is_err()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A one-connection fake server: reads once, then writes `reply` in pieces of `step`
    /// bytes, then closes.
    fn fake(reply: &'static [u8], step: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            for piece in reply.chunks(step) {
                s.write_all(piece).unwrap();
                s.flush().unwrap();
                thread::sleep(Duration::from_millis(2));
            }
        });
        addr
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn reads_replies_split_across_reads() {
        let addr = fake(b"*2\r\n$3\r\nabc\r\n:7\r\n+PONG\r\n", 3);
        let mut c = Conn::connect(&addr, T).unwrap();
        assert_eq!(c.addr(), addr);
        let want = Frame::Array(vec![Frame::Bulk(b"abc".to_vec()), Frame::Integer(7)]);
        assert_eq!(c.call(&[b"RANGE", b"-", b"+"]).unwrap(), want);
        // The second reply was buffered or arrives next.
        assert_eq!(c.read().unwrap(), Frame::Simple("PONG".into()));
        assert!(matches!(c.read(), Err(ClientError::Closed)));
    }

    #[test]
    fn push_frames_are_skipped() {
        let addr = fake(b">2\r\n+message\r\n+x\r\n$1\r\nv\r\n", 64);
        let mut c = Conn::connect(&addr, T).unwrap();
        assert_eq!(c.call(&[b"GET", b"k"]).unwrap(), Frame::Bulk(b"v".to_vec()));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let addr = fake(b"HTTP/1.1 400 Bad Request\r\n", 64);
        let mut c = Conn::connect(&addr, T).unwrap();
        let e = c.call(&[b"PING"]).unwrap_err();
        assert!(matches!(e, ClientError::Protocol(_)), "{e}");
        assert!(e.to_string().starts_with("protocol error: "), "{e}");
    }

    #[test]
    fn refused_connection_names_the_address_and_the_fix() {
        // Bind then drop: nobody listens on that port now.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let e = Conn::connect(&addr, T).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("could not connect to {addr}: Connection refused ({START_HINT})")
        );
    }

    #[test]
    fn unresolvable_addresses() {
        let e = Conn::connect("no-port-here", T).unwrap_err();
        assert!(matches!(e, ClientError::Resolve { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("could not resolve no-port-here: "),
            "{e}"
        );
    }

    #[test]
    fn a_closed_server_end_is_noticed_without_waiting() {
        let addr = fake(b"+OK\r\n", 64);
        let mut c = Conn::connect(&addr, T).unwrap();
        assert_eq!(c.call(&[b"SET", b"a", b"b"]).unwrap(), Frame::ok());
        let deadline = std::time::Instant::now() + T;
        while !c.is_closed() {
            assert!(std::time::Instant::now() < deadline, "close never seen");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_open_idle_connection_is_not_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let c = Conn::connect(&addr, T).unwrap();
        let _server_side = listener.accept().unwrap();
        assert!(!c.is_closed());
        assert!(!c.is_closed(), "the probe leaves the socket usable");
    }

    #[test]
    fn read_timeouts_are_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut c = Conn::connect(&addr, T).unwrap();
        c.set_timeout(Duration::from_millis(50)).unwrap();
        let _server_side = listener.accept().unwrap();
        let e = c.call(&[b"PING"]).unwrap_err();
        assert_eq!(e.to_string(), "connection error: timed out");
    }
}
