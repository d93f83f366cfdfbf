//! The bytes waiting to be written to one client, with a cap on the memory they hold;
//! and [`LazyVec`], a buffer that costs one pointer while unused.

/// A connection's output: bytes `pos..` of `buf` are unsent.
///
/// Memory held is bounded, not just the unsent bytes: the buffer is compacted (its
/// unsent tail moved to the front) before it would grow, and it never grows beyond
/// the cap it is given, so a client that reads steadily but keeps data in flight holds
/// at most `cap` bytes however much passes through. A released buffer costs one
/// pointer, so an idle connection's output costs 8 bytes.
#[derive(Debug, Default)]
pub struct OutBuf(Option<Box<Output>>);

#[derive(Debug, Default)]
struct Output {
    buf: Vec<u8>,
    pos: usize,
}

/// Returned when queuing bytes would take a connection past its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// Capacity kept by an emptied buffer; anything larger is released.
const KEEP: usize = 16 * 1024;

impl OutBuf {
    /// Bytes queued and not yet written.
    #[inline]
    pub fn unsent(&self) -> usize {
        self.0.as_ref().map_or(0, |o| o.buf.len() - o.pos)
    }

    /// Whether nothing is waiting.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.unsent() == 0
    }

    /// The heap bytes this buffer holds.
    #[inline]
    pub fn held(&self) -> usize {
        self.0.as_ref().map_or(0, |o| o.buf.capacity())
    }

    /// The unsent bytes, to write to the socket.
    #[inline]
    pub fn unsent_bytes(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |o| &o.buf[o.pos..])
    }

    /// Records that `n` unsent bytes were written. Once everything is written the
    /// buffer is reset, and its memory released if a burst made it large.
    #[inline]
    pub fn advance(&mut self, n: usize) {
        let Some(o) = self.0.as_mut() else {
            debug_assert_eq!(n, 0);
            return;
        };
        o.pos += n;
        debug_assert!(o.pos <= o.buf.len());
        if o.pos == o.buf.len() {
            o.buf.clear();
            o.pos = 0;
            if o.buf.capacity() > KEEP {
                self.0 = None;
            }
        }
    }

    /// Asks the CPU to start loading the buffer's bookkeeping, so that a push a few
    /// deliveries later does not wait for memory (see [`prefetch`]).
    #[inline(always)]
    pub fn prefetch_header(&self) {
        if let Some(o) = &self.0 {
            prefetch(&**o);
        }
    }

    /// Asks the CPU to start loading where the next push will write.
    #[inline(always)]
    pub fn prefetch_tail(&self) {
        if let Some(o) = &self.0 {
            prefetch(o.buf.as_ptr().wrapping_add(o.buf.len()));
        }
    }

    /// Releases all memory (the buffer must be empty).
    pub fn release(&mut self) {
        debug_assert!(self.is_empty());
        self.0 = None;
    }

    /// Appends `parts` (a frame's header and payload), unless the unsent bytes would
    /// then exceed `cap`. Makes room by compacting first; grows at most to `cap`.
    ///
    /// # Errors
    /// [`Overflow`], with nothing appended.
    #[inline(always)]
    pub fn push(&mut self, parts: [&[u8]; 2], cap: usize) -> Result<(), Overflow> {
        let add = parts[0].len() + parts[1].len();
        if self.unsent() + add > cap {
            return Err(Overflow);
        }
        let o = match &mut self.0 {
            Some(o) => o,
            none => none.insert(Box::default()),
        };
        if o.buf.capacity() - o.buf.len() < add {
            o.make_room(add, cap);
        }
        match parts[0] {
            // A small message's two-byte frame header, stored without a call to memcpy.
            &[b0, b1] => o.buf.extend_from_slice(&[b0, b1]),
            head => o.buf.extend_from_slice(head),
        }
        o.buf.extend_from_slice(parts[1]);
        Ok(())
    }

    /// Whether `add` more bytes fit without the buffer growing (after compacting).
    #[inline]
    pub fn fits_held(&self, add: usize) -> bool {
        self.unsent() + add <= self.held()
    }

    /// Appends `parts` whatever the cap (the few control bytes the server itself must
    /// send: a handshake response, a close frame).
    #[inline]
    pub fn push_unbounded(&mut self, parts: [&[u8]; 2]) {
        let _ = self.push(parts, usize::MAX);
    }
}

impl Output {
    /// Compacts (moves the unsent tail to the front) and, if that is not enough, grows
    /// the buffer, amortised but never beyond `cap`.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, add: usize, cap: usize) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let need = self.buf.len() + add;
        if need > self.buf.capacity() {
            let target = need.max(self.buf.capacity() * 2).min(cap).max(need);
            self.buf.reserve_exact(target - self.buf.len());
        }
    }
}

/// A byte buffer that costs one pointer while released: for buffers most connections
/// rarely use (a message arriving in pieces, input held back).
#[derive(Debug, Default)]
// The box is the point: 8 bytes while unused instead of a Vec's 24, for every
// connection, at the cost of one allocation the first time it is used.
#[allow(clippy::box_collection)]
pub struct LazyVec(Option<Box<Vec<u8>>>);

impl LazyVec {
    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    /// How many bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// Whether it holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The heap bytes it holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.capacity())
    }

    /// The vector, created on first use.
    #[inline]
    pub fn vec(&mut self) -> &mut Vec<u8> {
        self.0.get_or_insert_with(Box::default)
    }

    /// Takes the bytes out, leaving it released.
    pub fn take(&mut self) -> Vec<u8> {
        self.0.take().map(|v| *v).unwrap_or_default()
    }

    /// Empties it, keeping up to `keep` bytes of capacity (all of it is released
    /// beyond that).
    #[inline]
    pub fn clear(&mut self, keep: usize) {
        if let Some(v) = self.0.as_mut() {
            if v.capacity() > keep {
                self.0 = None;
            } else {
                v.clear();
            }
        }
    }

    /// Releases all memory.
    pub fn release(&mut self) {
        self.0 = None;
    }
}

/// Asks the CPU to start loading the cache line at `p` (a hint: nothing is read, and
/// any address is fine). For loops over many connections whose memory is not in
/// cache and not in an order the hardware prefetcher follows, such as a topic's
/// subscribers.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64's baseline, and a prefetch neither reads nor
    // faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_reader_holds_at_most_the_cap() {
        let cap = 64 * 1024;
        let mut out = OutBuf::default();
        let chunk = [7u8; 1000];
        // Keep the buffer nearly full while the reader takes half of it each time:
        // far more than the cap passes through, the memory held stays within it.
        for _ in 0..10_000 {
            while out.push([&chunk, &[]], cap).is_ok() {}
            assert!(out.held() <= cap, "held {} > cap {cap}", out.held());
            let n = out.unsent() / 2 + 1;
            out.advance(n);
        }
    }

    #[test]
    fn overflow_appends_nothing_and_order_is_kept() {
        let mut out = OutBuf::default();
        out.push([b"ab", b"cd"], 6).unwrap();
        assert_eq!(out.push([b"efg", b""], 6), Err(Overflow));
        assert_eq!(out.unsent_bytes(), b"abcd");
        out.advance(3);
        out.push([b"efg", b""], 6).unwrap();
        assert_eq!(out.unsent_bytes(), b"defg");
        out.advance(4);
        assert!(out.is_empty());
        assert_eq!(out.unsent(), 0);
    }
}
