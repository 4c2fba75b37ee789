//! Connection commands: HELLO, AUTH, CLIENT and RESET.
//!
//! `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL` work on the registry of live connections
//! ([`crate::server::clients`]). `CLIENT KILL` closes each connection it matches at that
//! connection's next wait point (its pipeline's replies are sent first); the filter form
//! (`ID`, `TYPE`, `ADDR`, `LADDR`, `USER`, `MAXAGE`, `SKIPME`) spares the calling connection
//! unless `SKIPME no` is given, and answers how many it closed — Sentinel's failover sends
//! `CLIENT KILL TYPE normal` and relies on that; the old form `CLIENT KILL ip:port` does not
//! spare it and answers `+OK` or `-ERR No such client`.

use subtle::ConstantTimeEq;

use super::{Ctx, Flow, Session, int, syntax, word};
use crate::resp::{Frame, Proto};
use crate::server::clients::{Filter, Type};

/// Checks `user`/`pass` against the configured password, in constant time.
fn check(ctx: &Ctx<'_>, user: Option<&[u8]>, pass: &[u8]) -> Result<(), Frame> {
    let Some(want) = &ctx.shared.config.password else {
        return Err(Frame::err(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ));
    };
    let user_ok = user.is_none_or(|u| u == b"default");
    let pass_ok: bool = want.as_bytes().ct_eq(pass).into();
    if user_ok && pass_ok {
        Ok(())
    } else {
        Err(Frame::err(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

/// `AUTH [username] password`.
pub(super) fn auth(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let result = match ctx.args {
        [pass] => check(ctx, None, pass),
        [user, pass] => check(ctx, Some(user), pass),
        _ => Err(syntax()),
    };
    let reply = match result {
        Ok(()) => {
            ctx.session.authed = true;
            Frame::ok()
        }
        Err(e) => e,
    };
    (reply, Flow::Next)
}

/// The `HELLO` reply: a map in RESP3, a flat array in RESP2.
fn hello_reply(s: &Session) -> Frame {
    let proto = match s.proto {
        Proto::Resp2 => 2,
        Proto::Resp3 => 3,
    };
    let pair = |k: &str, v: Frame| (Frame::Bulk(k.into()), v);
    Frame::Map(vec![
        pair("server", Frame::Bulk("toykv".into())),
        pair("version", Frame::Bulk(env!("CARGO_PKG_VERSION").into())),
        pair("proto", Frame::Integer(proto)),
        pair("id", Frame::Integer(s.id as i64)),
        pair("mode", Frame::Bulk("standalone".into())),
        pair("role", Frame::Bulk("master".into())),
        pair("modules", Frame::Array(Vec::new())),
    ])
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
pub(super) fn hello(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let reply = (|| {
        let Some((ver, mut rest)) = ctx.args.split_first() else {
            if !ctx.session.authed {
                return Err(Frame::err("NOAUTH Authentication required."));
            }
            return Ok(hello_reply(ctx.session));
        };
        let proto = match int(ver) {
            Some(2) => Proto::Resp2,
            Some(3) => Proto::Resp3,
            Some(_) => return Err(Frame::err("NOPROTO unsupported protocol version")),
            None => {
                return Err(Frame::err(
                    "ERR Protocol version is not an integer or out of range",
                ));
            }
        };
        let mut name = None;
        let mut authed = ctx.session.authed;
        while let Some((opt, tail)) = rest.split_first() {
            match (word(opt).as_str(), tail) {
                ("auth", [user, pass, more @ ..]) => {
                    check(ctx, Some(user), pass)?;
                    authed = true;
                    rest = more;
                }
                ("setname", [n, more @ ..]) => {
                    name = Some(n.clone());
                    rest = more;
                }
                _ => return Err(syntax()),
            }
        }
        if !authed {
            return Err(Frame::err(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time",
            ));
        }
        ctx.session.authed = true;
        ctx.session.proto = proto;
        if name.is_some() {
            ctx.session.name = name;
        }
        Ok(hello_reply(ctx.session))
    })();
    (reply.unwrap_or_else(|e| e), Flow::Next)
}

/// `CLIENT SETNAME|GETNAME|SETINFO|ID`.
pub(super) fn client(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let reply = match (word(&ctx.args[0]).as_str(), &ctx.args[1..]) {
        ("setname", [name]) => {
            if name.iter().any(|c| *c <= b' ' || *c > b'~') {
                Frame::err(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                )
            } else {
                ctx.session.name = (!name.is_empty()).then(|| name.clone());
                Frame::ok()
            }
        }
        ("getname", []) => ctx.session.name.clone().map_or(Frame::Null, Frame::Bulk),
        ("setinfo", [attr, value]) => match word(attr).as_str() {
            "lib-name" => {
                ctx.session.lib_name = Some(value.clone());
                Frame::ok()
            }
            "lib-ver" => {
                ctx.session.lib_ver = Some(value.clone());
                Frame::ok()
            }
            other => Frame::err(format!("ERR Unrecognized option '{other}'")),
        },
        ("id", []) => Frame::Integer(ctx.session.id as i64),
        ("list", rest) => list(ctx, rest),
        ("info", []) => {
            ctx.session.observe();
            let line = ctx.session.client.as_ref().map(|c| c.line());
            Frame::Verbatim("txt".into(), line.unwrap_or_default().into_bytes())
        }
        ("kill", rest) => kill(ctx, rest),
        (sub, _) => Frame::err(format!(
            "ERR CLIENT {} is not supported by toykv (SETNAME, GETNAME, SETINFO, ID, LIST, \
             INFO, KILL)",
            sub.to_uppercase()
        )),
    };
    (reply, Flow::Next)
}

/// `CLIENT LIST [TYPE type] [ID id …]`: one line per connection, as Redis writes them.
fn list(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Frame {
    let mut kind = None;
    let mut ids = None;
    match args {
        [] => {}
        [opt, t] if word(opt) == "type" => {
            let t = word(t);
            match Type::parse(&t) {
                Some(t) => kind = Some(t),
                None => return Frame::err(format!("ERR Unknown client type '{t}'")),
            }
        }
        [opt, rest @ ..] if word(opt) == "id" && !rest.is_empty() => {
            let mut want = Vec::with_capacity(rest.len());
            for id in rest {
                match int(id)
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|&n| n > 0)
                {
                    Some(n) => want.push(n),
                    None => return Frame::err("ERR Invalid client ID"),
                }
            }
            ids = Some(want);
        }
        _ => return syntax(),
    }
    // The caller's own line shows this command.
    ctx.session.observe();
    let mut text = String::new();
    for c in ctx.shared.registry.all() {
        if kind.is_some_and(|t| t != c.client_type())
            || ids.as_ref().is_some_and(|ids| !ids.contains(&c.id))
        {
            continue;
        }
        text.push_str(&c.line());
    }
    Frame::Verbatim("txt".into(), text.into_bytes())
}

/// `CLIENT KILL ip:port` or `CLIENT KILL <filter value> …`.
fn kill(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Frame {
    let me = ctx.session.id;
    let why = format!("killed by CLIENT KILL from client {me}");
    if let [addr] = args {
        // The old form: one address, the caller not spared.
        let filter = Filter {
            addr: Some(String::from_utf8_lossy(addr).into_owned()),
            ..Filter::default()
        };
        return match ctx.shared.registry.kill(&filter, &why) {
            0 => Frame::err("ERR No such client"),
            _ => Frame::ok(),
        };
    }
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return syntax();
    }
    let mut filter = Filter {
        skip: Some(me),
        ..Filter::default()
    };
    for pair in args.chunks_exact(2) {
        let [opt, value] = pair else {
            return syntax();
        };
        let text = || String::from_utf8_lossy(value).into_owned();
        match word(opt).as_str() {
            "id" => match int(value)
                .and_then(|n| u64::try_from(n).ok())
                .filter(|&n| n > 0)
            {
                Some(id) => filter.id = Some(id),
                None => return Frame::err("ERR client-id should be greater than 0"),
            },
            "type" => match Type::parse(&word(value)) {
                Some(t) => filter.kind = Some(t),
                None => return Frame::err(format!("ERR Unknown client type '{}'", text())),
            },
            "addr" => filter.addr = Some(text()),
            "laddr" => filter.laddr = Some(text()),
            "user" => {
                // Every connection is the default user.
                if value.as_slice() != b"default" {
                    return Frame::err(format!("ERR No such user '{}'", text()));
                }
            }
            "maxage" => match int(value).and_then(|n| u64::try_from(n).ok()) {
                Some(s) => filter.max_age = Some(s),
                None => return syntax(),
            },
            "skipme" => match word(value).as_str() {
                "yes" => filter.skip = Some(me),
                "no" => filter.skip = None,
                _ => return syntax(),
            },
            _ => return syntax(),
        }
    }
    let mut n = ctx.shared.registry.kill(&filter, &why);
    // Replicas left the registry when their connection became a replication link.
    if filter.kind == Some(Type::Replica) {
        n += ctx.shared.repl.drop_replicas(filter.addr.as_deref());
    }
    Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `RESET`: the connection as it was when it connected — out of any transaction, unsubscribed
/// from everything, RESP2, no name, and (when a password is set) not authenticated.
pub(super) fn reset(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let s = &mut *ctx.session;
    s.multi = None;
    if let Some(c) = &s.client {
        ctx.shared.pubsub.forget(c.id);
    }
    s.proto = Proto::Resp2;
    s.name = None;
    s.authed = ctx.shared.config.password.is_none();
    (Frame::Simple("RESET".into()), Flow::Next)
}
