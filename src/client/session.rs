//! A session: the connection settings, the connection (made again after it drops) and
//! running one typed line against it. Both the interactive loop and the one-shot mode use it.

use std::io::{self, Write};
use std::time::Duration;

use super::conn::{ClientError, Conn, IO_TIMEOUT};
use super::show::{show, show_pairs, show_text};
use super::split::split;
use super::verbs::{Action, HELP, View, plan};
use crate::resp::Frame;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `host:port`.
    pub addr: String,
    /// Sent with `AUTH` right after connecting, if set.
    pub password: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a reply may take.
    pub io_timeout: Duration,
}

impl Settings {
    /// Settings for `addr` with the default timeouts and no password.
    pub fn new(addr: impl Into<String>) -> Settings {
        Settings {
            addr: addr.into(),
            password: None,
            connect_timeout: CONNECT_TIMEOUT,
            io_timeout: IO_TIMEOUT,
        }
    }
}

/// How a line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (a reply, help, or nothing to do).
    Done,
    /// The server replied with an error, or the line was not understood.
    Failed,
    /// The server could not be reached, or the connection dropped.
    Unreachable,
    /// The user asked to leave.
    Quit,
}

/// A connection to one server, made again on demand after it drops.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    conn: Option<Conn>,
    /// Whether a connection was made once and lost: the next one is announced.
    lost: bool,
}

impl Session {
    /// A session, not connected yet.
    pub fn new(settings: Settings) -> Session {
        Session {
            settings,
            conn: None,
            lost: false,
        }
    }

    /// The settings in use (a successful `AUTH` typed by the user updates the password).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The prompt: `host:port> `, or `not connected> `.
    pub fn prompt(&self) -> String {
        match &self.conn {
            Some(_) => format!("{}> ", self.settings.addr),
            None => "not connected> ".into(),
        }
    }

    /// Connects: `AUTH` when a password is set (a refusal is written to `out` and the
    /// connection kept, so the user can try `AUTH` again), then `HELLO 3` for RESP3 replies
    /// (a server that refuses it is spoken to in RESP2).
    pub fn connect(&mut self, out: &mut dyn Write) -> Result<(), ClientError> {
        self.conn = None;
        let mut conn = Conn::connect(&self.settings.addr, self.settings.connect_timeout)?;
        conn.set_timeout(self.settings.io_timeout)?;
        if let Some(pass) = &self.settings.password {
            let reply = self.handshake(&mut conn, &[b"AUTH", pass.as_bytes()])?;
            if let Frame::Error(_) | Frame::BlobError(_) = reply {
                let _ = writeln!(out, "AUTH failed: {}", show(&reply));
            }
        }
        self.handshake(&mut conn, &[b"HELLO", b"3"])?;
        self.conn = Some(conn);
        Ok(())
    }

    /// A call made while connecting. A server with all its client slots taken answers the
    /// first command with an error and closes: that is a refusal, not a reply.
    fn handshake(&self, conn: &mut Conn, args: &[&[u8]]) -> Result<Frame, ClientError> {
        let reply = conn.call(args)?;
        match &reply {
            Frame::Error(e) if e.starts_with("ERR max number of clients") => {
                Err(ClientError::Refused {
                    addr: self.settings.addr.clone(),
                    why: e.clone(),
                })
            }
            _ => Ok(reply),
        }
    }

    /// Sends one command and returns its reply. A failure drops the connection.
    pub fn call(&mut self, args: &[Vec<u8>]) -> Result<Frame, ClientError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => return Err(ClientError::Closed),
        };
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let result = conn.call(&refs);
        if result.is_err() {
            self.conn = None;
            self.lost = true;
        }
        result
    }

    /// Makes sure a connection is open before a command: one that the server has closed
    /// (its idle timeout, a restart) or that dropped earlier is made again, once. Says so.
    fn ready(&mut self, out: &mut dyn Write) -> io::Result<bool> {
        if self.conn.as_ref().is_some_and(Conn::is_closed) {
            writeln!(out, "the server closed the connection; reconnecting")?;
            self.conn = None;
            self.lost = true;
        }
        if self.conn.is_some() {
            return Ok(true);
        }
        match self.connect(out) {
            Ok(()) => {
                if self.lost {
                    writeln!(out, "reconnected to {}", self.settings.addr)?;
                    self.lost = false;
                }
                Ok(true)
            }
            Err(e) => {
                writeln!(out, "{e}")?;
                Ok(false)
            }
        }
    }

    /// Runs one typed line: splits it, runs a verb or sends it, writes what the user should
    /// see to `out`.
    pub fn run_line(&mut self, line: &str, out: &mut dyn Write) -> io::Result<Outcome> {
        let words = match split(line) {
            Ok(w) => w,
            Err(e) => {
                writeln!(out, "(error) {e}")?;
                return Ok(Outcome::Failed);
            }
        };
        if words.is_empty() {
            return Ok(Outcome::Done);
        }
        self.run(words, out)
    }

    /// Runs one command given as words (a verb or a server command), as
    /// [`run_line`](Self::run_line) does.
    pub fn run(&mut self, words: Vec<Vec<u8>>, out: &mut dyn Write) -> io::Result<Outcome> {
        let (args, view) = match plan(words) {
            Action::Help => {
                writeln!(out, "{HELP}")?;
                return Ok(Outcome::Done);
            }
            Action::Quit => return Ok(Outcome::Quit),
            Action::Usage(usage) => {
                writeln!(out, "usage: {usage}")?;
                return Ok(Outcome::Failed);
            }
            Action::Send { args, view } => (args, view),
        };
        if !self.ready(out)? {
            return Ok(Outcome::Unreachable);
        }
        let name = args
            .first()
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_default();
        let reply = match self.call(&args) {
            Ok(reply) => reply,
            // SHUTDOWN is answered by closing the connection.
            Err(ClientError::Closed) if name == b"shutdown" => {
                writeln!(out, "the server is shutting down")?;
                return Ok(Outcome::Done);
            }
            Err(e) => {
                writeln!(
                    out,
                    "connection to {} lost: {e} (it will be made again on the next command)",
                    self.settings.addr
                )?;
                return Ok(Outcome::Unreachable);
            }
        };
        writeln!(out, "{}", render(&reply, view))?;
        let failed = matches!(reply, Frame::Error(_) | Frame::BlobError(_));
        if failed {
            if let Frame::Error(e) = &reply
                && e.starts_with("ERR unknown command")
            {
                writeln!(out, "(type help for the client's commands)")?;
            }
            return Ok(Outcome::Failed);
        }
        if name == b"auth" {
            self.authenticated(&args);
        }
        Ok(Outcome::Done)
    }

    /// After a successful `AUTH` typed by the user: remember the password for reconnecting
    /// and switch to RESP3, which `HELLO` refused before authentication.
    fn authenticated(&mut self, args: &[Vec<u8>]) {
        if let Some(pass) = args.last().and_then(|p| String::from_utf8(p.clone()).ok()) {
            self.settings.password = Some(pass);
        }
        // Best effort: a failure here shows on the next command.
        let _ = self.call(&[b"HELLO".to_vec(), b"3".to_vec()]);
    }
}

/// A reply shown the way `view` asks.
fn render(reply: &Frame, view: View) -> String {
    match view {
        View::Plain => show(reply),
        View::Text => show_text(reply),
        View::Pairs { default_limit } => {
            let mut text = show_pairs(reply);
            if let (Some(limit), Frame::Array(items)) = (default_limit, reply)
                && items.len() / 2 >= limit
            {
                text.push_str(&format!(
                    "\n(the first {limit}; give a limit for more: scan FROM TO 1000)"
                ));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server that answers every connection with `reply` once, then closes it.
    fn answering(reply: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let mut s = s.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply);
            }
        });
        addr
    }

    #[test]
    fn a_full_server_is_a_refusal() {
        let addr = answering(b"-ERR max number of clients reached\r\n");
        let mut session = Session::new(Settings::new(addr.clone()));
        let e = session.connect(&mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{addr} refused the connection: ERR max number of clients reached")
        );
        assert!(!session.is_connected());
        assert_eq!(session.prompt(), "not connected> ");
    }

    #[test]
    fn a_server_without_hello_is_spoken_to_in_resp2() {
        let addr = answering(b"-ERR unknown command 'HELLO'\r\n");
        let mut session = Session::new(Settings::new(addr.clone()));
        session.connect(&mut Vec::new()).unwrap();
        assert!(session.is_connected());
        assert_eq!(session.prompt(), format!("{addr}> "));
    }

    #[test]
    fn scan_hints_only_at_a_full_default_page() {
        let pair = [Frame::Bulk(b"k".to_vec()), Frame::Bulk(b"v".to_vec())];
        let one = Frame::Array(pair.to_vec());
        let full = View::Pairs {
            default_limit: Some(1),
        };
        let given = View::Pairs {
            default_limit: None,
        };
        assert!(
            render(&one, full)
                .ends_with("\n(the first 1; give a limit for more: scan FROM TO 1000)")
        );
        assert_eq!(render(&one, given), "1) \"k\" => \"v\"");
        let two = View::Pairs {
            default_limit: Some(2),
        };
        assert_eq!(render(&one, two), "1) \"k\" => \"v\"");
        assert_eq!(
            render(&Frame::Bulk(b"# S\r\na:1\r\n".to_vec()), View::Text),
            "# S\na:1"
        );
    }
}
