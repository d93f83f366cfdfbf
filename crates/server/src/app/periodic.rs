//! The adaptive periodic timer (`RS_TIMER(cb, min, incr, max)` in RingSocket 1).
//!
//! It first fires `min` after it starts. After each call its callback's return value
//! sets the next interval: `HOLD` keeps it, `MIN` resets it, `INCR` adds `incr` (up to
//! `max`), `MAX` jumps to `max`, `NEVER` stops the timer. Any inbound record resets the
//! interval to `min` (counted from the last call), so an app polls often while busy
//! and backs off while idle.

use crate::plugin::PeriodicSpec;
use ringsocket_abi as abi;
use std::ffi::c_int;
use std::time::Instant;

/// A running periodic timer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Periodic {
    spec: PeriodicSpec,
    interval: std::time::Duration,
    /// The last call (or the start).
    last: Instant,
}

impl Periodic {
    /// A timer that first fires `spec.min` after `now`.
    pub(crate) fn start(spec: PeriodicSpec, now: Instant) -> Periodic {
        Periodic {
            spec,
            interval: spec.min,
            last: now,
        }
    }

    /// When it fires next.
    pub(crate) fn due(&self) -> Instant {
        self.last + self.interval
    }

    /// Traffic arrived: back to the shortest interval.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.interval = self.spec.min;
    }

    /// The callback ran at `now` and returned `decision`: the timer to keep, if any.
    pub(crate) fn after_call(mut self, now: Instant, decision: c_int) -> Option<Periodic> {
        self.last = now;
        self.interval = match decision {
            abi::RS_TIMER_MIN => self.spec.min,
            abi::RS_TIMER_INCR => (self.interval + self.spec.incr).min(self.spec.max),
            abi::RS_TIMER_MAX => self.spec.max,
            abi::RS_TIMER_NEVER => return None,
            // HOLD, and anything unknown (an error is logged by the caller).
            _ => self.interval,
        };
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_interval_follows_the_callbacks_decisions() {
        let ms = Duration::from_millis;
        let spec = PeriodicSpec::from_micros(10_000, 5_000, 22_000).unwrap();
        let t0 = Instant::now();
        let p = Periodic::start(spec, t0);
        assert_eq!(p.due(), t0 + ms(10));
        let p = p.after_call(t0 + ms(10), abi::RS_TIMER_INCR).unwrap();
        assert_eq!(p.due(), t0 + ms(25));
        let p = p.after_call(t0 + ms(25), abi::RS_TIMER_INCR).unwrap();
        assert_eq!(p.due(), t0 + ms(45), "20 ms");
        let p = p.after_call(t0 + ms(45), abi::RS_TIMER_INCR).unwrap();
        assert_eq!(p.due(), t0 + ms(67), "capped at 22 ms");
        let mut p = p.after_call(t0 + ms(67), abi::RS_TIMER_HOLD).unwrap();
        assert_eq!(p.due(), t0 + ms(89));
        p.reset();
        assert_eq!(p.due(), t0 + ms(77), "traffic: min after the last call");
        let p = p.after_call(t0 + ms(77), abi::RS_TIMER_MAX).unwrap();
        assert_eq!(p.due(), t0 + ms(99));
        let p = p.after_call(t0 + ms(99), abi::RS_TIMER_MIN).unwrap();
        assert_eq!(p.due(), t0 + ms(109));
        assert!(p.after_call(t0 + ms(109), abi::RS_TIMER_NEVER).is_none());
    }
}
