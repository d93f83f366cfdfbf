//! A worker's side of one app's inbound ring: the records it sends the app, kept in
//! order through a backlog while the ring is full, and when to wake the app.

use crate::records::{ClientId, Inbound, InboundTx, Payload};
use crate::stats::{AppTraffic, Owned};
use ringsocket_proto::MessageKind;
use ringsocket_ring::SleepState;
use ringsocket_session::EndpointIndex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long open and close records may wait for their app to be woken.
const LIFECYCLE_WAKE_DELAY: Duration = Duration::from_millis(1);

/// The worker's sending end towards one app.
pub(crate) struct AppInbox {
    ring: InboundTx,
    /// The app thread's sleep word.
    pub(crate) sleep: Arc<SleepState>,
    /// Messages larger than this go to the app as a heap buffer, not inline.
    pub(crate) inline_max: usize,
    /// The app has a ping callback: clients' pings and pongs are passed on.
    pub(crate) reports_pings: bool,
    /// Records waiting for room, oldest first. While non-empty, everything for this app
    /// goes here, and its connections are not read.
    backlog: VecDeque<Inbound<'static>>,
    /// Connections (slab keys) that stopped reading because of the backlog.
    pub(crate) paused: Vec<usize>,
    /// The app got a message or a request since it was last woken: wake it now.
    urgent_since_wake: bool,
    /// When the app got the first open or close record since it was last woken. Those
    /// only wake it `LIFECYCLE_WAKE_DELAY` later (unless a message comes first), so a
    /// burst of connects and disconnects costs one wakeup, not one each.
    lifecycle_since: Option<Instant>,
    /// This app's traffic through this worker.
    pub(crate) traffic: Owned<AppTraffic>,
    /// While metrics are on: the time of this loop round, until the round's first
    /// message to the app is followed by a stamp with it.
    pub(crate) stamp_at: Option<u64>,
}

impl AppInbox {
    pub(crate) fn new(
        ring: InboundTx,
        sleep: Arc<SleepState>,
        traffic: Owned<AppTraffic>,
    ) -> AppInbox {
        AppInbox {
            traffic,
            stamp_at: None,
            inline_max: ring.inline_max(),
            reports_pings: false,
            ring,
            sleep,
            backlog: VecDeque::new(),
            paused: Vec::new(),
            urgent_since_wake: false,
            lifecycle_since: None,
        }
    }

    /// Whether records wait for room (the app's connections are then not read).
    pub(crate) fn is_backlogged(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Pushes a record, or backlogs it if the ring is full (or a backlog exists).
    /// Returns `false` if it was backlogged.
    #[inline]
    pub(crate) fn push(&mut self, record: Inbound<'_>) -> bool {
        let urgent = is_urgent(&record);
        let record = if self.backlog.is_empty() {
            match self.try_push(record) {
                Ok(()) => return self.pushed(urgent),
                Err(record) => record,
            }
        } else {
            record
        };
        self.backlog.push_back(record.into_owned());
        false
    }

    /// [`AppInbox::push`] of an inline message (`bytes` within `inline_max`), through
    /// the ring's shortcut for it while there is no backlog and room.
    #[inline]
    pub(crate) fn push_message(
        &mut self,
        client: ClientId,
        endpoint: EndpointIndex,
        kind: MessageKind,
        bytes: &[u8],
    ) -> bool {
        if self.backlog.is_empty()
            && self
                .ring
                .try_push_message(client, endpoint, kind, bytes)
                .is_ok()
        {
            return self.pushed(true);
        }
        let payload = Payload::Inline(bytes);
        self.push(Inbound::Message {
            client,
            endpoint,
            kind,
            payload,
        })
    }

    /// Publishes `record`, asking to be told of room (and looking once more) if the
    /// ring is full.
    fn try_push<'a>(&mut self, record: Inbound<'a>) -> Result<(), Inbound<'a>> {
        let record = match self.ring.try_push(record) {
            Ok(()) => return Ok(()),
            Err(record) => record,
        };
        self.ring.set_waiting();
        self.ring.try_push(record)
    }

    #[inline]
    fn pushed(&mut self, urgent: bool) -> bool {
        if urgent {
            self.urgent_since_wake = true;
        } else {
            self.lifecycle_since.get_or_insert_with(Instant::now);
        }
        true
    }

    /// Moves backlogged records into the ring while there is room. Returns whether the
    /// backlog is now empty.
    pub(crate) fn drain_backlog(&mut self) -> bool {
        while let Some(record) = self.backlog.pop_front() {
            let urgent = is_urgent(&record);
            match self.try_push(record) {
                Ok(()) => {
                    self.pushed(urgent);
                }
                Err(record) => {
                    self.backlog.push_front(record);
                    return false;
                }
            }
        }
        true
    }

    /// Wakes the app if it has a message or request, or open/close records older than
    /// `LIFECYCLE_WAKE_DELAY` (any record, with `force`). Returns when to check again.
    pub(crate) fn notify(&mut self, now: Instant, force: bool) -> Option<Instant> {
        let due = self.lifecycle_since.map(|t| t + LIFECYCLE_WAKE_DELAY);
        let urgent = std::mem::take(&mut self.urgent_since_wake);
        if urgent || due.is_some_and(|due| force || due <= now) {
            self.lifecycle_since = None;
            self.sleep.unpark();
            return None;
        }
        due
    }
}

/// Whether a record wakes its app at once: a message, or a request a client waits on
/// (opens and closes may wait for company, see `LIFECYCLE_WAKE_DELAY`).
#[inline]
fn is_urgent(record: &Inbound<'_>) -> bool {
    matches!(record, Inbound::Message { .. } | Inbound::Request(_))
}
