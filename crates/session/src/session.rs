//! [`Session`]: one client connection's protocol state, without sockets or clocks.

use crate::clock::Tick;
use crate::outbuf::{LazyVec, OutBuf, Overflow};
use crate::route::{Route, Routes};
use ringsocket_proto::close::encode_close_payload;
use ringsocket_proto::frame::{encode_header, MAX_SERVER_HEADER_LEN};
use ringsocket_proto::handshake::{parse_request, write_accept_response, HandshakeError};
use ringsocket_proto::http::{parse_http_request, HttpResponse, CONTINUE};
use ringsocket_proto::{CloseCode, Event, MessageKind, Opcode, ProtocolError, Receiver};
use std::time::Duration;

/// The numbers a session enforces; one copy per worker, passed to every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message payload a client may send (1009 beyond).
    pub max_message: u64,
    /// The largest upgrade request head (431 beyond).
    pub max_header: usize,
    /// Bytes that may wait unsent for one client (1008 beyond).
    pub out_cap: usize,
    /// Time to complete the HTTP upgrade.
    pub handshake_timeout: Duration,
    /// Time to deliver an HTTP error response.
    pub http_wait: Duration,
    /// Time for each step of a close handshake (the client's close frame, the app's
    /// confirmation, flushing, lingering).
    pub ws_wait: Duration,
    /// Ping a connection that has sent nothing for this long (`None`: never).
    pub ping_interval: Option<Duration>,
    /// Drop a connection that sends nothing for this long after a ping.
    pub pong_timeout: Duration,
    /// Close (1001) a connection with no data message either way for this long.
    pub idle_timeout: Option<Duration>,
    /// The largest body of a plain HTTP request to an app (413 beyond).
    pub max_http_body: usize,
    /// Time an app has to decide an upgrade (503 after) or answer a plain HTTP
    /// request (504 after).
    pub app_answer_timeout: Duration,
}

impl Default for Limits {
    /// The configuration file's defaults.
    fn default() -> Self {
        Limits {
            max_message: 16 << 20,
            max_header: 8192,
            out_cap: 32 << 20,
            handshake_timeout: Duration::from_secs(10),
            http_wait: Duration::from_secs(15),
            ws_wait: Duration::from_secs(30),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(30),
            idle_timeout: None,
            max_http_body: 1 << 20,
            app_answer_timeout: Duration::from_secs(10),
        }
    }
}

/// What every session of a worker shares: the routes and the limits.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    /// Where upgrade requests go.
    pub routes: Routes,
    /// What is enforced.
    pub limits: Limits,
    /// Draining: every upgrade is refused with 503 (plain HTTP requests to apps are
    /// still served).
    pub draining: bool,
}

/// The bytes of a complete message handed to the app.
#[derive(Debug)]
pub enum Message<'a> {
    /// A message that arrived in one piece, borrowed from the read buffer.
    Borrowed(&'a [u8]),
    /// A message assembled from several pieces; the receiver may take the buffer.
    Assembled(&'a mut Vec<u8>),
}

impl Message<'_> {
    /// The message's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Message::Borrowed(b) => b,
            Message::Assembled(v) => v,
        }
    }
}

/// Whether the session may go on decoding after handing the app a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Delivery {
    /// Go on.
    Delivered,
    /// The message is queued, but the app is behind: stop decoding this client's input
    /// until it catches up.
    Paused,
}

/// What a session tells its app (the worker turns these into ring records).
pub trait AppEvents {
    /// The client completed the upgrade on `route`, with the subprotocol at this index
    /// of `route.subprotocols` selected, if any; `head` is its request head (request
    /// line and header lines, up to the blank line). `decided`: the app accepted it
    /// after [`AppEvents::request`] (the client keeps the id it had there).
    fn open(&mut self, route: &Route, protocol: Option<usize>, head: &[u8], decided: bool);
    /// A request for the app to decide or answer: an upgrade on a route whose app
    /// decides upgrades, or a plain HTTP request on one whose app serves HTTP. Answer
    /// with [`Session::accept_upgrade`] or [`Session::respond`].
    fn request(&mut self, route: &Route, kind: RequestKind, head: &[u8], body: &[u8]);
    /// The request [`AppEvents::request`] announced will never be answered: the
    /// client left or the app took too long.
    fn cancelled(&mut self);
    /// The client sent a complete message.
    fn message(&mut self, kind: MessageKind, message: Message<'_>) -> Delivery;
    /// The client is gone for the app: no more messages will come, and nothing the app
    /// sends after this reaches it. `code` is what the client sent, what the server
    /// closed it with, or 1006 if the connection was lost.
    fn close(&mut self, code: CloseCode);
    /// The upgrade was refused with this error (for logging; the app never knew the
    /// client).
    fn refused(&mut self, _error: &HandshakeError) {}
    /// The client broke the protocol (for logging; [`AppEvents::close`] follows).
    fn protocol_error(&mut self, _error: &ProtocolError) {}
    /// An open client sent a ping or a pong: it is alive.
    fn alive(&mut self) {}
}

/// What an [`AppEvents::request`] asks of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Accept or refuse a WebSocket upgrade (the subprotocol at this index of the
    /// route's list would be selected).
    Upgrade {
        /// The subprotocol's index in the route's list.
        protocol: Option<usize>,
    },
    /// Answer a plain HTTP request.
    Http,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading an HTTP request: an upgrade, or a plain request for an app.
    Handshake,
    /// A WebSocket connection its app knows.
    Open,
    /// The client closed or broke the protocol, and the app was told. The close frame
    /// (with this code, or none) goes out once the app confirms it has sent everything
    /// it will send, so that its replies to earlier messages come first.
    AwaitingApp {
        /// The close code to send; `None` sends an empty close frame.
        reply: Option<CloseCode>,
    },
    /// The server sent a close frame and waits for the client's.
    Closing,
    /// The close handshake (or an HTTP error) is done: write what is queued, then shut
    /// down the write side.
    Flushing,
    /// The write side is shut down; input is read and dropped until the client closes
    /// or time is up.
    Lingering,
    /// Done: the socket may be closed.
    Closed,
    /// A valid upgrade request waits for its app's decision.
    Deciding,
    /// Reading the body of a plain HTTP request (its head is read).
    ReadingBody,
    /// A plain HTTP request waits for its app's answer.
    Answering,
}

/// What the caller must do once a session's output is all written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Drained {
    /// Nothing.
    Nothing,
    /// Shut down the socket's write side (TLS close_notify, then FIN).
    ShutdownWrite,
}

/// What became of an app's message for this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Sent {
    /// Queued for writing.
    Queued,
    /// Not for this client any more (it is closing); dropped.
    Dropped,
    /// It did not fit under the outbound cap: nothing was queued, and the caller must
    /// close the client ([`Session::close_overflowed`]).
    Overflowed,
}

/// One client connection's protocol state: the upgrade, the frames, the close
/// handshake's ordering, pings, and every deadline.
///
/// It owns no socket and reads no clock. The caller feeds it bytes read
/// ([`Session::handle_input`]), app requests ([`Session::send`], [`Session::app_close`],
/// [`Session::app_done`]), the end of input ([`Session::handle_eof`]) and the time
/// ([`Session::handle_timeout`] once [`Session::poll_timeout`] is due). It answers with
/// bytes to write ([`Session::output`]), events for the app (through [`AppEvents`]),
/// the next deadline, and [`Session::is_closed`] once the socket may go.
///
/// After any call, the caller must write [`Session::output`] if it is not empty, then
/// call [`Session::output_drained`]; and check [`Session::poll_timeout`] again.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    /// The local port the connection came in on (routes are per port).
    port: u16,
    rx: Receiver,
    /// A data message being assembled from several chunks.
    message: LazyVec,
    out: OutBuf,
    /// When the current phase times out; in `Open`, when the pong is due.
    deadline: Option<Tick>,
    /// When the client last sent anything.
    last_input: Tick,
    /// When a data message last went either way.
    last_data: Tick,
    /// Since the output last drained, only what the server itself says went into it
    /// (the 101 response, pings, pongs): release its memory once it is written. A
    /// connection that is idle or only exchanges pings then holds no buffer, while one
    /// that carries messages keeps its buffer rather than allocating one per message.
    release_when_drained: bool,
}

impl Session {
    /// A connection accepted at `now` on `port`, waiting for its upgrade request.
    pub fn new(port: u16, now: Tick, limits: &Limits) -> Session {
        Session {
            phase: Phase::Handshake,
            port,
            rx: Receiver::new(0),
            message: LazyVec::default(),
            out: OutBuf::default(),
            deadline: Some(now + limits.handshake_timeout),
            last_input: now,
            last_data: now,
            release_when_drained: false,
        }
    }

    /// The current phase.
    #[inline]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether an upgrade request waits for its app's decision.
    #[inline]
    pub fn is_deciding(&self) -> bool {
        self.phase == Phase::Deciding
    }

    /// Whether the app knows this client as connected.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the socket may be closed now.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether input should be read (and passed to [`Session::handle_input`]).
    #[inline]
    pub fn reads_input(&self) -> bool {
        !matches!(self.phase, Phase::Flushing | Phase::Closed)
    }

    /// Whether the session decodes input (rather than dropping it).
    #[inline]
    pub fn decodes_input(&self) -> bool {
        matches!(
            self.phase,
            Phase::Handshake
                | Phase::Deciding
                | Phase::ReadingBody
                | Phase::Answering
                | Phase::Open
                | Phase::Closing
        )
    }

    /// Bytes waiting to be written.
    #[inline]
    pub fn output(&self) -> &[u8] {
        self.out.unsent_bytes()
    }

    /// Whether the caller must write [`Session::output`] and then call
    /// [`Session::output_drained`]: there is output, or a flush is due (even with
    /// nothing left to write, flushing ends in shutting down the write side).
    #[inline]
    pub fn wants_flush(&self) -> bool {
        !self.out.is_empty() || self.phase == Phase::Flushing
    }

    /// Bytes waiting to be written, counted.
    #[inline]
    pub fn unsent(&self) -> usize {
        self.out.unsent()
    }

    /// Whether a frame of `len` bytes can be queued without the output buffer growing.
    #[inline]
    pub fn fits_held(&self, len: usize) -> bool {
        self.out.fits_held(len)
    }

    /// Asks the CPU to start loading what [`Session::send`] touches beyond the
    /// session itself: `stage` 0 the output's bookkeeping, 1 where the bytes go (which
    /// reads the bookkeeping: issue stage 0 a few sends earlier).
    #[inline(always)]
    pub fn prefetch_output(&self, stage: u8) {
        if stage == 0 {
            self.out.prefetch_header();
        } else {
            self.out.prefetch_tail();
        }
    }

    /// Heap bytes this session holds in its buffers.
    #[inline]
    pub fn held(&self) -> usize {
        self.out.held() + self.message.capacity()
    }

    /// Records that the first `n` bytes of [`Session::output`] were written.
    #[inline]
    pub fn advance_output(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// Call once [`Session::output`] is empty and written out completely.
    #[inline]
    pub fn output_drained(&mut self, now: Tick, limits: &Limits) -> Drained {
        if std::mem::take(&mut self.release_when_drained) {
            self.out.release();
        }
        if self.phase == Phase::Flushing {
            self.enter(Phase::Lingering, now, limits);
            return Drained::ShutdownWrite;
        }
        Drained::Nothing
    }

    /// When [`Session::handle_timeout`] must be called next, if ever.
    #[inline]
    pub fn poll_timeout(&self, limits: &Limits) -> Option<Tick> {
        if self.phase != Phase::Open {
            return self.deadline;
        }
        let ping = match (self.deadline, limits.ping_interval) {
            (Some(pong_due), _) => Some(pong_due),
            (None, Some(interval)) => Some(self.last_input + interval),
            (None, None) => None,
        };
        let idle = limits.idle_timeout.map(|t| self.last_data + t);
        match (ping, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decodes bytes the client sent; returns how many it used. The caller keeps the
    /// rest and passes them again, followed by newer bytes, on the next call. Fewer than
    /// `buf.len()` are used when more input is needed to go on, or when the app asked
    /// to pause ([`Delivery::Paused`]).
    pub fn handle_input(
        &mut self,
        config: &SessionConfig,
        now: Tick,
        buf: &mut [u8],
        app: &mut impl AppEvents,
    ) -> usize {
        self.last_input = now;
        match self.phase {
            Phase::Handshake => self.handshake(config, now, buf, app),
            Phase::ReadingBody => {
                // The length is read again from the head rather than kept: a field for it
                // would grow every connection.
                let total = parse_http_request(self.message.as_slice(), usize::MAX)
                    .ok()
                    .flatten()
                    .map_or(0, |req| req.total_len());
                self.read_body(config, now, buf, total, app)
            }
            // Input waits (in the caller's buffer) until the app has answered.
            Phase::Deciding | Phase::Answering => 0,
            Phase::Open => {
                // Any input shows the client is alive: the pong is no longer awaited.
                self.deadline = None;
                self.frames(&config.limits, now, buf, app)
            }
            Phase::Closing => self.frames(&config.limits, now, buf, app),
            _ => buf.len(),
        }
    }

    /// The client closed its side (EOF), or the socket failed.
    pub fn handle_eof(&mut self, now: Tick, limits: &Limits, app: &mut impl AppEvents) {
        self.abort(CloseCode::ABNORMAL, now, limits, app);
    }

    /// Drops the connection now: the app is told `code` if it knew the client.
    pub fn abort(&mut self, code: CloseCode, now: Tick, limits: &Limits, app: &mut impl AppEvents) {
        match self.phase {
            Phase::Open => app.close(code),
            Phase::Deciding | Phase::Answering => app.cancelled(),
            _ => {}
        }
        self.enter(Phase::Closed, now, limits);
    }

    /// Acts on the deadline returned by [`Session::poll_timeout`], if it has come.
    pub fn handle_timeout(&mut self, now: Tick, limits: &Limits, app: &mut impl AppEvents) {
        if self.phase != Phase::Open {
            if self.deadline.is_some_and(|d| d <= now) {
                let late = match self.phase {
                    Phase::Deciding => Some(HandshakeError::AppTimeout),
                    Phase::Answering => Some(HandshakeError::GatewayTimeout),
                    _ => None,
                };
                match late {
                    Some(error) => {
                        app.refused(&error);
                        app.cancelled();
                        self.refuse(&error, now, limits);
                    }
                    None => self.enter(Phase::Closed, now, limits),
                }
            }
            return;
        }
        if self.deadline.is_some_and(|pong_due| pong_due <= now) {
            // A ping went unanswered: the peer is gone (or unreachable).
            self.abort(CloseCode::ABNORMAL, now, limits, app);
            return;
        }
        if limits
            .idle_timeout
            .is_some_and(|t| self.last_data + t <= now)
        {
            self.close(CloseCode::GOING_AWAY, "idle timeout", now, limits, app);
            return;
        }
        if let Some(interval) = limits.ping_interval {
            if self.deadline.is_none() && self.last_input + interval <= now {
                let frame = Frame::new(Opcode::Ping, &[]);
                let idle_output = self.out.is_empty();
                if self.out.push(frame.parts(), limits.out_cap).is_err() {
                    self.close(CloseCode::POLICY_VIOLATION, OVERFLOW, now, limits, app);
                    return;
                }
                self.release_when_drained |= idle_output;
                self.deadline = Some(now + limits.pong_timeout);
            }
        }
    }

    /// Queues an app's message (an encoded frame) for this client. On
    /// [`Sent::Overflowed`] the caller must call [`Session::close_overflowed`] (kept
    /// apart so that the hot path needs no [`AppEvents`]).
    #[inline]
    pub fn send(&mut self, frame: &Frame<'_>, now: Tick, limits: &Limits) -> Sent {
        // After a close frame from either side nothing is sent but the close reply; while
        // awaiting the app its replies to earlier messages still go out.
        if !matches!(self.phase, Phase::Open | Phase::AwaitingApp { .. }) {
            return Sent::Dropped;
        }
        match self.out.push(frame.parts(), limits.out_cap) {
            Ok(()) => {
                self.last_data = now;
                self.release_when_drained = false;
                Sent::Queued
            }
            Err(Overflow) if self.phase == Phase::Open => Sent::Overflowed,
            Err(Overflow) => Sent::Dropped,
        }
    }

    /// Closes with 1008 a client whose output would have exceeded the outbound cap.
    pub fn close_overflowed(&mut self, now: Tick, limits: &Limits, app: &mut impl AppEvents) {
        self.close(CloseCode::POLICY_VIOLATION, OVERFLOW, now, limits, app);
    }

    /// The app closes the client with this close-frame payload (code and reason).
    pub fn app_close(
        &mut self,
        payload: &[u8],
        now: Tick,
        limits: &Limits,
        app: &mut impl AppEvents,
    ) {
        if self.phase != Phase::Open {
            return;
        }
        let code = payload.get(..2).map_or(CloseCode::NO_STATUS, |c| {
            CloseCode(u16::from_be_bytes([c[0], c[1]]))
        });
        self.out
            .push_unbounded(Frame::new(Opcode::Close, payload).parts());
        app.close(code);
        self.enter(Phase::Closing, now, limits);
    }

    /// The app confirmed it has sent everything it will send this client: the pending
    /// close frame goes out.
    pub fn app_done(&mut self, now: Tick, limits: &Limits) {
        let Phase::AwaitingApp { reply } = self.phase else {
            return;
        };
        let mut payload = [0u8; 125];
        let n = reply.map_or(0, |code| {
            encode_close_payload(code, code.default_reason(), &mut payload)
        });
        self.out
            .push_unbounded(Frame::new(Opcode::Close, &payload[..n]).parts());
        self.enter(Phase::Flushing, now, limits);
    }

    /// Starts a server-initiated close: the close frame is queued, the app told, and
    /// the client's close frame awaited. A connection still in its handshake, or only
    /// lingering, is closed at once.
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        now: Tick,
        limits: &Limits,
        app: &mut impl AppEvents,
    ) {
        match self.phase {
            Phase::Open => {
                let mut payload = [0u8; 125];
                let n = encode_close_payload(code, reason, &mut payload);
                self.out
                    .push_unbounded(Frame::new(Opcode::Close, &payload[..n]).parts());
                self.message.release();
                app.close(code);
                self.enter(Phase::Closing, now, limits);
            }
            Phase::Deciding | Phase::Answering => {
                app.cancelled();
                self.enter(Phase::Closed, now, limits);
            }
            Phase::Handshake | Phase::ReadingBody | Phase::Lingering => {
                self.enter(Phase::Closed, now, limits)
            }
            _ => {}
        }
    }

    /// The one place phases change: checks the transition and sets the new phase's
    /// deadline.
    fn enter(&mut self, next: Phase, now: Tick, limits: &Limits) {
        use Phase::*;
        let deadline = match (self.phase, next) {
            (Handshake | Deciding, Open) => {
                self.last_input = now;
                self.last_data = now;
                None
            }
            (Handshake | ReadingBody, Deciding | Answering) => {
                Some(now + limits.app_answer_timeout)
            }
            (Handshake, ReadingBody) => self.deadline,
            (Answering, Handshake) => Some(now + limits.handshake_timeout),
            (Handshake | Deciding | ReadingBody | Answering, Flushing) => {
                Some(now + limits.http_wait)
            }
            (Open, AwaitingApp { .. } | Closing) | (AwaitingApp { .. } | Closing, Flushing) => {
                Some(now + limits.ws_wait)
            }
            (Flushing, Lingering) => self.deadline,
            (_, Closed) => None,
            (from, to) => {
                debug_assert!(false, "no transition from {from:?} to {to:?}");
                return;
            }
        };
        if !matches!(next, Open | Deciding | ReadingBody | Answering) {
            // Only an open connection assembles messages, and only a request for an
            // app keeps its bytes.
            self.message.release();
        }
        if next == Closed {
            // Nothing more is written either.
            self.out = OutBuf::default();
        }
        self.phase = next;
        self.deadline = deadline;
    }

    fn handshake(
        &mut self,
        config: &SessionConfig,
        now: Tick,
        buf: &mut [u8],
        app: &mut impl AppEvents,
    ) -> usize {
        let limits = &config.limits;
        let limit = limits.max_header;
        let parsed = match parse_request(buf) {
            Ok(None) if buf.len() > limit => Err(HandshakeError::HeadersTooLarge),
            Ok(None) => return 0,
            Ok(Some((_, len))) if len > limit => Err(HandshakeError::HeadersTooLarge),
            Ok(Some((req, len))) => Ok((req, len)),
            Err(e) => Err(e),
        };
        let accepted = parsed.and_then(|(req, len)| {
            let route = config
                .routes
                .find(self.port, req.path)
                .ok_or(HandshakeError::NotFound)?;
            if !route.allows_origin(req.origin) {
                return Err(HandshakeError::OriginNotAllowed);
            }
            if config.draining {
                return Err(HandshakeError::Unavailable);
            }
            let protocol = req.select_protocol(&route.subprotocols);
            let index = protocol.and_then(|p| route.subprotocols.iter().position(|s| s == p));
            if !route.decides_upgrades {
                let mut response = Vec::new();
                write_accept_response(req.key, protocol, &mut response);
                self.out.push_unbounded([&response, &[]]);
            }
            Ok((route, index, len))
        });
        match accepted {
            Ok((route, protocol, len)) if route.decides_upgrades => {
                // The head is kept for the 101 (and the open record) once accepted;
                // anything after it waits in the caller's buffer.
                self.message.vec().extend_from_slice(&buf[..len]);
                self.enter(Phase::Deciding, now, limits);
                app.request(route, RequestKind::Upgrade { protocol }, &buf[..len], &[]);
                len
            }
            Ok((route, protocol, len)) => {
                self.rx = Receiver::new(limits.max_message);
                self.release_when_drained = true;
                self.enter(Phase::Open, now, limits);
                app.open(route, protocol, &buf[..len], false);
                len + self.frames(limits, now, &mut buf[len..], app)
            }
            Err(e) if e.is_plain_http() => self.plain_request(config, now, buf, e, app),
            Err(e) => {
                app.refused(&e);
                self.refuse(&e, now, limits);
                buf.len()
            }
        }
    }

    /// A request that is not an upgrade: read for the app if the route's app serves
    /// plain HTTP, else refused with `not_upgrade` (why it is no upgrade).
    fn plain_request(
        &mut self,
        config: &SessionConfig,
        now: Tick,
        buf: &mut [u8],
        not_upgrade: HandshakeError,
        app: &mut impl AppEvents,
    ) -> usize {
        let limits = &config.limits;
        let parsed = parse_http_request(buf, limits.max_http_body).and_then(|req| {
            let req = req.ok_or(HandshakeError::Malformed("incomplete request"))?;
            if req.head_len > limits.max_header {
                return Err(HandshakeError::HeadersTooLarge);
            }
            let route = config.routes.find(self.port, req.path);
            match route {
                Some(route) if route.serves_http => Ok(req),
                Some(_) => Err(not_upgrade),
                None => Err(HandshakeError::NotFound),
            }
        });
        match parsed {
            Ok(req) => {
                let (total, expects_continue) = (req.total_len(), req.expects_continue);
                self.enter(Phase::ReadingBody, now, limits);
                if expects_continue && buf.len() < total {
                    self.out.push_unbounded([CONTINUE, &[]]);
                }
                self.read_body(config, now, buf, total, app)
            }
            Err(e) => {
                app.refused(&e);
                self.refuse(&e, now, limits);
                buf.len()
            }
        }
    }

    /// Collects a plain request's head and body (`total` bytes); once complete, hands
    /// it to the app.
    fn read_body(
        &mut self,
        config: &SessionConfig,
        now: Tick,
        buf: &[u8],
        total: usize,
        app: &mut impl AppEvents,
    ) -> usize {
        let have = self.message.len();
        let take = (total - have).min(buf.len());
        self.message.vec().extend_from_slice(&buf[..take]);
        if self.message.len() < total {
            return take;
        }
        let request = self.message.as_slice();
        let Ok(Some(req)) = parse_http_request(request, usize::MAX) else {
            unreachable!("the head parsed before");
        };
        let route = config
            .routes
            .find(self.port, req.path)
            .expect("the route matched before");
        let (head, body) = request.split_at(req.head_len);
        app.request(route, RequestKind::Http, head, body);
        self.enter(Phase::Answering, now, &config.limits);
        take
    }

    /// Answers with an HTTP error and closes (after writing it).
    fn refuse(&mut self, error: &HandshakeError, now: Tick, limits: &Limits) {
        let mut response = Vec::new();
        error.write_response(&mut response);
        self.out.push_unbounded([&response, &[]]);
        self.enter(Phase::Flushing, now, limits);
    }

    /// The app accepts the upgrade request it was asked about: the 101 is queued and
    /// the connection opens. False (and nothing happens) if no upgrade waits for a
    /// decision any more.
    pub fn accept_upgrade(
        &mut self,
        config: &SessionConfig,
        now: Tick,
        app: &mut impl AppEvents,
    ) -> bool {
        if self.phase != Phase::Deciding {
            return false;
        }
        let head = self.message.take();
        let Ok(Some((req, _))) = parse_request(&head) else {
            unreachable!("the upgrade parsed before");
        };
        let route = config
            .routes
            .find(self.port, req.path)
            .expect("the route matched before");
        let protocol = req.select_protocol(&route.subprotocols);
        let index = protocol.and_then(|p| route.subprotocols.iter().position(|s| s == p));
        let mut response = Vec::new();
        write_accept_response(req.key, protocol, &mut response);
        self.out.push_unbounded([&response, &[]]);
        self.rx = Receiver::new(config.limits.max_message);
        self.release_when_drained = true;
        self.enter(Phase::Open, now, &config.limits);
        app.open(route, index, &head, true);
        true
    }

    /// The app answers the request it was asked about: a refused upgrade (the
    /// connection then closes) or a plain request's response (the connection then
    /// reads the next request, unless it asked to close). False (and nothing happens)
    /// if no request waits for an answer any more.
    pub fn respond(&mut self, response: &HttpResponse<'_>, now: Tick, limits: &Limits) -> bool {
        // What the request asked is read again from its head (kept until now) rather
        // than kept in the phase, which the message path matches on.
        let request = parse_http_request(self.message.as_slice(), usize::MAX);
        let (keep_alive, head_only) = match (self.phase, request) {
            (Phase::Deciding, _) => (false, false),
            (Phase::Answering, Ok(Some(req))) => (req.keep_alive, req.head_only),
            _ => return false,
        };
        let mut bytes = Vec::new();
        response.write(!keep_alive, head_only, &mut bytes);
        self.out.push_unbounded([&bytes, &[]]);
        self.release_when_drained = true;
        if keep_alive {
            self.enter(Phase::Handshake, now, limits);
        } else {
            self.enter(Phase::Flushing, now, limits);
        }
        true
    }

    /// Decodes frames; returns how many bytes it used.
    fn frames(
        &mut self,
        limits: &Limits,
        now: Tick,
        buf: &mut [u8],
        app: &mut impl AppEvents,
    ) -> usize {
        let mut off = 0;
        loop {
            let step = match self.rx.handle(&mut buf[off..]) {
                Ok(step) => step,
                Err(e) => {
                    app.protocol_error(&e);
                    self.fail(e.close_code(), now, limits, app);
                    return buf.len();
                }
            };
            off += step.consumed;
            let Some(event) = step.event else {
                if step.consumed == 0 {
                    return off;
                }
                continue;
            };
            match event {
                Event::Data {
                    kind,
                    chunk,
                    first,
                    last,
                } => {
                    if self.phase != Phase::Open {
                        continue; // after our close frame, data is dropped
                    }
                    let delivery = if first && last {
                        self.last_data = now;
                        app.message(kind, Message::Borrowed(chunk))
                    } else {
                        self.message.vec().extend_from_slice(chunk);
                        if !last {
                            continue;
                        }
                        self.last_data = now;
                        let delivery = app.message(kind, Message::Assembled(self.message.vec()));
                        self.message.clear(64 * 1024);
                        delivery
                    };
                    if delivery == Delivery::Paused {
                        return off;
                    }
                }
                Event::Ping(payload) => {
                    if self.phase != Phase::Open {
                        continue;
                    }
                    app.alive();
                    // A client that pings without reading the pongs gets the same cap
                    // as app messages.
                    let pong = Frame::new(Opcode::Pong, payload);
                    let idle_output = self.out.is_empty();
                    if self.out.push(pong.parts(), limits.out_cap).is_err() {
                        self.close(CloseCode::POLICY_VIOLATION, OVERFLOW, now, limits, app);
                        return buf.len();
                    }
                    self.release_when_drained |= idle_output;
                }
                Event::Pong(_) if self.phase == Phase::Open => app.alive(),
                Event::Pong(_) => {}
                Event::Close(close) => {
                    if self.phase == Phase::Open {
                        // Echo the client's code (RFC 6455 §5.5.1) once the app has sent
                        // its replies to what came before.
                        let reply = close.map(|(code, _)| code);
                        app.close(reply.unwrap_or(CloseCode::NO_STATUS));
                        self.enter(Phase::AwaitingApp { reply }, now, limits);
                    } else {
                        // The reply to our own close frame: the handshake is complete.
                        self.enter(Phase::Flushing, now, limits);
                    }
                    return buf.len();
                }
            }
        }
    }

    /// Fails the connection for a protocol error: the app is told at once, and the
    /// close frame follows whatever it still sends for earlier messages.
    fn fail(&mut self, code: CloseCode, now: Tick, limits: &Limits, app: &mut impl AppEvents) {
        match self.phase {
            Phase::Open => {
                app.close(code);
                self.enter(Phase::AwaitingApp { reply: Some(code) }, now, limits);
            }
            // Garbage after our close frame: stop waiting for a proper reply.
            Phase::Closing => self.enter(Phase::Flushing, now, limits),
            _ => {}
        }
    }
}

/// The close reason sent when the outbound cap is exceeded.
const OVERFLOW: &str = "outbound buffer full";

/// One unmasked frame: its encoded header and its payload, encoded once and queued to
/// any number of sessions.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    header: [u8; MAX_SERVER_HEADER_LEN],
    header_len: u8,
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A final frame of `opcode` carrying `payload`.
    #[inline]
    pub fn new(opcode: Opcode, payload: &'a [u8]) -> Frame<'a> {
        let mut header = [0; MAX_SERVER_HEADER_LEN];
        let n = encode_header(true, opcode, payload.len() as u64, &mut header);
        Frame {
            header,
            header_len: n as u8,
            payload,
        }
    }

    /// A data frame carrying a whole message.
    #[inline]
    pub fn message(kind: MessageKind, payload: &'a [u8]) -> Frame<'a> {
        Frame::new(kind.opcode(), payload)
    }

    /// The frame's bytes, as header and payload.
    #[inline]
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.header[..usize::from(self.header_len)], self.payload]
    }

    /// The frame's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.header_len) + self.payload.len()
    }

    /// Whether the frame is empty (never: a header is at least 2 bytes).
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }
}
