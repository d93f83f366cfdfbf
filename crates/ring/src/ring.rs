//! The SPSC record ring.
//!
//! Layout: a byte buffer of power-of-two capacity and two monotonically increasing byte
//! positions, `tail` (written only by the producer) and `head` (written only by the
//! consumer). Bytes `head..tail` hold published records; bytes `tail..head + capacity`
//! are free and belong to the producer. Each record is an 8-byte header (`u32` payload
//! length, `u32` flags) followed by the payload, padded to a multiple of 8. A record
//! never wraps: when it does not fit before the end of the buffer, the producer writes a
//! `SKIP` header covering the rest and puts the record at the start.
//!
//! Orderings: the producer fills a record and then stores `tail` with `Release`; the
//! consumer loads `tail` with `Acquire` before reading, so it sees the filled bytes. The
//! consumer reads a record and then stores `head` with `Release`; the producer loads
//! `head` with `Acquire` before reusing the space, so the consumer's reads happen before
//! the producer's overwrite. Each side caches the other's position and reloads it only
//! when the ring looks full (producer) or empty (consumer), as rtrb does.

use crate::buffer::{Buffer, ALIGN};
use crate::sync::{Arc, AtomicBool, AtomicUsize};
use crossbeam_utils::CachePadded;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// Bytes a record takes beyond its payload, at most (header plus alignment padding).
pub const RECORD_OVERHEAD: usize = HEADER + ALIGN - 1;

const HEADER: usize = 8;
const FLAG_SKIP: u32 = 1;

/// Room at a ring's tail claimed by [`Producer::try_reserve`] and not yet published.
#[derive(Debug)]
#[must_use = "a reservation is published only by Producer::commit"]
pub struct Reservation {
    /// The producer's tail when it was made (no record may come in between).
    tail: usize,
    /// Where the record's header goes.
    at: usize,
    max_len: usize,
}

impl Reservation {
    /// The most payload bytes it holds.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// Returned by [`Producer::try_push_with`] when the record does not fit right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

struct Shared {
    /// Consumer position: every byte before it has been read and may be reused.
    head: CachePadded<AtomicUsize>,
    /// Producer position: every byte before it holds a published record.
    tail: CachePadded<AtomicUsize>,
    /// Set by a producer that found the ring full and wants to hear when room frees up.
    producer_waiting: CachePadded<AtomicBool>,
    buffer: Buffer,
}

/// Creates a ring of at least `capacity` bytes (rounded up to a power of two, at least
/// 64) and returns its two ends.
pub fn channel(capacity: usize) -> (Producer, Consumer) {
    let capacity = capacity.max(64).next_power_of_two();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        producer_waiting: CachePadded::new(AtomicBool::new(false)),
        buffer: Buffer::new(capacity),
    });
    let producer = Producer {
        shared: shared.clone(),
        tail: 0,
        cached_head: 0,
        mask: capacity - 1,
        // A record that does not fit before the end needs `to_end + need` free bytes.
        // With `need <= capacity / 2` an empty ring always has them, at any offset.
        max_record_len: (capacity / 2 - HEADER).min(u32::MAX as usize),
    };
    let consumer = Consumer {
        shared,
        head: 0,
        cached_tail: 0,
        mask: capacity - 1,
    };
    (producer, consumer)
}

fn padded(len: usize) -> usize {
    (len + ALIGN - 1) & !(ALIGN - 1)
}

/// A third party's view of a ring's fill level (for metrics): it only loads the two
/// positions, so it never disturbs either end beyond sharing their cache lines for a
/// moment.
#[derive(Clone)]
pub struct Observer {
    shared: Arc<Shared>,
}

impl Observer {
    /// Bytes published and not yet read, and the capacity. Both positions are loaded
    /// `Relaxed` (the figure is a snapshot; `head` is loaded first, so `used` is never
    /// below what was used at the first load, nor negative).
    pub fn fill(&self) -> (usize, usize) {
        let head = self.shared.head.load(Relaxed);
        let tail = self.shared.tail.load(Relaxed);
        let capacity = self.shared.buffer.capacity();
        (tail.wrapping_sub(head).min(capacity), capacity)
    }
}

/// The writing end of a ring. `Send` but not `Sync`: exactly one thread produces.
pub struct Producer {
    shared: Arc<Shared>,
    /// Our copy of `shared.tail` (we are its only writer).
    tail: usize,
    /// The last `shared.head` we loaded; the real one is never behind it.
    cached_head: usize,
    mask: usize,
    /// See [`Producer::max_record_len`].
    max_record_len: usize,
}

impl Producer {
    /// The ring's capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// A handle that reads how full the ring is, from any thread.
    pub fn observer(&self) -> Observer {
        Observer {
            shared: self.shared.clone(),
        }
    }

    /// The largest payload a record can have in this ring. Callers must never push more.
    #[inline]
    pub fn max_record_len(&self) -> usize {
        self.max_record_len
    }

    fn free(&self) -> usize {
        self.capacity() - self.tail.wrapping_sub(self.cached_head)
    }

    /// Appends a record of `len` bytes, which `fill` writes in place, and publishes it.
    ///
    /// # Errors
    /// [`Full`] when there is not room right now; nothing is written and `fill` is not
    /// called.
    ///
    /// # Panics
    /// If `len` exceeds [`Producer::max_record_len`] (callers bound their records).
    #[inline]
    pub fn try_push_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), Full> {
        let at = self.claim(len)?;
        // SAFETY: `claim` checked that `at + HEADER .. + len` is free space, in bounds.
        fill(unsafe { self.shared.buffer.slice_mut(at + HEADER, len) });
        self.publish(at, len);
        Ok(())
    }

    /// Claims room at the tail for one record of up to `max_len` bytes, without
    /// publishing anything: the caller fills [`Producer::reserved`] (or writes through
    /// [`Producer::reserved_ptr`]) at its own pace and then [`Producer::commit`]s the
    /// length it wrote. Dropping the reservation instead abandons it. Until one of
    /// these, no other record may be pushed (commit checks it).
    ///
    /// # Errors
    /// [`Full`] when there is not room for `max_len` right now.
    ///
    /// # Panics
    /// If `max_len` exceeds [`Producer::max_record_len`].
    pub fn try_reserve(&mut self, max_len: usize) -> Result<Reservation, Full> {
        let at = self.claim(max_len)?;
        Ok(Reservation {
            tail: self.tail,
            at,
            max_len,
        })
    }

    /// The payload bytes `reservation` claimed (`max_len` of them).
    pub fn reserved(&mut self, reservation: &Reservation) -> &mut [u8] {
        assert_eq!(reservation.tail, self.tail, "a stale reservation");
        // SAFETY: `at + HEADER .. + max_len` is free space that `claim` checked and
        // nothing else has claimed since (the tail is unchanged), so it is ours; it is in
        // bounds because `HEADER + padded(max_len) <= capacity - at`.
        unsafe {
            self.shared
                .buffer
                .slice_mut(reservation.at + HEADER, reservation.max_len)
        }
    }

    /// [`Producer::reserved`] as a raw pointer, for writers that outlive a borrow (the
    /// app API hands it to plugin code). It stays valid for `max_len` bytes until the
    /// reservation is committed or another record is reserved or pushed.
    pub fn reserved_ptr(&mut self, reservation: &Reservation) -> *mut u8 {
        self.reserved(reservation).as_mut_ptr()
    }

    /// Publishes the reserved record with its first `len` bytes as the payload.
    ///
    /// # Panics
    /// If `len` exceeds the reservation, or another record was pushed since it was made.
    pub fn commit(&mut self, reservation: Reservation, len: usize) {
        assert!(len <= reservation.max_len, "commit beyond the reservation");
        assert_eq!(reservation.tail, self.tail, "a stale reservation");
        self.publish(reservation.at, len);
    }

    /// Where a record of up to `max_len` bytes goes (its header's offset), if there is
    /// room for it now: at the tail, or at 0 after a SKIP when it does not fit before
    /// the end of the buffer.
    #[inline]
    fn claim(&mut self, max_len: usize) -> Result<usize, Full> {
        assert!(
            max_len <= self.max_record_len,
            "record of {max_len} bytes does not fit the ring"
        );
        let need = HEADER + padded(max_len);
        let offset = self.tail & self.mask;
        let to_end = self.capacity() - offset;
        let skip = need > to_end;
        let total = if skip { to_end + need } else { need };
        if self.free() < total {
            // Acquire: the consumer's reads of the bytes it released happen before our
            // writes to them.
            self.cached_head = self.shared.head.load(Acquire);
            if self.free() < total {
                return Err(Full);
            }
        }
        Ok(if skip { 0 } else { offset })
    }

    /// Publishes the record claimed at `at` with a payload of `len` bytes (already
    /// written), preceded by a SKIP if it starts at 0 while the tail does not.
    #[inline]
    fn publish(&mut self, at: usize, len: usize) {
        let offset = self.tail & self.mask;
        let mut total = HEADER + padded(len);
        if at != offset {
            let to_end = self.capacity() - offset;
            // SAFETY: `offset..capacity` is free space the claim covered.
            let skip = unsafe { self.shared.buffer.slice_mut(offset, HEADER) };
            write_header(skip, (to_end - HEADER) as u32, FLAG_SKIP);
            total += to_end;
        }
        // SAFETY: the record's header slot is free space the claim covered.
        let header = unsafe { self.shared.buffer.slice_mut(at, HEADER) };
        write_header(header, len as u32, 0);
        self.tail = self.tail.wrapping_add(total);
        // Release: the record's bytes are visible to whoever Acquires this tail.
        self.shared.tail.store(self.tail, Release);
    }

    /// Asks the consumer to report freed room: after this, [`Consumer::take_producer_waiting`]
    /// returns `true` once. Call it after a push failed with [`Full`], then check again
    /// with `try_push_with` before sleeping (the consumer may have freed room in between).
    pub fn set_waiting(&self) {
        // SeqCst (with the consumer's SeqCst swap after its head store) orders this flag
        // against the head store: either we see the new head on our re-check, or the
        // consumer sees the flag.
        self.shared.producer_waiting.store(true, SeqCst);
        crate::sync::fence(SeqCst);
    }
}

/// The reading end of a ring. `Send` but not `Sync`: exactly one thread consumes.
pub struct Consumer {
    shared: Arc<Shared>,
    /// Our copy of `shared.head` (we are its only writer).
    head: usize,
    /// The last `shared.tail` we loaded; the real one is never behind it.
    cached_tail: usize,
    mask: usize,
}

impl Consumer {
    /// Whether no record is published right now.
    pub fn is_empty(&mut self) -> bool {
        if self.head != self.cached_tail {
            return false;
        }
        // Acquire: pairs with the producer's Release store of `tail`.
        self.cached_tail = self.shared.tail.load(Acquire);
        self.head == self.cached_tail
    }

    /// Reads the oldest record in place with `read`, then releases its space.
    ///
    /// Returns `None`, without calling `read`, when the ring is empty.
    pub fn pop_with<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.is_empty() {
            return None;
        }
        let mut at = self.head & self.mask;
        // SAFETY: `head..tail` holds published records (Acquire above), the producer
        // doesn't touch them, and every record starts with a whole header.
        let (mut len, flags) = read_header(unsafe { self.shared.buffer.slice(at, HEADER) });
        let mut consumed = 0;
        if flags & FLAG_SKIP != 0 {
            // The producer publishes the SKIP and the record after it with one store.
            consumed = HEADER + len;
            at = 0;
            // SAFETY: as above; the record after a SKIP starts at offset 0.
            len = read_header(unsafe { self.shared.buffer.slice(0, HEADER) }).0;
        }
        consumed += HEADER + padded(len);
        // SAFETY: the payload lies inside the published record.
        let result = read(unsafe { self.shared.buffer.slice(at + HEADER, len) });
        self.head = self.head.wrapping_add(consumed);
        // Release: our reads of the record happen before the producer reuses its space.
        self.shared.head.store(self.head, Release);
        Some(result)
    }

    /// Returns `true` once after the producer called [`Producer::set_waiting`], so the
    /// caller can wake it. Call it after releasing records.
    pub fn take_producer_waiting(&self) -> bool {
        // SeqCst fence: orders our earlier head store before this load (see set_waiting).
        crate::sync::fence(SeqCst);
        self.shared.producer_waiting.load(Relaxed)
            && self.shared.producer_waiting.swap(false, SeqCst)
    }
}

fn write_header(header: &mut [u8], len: u32, flags: u32) {
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&flags.to_le_bytes());
}

fn read_header(header: &[u8]) -> (usize, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let flags = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len as usize, flags)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fills_wraps_and_refuses_when_full() {
        let (mut p, mut c) = channel(64);
        assert_eq!(p.capacity(), 64);
        assert_eq!(p.max_record_len(), 24);
        p.try_push_with(20, |b| b.fill(1)).unwrap(); // 8 + 24 = 32
        p.try_push_with(20, |b| b.fill(2)).unwrap(); // 64
        assert_eq!(p.try_push_with(0, |_| {}), Err(Full));
        assert_eq!(c.pop_with(|r| r.to_vec()), Some(vec![1; 20]));
        // 32 bytes free at the start, 0 at the end: fits exactly, no SKIP needed.
        p.try_push_with(24, |b| b.fill(3)).unwrap();
        assert_eq!(c.pop_with(|r| r.to_vec()), Some(vec![2; 20]));
        assert_eq!(c.pop_with(|r| r.to_vec()), Some(vec![3; 24]));
        assert_eq!(c.pop_with(|r| r.len()), None);
        // Now head = tail = 96 (offset 32): a 24-byte record fits before the end.
        p.try_push_with(8, |b| b.fill(4)).unwrap(); // offset 32..48
                                                    // 16 left before the end, record needs 32: SKIP 16, then 0..32; free = 64-16-16-32 = 0.
        p.try_push_with(24, |b| b.fill(5)).unwrap();
        assert_eq!(p.try_push_with(0, |_| {}), Err(Full));
        assert_eq!(c.pop_with(|r| r.to_vec()), Some(vec![4; 8]));
        assert_eq!(c.pop_with(|r| r.to_vec()), Some(vec![5; 24]));
        assert!(c.is_empty());
    }

    #[test]
    fn a_reservation_commits_less_than_it_claimed_or_is_abandoned() {
        let (mut p, mut c) = channel(64);
        // Claim 24, write 5: the record takes 8 + 8 bytes, not 8 + 24.
        let r = p.try_reserve(24).unwrap();
        assert_eq!(r.max_len(), 24);
        p.reserved(&r)[..5].copy_from_slice(b"hello");
        p.commit(r, 5);
        assert_eq!(c.pop_with(|b| b.to_vec()), Some(b"hello".to_vec()));
        // Abandoned: nothing is published, and the room is claimed again.
        let r = p.try_reserve(24).unwrap();
        p.reserved(&r).fill(9);
        drop(r);
        assert!(c.is_empty());
        // Move to offset 48, where a 24-byte claim needs a SKIP.
        p.try_push_with(24, |b| b.fill(1)).unwrap(); // 16..48
        assert_eq!(c.pop_with(|b| b.len()), Some(24));
        let r = p.try_reserve(24).unwrap(); // 16 bytes left before the end: SKIP, then 0..32
        p.reserved(&r)[..3].copy_from_slice(b"abc");
        p.commit(r, 3);
        assert_eq!(c.pop_with(|b| b.to_vec()), Some(b"abc".to_vec()));
        assert!(c.is_empty());
        // The SKIP and the record were consumed: head and tail meet at offset 16.
        let r = p.try_reserve(24).unwrap();
        p.commit(r, 24);
        assert_eq!(c.pop_with(|b| b.len()), Some(24));
        assert!(c.is_empty());
    }

    #[test]
    #[should_panic(expected = "stale reservation")]
    fn a_push_between_reserve_and_commit_is_caught() {
        let (mut p, _c) = channel(256);
        let r = p.try_reserve(16).unwrap();
        p.try_push_with(8, |_| {}).unwrap();
        p.commit(r, 16);
    }

    #[test]
    fn waiting_flag_is_reported_once() {
        let (p, c) = channel(64);
        assert!(!c.take_producer_waiting());
        p.set_waiting();
        assert!(c.take_producer_waiting());
        assert!(!c.take_producer_waiting());
    }

    /// Millions of records of random sizes through a small ring, across two threads,
    /// each carrying its sequence number and a checksum.
    #[test]
    fn stress_random_sizes_with_checksums() {
        // Miri interprets every instruction: there, fewer and smaller records (a
        // 256-byte ring), which still wrap around many times.
        let records: u64 = if cfg!(miri) { 300 } else { 2_000_000 };
        let (mut p, mut c) = channel(if cfg!(miri) { 256 } else { 4096 });
        let max = p.max_record_len();
        let producer = std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            for seq in 0..records {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let len = 16 + (rng as usize % (max - 16));
                let fill = |b: &mut [u8]| {
                    b[..8].copy_from_slice(&seq.to_le_bytes());
                    for (i, byte) in b[16..].iter_mut().enumerate() {
                        *byte = (seq as usize + i) as u8;
                    }
                    let sum: u64 = b[16..].iter().map(|&x| u64::from(x)).sum();
                    b[8..16].copy_from_slice(&sum.to_le_bytes());
                };
                while p.try_push_with(len, fill).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut expected = 0;
        while expected < records {
            let got = c.pop_with(|r| {
                let seq = u64::from_le_bytes(r[..8].try_into().unwrap());
                let sum = u64::from_le_bytes(r[8..16].try_into().unwrap());
                let actual: u64 = r[16..].iter().map(|&x| u64::from(x)).sum();
                assert_eq!(sum, actual, "checksum of record {seq}");
                seq
            });
            if let Some(seq) = got {
                assert_eq!(seq, expected, "records arrive in order, none lost");
                expected += 1;
            }
        }
        producer.join().unwrap();
        assert!(c.is_empty());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// Records pushed through a ring that wraps and fills arrive whole, in order, once.
    #[test]
    fn records_arrive_whole_and_in_order() {
        loom::model(|| {
            let (mut p, mut c) = channel(64);
            let producer = loom::thread::spawn(move || {
                for i in 0..3u8 {
                    let len = 8 + 8 * usize::from(i);
                    while p.try_push_with(len, |b| b.fill(i)).is_err() {
                        loom::thread::yield_now();
                    }
                }
            });
            let mut next = 0u8;
            while next < 3 {
                match c.pop_with(|r| (r.len(), r.iter().all(|&b| b == r[0]), r.first().copied())) {
                    Some((len, uniform, first)) => {
                        assert_eq!(len, 8 + 8 * usize::from(next));
                        assert!(uniform);
                        assert_eq!(first, Some(next));
                        next += 1;
                    }
                    None => loom::thread::yield_now(),
                }
            }
            producer.join().unwrap();
        });
    }

    /// A producer that finds the ring full and sets its waiting flag is always told
    /// about freed room: either its re-check succeeds or the consumer sees the flag.
    #[test]
    fn full_ring_wakeup_is_never_lost() {
        loom::model(|| {
            let (mut p, mut c) = channel(64);
            p.try_push_with(24, |_| {}).unwrap();
            p.try_push_with(24, |_| {}).unwrap();
            let consumer = loom::thread::spawn(move || {
                c.pop_with(|_| ()).unwrap();
                c.take_producer_waiting()
            });
            let pushed_now = p.try_push_with(24, |_| {}).is_ok() || {
                p.set_waiting();
                p.try_push_with(24, |_| {}).is_ok()
            };
            let consumer_saw_flag = consumer.join().unwrap();
            assert!(
                pushed_now || consumer_saw_flag,
                "the producer would sleep forever"
            );
        });
    }
}
