//! The interactive client: `cargo run --example client -- [HOST:PORT] [COMMAND ...]`.
//!
//! Without a command it is a prompt with line editing and history (`$HOME/.toykv_history`):
//! friendly verbs (`get`, `put`, `del`, `scan`, `info`, `ping`, `dbsize`, `help`) and any
//! other server command typed as is. With a command it runs that one command, prints the
//! reply and exits: 0 for a reply, 1 for an error reply (or a verb used wrongly), 2 when the
//! server cannot be reached. `client HOST:PORT ping` prints `PONG` and is fit for a health
//! check: connecting gives up after 2 s, a reply after 5 s.
//!
//! - [`conn`]: a blocking RESP connection ([`Conn`]) over a `TcpStream`.
//! - [`split`](mod@split): a typed line into arguments, with quotes and `\xHH` escapes.
//! - [`show`](mod@show): replies as text, like `redis-cli` (binary values in hex).
//! - [`verbs`]: the friendly verbs and what they send.
//! - [`session`]: the connection, made again after it drops, and running one line.
//! - [`repl`]: the loop, over a terminal ([`Terminal`]) or a [`Script`] of lines.
//!
//! `examples/client.rs` is just [`main`].

pub mod conn;
pub mod repl;
pub mod session;
pub mod show;
pub mod split;
pub mod verbs;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use conn::{ClientError, Conn};
pub use repl::{Input, Line, Script, Terminal, interactive};
pub use session::{Outcome, Session, Settings};
pub use show::show;
pub use split::split;

/// Exit status: the command worked.
pub const EXIT_OK: u8 = 0;
/// Exit status: the server replied with an error, or the command was not understood.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the server could not be reached (or the connection dropped).
pub const EXIT_UNREACHABLE: u8 = 2;

/// The server's default port.
pub const DEFAULT_PORT: u16 = 8888;

/// Examples and exit statuses, after the flags in `--help`.
const AFTER_HELP: &str = "\
Examples:
  client                             the prompt, for 127.0.0.1:8888 (type help there)
  client 127.0.0.1:8888 get 42       one command: print the reply and exit
  client put k \"a b\"                 the same verbs as at the prompt
  client RANGE - + LIMIT 3           any server command
  client HOST:PORT ping              prints PONG: a health check

Exit status: 0 done, 1 error reply (or a verb used wrongly), 2 server unreachable.";

/// toykv client: a prompt for a toykv server (line editing, history in ~/.toykv_history),
/// or one command and exit.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "client",
    version,
    override_usage = "client [--pass PASSWORD] [HOST:PORT] [COMMAND [ARG]...]",
    after_help = AFTER_HELP
)]
pub struct Flags {
    /// Password sent with AUTH after connecting.
    #[arg(
        long,
        env = "REQUIREPASS",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub pass: Option<String>,

    /// The server as HOST:PORT (default 127.0.0.1:8888, or port $SERVER_PORT), then a
    /// command with its arguments to run instead of the prompt; each is optional.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Where to connect.
    pub settings: Settings,
    /// The command to run once, if any (else the prompt).
    pub command: Vec<Vec<u8>>,
}

impl Flags {
    /// Splits the arguments into the address and the command. The first argument is the
    /// address if it has a `:` (no command name does); otherwise the address is
    /// `127.0.0.1:` and `server_port` (the `SERVER_PORT` variable), else 8888.
    pub fn plan(self, server_port: Option<&str>) -> Plan {
        let mut args: Vec<Vec<u8>> = self
            .args
            .into_iter()
            .map(|a| a.into_encoded_bytes())
            .collect();
        let addr = match args.first() {
            Some(first) if first.contains(&b':') => {
                String::from_utf8_lossy(&args.remove(0)).into_owned()
            }
            _ => {
                let port = server_port
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    .unwrap_or(DEFAULT_PORT);
                format!("127.0.0.1:{port}")
            }
        };
        let mut settings = Settings::new(addr);
        settings.password = self.pass.filter(|p| !p.is_empty());
        Plan {
            settings,
            command: args,
        }
    }
}

/// Runs one command (a verb or a server command): connects (unless it is `help` or a verb
/// used wrongly, answered without a server), writes the reply to `out` and a connection
/// failure to `err`. Returns the exit status: [`EXIT_OK`], [`EXIT_ERROR`] for
/// an error reply, [`EXIT_UNREACHABLE`] when the server cannot be reached.
pub fn one_shot(
    settings: Settings,
    command: Vec<Vec<u8>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let mut session = Session::new(settings);
    // Help and usage errors are answered without a server.
    let local = !matches!(verbs::plan(command.clone()), verbs::Action::Send { .. });
    if !local && let Err(e) = session.connect(out) {
        let _ = writeln!(err, "{e}");
        return EXIT_UNREACHABLE;
    }
    let outcome = session.run(command, out);
    let _ = out.flush();
    match outcome {
        Ok(Outcome::Done | Outcome::Quit) => EXIT_OK,
        Ok(Outcome::Failed) => EXIT_ERROR,
        Ok(Outcome::Unreachable) | Err(_) => EXIT_UNREACHABLE,
    }
}

/// Parses the command line and runs the prompt or one command; the exit status says how it
/// went.
pub fn main() -> ExitCode {
    let flags = Flags::parse();
    let port = std::env::var("SERVER_PORT").ok();
    let plan = flags.plan(port.as_deref());
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    if !plan.command.is_empty() {
        return ExitCode::from(one_shot(plan.settings, plan.command, &mut out, &mut err));
    }
    let mut terminal = match Terminal::new() {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "cannot open the terminal: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    ExitCode::from(interactive(
        plan.settings,
        &mut terminal,
        &mut out,
        &mut err,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str], port: Option<&str>) -> Plan {
        let mut argv = vec!["client"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).unwrap().plan(port)
    }

    fn words(p: &Plan) -> Vec<&str> {
        p.command
            .iter()
            .map(|w| std::str::from_utf8(w).unwrap())
            .collect()
    }

    #[test]
    fn address_then_command() {
        let p = plan(&["127.0.0.1:9999", "get", "42"], None);
        assert_eq!(p.settings.addr, "127.0.0.1:9999");
        assert_eq!(words(&p), ["get", "42"]);
        // --pass falls back to REQUIREPASS, which the environment running the tests may set.
        let env = std::env::var("REQUIREPASS").ok().filter(|p| !p.is_empty());
        assert_eq!(p.settings.password, env);
        assert_eq!(p.settings.connect_timeout, session::CONNECT_TIMEOUT);
    }

    #[test]
    fn default_address_and_server_port() {
        let p = plan(&["ping"], None);
        assert_eq!(p.settings.addr, "127.0.0.1:8888");
        assert_eq!(words(&p), ["ping"]);
        assert_eq!(plan(&[], Some("7000")).settings.addr, "127.0.0.1:7000");
        assert_eq!(plan(&[], Some("junk")).settings.addr, "127.0.0.1:8888");
        // An explicit address wins over SERVER_PORT.
        assert_eq!(
            plan(&["localhost:1"], Some("7000")).settings.addr,
            "localhost:1"
        );
        assert!(plan(&[], None).command.is_empty());
    }

    #[test]
    fn hyphens_and_flags() {
        let p = plan(
            &["--pass", "s3cret", "h:1", "RANGE", "-", "+", "LIMIT", "3"],
            None,
        );
        assert_eq!(p.settings.password.as_deref(), Some("s3cret"));
        assert_eq!(words(&p), ["RANGE", "-", "+", "LIMIT", "3"]);
        let p = plan(&["get", "-1"], None);
        assert_eq!(words(&p), ["get", "-1"]);
        assert_eq!(plan(&["--pass", "", "ping"], None).settings.password, None);
    }

    #[test]
    fn one_shot_unreachable_is_2() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let settings = Settings::new(format!("127.0.0.1:{port}"));
        let code = one_shot(settings, vec![b"ping".to_vec()], &mut out, &mut err);
        assert_eq!(code, EXIT_UNREACHABLE);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("Connection refused (is the server running?"),
            "{err}"
        );
    }

    #[test]
    fn help_and_usage_need_no_server() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = Settings::new(format!("127.0.0.1:{port}"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = one_shot(settings.clone(), vec![b"help".to_vec()], &mut out, &mut err);
        assert_eq!(code, EXIT_OK);
        assert!(String::from_utf8(out).unwrap().contains("put KEY VALUE"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = one_shot(settings, vec![b"get".to_vec()], &mut out, &mut err);
        assert_eq!(code, EXIT_ERROR);
        assert_eq!(String::from_utf8(out).unwrap(), "usage: get KEY\n");
        assert!(err.is_empty());
    }
}
