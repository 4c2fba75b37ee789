//! Connection commands: HELLO, AUTH and CLIENT.

use subtle::ConstantTimeEq;

use super::{Ctx, Flow, Session, int, syntax, word};
use crate::resp::{Frame, Proto};

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
        (sub, _) => Frame::err(format!(
            "ERR CLIENT {} is not supported by toykv (SETNAME, GETNAME, SETINFO, ID)",
            sub.to_uppercase()
        )),
    };
    (reply, Flow::Next)
}
