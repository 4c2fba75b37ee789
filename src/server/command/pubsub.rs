//! Pub/sub commands: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH and PUBSUB,
//! with Redis 7.0's replies. The registry and delivery are in [`crate::server::pubsub`].
//!
//! The subscribe family answers one frame per channel or pattern, `[kind, name, count]`
//! (count: the connection's channels and patterns after it), as an array in RESP2 and a
//! push in RESP3; the handlers return them as a [`Frame::Array`] that the dispatcher sends as
//! separate frames (see [`SEVERAL`]).

use super::{Ctx, Flow, word};
use crate::resp::Frame;
use crate::server::pubsub::Which;

/// The commands whose `Frame::Array` reply is several frames, one per name.
pub(super) const SEVERAL: &[&str] = &["subscribe", "unsubscribe", "psubscribe", "punsubscribe"];

/// One confirmation: `[kind, name, count]`.
fn confirm(kind: &str, name: Frame, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::Bulk(kind.into()),
        name,
        Frame::Integer(i64::try_from(count).unwrap_or(i64::MAX)),
    ])
}

fn no_connection() -> (Frame, Flow) {
    (
        Frame::err("ERR pub/sub needs a client connection"),
        Flow::Next,
    )
}

fn add(ctx: &mut Ctx<'_>, which: Which, kind: &str) -> (Frame, Flow) {
    let Some(client) = ctx.session.client.clone() else {
        return no_connection();
    };
    let frames = ctx
        .args
        .iter()
        .map(|name| {
            let n = ctx.shared.pubsub.subscribe(which, &client, name);
            confirm(kind, Frame::Bulk(name.clone()), n)
        })
        .collect();
    (Frame::Array(frames), Flow::Next)
}

fn remove(ctx: &mut Ctx<'_>, which: Which, kind: &str) -> (Frame, Flow) {
    let Some(id) = ctx.session.client.as_ref().map(|c| c.id) else {
        return no_connection();
    };
    let ps = &ctx.shared.pubsub;
    let names = if ctx.args.is_empty() {
        ps.subscribed(which, id)
    } else {
        ctx.args.to_vec()
    };
    if names.is_empty() {
        // Nothing to leave: one reply with a null name, as Redis sends.
        return (
            Frame::Array(vec![confirm(kind, Frame::Null, ps.total(id))]),
            Flow::Next,
        );
    }
    let frames = names
        .into_iter()
        .map(|name| {
            let n = ps.unsubscribe(which, id, &name);
            confirm(kind, Frame::Bulk(name), n)
        })
        .collect();
    (Frame::Array(frames), Flow::Next)
}

/// `SUBSCRIBE channel [channel …]`.
pub(super) fn subscribe(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    add(ctx, Which::Channel, "subscribe")
}

/// `UNSUBSCRIBE [channel …]`: the channels named, or every one.
pub(super) fn unsubscribe(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    remove(ctx, Which::Channel, "unsubscribe")
}

/// `PSUBSCRIBE pattern [pattern …]`: glob patterns.
pub(super) fn psubscribe(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    add(ctx, Which::Pattern, "psubscribe")
}

/// `PUNSUBSCRIBE [pattern …]`: the patterns named, or every one.
pub(super) fn punsubscribe(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    remove(ctx, Which::Pattern, "punsubscribe")
}

/// `PUBLISH channel message`: how many subscriptions it reached.
pub(super) fn publish(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let n = ctx.shared.pubsub.publish(&ctx.args[0], &ctx.args[1]);
    (
        Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        Flow::Next,
    )
}

/// `PUBSUB CHANNELS [pattern]`, `PUBSUB NUMSUB [channel …]`, `PUBSUB NUMPAT`, `PUBSUB HELP`.
pub(super) fn pubsub(ctx: &mut Ctx<'_>) -> (Frame, Flow) {
    let ps = &ctx.shared.pubsub;
    let count = |n: usize| Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let sub = word(&ctx.args[0]);
    let reply = match (sub.as_str(), &ctx.args[1..]) {
        ("channels", rest @ ([] | [_])) => Frame::Array(
            ps.channels(rest.first().map(Vec::as_slice))
                .into_iter()
                .map(Frame::Bulk)
                .collect(),
        ),
        ("numsub", channels) => Frame::Array(
            channels
                .iter()
                .flat_map(|c| [Frame::Bulk(c.clone()), count(ps.numsub(c))])
                .collect(),
        ),
        ("numpat", []) => count(ps.numpat()),
        ("help", []) => Frame::Array(
            [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "HELP",
                "    Prints this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(l.into()))
            .collect(),
        ),
        ("numpat" | "help", _) => Frame::err(format!(
            "ERR wrong number of arguments for 'pubsub|{sub}' command"
        )),
        ("channels", _) => Frame::err(
            "ERR unknown subcommand or wrong number of arguments for 'channels'. Try PUBSUB HELP.",
        ),
        _ => Frame::err(format!(
            "ERR unknown subcommand '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(&ctx.args[0])
        )),
    };
    (reply, Flow::Next)
}
