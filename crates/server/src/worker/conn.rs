//! One client connection as a worker holds it: the socket (and TLS), the sans-I/O
//! [`Session`], and the worker's bookkeeping. The I/O here only moves bytes between
//! the socket and the session; every decision is the session's.

use super::io::write_until_blocked;
use super::tls::Tls;
use crate::listener::IpSlot;
use crate::records::ClientId;
use mio::net::TcpStream;
use ringsocket_session::{prefetch, AppIndex, EndpointIndex, LazyVec, Session, Tick};
use slab::Slab;
use std::io::Read;
use std::net::Shutdown;
use std::num::NonZeroU32;

/// The distance between neighbouring entries of a `Slab<Conn>`: the size of slab's
/// (private) entry enum, mirrored. Only prefetch hints depend on it, and a test
/// checks it.
const SLOT: usize = {
    #[allow(dead_code)]
    enum Entry<T> {
        Vacant(usize),
        Occupied(T),
    }
    std::mem::size_of::<Entry<Conn>>()
};

/// How far ahead [`prefetch_ahead`] looks, in connections: far enough for memory to
/// answer before the loop gets there, near enough for the lines to stay in cache.
const AHEAD: usize = 16;

/// For a loop visiting the connections `key(0)`, `key(1)`, … of `conns`, at `at`:
/// asks the CPU for what the connections a little further on will need, in three
/// steps — the connection, then its output's bookkeeping, then the output's tail —
/// so that each step reads only what an earlier one already brought in. Loops over
/// connections scattered through the slab (a topic's subscribers, the connections to
/// flush) otherwise wait for memory three times per connection, in turn.
#[inline(always)]
pub(crate) fn prefetch_ahead(conns: &Slab<Conn>, at: usize, key: impl Fn(usize) -> Option<usize>) {
    let Some(here) = key(at).and_then(|k| conns.get(k).map(|c| (k, c))) else {
        return;
    };
    if let Some(far) = key(at + 3 * AHEAD) {
        // By address alone (a lookup would wait for it): slab entries lie `SLOT` bytes
        // apart. A wrong guess costs a wasted hint, nothing more.
        let first = (here.1 as *const Conn)
            .cast::<u8>()
            .wrapping_offset((far as isize - here.0 as isize) * SLOT as isize);
        for line in (0..SLOT).step_by(64) {
            prefetch(first.wrapping_add(line));
        }
    }
    if let Some(conn) = key(at + 2 * AHEAD).and_then(|k| conns.get(k)) {
        conn.session.prefetch_output(0);
    }
    if let Some(conn) = key(at + AHEAD).and_then(|k| conns.get(k)) {
        conn.session.prefetch_output(1);
    }
}

/// A connection's position in its app's list of open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListSlot(NonZeroU32);

impl ListSlot {
    /// Position `index` (lists hold fewer than 2^32 - 1 connections).
    pub(crate) fn new(index: usize) -> ListSlot {
        ListSlot(NonZeroU32::MIN.saturating_add(index as u32))
    }

    /// The position.
    pub(crate) fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// A client connection owned by one worker.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// The TLS session, on `wss://` ports.
    pub(crate) tls: Option<Box<Tls>>,
    pub(crate) session: Session,
    /// Tells reused slab keys apart in timer entries: the slot's generation when the
    /// connection was accepted (see `IdSource`; it wraps after at least 2^31 more
    /// connections in the slot, long after any stale timer entry of it is gone).
    pub(crate) serial: u32,
    /// The client id (0 until the upgrade completes).
    pub(crate) id: ClientId,
    /// The app (valid once open).
    pub(crate) app: AppIndex,
    /// Which of the app's endpoints (valid once open).
    pub(crate) endpoint: EndpointIndex,
    /// Position in the worker's list of the app's open connections, while listed.
    pub(crate) app_slot: Option<ListSlot>,
    /// Received bytes not yet decoded (a partial header or control frame, or input
    /// held back while the app's ring is full).
    pub(crate) pending: LazyVec,
    /// In the worker's list of connections to flush.
    pub(crate) dirty: bool,
    /// Waiting for room in its app's ring before reading more.
    pub(crate) read_blocked: bool,
    /// The upgrade just completed: its deadlines must be scheduled anew.
    pub(crate) just_opened: bool,
    /// The earliest entry the worker's timer heap holds for it.
    pub(crate) timer_at: Option<Tick>,
    /// Bytes of buffers counted against the worker's budget.
    pub(crate) accounted: usize,
    /// Its slot in the per-IP connection counts, if those are kept.
    pub(crate) ip_slot: Option<IpSlot>,
}

impl Conn {
    /// A connection just accepted: waiting for its upgrade request, known to no app.
    pub(crate) fn accepted(
        stream: TcpStream,
        tls: Option<Box<Tls>>,
        session: Session,
        serial: u32,
        ip_slot: Option<IpSlot>,
    ) -> Conn {
        Conn {
            stream,
            tls,
            session,
            serial,
            id: ClientId(0),
            app: AppIndex(0),
            endpoint: EndpointIndex(0),
            app_slot: None,
            pending: LazyVec::default(),
            dirty: false,
            read_blocked: false,
            just_opened: false,
            timer_at: None,
            accounted: 0,
            ip_slot,
        }
    }

    /// Heap bytes its buffers hold now.
    pub(crate) fn held(&self) -> usize {
        self.session.held() + self.pending.capacity() + self.tls.as_ref().map_or(0, |t| t.held())
    }

    /// Reads application bytes (decrypted on TLS connections, with `scratch` for the
    /// TLS bytes) into `buf`. `Ok(0)` is the end of the stream; `WouldBlock` means wait
    /// for readiness.
    pub(crate) fn read_plain(
        &mut self,
        scratch: &mut [u8],
        buf: &mut [u8],
    ) -> std::io::Result<usize> {
        match self.tls.as_mut() {
            None => self.stream.read(buf),
            Some(tls) => tls.read(&mut self.stream, scratch, buf),
        }
    }

    /// Whether TLS records (handshake messages, alerts) wait to be sent.
    pub(crate) fn tls_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes the session's output (through TLS where there is TLS, with `scratch` to
    /// encrypt in) until done or the socket would block. Returns whether everything
    /// was written.
    pub(crate) fn write_out(&mut self, scratch: &mut [u8]) -> std::io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            let written = write_until_blocked(&mut self.stream, self.session.output())?;
            self.session.advance_output(written);
            return Ok(self.session.output().is_empty());
        };
        let (taken, done) = tls.write(&mut self.stream, scratch, self.session.output())?;
        self.session.advance_output(taken);
        Ok(done)
    }

    /// Ends the write side: a TLS close_notify (best effort), then a TCP FIN.
    pub(crate) fn shutdown_write(&mut self, scratch: &mut [u8]) {
        if let Some(tls) = self.tls.as_mut() {
            tls.close_notify(&mut self.stream, scratch);
        }
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection on a fresh loopback socket pair (the peer end is returned so that
    /// it stays open).
    fn conn() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let limits = ringsocket_session::Limits::default();
        let session = Session::new(80, Tick::from_millis(1), &limits);
        let conn = Conn::accepted(TcpStream::from_std(stream), None, session, 0, None);
        (conn, peer)
    }

    /// The prefetch hints guess a connection's address from its neighbour's and
    /// `SLOT`: that guess must be right for the hints to be worth anything.
    #[test]
    fn slab_entries_lie_slot_bytes_apart() {
        let mut conns = Slab::new();
        let (a, _pa) = conn();
        let (b, _pb) = conn();
        let ka = conns.insert(a);
        let _ = conns.insert(conn().0);
        let kb = conns.insert(b);
        let address = |k: usize| &conns[k] as *const Conn as usize;
        assert_eq!(address(kb) - address(ka), (kb - ka) * SLOT);
    }
}
