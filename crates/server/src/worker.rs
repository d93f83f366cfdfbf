//! A worker thread: one `mio` poll loop owning its listeners and connections, feeding
//! its apps' inbound rings and draining their outbound rings.

use crate::app::push_inbound;
use crate::conn::{trim, Conn, Phase};
use crate::records::{client_id, inbound, indirect, outbound};
use crate::{Limits, Route, WorkerLink};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use ringsocket_proto::close::encode_close_payload;
use ringsocket_proto::frame::{encode_header, MAX_SERVER_HEADER_LEN};
use ringsocket_proto::handshake::{parse_request, write_accept_response, HandshakeError};
use ringsocket_proto::{CloseCode, Event, MessageKind, Opcode, Receiver};
use ringsocket_ring::{Consumer, Producer, SleepState};
use rustc_hash::FxHashMap;
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The waker's token; listeners count down from just below it.
const WAKER: Token = Token(usize::MAX);
/// The shared read buffer's size.
const READ_BUF: usize = 256 * 1024;

/// The bytes of a message on their way to an app: borrowed from the read buffer, or
/// owned (the buffer it was assembled in, or a copy kept in the backlog).
enum Data<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Data<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Borrowed(b) => b,
            Data::Owned(v) => v,
        }
    }

    fn into_owned(self) -> Vec<u8> {
        match self {
            Data::Borrowed(b) => b.to_vec(),
            Data::Owned(v) => v,
        }
    }
}

/// An inbound record before it is in the ring.
enum Record<'a> {
    Open {
        client: u64,
        endpoint: u16,
        protocol: u32,
    },
    Read {
        client: u64,
        kind: u8,
        data: Data<'a>,
    },
    Close {
        client: u64,
        code: u16,
    },
}

/// A record that could not go into a full inbound ring yet, kept in order.
type Backlogged = Record<'static>;

impl Record<'_> {
    fn into_owned(self) -> Backlogged {
        match self {
            Record::Open {
                client,
                endpoint,
                protocol,
            } => Record::Open {
                client,
                endpoint,
                protocol,
            },
            Record::Read { client, kind, data } => Record::Read {
                client,
                kind,
                data: Data::Owned(data.into_owned()),
            },
            Record::Close { client, code } => Record::Close { client, code },
        }
    }
}

/// A worker's end of one app's ring pair.
pub(crate) struct AppPipe {
    pub(crate) inbound: Producer,
    pub(crate) outbound: Consumer,
    pub(crate) sleep: Arc<SleepState>,
    /// Messages larger than this go to the app as a heap buffer, not inline.
    indirect_above: usize,
    /// Records waiting for room, oldest first. While non-empty, everything for this app
    /// goes here, and its connections are not read.
    backlog: VecDeque<Backlogged>,
    /// Connections that stopped reading because of the backlog.
    paused: Vec<usize>,
    /// The app got a message since it was last woken: wake it now.
    notify: bool,
    /// When the app got the first open or close record since it was last woken. Those
    /// only wake it `LIFECYCLE_WAKE_DELAY` later (unless a message comes first), so a
    /// burst of connects and disconnects costs one wakeup, not one each.
    lifecycle_since: Option<Instant>,
}

/// How long open and close records may wait for their app to be woken.
const LIFECYCLE_WAKE_DELAY: Duration = Duration::from_millis(1);

impl AppPipe {
    pub(crate) fn new(inbound: Producer, outbound: Consumer, sleep: Arc<SleepState>) -> AppPipe {
        let indirect_above = indirect::threshold(inbound.max_record_len());
        AppPipe {
            inbound,
            outbound,
            sleep,
            indirect_above,
            backlog: VecDeque::new(),
            paused: Vec::new(),
            notify: false,
            lifecycle_since: None,
        }
    }

    /// Pushes a record, or backlogs it if the ring is full (or a backlog exists).
    /// Returns `false` if it was backlogged.
    fn push(&mut self, mut record: Record<'_>) -> bool {
        if self.backlog.is_empty() {
            if self.try_push(&mut record) {
                return true;
            }
            // Ask the app to wake us when it frees room, then look once more.
            self.inbound.set_waiting();
            if self.try_push(&mut record) {
                return true;
            }
        }
        self.backlog.push_back(record.into_owned());
        false
    }

    /// Publishes `record` if the ring has room. A large message is published as its
    /// buffer, which then belongs to the app (a borrowed one is copied first).
    fn try_push(&mut self, record: &mut Record<'_>) -> bool {
        let (header, payload): (inbound::Header, &[u8]) = match record {
            Record::Open {
                client,
                endpoint,
                protocol,
            } => {
                let h = inbound::Header {
                    kind: inbound::OPEN,
                    msg_kind: 0,
                    a: *endpoint,
                    b: *protocol,
                    client: *client,
                };
                (h, &[])
            }
            Record::Close { client, code } => (
                inbound::Header {
                    kind: inbound::CLOSE,
                    msg_kind: 0,
                    a: *code,
                    b: 0,
                    client: *client,
                },
                &[],
            ),
            Record::Read { client, kind, data } => {
                let header = inbound::Header {
                    kind: inbound::READ,
                    msg_kind: *kind,
                    a: 0,
                    b: 0,
                    client: *client,
                };
                if data.bytes().len() > self.indirect_above {
                    if let Data::Borrowed(b) = data {
                        *data = Data::Owned(b.to_vec());
                    }
                    let Data::Owned(buffer) = data else {
                        unreachable!("made owned above")
                    };
                    let parts = indirect::vec_parts(buffer);
                    let header = inbound::Header {
                        b: indirect::READ_VEC,
                        ..header
                    };
                    if push_inbound(&mut self.inbound, header, &parts).is_err() {
                        return false;
                    }
                    // The app owns the buffer now (it takes it back from `parts`).
                    std::mem::forget(std::mem::take(buffer));
                    self.notify = true;
                    return true;
                }
                (header, data.bytes())
            }
        };
        let pushed = push_inbound(&mut self.inbound, header, payload).is_ok();
        if pushed {
            if header.kind == inbound::READ {
                self.notify = true;
            } else {
                self.lifecycle_since.get_or_insert_with(Instant::now);
            }
        }
        pushed
    }

    /// Wakes the app if it has a message, or open/close records older than
    /// `LIFECYCLE_WAKE_DELAY` (any record, with `force`). Returns when to check again.
    fn notify(&mut self, now: Instant, force: bool) -> Option<Instant> {
        let due = self.lifecycle_since.map(|t| t + LIFECYCLE_WAKE_DELAY);
        let message = std::mem::take(&mut self.notify);
        if message || due.is_some_and(|due| force || due <= now) {
            self.lifecycle_since = None;
            self.sleep.unpark();
            return None;
        }
        due
    }

    /// Moves backlogged records into the ring while there is room. Returns whether the
    /// backlog is now empty.
    fn drain_backlog(&mut self) -> bool {
        while let Some(mut record) = self.backlog.pop_front() {
            if !self.try_push(&mut record) {
                self.inbound.set_waiting();
                if !self.try_push(&mut record) {
                    self.backlog.push_front(record);
                    return false;
                }
            }
        }
        true
    }
}

/// Everything a worker thread needs, built before it starts.
pub(crate) struct WorkerSetup {
    pub(crate) index: usize,
    pub(crate) poll: Poll,
    pub(crate) link: Arc<WorkerLink>,
    pub(crate) listeners: Vec<crate::listener::Listener>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) apps: Vec<AppPipe>,
    pub(crate) routes: Arc<[Route]>,
    pub(crate) limits: Limits,
    pub(crate) stop: Arc<AtomicBool>,
}

/// What to do to a connection once the outbound ring being drained is released.
enum Deferred {
    /// Its outbound buffer overflowed: fail it with 1008.
    Overflow(usize),
    /// The app closed it: tell the app it is gone.
    AppClosed(usize, u16),
    /// The app is done with it: send the pending close frame.
    AppDone(usize),
}

struct Worker {
    index: usize,
    poll: Poll,
    link: Arc<WorkerLink>,
    /// Listening sockets: (socket, configured port, speaks TLS).
    listeners: Vec<(TcpListener, u16, bool)>,
    tls: Option<Arc<rustls::ServerConfig>>,
    conns: Slab<Conn>,
    ids: FxHashMap<u64, usize>,
    /// Open connections per app (slab keys).
    app_conns: Vec<Vec<usize>>,
    apps: Vec<AppPipe>,
    routes: Arc<[Route]>,
    limits: Limits,
    rbuf: Box<[u8]>,
    dirty: Vec<usize>,
    deferred: Vec<Deferred>,
    timeouts: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_seq: u64,
    next_serial: u64,
    stop: Arc<AtomicBool>,
    stopping: Option<Instant>,
    /// When the earliest delayed app wakeup is due.
    lifecycle_due: Option<Instant>,
}

/// Runs a worker until the server stops.
pub(crate) fn run(setup: WorkerSetup) {
    let mut listeners = Vec::new();
    for (i, l) in setup.listeners.into_iter().enumerate() {
        let (mut listener, port) = (TcpListener::from_std(l.socket), l.port);
        if let Err(e) = setup.poll.registry().register(
            &mut listener,
            Token(usize::MAX - 1 - i),
            Interest::READABLE,
        ) {
            log::error!(
                "worker {}: cannot register listener on port {port}: {e}",
                setup.index
            );
            return;
        }
        listeners.push((listener, port, l.secure));
    }
    let app_count = setup.apps.len();
    let mut worker = Worker {
        index: setup.index,
        poll: setup.poll,
        link: setup.link,
        listeners,
        tls: setup.tls,
        conns: Slab::new(),
        ids: FxHashMap::default(),
        app_conns: vec![Vec::new(); app_count],
        apps: setup.apps,
        routes: setup.routes,
        limits: setup.limits,
        rbuf: vec![0; READ_BUF].into_boxed_slice(),
        dirty: Vec::new(),
        deferred: Vec::new(),
        timeouts: BinaryHeap::new(),
        next_seq: 1,
        next_serial: 1,
        stop: setup.stop,
        stopping: None,
        lifecycle_due: None,
    };
    worker.run();
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(self.limits.events);
        loop {
            self.drain_outbound();
            self.drain_backlogs();
            self.flush_dirty();
            let now = Instant::now();
            self.expire(now);
            if self.stop.load(Ordering::Acquire) && self.begin_or_continue_stop(now) {
                return;
            }
            self.notify_apps(now, false);
            let timeout = self.next_timeout(now);
            self.link.sleep.announce();
            let timeout = if self.apps.iter_mut().any(|a| !a.outbound.is_empty()) {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.link.sleep.withdraw();
            if let Err(e) = polled {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("worker {}: poll failed: {e}", self.index);
                    return;
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= usize::MAX - 1 - self.listeners.len() => {
                        self.accept(usize::MAX - 1 - t)
                    }
                    Token(key) => {
                        if event.is_writable() {
                            self.flush(key);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key);
                        }
                    }
                }
            }
        }
    }

    /// Starts the graceful stop (close 1001 to everyone) or checks whether it is done.
    fn begin_or_continue_stop(&mut self, now: Instant) -> bool {
        let deadline = match self.stopping {
            Some(deadline) => deadline,
            None => {
                for (listener, _, _) in &mut self.listeners {
                    let _ = self.poll.registry().deregister(listener);
                }
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    match self.conns[key].phase {
                        Phase::Open => {
                            self.close_conn(key, CloseCode::GOING_AWAY, "server shutting down")
                        }
                        Phase::Handshake | Phase::Lingering => self.remove(key),
                        _ => {}
                    }
                }
                self.flush_dirty();
                self.notify_apps(now, true);
                *self.stopping.insert(now + self.limits.stop_wait)
            }
        };
        log::debug!(
            "worker {}: stopping, {} connections left",
            self.index,
            self.conns.len()
        );
        self.conns.is_empty() || now >= deadline
    }

    fn next_timeout(&mut self, now: Instant) -> Option<Duration> {
        let mut t = self
            .timeouts
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now));
        if self.stopping.is_some() {
            t = Some(t.map_or(Duration::from_millis(50), |t| {
                t.min(Duration::from_millis(50))
            }));
        }
        if let Some(due) = self.lifecycle_due {
            let wait = due.saturating_duration_since(now);
            t = Some(t.map_or(wait, |t| t.min(wait)));
        }
        t
    }

    fn set_deadline(&mut self, key: usize, after: Duration) {
        let at = Instant::now() + after;
        let conn = &mut self.conns[key];
        conn.deadline = Some(at);
        self.timeouts.push(Reverse((at, key, conn.serial)));
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, key, serial))) = self.timeouts.peek() {
            if at > now {
                break;
            }
            self.timeouts.pop();
            let live = self
                .conns
                .get(key)
                .is_some_and(|c| c.serial == serial && c.deadline == Some(at));
            if live {
                log::debug!(
                    "worker {}: connection {key} timed out in phase {:?}",
                    self.index,
                    self.conns[key].phase
                );
                self.remove(key);
            }
        }
    }

    fn accept(&mut self, listener_index: usize) {
        loop {
            let Some((listener, port, secure)) = self.listeners.get(listener_index) else {
                return;
            };
            let (port, secure) = (*port, *secure);
            match listener.accept() {
                Ok((mut stream, addr)) => {
                    if self.conns.len() >= self.limits.max_conns {
                        log::debug!(
                            "worker {}: refusing {addr}: at the connection limit",
                            self.index
                        );
                        let mut out = Vec::new();
                        HandshakeError::Unavailable.write_response(&mut out);
                        let _ = stream.write(&out);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let serial = self.next_serial;
                    self.next_serial += 1;
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    let registered = self.poll.registry().register(
                        &mut stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    if let Err(e) = registered {
                        log::warn!(
                            "worker {}: cannot register connection from {addr}: {e}",
                            self.index
                        );
                        continue;
                    }
                    let tls = match (secure, &self.tls) {
                        (false, _) => None,
                        (true, Some(config)) => match rustls::ServerConnection::new(config.clone())
                        {
                            Ok(tls) => Some(Box::new(tls)),
                            Err(e) => {
                                log::warn!(
                                    "worker {}: cannot start TLS for {addr}: {e}",
                                    self.index
                                );
                                continue;
                            }
                        },
                        (true, None) => continue,
                    };
                    entry.insert(Conn::new(stream, tls, serial, port, Instant::now()));
                    self.set_deadline(key, self.limits.handshake_timeout);
                    log::trace!("worker {}: accepted {addr} as {key}", self.index);
                }
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: leave the rest in the backlog for now.
                    log::warn!("worker {}: accept failed: {e}", self.index);
                    return;
                }
            }
        }
    }

    /// Reads from a connection until the socket would block, the connection stops
    /// reading, or it is gone.
    fn read(&mut self, key: usize) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        self.read_with(key, &mut rbuf);
        self.rbuf = rbuf;
    }

    fn read_with(&mut self, key: usize, rbuf: &mut [u8]) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.phase == Phase::Flushing {
                return;
            }
            if conn.phase == Phase::Open && !self.apps[conn.app].backlog.is_empty() {
                if !conn.read_blocked {
                    conn.read_blocked = true;
                    self.apps[conn.app].paused.push(key);
                }
                return;
            }
            let held = conn.pending.len();
            rbuf[..held].copy_from_slice(&conn.pending);
            conn.pending.clear();
            let (got, eof, blocked) = if held == rbuf.len() {
                (0, false, false)
            } else {
                match conn.read_plain(&mut rbuf[held..]) {
                    Ok(0) => (0, true, false),
                    Ok(n) => (n, false, false),
                    Err(e) if would_block(&e) => (0, false, true),
                    Err(e) if e.kind() == ErrorKind::Interrupted => (0, false, false),
                    Err(e) => {
                        log::debug!("worker {}: read error on {key}: {e}", self.index);
                        self.remove(key);
                        return;
                    }
                }
            };
            let total = held + got;
            // A plain socket that returned less than we asked for is drained: on Linux
            // every later arrival raises a new edge, so skip the read that would only
            // say EAGAIN. (TLS buffers records itself, so it reads until EAGAIN.)
            let drained = conn.tls.is_none() && got > 0 && total < rbuf.len();
            let consumed = if conn.phase == Phase::Lingering {
                total
            } else {
                self.process(key, &mut rbuf[..total])
            };
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.tls.is_some() && c.wants_write())
            {
                self.mark_dirty(key);
            }
            if let Some(conn) = self.conns.get_mut(key) {
                conn.pending.extend_from_slice(&rbuf[consumed..total]);
                if conn.pending.capacity() > 64 * 1024 && conn.pending.len() < 1024 {
                    conn.pending.shrink_to(1024);
                }
                if conn.read_blocked {
                    return;
                }
            }
            if eof {
                self.remove(key);
                return;
            }
            if drained {
                return;
            }
            if blocked || got == 0 && held == total && consumed == 0 {
                return;
            }
        }
    }

    /// Decodes `buf` for connection `key`; returns how many bytes it used.
    fn process(&mut self, key: usize, buf: &mut [u8]) -> usize {
        match self.conns[key].phase {
            Phase::Handshake => self.handshake(key, buf),
            Phase::Open | Phase::Closing => self.frames(key, buf),
            Phase::AwaitingApp | Phase::Flushing | Phase::Lingering => buf.len(),
        }
    }

    fn handshake(&mut self, key: usize, buf: &mut [u8]) -> usize {
        let limit = self.limits.max_header;
        let (parsed, header_len) = match parse_request(buf) {
            Ok(None) if buf.len() > limit => (Err(HandshakeError::HeadersTooLarge), 0),
            Ok(None) => return 0,
            Ok(Some((_, len))) if len > limit => (Err(HandshakeError::HeadersTooLarge), 0),
            Ok(Some((req, len))) => (Ok(req), len),
            Err(e) => (Err(e), 0),
        };
        let conn = &mut self.conns[key];
        let accepted = parsed.and_then(|req| {
            let route = self
                .routes
                .iter()
                .enumerate()
                .find(|(_, r)| r.port == conn.port && r.path == req.path)
                .ok_or(HandshakeError::NotFound)?;
            let (route_index, route) = route;
            if let Some(origin) = req.origin {
                if !route
                    .allowed_origins
                    .iter()
                    .any(|o| o == "*" || o == origin)
                {
                    return Err(HandshakeError::OriginNotAllowed);
                }
            }
            let protocol = req.select_protocol(&route.subprotocols);
            let protocol_index =
                protocol.and_then(|p| route.subprotocols.iter().position(|s| s == p));
            write_accept_response(req.key, protocol, &mut conn.out);
            Ok((route_index, protocol_index))
        });
        match accepted {
            Ok((route_index, protocol_index)) => {
                let (app, endpoint) = (
                    self.routes[route_index].app,
                    self.routes[route_index].endpoint,
                );
                let id = client_id(self.index, self.next_seq);
                self.next_seq += 1;
                conn.id = id;
                conn.app = app;
                conn.phase = Phase::Open;
                conn.deadline = None;
                conn.rx = Receiver::new(self.limits.max_msg);
                trim(&mut conn.pending);
                conn.app_slot = self.app_conns[app].len();
                self.app_conns[app].push(key);
                self.ids.insert(id, key);
                self.mark_dirty(key);
                self.apps[app].push(Record::Open {
                    client: id,
                    endpoint: endpoint as u16,
                    protocol: protocol_index.map_or(0, |i| i as u32 + 1),
                });
                // A free slot for the next handshake's bytes; an idle connection keeps none.
                conn_release_handshake_buffers(&mut self.conns[key]);
                header_len + self.frames(key, &mut buf[header_len..])
            }
            Err(e) => {
                log::debug!("worker {}: refusing upgrade on {key}: {e}", self.index);
                e.write_response(&mut conn.out);
                conn.phase = Phase::Flushing;
                self.set_deadline(key, self.limits.http_wait);
                self.mark_dirty(key);
                buf.len()
            }
        }
    }

    /// Decodes WebSocket frames from `buf`; returns how many bytes it used.
    fn frames(&mut self, key: usize, buf: &mut [u8]) -> usize {
        let mut off = 0;
        loop {
            let conn = &mut self.conns[key];
            let step = match conn.rx.handle(&mut buf[off..]) {
                Ok(step) => step,
                Err(e) => {
                    log::debug!(
                        "worker {}: client {} broke the protocol: {e}",
                        self.index,
                        conn.id
                    );
                    self.fail(key, e.close_code());
                    return buf.len();
                }
            };
            let Some(event) = step.event else {
                if step.consumed == 0 {
                    return off;
                }
                off += step.consumed;
                continue;
            };
            off += step.consumed;
            match event {
                Event::Data {
                    kind,
                    chunk,
                    first,
                    last,
                } => {
                    if conn.phase != Phase::Open {
                        continue; // after our close frame, data is discarded
                    }
                    let pipe = &mut self.apps[conn.app];
                    let (client, kind) = (conn.id, kind as u8);
                    let delivered = if first && last {
                        pipe.push(Record::Read {
                            client,
                            kind,
                            data: Data::Borrowed(chunk),
                        })
                    } else {
                        conn.message.extend_from_slice(chunk);
                        if !last {
                            continue;
                        }
                        // A large message hands its buffer over instead of being copied.
                        let data = if conn.message.len() > pipe.indirect_above {
                            Data::Owned(std::mem::take(&mut conn.message))
                        } else {
                            Data::Borrowed(&conn.message)
                        };
                        let delivered = pipe.push(Record::Read { client, kind, data });
                        trim(&mut conn.message);
                        delivered
                    };
                    if !delivered {
                        // Backlogged: stop reading this connection until the app catches up.
                        conn.read_blocked = true;
                        pipe.paused.push(key);
                        return off;
                    }
                }
                Event::Ping(payload) => {
                    if conn.phase != Phase::Open {
                        continue;
                    }
                    // A client that pings without reading the pongs must not grow our
                    // buffer without bound: it gets the same cap as app messages.
                    if conn.unsent() + payload.len() + 2 > self.limits.out_cap {
                        self.close_conn(key, CloseCode::POLICY_VIOLATION, "outbound buffer full");
                        return buf.len();
                    }
                    queue_frame(conn, Opcode::Pong, payload);
                    self.mark_dirty(key);
                }
                Event::Pong(_) => {}
                Event::Close(close) => {
                    if conn.phase == Phase::Open {
                        // Echo the client's code (RFC 6455 §5.5.1) once the app has
                        // sent its replies to what came before.
                        conn.close_code = close.map_or(0, |(c, _)| c.0);
                        self.leave_open(key, close.map_or(1005, |(c, _)| c.0));
                        self.await_app(key);
                    } else {
                        // The reply to our own close frame: the handshake is complete.
                        self.conns[key].phase = Phase::Flushing;
                        self.set_deadline(key, self.limits.ws_wait);
                        self.mark_dirty(key);
                    }
                    return buf.len();
                }
            }
        }
    }

    /// Waits for the app to confirm it is done with a client it was told is gone.
    fn await_app(&mut self, key: usize) {
        self.conns[key].phase = Phase::AwaitingApp;
        self.set_deadline(key, self.limits.ws_wait);
    }

    /// The app is done with the client: send the pending close frame and finish.
    fn app_done(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.phase != Phase::AwaitingApp {
            return;
        }
        let mut payload = [0u8; 125];
        let n = match conn.close_code {
            0 => 0,
            code => encode_close_payload(CloseCode(code), close_reason(code), &mut payload),
        };
        queue_frame(conn, Opcode::Close, &payload[..n]);
        conn.phase = Phase::Flushing;
        self.set_deadline(key, self.limits.ws_wait);
        self.mark_dirty(key);
    }

    /// Fails the connection with `code`: the app is told at once, and the close frame
    /// follows whatever the app still sends for earlier messages.
    fn fail(&mut self, key: usize, code: CloseCode) {
        let conn = &mut self.conns[key];
        if conn.phase != Phase::Open {
            return;
        }
        conn.close_code = code.0;
        self.leave_open(key, code.0);
        self.await_app(key);
    }

    /// Starts a server-initiated close handshake.
    fn close_conn(&mut self, key: usize, code: CloseCode, reason: &str) {
        let conn = &mut self.conns[key];
        if conn.phase != Phase::Open {
            return;
        }
        let mut payload = [0u8; 125];
        let n = encode_close_payload(code, reason, &mut payload);
        queue_frame(conn, Opcode::Close, &payload[..n]);
        self.leave_open(key, code.0);
        self.set_deadline(key, self.limits.ws_wait);
        self.mark_dirty(key);
    }

    /// Unregisters an open connection from its app and tells the app it is gone.
    fn leave_open(&mut self, key: usize, code: u16) {
        let conn = &mut self.conns[key];
        if conn.phase != Phase::Open {
            return;
        }
        conn.phase = Phase::Closing;
        self.unregister(key, code);
    }

    /// Takes a connection that just left `Open` off its app's list and tells the app.
    fn unregister(&mut self, key: usize, code: u16) {
        let conn = &mut self.conns[key];
        let (app, slot, id) = (conn.app, conn.app_slot, conn.id);
        trim(&mut conn.message);
        let list = &mut self.app_conns[app];
        list.swap_remove(slot);
        if let Some(&moved) = list.get(slot) {
            self.conns[moved].app_slot = slot;
        }
        self.apps[app].push(Record::Close { client: id, code });
    }

    /// Drops a connection now (closing its socket).
    fn remove(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        self.leave_open(key, 1006);
        let mut conn = self.conns.remove(key);
        if conn.id != 0 {
            self.ids.remove(&conn.id);
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
    }

    fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(key) = self.dirty.pop() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.dirty = false;
                self.flush(key);
            }
        }
    }

    /// Writes queued bytes until done or the socket would block.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.write_out() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                log::debug!("worker {}: write error on {key}: {e}", self.index);
                self.remove(key);
                return;
            }
        }
        conn.out_pos = 0;
        trim(&mut conn.out);
        if std::mem::take(&mut conn.release_out) {
            conn.out = Vec::new();
        }
        if conn.phase == Phase::Flushing {
            conn.shutdown_write();
            if self.stopping.is_some() {
                // Stopping: the close handshake is done; don't wait for the client's FIN.
                self.remove(key);
                return;
            }
            conn.phase = Phase::Lingering;
            if conn.deadline.is_none() {
                self.set_deadline(key, self.limits.ws_wait);
            }
            // Whatever the client still sends is read and dropped; EOF removes it.
            self.read(key);
        }
    }

    /// Handles every record the apps have queued for this worker.
    fn drain_outbound(&mut self) {
        let Worker {
            apps,
            conns,
            ids,
            app_conns,
            dirty,
            deferred,
            limits,
            ..
        } = self;
        for (app, pipe) in apps.iter_mut().enumerate() {
            let mut handled = false;
            while pipe
                .outbound
                .pop_with(|rec| {
                    on_outbound(
                        rec,
                        app,
                        conns,
                        ids,
                        &app_conns[app],
                        dirty,
                        deferred,
                        limits.out_cap,
                    )
                })
                .is_some()
            {
                handled = true;
            }
            if handled && pipe.outbound.take_producer_waiting() {
                pipe.sleep.unpark();
            }
        }
        for d in std::mem::take(&mut self.deferred).drain(..) {
            match d {
                Deferred::Overflow(key) if self.conns.contains(key) => {
                    log::debug!(
                        "worker {}: client {} exceeded the outbound buffer cap",
                        self.index,
                        self.conns[key].id
                    );
                    self.close_conn(key, CloseCode::POLICY_VIOLATION, "outbound buffer full");
                }
                Deferred::AppClosed(key, code) if self.conns.contains(key) => {
                    self.leave_open_after_app_close(key, code);
                }
                Deferred::AppDone(key) if self.conns.contains(key) => self.app_done(key),
                _ => {}
            }
        }
    }

    fn leave_open_after_app_close(&mut self, key: usize, code: u16) {
        // The close frame is queued and the phase is Closing already (so nothing was
        // queued after it); tell the app and wait for the client's close.
        self.unregister(key, code);
        self.set_deadline(key, self.limits.ws_wait);
    }

    fn drain_backlogs(&mut self) {
        for app in 0..self.apps.len() {
            let pipe = &mut self.apps[app];
            if pipe.backlog.is_empty() || !pipe.drain_backlog() {
                continue;
            }
            for key in std::mem::take(&mut pipe.paused) {
                if let Some(conn) = self.conns.get_mut(key) {
                    if conn.read_blocked {
                        conn.read_blocked = false;
                        self.read(key);
                    }
                }
            }
        }
    }

    /// Wakes the apps that have records to handle (see [`AppPipe::notify`]), and
    /// remembers when the next delayed wakeup is due.
    fn notify_apps(&mut self, now: Instant, force: bool) {
        self.lifecycle_due = None;
        for pipe in &mut self.apps {
            if let Some(due) = pipe.notify(now, force) {
                self.lifecycle_due = Some(self.lifecycle_due.map_or(due, |d| d.min(due)));
            }
        }
    }
}

/// Frees what the HTTP upgrade used (the 101 response goes once it is sent): an idle
/// connection holds no heap buffers.
fn conn_release_handshake_buffers(conn: &mut Conn) {
    conn.pending = Vec::new();
    conn.release_out = true;
}

/// The reason sent with a close code the server chose itself.
fn close_reason(code: u16) -> &'static str {
    match code {
        1002 => "protocol error",
        1007 => "invalid UTF-8",
        1009 => "message too big",
        _ => "",
    }
}

/// Appends one unmasked frame to a connection's output.
fn queue_frame(conn: &mut Conn, opcode: Opcode, payload: &[u8]) {
    let mut header = [0; MAX_SERVER_HEADER_LEN];
    let n = encode_header(true, opcode, payload.len() as u64, &mut header);
    conn.out.extend_from_slice(&header[..n]);
    conn.out.extend_from_slice(payload);
}

/// Applies one outbound record: queues its frame for each target connection.
#[allow(clippy::too_many_arguments)] // the worker's fields, split so the ring can stay borrowed
fn on_outbound(
    rec: &[u8],
    app: usize,
    conns: &mut Slab<Conn>,
    ids: &FxHashMap<u64, usize>,
    app_conns: &[usize],
    dirty: &mut Vec<usize>,
    deferred: &mut Vec<Deferred>,
    out_cap: usize,
) {
    let rec = outbound::Record::read(rec);
    if rec.op == outbound::CLOSED {
        for id in rec.ids() {
            if let Some(&key) = ids.get(&id) {
                deferred.push(Deferred::AppDone(key));
            }
        }
        return;
    }
    if rec.op == outbound::CLOSE {
        for id in rec.ids() {
            let Some(&key) = ids.get(&id) else { continue };
            let conn = &mut conns[key];
            if conn.phase == Phase::Open && conn.app == app {
                queue_frame(conn, Opcode::Close, rec.payload);
                // Nothing may follow the close frame, not even this batch's later sends.
                conn.phase = Phase::Closing;
                let code = rec
                    .payload
                    .get(..2)
                    .map_or(1000, |c| u16::from_be_bytes([c[0], c[1]]));
                deferred.push(Deferred::AppClosed(key, code));
                if !conn.dirty {
                    conn.dirty = true;
                    dirty.push(key);
                }
            }
        }
        return;
    }
    // A large message comes as a reference to a buffer shared by every worker.
    let shared = (rec.flags & indirect::SEND_SHARED != 0)
        // SAFETY: the app encoded one Arc reference for this record, which is popped
        // (and so taken back) exactly once.
        .then(|| unsafe { indirect::take_shared(rec.payload) });
    let payload: &[u8] = shared.as_deref().unwrap_or(rec.payload);
    let opcode = if rec.msg_kind == MessageKind::Text as u8 {
        Opcode::Text
    } else {
        Opcode::Binary
    };
    let mut header = [0; MAX_SERVER_HEADER_LEN];
    let n = encode_header(true, opcode, payload.len() as u64, &mut header);
    let frame_len = n + payload.len();
    let mut send = |key: usize, except_listed: bool| {
        let conn = &mut conns[key];
        let sendable = matches!(conn.phase, Phase::Open | Phase::AwaitingApp);
        if !sendable || conn.app != app || (except_listed && rec.lists(conn.id)) {
            return;
        }
        if conn.unsent() + frame_len > out_cap {
            deferred.push(Deferred::Overflow(key));
            return;
        }
        conn.out.extend_from_slice(&header[..n]);
        conn.out.extend_from_slice(payload);
        if !conn.dirty {
            conn.dirty = true;
            dirty.push(key);
        }
    };
    if rec.target == outbound::TO_LIST {
        for id in rec.ids() {
            if let Some(&key) = ids.get(&id) {
                send(key, false);
            }
        }
    } else {
        let except_listed = !rec.ids.is_empty();
        for &key in app_conns {
            send(key, except_listed);
        }
    }
}
