//! What the server counts, for `ringsocketctl status` and the metrics listener.
//!
//! Every count belongs to one thread — a worker or an app thread — which alone writes
//! it, with a relaxed load and a relaxed store (a plain `mov` on x86: no locked
//! instruction, no shared cache line written by two threads). Readers sum the threads'
//! counts at scrape time; a count read while its owner writes is at worst one event
//! behind. Counts live in [`CachePadded`] blocks so that one thread's writes never
//! share a cache line with another's.
//!
//! Latencies are sampled rather than timed per message: at most once a millisecond a
//! worker follows the first message of a loop round it hands an app with a stamp
//! record, and the app thread reads the clock only when it reaches a stamp (socket
//! read → app callback). That round of the app then ends its records to each worker
//! with a stamp carrying the same clock reading, and the worker reads the clock once
//! after its next writes (app send → socket write). Without metrics nothing is stamped.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A count only its owner thread changes; anyone may read it.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    /// Adds `n` (owner only).
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Subtracts `n` (owner only; for gauges such as open connections).
    #[inline]
    pub(crate) fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    /// The value now.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Buckets of a [`Latency`]: bucket `i` counts samples of at most 2^i µs (1 µs …
/// 2^20 µs ≈ 1.05 s); the last counts the rest.
pub(crate) const LATENCY_BUCKETS: usize = 22;

/// A latency histogram in power-of-two microsecond buckets.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    buckets: [Count; LATENCY_BUCKETS],
    sum_ns: Count,
}

impl Latency {
    /// Records one sample (owner only).
    #[inline]
    pub(crate) fn record(&self, ns: u64) {
        let us = ns.div_ceil(1000);
        // ceil(log2(us)): 0 for 0 and 1 µs, i for (2^(i-1), 2^i] µs.
        let bucket = (64 - us.saturating_sub(1).leading_zeros()) as usize;
        self.buckets[bucket.min(LATENCY_BUCKETS - 1)].add(1);
        self.sum_ns.add(ns);
    }

    /// Adds this histogram's counts to `into` (per bucket, not cumulative) and returns
    /// its sum in nanoseconds.
    pub(crate) fn add_to(&self, into: &mut [u64; LATENCY_BUCKETS]) -> u64 {
        for (total, b) in into.iter_mut().zip(&self.buckets) {
            *total += b.get();
        }
        self.sum_ns.get()
    }

    /// The upper bound of bucket `i` in seconds (`None` for the last, +Inf).
    pub(crate) fn bound_s(i: usize) -> Option<f64> {
        (i + 1 < LATENCY_BUCKETS).then(|| (1u64 << i) as f64 * 1e-6)
    }
}

/// Nanoseconds since the process's first call: the one clock stamps use on every
/// thread.
pub(crate) fn clock_ns(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    now.saturating_duration_since(epoch).as_nanos() as u64
}

/// The handshake answers counted by status (the last slot counts any other status).
pub(crate) const HANDSHAKE_STATUSES: [u16; 7] = [101, 400, 403, 404, 426, 431, 503];

/// Index of `status` in a handshake count array.
pub(crate) fn handshake_slot(status: u16) -> usize {
    HANDSHAKE_STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(HANDSHAKE_STATUSES.len())
}

/// Close-code slots: 1000–1015 one each, then 3000–3999, 4000–4999, and any other.
pub(crate) const CLOSE_SLOTS: usize = 19;

/// Index of close code `code` in a close count array.
pub(crate) fn close_slot(code: u16) -> usize {
    match code {
        1000..=1015 => usize::from(code - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

/// The label of close slot `i`.
pub(crate) fn close_label(i: usize) -> String {
    match i {
        0..=15 => (1000 + i).to_string(),
        16 => "3xxx".into(),
        17 => "4xxx".into(),
        _ => "other".into(),
    }
}

/// One endpoint's connections on one worker.
#[derive(Debug, Default)]
pub(crate) struct EndpointCounts {
    /// Upgrades completed (101) since start.
    pub(crate) opened: Count,
    /// Open now (a gauge: opened less closed).
    pub(crate) open: Count,
}

/// One app's traffic through one worker (owned by the worker).
#[derive(Debug)]
pub(crate) struct AppTraffic {
    /// Messages from clients handed to the app.
    pub(crate) messages_in: Count,
    /// Their payload bytes.
    pub(crate) bytes_in: Count,
    /// Messages queued to clients (one per recipient).
    pub(crate) messages_out: Count,
    /// Their frame bytes.
    pub(crate) bytes_out: Count,
    /// Times a message found the app's inbound ring full (the client's reading paused).
    pub(crate) ring_full: Count,
    /// Clients closed for exceeding `max_outbound_buf_size` (1008).
    pub(crate) slow_closes: Count,
    /// Clients dropped to keep within `max_buffered_bytes` (1013).
    pub(crate) budget_closes: Count,
    /// Closes the app was told of, by [`close_slot`].
    pub(crate) closes: [Count; CLOSE_SLOTS],
    /// Per endpoint of the app, in config order.
    pub(crate) endpoints: Box<[EndpointCounts]>,
}

impl AppTraffic {
    fn new(endpoints: usize) -> AppTraffic {
        AppTraffic {
            messages_in: Count::default(),
            bytes_in: Count::default(),
            messages_out: Count::default(),
            bytes_out: Count::default(),
            ring_full: Count::default(),
            slow_closes: Count::default(),
            budget_closes: Count::default(),
            closes: Default::default(),
            endpoints: (0..endpoints).map(|_| EndpointCounts::default()).collect(),
        }
    }
}

/// What one worker counts outside any app.
#[derive(Debug, Default)]
pub(crate) struct WorkerCounts {
    /// Handshake answers by [`handshake_slot`].
    pub(crate) handshakes: [Count; HANDSHAKE_STATUSES.len() + 1],
    /// App send → socket write, sampled.
    pub(crate) send_to_write: Latency,
}

/// What one app thread counts.
#[derive(Debug, Default)]
pub(crate) struct AppStats {
    /// Socket read → the app's callback, sampled.
    pub(crate) read_to_callback: Latency,
    /// Times the app's send waited for a full outbound ring.
    pub(crate) ring_full: Count,
}

/// An app as metrics label it.
#[derive(Debug, Clone)]
pub(crate) struct AppLabel {
    /// Its name.
    pub(crate) name: String,
    /// Its endpoints' URLs as configured.
    pub(crate) endpoints: Vec<String>,
}

/// A block of counts one thread writes, on cache lines of its own.
pub(crate) type Owned<T> = Arc<CachePadded<T>>;

/// A ring whose fill metrics report.
pub(crate) struct RingGauge {
    /// The worker at one end.
    pub(crate) worker: usize,
    /// The app at the other.
    pub(crate) app: usize,
    /// `inbound` (worker → app) or `outbound` (app → worker).
    pub(crate) direction: &'static str,
    /// Reads its fill.
    pub(crate) observer: ringsocket_ring::Observer,
}

impl std::fmt::Debug for RingGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ring {}/{}", self.direction, self.worker, self.app)
    }
}

/// The counts of every thread, and the server's state, shared with whoever reads them.
#[derive(Debug)]
pub(crate) struct ServerStats {
    /// When the server started.
    pub(crate) started: Instant,
    /// Every app, by app index.
    pub(crate) apps: Vec<AppLabel>,
    /// One block per worker.
    pub(crate) workers: Vec<Owned<WorkerCounts>>,
    /// One block per worker and app: `traffic[w][a]`.
    pub(crate) traffic: Vec<Vec<Owned<AppTraffic>>>,
    /// One block per app thread.
    pub(crate) app_threads: Vec<Owned<AppStats>>,
    /// Whether latency samples are taken (the metrics listener is on).
    pub(crate) sampling: bool,
    /// Every ring.
    pub(crate) rings: Vec<RingGauge>,
    /// The configuration file.
    pub(crate) config_path: String,
    /// Set once every thread runs; cleared when the server stops.
    pub(crate) ready: AtomicBool,
    /// Set while draining (new upgrades get 503).
    pub(crate) draining: AtomicBool,
}

impl ServerStats {
    /// Empty counts for `workers` workers and these apps.
    pub(crate) fn new(
        workers: usize,
        apps: Vec<AppLabel>,
        sampling: bool,
        config_path: String,
    ) -> ServerStats {
        ServerStats {
            started: Instant::now(),
            workers: (0..workers)
                .map(|_| Arc::new(CachePadded::new(WorkerCounts::default())))
                .collect(),
            traffic: (0..workers)
                .map(|_| {
                    apps.iter()
                        .map(|a| Arc::new(CachePadded::new(AppTraffic::new(a.endpoints.len()))))
                        .collect()
                })
                .collect(),
            app_threads: (0..apps.len())
                .map(|_| Arc::new(CachePadded::new(AppStats::default())))
                .collect(),
            apps,
            sampling,
            rings: Vec::new(),
            config_path,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// The sum over workers of `f` of app `a`'s traffic there.
    pub(crate) fn app_sum(&self, a: usize, f: impl Fn(&AppTraffic) -> u64) -> u64 {
        self.traffic.iter().map(|w| f(&w[a])).sum()
    }

    /// Serving and not draining (what `/ready` says).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Relaxed) && !self.draining.load(Relaxed)
    }

    /// Open connections, all apps and endpoints.
    pub(crate) fn open_connections(&self) -> u64 {
        self.traffic
            .iter()
            .flatten()
            .flat_map(|t| t.endpoints.iter())
            .map(|e| e.open.get())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_powers_of_two_microseconds() {
        let l = Latency::default();
        for ns in [0, 1_000, 1_001, 2_000, 3_000, 1_000_000, 5_000_000_000] {
            l.record(ns);
        }
        let mut counts = [0; LATENCY_BUCKETS];
        let sum = l.add_to(&mut counts);
        assert_eq!(sum, 5_001_007_001);
        // 0 and 1 µs → ≤ 1 µs; 1.001 and 2 µs → ≤ 2 µs; 3 µs → ≤ 4 µs;
        // 1 ms → ≤ 1.024 ms; 5 s → +Inf.
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 2);
        assert_eq!(counts[2], 1);
        assert_eq!(counts[10], 1);
        assert_eq!(counts[LATENCY_BUCKETS - 1], 1);
        assert_eq!(Latency::bound_s(10), Some(1024e-6));
        assert_eq!(Latency::bound_s(LATENCY_BUCKETS - 1), None);
    }

    #[test]
    fn slots_cover_every_status_and_code() {
        assert_eq!(handshake_slot(101), 0);
        assert_eq!(handshake_slot(503), 6);
        assert_eq!(handshake_slot(418), 7);
        assert_eq!(close_slot(1000), 0);
        assert_eq!(close_label(close_slot(1015)), "1015");
        assert_eq!(close_label(close_slot(4321)), "4xxx");
        assert_eq!(close_label(close_slot(2000)), "other");
    }
}
