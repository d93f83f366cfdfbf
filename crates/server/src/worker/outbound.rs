//! Applying app→worker records to this worker's connections, and the memory budget
//! they are queued under.

use super::conn::{prefetch_ahead, Conn};
use super::events::{key_of, IdSource, ToApp};
use super::inbox::AppInbox;
use super::topics::Topics;
use crate::records::{ClientId, Group, Outbound, Payload, Targets};
use crate::stats::{handshake_slot, WorkerCounts};
use ringsocket_proto::HttpResponse;
use ringsocket_proto::{CloseCode, MessageKind};
use ringsocket_session::{AppIndex, Frame, Limits, Sent, SessionConfig, Tick};
use slab::Slab;

/// The bytes a worker's connections hold in buffers, and the most they may.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) used: usize,
    pub(crate) max: usize,
}

impl Budget {
    /// Brings the count up to date with what `conn` holds now.
    pub(crate) fn account(&mut self, conn: &mut Conn) {
        let held = conn.held();
        self.used = self.used + held - conn.accounted;
        conn.accounted = held;
    }
}

/// What applying records needs of the worker (its fields, borrowed apart from the
/// ring being drained).
pub(crate) struct Apply<'a> {
    pub(crate) conns: &'a mut Slab<Conn>,
    pub(crate) inboxes: &'a mut [AppInbox],
    pub(crate) ids: &'a mut IdSource,
    /// Connections with output to write.
    pub(crate) dirty: &'a mut Vec<usize>,
    /// Connections whose phase may have changed: the worker settles them afterwards.
    pub(crate) unsettled: &'a mut Vec<usize>,
    pub(crate) budget: &'a mut Budget,
    pub(crate) config: &'a SessionConfig,
    pub(crate) limits: &'a Limits,
    pub(crate) now: Tick,
    pub(crate) topics: &'a mut Topics,
    /// Connections an accepted upgrade opened: the worker lists them afterwards.
    pub(crate) opened: &'a mut Vec<usize>,
    /// Connections with input to decode again (it waited for an app's answer).
    pub(crate) to_read: &'a mut Vec<usize>,
    /// The worker's own counts.
    pub(crate) counts: &'a WorkerCounts,
    /// Sampled sends of this round, recorded once written.
    pub(crate) stamps: &'a mut Vec<u64>,
}

impl Apply<'_> {
    /// Applies one record from `app`; `open` lists the app's open connections here.
    /// Inlined into the loop that drains the ring, so that a message record is read
    /// in place rather than built and matched; the other records are `control`'s.
    #[inline(always)]
    pub(crate) fn record(&mut self, app: AppIndex, open: &[usize], record: Outbound<'_>) {
        match record {
            Outbound::Send { kind, to, payload } => self.send(app, open, kind, to, &payload),
            other => self.control(app, other),
        }
    }

    /// Queues a message record's frame to each of its recipients here.
    #[inline(always)]
    fn send(
        &mut self,
        app: AppIndex,
        open: &[usize],
        kind: MessageKind,
        to: Targets<'_>,
        payload: &Payload<'_>,
    ) {
        // Encoded once, queued to every recipient.
        let frame = Frame::message(kind, payload.bytes());
        let except = to.ids;
        let mut queued = 0u64;
        match to.group {
            Group::List => {
                for id in to.ids.iter() {
                    if let Some(key) = key_of(self.conns, id) {
                        if self.conns[key].app == app {
                            queued += self.deliver(key, &frame);
                        }
                    }
                }
            }
            Group::All => {
                for (at, &key) in open.iter().enumerate() {
                    prefetch_ahead(self.conns, at, |i| open.get(i).copied());
                    if except.is_empty() || !except.contains(self.conns[key].id) {
                        queued += self.deliver(key, &frame);
                    }
                }
            }
            Group::Topic(topic) => {
                // Taken out while delivering; nothing changes subscriptions
                // until the worker settles connections afterwards.
                let list = self.topics.take(app, topic);
                if except.len() <= 1 {
                    // The usual "all but the sender": one key to skip, found once.
                    let skip = except.iter().next().and_then(|id| key_of(self.conns, id));
                    let skip = skip.map_or(u32::MAX, |k| k as u32);
                    for (at, &key) in list.iter().enumerate() {
                        prefetch_ahead(self.conns, at, |i| list.get(i).map(|&k| k as usize));
                        if key != skip {
                            queued += self.deliver(key as usize, &frame);
                        }
                    }
                } else {
                    for (at, &key) in list.iter().enumerate() {
                        prefetch_ahead(self.conns, at, |i| list.get(i).map(|&k| k as usize));
                        let key = key as usize;
                        if !except.contains(self.conns[key].id) {
                            queued += self.deliver(key, &frame);
                        }
                    }
                }
                self.topics.put_back(app, topic, list);
            }
        }
        let traffic = &self.inboxes[app.index()].traffic;
        traffic.messages_out.add(queued);
        traffic.bytes_out.add(queued * frame.len() as u64);
    }

    /// Applies a record other than a message (off the message path).
    #[cold]
    #[inline(never)]
    fn control(&mut self, app: AppIndex, record: Outbound<'_>) {
        match record {
            Outbound::Closed { client } => {
                if let Some(key) = key_of(self.conns, client) {
                    self.conns[key].session.app_done(self.now, self.limits);
                    self.unsettled.push(key);
                }
            }
            Outbound::Close {
                client,
                frame_payload,
            } => {
                let Some(key) = key_of(self.conns, client) else {
                    return;
                };
                let conn = &mut self.conns[key];
                if conn.app == app {
                    let mut events =
                        ToApp::new((self.inboxes, self.counts), self.ids, key, conn, None);
                    conn.session
                        .app_close(frame_payload, self.now, self.limits, &mut events);
                    self.unsettled.push(key);
                }
            }
            Outbound::Send { .. } => unreachable!("messages are applied by send"),
            Outbound::Stamp { at } => {
                if self.stamps.len() < self.stamps.capacity() {
                    self.stamps.push(at);
                }
            }
            answer @ (Outbound::Accept { .. } | Outbound::Respond { .. }) => {
                self.answer(app, answer)
            }
            Outbound::Subscribe { client, topic } => {
                if let Some(key) = self.open_conn(app, client) {
                    self.topics.subscribe(key, app, topic);
                }
            }
            Outbound::Unsubscribe { client, topic } => {
                if let Some(key) = self.open_conn(app, client) {
                    self.topics.unsubscribe(key, app, topic);
                }
            }
        }
    }

    /// An app's answer to a request: an accepted upgrade, or a response (off the
    /// message path).
    #[cold]
    #[inline(never)]
    fn answer(&mut self, app: AppIndex, record: Outbound<'_>) {
        match record {
            Outbound::Accept { client } => {
                let Some(key) = key_of(self.conns, client) else {
                    return; // the request was cancelled
                };
                let conn = &mut self.conns[key];
                if conn.app != app {
                    return;
                }
                let mut events = ToApp::new((self.inboxes, self.counts), self.ids, key, conn, None);
                if conn
                    .session
                    .accept_upgrade(self.config, self.now, &mut events)
                {
                    self.opened.push(key);
                    // Frames the client sent before the 101 wait in its input.
                    self.to_read.push(key);
                }
            }
            Outbound::Respond {
                client,
                status,
                bytes,
                headers_len,
            } => {
                let Some(key) = key_of(self.conns, client) else {
                    return; // the request was cancelled
                };
                let conn = &mut self.conns[key];
                if conn.app != app {
                    return;
                }
                let (headers, body) = bytes.bytes().split_at(headers_len as usize);
                if conn.session.is_deciding() {
                    // The app refused the upgrade.
                    self.counts.handshakes[handshake_slot(status)].add(1);
                }
                let response = HttpResponse {
                    status,
                    headers,
                    body,
                };
                if conn.session.respond(&response, self.now, self.limits) {
                    // The request is answered: its id names nothing any more.
                    conn.id = ClientId(0);
                    self.unsettled.push(key);
                    // A pipelined request may wait in its input.
                    self.to_read.push(key);
                }
            }
            _ => {}
        }
    }

    /// The key of `client`, if it is an open connection of `app` here.
    fn open_conn(&self, app: AppIndex, client: ClientId) -> Option<usize> {
        let key = key_of(self.conns, client)?;
        let conn = &self.conns[key];
        (conn.app == app && conn.session.is_open()).then_some(key)
    }

    /// Queues `frame` to connection `key`, within its cap and the worker's budget;
    /// returns 1 if it was queued, else 0.
    #[inline]
    fn deliver(&mut self, key: usize, frame: &Frame<'_>) -> u64 {
        let conn = &mut self.conns[key];
        let grows = !conn.session.fits_held(frame.len());
        if grows && self.budget.used + frame.len() > self.budget.max {
            self.relieve(frame.len());
        }
        let conn = &mut self.conns[key];
        let queued = match conn.session.send(frame, self.now, self.limits) {
            Sent::Queued => {
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(key);
                }
                1
            }
            Sent::Overflowed => {
                log::debug!("client {} exceeded the outbound buffer cap", conn.id.0);
                self.inboxes[conn.app.index()].traffic.slow_closes.add(1);
                let mut events = ToApp::new((self.inboxes, self.counts), self.ids, key, conn, None);
                conn.session
                    .close_overflowed(self.now, self.limits, &mut events);
                self.unsettled.push(key);
                0
            }
            Sent::Dropped => 0,
        };
        if grows {
            // Only a growing buffer changes what the connection holds.
            self.budget.account(&mut self.conns[key]);
        }
        queued
    }

    /// Frees memory until `need` more bytes fit the budget: the connections holding
    /// the most are closed with 1013 (try again later) — with a close frame when
    /// nothing is stuck before it, dropped at once otherwise.
    pub(crate) fn relieve(&mut self, need: usize) {
        while self.budget.used + need > self.budget.max {
            let victim = self
                .conns
                .iter()
                .filter(|(_, c)| !c.session.is_closed())
                .max_by_key(|(_, c)| c.accounted)
                .map(|(key, c)| (key, c.accounted));
            let Some((key, held)) = victim.filter(|(_, held)| *held > 0) else {
                return;
            };
            let conn = &mut self.conns[key];
            log::warn!(
                "buffered bytes over max_buffered_bytes: dropping client {} (holds {held} bytes)",
                conn.id.0
            );
            if conn.session.is_open() {
                self.inboxes[conn.app.index()].traffic.budget_closes.add(1);
            }
            let mut events = ToApp::new((self.inboxes, self.counts), self.ids, key, conn, None);
            let code = CloseCode::TRY_AGAIN_LATER;
            if conn.session.unsent() == 0 && conn.session.is_open() {
                let reason = "server memory budget";
                conn.session
                    .close(code, reason, self.now, self.limits, &mut events);
            } else {
                conn.session.abort(code, self.now, self.limits, &mut events);
            }
            conn.pending.release();
            self.budget.account(conn);
            self.unsettled.push(key);
            if self.conns[key].accounted >= held {
                return; // nothing was freed; don't spin
            }
        }
    }
}
