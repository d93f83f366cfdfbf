//! Events an app's own threads post to its app thread (`rs_post_event`).
//!
//! A bounded multi-producer queue (crossbeam's `ArrayQueue`): posting never blocks and
//! never waits for the app; a full queue, an oversized event or a stopped app is an
//! error code. An event of up to [`INLINE`] bytes is stored in its queue slot (no
//! allocation); a larger one is copied to the heap, and the heap bytes queued at once
//! are bounded by [`HEAP_LIMIT`]. After queueing, the poster wakes the app thread if
//! it sleeps (one futex wake per sleep, none while it is busy).
//!
//! Shutdown loses nothing that was accepted: [`EventQueue::close`] makes every later
//! post fail with `RS_ERR_CLOSED` and waits for posts already past that check, so the
//! app thread's last drain sees every accepted event.

use ringsocket_abi as abi;
use ringsocket_ring::SleepState;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// Events this small live in their queue slot.
pub(crate) const INLINE: usize = 48;
/// Heap bytes of larger events one app's queue holds at once.
pub(crate) use crate::config::EVENT_QUEUE_BYTES as HEAP_LIMIT;

/// One queued event.
pub(crate) enum Event {
    /// Up to [`INLINE`] bytes, in place.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A larger event's copy.
    Heap(Box<[u8]>),
}

impl Event {
    /// Its bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Event::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Event::Heap(b) => b,
        }
    }
}

/// An app's event queue. `repr(C)` with the ABI handle first: the `rs_event_handle_t *`
/// plugins get points at it.
#[repr(C)]
pub(crate) struct EventQueue {
    handle: abi::rs_event_handle,
    queue: crossbeam_queue::ArrayQueue<Event>,
    heap_bytes: AtomicUsize,
    /// Posts between their `closed` check and their push.
    posting: AtomicUsize,
    closed: AtomicBool,
    max_event: usize,
    /// The app thread's sleep word.
    sleep: Arc<SleepState>,
}

impl EventQueue {
    /// A queue of `capacity` events of at most `max_event` bytes, waking `sleep`.
    pub(crate) fn new(capacity: usize, max_event: usize, sleep: Arc<SleepState>) -> EventQueue {
        EventQueue {
            handle: abi::rs_event_handle { post: post_event },
            queue: crossbeam_queue::ArrayQueue::new(capacity.max(1)),
            heap_bytes: AtomicUsize::new(0),
            posting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            max_event,
            sleep,
        }
    }

    /// The handle plugins post through. It stays valid as long as the queue lives: the
    /// app thread keeps it until after the plugin's destroy callback.
    pub(crate) fn handle(self: &Arc<Self>) -> *mut abi::rs_event_handle {
        Arc::as_ptr(self).cast_mut().cast()
    }

    /// Queues a copy of `data` and wakes the app; an `RS_ERR_*` if it cannot.
    pub(crate) fn post(&self, data: &[u8]) -> c_int {
        // SeqCst on `posting` and `closed`, here and in `close`: either this post sees
        // `closed`, or `close` sees it in `posting` and waits for it to finish.
        self.posting.fetch_add(1, SeqCst);
        let result = self.try_post(data);
        self.posting.fetch_sub(1, SeqCst);
        if result == abi::RS_OK {
            self.sleep.unpark();
        }
        result
    }

    fn try_post(&self, data: &[u8]) -> c_int {
        if self.closed.load(SeqCst) {
            return abi::RS_ERR_CLOSED;
        }
        if data.len() > self.max_event {
            return abi::RS_ERR_TOO_BIG;
        }
        let event = if data.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..data.len()].copy_from_slice(data);
            Event::Inline {
                len: data.len() as u8,
                bytes,
            }
        } else {
            let before = self.heap_bytes.fetch_add(data.len(), SeqCst);
            if before + data.len() > HEAP_LIMIT {
                self.heap_bytes.fetch_sub(data.len(), SeqCst);
                return abi::RS_ERR_FULL;
            }
            Event::Heap(data.into())
        };
        match self.queue.push(event) {
            Ok(()) => abi::RS_OK,
            Err(event) => {
                self.discount(&event);
                abi::RS_ERR_FULL
            }
        }
    }

    fn discount(&self, event: &Event) {
        if let Event::Heap(b) = event {
            self.heap_bytes.fetch_sub(b.len(), SeqCst);
        }
    }

    /// The oldest queued event (app thread).
    pub(crate) fn pop(&self) -> Option<Event> {
        let event = self.queue.pop()?;
        self.discount(&event);
        Some(event)
    }

    /// Whether no event is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Refuses every later post and waits until posts already under way have queued
    /// their event (app thread, at shutdown; then drain with [`EventQueue::pop`]).
    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
        while self.posting.load(SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

/// `rs_event_handle.post`: any thread.
unsafe extern "C" fn post_event(
    handle: *mut abi::rs_event_handle,
    data: *const c_void,
    len: usize,
) -> c_int {
    if handle.is_null() {
        return abi::RS_ERR_INVALID;
    }
    // SAFETY: plugins get handles only from `EventQueue::handle`, which points at a
    // live queue (repr(C), handle first) until the app's destroy callback has returned.
    let queue = unsafe { &*handle.cast_const().cast::<EventQueue>() };
    // SAFETY: the plugin passes `len` readable bytes.
    match unsafe { super::ffi::plugin_slice(data.cast::<u8>(), len) } {
        Some(data) => queue.post(data),
        None => abi::RS_ERR_INVALID,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Four threads post as fast as they can into a small queue while the app thread
    /// drains it; then the queue closes. Every accepted event arrives exactly once,
    /// every refused one was refused for being full (never lost, never blocking), and
    /// after the close every post is refused.
    #[test]
    fn events_under_load_arrive_once_or_are_refused() {
        let sleep = Arc::new(SleepState::new());
        let queue = Arc::new(EventQueue::new(64, 1024, sleep));
        let per_thread: u32 = if cfg!(miri) { 200 } else { 200_000 };
        let posters: Vec<_> = (0..4u32)
            .map(|t| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    let (mut accepted, mut full) = (Vec::new(), 0u32);
                    for i in 0..per_thread {
                        // Every 16th event is large (heap); the rest are inline.
                        let mut event = vec![0u8; if i % 16 == 0 { 100 } else { 8 }];
                        event[..4].copy_from_slice(&t.to_le_bytes());
                        event[4..8].copy_from_slice(&i.to_le_bytes());
                        match queue.post(&event) {
                            abi::RS_OK => accepted.push((t, i)),
                            abi::RS_ERR_FULL => full += 1,
                            other => panic!("unexpected {other}"),
                        }
                    }
                    (accepted, full)
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let drain = |seen: &mut HashSet<(u32, u32)>| {
            while let Some(event) = queue.pop() {
                let b = event.bytes();
                let id = (
                    u32::from_le_bytes(b[..4].try_into().unwrap()),
                    u32::from_le_bytes(b[4..8].try_into().unwrap()),
                );
                assert!(seen.insert(id), "{id:?} arrived twice");
            }
        };
        while !posters.iter().all(|p| p.is_finished()) {
            drain(&mut seen);
        }
        queue.close();
        drain(&mut seen);
        let mut accepted = HashSet::new();
        let mut refused = 0;
        for p in posters {
            let (a, full) = p.join().unwrap();
            refused += full;
            accepted.extend(a);
        }
        assert_eq!(seen, accepted, "exactly the accepted events arrived");
        assert_eq!(accepted.len() as u32 + refused, 4 * per_thread);
        assert_eq!(queue.post(b"late"), abi::RS_ERR_CLOSED);
        assert_eq!(queue.heap_bytes.load(SeqCst), 0);
    }

    #[test]
    fn oversized_events_and_heap_overflow_are_refused() {
        let queue = EventQueue::new(4, 100, Arc::new(SleepState::new()));
        assert_eq!(queue.post(&[0; 101]), abi::RS_ERR_TOO_BIG);
        assert_eq!(queue.post(&[1; 100]), abi::RS_OK);
        assert_eq!(queue.post(&[]), abi::RS_OK);
        assert_eq!(queue.pop().unwrap().bytes(), &[1; 100][..]);
        assert_eq!(queue.pop().unwrap().bytes(), b"");
        assert!(queue.pop().is_none());
        let big = EventQueue::new(1000, HEAP_LIMIT, Arc::new(SleepState::new()));
        assert_eq!(big.post(&vec![0; HEAP_LIMIT - 10]), abi::RS_OK);
        assert_eq!(big.post(&[0; 60]), abi::RS_ERR_FULL, "heap bytes bounded");
        assert_eq!(big.post(&[0; 10]), abi::RS_OK, "inline events still fit");
    }
}
