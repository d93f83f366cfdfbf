//! A worker thread: one `mio` poll loop owning its listeners and connections. It moves
//! bytes between sockets and each connection's [`Session`], routes what sessions
//! return (records for apps, bytes to write, deadlines), and applies the apps' records.
//!
//! ```text
//!  poll ─► accept ─► Conn{socket, Session} ─► read ─► Session::handle_input ─► AppInbox ─► app
//!                                         ◄─ flush ◄─ Session::output ◄─ Apply ◄─ OutboundRx ◄─ app
//!  timers (one heap) ─► Session::handle_timeout
//! ```

mod conn;
mod events;
mod inbox;
mod io;
mod outbound;
mod timers;
mod tls;
mod topics;

pub(crate) use inbox::AppInbox;

use crate::control::{ClientFacts, WorkerCommand};
use crate::listener::{IpCounts, Listener};
use crate::records::OutboundRx;
use crate::stats::{clock_ns, handshake_slot, Owned, WorkerCounts};
use crate::WorkerLink;
use conn::{Conn, ListSlot};
use events::{key_of, IdSource, ToApp};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use outbound::{Apply, Budget};
use ringsocket_proto::handshake::HandshakeError;
use ringsocket_proto::CloseCode;
use ringsocket_session::{AppIndex, Drained, Epoch, Session, SessionConfig, Tick};
use slab::Slab;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timers::Timers;

/// The waker's token; listeners count down from just below it.
const WAKER: Token = Token(usize::MAX);
/// How soon to try accepting again when the process is out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Past this many connections to flush at once, they are flushed in slab order with
/// their memory prefetched (see [`Worker::flush_dirty`]).
const FLUSH_IN_ORDER: usize = 64;

/// Everything a worker thread needs, built before it starts.
pub(crate) struct WorkerSetup {
    pub(crate) index: usize,
    pub(crate) poll: Poll,
    pub(crate) link: Arc<WorkerLink>,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) inboxes: Vec<AppInbox>,
    pub(crate) outboxes: Vec<OutboundRx>,
    pub(crate) plan: Arc<crate::config::Plan>,
    pub(crate) ip_counts: Option<Arc<IpCounts>>,
    pub(crate) stop: Arc<AtomicBool>,
    /// This worker's counts outside any app (its apps' are in the inboxes).
    pub(crate) counts: Owned<WorkerCounts>,
    /// Whether to take latency samples (metrics on).
    pub(crate) sampling: bool,
    /// Requests from the control thread (looked at when the waker fires).
    pub(crate) commands: std::sync::mpsc::Receiver<WorkerCommand>,
}

/// Latency samples (app send → socket write) one loop round keeps at most.
const MAX_STAMPS: usize = 64;
/// The least time between two rounds whose messages a worker samples (at most a
/// thousand samples a second, whatever the load).
const SAMPLE_EVERY: Duration = Duration::from_millis(1);

/// A listening socket in the poll.
struct Listening {
    socket: TcpListener,
    /// The configured port (routes are per configured port).
    port: u16,
    secure: bool,
}

struct Worker {
    index: usize,
    poll: Poll,
    link: Arc<WorkerLink>,
    /// Emptied (the sockets closed) when the server stops.
    listeners: Vec<Listening>,
    tls: Option<Arc<rustls::ServerConfig>>,
    conns: Slab<Conn>,
    /// Topic subscribers among this worker's connections.
    topics: topics::Topics,
    /// Each app's open connections (slab keys).
    open: Vec<Vec<usize>>,
    inboxes: Vec<AppInbox>,
    outboxes: Vec<OutboundRx>,
    config: SessionConfig,
    max_conns: usize,
    stop_wait: Duration,
    rbuf: Box<[u8]>,
    /// Where TLS records are read and encrypted ([`tls::SCRATCH`] bytes; empty
    /// without TLS).
    tls_scratch: Box<[u8]>,
    dirty: Vec<usize>,
    /// Connections to settle once the ring being drained is released.
    unsettled: Vec<usize>,
    /// Connections to read before the next poll (readiness that no new edge reports).
    to_read: Vec<usize>,
    /// Connections an app's accept opened while its records were applied.
    opened_by_app: Vec<usize>,
    timers: Timers,
    ids: IdSource,
    budget: Budget,
    ip_counts: Option<Arc<IpCounts>>,
    /// Kept open so that, out of file descriptors, a client can still be accepted and
    /// told 503 (freeing the listener's backlog).
    reserve_fd: Option<std::fs::File>,
    accept_retry: Option<Instant>,
    stop: Arc<AtomicBool>,
    stopping: Option<Instant>,
    /// When the earliest delayed app wakeup is due.
    lifecycle_due: Option<Instant>,
    /// The time, read once per loop iteration.
    now: Instant,
    /// `now` as sessions keep time.
    tick: Tick,
    /// Where ticks count from.
    epoch: Epoch,
    counts: Owned<WorkerCounts>,
    sampling: bool,
    /// When the sends sampled this round were made (recorded once written).
    stamps: Vec<u64>,
    /// When the next round's messages may be sampled.
    next_sample: Instant,
    commands: std::sync::mpsc::Receiver<WorkerCommand>,
    /// When each connection was accepted (seconds after `epoch`), by slab key.
    accepted_s: Vec<u32>,
}

/// Runs a worker until the server stops.
pub(crate) fn run(setup: WorkerSetup) {
    let mut listeners = Vec::new();
    for (i, l) in setup.listeners.into_iter().enumerate() {
        let mut socket = TcpListener::from_std(l.socket);
        let token = Token(usize::MAX - 1 - i);
        if let Err(e) = setup
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
        {
            log::error!("worker {}: cannot register listener: {e}", setup.index);
            return;
        }
        listeners.push(Listening {
            socket,
            port: l.port,
            secure: l.secure,
        });
    }
    let plan = setup.plan;
    let scratch = if setup.tls.is_some() { tls::SCRATCH } else { 0 };
    let mut worker = Worker {
        index: setup.index,
        poll: setup.poll,
        link: setup.link,
        listeners,
        tls: setup.tls,
        conns: Slab::new(),
        topics: topics::Topics::default(),
        open: vec![Vec::new(); setup.inboxes.len()],
        inboxes: setup.inboxes,
        outboxes: setup.outboxes,
        config: plan.session.clone(),
        max_conns: plan.max_conns_per_worker,
        stop_wait: plan.stop_wait,
        rbuf: vec![0; plan.read_buf].into_boxed_slice(),
        tls_scratch: vec![0; scratch].into_boxed_slice(),
        dirty: Vec::new(),
        unsettled: Vec::new(),
        to_read: Vec::new(),
        opened_by_app: Vec::new(),
        timers: Timers::default(),
        ids: IdSource::new(setup.index),
        budget: Budget {
            used: 0,
            max: plan.buffered_per_worker,
        },
        ip_counts: setup.ip_counts,
        reserve_fd: std::fs::File::open("/dev/null").ok(),
        accept_retry: None,
        stop: setup.stop,
        stopping: None,
        lifecycle_due: None,
        now: Instant::now(),
        tick: Tick::ZERO,
        epoch: Epoch::new(Instant::now()),
        counts: setup.counts,
        sampling: setup.sampling,
        stamps: Vec::with_capacity(MAX_STAMPS),
        next_sample: Instant::now(),
        commands: setup.commands,
        accepted_s: Vec::new(),
    };
    worker.run(plan.poll_events);
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

impl Worker {
    fn run(&mut self, poll_events: usize) {
        let mut events = Events::with_capacity(poll_events);
        let mut polled_last_round = true;
        loop {
            self.set_now();
            self.drain_outbound();
            self.drain_backlogs();
            self.expire();
            self.flush_dirty();
            if !self.stamps.is_empty() {
                self.record_stamps();
            }
            while let Some(key) = self.to_read.pop() {
                self.read(key);
            }
            if self.stop.load(Ordering::Acquire) && self.stop_step() {
                return;
            }
            self.notify_apps(false);
            // What the apps answered meanwhile (often at once: on a shared core the woken
            // app thread runs before this line) goes out in one more round before the
            // sockets are polled; a poll that could only return at once would cost a
            // syscall per message with one message in flight. Every other round still
            // polls, so sockets are never starved.
            if self.apps_answered() && polled_last_round {
                polled_last_round = false;
                continue;
            }
            polled_last_round = true;
            let timeout = self.next_timeout();
            self.link.sleep.announce();
            // Checked again after the announcement: an app that pushed before it saw
            // the announcement did not wake this worker.
            let timeout = if self.apps_answered() {
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
            self.set_now();
            if self.sampling && self.now >= self.next_sample {
                // The round's first message to each app is followed by a stamp.
                self.next_sample = self.now + SAMPLE_EVERY;
                let at = clock_ns(self.now);
                for inbox in &mut self.inboxes {
                    inbox.stamp_at = Some(at);
                }
            }
            let mut woken = false;
            for event in events.iter() {
                match event.token() {
                    WAKER => woken = true,
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
            if woken {
                while let Ok(command) = self.commands.try_recv() {
                    self.command(command);
                }
            }
        }
    }

    /// Carries out a request from the control thread (off the message path).
    #[cold]
    fn command(&mut self, command: WorkerCommand) {
        match command {
            WorkerCommand::Clients { app, reply } => {
                let now_s = self.tick.millis() / 1000;
                let facts = self.open[app.index()]
                    .iter()
                    .map(|&key| {
                        let conn = &self.conns[key];
                        let accepted = self.accepted_s.get(key).copied().unwrap_or(0);
                        ClientFacts {
                            id: conn.id,
                            endpoint: usize::from(conn.endpoint.0),
                            peer: conn.stream.peer_addr().ok(),
                            age_s: now_s.saturating_sub(u64::from(accepted)),
                            queued: conn.session.unsent() as u64,
                        }
                    })
                    .collect();
                let _ = reply.send(facts);
            }
            WorkerCommand::Kick {
                client,
                code,
                reason,
                reply,
            } => {
                let key = key_of(&self.conns, client);
                let open = key.filter(|&k| self.conns[k].session.is_open());
                self.close_each(open, code, &reason);
                let _ = reply.send(open.is_some());
            }
            WorkerCommand::Drain => self.config.draining = true,
            WorkerCommand::CloseAll { code, reason } => {
                let keys: Vec<usize> = self.open.iter().flatten().copied().collect();
                self.close_each(keys, code, &reason);
            }
        }
        self.flush_dirty();
        self.notify_apps(true);
    }

    /// Starts the close handshake of each of these connections, with `code` and `reason`.
    fn close_each(&mut self, keys: impl IntoIterator<Item = usize>, code: CloseCode, reason: &str) {
        for key in keys {
            self.with_session(key, |session, now, config, events| {
                session.close(code, reason, now, &config.limits, events)
            });
        }
    }

    /// Starts the graceful stop (listeners closed, close 1001 to everyone) or checks
    /// whether it is done.
    fn stop_step(&mut self) -> bool {
        let deadline = match self.stopping {
            Some(deadline) => deadline,
            None => {
                for mut l in std::mem::take(&mut self.listeners) {
                    // Dropping the socket closes it: new clients are refused by the
                    // kernel instead of waiting in a backlog nobody accepts from.
                    let _ = self.poll.registry().deregister(&mut l.socket);
                }
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                self.close_each(keys, CloseCode::GOING_AWAY, "server shutting down");
                self.flush_dirty();
                self.notify_apps(true);
                *self.stopping.insert(self.now + self.stop_wait)
            }
        };
        log::debug!(
            "worker {}: stopping, {} connections left",
            self.index,
            self.conns.len()
        );
        self.conns.is_empty() || self.now >= deadline
    }

    /// Records the sampled sends' latency (app send → socket write): their bytes were
    /// just written (or found the socket full).
    #[cold]
    fn record_stamps(&mut self) {
        let now = clock_ns(Instant::now());
        for at in self.stamps.drain(..) {
            self.counts.send_to_write.record(now.saturating_sub(at));
        }
    }

    /// Reads the clock (once per loop iteration, not per event).
    fn set_now(&mut self) {
        self.now = Instant::now();
        self.tick = self.epoch.tick(self.now);
    }

    fn next_timeout(&mut self) -> Option<Duration> {
        let mut due = self.timers.next().map(|t| self.epoch.instant(t));
        let mut earliest = |t: Option<Instant>| {
            if let Some(t) = t {
                due = Some(due.map_or(t, |d| d.min(t)));
            }
        };
        earliest(self.lifecycle_due);
        earliest(self.accept_retry);
        earliest(self.stopping.map(|_| self.now + Duration::from_millis(50)));
        due.map(|d| d.saturating_duration_since(self.now))
    }

    /// Runs `f` on connection `key`'s session with the app events it may produce, then
    /// settles the connection.
    fn with_session<R>(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut Session, Tick, &SessionConfig, &mut ToApp<'_>) -> R,
    ) -> Option<R> {
        let conn = self.conns.get_mut(key)?;
        let mut events = ToApp::new(
            (&mut self.inboxes, &self.counts),
            &mut self.ids,
            key,
            conn,
            Some(&conn.stream),
        );
        let result = f(&mut conn.session, self.tick, &self.config, &mut events);
        let (opened, requested, paused) = (events.opened, events.requested, events.paused);
        let (client, app, endpoint) = (events.client, events.app, events.endpoint);
        if requested {
            // Answers name the request by this id.
            conn.id = client;
            conn.app = app;
            conn.endpoint = endpoint;
        }
        if opened {
            conn.id = client;
            conn.app = app;
            conn.endpoint = endpoint;
            self.register_open(key);
        }
        let conn = &mut self.conns[key];
        if paused {
            conn.read_blocked = true;
        }
        self.settle(key);
        Some(result)
    }

    /// Lists connection `key`, which just opened, among its app's open connections.
    fn register_open(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        conn.just_opened = true;
        conn.app_slot = Some(ListSlot::new(self.open[conn.app.index()].len()));
        self.open[conn.app.index()].push(key);
    }

    /// Brings the worker's view of connection `key` up to date with its session: off
    /// its app's list once no longer open, removed once closed, else flushed if it has
    /// output, its deadline scheduled and its memory counted.
    fn settle(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.session.is_open() {
            if let Some(slot) = conn.app_slot.take() {
                // Subscriptions end with the connection (before the app hears of it).
                self.topics.remove_conn(key);
                let list = &mut self.open[conn.app.index()];
                list.swap_remove(slot.index());
                if let Some(&moved) = list.get(slot.index()) {
                    self.conns[moved].app_slot = Some(slot);
                }
            }
        }
        let conn = &mut self.conns[key];
        if conn.session.is_closed() {
            self.remove(key);
            return;
        }
        if conn.session.wants_flush() || conn.tls_wants_write() {
            self.mark_dirty(key);
        }
        let conn = &mut self.conns[key];
        // An open connection's deadlines only move later (activity), which the timer
        // heap re-checks when the old one comes up; only a new phase can bring one
        // earlier.
        let may_be_earlier = conn.timer_at.is_none()
            || !conn.session.is_open()
            || std::mem::take(&mut conn.just_opened);
        if may_be_earlier {
            if let Some(at) = conn.session.poll_timeout(&self.config.limits) {
                if conn.timer_at.is_none_or(|t| at < t) {
                    conn.timer_at = Some(at);
                    self.timers.push(at, key, conn.serial);
                }
            }
        }
        self.budget.account(conn);
        if self.budget.used > self.budget.max {
            self.relieve(0);
        }
    }

    /// Frees memory until `need` more bytes fit the budget (see [`Apply::relieve`]).
    fn relieve(&mut self, need: usize) {
        let mut unsettled = std::mem::take(&mut self.unsettled);
        self.apply_context(&mut unsettled).relieve(need);
        for key in unsettled.drain(..) {
            self.settle(key);
        }
        self.unsettled = unsettled;
    }

    fn apply_context<'a>(&'a mut self, unsettled: &'a mut Vec<usize>) -> Apply<'a> {
        Apply {
            conns: &mut self.conns,
            inboxes: &mut self.inboxes,
            ids: &mut self.ids,
            dirty: &mut self.dirty,
            unsettled,
            budget: &mut self.budget,
            config: &self.config,
            limits: &self.config.limits,
            now: self.tick,
            counts: &self.counts,
            stamps: &mut self.stamps,
            topics: &mut self.topics,
            opened: &mut self.opened_by_app,
            to_read: &mut self.to_read,
        }
    }

    /// Closes connection `key`'s socket and forgets it (its session is closed).
    fn remove(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        debug_assert!(conn.app_slot.is_none(), "an open connection is removed");
        if let (Some(counts), Some(slot)) = (&self.ip_counts, conn.ip_slot) {
            counts.release(slot);
        }
        self.budget.used -= conn.accounted;
        let _ = self.poll.registry().deregister(&mut conn.stream);
    }

    /// The socket failed or the peer is gone: the app hears 1006.
    fn lose(&mut self, key: usize) {
        self.with_session(key, |session, now, config, events| {
            session.handle_eof(now, &config.limits, events)
        });
    }

    /// Handles every deadline that has come.
    fn expire(&mut self) {
        while let Some((at, key, serial)) = self.timers.pop_due(self.tick) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.serial != serial || conn.timer_at != Some(at) {
                continue; // stale: superseded by an earlier deadline
            }
            conn.timer_at = None;
            let before = conn.session.phase();
            let closed = self.with_session(key, |session, now, config, events| {
                session.handle_timeout(now, &config.limits, events);
                session.is_closed()
            });
            if closed == Some(true) {
                log::debug!(
                    "worker {}: connection {key} timed out in phase {before:?}",
                    self.index
                );
            }
        }
        let conns = &self.conns;
        self.timers.compact(conns.len(), |key, serial, at| {
            conns
                .get(key)
                .is_some_and(|c| c.serial == serial && c.timer_at == Some(at))
        });
        if self.accept_retry.is_some_and(|t| t <= self.now) {
            self.accept_retry = None;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
    }

    fn accept(&mut self, listener: usize) {
        loop {
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            match l.socket.accept() {
                Ok((stream, addr)) => self.admit(stream, addr, l.port, l.secure),
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if !self.refuse_with_reserve_fd(listener) {
                        log::warn!("worker {}: out of file descriptors: {e}", self.index);
                        self.accept_retry = Some(self.now + ACCEPT_RETRY);
                        return;
                    }
                }
                Err(e) => {
                    log::warn!("worker {}: accept failed: {e}", self.index);
                    self.accept_retry = Some(self.now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Out of file descriptors: gives up the reserve one to accept a client and tell
    /// it 503, then takes the reserve back. Returns whether a client was refused.
    fn refuse_with_reserve_fd(&mut self, listener: usize) -> bool {
        if self.reserve_fd.take().is_none() {
            self.reserve_fd = std::fs::File::open("/dev/null").ok();
            return false;
        }
        let refused = match self.listeners[listener].socket.accept() {
            Ok((stream, addr)) => {
                log::debug!(
                    "worker {}: refusing {addr}: out of file descriptors",
                    self.index
                );
                refuse(stream);
                true
            }
            Err(_) => false,
        };
        self.reserve_fd = std::fs::File::open("/dev/null").ok();
        refused
    }

    /// Takes on an accepted client, or refuses it with 503 when at a limit.
    fn admit(&mut self, mut stream: TcpStream, addr: SocketAddr, port: u16, secure: bool) {
        let refused_503 = &self.counts.handshakes[handshake_slot(503)];
        if self.conns.len() >= self.max_conns {
            refused_503.add(1);
            log::debug!(
                "worker {}: refusing {addr}: at the connection limit",
                self.index
            );
            return refuse(stream);
        }
        let ip_slot = match &self.ip_counts {
            None => None,
            Some(counts) => match counts.acquire(addr.ip()) {
                Some(slot) => Some(slot),
                None => {
                    log::debug!("worker {}: refusing {addr}: max_conns_per_ip", self.index);
                    refused_503.add(1);
                    return refuse(stream);
                }
            },
        };
        let release = |counts: &Option<Arc<IpCounts>>| {
            if let (Some(c), Some(s)) = (counts, ip_slot) {
                c.release(s)
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = match (secure, &self.tls) {
            (false, _) => None,
            (true, Some(config)) => match tls::Tls::new(config.clone()) {
                Ok(tls) => Some(Box::new(tls)),
                Err(e) => {
                    log::warn!("worker {}: cannot start TLS for {addr}: {e}", self.index);
                    return release(&self.ip_counts);
                }
            },
            (true, None) => return release(&self.ip_counts),
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            log::warn!("worker {}: cannot register {addr}: {e}", self.index);
            return release(&self.ip_counts);
        }
        let serial = self.ids.next_generation(key);
        let session = Session::new(port, self.tick, &self.config.limits);
        entry.insert(Conn::accepted(stream, tls, session, serial, ip_slot));
        if self.accepted_s.len() <= key {
            self.accepted_s.resize(key + 1, 0);
        }
        self.accepted_s[key] = (self.tick.millis() / 1000) as u32;
        self.settle(key);
        log::trace!("worker {}: accepted {addr} as {key}", self.index);
    }

    /// Reads from a connection until the socket would block, the connection stops
    /// reading, or it is gone.
    fn read(&mut self, key: usize) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        while self.read_once(key, &mut rbuf) {}
        self.rbuf = rbuf;
    }

    /// One read and what follows from it; returns whether to read again.
    fn read_once(&mut self, key: usize, rbuf: &mut [u8]) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if !conn.session.reads_input() || conn.read_blocked {
            return false;
        }
        if conn.session.is_open() && self.inboxes[conn.app.index()].is_backlogged() {
            conn.read_blocked = true;
            self.inboxes[conn.app.index()].paused.push(key);
            return false;
        }
        let held = conn.pending.len();
        rbuf[..held].copy_from_slice(conn.pending.as_slice());
        let (got, eof, blocked) = if held == rbuf.len() {
            (0, false, false)
        } else {
            match conn.read_plain(&mut self.tls_scratch, &mut rbuf[held..]) {
                Ok(0) => (0, true, false),
                Ok(n) => (n, false, false),
                Err(e) if would_block(&e) => (0, false, true),
                Err(e) if e.kind() == ErrorKind::Interrupted => (0, false, false),
                Err(e) => {
                    log::debug!("worker {}: read error on {key}: {e}", self.index);
                    self.lose(key);
                    return false;
                }
            }
        };
        let total = held + got;
        // A plain socket that returned less than we asked for is drained: on Linux
        // every later arrival raises a new edge, so skip the read that would only say
        // EAGAIN. (TLS buffers records itself, so it reads until EAGAIN.)
        let drained = conn.tls.is_none() && got > 0 && total < rbuf.len();
        let input = &mut rbuf[..total];
        let opened_now = !conn.session.is_open();
        let consumed = if conn.session.decodes_input() {
            self.with_session(key, |session, now, config, events| {
                session.handle_input(config, now, input, events)
            })
            .unwrap_or(total)
        } else {
            total // lingering: dropped
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        // Keep what was not consumed; a buffer a burst made large is released.
        conn.pending.clear(4096);
        if consumed < total {
            conn.pending.vec().extend_from_slice(&rbuf[consumed..total]);
        } else if opened_now && conn.session.is_open() {
            conn.pending.release(); // what the upgrade needed; an idle connection holds none
        }
        if eof {
            self.lose(key);
            return false;
        }
        self.settle(key);
        let again = !(drained || blocked || (got == 0 && consumed == 0));
        again && self.conns.get(key).is_some_and(|c| !c.read_blocked)
    }

    fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn flush_dirty(&mut self) {
        // Many connections to flush (after a broadcast or a publish): in slab order,
        // which is close to the order of their sockets in the kernel too, asking for
        // the memory of the connections ahead early.
        let many = self.dirty.len() > FLUSH_IN_ORDER;
        if many {
            self.dirty.sort_unstable();
        }
        while let Some(key) = self.dirty.pop() {
            if many {
                // Popped from the end: step i ahead is dirty[len - i].
                let dirty = &self.dirty;
                let ahead = |i: usize| match i {
                    0 => Some(key),
                    _ => dirty.len().checked_sub(i).map(|at| dirty[at]),
                };
                conn::prefetch_ahead(&self.conns, 0, ahead);
            }
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
        match conn.write_out(&mut self.tls_scratch) {
            Ok(true) => {}
            Ok(false) => return self.budget.account(conn),
            Err(e) => {
                log::debug!("worker {}: write error on {key}: {e}", self.index);
                return self.lose(key);
            }
        }
        if conn.session.output_drained(self.tick, &self.config.limits) == Drained::ShutdownWrite {
            conn.shutdown_write(&mut self.tls_scratch);
            if self.stopping.is_some() {
                // Stopping: the close handshake is done; don't wait for the client's FIN.
                return self.remove(key);
            }
            // Whatever the client still sends is read and dropped; EOF removes it. Its
            // FIN may have arrived while flushing (input is not read then), so read
            // once without waiting for a new edge.
            self.settle(key);
            return self.to_read.push(key);
        }
        self.settle(key);
    }

    /// Whether an app has queued records for this worker that it has not handled yet.
    fn apps_answered(&mut self) -> bool {
        self.outboxes.iter_mut().any(|o| !o.is_empty())
    }

    /// Handles every record the apps have queued for this worker.
    fn drain_outbound(&mut self) {
        let mut unsettled = std::mem::take(&mut self.unsettled);
        let mut outboxes = std::mem::take(&mut self.outboxes);
        for (a, outbox) in outboxes.iter_mut().enumerate() {
            let open = std::mem::take(&mut self.open[a]);
            let mut handled = false;
            {
                let mut apply = self.apply_context(&mut unsettled);
                while outbox
                    .pop_with(|record| apply.record(AppIndex(a as u16), &open, record))
                    .is_some()
                {
                    handled = true;
                }
            }
            self.open[a] = open;
            for key in std::mem::take(&mut self.opened_by_app) {
                self.register_open(key);
                self.settle(key);
            }
            if handled && outbox.take_producer_waiting() {
                self.inboxes[a].sleep.unpark();
            }
            for key in unsettled.drain(..) {
                self.settle(key);
            }
        }
        self.outboxes = outboxes;
        self.unsettled = unsettled;
    }

    fn drain_backlogs(&mut self) {
        for app in 0..self.inboxes.len() {
            let inbox = &mut self.inboxes[app];
            if !inbox.is_backlogged() || !inbox.drain_backlog() {
                continue;
            }
            for key in std::mem::take(&mut inbox.paused) {
                if let Some(conn) = self.conns.get_mut(key) {
                    if std::mem::take(&mut conn.read_blocked) {
                        self.read(key);
                    }
                }
            }
        }
    }

    /// Wakes the apps that have records to handle (see [`AppInbox::notify`]), and
    /// remembers when the next delayed wakeup is due.
    fn notify_apps(&mut self, force: bool) {
        self.lifecycle_due = None;
        for inbox in &mut self.inboxes {
            if let Some(due) = inbox.notify(self.now, force) {
                self.lifecycle_due = Some(self.lifecycle_due.map_or(due, |d| d.min(due)));
            }
        }
    }
}

/// Tells a client the server has no room for it (503) and closes the socket.
fn refuse(mut stream: TcpStream) {
    static RESPONSE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let response = RESPONSE.get_or_init(|| {
        let mut out = Vec::new();
        HandshakeError::Unavailable.write_response(&mut out);
        out
    });
    let _ = stream.write(response);
}
#[cfg(test)]
mod tests {
    /// Idle memory per connection is mostly this struct (plus one 16-byte timer entry
    /// and the kernel's socket): keep it from creeping up. (mio adds 16 bytes to a
    /// socket in debug builds.)
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<super::Conn>();
        let limit = if cfg!(debug_assertions) { 184 } else { 168 };
        assert!(size <= limit, "Conn is {size} bytes");
    }
}
