//! Server commands: PING, ECHO, INFO, COMMAND, CONFIG GET, SELECT, QUIT, SHUTDOWN and
//! SCRIPT (toykv runs no scripts: `SCRIPT KILL` answers that none is running, as Sentinel
//! expects of a server that is not busy).

use std::fmt::Write as _;

use super::{COMMANDS, Ctx, Flow, int, word};
use crate::resp::{Frame, Proto};
use crate::server::clients::Type;
use crate::server::glob;
use crate::server::repl::Role;
use crate::server::stats::get;

/// `PING [message]`; in RESP2 while subscribed, `["pong", message]` (an empty message if
/// none), as Redis answers there.
pub(super) fn ping(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    if let [_, _, ..] = ctx.args {
        return (
            Frame::err("ERR wrong number of arguments for 'ping' command"),
            Flow::Next,
        );
    }
    let reply = if ctx.session.proto == Proto::Resp2 && ctx.session.subscribed() {
        let msg = ctx.args.first().cloned().unwrap_or_default();
        Frame::Array(vec![Frame::Bulk(b"pong".to_vec()), Frame::Bulk(msg)])
    } else {
        match ctx.args.first() {
            None => Frame::Simple("PONG".into()),
            Some(msg) => Frame::Bulk(msg.clone()),
        }
    };
    (reply, Flow::Next)
}

pub(super) fn echo(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    (Frame::Bulk(ctx.args[0].clone()), Flow::Next)
}

pub(super) fn select(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let reply = match int(&ctx.args[0]) {
        Some(0) => Frame::ok(),
        Some(_) => Frame::err("ERR DB index is out of range (toykv has database 0 only)"),
        None => Frame::err("ERR value is not an integer or out of range"),
    };
    (reply, Flow::Next)
}

pub(super) fn quit(_: &mut Ctx<'_>) -> (Frame, Flow) {
    (Frame::ok(), Flow::Close)
}

/// `SHUTDOWN [NOSAVE|SAVE|NOW|FORCE]`: every write is already durable against a process crash
/// and the server syncs before it exits, so the modifiers change nothing; ABORT is refused.
pub(super) fn shutdown(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    for a in ctx.args {
        match word(a).as_str() {
            "nosave" | "save" | "now" | "force" => {}
            "abort" => return (Frame::err("ERR no shutdown in progress"), Flow::Next),
            _ => return (Frame::err("ERR syntax error"), Flow::Next),
        }
    }
    (Frame::ok(), Flow::Shutdown)
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name…`, `COMMAND DOCS` (no docs: an empty map).
pub(super) fn command(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let info = |i: usize| {
        let c = &COMMANDS[i];
        Frame::Array(vec![
            Frame::Bulk(c.name.into()),
            Frame::Integer(c.arity),
            Frame::Set(c.flags.iter().map(|f| Frame::Simple((*f).into())).collect()),
            Frame::Integer(c.keys.0),
            Frame::Integer(c.keys.1),
            Frame::Integer(c.keys.2),
        ])
    };
    let reply = match ctx.args.split_first() {
        None => Frame::Array((0..COMMANDS.len()).map(info).collect()),
        Some((sub, rest)) => match word(sub).as_str() {
            "count" => Frame::Integer(COMMANDS.len() as i64),
            "docs" => Frame::Map(Vec::new()),
            "info" => Frame::Array(
                rest.iter()
                    .map(|n| super::find(n).map_or(Frame::Null, info))
                    .collect(),
            ),
            other => Frame::err(format!(
                "ERR unknown subcommand '{other}'. Try COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND DOCS."
            )),
        },
    };
    (reply, Flow::Next)
}

/// `CONFIG GET pattern…`: the server's real settings whose names match.
pub(super) fn config(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let Some((sub, patterns)) = ctx.args.split_first() else {
        return (
            Frame::err("ERR wrong number of arguments for 'config' command"),
            Flow::Next,
        );
    };
    if word(sub) == "rewrite" && patterns.is_empty() {
        return (rewrite(ctx), Flow::Next);
    }
    if word(sub) != "get" {
        return (
            Frame::err(format!(
                "ERR CONFIG {} is not supported by toykv (only CONFIG GET and CONFIG REWRITE)",
                String::from_utf8_lossy(sub).to_uppercase()
            )),
            Flow::Next,
        );
    }
    if patterns.is_empty() {
        return (
            Frame::err("ERR wrong number of arguments for 'config|get' command"),
            Flow::Next,
        );
    }
    let c = &ctx.shared.config;
    let settings = [
        ("bind", c.bind.clone()),
        ("port", c.port.to_string()),
        ("dir", c.dir.display().to_string()),
        ("maxclients", c.max_clients.to_string()),
        (
            "timeout",
            c.idle_timeout.map_or(0, |d| d.as_secs()).to_string(),
        ),
        ("proto-max-bulk-len", c.limits.max_request.to_string()),
        (
            "protected-mode",
            if c.protected { "yes" } else { "no" }.to_string(),
        ),
        ("databases", "1".to_string()),
        ("key-mode", c.key_mode.to_string()),
        // Redis's persistence settings, answered truthfully: toykv has neither RDB snapshots
        // nor an append-only file (every write goes straight to its own files).
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("replica-priority", c.replica_priority.to_string()),
        ("slave-priority", c.replica_priority.to_string()),
        (
            "replicaof",
            match ctx.shared.repl.role() {
                Role::Master => String::new(),
                Role::Replica { host, port } => format!("{host} {port}"),
            },
        ),
    ];
    let mut out = Vec::new();
    for (name, value) in settings {
        if patterns
            .iter()
            .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
        {
            out.push((Frame::Bulk(name.into()), Frame::Bulk(value.into_bytes())));
        }
    }
    (Frame::Map(out), Flow::Next)
}

/// `CONFIG REWRITE`: writes the role to the configuration file (see `server::conf`).
fn rewrite(ctx: &Ctx<'_>) -> Frame {
    let Some(path) = &ctx.shared.config.config_file else {
        return Frame::err("ERR The server is running without a config file");
    };
    let role = ctx.shared.repl.role();
    let master = match &role {
        Role::Master => None,
        Role::Replica { host, port } => Some((host.as_str(), *port)),
    };
    match crate::server::conf::rewrite(path, master) {
        Ok(()) => Frame::ok(),
        Err(e) => Frame::err(format!("ERR Rewriting config file: {e}")),
    }
}

/// `INFO [section…]`: server, clients, persistence, stats, commandstats, latencystats,
/// keyspace, storage. The engine's counters are in persistence (durability, syncs, bank
/// write-outs and the puts that waited for one) and storage (sizes, cache, shards, garbage
/// collection).
pub(super) fn info(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let all = [
        "server",
        "clients",
        "persistence",
        "stats",
        "replication",
        "commandstats",
        "latencystats",
        "keyspace",
        "storage",
    ];
    let wanted: Vec<String> = ctx.args.iter().map(|a| word(a)).collect();
    let show = |s: &str| {
        wanted.is_empty()
            || wanted
                .iter()
                .any(|w| w == s || w == "all" || w == "everything" || w == "default")
    };
    let sh = ctx.shared;
    // One snapshot of the engine's counters, taken by the first section that shows them.
    let mut engine = None;
    let mut out = String::new();
    for section in all.iter().filter(|s| show(s)) {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let title = match *section {
            "commandstats" => "Commandstats".to_string(),
            "latencystats" => "Latencystats".to_string(),
            s => format!("{}{}", s[..1].to_uppercase(), &s[1..]),
        };
        let _ = write!(out, "# {title}\r\n");
        let mut line = |k: &str, v: &dyn std::fmt::Display| {
            let _ = write!(out, "{k}:{v}\r\n");
        };
        match *section {
            "server" => {
                line("redis_version", &"7.0.0");
                line("run_id", &sh.repl.run_id);
                line("toykv_version", &env!("CARGO_PKG_VERSION"));
                line("redis_mode", &"standalone");
                line("os", &std::env::consts::OS);
                line("arch_bits", &(usize::BITS));
                line("process_id", &std::process::id());
                line("tcp_port", &sh.config.port);
                line("uptime_in_seconds", &sh.started.elapsed().as_secs());
            }
            "clients" => {
                line(
                    "connected_clients",
                    &sh.clients.load(std::sync::atomic::Ordering::Relaxed),
                );
                line("maxclients", &sh.config.max_clients);
                line("blocked_clients", &0);
                line("pubsub_clients", &sh.registry.count(Type::Pubsub));
            }
            "persistence" => {
                let st = engine.get_or_insert_with(|| sh.store().stats());
                // Redis clients wait for `loading:0`; toykv recovers before it listens.
                line("loading", &0);
                line("durability", &st.durability);
                line("syncs", &st.syncs);
                line("journal_commits", &st.journal_commits);
                line("journal_checkpoints", &st.journal_checkpoints);
                line("flushes", &st.flushes);
                line("stalls", &st.stalls);
                let saves = sh.saves.lock();
                line("rdb_changes_since_last_save", &0);
                line("rdb_bgsave_in_progress", &u8::from(saves.running));
                line("rdb_last_save_time", &saves.last_ok);
                let status = if saves.failed { "err" } else { "ok" };
                line("rdb_last_bgsave_status", &status);
                line("aof_enabled", &0);
            }
            "replication" => sh.repl.info(&mut out, sh.config.replica_priority),
            "stats" => {
                let s = &sh.stats;
                line("total_connections_received", &get(&s.connections));
                line("total_commands_processed", &get(&s.commands));
                line("rejected_connections", &get(&s.rejected));
                line("total_net_input_bytes", &get(&s.input_bytes));
                line("total_net_output_bytes", &get(&s.output_bytes));
                line("keyspace_hits", &get(&s.hits));
                line("keyspace_misses", &get(&s.misses));
                line("total_error_replies_protocol", &get(&s.protocol_errors));
                line("pubsub_channels", &sh.pubsub.numchannels());
                line("pubsub_patterns", &sh.pubsub.numpat());
                sh.repl.stats(&mut out);
            }
            "commandstats" => {
                for (c, st) in COMMANDS
                    .iter()
                    .zip(&sh.commands)
                    .filter(|(_, st)| st.calls() > 0)
                {
                    line(&format!("cmdstat_{}", c.name), &st.line());
                }
            }
            "latencystats" => {
                for (c, st) in COMMANDS
                    .iter()
                    .zip(&sh.commands)
                    .filter(|(_, st)| st.calls() > 0)
                {
                    let v = format!(
                        "p50={}.000,p99={}.000,p99.9={}.000",
                        st.percentile(0.5),
                        st.percentile(0.99),
                        st.percentile(0.999)
                    );
                    line(&format!("latency_percentiles_usec_{}", c.name), &v);
                }
            }
            "keyspace" => {
                let n = sh.store().len();
                if n > 0 {
                    line("db0", &format!("keys={n},expires=0,avg_ttl=0"));
                }
            }
            _ => {
                let st = engine.get_or_insert_with(|| sh.store().stats());
                line("data_dir", &sh.config.dir.display());
                line("key_mode", &sh.config.key_mode);
                line("direct_io", &u8::from(st.direct_io));
                line("read_path", &st.read_path);
                line("live_keys", &st.keys);
                line("index_bytes", &st.index_bytes);
                line("key_records", &st.records);
                line("value_slots_used", &st.slots_used);
                line("value_sections", &st.value_sections);
                line("key_sections", &st.key_sections);
                line("cache_capacity_bytes", &st.cache_capacity);
                line("recent_sections", &st.recent_sections);
                line("recent_bytes", &st.recent_bytes);
                line("cache_used_bytes", &st.cache_bytes);
                line("cache_entries", &st.cache_entries);
                line("cache_hits", &st.cache_hits);
                line("cache_misses", &st.cache_misses);
                line("shards", &st.shards);
                line("disk_bytes", &st.disk_bytes);
                line("gc_sections", &st.gc_sections);
                line("gc_moved", &st.gc_moved);
                line("gc_key_sections", &st.gc_key_sections);
                line("gc_holds", &st.gc_holds);
                line("gc_set_aside", &st.gc_set_aside.len());
            }
        }
    }
    (Frame::Verbatim("txt".into(), out.into_bytes()), Flow::Next)
}

/// `SCRIPT KILL|FLUSH|EXISTS|HELP`: toykv has no scripting, so no script ever runs (KILL:
/// `-NOTBUSY`), the script cache is always empty (FLUSH: nothing to do; EXISTS: 0 for every
/// sha1), and `SCRIPT LOAD` is refused.
pub(super) fn script(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let sub = word(&ctx.args[0]);
    let rest = &ctx.args[1..];
    let reply = match (sub.as_str(), rest) {
        ("kill", []) => Frame::err("NOTBUSY No scripts in execution right now."),
        ("flush", []) => Frame::ok(),
        ("flush", [mode]) => match word(mode).as_str() {
            "sync" | "async" => Frame::ok(),
            _ => Frame::err("ERR SCRIPT FLUSH only support SYNC|ASYNC option"),
        },
        ("exists", [_, ..]) => Frame::Array(rest.iter().map(|_| Frame::Integer(0)).collect()),
        ("load", [_]) => Frame::err("ERR toykv does not run scripts (no EVAL, no script cache)"),
        ("help", []) => Frame::Array(
            [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return 0 for each: toykv keeps no scripts.",
                "FLUSH [ASYNC|SYNC]",
                "    Nothing to flush: toykv keeps no scripts.",
                "KILL",
                "    No script ever runs in toykv: always -NOTBUSY.",
                "HELP",
                "    Prints this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(l.into()))
            .collect(),
        ),
        ("kill" | "flush" | "exists" | "load" | "help", _) => Frame::err(format!(
            "ERR wrong number of arguments for 'script|{sub}' command"
        )),
        _ => Frame::err(format!(
            "ERR unknown subcommand '{}'. Try SCRIPT HELP.",
            String::from_utf8_lossy(&ctx.args[0])
        )),
    };
    (reply, Flow::Next)
}
