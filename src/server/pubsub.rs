//! Publish/subscribe: who listens to which channel and pattern, and delivery.
//!
//! The registry maps each channel (and each glob pattern, see [`glob`]) to its
//! subscribers, and each subscriber to what it is subscribed to, under one lock held only for
//! memory work. `PUBLISH` takes it shared, encodes the message once per channel (and once per
//! matching pattern, since `pmessage` names the pattern) and hands it to every subscriber's
//! outbox ([`Client::push`]): nothing waits, whatever the subscribers do, and a subscriber
//! whose unwritten messages pass the output limit is closed instead of being queued more.
//! Each connection writes its messages out itself, while it waits for its next command.
//!
//! Messages are `message <channel> <payload>` and `pmessage <pattern> <channel> <payload>`:
//! arrays in RESP2, push frames in RESP3, as in Redis 7.0. The count `PUBLISH` returns is the
//! number of subscriptions the message went to (a connection subscribed to the channel and
//! to a matching pattern counts twice, as in Redis).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use tracing::warn;

use super::clients::{Client, Delivery, Pushed};
use super::glob;
use crate::resp::encode_bulk;

/// Channels or patterns: the two kinds of subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    /// Exact channel names (`SUBSCRIBE`).
    Channel,
    /// Glob patterns (`PSUBSCRIBE`).
    Pattern,
}

/// Every subscription.
#[derive(Debug)]
pub(crate) struct PubSub {
    inner: RwLock<Inner>,
    /// Most bytes of messages a subscriber may have waiting (see [`Client::push`]).
    limit: usize,
}

#[derive(Debug, Default)]
struct Inner {
    channels: HashMap<Vec<u8>, HashMap<u64, Arc<Client>>>,
    patterns: HashMap<Vec<u8>, HashMap<u64, Arc<Client>>>,
    /// What each subscribed connection is subscribed to.
    members: HashMap<u64, Member>,
}

#[derive(Debug)]
struct Member {
    client: Arc<Client>,
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
}

impl Member {
    fn set(&mut self, which: Which) -> &mut BTreeSet<Vec<u8>> {
        match which {
            Which::Channel => &mut self.channels,
            Which::Pattern => &mut self.patterns,
        }
    }

    fn get(&self, which: Which) -> &BTreeSet<Vec<u8>> {
        match which {
            Which::Channel => &self.channels,
            Which::Pattern => &self.patterns,
        }
    }

    fn total(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

impl Inner {
    fn map(&mut self, which: Which) -> &mut HashMap<Vec<u8>, HashMap<u64, Arc<Client>>> {
        match which {
            Which::Channel => &mut self.channels,
            Which::Pattern => &mut self.patterns,
        }
    }
}

impl PubSub {
    /// An empty registry whose subscribers may each have up to `limit` bytes waiting.
    pub(crate) fn new(limit: usize) -> PubSub {
        PubSub {
            inner: RwLock::new(Inner::default()),
            limit,
        }
    }

    /// Subscribes `client` to `name`; its subscriptions (channels and patterns) after.
    pub(crate) fn subscribe(&self, which: Which, client: &Arc<Client>, name: &[u8]) -> usize {
        let mut inner = self.inner.write();
        let member = inner.members.entry(client.id).or_insert_with(|| Member {
            client: client.clone(),
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
        });
        let new = member.set(which).insert(name.to_vec());
        let total = member.total();
        client.set_subscriptions(member.channels.len(), member.patterns.len());
        if new {
            inner
                .map(which)
                .entry(name.to_vec())
                .or_default()
                .insert(client.id, client.clone());
        }
        total
    }

    /// Unsubscribes connection `id` from `name` (if it was); its subscriptions after.
    pub(crate) fn unsubscribe(&self, which: Which, id: u64, name: &[u8]) -> usize {
        let mut inner = self.inner.write();
        let Some(member) = inner.members.get_mut(&id) else {
            return 0;
        };
        let was = member.set(which).remove(name);
        let total = member.total();
        member
            .client
            .set_subscriptions(member.channels.len(), member.patterns.len());
        if total == 0 {
            inner.members.remove(&id);
        }
        if was {
            let map = inner.map(which);
            if let Some(subs) = map.get_mut(name) {
                subs.remove(&id);
                if subs.is_empty() {
                    map.remove(name);
                }
            }
        }
        total
    }

    /// What connection `id` is subscribed to, of `which`, in order.
    pub(crate) fn subscribed(&self, which: Which, id: u64) -> Vec<Vec<u8>> {
        let inner = self.inner.read();
        inner
            .members
            .get(&id)
            .map(|m| m.get(which).iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many channels and patterns connection `id` is subscribed to, together.
    pub(crate) fn total(&self, id: u64) -> usize {
        self.inner.read().members.get(&id).map_or(0, Member::total)
    }

    /// Drops every subscription of connection `id` (it closed, or sent `RESET`).
    pub(crate) fn forget(&self, id: u64) {
        let mut inner = self.inner.write();
        let Some(member) = inner.members.remove(&id) else {
            return;
        };
        member.client.set_subscriptions(0, 0);
        for (which, names) in [
            (Which::Channel, &member.channels),
            (Which::Pattern, &member.patterns),
        ] {
            let map = inner.map(which);
            for name in names {
                if let Some(subs) = map.get_mut(name) {
                    subs.remove(&id);
                    if subs.is_empty() {
                        map.remove(name);
                    }
                }
            }
        }
    }

    /// Sends `payload` to every subscriber of `channel` and of every pattern it matches;
    /// how many subscriptions it went to. Never waits.
    pub(crate) fn publish(&self, channel: &[u8], payload: &[u8]) -> usize {
        let mut overflowed = Vec::new();
        let receivers = self.deliver(channel, payload, &mut overflowed);
        // Logged once the lock is released.
        for c in overflowed {
            warn!(
                id = c.id,
                addr = ?c.addr(),
                limit = self.limit,
                "closing a subscriber: its published messages not yet written passed the \
                 pub/sub output limit"
            );
        }
        receivers
    }

    /// Delivers a message (see [`publish`](Self::publish)); the subscribers closed for passing
    /// their limit go to `overflowed`.
    fn deliver(&self, channel: &[u8], payload: &[u8], overflowed: &mut Vec<Arc<Client>>) -> usize {
        let inner = self.inner.read();
        let mut receivers = 0;
        let mut push = |client: &Arc<Client>, message: &Pushed| {
            if client.push(message, self.limit) == Delivery::Overflow {
                overflowed.push(client.clone());
            }
        };
        if let Some(subs) = inner.channels.get(channel) {
            let message = message(&[b"message", channel, payload]);
            for client in subs.values() {
                push(client, &message);
            }
            receivers += subs.len();
        }
        for (pattern, subs) in &inner.patterns {
            if !glob::matches(pattern, channel) {
                continue;
            }
            let message = message(&[b"pmessage", pattern, channel, payload]);
            for client in subs.values() {
                push(client, &message);
            }
            receivers += subs.len();
        }
        receivers
    }

    /// The channels with at least one subscriber, matching `pattern` if one is given, sorted.
    pub(crate) fn channels(&self, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = self
            .inner
            .read()
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c)))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// How many connections are subscribed to `channel` (patterns not counted).
    pub(crate) fn numsub(&self, channel: &[u8]) -> usize {
        self.inner
            .read()
            .channels
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// How many distinct patterns are subscribed to.
    pub(crate) fn numpat(&self) -> usize {
        self.inner.read().patterns.len()
    }

    /// How many distinct channels have subscribers.
    pub(crate) fn numchannels(&self) -> usize {
        self.inner.read().channels.len()
    }
}

/// A pushed message of `parts` (`message channel payload`, `pmessage pattern channel
/// payload`), encoded once for every receiver.
fn message(parts: &[&[u8]]) -> Pushed {
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.len() + 16).sum());
    body.extend_from_slice(format!("{}\r\n", parts.len()).as_bytes());
    for p in parts {
        encode_bulk(p, &mut body);
    }
    Pushed::new(body)
}

#[cfg(test)]
mod tests {
    use super::super::clients::Clients;
    use super::*;
    use crate::resp::Proto;

    fn drained(inbox: &mut super::super::clients::Inbox) -> Vec<u8> {
        let mut out = Vec::new();
        inbox.drain(Proto::Resp2, true, &mut out, usize::MAX);
        out
    }

    #[test]
    fn channels_and_patterns_reach_their_subscribers() {
        let clients = Clients::default();
        let ps = PubSub::new(1 << 20);
        let (a, mut ia) = clients.register(1, None, None, -1);
        let (b, mut ib) = clients.register(2, None, None, -1);
        assert_eq!(ps.subscribe(Which::Channel, &a, b"news"), 1);
        assert_eq!(
            ps.subscribe(Which::Channel, &a, b"news"),
            1,
            "twice is once"
        );
        assert_eq!(ps.subscribe(Which::Pattern, &a, b"n*"), 2);
        assert_eq!(ps.subscribe(Which::Channel, &b, b"news"), 1);
        assert_eq!(ps.publish(b"news", b"hi"), 3);
        assert_eq!(
            drained(&mut ia),
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n\
              *4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            drained(&mut ib),
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(ps.publish(b"nothing", b"x"), 1, "the pattern only");
        assert_eq!(ps.publish(b"other", b"x"), 0);
        assert_eq!(ps.channels(None), vec![b"news".to_vec()]);
        assert_eq!(ps.channels(Some(b"x*")), Vec::<Vec<u8>>::new());
        assert_eq!(ps.numsub(b"news"), 2);
        assert_eq!(ps.numpat(), 1);
        assert_eq!(ps.unsubscribe(Which::Channel, 1, b"news"), 1);
        assert_eq!(ps.unsubscribe(Which::Channel, 1, b"never"), 1);
        assert_eq!(a.subscriptions(), (0, 1));
        assert_eq!(ps.numsub(b"news"), 1);
        ps.forget(1);
        assert!(!a.subscribed());
        assert_eq!(ps.numpat(), 0);
        ps.forget(2);
        assert_eq!(ps.channels(None), Vec::<Vec<u8>>::new());
        assert_eq!(ps.publish(b"news", b"x"), 0);
    }
}
