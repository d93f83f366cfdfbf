//! One deadline heap per worker. Each connection has at most one live entry (its
//! [`Conn::timer_at`](super::conn::Conn)); deadlines that move later stay where they
//! are and are re-checked when they come up, so nothing is pushed per message.
//! Entries left behind by connections that are gone, or whose deadline moved earlier,
//! are dropped when the heap grows past twice the live ones.

use ringsocket_session::Tick;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// An entry (16 bytes): when, and which connection (slab key and serial).
type Entry = Reverse<(Tick, u32, u32)>;

/// The worker's deadlines.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
}

impl Timers {
    /// Adds a deadline for connection `key` (of `serial`).
    pub(crate) fn push(&mut self, at: Tick, key: usize, serial: u32) {
        self.heap.push(Reverse((at, key as u32, serial)));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Tick> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the earliest entry if it is due: (deadline, key, serial).
    pub(crate) fn pop_due(&mut self, now: Tick) -> Option<(Tick, usize, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self
                .heap
                .pop()
                .map(|Reverse((at, key, serial))| (at, key as usize, serial)),
            _ => None,
        }
    }

    /// Drops stale entries once they outnumber the live ones: keeps only those for
    /// which `live(key, serial, at)` holds.
    pub(crate) fn compact(&mut self, live_count: usize, live: impl Fn(usize, u32, Tick) -> bool) {
        if self.heap.len() <= 2 * live_count + 64 {
            return;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse((at, key, serial))| live(*key as usize, *serial, *at))
            .collect();
        self.heap.shrink_to_fit();
    }

    /// Entries held (live and stale).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stale_entries_are_bounded() {
        let mut t = Timers::default();
        let now = Tick::ZERO;
        // Connections churn: each leaves an hour-long deadline behind.
        for serial in 0..100_000u32 {
            t.push(now + Duration::from_secs(3600), 0, serial);
            // Only the newest connection is live.
            t.compact(1, |_, s, _| s == serial);
        }
        assert!(t.len() <= 2 + 64, "{}", t.len());
        assert_eq!(t.pop_due(now), None);
        assert!(t.pop_due(now + Duration::from_secs(3600)).is_some());
    }
}
