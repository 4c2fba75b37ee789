//! The registry of live connections, behind `CLIENT LIST`, `CLIENT INFO`, `CLIENT KILL` and
//! `INFO clients`.
//!
//! Every accepted connection registers a [`Client`]: its id, addresses, kind, what it last did
//! (mirrored from its session once per pipeline, see [`Client::observe`]), a close signal, and
//! an outbox for the messages pushed to it (pub/sub). The connection's guard (`Registered`, in
//! the server module) removes the entry when the connection ends, however it ends.
//!
//! - **Closing.** [`Client::close`] records why and wakes the connection, which waits on
//!   [`Client::closed`] wherever it waits — for input, or for the socket to take its output —
//!   so a killed connection closes promptly even when idle. A kill never stops a pipeline
//!   half-way: the commands the connection has read run to the end and their replies are sent
//!   first, so no write is acknowledged and then lost.
//! - **The outbox** is unbounded, so a publisher never waits on a subscriber, but its bytes are
//!   counted until the connection has written them to its socket: past the limit
//!   (`Config::pubsub_limit`, Redis's `client-output-buffer-limit pubsub`) the client is
//!   closed, so a subscriber that stops reading costs at most that much memory.
//! - **Kinds.** A connection is [`Kind::Normal`] unless replication marks it
//!   ([`Clients::set_kind`]) as this server's link to its master or as a replica's link. Its
//!   [`Type`] (`CLIENT KILL TYPE`, `CLIENT LIST TYPE`) is its kind, or `pubsub` for a normal
//!   connection subscribed to any channel or pattern.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc};

use crate::resp::Proto;

/// What a connection is, as replication sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A client.
    Normal,
    /// This server's link to its master (the master's command stream arrives on it).
    Master,
    /// A replica's link to this server.
    Replica,
}

impl Kind {
    fn from_u8(n: u8) -> Kind {
        match n {
            1 => Kind::Master,
            2 => Kind::Replica,
            _ => Kind::Normal,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Kind::Normal => 0,
            Kind::Master => 1,
            Kind::Replica => 2,
        }
    }
}

/// Redis's client type, as `CLIENT KILL TYPE` and `CLIENT LIST TYPE` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    /// A normal client not subscribed to anything.
    Normal,
    /// A normal client subscribed to a channel or pattern.
    Pubsub,
    /// This server's link to its master.
    Master,
    /// A replica's link.
    Replica,
}

impl Type {
    /// The type a `TYPE` argument names (lower case): `normal`, `pubsub`, `master`, `replica`
    /// or `slave`.
    pub(crate) fn parse(word: &str) -> Option<Type> {
        match word {
            "normal" => Some(Type::Normal),
            "pubsub" => Some(Type::Pubsub),
            "master" => Some(Type::Master),
            "replica" | "slave" => Some(Type::Replica),
            _ => None,
        }
    }
}

/// A message pushed to a connection: a RESP aggregate without its type byte, which the
/// connection adds when it writes it (`*` in RESP2, `>`, a push, in RESP3). Encoded once and
/// shared by every receiver.
#[derive(Clone, Debug)]
pub(crate) struct Pushed(Arc<[u8]>);

impl Pushed {
    /// A message from `body`: the aggregate's count line and items (`3\r\n$7\r\nmessage…`).
    pub(crate) fn new(body: Vec<u8>) -> Pushed {
        Pushed(body.into())
    }

    /// The bytes it takes on the wire.
    pub(crate) fn len(&self) -> usize {
        self.0.len() + 1
    }

    /// Appends its wire form for `proto` to `out`.
    pub(crate) fn encode(&self, proto: Proto, out: &mut Vec<u8>) {
        out.push(match proto {
            Proto::Resp2 => b'*',
            Proto::Resp3 => b'>',
        });
        out.extend_from_slice(&self.0);
    }
}

/// The receiving end of a connection's outbox.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Pushed>,
}

impl Inbox {
    /// The next message, waiting for one. Cancel-safe (for `select!`).
    pub(crate) async fn recv(&mut self) -> Option<Pushed> {
        self.rx.recv().await
    }

    /// Takes the messages waiting, without waiting, until `out` holds at least `max` bytes.
    /// With `deliver` they are appended to `out` in `proto`'s form; without, they are dropped
    /// (a RESP2 client that is no longer subscribed cannot take them). Returns the bytes the
    /// messages taken account for in the outbox (see [`Client::sent`]).
    pub(crate) fn drain(
        &mut self,
        proto: Proto,
        deliver: bool,
        out: &mut Vec<u8>,
        max: usize,
    ) -> usize {
        let mut taken = 0;
        while out.len() < max {
            let Ok(m) = self.rx.try_recv() else {
                break;
            };
            taken += m.len();
            if deliver {
                m.encode(proto, out);
            }
        }
        taken
    }
}

/// What [`Client::push`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued for the connection.
    Queued,
    /// Dropped: the connection is closing or gone.
    Dropped,
    /// Dropped, and the connection closed for it: it would have passed the limit.
    Overflow,
}

/// One connection's entry in the registry.
#[derive(Debug)]
pub(crate) struct Client {
    /// The connection id (`CLIENT ID`).
    pub(crate) id: u64,
    addr: Option<SocketAddr>,
    laddr: Option<SocketAddr>,
    fd: i32,
    since: Instant,
    kind: AtomicU8,
    /// Channels and patterns subscribed to (kept by the pub/sub registry).
    channels: AtomicUsize,
    patterns: AtomicUsize,
    state: Mutex<State>,
    /// Why the connection is to close, once it is.
    closing: Mutex<Option<String>>,
    /// Whether `closing` is set (read without the lock).
    closed: AtomicBool,
    wake: Notify,
    outbox: mpsc::UnboundedSender<Pushed>,
    /// Bytes pushed and not yet written to the socket.
    queued: AtomicUsize,
}

/// What `CLIENT LIST` shows of a connection's session, as of its last pipeline.
#[derive(Debug)]
struct State {
    name: Vec<u8>,
    cmd: String,
    active: Instant,
    multi: Option<usize>,
    proto: Proto,
}

impl Client {
    /// The connection's kind.
    pub(crate) fn kind(&self) -> Kind {
        Kind::from_u8(self.kind.load(Ordering::Relaxed))
    }

    /// Its client type: its kind, or pubsub for a normal connection that is subscribed.
    pub(crate) fn client_type(&self) -> Type {
        match self.kind() {
            Kind::Master => Type::Master,
            Kind::Replica => Type::Replica,
            Kind::Normal if self.subscribed() => Type::Pubsub,
            Kind::Normal => Type::Normal,
        }
    }

    /// Marks the connection as `kind`.
    // The hook for replication, which marks its links.
    #[allow(dead_code)]
    pub(crate) fn set_kind(&self, kind: Kind) {
        self.kind.store(kind.to_u8(), Ordering::Relaxed);
    }

    /// How many channels and patterns it is subscribed to.
    pub(crate) fn subscriptions(&self) -> (usize, usize) {
        (
            self.channels.load(Ordering::Relaxed),
            self.patterns.load(Ordering::Relaxed),
        )
    }

    /// Whether it is subscribed to anything.
    pub(crate) fn subscribed(&self) -> bool {
        self.subscriptions() != (0, 0)
    }

    /// Records its subscription counts (the pub/sub registry calls this).
    pub(crate) fn set_subscriptions(&self, channels: usize, patterns: usize) {
        self.channels.store(channels, Ordering::Relaxed);
        self.patterns.store(patterns, Ordering::Relaxed);
    }

    /// Mirrors what `CLIENT LIST` shows of the session: its name, its last command (`client|list`
    /// for a subcommand), the commands queued in its transaction, its protocol; and marks it
    /// active now.
    pub(crate) fn observe(
        &self,
        name: Option<&[u8]>,
        cmd: &str,
        multi: Option<usize>,
        proto: Proto,
    ) {
        let mut st = self.state.lock();
        let name = name.unwrap_or_default();
        if st.name != name {
            st.name = name.to_vec();
        }
        if st.cmd != cmd {
            st.cmd.clear();
            st.cmd.push_str(cmd);
        }
        st.multi = multi;
        st.proto = proto;
        st.active = Instant::now();
    }

    /// Asks the connection to close, saying `why` (logged when it does). Returns false if it
    /// was closing already.
    pub(crate) fn close(&self, why: impl Into<String>) -> bool {
        {
            let mut closing = self.closing.lock();
            if closing.is_some() {
                return false;
            }
            *closing = Some(why.into());
            self.closed.store(true, Ordering::Release);
        }
        // Stores a permit if the connection is not waiting right now: its next wait ends at once.
        self.wake.notify_one();
        true
    }

    /// Why the connection is to close, if it is.
    pub(crate) fn closing(&self) -> Option<String> {
        if !self.closed.load(Ordering::Acquire) {
            return None;
        }
        self.closing.lock().clone()
    }

    /// Waits until the connection is asked to close; why. Cancel-safe (for `select!`).
    pub(crate) async fn closed(&self) -> String {
        loop {
            if let Some(why) = self.closing() {
                return why;
            }
            self.wake.notified().await;
        }
    }

    /// Queues `message` for the connection unless that takes its outbox past `limit` bytes,
    /// in which case the connection is closed instead (and the message dropped). Never waits.
    pub(crate) fn push(&self, message: &Pushed, limit: usize) -> Delivery {
        if self.closed.load(Ordering::Acquire) {
            return Delivery::Dropped;
        }
        let len = message.len();
        let queued = self
            .queued
            .fetch_add(len, Ordering::Relaxed)
            .saturating_add(len);
        if queued > limit {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            let why = format!(
                "its published messages not yet written passed the pub/sub output limit \
                 ({limit} bytes): a subscriber that does not read"
            );
            return if self.close(why) {
                Delivery::Overflow
            } else {
                Delivery::Dropped
            };
        }
        if self.outbox.send(message.clone()).is_err() {
            // The connection is gone; it is being removed from the registry.
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return Delivery::Dropped;
        }
        Delivery::Queued
    }

    /// The peer's address.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Records that `bytes` of pushed messages have left (written to the socket, or dropped).
    pub(crate) fn sent(&self, bytes: usize) {
        if bytes > 0 {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Its `CLIENT LIST` line, ending in `\n`.
    pub(crate) fn line(&self) -> String {
        let (name, cmd, idle, multi, proto) = {
            let st = self.state.lock();
            (
                String::from_utf8_lossy(&st.name).into_owned(),
                st.cmd.clone(),
                st.active.elapsed().as_secs(),
                st.multi,
                st.proto,
            )
        };
        let mut flags = String::new();
        match self.kind() {
            Kind::Master => flags.push('M'),
            Kind::Replica => flags.push('S'),
            Kind::Normal => {}
        }
        if self.subscribed() {
            flags.push('P');
        }
        if multi.is_some() {
            flags.push('x');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let (sub, psub) = self.subscriptions();
        let addr = |a: Option<SocketAddr>| a.map_or_else(|| "?".to_string(), |a| a.to_string());
        format!(
            "id={} addr={} laddr={} fd={} name={name} age={} idle={idle} flags={flags} db=0 \
             sub={sub} psub={psub} ssub=0 multi={} omem={} cmd={} user=default redir=-1 resp={}\n",
            self.id,
            addr(self.addr),
            addr(self.laddr),
            self.fd,
            self.since.elapsed().as_secs(),
            multi.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            self.queued.load(Ordering::Relaxed),
            if cmd.is_empty() { "NULL" } else { &cmd },
            match proto {
                Proto::Resp2 => 2,
                Proto::Resp3 => 3,
            },
        )
    }
}

/// Which clients `CLIENT KILL` closes: those matching every filter given.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// `ID n`.
    pub(crate) id: Option<u64>,
    /// `ADDR ip:port` (the peer's address).
    pub(crate) addr: Option<String>,
    /// `LADDR ip:port` (the address it connected to).
    pub(crate) laddr: Option<String>,
    /// `TYPE t`.
    pub(crate) kind: Option<Type>,
    /// `MAXAGE s`: connected longer than `s` seconds.
    pub(crate) max_age: Option<u64>,
    /// This connection is spared (`SKIPME yes`, the default of the filter form).
    pub(crate) skip: Option<u64>,
}

impl Filter {
    fn matches(&self, c: &Client) -> bool {
        let shown = |a: Option<SocketAddr>| a.map(|a| a.to_string());
        self.skip != Some(c.id)
            && self.id.is_none_or(|id| id == c.id)
            && self.kind.is_none_or(|t| t == c.client_type())
            && self
                .addr
                .as_ref()
                .is_none_or(|a| Some(a) == shown(c.addr).as_ref())
            && self
                .laddr
                .as_ref()
                .is_none_or(|a| Some(a) == shown(c.laddr).as_ref())
            && self.max_age.is_none_or(|s| c.since.elapsed().as_secs() > s)
    }
}

/// Every live connection, by id.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    map: RwLock<HashMap<u64, Arc<Client>>>,
}

impl Clients {
    /// Registers connection `id` (peer `addr`, local `laddr`, socket `fd`): its entry, and the
    /// receiving end of its outbox. The caller removes it with [`remove`](Self::remove) when
    /// the connection ends.
    pub(crate) fn register(
        &self,
        id: u64,
        addr: Option<SocketAddr>,
        laddr: Option<SocketAddr>,
        fd: i32,
    ) -> (Arc<Client>, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let client = Arc::new(Client {
            id,
            addr,
            laddr,
            fd,
            since: now,
            kind: AtomicU8::new(Kind::Normal.to_u8()),
            channels: AtomicUsize::new(0),
            patterns: AtomicUsize::new(0),
            state: Mutex::new(State {
                name: Vec::new(),
                cmd: String::new(),
                active: now,
                multi: None,
                proto: Proto::Resp2,
            }),
            closing: Mutex::new(None),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            outbox: tx,
            queued: AtomicUsize::new(0),
        });
        self.map.write().insert(id, client.clone());
        (client, Inbox { rx })
    }

    /// Removes connection `id`.
    pub(crate) fn remove(&self, id: u64) {
        self.map.write().remove(&id);
    }

    /// Connection `id`, if it is live.
    #[allow(dead_code)]
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Client>> {
        self.map.read().get(&id).cloned()
    }

    /// Marks connection `id` as `kind` (replication: [`Kind::Replica`] for a replica's link,
    /// [`Kind::Master`] for the link to this server's master); false if there is no such
    /// connection.
    // The hook for replication, which marks its links (used by the tests until then).
    #[allow(dead_code)]
    pub(crate) fn set_kind(&self, id: u64, kind: Kind) -> bool {
        match self.get(id) {
            Some(c) => {
                c.set_kind(kind);
                true
            }
            None => false,
        }
    }

    /// Every live connection, by id.
    pub(crate) fn all(&self) -> Vec<Arc<Client>> {
        let mut all: Vec<Arc<Client>> = self.map.read().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// How many live connections are of type `t`.
    pub(crate) fn count(&self, t: Type) -> usize {
        self.map
            .read()
            .values()
            .filter(|c| c.client_type() == t)
            .count()
    }

    /// Closes every connection `filter` matches (each at its next wait point), saying `why`;
    /// how many were not closing already.
    pub(crate) fn kill(&self, filter: &Filter, why: &str) -> usize {
        let matched: Vec<Arc<Client>> = self
            .map
            .read()
            .values()
            .filter(|c| filter.matches(c))
            .cloned()
            .collect();
        matched.iter().filter(|c| c.close(why)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_spares_the_caller_and_counts_once() {
        let clients = Clients::default();
        let (a, _ia) = clients.register(1, None, None, -1);
        let (b, _ib) = clients.register(2, None, None, -1);
        let (c, _ic) = clients.register(3, None, None, -1);
        c.set_subscriptions(1, 0);
        let normal = Filter {
            kind: Some(Type::Normal),
            skip: Some(1),
            ..Filter::default()
        };
        assert_eq!(clients.kill(&normal, "test"), 1);
        assert!(a.closing().is_none());
        assert_eq!(b.closing().as_deref(), Some("test"));
        assert!(c.closing().is_none(), "a subscriber is not normal");
        // Already closing: not counted again.
        assert_eq!(clients.kill(&normal, "again"), 0);
        assert_eq!(b.closing().as_deref(), Some("test"));
        assert_eq!(clients.count(Type::Pubsub), 1);
        assert!(clients.set_kind(3, Kind::Replica));
        assert_eq!(c.client_type(), Type::Replica);
        assert_eq!(clients.count(Type::Pubsub), 0);
        clients.remove(2);
        assert_eq!(
            clients.all().iter().map(|c| c.id).collect::<Vec<_>>(),
            [1, 3]
        );
    }

    #[test]
    fn the_outbox_limit_closes_instead_of_queueing() {
        let clients = Clients::default();
        let (c, mut inbox) = clients.register(1, None, None, -1);
        let m = Pushed::new(b"1\r\n$1\r\nx\r\n".to_vec());
        assert_eq!(m.len(), 11);
        assert_eq!(c.push(&m, 25), Delivery::Queued);
        assert_eq!(c.push(&m, 25), Delivery::Queued);
        assert!(c.closing().is_none());
        assert_eq!(c.push(&m, 25), Delivery::Overflow, "a third would pass 25");
        assert!(c.closing().is_some());
        assert_eq!(c.push(&m, 25), Delivery::Dropped);
        let mut out = Vec::new();
        assert_eq!(inbox.drain(Proto::Resp3, true, &mut out, 1 << 20), 22);
        assert_eq!(out, b">1\r\n$1\r\nx\r\n>1\r\n$1\r\nx\r\n");
        c.sent(22);
        assert!(c.line().contains(" omem=0 "));
    }
}
