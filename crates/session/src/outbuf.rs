//! The bytes waiting to be written to one client, with a cap on the memory they hold.

/// A connection's output: bytes `pos..` of `buf` are unsent.
///
/// Memory held is bounded, not just the unsent bytes: the buffer is compacted (its
/// unsent tail moved to the front) before it would grow, and it never grows beyond
/// the cap it is given, so a client that reads steadily but keeps data in flight holds
/// at most `cap` bytes however much passes through.
#[derive(Debug, Default)]
pub struct OutBuf {
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
    pub fn unsent(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// The heap bytes this buffer holds.
    pub fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// The unsent bytes, to write to the socket.
    pub fn unsent_bytes(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Records that `n` unsent bytes were written. Once everything is written the
    /// buffer is reset, and its memory released if a burst made it large.
    pub fn advance(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > KEEP {
                self.buf = Vec::new();
            }
        }
    }

    /// Releases all memory (the buffer must be empty).
    pub fn release(&mut self) {
        debug_assert!(self.is_empty());
        self.buf = Vec::new();
        self.pos = 0;
    }

    /// Appends the concatenation of `parts`, unless the unsent bytes would then exceed
    /// `cap`. Makes room by compacting first; grows at most to `cap`.
    ///
    /// # Errors
    /// [`Overflow`], with nothing appended.
    pub fn push(&mut self, parts: &[&[u8]], cap: usize) -> Result<(), Overflow> {
        let add: usize = parts.iter().map(|p| p.len()).sum();
        let unsent = self.unsent();
        if unsent + add > cap {
            return Err(Overflow);
        }
        if self.buf.len() + add > self.buf.capacity() {
            if self.pos > 0 {
                // Move the unsent tail to the front instead of growing.
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let need = unsent + add;
            if need > self.buf.capacity() {
                // Amortised doubling, but never beyond the cap.
                let target = need.max(self.buf.capacity() * 2).min(cap).max(need);
                self.buf.reserve_exact(target - self.buf.len());
            }
        }
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        Ok(())
    }

    /// Appends `parts` whatever the cap (the few control bytes the server itself must
    /// send: a handshake response, a close frame).
    pub fn push_unbounded(&mut self, parts: &[&[u8]]) {
        let _ = self.push(parts, usize::MAX);
    }
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
            while out.push(&[&chunk], cap).is_ok() {}
            assert!(out.held() <= cap, "held {} > cap {cap}", out.held());
            let n = out.unsent() / 2 + 1;
            out.advance(n);
        }
    }

    #[test]
    fn overflow_appends_nothing_and_order_is_kept() {
        let mut out = OutBuf::default();
        out.push(&[b"ab", b"cd"], 6).unwrap();
        assert_eq!(out.push(&[b"efg"], 6), Err(Overflow));
        assert_eq!(out.unsent_bytes(), b"abcd");
        out.advance(3);
        out.push(&[b"efg"], 6).unwrap();
        assert_eq!(out.unsent_bytes(), b"defg");
        out.advance(4);
        assert!(out.is_empty());
        assert_eq!(out.unsent(), 0);
    }
}
