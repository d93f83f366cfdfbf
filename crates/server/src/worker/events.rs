//! What a session tells its app, turned into inbound ring records.

use super::conn::Conn;
use super::inbox::AppInbox;
use crate::records::{ClientId, Inbound, LargeMessage, Opened, Payload, Requested};
use crate::stats::{close_slot, handshake_slot, WorkerCounts};
use mio::net::TcpStream;
use ringsocket_proto::{CloseCode, HandshakeError, MessageKind, ProtocolError};
use ringsocket_session::{
    AppEvents, AppIndex, Delivery, EndpointIndex, Message, RequestKind, Route,
};

/// The [`AppEvents`] of one connection, for the duration of one session call.
pub(crate) struct ToApp<'a> {
    pub(crate) inboxes: &'a mut [AppInbox],
    /// The connection's slab key.
    pub(crate) key: usize,
    pub(crate) client: ClientId,
    pub(crate) app: AppIndex,
    /// Which of the app's endpoints it connected to (once open).
    pub(crate) endpoint: EndpointIndex,
    /// Where the id of the next connection to open comes from.
    pub(crate) ids: &'a mut IdSource,
    /// Set when the connection opened during the call.
    pub(crate) opened: bool,
    /// Set when a request went to the app during the call (under a new id).
    pub(crate) requested: bool,
    /// Set when the app was told the connection closed during the call.
    pub(crate) closed: bool,
    /// Set when a message went to the backlog: stop reading the connection.
    pub(crate) paused: bool,
    /// The connection's socket, where a handshake may complete (for the peer address).
    pub(crate) stream: Option<&'a TcpStream>,
    /// The worker's own counts (handshakes).
    pub(crate) counts: &'a WorkerCounts,
}

/// Hands out a worker's client ids (see [`ClientId`]): it keeps each slab key's latest
/// generation, also when the key is vacant.
pub(crate) struct IdSource {
    pub(crate) worker: usize,
    generations: Vec<u32>,
}

impl IdSource {
    /// The ids of worker `worker`.
    pub(crate) fn new(worker: usize) -> IdSource {
        IdSource {
            worker,
            generations: Vec::new(),
        }
    }

    /// The next generation of slab key `key` (never 0): a new id's, or the tag that
    /// tells a connection just accepted there from the key's earlier ones.
    pub(crate) fn next_generation(&mut self, key: usize) -> u32 {
        if self.generations.len() <= key {
            self.generations.resize(key + 1, 0);
        }
        let generation = &mut self.generations[key];
        *generation = generation.checked_add(1).unwrap_or(1);
        *generation
    }

    /// A new id for the connection at slab key `key`.
    fn next(&mut self, key: usize) -> ClientId {
        ClientId::new(self.worker, key, self.next_generation(key))
    }
}

/// The slab key of client `id`'s connection, if one here still goes by that id.
#[inline]
pub(crate) fn key_of(conns: &slab::Slab<Conn>, id: ClientId) -> Option<usize> {
    let key = id.slot();
    conns.get(key).filter(|c| c.id == id).map(|_| key)
}

impl<'a> ToApp<'a> {
    /// The events of connection `key` (its client id, app and endpoint as `conn` has
    /// them so far). Only calls that may complete a handshake pass the `stream`.
    pub(crate) fn new(
        (inboxes, counts): (&'a mut [AppInbox], &'a WorkerCounts),
        ids: &'a mut IdSource,
        key: usize,
        conn: &Conn,
        stream: Option<&'a TcpStream>,
    ) -> ToApp<'a> {
        ToApp {
            counts,
            inboxes,
            key,
            client: conn.id,
            app: conn.app,
            endpoint: conn.endpoint,
            ids,
            opened: false,
            requested: false,
            closed: false,
            paused: false,
            stream,
        }
    }
}

impl AppEvents for ToApp<'_> {
    fn open(&mut self, route: &Route, protocol: Option<usize>, head: &[u8], decided: bool) {
        if !decided {
            self.client = self.ids.next(self.key);
        }
        self.app = route.app;
        self.endpoint = route.endpoint;
        self.opened = true;
        let inbox = &mut self.inboxes[route.app.index()];
        self.counts.handshakes[handshake_slot(101)].add(1);
        let endpoint = &inbox.traffic.endpoints[usize::from(route.endpoint.0)];
        endpoint.opened.add(1);
        endpoint.open.add(1);
        // Once per connection: the app keeps the address for rs_client_info.
        let peer = self.stream.and_then(|s| s.peer_addr().ok());
        let head = inline_or_large(head, inbox.inline_max);
        inbox.push(Inbound::Open(Box::new(Opened {
            client: self.client,
            endpoint: route.endpoint,
            protocol: protocol.map(|p| p as u16),
            peer,
            head,
        })));
    }

    fn request(&mut self, route: &Route, kind: RequestKind, head: &[u8], body: &[u8]) {
        self.client = self.ids.next(self.key);
        self.app = route.app;
        self.endpoint = route.endpoint;
        self.requested = true;
        let inbox = &mut self.inboxes[route.app.index()];
        let peer = self.stream.and_then(|s| s.peer_addr().ok());
        let joined: Vec<u8>;
        let all = if body.is_empty() {
            head
        } else {
            joined = [head, body].concat();
            &joined[..]
        };
        let bytes = inline_or_large(all, inbox.inline_max);
        inbox.push(Inbound::Request(Box::new(Requested {
            client: self.client,
            endpoint: route.endpoint,
            upgrade: match kind {
                RequestKind::Upgrade { protocol } => Some(protocol.map(|p| p as u16)),
                RequestKind::Http => None,
            },
            peer,
            bytes,
            head_len: head.len() as u32,
        })));
    }

    fn cancelled(&mut self) {
        self.inboxes[self.app.index()].push(Inbound::Close {
            client: self.client,
            code: CloseCode::ABNORMAL,
        });
    }

    fn message(&mut self, kind: MessageKind, message: Message<'_>) -> Delivery {
        let inbox = &mut self.inboxes[self.app.index()];
        let (client, endpoint) = (self.client, self.endpoint);
        let bytes = message.bytes();
        let len = bytes.len() as u64;
        let delivered = if bytes.len() <= inbox.inline_max {
            inbox.push_message(client, endpoint, kind, bytes)
        } else {
            let large = match message {
                Message::Borrowed(b) => LargeMessage::owned(b.to_vec()),
                // A large message hands its buffer over instead of being copied.
                Message::Assembled(v) => LargeMessage::owned(std::mem::take(v)),
            };
            inbox.push(Inbound::Message {
                client,
                endpoint,
                kind,
                payload: Payload::Large(large),
            })
        };
        inbox.traffic.messages_in.add(1);
        inbox.traffic.bytes_in.add(len);
        if let Some(at) = inbox.stamp_at.take() {
            inbox.push(Inbound::Stamp { at });
        }
        if delivered {
            return Delivery::Delivered;
        }
        inbox.traffic.ring_full.add(1);
        inbox.paused.push(self.key);
        self.paused = true;
        Delivery::Paused
    }

    fn refused(&mut self, error: &HandshakeError) {
        self.counts.handshakes[handshake_slot(error.status().0)].add(1);
        log::debug!(
            "worker {}: refusing upgrade on {}: {error}",
            self.ids.worker,
            self.key
        );
    }

    fn protocol_error(&mut self, error: &ProtocolError) {
        log::debug!(
            "worker {}: client {} broke the protocol: {error}",
            self.ids.worker,
            self.client.0
        );
    }

    fn alive(&mut self) {
        let inbox = &mut self.inboxes[self.app.index()];
        if inbox.reports_pings {
            inbox.push(Inbound::Ping {
                client: self.client,
            });
        }
    }

    fn close(&mut self, code: CloseCode) {
        self.closed = true;
        let traffic = &self.inboxes[self.app.index()].traffic;
        traffic.closes[close_slot(code.0)].add(1);
        traffic.endpoints[usize::from(self.endpoint.0)].open.sub(1);
        self.inboxes[self.app.index()].push(Inbound::Close {
            client: self.client,
            code,
        });
    }
}

/// `bytes` as a record payload: copied into the ring if small, else moved to the heap.
fn inline_or_large(bytes: &[u8], inline_max: usize) -> Payload<'_> {
    if bytes.len() <= inline_max {
        Payload::Inline(bytes)
    } else {
        Payload::Large(LargeMessage::owned(bytes.to_vec()))
    }
}
