//! The sleep/wake handshake between a consumer thread and the producers that feed it.
//!
//! A consumer that finds nothing to do calls [`SleepState::announce`], checks its rings
//! once more, and only then sleeps (on the futex with [`SleepState::park`], or in
//! `epoll_wait` for a worker). A producer publishes its records and then calls
//! [`SleepState::wake_needed`]; only if that returns `true` does it make a syscall
//! (`futex_wake` via [`SleepState::unpark`], or a `mio::Waker`). So a busy consumer costs
//! its producers no syscalls at all.
//!
//! Why SeqCst: each side stores one thing and then loads the other's (the consumer stores
//! "sleeping" then loads the ring tails; the producer stores a tail then loads
//! "sleeping"). Release/Acquire allows both loads to miss both stores, which would be a
//! lost wakeup. A SeqCst fence on each side, between its store and its load, forbids
//! that outcome.

use crate::sync::{fence, AtomicU32};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Duration;

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;

/// Whether a consumer is (about to be) asleep; also its futex word.
#[derive(Debug)]
pub struct SleepState {
    word: AtomicU32,
}

impl Default for SleepState {
    fn default() -> Self {
        Self::new()
    }
}

impl SleepState {
    /// An awake consumer.
    pub fn new() -> Self {
        SleepState {
            word: AtomicU32::new(AWAKE),
        }
    }

    /// Consumer: "I am about to sleep". Re-check every input after this and before
    /// sleeping; call [`SleepState::withdraw`] if there is work after all.
    pub fn announce(&self) {
        self.word.store(SLEEPING, Relaxed);
        // SeqCst fence: our store above is ordered before the loads of the re-check.
        fence(SeqCst);
    }

    /// Consumer: "I am awake after all" (or: "I woke up").
    pub fn withdraw(&self) {
        self.word.store(AWAKE, Relaxed);
    }

    /// Producer, after publishing: whether the consumer sleeps and must be woken. Returns
    /// `true` to exactly one caller per sleep, which must then wake it.
    pub fn wake_needed(&self) -> bool {
        // SeqCst fence: our publishing stores are ordered before this load.
        fence(SeqCst);
        self.word.load(Relaxed) == SLEEPING && self.word.swap(AWAKE, SeqCst) == SLEEPING
    }

    /// Producer: wakes a consumer parked in [`SleepState::park`] if it announced sleep.
    /// Returns whether a wake-up was needed.
    pub fn unpark(&self) -> bool {
        let needed = self.wake_needed();
        if needed {
            futex::wake(&self.word);
        }
        needed
    }

    /// Consumer: sleeps until [`SleepState::unpark`] or the timeout, if still announced.
    /// May return early (spuriously); the caller re-checks its inputs either way.
    pub fn park(&self, timeout: Option<Duration>) {
        futex::wait(&self.word, SLEEPING, timeout);
        self.withdraw();
    }
}

#[cfg(not(loom))]
mod futex {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// Sleeps while `*word == expected`, for at most `timeout`.
    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: FUTEX_WAIT reads the aligned u32 behind `word`, which outlives the
        // call, and `ts_ptr` is null or points at a live timespec. EINTR, EAGAIN and
        // ETIMEDOUT all mean "return and re-check", so the result is not needed.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                ts_ptr,
            );
        }
    }

    /// Wakes one thread sleeping on `word`.
    pub(super) fn wake(word: &AtomicU32) {
        // SAFETY: FUTEX_WAKE only uses the address of `word` as a key.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
    }
}

#[cfg(loom)]
mod futex {
    //! Under loom the futex is modelled by yielding: a "sleeping" thread re-checks.
    use crate::sync::AtomicU32;
    use std::time::Duration;

    pub(super) fn wait(_word: &AtomicU32, _expected: u32, _timeout: Option<Duration>) {
        loom::thread::yield_now();
    }

    pub(super) fn wake(_word: &AtomicU32) {}
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn park_times_out_and_unpark_wakes() {
        let s = Arc::new(SleepState::new());
        s.announce();
        let t = Instant::now();
        s.park(Some(Duration::from_millis(50)));
        assert!(t.elapsed() >= Duration::from_millis(40));
        assert!(!s.wake_needed(), "park withdraws the announcement");

        s.announce();
        let s2 = s.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s2.unpark()
        });
        let t = Instant::now();
        s.park(Some(Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(waker.join().unwrap());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{Arc, AtomicBool};
    use std::sync::atomic::Ordering::{Acquire, Release};

    /// A consumer that announces sleep and then finds no work is always woken by a
    /// producer that publishes work: no lost wakeup.
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let state = Arc::new(SleepState::new());
            let work = Arc::new(AtomicBool::new(false));
            let (s, w) = (state.clone(), work.clone());
            let producer = loom::thread::spawn(move || {
                w.store(true, Release);
                s.wake_needed()
            });
            state.announce();
            let found_work = work.load(Acquire);
            if found_work {
                state.withdraw();
            }
            let woke = producer.join().unwrap();
            assert!(
                found_work || woke,
                "consumer sleeps with work pending and nobody wakes it"
            );
        });
    }
}
