//! Pub/sub (SUBSCRIBE, PSUBSCRIBE, their UNSUBSCRIBEs, PUBLISH, PUBSUB) in RESP2 and RESP3,
//! the client registry (CLIENT LIST, CLIENT INFO, CLIENT KILL), SCRIPT, and what Redis
//! Sentinel sends: `SUBSCRIBE __sentinel__:hello` on one connection, `PUBLISH` from others,
//! and its failover block `MULTI … CLIENT KILL TYPE normal; CLIENT KILL TYPE pubsub; EXEC`.
//!
//! Replies are compared with what redis-server 7.0 sends. Nothing here asserts timing: a
//! connection that should close is read until the server closes it.

use std::time::{Duration, Instant};

use toykv::resp::Frame;
use toykv::server::Config;

use crate::{Client, TestServer, bulk, command, error};

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

/// A subscribe-family confirmation as RESP2 sends it.
fn confirm(kind: &str, name: Option<&str>, n: i64) -> Frame {
    Frame::Array(vec![bulk(kind), name.map_or(Frame::Null, bulk), int(n)])
}

fn message(channel: &str, payload: &str) -> Frame {
    Frame::Array(vec![bulk("message"), bulk(channel), bulk(payload)])
}

fn pmessage(pattern: &str, channel: &str, payload: &str) -> Frame {
    Frame::Array(vec![
        bulk("pmessage"),
        bulk(pattern),
        bulk(channel),
        bulk(payload),
    ])
}

/// The text of a bulk or verbatim reply.
fn text(f: Frame) -> String {
    match f {
        Frame::Bulk(b) | Frame::Verbatim(_, b) => String::from_utf8(b).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The `CLIENT LIST` lines a connection sees.
fn client_list(c: &mut Client, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["CLIENT", "LIST"];
    argv.extend_from_slice(args);
    text(c.call(&argv)).lines().map(String::from).collect()
}

/// The value of `field` in a `CLIENT LIST` line.
fn field<'a>(line: &'a str, field: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}

/// Polls `PUBSUB NUMSUB channel` until it is `want` (a closed connection leaves the registry
/// once its task ends, which the server notices on its own).
fn wait_numsub(c: &mut Client, channel: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = c.call(&["PUBSUB", "NUMSUB", channel]);
        if got == Frame::Array(vec![bulk(channel), int(want)]) {
            return;
        }
        assert!(Instant::now() < deadline, "NUMSUB stayed {got:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn publish_reaches_every_subscriber_on_every_connection() {
    let s = TestServer::start(Config::default());
    let mut a = s.connect();
    let mut b = s.connect();
    let mut p = s.connect();
    assert_eq!(
        a.call(&["SUBSCRIBE", "news", "other"]),
        confirm("subscribe", Some("news"), 1)
    );
    assert_eq!(a.read(), Some(confirm("subscribe", Some("other"), 2)));
    assert_eq!(
        b.call(&["SUBSCRIBE", "news"]),
        confirm("subscribe", Some("news"), 1)
    );
    // Subscribing twice is once.
    assert_eq!(
        b.call(&["SUBSCRIBE", "news"]),
        confirm("subscribe", Some("news"), 1)
    );
    assert_eq!(p.call(&["PUBLISH", "news", "hello"]), int(2));
    assert_eq!(p.call(&["PUBLISH", "other", "x"]), int(1));
    assert_eq!(p.call(&["PUBLISH", "nobody", "x"]), int(0));
    assert_eq!(a.read(), Some(message("news", "hello")));
    assert_eq!(a.read(), Some(message("other", "x")));
    assert_eq!(b.read(), Some(message("news", "hello")));
    // Binary payloads arrive byte for byte.
    let all: Vec<u8> = (0..=255u8).collect();
    assert_eq!(p.call(&[&b"PUBLISH"[..], b"news", &all]), int(2));
    let want = Frame::Array(vec![bulk("message"), bulk("news"), Frame::Bulk(all)]);
    assert_eq!(a.read(), Some(want.clone()));
    assert_eq!(b.read(), Some(want));
    assert_eq!(
        p.call(&["PUBSUB", "NUMSUB", "news", "other", "nobody"]),
        Frame::Array(vec![
            bulk("news"),
            int(2),
            bulk("other"),
            int(1),
            bulk("nobody"),
            int(0)
        ])
    );
    assert_eq!(
        p.call(&["PUBSUB", "CHANNELS"]),
        Frame::Array(vec![bulk("news"), bulk("other")])
    );
    assert_eq!(
        p.call(&["PUBSUB", "CHANNELS", "n*"]),
        Frame::Array(vec![bulk("news")])
    );
    assert_eq!(p.call(&["PUBSUB", "NUMPAT"]), int(0));
    assert!(error(&p.call(&["PUBSUB", "NOPE"])).starts_with("ERR unknown subcommand 'NOPE'"));
    // Many messages published at once (one pipeline) all arrive, in order.
    let mut burst = Vec::new();
    for i in 0..500 {
        burst.extend(command(&["PUBLISH", "news", &format!("m{i}")]));
    }
    p.send(&burst);
    for _ in 0..500 {
        assert_eq!(p.read(), Some(int(2)));
    }
    for i in 0..500 {
        assert_eq!(a.read(), Some(message("news", &format!("m{i}"))));
        assert_eq!(b.read(), Some(message("news", &format!("m{i}"))));
    }
}

#[test]
fn pattern_subscriptions() {
    let s = TestServer::start(Config::default());
    let mut a = s.connect();
    let mut p = s.connect();
    assert_eq!(
        a.call(&["PSUBSCRIBE", "news.*", "h?llo"]),
        confirm("psubscribe", Some("news.*"), 1)
    );
    assert_eq!(a.read(), Some(confirm("psubscribe", Some("h?llo"), 2)));
    assert_eq!(p.call(&["PUBSUB", "NUMPAT"]), int(2));
    assert_eq!(p.call(&["PUBLISH", "news.sport", "goal"]), int(1));
    assert_eq!(p.call(&["PUBLISH", "news", "x"]), int(0));
    assert_eq!(p.call(&["PUBLISH", "hallo", "y"]), int(1));
    assert_eq!(a.read(), Some(pmessage("news.*", "news.sport", "goal")));
    assert_eq!(a.read(), Some(pmessage("h?llo", "hallo", "y")));
    // A channel subscription and a matching pattern: two receivers, two messages (as Redis).
    assert_eq!(
        a.call(&["SUBSCRIBE", "news.tech"]),
        confirm("subscribe", Some("news.tech"), 3)
    );
    assert_eq!(p.call(&["PUBLISH", "news.tech", "z"]), int(2));
    assert_eq!(a.read(), Some(message("news.tech", "z")));
    assert_eq!(a.read(), Some(pmessage("news.*", "news.tech", "z")));
    // Patterns are not channels.
    assert_eq!(
        p.call(&["PUBSUB", "CHANNELS"]),
        Frame::Array(vec![bulk("news.tech")])
    );
    assert_eq!(
        a.call(&["PUNSUBSCRIBE", "news.*"]),
        confirm("punsubscribe", Some("news.*"), 2)
    );
    assert_eq!(p.call(&["PUBLISH", "news.sport", "x"]), int(0));
    assert_eq!(
        a.call(&["PUNSUBSCRIBE"]),
        confirm("punsubscribe", Some("h?llo"), 1)
    );
    assert_eq!(p.call(&["PUBSUB", "NUMPAT"]), int(0));
    assert_eq!(p.call(&["PUBLISH", "news.tech", "last"]), int(1));
    assert_eq!(a.read(), Some(message("news.tech", "last")));
}

#[test]
fn unsubscribe_stops_delivery() {
    let s = TestServer::start(Config::default());
    let mut a = s.connect();
    let mut p = s.connect();
    assert_eq!(
        a.call(&["SUBSCRIBE", "x", "y"]),
        confirm("subscribe", Some("x"), 1)
    );
    assert_eq!(a.read(), Some(confirm("subscribe", Some("y"), 2)));
    assert_eq!(
        a.call(&["UNSUBSCRIBE", "x"]),
        confirm("unsubscribe", Some("x"), 1)
    );
    assert_eq!(p.call(&["PUBLISH", "x", "lost"]), int(0));
    assert_eq!(p.call(&["PUBLISH", "y", "kept"]), int(1));
    assert_eq!(a.read(), Some(message("y", "kept")));
    // A channel not subscribed to is confirmed all the same.
    assert_eq!(
        a.call(&["UNSUBSCRIBE", "never"]),
        confirm("unsubscribe", Some("never"), 1)
    );
    // No arguments: every channel.
    assert_eq!(
        a.call(&["UNSUBSCRIBE"]),
        confirm("unsubscribe", Some("y"), 0)
    );
    assert_eq!(p.call(&["PUBLISH", "y", "lost"]), int(0));
    assert_eq!(p.call(&["PUBSUB", "CHANNELS"]), Frame::Array(vec![]));
    // Out of subscribed mode: commands run again; with nothing to leave, one reply with a
    // null name.
    assert_eq!(a.call(&["GET", "k"]), Frame::Null);
    assert_eq!(a.call(&["UNSUBSCRIBE"]), confirm("unsubscribe", None, 0));
    assert_eq!(a.call(&["PUNSUBSCRIBE"]), confirm("punsubscribe", None, 0));
    assert_eq!(a.call(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn resp2_subscribed_mode_accepts_only_pubsub_commands() {
    let s = TestServer::start(Config::default());
    let mut a = s.connect();
    assert_eq!(
        a.call(&["SUBSCRIBE", "c"]),
        confirm("subscribe", Some("c"), 1)
    );
    assert_eq!(
        error(&a.call(&["GET", "k"])),
        "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context"
    );
    assert_eq!(
        error(&a.call(&["CLIENT", "LIST"])),
        "ERR Can't execute 'client|list': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT \
         / RESET are allowed in this context"
    );
    assert!(error(&a.call(&["PUBLISH", "c", "x"])).starts_with("ERR Can't execute 'publish'"));
    // PING answers as Redis does in this mode.
    assert_eq!(
        a.call(&["PING"]),
        Frame::Array(vec![bulk("pong"), bulk("")])
    );
    assert_eq!(
        a.call(&["PING", "hi"]),
        Frame::Array(vec![bulk("pong"), bulk("hi")])
    );
    assert_eq!(
        a.call(&["PSUBSCRIBE", "p*"]),
        confirm("psubscribe", Some("p*"), 2)
    );
    // RESET leaves subscribed mode without a confirmation per channel.
    assert_eq!(a.call(&["RESET"]), Frame::Simple("RESET".into()));
    assert_eq!(a.call(&["GET", "k"]), Frame::Null);
    let mut p = s.connect();
    assert_eq!(p.call(&["PUBLISH", "c", "x"]), int(0));
    assert_eq!(p.call(&["PUBLISH", "pp", "x"]), int(0));
    // QUIT is allowed, and closes.
    assert_eq!(
        a.call(&["SUBSCRIBE", "c"]),
        confirm("subscribe", Some("c"), 1)
    );
    assert_eq!(a.call(&["QUIT"]), Frame::ok());
    assert!(a.closed());
    wait_numsub(&mut p, "c", 0);
}

#[test]
fn resp3_messages_are_push_frames_and_commands_still_run() {
    let s = TestServer::start(Config::default());
    let mut a = s.connect();
    let mut p = s.connect();
    assert!(matches!(a.call(&["HELLO", "3"]), Frame::Map(_)));
    let push = |kind: &str, name: &str, n: i64| Frame::Push(vec![bulk(kind), bulk(name), int(n)]);
    assert_eq!(a.call(&["SUBSCRIBE", "c"]), push("subscribe", "c", 1));
    // Any command runs in RESP3 while subscribed.
    assert_eq!(a.call(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(a.call(&["GET", "k"]), bulk("v"));
    assert_eq!(a.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(p.call(&["PUBLISH", "c", "hi"]), int(1));
    assert_eq!(
        a.read(),
        Some(Frame::Push(vec![bulk("message"), bulk("c"), bulk("hi")]))
    );
    assert_eq!(a.call(&["UNSUBSCRIBE", "c"]), push("unsubscribe", "c", 0));
}

#[test]
fn the_redis_crate_receives_messages_in_resp2_and_resp3() {
    let s = TestServer::start(Config::default());
    let mut p = s.connect();
    // RESP2: the crate's PubSub.
    let client = redis::Client::open(format!("redis://{}/", s.addr)).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut sub = con.as_pubsub();
    sub.subscribe("news").unwrap();
    sub.psubscribe("n*").unwrap();
    assert_eq!(p.call(&["PUBLISH", "news", "two"]), int(2));
    let m = sub.get_message().unwrap();
    assert_eq!(m.get_channel_name(), "news");
    assert_eq!(m.get_payload::<String>().unwrap(), "two");
    assert!(!m.from_pattern());
    let m = sub.get_message().unwrap();
    assert!(m.from_pattern());
    assert_eq!(m.get_pattern::<String>().unwrap(), "n*");
    drop(sub);

    // RESP3: push frames, through the crate's push sender.
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", s.addr)).unwrap();
    let mut con = client.get_connection().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    con.set_push_sender(tx);
    con.subscribe_resp3("hello").unwrap();
    // The PING's reply follows the subscription's.
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(p.call(&["PUBLISH", "hello", "world"]), int(1));
    // Messages published before a command are sent before its reply.
    let _: String = redis::cmd("PING").query(&mut con).unwrap();
    let pushes: Vec<redis::PushInfo> = rx.try_iter().collect();
    assert!(
        pushes.iter().any(|p| p.kind == redis::PushKind::Subscribe),
        "{pushes:?}"
    );
    let msg = pushes
        .iter()
        .find(|p| p.kind == redis::PushKind::Message)
        .unwrap_or_else(|| panic!("no message in {pushes:?}"));
    assert_eq!(
        msg.data,
        vec![
            redis::Value::BulkString(b"hello".to_vec()),
            redis::Value::BulkString(b"world".to_vec())
        ]
    );
}

#[test]
fn client_kill_type_normal_spares_the_caller() {
    let s = TestServer::start(Config::default());
    let mut me = s.connect();
    let mut n1 = s.connect();
    let mut n2 = s.connect();
    let mut sub = s.connect();
    assert_eq!(n1.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(n2.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(
        sub.call(&["SUBSCRIBE", "__sentinel__:hello"]),
        confirm("subscribe", Some("__sentinel__:hello"), 1)
    );
    assert_eq!(me.call(&["CLIENT", "KILL", "TYPE", "normal"]), int(2));
    // The other normal connections close although idle.
    assert!(n1.closed());
    assert!(n2.closed());
    // The caller and the subscriber stay.
    assert_eq!(me.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(
        sub.call(&["PING"]),
        Frame::Array(vec![bulk("pong"), bulk("")])
    );
    let lines = client_list(&mut me, &[]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(me.call(&["CLIENT", "KILL", "TYPE", "pubsub"]), int(1));
    assert!(sub.closed());
    assert_eq!(me.call(&["CLIENT", "KILL", "TYPE", "pubsub"]), int(0));
    assert_eq!(me.call(&["CLIENT", "KILL", "TYPE", "master"]), int(0));
    assert_eq!(me.call(&["CLIENT", "KILL", "TYPE", "slave"]), int(0));
    assert_eq!(me.call(&["CLIENT", "KILL", "TYPE", "replica"]), int(0));
    assert_eq!(
        error(&me.call(&["CLIENT", "KILL", "TYPE", "bogus"])),
        "ERR Unknown client type 'bogus'"
    );
    assert_eq!(client_list(&mut me, &[]).len(), 1);
    assert_eq!(me.call(&["PUBSUB", "NUMSUB", "__sentinel__:hello"]), {
        Frame::Array(vec![bulk("__sentinel__:hello"), int(0)])
    });
}

#[test]
fn client_kill_by_id_addr_and_the_old_form() {
    let s = TestServer::start(Config::default());
    let mut me = s.connect();
    let mut a = s.connect();
    let mut b = s.connect();
    let mut c = s.connect();
    let Frame::Integer(a_id) = a.call(&["CLIENT", "ID"]) else {
        panic!()
    };
    assert_eq!(
        me.call(&["CLIENT", "KILL", "ID", &a_id.to_string()]),
        int(1)
    );
    assert!(a.closed());
    assert_eq!(me.call(&["CLIENT", "KILL", "ID", "999999"]), int(0));
    assert_eq!(
        error(&me.call(&["CLIENT", "KILL", "ID", "abc"])),
        "ERR client-id should be greater than 0"
    );
    // The server sees a connection's local address as its peer. A reply first: the
    // connection is registered once the server has started serving it.
    assert_eq!(b.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(c.call(&["PING"]), Frame::Simple("PONG".into()));
    let b_addr = b.stream.local_addr().unwrap().to_string();
    assert_eq!(me.call(&["CLIENT", "KILL", "ADDR", &b_addr]), int(1));
    assert!(b.closed());
    let c_addr = c.stream.local_addr().unwrap().to_string();
    assert_eq!(me.call(&["CLIENT", "KILL", &c_addr]), Frame::ok());
    assert!(c.closed());
    assert_eq!(
        error(&me.call(&["CLIENT", "KILL", &c_addr])),
        "ERR No such client"
    );
    assert_eq!(
        error(&me.call(&["CLIENT", "KILL", "SKIPME", "maybe"])),
        "ERR syntax error"
    );
    assert_eq!(
        error(&me.call(&["CLIENT", "KILL", "TYPE", "normal", "ID"])),
        "ERR syntax error"
    );
    // Without SKIPME no the caller is spared; with it, it is closed after its reply.
    let my_addr = me.stream.local_addr().unwrap().to_string();
    assert_eq!(me.call(&["CLIENT", "KILL", "ADDR", &my_addr]), int(0));
    assert_eq!(
        me.call(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]),
        int(1)
    );
    assert!(me.closed());
}

#[test]
fn client_list_and_info() {
    let s = TestServer::start(Config::default());
    let mut me = s.connect();
    let mut sub = s.connect();
    let mut tx = s.connect();
    assert_eq!(me.call(&["CLIENT", "SETNAME", "lister"]), Frame::ok());
    let Frame::Integer(my_id) = me.call(&["CLIENT", "ID"]) else {
        panic!()
    };
    assert_eq!(
        sub.call(&["SUBSCRIBE", "a", "b"]),
        confirm("subscribe", Some("a"), 1)
    );
    assert_eq!(sub.read(), Some(confirm("subscribe", Some("b"), 2)));
    assert_eq!(
        sub.call(&["PSUBSCRIBE", "p*"]),
        confirm("psubscribe", Some("p*"), 3)
    );
    assert_eq!(tx.call(&["MULTI"]), Frame::ok());
    assert_eq!(tx.call(&["SET", "k", "v"]), Frame::Simple("QUEUED".into()));
    assert_eq!(tx.call(&["GET", "k"]), Frame::Simple("QUEUED".into()));

    let lines = client_list(&mut me, &[]);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let mine = &lines[0];
    assert_eq!(field(mine, "id"), my_id.to_string());
    assert_eq!(
        field(mine, "addr"),
        me.stream.local_addr().unwrap().to_string()
    );
    assert_eq!(field(mine, "laddr"), s.addr.to_string());
    assert_eq!(field(mine, "name"), "lister");
    assert_eq!(field(mine, "flags"), "N");
    assert_eq!(field(mine, "db"), "0");
    assert_eq!(field(mine, "multi"), "-1");
    assert_eq!(field(mine, "cmd"), "client|list");
    assert_eq!(field(mine, "resp"), "2");
    for f in ["fd", "age", "idle", "omem"] {
        field(mine, f).parse::<i64>().unwrap();
    }
    let subscriber = &lines[1];
    assert_eq!(field(subscriber, "flags"), "P");
    assert_eq!(field(subscriber, "sub"), "2");
    assert_eq!(field(subscriber, "psub"), "1");
    assert_eq!(field(subscriber, "cmd"), "psubscribe");
    let queued = &lines[2];
    assert_eq!(field(queued, "flags"), "x");
    assert_eq!(field(queued, "multi"), "2");
    assert_eq!(field(queued, "cmd"), "get");

    let pubsub = client_list(&mut me, &["TYPE", "pubsub"]);
    assert_eq!(pubsub, vec![lines[1].clone()]);
    assert_eq!(client_list(&mut me, &["TYPE", "normal"]).len(), 2);
    assert_eq!(client_list(&mut me, &["TYPE", "replica"]).len(), 0);
    let by_id = client_list(&mut me, &["ID", &my_id.to_string(), "424242"]);
    assert_eq!(by_id.len(), 1);
    assert_eq!(field(&by_id[0], "id"), my_id.to_string());
    assert!(error(&me.call(&["CLIENT", "LIST", "TYPE", "x"])).contains("Unknown client type"));
    assert_eq!(
        error(&me.call(&["CLIENT", "LIST", "ID", "x"])),
        "ERR Invalid client ID"
    );

    let info = text(me.call(&["CLIENT", "INFO"]));
    assert!(info.ends_with('\n'));
    assert_eq!(field(info.trim_end(), "id"), my_id.to_string());
    assert_eq!(field(info.trim_end(), "cmd"), "client|info");

    // EXEC shows as the last command, not what it ran.
    assert!(matches!(tx.call(&["EXEC"]), Frame::Array(_)));
    let lines = client_list(&mut me, &["TYPE", "normal"]);
    assert_eq!(field(&lines[1], "cmd"), "exec");
    assert_eq!(field(&lines[1], "flags"), "N");

    // INFO clients counts them.
    let info = text(me.call(&["INFO", "clients"]));
    assert!(info.contains("connected_clients:3\r\n"), "{info}");
    assert!(info.contains("pubsub_clients:1\r\n"), "{info}");
    assert!(info.contains("blocked_clients:0\r\n"), "{info}");
    let stats = text(me.call(&["INFO", "stats"]));
    assert!(stats.contains("pubsub_channels:2\r\n"), "{stats}");
    assert!(stats.contains("pubsub_patterns:1\r\n"), "{stats}");
}

/// Sentinel's failover, pipelined in one write as Sentinel sends it (without its SLAVEOF,
/// which replication adds): every command is queued, and EXEC answers an array in which
/// CONFIG REWRITE's error is one element — not EXECABORT.
#[test]
fn sentinel_failover_block_runs_in_exec() {
    let s = TestServer::start(Config::default());
    let mut sentinel = s.connect();
    let mut normal = s.connect();
    let mut sub = s.connect();
    assert_eq!(normal.call(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(
        sub.call(&["SUBSCRIBE", "__sentinel__:hello"]),
        confirm("subscribe", Some("__sentinel__:hello"), 1)
    );
    let mut block = Vec::new();
    for c in [
        &["MULTI"][..],
        &["CONFIG", "REWRITE"],
        &["CLIENT", "KILL", "TYPE", "normal"],
        &["CLIENT", "KILL", "TYPE", "pubsub"],
        &["EXEC"],
    ] {
        block.extend(command(c));
    }
    sentinel.send(&block);
    assert_eq!(sentinel.read(), Some(Frame::ok()));
    for _ in 0..3 {
        assert_eq!(sentinel.read(), Some(Frame::Simple("QUEUED".into())));
    }
    assert_eq!(
        sentinel.read(),
        Some(Frame::Array(vec![
            Frame::Error("ERR The server is running without a config file".into()),
            int(1),
            int(1),
        ]))
    );
    assert!(normal.closed());
    assert!(sub.closed());
    assert_eq!(sentinel.call(&["GET", "k"]), bulk("v"));
    assert_eq!(client_list(&mut sentinel, &[]).len(), 1);
}

/// A subscriber that never reads: PUBLISH keeps answering at once, and once the messages
/// waiting for the subscriber pass the limit it is closed (and leaves the registry).
#[test]
fn a_subscriber_that_does_not_read_is_closed_past_its_limit() {
    let s = TestServer::start(Config {
        pubsub_limit: 1 << 20,
        ..Config::default()
    });
    let mut slow = s.connect();
    assert_eq!(
        slow.call(&["SUBSCRIBE", "firehose"]),
        confirm("subscribe", Some("firehose"), 1)
    );
    let mut fast = s.connect();
    assert_eq!(
        fast.call(&["SUBSCRIBE", "firehose"]),
        confirm("subscribe", Some("firehose"), 1)
    );
    let mut p = s.connect();
    let payload = "x".repeat(4096);
    let mut batch = Vec::new();
    for _ in 0..64 {
        batch.extend(command(&["PUBLISH", "firehose", &payload]));
    }
    // At most 64 MiB: the kernel's socket buffers take a few MiB before the server's
    // writes to `slow` wait; then the limit is reached within 1 MiB. (A batch, 256 KiB of
    // messages pushed at once, stays well within the limit of the subscriber that reads.)
    let mut published = 0;
    let mut gone = false;
    for _ in 0..256 {
        p.send(&batch);
        for _ in 0..64 {
            match p.read() {
                Some(Frame::Integer(1 | 2)) => published += 1,
                other => panic!("PUBLISH answered {other:?}"),
            }
        }
        // The reading subscriber keeps up (and receives everything, in order).
        for _ in 0..64 {
            let got = fast.read();
            assert!(
                got.as_ref() == Some(&message("firehose", &payload)),
                "the reading subscriber got {:?}",
                got.map(|f| format!("{f:?}").chars().take(100).collect::<String>())
            );
        }
        if p.call(&["PUBSUB", "NUMSUB", "firehose"]) == Frame::Array(vec![bulk("firehose"), int(1)])
        {
            gone = true;
            break;
        }
    }
    assert!(gone, "the subscriber that does not read was not closed");
    assert!(published >= 64);
    // What it had been sent before, then the end of the connection.
    assert!(slow.closed());
    // The others are unaffected.
    assert_eq!(p.call(&["PUBLISH", "firehose", "after"]), int(1));
    assert_eq!(fast.read(), Some(message("firehose", "after")));
    assert_eq!(client_list(&mut p, &[]).len(), 2);
}

#[test]
fn a_closed_subscriber_leaves_the_registry() {
    let s = TestServer::start(Config::default());
    let mut p = s.connect();
    let mut a = s.connect();
    assert_eq!(
        a.call(&["SUBSCRIBE", "c"]),
        confirm("subscribe", Some("c"), 1)
    );
    wait_numsub(&mut p, "c", 1);
    drop(a);
    wait_numsub(&mut p, "c", 0);
    assert_eq!(p.call(&["PUBLISH", "c", "x"]), int(0));
    assert_eq!(client_list(&mut p, &[]).len(), 1);
}

#[test]
fn subscribers_are_not_closed_as_idle() {
    let s = TestServer::start(Config {
        idle_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    });
    let mut a = s.connect();
    assert_eq!(
        a.call(&["SUBSCRIBE", "quiet"]),
        confirm("subscribe", Some("quiet"), 1)
    );
    std::thread::sleep(Duration::from_millis(800));
    let mut p = s.connect();
    assert_eq!(p.call(&["PUBLISH", "quiet", "still here"]), int(1));
    assert_eq!(a.read(), Some(message("quiet", "still here")));
    // Unsubscribed, it is an ordinary client again, closed when idle.
    assert_eq!(
        a.call(&["UNSUBSCRIBE"]),
        confirm("unsubscribe", Some("quiet"), 0)
    );
    assert!(a.closed());
}

#[test]
fn script_answers_that_nothing_runs() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(
        error(&c.call(&["SCRIPT", "KILL"])),
        "NOTBUSY No scripts in execution right now."
    );
    assert_eq!(
        c.call(&["SCRIPT", "EXISTS", "a", "b"]),
        Frame::Array(vec![int(0), int(0)])
    );
    assert_eq!(c.call(&["SCRIPT", "FLUSH"]), Frame::ok());
    assert_eq!(c.call(&["SCRIPT", "FLUSH", "ASYNC"]), Frame::ok());
    assert!(error(&c.call(&["SCRIPT", "LOAD", "return 1"])).starts_with("ERR"));
    assert_eq!(
        error(&c.call(&["SCRIPT", "NOPE"])),
        "ERR unknown subcommand 'NOPE'. Try SCRIPT HELP."
    );
}

/// A connection that kills itself in the middle of a pipeline closes only after every command
/// it had read has run and been answered: no write is done and left unacknowledged.
#[test]
fn a_kill_waits_for_the_pipeline_read_so_far() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    let mut bytes = command(&["SET", "k1", "a"]);
    bytes.extend(command(&[
        "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no",
    ]));
    bytes.extend(command(&["SET", "k2", "b"]));
    bytes.extend(command(&["GET", "k2"]));
    c.send(&bytes);
    assert_eq!(c.read(), Some(Frame::ok()));
    assert_eq!(c.read(), Some(int(1)));
    assert_eq!(c.read(), Some(Frame::ok()));
    assert_eq!(c.read(), Some(bulk("b")));
    assert!(c.closed());
    let mut other = s.connect();
    assert_eq!(
        other.call(&["MGET", "k1", "k2"]),
        Frame::Array(vec![bulk("a"), bulk("b")])
    );
}

/// RESET is not queued: it ends the transaction (and subscribed mode) at once, as in Redis.
#[test]
fn reset_ends_a_transaction() {
    let s = TestServer::start(Config::default());
    let mut c = s.connect();
    assert_eq!(c.call(&["CLIENT", "SETNAME", "n"]), Frame::ok());
    assert_eq!(c.call(&["MULTI"]), Frame::ok());
    assert_eq!(c.call(&["SET", "k", "v"]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.call(&["RESET"]), Frame::Simple("RESET".into()));
    assert_eq!(error(&c.call(&["EXEC"])), "ERR EXEC without MULTI");
    assert_eq!(c.call(&["GET", "k"]), Frame::Null);
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), Frame::Null);
}
