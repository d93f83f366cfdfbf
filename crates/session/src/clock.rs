//! [`Tick`]: the time as sessions keep it, 8 bytes instead of an `Instant`'s 16
//! (connections are many, and each keeps several times).

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// A point in time: milliseconds since a worker's [`Epoch`] (plus one, so that
/// `Option<Tick>` is as small as a `Tick`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(NonZeroU64);

/// The instant ticks count from; each worker has one, taken when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(Instant);

impl Epoch {
    /// An epoch at `start` (no tick may be earlier).
    pub fn new(start: Instant) -> Epoch {
        Epoch(start)
    }

    /// `now` as a tick (an instant before the epoch counts as the epoch).
    #[inline]
    pub fn tick(self, now: Instant) -> Tick {
        let ms = now.saturating_duration_since(self.0).as_millis();
        Tick::from_millis(u64::try_from(ms).unwrap_or(u64::MAX - 1))
    }

    /// The instant of `tick`.
    pub fn instant(self, tick: Tick) -> Instant {
        self.0 + Duration::from_millis(tick.millis())
    }
}

impl Tick {
    /// The epoch itself.
    pub const ZERO: Tick = Tick(NonZeroU64::MIN);

    /// `ms` milliseconds after the epoch.
    #[inline]
    pub fn from_millis(ms: u64) -> Tick {
        Tick(NonZeroU64::MIN.saturating_add(ms))
    }

    /// Milliseconds after the epoch.
    #[inline]
    pub fn millis(self) -> u64 {
        self.0.get() - 1
    }

    /// The time from `earlier` to `self` (zero if `earlier` is later).
    #[inline]
    pub fn since(self, earlier: Tick) -> Duration {
        Duration::from_millis(self.millis().saturating_sub(earlier.millis()))
    }
}

impl std::ops::Add<Duration> for Tick {
    type Output = Tick;

    #[inline]
    fn add(self, d: Duration) -> Tick {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Tick::from_millis(self.millis().saturating_add(ms))
    }
}

impl std::ops::AddAssign<Duration> for Tick {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_and_order() {
        let start = Instant::now();
        let epoch = Epoch::new(start);
        let t = epoch.tick(start + Duration::from_millis(1500));
        assert_eq!(t.millis(), 1500);
        assert_eq!(epoch.instant(t), start + Duration::from_millis(1500));
        assert_eq!(
            epoch.tick(start - Duration::from_secs(1).min(start.elapsed())),
            Tick::ZERO
        );
        assert!(t + Duration::from_secs(1) > t);
        assert_eq!(
            (t + Duration::from_secs(2)).since(t),
            Duration::from_secs(2)
        );
        assert_eq!(std::mem::size_of::<Option<Tick>>(), 8);
    }
}
