//! The client against a real server started in-process on port 0: the interactive loop driven
//! by scripted lines, the one-shot mode, an unreachable server, reconnecting.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use toykv::Store;
use toykv::client::{
    EXIT_ERROR, EXIT_OK, EXIT_UNREACHABLE, Input, Line, Script, Settings, interactive, one_shot,
};
use toykv::server::{Config, Server};

/// A server on 127.0.0.1, port 0, with its own runtime; stopped when dropped.
struct TestServer {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<toykv::Result<()>>>,
    runtime: tokio::runtime::Runtime,
}

impl TestServer {
    fn start(name: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = crate::common::base().join("client").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(Store::open(dir.join("data")).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut config = Config {
            dir,
            ..Config::default()
        };
        tweak(&mut config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = Server::new(store, config);
        let done = runtime.spawn(server.run(listener, async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            stop: Some(tx),
            done: Some(done),
            runtime,
        }
    }

    fn settings(&self) -> Settings {
        Settings::new(self.addr.clone())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = self.runtime.block_on(done);
        }
    }
}

/// The interactive loop over `lines`: (exit status, output, error output).
fn repl(settings: Settings, lines: &[&str]) -> (u8, String, String) {
    repl_with(settings, &mut Script::lines(lines.iter().copied()))
}

fn repl_with(settings: Settings, input: &mut dyn Input) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = interactive(settings, input, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// One command in one-shot mode: (exit status, output, error output).
fn once(settings: Settings, words: &[&str]) -> (u8, String, String) {
    let words = words.iter().map(|w| w.as_bytes().to_vec()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = one_shot(settings, words, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// An address nobody listens on: bound, then released.
fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn down_message(addr: &str) -> String {
    format!(
        "could not connect to {addr}: Connection refused (is the server running? start it \
         with: cargo run --release --example server)\n"
    )
}

#[test]
fn put_get_del_and_binary_values() {
    let s = TestServer::start("basic", |_| {});
    let (code, out, err) = repl(
        s.settings(),
        &[
            "put a hello",
            "get a",
            r#"put b "\x00\xff""#,
            "get b",
            r#"put c "two words""#,
            "GET c",
            "get missing",
            "del a missing",
            "get a",
            "dbsize",
            "ping",
        ],
    );
    assert_eq!(code, EXIT_OK);
    assert_eq!(err, "");
    let want = "OK\n\"hello\"\nOK\n0x00ff (2 bytes)\nOK\n\"two words\"\n(nil)\n(integer) 1\n\
                (nil)\n(integer) 2\nPONG\n";
    assert_eq!(out, want);
}

#[test]
fn scan_info_and_raw_commands() {
    let s = TestServer::start("scan", |_| {});
    let (code, out, _) = repl(
        s.settings(),
        &[
            "mset a 1 b 2 c 3",
            "scan",
            "scan b",
            "scan - b 1",
            "scan x z",
            "RANGE - + LIMIT 2",
            "mget a nope c",
            "info keyspace",
            "config get port",
        ],
    );
    assert_eq!(code, EXIT_OK);
    let port = s.addr.rsplit(':').next().unwrap();
    let want = format!(
        "OK\n\
         1) \"a\" => \"1\"\n2) \"b\" => \"2\"\n3) \"c\" => \"3\"\n\
         1) \"b\" => \"2\"\n2) \"c\" => \"3\"\n\
         1) \"a\" => \"1\"\n\
         (no keys)\n\
         1) \"a\"\n2) \"1\"\n3) \"b\"\n4) \"2\"\n\
         1) \"1\"\n2) (nil)\n3) \"3\"\n\
         # Keyspace\ndb0:keys=3,expires=0,avg_ttl=0\n\
         1# \"port\" => \"{port}\"\n"
    );
    assert_eq!(out, want);
}

#[test]
fn a_full_default_scan_says_how_to_see_more() {
    let s = TestServer::start("scan-hint", |_| {});
    let pairs: Vec<String> = (0..60).map(|i| format!("k{i:02} v")).collect();
    let mset = format!("mset {}", pairs.join(" "));
    let (_, out, _) = repl(s.settings(), &[&mset, "scan", "scan - + 60"]);
    assert!(
        out.contains("50) \"k49\" => \"v\"\n(the first 50; give a limit for more"),
        "{out}"
    );
    assert!(out.ends_with("60) \"k59\" => \"v\"\n"), "{out}");
}

#[test]
fn errors_are_shown_and_the_session_goes_on() {
    let s = TestServer::start("errors", |_| {});
    let (code, out, _) = repl(
        s.settings(),
        &[
            "frobnicate x",
            "get",
            "put k 'open",
            "put waytoolongkey v",
            "hello 9",
            "ping",
        ],
    );
    assert_eq!(code, EXIT_OK);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "(error) ERR unknown command 'frobnicate'");
    assert_eq!(lines[1], "(type help for the client's commands)");
    assert_eq!(lines[2], "usage: get KEY");
    assert!(
        lines[3].starts_with("(error) unbalanced quotes"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].starts_with("(error) ERR key is 13 bytes"),
        "{}",
        lines[4]
    );
    assert_eq!(lines[5], "(error) NOPROTO unsupported protocol version");
    assert_eq!(lines[6], "PONG");
    assert_eq!(lines.len(), 7);
}

#[test]
fn resp3_maps_and_help() {
    let s = TestServer::start("resp3", |_| {});
    let (_, out, _) = repl(s.settings(), &["hello 3", "help"]);
    assert!(
        out.starts_with("1# \"server\" => \"toykv\"\n2# \"version\" => "),
        "{out}"
    );
    assert!(out.contains("3# \"proto\" => (integer) 3\n"), "{out}");
    assert!(out.contains("7# \"modules\" => (empty array)\n"), "{out}");
    assert!(out.contains("scan [FROM] [TO] [LIMIT]"), "{out}");
}

#[test]
fn quit_eof_and_ctrl_c_end_the_loop() {
    let s = TestServer::start("quit", |_| {});
    // Lines after quit are not run.
    let (code, out, _) = repl(s.settings(), &["put a 1", "quit", "put b 2"]);
    assert_eq!((code, out.as_str()), (EXIT_OK, "OK\n"));
    // The end of the input ends the loop (the old prototype looped forever).
    let (code, out, _) = repl(s.settings(), &[]);
    assert_eq!((code, out.as_str()), (EXIT_OK, ""));
    // One Ctrl-C clears the line, a second in a row leaves.
    let mut script = Script::new([
        Line::Interrupted,
        Line::Text("put c 3".into()),
        Line::Interrupted,
        Line::Interrupted,
        Line::Text("put d 4".into()),
    ]);
    let (code, out, _) = repl_with(s.settings(), &mut script);
    assert_eq!(code, EXIT_OK);
    let hint = "(Ctrl-C again, quit or Ctrl-D to leave)\n";
    assert_eq!(out, format!("{hint}OK\n{hint}"));
    let (_, out, _) = once(s.settings(), &["mget", "a", "b", "c", "d"]);
    assert_eq!(out, "1) \"1\"\n2) (nil)\n3) \"3\"\n4) (nil)\n");
}

#[test]
fn one_shot_mode() {
    let s = TestServer::start("oneshot", |_| {});
    assert_eq!(
        once(s.settings(), &["ping"]),
        (EXIT_OK, "PONG\n".into(), String::new())
    );
    assert_eq!(once(s.settings(), &["put", "42", "x y"]).0, EXIT_OK);
    assert_eq!(
        once(s.settings(), &["get", "42"]),
        (EXIT_OK, "\"x y\"\n".into(), String::new())
    );
    assert_eq!(once(s.settings(), &["get", "43"]).1, "(nil)\n");
    assert_eq!(
        once(s.settings(), &["RANGE", "-", "+", "LIMIT", "1"]).1,
        "1) \"42\"\n2) \"x y\"\n"
    );
    let (code, out, _) = once(s.settings(), &["select", "1"]);
    assert_eq!(code, EXIT_ERROR);
    assert!(
        out.starts_with("(error) ERR DB index is out of range"),
        "{out}"
    );
    assert_eq!(once(s.settings(), &["nosuch"]).0, EXIT_ERROR);
    assert_eq!(
        once(s.settings(), &["get"]),
        (EXIT_ERROR, "usage: get KEY\n".into(), String::new())
    );
}

#[test]
fn server_down_is_exit_2_with_a_clear_message() {
    let addr = dead_addr();
    let (code, out, err) = once(Settings::new(addr.clone()), &["ping"]);
    assert_eq!((code, out.as_str()), (EXIT_UNREACHABLE, ""));
    assert_eq!(err, down_message(&addr));
    let (code, out, err) = repl(Settings::new(addr.clone()), &["get a"]);
    assert_eq!((code, out.as_str()), (EXIT_UNREACHABLE, ""));
    assert_eq!(err, down_message(&addr));
}

#[test]
fn passwords() {
    let s = TestServer::start("auth", |c| c.password = Some("s3cret".into()));
    let mut good = s.settings();
    good.password = Some("s3cret".into());
    assert_eq!(
        once(good.clone(), &["ping"]),
        (EXIT_OK, "PONG\n".into(), String::new())
    );
    // Authenticated connections speak RESP3: CONFIG GET is a map.
    assert_eq!(
        once(good, &["config", "get", "databases"]).1,
        "1# \"databases\" => \"1\"\n"
    );
    let (code, out, _) = once(s.settings(), &["ping"]);
    assert_eq!(
        (code, out.as_str()),
        (EXIT_ERROR, "(error) NOAUTH Authentication required.\n")
    );
    let mut bad = s.settings();
    bad.password = Some("wrong".into());
    let (code, out, _) = once(bad, &["ping"]);
    assert_eq!(code, EXIT_ERROR);
    assert!(out.starts_with("AUTH failed: (error) WRONGPASS"), "{out}");
    // AUTH typed at the prompt, then RESP3.
    let (_, out, _) = repl(s.settings(), &["auth s3cret", "config get databases"]);
    assert_eq!(out, "OK\n1# \"databases\" => \"1\"\n");
}

/// Lines read with a pause before some, recording the prompts shown.
struct Paced {
    lines: Vec<(Duration, &'static str)>,
    prompts: Vec<String>,
}

impl Input for Paced {
    fn read(&mut self, prompt: &str) -> Line {
        self.prompts.push(prompt.to_string());
        if self.lines.is_empty() {
            return Line::Eof;
        }
        let (pause, line) = self.lines.remove(0);
        thread::sleep(pause);
        Line::Text(line.into())
    }
}

#[test]
fn a_connection_closed_while_idle_is_made_again() {
    let s = TestServer::start("idle", |c| {
        c.idle_timeout = Some(Duration::from_millis(200))
    });
    let mut input = Paced {
        lines: vec![
            (Duration::ZERO, "put a 1"),
            (Duration::from_millis(800), "get a"),
        ],
        prompts: Vec::new(),
    };
    let (code, out, _) = repl_with(s.settings(), &mut input);
    assert_eq!(code, EXIT_OK);
    let want = format!(
        "OK\nthe server closed the connection; reconnecting\nreconnected to {}\n\"1\"\n",
        s.addr
    );
    assert_eq!(out, want);
}

#[test]
fn after_shutdown_the_client_says_so_and_stays_up() {
    let s = TestServer::start("shutdown", |_| {});
    let mut input = Paced {
        lines: vec![
            (Duration::ZERO, "put a 1"),
            (Duration::ZERO, "shutdown"),
            (Duration::from_millis(300), "get a"),
        ],
        prompts: Vec::new(),
    };
    let (code, out, _) = repl_with(s.settings(), &mut input);
    assert_eq!(code, EXIT_OK);
    let want = format!("OK\nthe server is shutting down\n{}", down_message(&s.addr));
    assert_eq!(out, want);
    let prompt = format!("{}> ", s.addr);
    let gone = "not connected> ";
    assert_eq!(input.prompts, [prompt.as_str(), &prompt, gone, gone]);
}

/// A fake server: answers HELLO with an error and then, on the first connection, hangs up
/// on the first command; on the second, answers PONG.
fn flaky_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for round in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf); // HELLO 3
            s.write_all(b"-ERR unknown command 'HELLO'\r\n").unwrap();
            let _ = s.read(&mut buf);
            if round == 1 {
                s.write_all(b"+PONG\r\n").unwrap();
            }
        }
    });
    addr
}

#[test]
fn a_connection_lost_mid_command_is_reported_then_made_again() {
    let addr = flaky_server();
    let (code, out, _) = repl(Settings::new(addr.clone()), &["ping", "ping"]);
    assert_eq!(code, EXIT_OK);
    let want = format!(
        "connection to {addr} lost: the server closed the connection (it will be made again \
         on the next command)\nreconnected to {addr}\nPONG\n"
    );
    assert_eq!(out, want);
}

#[test]
fn a_full_server_turns_the_client_away_with_exit_2() {
    let s = TestServer::start("full", |c| c.max_clients = 1);
    let mut first = toykv::client::Session::new(s.settings());
    first.connect(&mut Vec::new()).unwrap();
    let (code, out, err) = once(s.settings(), &["ping"]);
    assert_eq!((code, out.as_str()), (EXIT_UNREACHABLE, ""));
    assert_eq!(
        err,
        format!(
            "{} refused the connection: ERR max number of clients reached\n",
            s.addr
        )
    );
    drop(first);
}
