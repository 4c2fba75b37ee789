//! Replication and backups: REPLICAOF (SLAVEOF), ROLE, WAIT, REPLCONF, PSYNC, BGSAVE and
//! LASTSAVE. What they act on is in `server::repl`; see `docs/REPLICATION.md`.

use std::path::PathBuf;
use std::time::Duration;

use tracing::{error, info};

use super::{Ctx, Flow, Psync, int, syntax, word};
use crate::resp::Frame;

/// `REPLICAOF host port` / `REPLICAOF NO ONE` (and `SLAVEOF`, Sentinel's name for it).
pub(super) fn replicaof(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let repl = &ctx.shared.repl;
    let reply = match ctx.args {
        [no, one] if word(no) == "no" && word(one) == "one" => {
            repl.promote();
            info!("replication: now a master (REPLICAOF NO ONE)");
            Frame::ok()
        }
        [host, port] => {
            let Some(port) = int(port).and_then(|p| u16::try_from(p).ok()) else {
                return (Frame::err("ERR Invalid master port"), Flow::Next);
            };
            let host = String::from_utf8_lossy(host).into_owned();
            let Some(shared) = ctx.shared.arc() else {
                return (Frame::err("ERR the server is shutting down"), Flow::Next);
            };
            match repl.follow(host.clone(), port) {
                Some(epoch) => {
                    info!(%host, port, "replication: now a replica");
                    super::super::repl::start_link(shared, epoch);
                    Frame::ok()
                }
                None => Frame::Simple("OK Already connected to specified master".into()),
            }
        }
        _ => syntax(),
    };
    (reply, Flow::Next)
}

/// `ROLE`.
pub(super) fn role(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    (ctx.shared.repl.role_reply(), Flow::Next)
}

/// `WAIT numreplicas timeout`: answered at once when enough replicas acknowledged every
/// write so far; else the connection waits (see [`super::Session::wait`]).
pub(super) fn wait(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let repl = &ctx.shared.repl;
    if repl.is_replica() {
        let e = "ERR WAIT cannot be used with replica instances.";
        return (Frame::err(e), Flow::Next);
    }
    let (Some(n), Some(ms)) = (int(&ctx.args[0]), int(&ctx.args[1])) else {
        return (
            Frame::err("ERR value is not an integer or out of range"),
            Flow::Next,
        );
    };
    if ms < 0 {
        return (Frame::err("ERR timeout is negative"), Flow::Next);
    }
    let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
    let target = repl.wait_target();
    let got = repl.acked(target);
    if got >= n {
        return (Frame::Integer(got as i64), Flow::Next);
    }
    let timeout = (ms > 0).then(|| Duration::from_millis(ms as u64));
    ctx.session.wait = Some((target, n, timeout));
    (Frame::Integer(got as i64), Flow::Next)
}

/// `REPLCONF …`: what a replica says of itself before `PSYNC`.
pub(super) fn replconf(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let mut args = ctx.args.iter();
    while let Some(opt) = args.next() {
        let Some(value) = args.next() else {
            return (syntax(), Flow::Next);
        };
        match word(opt).as_str() {
            "listening-port" => match int(value).and_then(|p| u16::try_from(p).ok()) {
                Some(p) => ctx.session.replica_port = Some(p),
                None => return (Frame::err("ERR Invalid listening port"), Flow::Next),
            },
            "toykv-key-mode" => {
                let ours = ctx.shared.config.key_mode.to_string();
                if word(value) != ours {
                    let theirs = String::from_utf8_lossy(value);
                    let e = format!(
                        "ERR key mode mismatch: this master uses {ours}, the replica {theirs}"
                    );
                    return (Frame::err(e), Flow::Next);
                }
            }
            "ip-address" | "capa" | "ack" | "getack" | "rdb-only" | "rdb-filter-only" => {}
            other => {
                let e = format!("ERR Unrecognized REPLCONF option: {other}");
                return (Frame::err(e), Flow::Next);
            }
        }
    }
    (Frame::ok(), Flow::Next)
}

/// `PSYNC replid offset`: the connection becomes a replica's (see `server::repl::master`).
pub(super) fn psync(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    if ctx.shared.repl.is_replica() {
        let e = "ERR toykv replicas do not serve replicas: replicate from the master";
        return (Frame::err(e), Flow::Next);
    }
    let replid = String::from_utf8_lossy(&ctx.args[0]).into_owned();
    let Some(offset) = int(&ctx.args[1]) else {
        return (
            Frame::err("ERR value is not an integer or out of range"),
            Flow::Next,
        );
    };
    ctx.session.psync = Some(Psync { replid, offset });
    (Frame::Null, Flow::Replicate)
}

/// Where `BGSAVE` writes by default: `DIR.backup` beside the data directory.
fn default_backup(dir: &std::path::Path) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(".backup");
    PathBuf::from(s)
}

/// `BGSAVE [SCHEDULE]` writes a consistent copy of the store to `DIR.backup` (replacing
/// the last one once the new one is whole); `BGSAVE INTO path` to a new directory `path`.
pub(super) fn bgsave(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let (dest, replace) = match ctx.args {
        [] => (default_backup(&ctx.shared.config.dir), true),
        [s] if word(s) == "schedule" => (default_backup(&ctx.shared.config.dir), true),
        [into, path] if word(into) == "into" => (
            PathBuf::from(String::from_utf8_lossy(path).into_owned()),
            false,
        ),
        _ => return (syntax(), Flow::Next),
    };
    let Some(shared) = ctx.shared.arc() else {
        return (Frame::err("ERR the server is shutting down"), Flow::Next);
    };
    {
        let mut saves = shared.saves.lock();
        if saves.running {
            return (
                Frame::err("ERR Background save already in progress"),
                Flow::Next,
            );
        }
        saves.running = true;
    }
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let store = shared.store().clone();
    let spawned = std::thread::Builder::new()
        .name("toykv-bgsave".into())
        .spawn(move || {
            let r = save(&store, &dest, replace);
            let mut saves = shared.saves.lock();
            saves.running = false;
            match r {
                Ok(bytes) => {
                    info!(dir = %dest.display(), bytes, "background save done");
                    saves.failed = false;
                    saves.last_ok = started;
                    saves.last_dir = Some(dest);
                }
                Err(e) => {
                    error!(dir = %dest.display(), "background save failed: {e}");
                    saves.failed = true;
                }
            }
        });
    match spawned {
        Ok(_) => (
            Frame::Simple("Background saving started".into()),
            Flow::Next,
        ),
        Err(e) => {
            ctx.shared.saves.lock().running = false;
            (
                Frame::err(format!("ERR cannot start the background save: {e}")),
                Flow::Next,
            )
        }
    }
}

/// Writes the backup into `dest`; with `replace`, an older backup there is replaced once the
/// new one is whole (written beside it, then the two exchanged atomically).
fn save(store: &crate::Store, dest: &std::path::Path, replace: bool) -> crate::Result<u64> {
    if !(replace && dest.exists()) {
        return store.backup(dest);
    }
    let mut new = dest.as_os_str().to_owned();
    new.push(".new");
    let new = PathBuf::from(new);
    if new.exists() {
        std::fs::remove_dir_all(&new).map_err(|e| crate::Error::io("remove", &new, e))?;
    }
    let bytes = store.backup(&new)?;
    crate::io::exchange(dest, &new).map_err(|e| crate::Error::io("exchange with", dest, e))?;
    std::fs::remove_dir_all(&new).map_err(|e| crate::Error::io("remove", &new, e))?;
    Ok(bytes)
}

/// `LASTSAVE`: when the last background save that succeeded began (Unix seconds; 0 before
/// any).
pub(super) fn lastsave(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    (
        Frame::Integer(ctx.shared.saves.lock().last_ok as i64),
        Flow::Next,
    )
}
