//! The records the rings carry, as types: worker→app ([`Inbound`]) and app→worker
//! ([`Outbound`]). Their byte layout is private to this module, which also owns the
//! one place where a large message's buffer crosses a ring as a pointer
//! ([`LargeMessage`]).
//!
//! The rings are wrapped ([`InboundTx`]/[`InboundRx`], [`OutboundTx`]/[`OutboundRx`]) so
//! that a record is encoded and decoded only here, and each record is decoded exactly
//! once — which is what makes taking back a large message's buffer sound.
//!
//! Layout (little-endian), after the ring's own record header:
//! ```text
//! inbound:  kind u8 | msg_kind u8 | large u8 | 0 u8 | arg u32 | client u64 | payload
//!           (an open's payload: peer address, 24 bytes, then the request head;
//!           a request's: the same, then its body, the head's length in the peer bytes)
//! outbound: op u8   | msg_kind u8 | 0 u8 | large u8 | id_count u32 | payload_len u32 | topic u32
//!           | payload | ids u64…
//! ```
//! A large payload is a [`LargeMessage`]'s 25-byte wire form instead of the bytes. The
//! outbound ids follow the payload so that an app can write a message in place
//! ([`Draft`]) before it knows who gets it.

use ringsocket_proto::{CloseCode, MessageKind};
use ringsocket_ring::{Consumer, Full, Producer, Reservation};
use ringsocket_session::EndpointIndex;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// A client, as apps and workers name it: the owning worker's index in the low 8 bits,
/// the worker's slot for the connection in the next 24, and that slot's generation in
/// the high 32. The slot's generation counter moves on for each connection accepted
/// there (its timer tag) and each id it names, so an id is never 0 and names nothing
/// again until the counter wraps — after at least 2^31 more connections in that slot,
/// which is never in practice. A worker finds a client by indexing, with no table of
/// ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl ClientId {
    /// Slots a worker has (connections it can hold at once).
    pub const SLOTS: usize = 1 << 24;

    /// The id of generation `generation` (from 1) of slot `slot` of worker `worker`.
    pub fn new(worker: usize, slot: usize, generation: u32) -> ClientId {
        debug_assert!(worker < 256 && slot < Self::SLOTS && generation != 0);
        ClientId(u64::from(generation) << 32 | (slot as u64) << 8 | worker as u64)
    }

    /// The worker that owns this client.
    pub fn worker(self) -> usize {
        (self.0 & 0xff) as usize
    }

    /// The owning worker's slot for it.
    pub fn slot(self) -> usize {
        ((self.0 >> 8) & 0xff_ffff) as usize
    }

    /// Which of the ids its slot has named this is.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A message too large to copy into a ring: its heap buffer crosses instead, as a
/// pointer. Worker→app it is the buffer the message was assembled in (moved, not
/// copied); app→worker it is one buffer shared by every worker it goes to.
#[derive(Debug, Clone)]
pub struct LargeMessage(Large);

#[derive(Debug, Clone)]
// An explicit tag: matching on it is one byte compare on the message path, where a
// niche-packed layout costs several.
#[repr(u8)]
enum Large {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

/// Bytes of a [`LargeMessage`] on the wire: tag, pointer, length, capacity.
const LARGE_WIRE: usize = 25;

impl LargeMessage {
    /// Wraps a buffer that moves to the receiver.
    pub fn owned(bytes: Vec<u8>) -> LargeMessage {
        LargeMessage(Large::Owned(bytes))
    }

    /// Wraps one reference to a buffer shared by several receivers.
    pub fn shared(bytes: Arc<[u8]>) -> LargeMessage {
        LargeMessage(Large::Shared(bytes))
    }

    /// The heap bytes it holds (a moved buffer's capacity may exceed its length).
    #[inline]
    fn held(&self) -> usize {
        match &self.0 {
            Large::Owned(v) => v.capacity(),
            Large::Shared(s) => s.len(),
        }
    }

    /// The message's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match &self.0 {
            Large::Owned(v) => v,
            Large::Shared(s) => s,
        }
    }

    /// Its wire form, pointing at the buffer it owns. Once a record carrying the wire
    /// form is published, [`LargeMessage::hand_over`] must give up ownership to it;
    /// [`LargeMessage::from_wire`] takes it back on the other side.
    #[inline]
    fn write_wire(&self, out: &mut [u8]) {
        let (tag, ptr, len, cap) = match &self.0 {
            Large::Owned(v) => (0u8, v.as_ptr(), v.len(), v.capacity()),
            Large::Shared(s) => (1u8, Arc::as_ptr(s) as *const u8, s.len(), 0),
        };
        let out = &mut out[..LARGE_WIRE];
        out[0] = tag;
        // SAFETY: bytes 1..9 of `out` (25 bytes, sliced above) hold a pointer, written as
        // a pointer (not as an integer, and straight into the ring's bytes rather than
        // through a byte array) so that it keeps its provenance.
        unsafe {
            out.as_mut_ptr()
                .add(1)
                .cast::<*const u8>()
                .write_unaligned(ptr)
        };
        out[9..17].copy_from_slice(&(len as u64).to_le_bytes());
        out[17..25].copy_from_slice(&(cap as u64).to_le_bytes());
    }

    /// Gives up ownership to the published record that carries [`LargeMessage::write_wire`]:
    /// the buffer is neither freed nor its reference count dropped here.
    #[inline]
    fn hand_over(self) {
        match self.0 {
            Large::Owned(v) => std::mem::forget(v),
            Large::Shared(s) => {
                let _ = Arc::into_raw(s);
            }
        }
    }

    /// Takes back what [`LargeMessage::hand_over`] gave up.
    ///
    /// # Safety
    /// `wire` must be the [`LargeMessage::write_wire`] of a message handed over to the record
    /// it comes from, and taken back at most once.
    unsafe fn from_wire(wire: &[u8]) -> LargeMessage {
        assert!(wire.len() >= LARGE_WIRE);
        // SAFETY: `wire` has 25 bytes (checked), of which 1..9 hold the pointer `wire()`
        // wrote.
        let ptr = unsafe { wire.as_ptr().add(1).cast::<*mut u8>().read_unaligned() };
        let (len, cap) = (
            read_u64(&wire[9..17]) as usize,
            read_u64(&wire[17..25]) as usize,
        );
        if wire[0] == 0 {
            // SAFETY: per the contract these are the parts of a Vec<u8> from the global
            // allocator that hand_over forgot, and we take ownership exactly once.
            LargeMessage::owned(unsafe { Vec::from_raw_parts(ptr, len, cap) })
        } else {
            let raw = std::ptr::slice_from_raw_parts(ptr.cast_const(), len);
            // SAFETY: per the contract this is one reference Arc::into_raw gave up.
            LargeMessage::shared(unsafe { Arc::from_raw(raw) })
        }
    }
}

/// A message's bytes in a record: inline, or a [`LargeMessage`].
#[derive(Debug)]
// An explicit tag: matching on it is one byte compare on the message path, where a
// niche-packed layout costs several.
#[repr(u8)]
pub enum Payload<'a> {
    /// Copied into (or read in place from) the ring.
    Inline(&'a [u8]),
    /// Crossing as a pointer.
    Large(LargeMessage),
}

impl Payload<'_> {
    /// The bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Inline(b) => b,
            Payload::Large(l) => l.bytes(),
        }
    }

    #[inline]
    fn wire_len(&self) -> usize {
        match self {
            Payload::Inline(b) => b.len(),
            Payload::Large(_) => LARGE_WIRE,
        }
    }

    /// Writes the payload's wire form into `out` (exactly `wire_len` bytes).
    #[inline]
    fn write(&self, out: &mut [u8]) {
        match self {
            Payload::Inline(b) => copy_payload(out, b),
            Payload::Large(l) => l.write_wire(out),
        }
    }

    /// Gives a large payload's buffer up to the published record carrying it.
    #[inline]
    fn hand_over(self) {
        if let Payload::Large(l) = self {
            l.hand_over();
        }
    }

    /// # Safety
    /// For a large payload, `wire` must be a record's payload decoded for the first and
    /// only time.
    #[inline]
    unsafe fn read(large: bool, wire: &[u8]) -> Payload<'_> {
        if large {
            // SAFETY: forwarded contract.
            Payload::Large(unsafe { LargeMessage::from_wire(wire) })
        } else {
            Payload::Inline(wire)
        }
    }

    /// The payload as it will own its bytes (an inline one is copied to the heap).
    pub fn into_owned(self) -> Payload<'static> {
        Payload::Large(match self {
            Payload::Inline(b) => LargeMessage::owned(b.to_vec()),
            Payload::Large(l) => l,
        })
    }

    /// Whether the payload is a large one.
    #[inline]
    fn is_large(&self) -> bool {
        matches!(self, Payload::Large(_))
    }
}

/// Copies `src` into `dst` (of the same length). A payload of 8 to 32 bytes — most
/// messages — moves as two overlapping 8- or 16-byte words, without a call to `memcpy`.
#[inline(always)]
fn copy_payload(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (16..=32).contains(&n) {
        let head: [u8; 16] = src[..16].try_into().expect("16 bytes");
        let tail: [u8; 16] = src[n - 16..].try_into().expect("16 bytes");
        dst[..16].copy_from_slice(&head);
        dst[n - 16..].copy_from_slice(&tail);
    } else if (8..16).contains(&n) {
        let head: [u8; 8] = src[..8].try_into().expect("8 bytes");
        let tail: [u8; 8] = src[n - 8..].try_into().expect("8 bytes");
        dst[..8].copy_from_slice(&head);
        dst[n - 8..].copy_from_slice(&tail);
    } else {
        dst.copy_from_slice(src);
    }
}

/// The size above which a payload crosses a ring of `max_record_len` as a
/// [`LargeMessage`]: a quarter of the largest record, and at most 64 KiB (copying more
/// than that costs more than an allocation).
#[inline]
pub fn inline_max(max_record_len: usize) -> usize {
    (max_record_len / 4).min(64 * 1024)
}

/// A worker→app record.
#[derive(Debug)]
// An explicit tag: matching on it is one byte compare on the message path, where a
// niche-packed layout costs several.
#[repr(u8)]
pub enum Inbound<'a> {
    /// A client completed the upgrade (boxed: it is rare, and large next to the
    /// others, which all move by value).
    Open(Box<Opened<'a>>),
    /// A complete message.
    Message {
        /// The sender.
        client: ClientId,
        /// The endpoint it connected to.
        endpoint: EndpointIndex,
        /// Text or binary.
        kind: MessageKind,
        /// The bytes.
        payload: Payload<'a>,
    },
    /// The client is gone, with this close code. For a request the app has not
    /// answered ([`Inbound::Request`]), it means the answer is no longer awaited.
    Close {
        /// The client.
        client: ClientId,
        /// Its code (1005: none; 1006: lost).
        code: CloseCode,
    },
    /// A request for the app to decide or answer (boxed, like an open).
    Request(Box<Requested<'a>>),
    /// The client sent a ping or a pong (only for apps that asked to hear of them).
    Ping {
        /// The client.
        client: ClientId,
    },
    /// A latency sample: the message before it was read from its socket at `at`
    /// (nanoseconds on the server's stats clock). Only while metrics are on.
    Stamp {
        /// When.
        at: u64,
    },
}

/// What an [`Inbound::Request`] asks.
#[derive(Debug)]
pub struct Requested<'a> {
    /// The id the answer names: the client's id once an upgrade is accepted.
    pub client: ClientId,
    /// Which of the app's endpoints.
    pub endpoint: EndpointIndex,
    /// An upgrade (with the subprotocol's index, if one would be selected) or a plain
    /// HTTP request.
    pub upgrade: Option<Option<u16>>,
    /// The client's address, if the socket still knew it.
    pub peer: Option<SocketAddr>,
    /// The request's head (`head_len` bytes) and then its body.
    pub bytes: Payload<'a>,
    /// Bytes of the head in `bytes`.
    pub head_len: u32,
}

impl Requested<'_> {
    /// The head: request line and header lines.
    pub fn head(&self) -> &[u8] {
        &self.bytes.bytes()[..self.head_len as usize]
    }

    /// The body (empty for an upgrade).
    pub fn body(&self) -> &[u8] {
        &self.bytes.bytes()[self.head_len as usize..]
    }

    /// Its record (off the message path).
    #[cold]
    fn encode(&self, out: &mut [u8]) {
        // arg: endpoint, then 0 for plain HTTP, 1 for an upgrade without subprotocol,
        // 2 + index with one.
        let kind = match self.upgrade {
            None => 0,
            Some(p) => p.map_or(1, |p| u32::from(p) + 2),
        };
        let arg = u32::from(self.endpoint.0) | kind << 16;
        write_in_header(out, IN_REQUEST, 0, self.bytes.is_large(), arg, self.client);
        let peer = &mut out[IN_HEADER..IN_HEADER + PEER_WIRE];
        write_peer(peer, self.peer);
        peer[4..8].copy_from_slice(&self.head_len.to_le_bytes());
        self.bytes.write(&mut out[IN_HEADER + PEER_WIRE..]);
    }
}

/// What an [`Inbound::Open`] says.
#[derive(Debug)]
pub struct Opened<'a> {
    /// The client.
    pub client: ClientId,
    /// Which of the app's endpoints.
    pub endpoint: EndpointIndex,
    /// The selected subprotocol's index in the endpoint's list, if any.
    pub protocol: Option<u16>,
    /// The client's address, if the socket still knew it.
    pub peer: Option<SocketAddr>,
    /// The upgrade request's head (request line and headers).
    pub head: Payload<'a>,
}

impl Opened<'_> {
    /// Its record (off the message path: opens are rare).
    #[cold]
    fn encode(&self, out: &mut [u8]) {
        let protocol = self.protocol.map_or(0, |p| u32::from(p) + 1);
        let arg = u32::from(self.endpoint.0) | protocol << 16;
        write_in_header(out, IN_OPEN, 0, self.head.is_large(), arg, self.client);
        write_peer(&mut out[IN_HEADER..IN_HEADER + PEER_WIRE], self.peer);
        self.head.write(&mut out[IN_HEADER + PEER_WIRE..]);
    }
}

/// Writes an inbound record's header.
#[inline]
fn write_in_header(
    out: &mut [u8],
    kind: u8,
    msg_kind: u8,
    large: bool,
    arg: u32,
    client: ClientId,
) {
    let header = u128::from(kind)
        | u128::from(msg_kind) << 8
        | u128::from(large) << 16
        | u128::from(arg) << 32
        | u128::from(client.0) << 64;
    out[..IN_HEADER].copy_from_slice(&header.to_le_bytes());
}

/// Writes a whole message record (header and payload).
#[inline(always)]
fn encode_in_message(
    out: &mut [u8],
    client: ClientId,
    endpoint: EndpointIndex,
    kind: MessageKind,
    payload: &Payload<'_>,
) {
    let arg = u32::from(endpoint.0);
    write_in_header(out, IN_MESSAGE, kind as u8, payload.is_large(), arg, client);
    payload.write(&mut out[IN_HEADER..]);
}

const IN_OPEN: u8 = 1;
const IN_MESSAGE: u8 = 2;
const IN_CLOSE: u8 = 3;
const IN_REQUEST: u8 = 4;
const IN_PING: u8 = 5;
const IN_STAMP: u8 = 6;
const IN_HEADER: usize = 16;

impl Inbound<'_> {
    /// The record as it will own its bytes (a borrowed payload is copied), for keeping
    /// in a backlog.
    pub fn into_owned(self) -> Inbound<'static> {
        match self {
            Inbound::Open(o) => Inbound::Open(Box::new(Opened {
                client: o.client,
                endpoint: o.endpoint,
                protocol: o.protocol,
                peer: o.peer,
                head: o.head.into_owned(),
            })),
            Inbound::Message {
                client,
                endpoint,
                kind,
                payload,
            } => Inbound::Message {
                client,
                endpoint,
                kind,
                payload: payload.into_owned(),
            },
            Inbound::Close { client, code } => Inbound::Close { client, code },
            Inbound::Ping { client } => Inbound::Ping { client },
            Inbound::Stamp { at } => Inbound::Stamp { at },
            Inbound::Request(r) => Inbound::Request(Box::new(Requested {
                client: r.client,
                endpoint: r.endpoint,
                upgrade: r.upgrade,
                peer: r.peer,
                bytes: r.bytes.into_owned(),
                head_len: r.head_len,
            })),
        }
    }

    #[inline]
    fn encode(&self, out: &mut [u8]) {
        match self {
            Inbound::Message {
                client,
                endpoint,
                kind,
                payload,
            } => encode_in_message(out, *client, *endpoint, *kind, payload),
            Inbound::Open(o) => o.encode(out),
            Inbound::Request(r) => r.encode(out),
            Inbound::Ping { client } => write_in_header(out, IN_PING, 0, false, 0, *client),
            Inbound::Stamp { at } => write_in_header(out, IN_STAMP, 0, false, 0, ClientId(*at)),
            Inbound::Close { client, code } => {
                write_in_header(out, IN_CLOSE, 0, false, u32::from(code.0), *client)
            }
        }
    }

    /// Gives a large payload up to the published record carrying it.
    #[inline]
    fn hand_over(self) {
        match self {
            Inbound::Message { payload, .. } => payload.hand_over(),
            Inbound::Open(o) => o.head.hand_over(),
            Inbound::Request(r) => r.bytes.hand_over(),
            Inbound::Close { .. } | Inbound::Ping { .. } | Inbound::Stamp { .. } => {}
        }
    }

    /// Heap bytes of a large payload (0 for none).
    #[inline]
    fn large_len(&self) -> usize {
        match self {
            Inbound::Message {
                payload: Payload::Large(l),
                ..
            } => l.held(),
            Inbound::Open(o) => match &o.head {
                Payload::Large(l) => l.held(),
                Payload::Inline(_) => 0,
            },
            Inbound::Request(r) => match &r.bytes {
                Payload::Large(l) => l.held(),
                Payload::Inline(_) => 0,
            },
            _ => 0,
        }
    }

    #[inline]
    fn wire_len(&self) -> usize {
        IN_HEADER
            + match self {
                Inbound::Message { payload, .. } => payload.wire_len(),
                Inbound::Open(o) => PEER_WIRE + o.head.wire_len(),
                Inbound::Request(r) => PEER_WIRE + r.bytes.wire_len(),
                Inbound::Close { .. } | Inbound::Ping { .. } | Inbound::Stamp { .. } => 0,
            }
    }

    /// # Safety
    /// `rec` is a record [`Inbound::encode`] wrote, decoded for the first time.
    #[inline]
    unsafe fn decode(rec: &[u8]) -> Inbound<'_> {
        let arg = u32::from_le_bytes(rec[4..8].try_into().expect("4 bytes"));
        let client = ClientId(read_u64(&rec[8..16]));
        match rec[0] {
            IN_OPEN => Inbound::Open(Box::new(Opened {
                client,
                endpoint: EndpointIndex(arg as u16),
                protocol: (arg >> 16).checked_sub(1).map(|p| p as u16),
                peer: read_peer(&rec[IN_HEADER..IN_HEADER + PEER_WIRE]),
                // SAFETY: forwarded contract.
                head: unsafe { Payload::read(rec[2] != 0, &rec[IN_HEADER + PEER_WIRE..]) },
            })),
            IN_REQUEST => {
                let peer = &rec[IN_HEADER..IN_HEADER + PEER_WIRE];
                let kind = arg >> 16;
                Inbound::Request(Box::new(Requested {
                    client,
                    endpoint: EndpointIndex(arg as u16),
                    upgrade: kind
                        .checked_sub(1)
                        .map(|p| p.checked_sub(1).map(|p| p as u16)),
                    peer: read_peer(peer),
                    head_len: u32::from_le_bytes(peer[4..8].try_into().expect("4 bytes")),
                    // SAFETY: forwarded contract.
                    bytes: unsafe { Payload::read(rec[2] != 0, &rec[IN_HEADER + PEER_WIRE..]) },
                }))
            }
            IN_PING => Inbound::Ping { client },
            IN_STAMP => Inbound::Stamp { at: client.0 },
            IN_MESSAGE => Inbound::Message {
                client,
                endpoint: EndpointIndex(arg as u16),
                kind: message_kind(rec[1]),
                // SAFETY: forwarded contract.
                payload: unsafe { Payload::read(rec[2] != 0, &rec[IN_HEADER..]) },
            },
            _ => Inbound::Close {
                client,
                code: CloseCode(arg as u16),
            },
        }
    }
}

/// Bytes of a peer address in an open or request record: family (0 none, 4, 6), 0,
/// port u16, 0 u32 (a request's head length), 16 address bytes.
const PEER_WIRE: usize = 24;

fn write_peer(out: &mut [u8], peer: Option<SocketAddr>) {
    out.fill(0);
    let Some(peer) = peer else {
        return;
    };
    out[2..4].copy_from_slice(&peer.port().to_le_bytes());
    match peer.ip() {
        IpAddr::V4(ip) => {
            out[0] = 4;
            out[8..12].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out[0] = 6;
            out[8..24].copy_from_slice(&ip.octets());
        }
    }
}

fn read_peer(wire: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_le_bytes([wire[2], wire[3]]);
    let ip = match wire[0] {
        4 => IpAddr::V4(Ipv4Addr::new(wire[8], wire[9], wire[10], wire[11])),
        6 => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(&wire[8..24]).expect("16 bytes"),
        )),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn message_kind(bits: u8) -> MessageKind {
    if bits == MessageKind::Text as u8 {
        MessageKind::Text
    } else {
        MessageKind::Binary
    }
}

/// A list of client ids in a record (sorted, for `contains`).
#[derive(Debug, Clone, Copy)]
// An explicit tag: matching on it is one byte compare on the message path, where a
// niche-packed layout costs several.
#[repr(u8)]
pub enum IdList<'a> {
    /// Ids given by the app (sorted and deduplicated by it).
    Ids(&'a [u64]),
    /// Ids as read from a record.
    Wire(&'a [u8]),
}

impl<'a> IdList<'a> {
    /// How many ids.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            IdList::Ids(ids) => ids.len(),
            IdList::Wire(b) => b.len() / 8,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn get(&self, i: usize) -> u64 {
        match self {
            IdList::Ids(ids) => ids[i],
            IdList::Wire(b) => read_u64(&b[i * 8..i * 8 + 8]),
        }
    }

    /// The ids, in order.
    #[inline]
    pub fn iter(self) -> impl Iterator<Item = ClientId> + 'a {
        (0..self.len()).map(move |i| ClientId(self.get(i)))
    }

    /// Whether `id` is listed (binary search: the list is sorted).
    #[inline]
    pub fn contains(&self, id: ClientId) -> bool {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).cmp(&id.0) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        false
    }
}

/// A topic, as an app thread numbers its topics (ids are reused once a topic has no
/// subscribers left anywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicId(pub u32);

/// Who an outbound message goes to (among the app's clients on the receiving worker):
/// a group, and ids that are the recipients or those left out of the group.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    /// Which clients.
    pub group: Group,
    /// The listed ids ([`Group::List`]), or those left out (the others).
    pub ids: IdList<'a>,
}

/// The clients a message's [`Targets`] start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Only the listed ids.
    List,
    /// Every client of the app.
    All,
    /// Every subscriber of the topic.
    Topic(TopicId),
}

impl<'a> Targets<'a> {
    /// Exactly these clients.
    #[inline]
    pub fn list(ids: IdList<'a>) -> Self {
        Targets {
            group: Group::List,
            ids,
        }
    }

    /// Every client of the app but these.
    #[inline]
    pub fn all_except(ids: IdList<'a>) -> Self {
        Targets {
            group: Group::All,
            ids,
        }
    }

    /// Every subscriber of `topic` but these.
    #[inline]
    pub fn topic(topic: TopicId, ids: IdList<'a>) -> Self {
        Targets {
            group: Group::Topic(topic),
            ids,
        }
    }
}

/// An app→worker record.
#[derive(Debug)]
// An explicit tag: matching on it is one byte compare on the message path, where a
// niche-packed layout costs several.
#[repr(u8)]
pub enum Outbound<'a> {
    /// Send one message to some clients.
    Send {
        /// Text or binary.
        kind: MessageKind,
        /// The recipients.
        to: Targets<'a>,
        /// The bytes.
        payload: Payload<'a>,
    },
    /// Close a client with this close-frame payload (code and reason).
    Close {
        /// The client.
        client: ClientId,
        /// The close frame's payload.
        frame_payload: &'a [u8],
    },
    /// The app has handled the client's [`Inbound::Close`]: everything it will ever send
    /// the client is already in the ring, so the worker may send the close frame.
    Closed {
        /// The client.
        client: ClientId,
    },
    /// Add the client to the topic's subscribers (on its worker).
    Subscribe {
        /// The client.
        client: ClientId,
        /// The topic.
        topic: TopicId,
    },
    /// Remove the client from the topic's subscribers.
    Unsubscribe {
        /// The client.
        client: ClientId,
        /// The topic.
        topic: TopicId,
    },
    /// Accept the upgrade request [`Inbound::Request`] asked about.
    Accept {
        /// The request's (and now the client's) id.
        client: ClientId,
    },
    /// Answer the request [`Inbound::Request`] asked about: a refused upgrade or a
    /// plain HTTP response.
    Respond {
        /// The request's id.
        client: ClientId,
        /// The HTTP status.
        status: u16,
        /// Header lines (checked), then the body.
        bytes: Payload<'a>,
        /// Bytes of header lines in `bytes`.
        headers_len: u32,
    },
    /// A latency sample: the send before it was made at `at` (nanoseconds on the
    /// server's stats clock). Only while metrics are on.
    Stamp {
        /// When.
        at: u64,
    },
}

const OUT_SEND_LIST: u8 = 1;
const OUT_SEND_ALL_EXCEPT: u8 = 2;
const OUT_CLOSE: u8 = 3;
const OUT_CLOSED: u8 = 4;
const OUT_SEND_TOPIC: u8 = 5;
const OUT_SUBSCRIBE: u8 = 6;
const OUT_UNSUBSCRIBE: u8 = 7;
const OUT_ACCEPT: u8 = 8;
const OUT_RESPOND: u8 = 9;
const OUT_STAMP: u8 = 10;
const OUT_HEADER: usize = 16;

impl Outbound<'_> {
    /// The record's length in the ring.
    pub fn wire_len(&self) -> usize {
        OUT_HEADER
            + match self {
                Outbound::Send { to, payload, .. } => 8 * to.ids.len() + payload.wire_len(),
                Outbound::Close { frame_payload, .. } => 8 + frame_payload.len(),
                Outbound::Closed { .. }
                | Outbound::Subscribe { .. }
                | Outbound::Unsubscribe { .. }
                | Outbound::Accept { .. }
                | Outbound::Stamp { .. } => 8,
                Outbound::Respond { bytes, .. } => 8 + bytes.wire_len(),
            }
    }

    #[inline]
    fn encode(&self, out: &mut [u8]) {
        match self {
            Outbound::Send { kind, to, payload } => {
                let (op, topic) = target_op(to);
                encode_out(out, op, *kind as u8, to.ids, topic, payload);
            }
            Outbound::Close {
                client,
                frame_payload,
            } => encode_control(out, OUT_CLOSE, *client, TopicId(0), frame_payload),
            Outbound::Closed { client } => {
                encode_control(out, OUT_CLOSED, *client, TopicId(0), &[])
            }
            Outbound::Subscribe { client, topic } => {
                encode_control(out, OUT_SUBSCRIBE, *client, *topic, &[])
            }
            Outbound::Unsubscribe { client, topic } => {
                encode_control(out, OUT_UNSUBSCRIBE, *client, *topic, &[])
            }
            Outbound::Accept { client } => {
                encode_control(out, OUT_ACCEPT, *client, TopicId(0), &[])
            }
            Outbound::Stamp { at } => {
                encode_control(out, OUT_STAMP, ClientId(*at), TopicId(0), &[])
            }
            Outbound::Respond {
                client,
                status,
                bytes,
                headers_len,
            } => encode_response(out, *client, *status, bytes, *headers_len),
        }
    }

    /// Gives a large payload up to the published record carrying it.
    #[inline]
    fn hand_over(self) {
        match self {
            Outbound::Send { payload, .. } => payload.hand_over(),
            Outbound::Respond { bytes, .. } => bytes.hand_over(),
            _ => {}
        }
    }

    /// Bytes of a large payload (0 for none).
    #[inline]
    fn large_len(&self) -> usize {
        match self {
            Outbound::Send {
                payload: Payload::Large(l),
                ..
            }
            | Outbound::Respond {
                bytes: Payload::Large(l),
                ..
            } => l.held(),
            _ => 0,
        }
    }

    /// # Safety
    /// `rec` is a record [`Outbound::encode`] wrote, decoded for the first time.
    #[inline]
    unsafe fn decode(rec: &[u8]) -> Outbound<'_> {
        let count = u32::from_le_bytes(rec[4..8].try_into().expect("4 bytes")) as usize;
        let payload_len = u32::from_le_bytes(rec[8..12].try_into().expect("4 bytes")) as usize;
        let (payload, ids) = rec[OUT_HEADER..].split_at(payload_len);
        let ids = &ids[..8 * count];
        let topic = TopicId(u32::from_le_bytes(rec[12..16].try_into().expect("4 bytes")));
        let ids = IdList::Wire(ids);
        let op = rec[0];
        if !matches!(op, OUT_SEND_LIST | OUT_SEND_ALL_EXCEPT | OUT_SEND_TOPIC) {
            // SAFETY: forwarded contract.
            return unsafe { decode_control(rec, op, topic, payload, ids) };
        }
        Outbound::Send {
            kind: message_kind(rec[1]),
            to: Targets {
                group: match op {
                    OUT_SEND_LIST => Group::List,
                    OUT_SEND_ALL_EXCEPT => Group::All,
                    _ => Group::Topic(topic),
                },
                ids,
            },
            // SAFETY: forwarded contract.
            payload: unsafe { Payload::read(rec[3] != 0, payload) },
        }
    }
}

/// The records other than messages (off the message path).
///
/// # Safety
/// As [`Outbound::decode`]: `rec` is a record decoded for the first time.
#[cold]
#[inline(never)]
unsafe fn decode_control<'a>(
    rec: &'a [u8],
    op: u8,
    topic: TopicId,
    payload: &'a [u8],
    ids: IdList<'a>,
) -> Outbound<'a> {
    let client = ids.iter().next().unwrap_or(ClientId(0));
    match op {
        OUT_CLOSE => Outbound::Close {
            client,
            frame_payload: payload,
        },
        OUT_CLOSED => Outbound::Closed { client },
        OUT_SUBSCRIBE => Outbound::Subscribe { client, topic },
        OUT_UNSUBSCRIBE => Outbound::Unsubscribe { client, topic },
        OUT_ACCEPT => Outbound::Accept { client },
        OUT_STAMP => Outbound::Stamp { at: client.0 },
        _ => Outbound::Respond {
            client,
            status: topic.0 as u16,
            headers_len: topic.0 >> 16,
            // SAFETY: forwarded contract.
            bytes: unsafe { Payload::read(rec[3] != 0, payload) },
        },
    }
}

/// The op code (and topic, for a publish) of a message record to `to`.
#[inline]
fn target_op(to: &Targets<'_>) -> (u8, TopicId) {
    match to.group {
        Group::List => (OUT_SEND_LIST, TopicId(0)),
        Group::All => (OUT_SEND_ALL_EXCEPT, TopicId(0)),
        Group::Topic(topic) => (OUT_SEND_TOPIC, topic),
    }
}

/// Writes a whole outbound record: header, payload, ids.
#[inline(always)]
fn encode_out(
    out: &mut [u8],
    op: u8,
    msg_kind: u8,
    ids: IdList<'_>,
    topic: TopicId,
    payload: &Payload<'_>,
) {
    let payload_len = payload.wire_len();
    let header = OutHeader {
        op,
        msg_kind,
        large: payload.is_large(),
        id_count: ids.len(),
        payload_len,
        topic,
    };
    header.write(out);
    payload.write(&mut out[OUT_HEADER..OUT_HEADER + payload_len]);
    write_ids(&mut out[OUT_HEADER + payload_len..], ids);
}

/// A response record (off the message path): the topic field carries the status and
/// the headers' length.
#[cold]
#[inline(never)]
fn encode_response(
    out: &mut [u8],
    client: ClientId,
    status: u16,
    bytes: &Payload<'_>,
    headers_len: u32,
) {
    let topic = TopicId(u32::from(status) | headers_len << 16);
    encode_out(out, OUT_RESPOND, 0, IdList::Ids(&[client.0]), topic, bytes);
}

/// A close, closed, subscribe or unsubscribe record (off the message path).
#[cold]
fn encode_control(out: &mut [u8], op: u8, client: ClientId, topic: TopicId, frame_payload: &[u8]) {
    let ids = [client.0];
    let payload = Payload::Inline(frame_payload);
    encode_out(out, op, 0, IdList::Ids(&ids), topic, &payload);
}

/// An outbound record's header.
struct OutHeader {
    op: u8,
    msg_kind: u8,
    large: bool,
    id_count: usize,
    payload_len: usize,
    topic: TopicId,
}

impl OutHeader {
    /// Writes it as one 16-byte value, so that it is stored at once.
    #[inline]
    fn write(&self, out: &mut [u8]) {
        let header = u128::from(self.op)
            | u128::from(self.msg_kind) << 8
            | u128::from(self.large) << 24
            | u128::from(self.id_count as u32) << 32
            | u128::from(self.payload_len as u32) << 64
            | u128::from(self.topic.0) << 96;
        out[..OUT_HEADER].copy_from_slice(&header.to_le_bytes());
    }
}

/// Writes `ids` at the start of `out`.
#[inline]
fn write_ids(out: &mut [u8], ids: IdList<'_>) {
    let out = &mut out[..8 * ids.len()];
    match ids {
        IdList::Ids(list) => {
            for (slot, id) in out.chunks_exact_mut(8).zip(list) {
                slot.copy_from_slice(&id.to_le_bytes());
            }
        }
        IdList::Wire(bytes) => out.copy_from_slice(bytes),
    }
}

fn read_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

/// Bytes of [`LargeMessage`]s published into a ring and not yet handled by its
/// consumer. A ring's records are bounded in bytes, but a large message's record is a
/// 25-byte pointer: without this gauge a ring of 1 MiB could hold gigabytes of
/// messages. The producer counts a large payload when it publishes it; the consumer
/// discounts it once the record is handled (and the message freed or copied).
#[derive(Debug)]
struct LargeGauge {
    bytes: AtomicUsize,
    /// A large payload is refused (as if the ring were full) while this many bytes
    /// are in flight; one is always let through when none are.
    limit: usize,
}

// Relaxed throughout: the gauge is flow control. The bytes themselves are published
// and taken back through the ring, whose own orderings cover them.
impl LargeGauge {
    fn admits(&self, len: usize) -> bool {
        let in_flight = self.bytes.load(Relaxed);
        in_flight == 0 || in_flight + len <= self.limit
    }

    fn add(&self, len: usize) {
        self.bytes.fetch_add(len, Relaxed);
    }

    fn sub(&self, len: usize) {
        self.bytes.fetch_sub(len, Relaxed);
    }
}

/// The worker's end of an app's inbound ring.
pub struct InboundTx(Producer, Arc<LargeGauge>);
/// The app's end of a worker's inbound ring.
pub struct InboundRx(Consumer, Arc<LargeGauge>);
/// The app's end of a worker's outbound ring.
pub struct OutboundTx(Producer, Arc<LargeGauge>);
/// The worker's end of an app's outbound ring.
pub struct OutboundRx(Consumer, Arc<LargeGauge>);

/// A worker→app ring of `capacity` bytes, carrying at most `large_limit` bytes of
/// large messages at a time.
pub fn inbound_ring(capacity: usize, large_limit: usize) -> (InboundTx, InboundRx) {
    let (p, c) = ringsocket_ring::channel(capacity);
    let gauge = Arc::new(LargeGauge {
        bytes: AtomicUsize::new(0),
        limit: large_limit,
    });
    (InboundTx(p, gauge.clone()), InboundRx(c, gauge))
}

/// An app→worker ring of `capacity` bytes, carrying at most `large_limit` bytes of
/// large messages at a time.
pub fn outbound_ring(capacity: usize, large_limit: usize) -> (OutboundTx, OutboundRx) {
    let (p, c) = ringsocket_ring::channel(capacity);
    let gauge = Arc::new(LargeGauge {
        bytes: AtomicUsize::new(0),
        limit: large_limit,
    });
    (OutboundTx(p, gauge.clone()), OutboundRx(c, gauge))
}

macro_rules! producer_common {
    ($tx:ident, $rec:ident) => {
        impl $tx {
            /// Publishes `rec` if there is room; gives it back otherwise.
            ///
            /// # Errors
            /// The record, when the ring is full right now.
            #[inline]
            pub fn try_push<'a>(&mut self, rec: $rec<'a>) -> Result<(), $rec<'a>> {
                let large = rec.large_len();
                if large > 0 {
                    if !self.1.admits(large) {
                        return Err(rec);
                    }
                    // Counted before it is published, so the consumer's discount never
                    // comes first.
                    self.1.add(large);
                }
                let len = rec.wire_len();
                match self.0.try_push_with(len, |buf| rec.encode(buf)) {
                    Ok(()) => {
                        // The published record owns a large payload's buffer now.
                        rec.hand_over();
                        Ok(())
                    }
                    Err(Full) => {
                        self.1.sub(large);
                        Err(rec)
                    }
                }
            }

            /// Payloads above this size must cross as [`LargeMessage`]s.
            #[inline]
            pub fn inline_max(&self) -> usize {
                inline_max(self.0.max_record_len())
            }

            /// Asks the consumer to say when it frees room (see the ring's docs).
            pub fn set_waiting(&self) {
                self.0.set_waiting();
            }

            /// A handle that reads how full the ring is, from any thread.
            pub fn observer(&self) -> ringsocket_ring::Observer {
                self.0.observer()
            }
        }
    };
}

macro_rules! consumer_common {
    ($rx:ident, $rec:ident) => {
        impl $rx {
            /// Hands the oldest record to `read`, if there is one.
            #[inline]
            pub fn pop_with<R>(&mut self, read: impl FnOnce($rec<'_>) -> R) -> Option<R> {
                let gauge = &self.1;
                self.0.pop_with(|bytes| {
                    // SAFETY: the producer wrote `bytes` with `encode`, and the ring hands
                    // each record to exactly one `pop_with`, so this is its only decode.
                    let rec = unsafe { $rec::decode(bytes) };
                    let large = rec.large_len();
                    let result = read(rec);
                    if large > 0 {
                        // Handled: the message was freed or copied by `read`.
                        gauge.sub(large);
                    }
                    result
                })
            }

            /// Whether no record is waiting.
            pub fn is_empty(&mut self) -> bool {
                self.0.is_empty()
            }

            /// Whether the producer waits for room (and clears that flag).
            pub fn take_producer_waiting(&self) -> bool {
                self.0.take_producer_waiting()
            }
        }
    };
}

impl OutboundTx {
    /// Publishes an inline message to one client: the record `try_push` of an
    /// [`Outbound::Send`] to `Targets::list` of `[client]` would publish, written
    /// straight into the ring instead of built and matched first (the echo path: an
    /// app answering the client whose message it reads).
    ///
    /// # Errors
    /// [`Full`] when there is no room right now (push the record then, which waits).
    ///
    /// # Panics
    /// If `bytes` exceeds [`OutboundTx::inline_max`].
    #[inline]
    pub fn try_push_to_one(
        &mut self,
        kind: MessageKind,
        client: ClientId,
        bytes: &[u8],
    ) -> Result<(), Full> {
        assert!(bytes.len() <= self.inline_max(), "a large payload");
        let ids = [client.0];
        let len = OUT_HEADER + bytes.len() + 8;
        self.0.try_push_with(len, |out| {
            encode_out(
                out,
                OUT_SEND_LIST,
                kind as u8,
                IdList::Ids(&ids),
                TopicId(0),
                &Payload::Inline(bytes),
            );
        })
    }

    /// The largest record the ring takes.
    pub fn max_record_len(&self) -> usize {
        self.0.max_record_len()
    }

    /// Claims a record in which an app writes a message of up to `room` bytes (its
    /// payload and then its recipients' ids) in place, before it knows the recipients.
    /// `None` when the ring has not that much room right now.
    ///
    /// While the draft is open nothing else may be pushed to this ring: abandon it (drop
    /// it, after copying out what was written) first.
    pub fn begin_draft(&mut self, room: usize) -> Option<Draft> {
        let max = room.checked_add(OUT_HEADER)?;
        if max > self.0.max_record_len() {
            return None;
        }
        self.0.try_reserve(max).ok().map(Draft)
    }

    /// Where the draft's payload goes, and how many bytes it may take (payload plus
    /// 8 per recipient id). Valid until the draft is finished or dropped.
    pub fn draft_area(&mut self, draft: &Draft) -> (*mut u8, usize) {
        let ptr = self.0.reserved_ptr(&draft.0);
        // SAFETY: the reservation holds `max_len >= OUT_HEADER` bytes from `ptr`.
        (
            unsafe { ptr.add(OUT_HEADER) },
            draft.0.max_len() - OUT_HEADER,
        )
    }

    /// Publishes the draft's first `len` bytes as a message to `to`, writing the
    /// header and ids around them in place.
    ///
    /// # Errors
    /// The draft, unpublished, when the ids do not fit after the payload.
    pub fn finish_draft(
        &mut self,
        draft: Draft,
        kind: MessageKind,
        to: Targets<'_>,
        len: usize,
    ) -> Result<(), Draft> {
        let ids = to.ids;
        let (op, topic) = target_op(&to);
        let total = OUT_HEADER + len + 8 * ids.len();
        if total > draft.0.max_len() {
            return Err(draft);
        }
        let record = self.0.reserved(&draft.0);
        let header = OutHeader {
            op,
            msg_kind: kind as u8,
            large: false,
            id_count: ids.len(),
            payload_len: len,
            topic,
        };
        header.write(record);
        write_ids(&mut record[OUT_HEADER + len..], ids);
        self.0.commit(draft.0, total);
        Ok(())
    }
}

/// A message being written in place into an outbound ring ([`OutboundTx::begin_draft`]).
#[derive(Debug)]
#[must_use = "a draft is published only by OutboundTx::finish_draft"]
pub struct Draft(Reservation);

impl InboundTx {
    /// Publishes an inline message from `client`: the record `try_push` of an
    /// [`Inbound::Message`] with an inline payload would publish, written straight
    /// into the ring instead of built and matched first (every message a client sends).
    ///
    /// # Errors
    /// [`Full`] when there is no room right now.
    ///
    /// # Panics
    /// If `bytes` exceeds [`InboundTx::inline_max`].
    #[inline]
    pub fn try_push_message(
        &mut self,
        client: ClientId,
        endpoint: EndpointIndex,
        kind: MessageKind,
        bytes: &[u8],
    ) -> Result<(), Full> {
        assert!(bytes.len() <= self.inline_max(), "a large payload");
        self.0.try_push_with(IN_HEADER + bytes.len(), |out| {
            encode_in_message(out, client, endpoint, kind, &Payload::Inline(bytes));
        })
    }
}

producer_common!(InboundTx, Inbound);
producer_common!(OutboundTx, Outbound);
consumer_common!(InboundRx, Inbound);
consumer_common!(OutboundRx, Outbound);

// A consumer that goes away takes back the large messages still in its ring, so that
// their buffers are freed (records are dropped unhandled).
impl Drop for InboundRx {
    fn drop(&mut self) {
        while self.pop_with(|record| drop(record)).is_some() {}
    }
}

impl Drop for OutboundRx {
    fn drop(&mut self) {
        while self.pop_with(|record| drop(record)).is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_round_trips() {
        let (mut tx, mut rx) = inbound_ring(4096, usize::MAX);
        let a = ClientId::new(3, 99, 7);
        let peer: SocketAddr = "[2001:db8::1]:4242".parse().unwrap();
        tx.try_push(Inbound::Open(Box::new(Opened {
            client: a,
            endpoint: EndpointIndex(7),
            protocol: Some(2),
            peer: Some(peer),
            head: Payload::Inline(b"GET /x?y HTTP/1.1\r\n\r\n"),
        })))
        .unwrap();
        tx.try_push(Inbound::Open(Box::new(Opened {
            client: a,
            endpoint: EndpointIndex(0),
            protocol: None,
            peer: Some("10.1.2.3:9".parse().unwrap()),
            head: Payload::Large(LargeMessage::owned(vec![b'h'; 70_000])),
        })))
        .unwrap();
        tx.try_push(Inbound::Message {
            client: a,
            endpoint: EndpointIndex(3),
            kind: MessageKind::Text,
            payload: Payload::Inline(b"hi"),
        })
        .unwrap();
        tx.try_push(Inbound::Message {
            client: a,
            endpoint: EndpointIndex(3),
            kind: MessageKind::Binary,
            payload: Payload::Large(LargeMessage::owned(vec![5; 100_000])),
        })
        .unwrap();
        tx.try_push(Inbound::Close {
            client: a,
            code: CloseCode::ABNORMAL,
        })
        .unwrap();
        tx.try_push(Inbound::Stamp { at: u64::MAX - 7 }).unwrap();
        rx.pop_with(|r| match r {
            Inbound::Open(o) => {
                assert_eq!((o.client, o.peer), (a, Some(peer)));
                assert_eq!((o.endpoint, o.protocol), (EndpointIndex(7), Some(2)));
                assert_eq!(o.head.bytes(), b"GET /x?y HTTP/1.1\r\n\r\n");
            }
            other => panic!("{other:?}"),
        });
        rx.pop_with(|r| match r {
            Inbound::Open(o) => {
                assert_eq!(o.peer, Some("10.1.2.3:9".parse().unwrap()));
                assert_eq!(o.head.bytes().len(), 70_000);
            }
            other => panic!("{other:?}"),
        });
        rx.pop_with(|r| match r {
            Inbound::Message {
                client,
                kind: MessageKind::Text,
                payload,
                endpoint,
            } => {
                assert_eq!(endpoint, EndpointIndex(3));
                assert_eq!((client, payload.bytes()), (a, &b"hi"[..]))
            }
            other => panic!("{other:?}"),
        });
        rx.pop_with(|r| match r {
            Inbound::Message {
                kind: MessageKind::Binary,
                payload: Payload::Large(l),
                ..
            } => {
                assert_eq!(l.bytes().len(), 100_000);
                assert!(l.bytes().iter().all(|&b| b == 5));
            }
            _ => panic!("expected the large message"),
        });
        rx.pop_with(|r| {
            assert!(matches!(
                r,
                Inbound::Close {
                    code: CloseCode::ABNORMAL,
                    ..
                }
            ))
        });
        rx.pop_with(|r| assert!(matches!(r, Inbound::Stamp { at } if at == u64::MAX - 7)));
        assert!(rx.is_empty());
        assert_eq!((a.worker(), a.slot(), a.generation()), (3, 99, 7));
        let last = ClientId::new(255, ClientId::SLOTS - 1, u32::MAX);
        assert_eq!(
            (last.worker(), last.slot(), last.generation()),
            (255, ClientId::SLOTS - 1, u32::MAX)
        );
    }

    #[test]
    fn requests_and_their_answers_round_trip() {
        let (mut tx, mut rx) = inbound_ring(4096, usize::MAX);
        let a = ClientId::new(1, 5, 1);
        let peer: SocketAddr = "10.0.0.9:1234".parse().unwrap();
        let request = b"POST /send HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        for (upgrade, bytes) in [
            (None, Payload::Inline(&request[..])),
            (Some(None), Payload::Inline(&request[..45])),
            (
                Some(Some(3)),
                Payload::Large(LargeMessage::owned(request.to_vec())),
            ),
        ] {
            tx.try_push(Inbound::Request(Box::new(Requested {
                client: a,
                endpoint: EndpointIndex(2),
                upgrade,
                peer: Some(peer),
                bytes,
                head_len: 45,
            })))
            .unwrap();
            rx.pop_with(|r| match r {
                Inbound::Request(r) => {
                    assert_eq!(
                        (r.client, r.endpoint, r.peer),
                        (a, EndpointIndex(2), Some(peer))
                    );
                    assert_eq!(r.upgrade, upgrade);
                    assert_eq!(r.head(), &request[..45]);
                    assert_eq!(
                        r.body(),
                        if r.bytes.bytes().len() > 45 {
                            &b"abc"[..]
                        } else {
                            b""
                        }
                    );
                }
                other => panic!("{other:?}"),
            });
        }
        let (mut tx, mut rx) = outbound_ring(4096, usize::MAX);
        tx.try_push(Outbound::Accept { client: a }).unwrap();
        let body = b"X-A: 1\r\nhello";
        tx.try_push(Outbound::Respond {
            client: a,
            status: 404,
            bytes: Payload::Inline(body),
            headers_len: 8,
        })
        .unwrap();
        tx.try_push(Outbound::Respond {
            client: a,
            status: 200,
            bytes: Payload::Large(LargeMessage::owned(vec![7; 100_000])),
            headers_len: 0,
        })
        .unwrap();
        rx.pop_with(|r| assert!(matches!(r, Outbound::Accept { client } if client == a)));
        rx.pop_with(|r| match r {
            Outbound::Respond {
                client,
                status,
                bytes,
                headers_len,
            } => {
                assert_eq!((client, status, headers_len), (a, 404, 8));
                assert_eq!(bytes.bytes(), body);
            }
            other => panic!("{other:?}"),
        });
        rx.pop_with(|r| match r {
            Outbound::Respond {
                status: 200,
                bytes: Payload::Large(l),
                ..
            } => {
                assert_eq!(l.bytes().len(), 100_000)
            }
            other => panic!("{other:?}"),
        });
        assert!(rx.is_empty());
    }

    #[test]
    fn the_large_message_gauge_holds_back_and_lets_one_through() {
        let (mut tx, mut rx) = inbound_ring(4096, 1000);
        let big = |n: usize| Inbound::Message {
            client: ClientId(1),
            endpoint: EndpointIndex(0),
            kind: MessageKind::Binary,
            payload: Payload::Large(LargeMessage::owned(vec![0; n])),
        };
        // One message larger than the limit goes through when none is in flight...
        assert!(tx.try_push(big(5000)).is_ok());
        // ...but then nothing large until it is handled.
        assert!(tx.try_push(big(10)).is_err());
        assert!(rx.pop_with(|_| ()).is_some());
        assert!(tx.try_push(big(600)).is_ok());
        assert!(tx.try_push(big(400)).is_ok());
        assert!(tx.try_push(big(1)).is_err(), "1000 bytes in flight");
        // Small messages are not held back.
        assert!(tx
            .try_push(Inbound::Message {
                client: ClientId(1),
                endpoint: EndpointIndex(0),
                kind: MessageKind::Text,
                payload: Payload::Inline(b"x"),
            })
            .is_ok());
    }

    #[test]
    fn large_messages_move_and_share() {
        let (mut tx, mut rx) = outbound_ring(4096, usize::MAX);
        let shared: Arc<[u8]> = Arc::from(&b"abc"[..]);
        for _ in 0..2 {
            tx.try_push(Outbound::Send {
                kind: MessageKind::Binary,
                to: Targets::all_except(IdList::Ids(&[])),
                payload: Payload::Large(LargeMessage::shared(shared.clone())),
            })
            .unwrap();
        }
        while rx
            .pop_with(|r| match r {
                Outbound::Send { payload, .. } => assert_eq!(payload.bytes(), b"abc"),
                other => panic!("{other:?}"),
            })
            .is_some()
        {}
        // Every reference the records carried was taken back and dropped.
        assert_eq!(Arc::strong_count(&shared), 1);
    }

    #[test]
    fn outbound_round_trips_and_lookup() {
        let (mut tx, mut rx) = outbound_ring(4096, usize::MAX);
        let ids = [3u64, 9, 270, 1 << 40];
        tx.try_push(Outbound::Send {
            kind: MessageKind::Text,
            to: Targets::all_except(IdList::Ids(&ids)),
            payload: Payload::Inline(b"hello"),
        })
        .unwrap();
        tx.try_push(Outbound::Close {
            client: ClientId(270),
            frame_payload: b"\x03\xe8bye",
        })
        .unwrap();
        tx.try_push(Outbound::Closed {
            client: ClientId(9),
        })
        .unwrap();
        tx.try_push(Outbound::Stamp { at: 1 << 62 }).unwrap();
        rx.pop_with(|r| {
            let Outbound::Send {
                kind,
                to:
                    Targets {
                        group: Group::All,
                        ids: list,
                    },
                payload,
            } = r
            else {
                panic!("{r:?}")
            };
            assert_eq!((kind, payload.bytes()), (MessageKind::Text, &b"hello"[..]));
            assert_eq!(list.iter().map(|c| c.0).collect::<Vec<_>>(), ids);
            for id in ids {
                assert!(list.contains(ClientId(id)));
            }
            for id in [0, 4, 271, u64::MAX] {
                assert!(!list.contains(ClientId(id)));
            }
        });
        rx.pop_with(|r| {
            assert!(matches!(
                r,
                Outbound::Close {
                    client: ClientId(270),
                    frame_payload: b"\x03\xe8bye"
                }
            ))
        });
        rx.pop_with(|r| {
            assert!(matches!(
                r,
                Outbound::Closed {
                    client: ClientId(9)
                }
            ))
        });
        rx.pop_with(|r| assert!(matches!(r, Outbound::Stamp { at } if at == 1 << 62)));
    }

    #[test]
    fn a_draft_is_written_in_place_and_published_with_its_ids() {
        let (mut tx, mut rx) = outbound_ring(4096, usize::MAX);
        let draft = tx.begin_draft(100).unwrap();
        let (ptr, room) = tx.draft_area(&draft);
        assert_eq!(room, 100);
        // SAFETY: the draft area holds `room` writable bytes until it is finished.
        unsafe { std::ptr::copy_nonoverlapping(b"in place".as_ptr(), ptr, 8) };
        tx.finish_draft(
            draft,
            MessageKind::Text,
            Targets::list(IdList::Ids(&[5, 7])),
            8,
        )
        .unwrap();
        // Ids that do not fit after the payload give the draft back.
        let draft = tx.begin_draft(20).unwrap();
        let draft = tx
            .finish_draft(
                draft,
                MessageKind::Binary,
                Targets::list(IdList::Ids(&[1, 2])),
                8,
            )
            .unwrap_err();
        drop(draft);
        rx.pop_with(|r| {
            let Outbound::Send {
                kind: MessageKind::Text,
                to:
                    Targets {
                        group: Group::List,
                        ids,
                    },
                payload,
            } = r
            else {
                panic!("{r:?}")
            };
            assert_eq!(payload.bytes(), b"in place");
            assert_eq!(ids.iter().map(|c| c.0).collect::<Vec<_>>(), [5, 7]);
        })
        .unwrap();
        assert!(rx.is_empty(), "an abandoned draft publishes nothing");
    }

    #[test]
    fn payloads_of_every_small_length_are_copied_whole() {
        let src: Vec<u8> = (1..=40).collect();
        for n in 0..=40 {
            let mut dst = vec![0u8; n];
            copy_payload(&mut dst, &src[..n]);
            assert_eq!(dst, src[..n], "{n} bytes");
        }
    }

    /// The shortcuts for one message publish what the general push of the same record
    /// does, byte for byte, and refuse (rather than wrap wrongly) on a full ring.
    #[test]
    fn the_message_shortcuts_publish_what_the_general_push_does() {
        let client = ClientId::new(1, 77, 3);
        let raw = |bytes: &[u8]| bytes.to_vec();
        for len in [0usize, 1, 7, 32, 100] {
            let data: Vec<u8> = (0..len as u8).collect();
            for kind in [MessageKind::Binary, MessageKind::Text] {
                let (mut general, mut general_rx) = outbound_ring(4096, usize::MAX);
                let (mut short, mut short_rx) = outbound_ring(4096, usize::MAX);
                let ids = [client.0];
                let to = Targets::list(IdList::Ids(&ids));
                let payload = Payload::Inline(&data);
                general
                    .try_push(Outbound::Send { kind, to, payload })
                    .unwrap();
                short.try_push_to_one(kind, client, &data).unwrap();
                let a = general_rx.0.pop_with(raw).unwrap();
                assert_eq!(Some(a), short_rx.0.pop_with(raw), "outbound, {len} bytes");

                let (mut general, mut general_rx) = inbound_ring(4096, usize::MAX);
                let (mut short, mut short_rx) = inbound_ring(4096, usize::MAX);
                let endpoint = EndpointIndex(5);
                let payload = Payload::Inline(&data);
                let record = Inbound::Message {
                    client,
                    endpoint,
                    kind,
                    payload,
                };
                general.try_push(record).unwrap();
                short
                    .try_push_message(client, endpoint, kind, &data)
                    .unwrap();
                let a = general_rx.0.pop_with(raw).unwrap();
                assert_eq!(Some(a), short_rx.0.pop_with(raw), "inbound, {len} bytes");
            }
        }
        // Full: refused, and what was published before is intact.
        let (mut tx, mut rx) = outbound_ring(512, usize::MAX);
        let data = vec![9; tx.inline_max()];
        let mut pushed = 0;
        while tx
            .try_push_to_one(MessageKind::Binary, client, &data)
            .is_ok()
        {
            pushed += 1;
        }
        assert!(pushed > 0);
        for _ in 0..pushed {
            rx.pop_with(|rec| match rec {
                Outbound::Send { to, payload, .. } => {
                    assert_eq!(to.ids.iter().collect::<Vec<_>>(), [client]);
                    assert_eq!(payload.bytes(), data);
                }
                other => panic!("{other:?}"),
            })
            .unwrap();
        }
        assert!(rx.pop_with(|_| ()).is_none());
    }

    #[test]
    fn a_full_ring_gives_the_record_back() {
        let (mut tx, _rx) = outbound_ring(128, usize::MAX);
        let big = [0u8; 4];
        let mut refused = None;
        for _ in 0..10 {
            if let Err(r) = tx.try_push(Outbound::Close {
                client: ClientId(1),
                frame_payload: &big,
            }) {
                refused = Some(r);
                break;
            }
        }
        assert!(matches!(refused, Some(Outbound::Close { .. })));
    }
}
