//! One client connection as a worker sees it: its socket, its phase, and its buffers.

use mio::net::TcpStream;
use ringsocket_proto::Receiver;
use std::time::Instant;

/// Where a connection is in its life. Transitions only go down this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// A WebSocket connection registered with its app.
    Open,
    /// The client closed or broke the protocol; its app was told and may still be
    /// sending replies to earlier messages. The close frame goes out once the app
    /// confirms it is done with the client.
    AwaitingApp,
    /// The server sent a close frame and waits for the client's.
    Closing,
    /// The close handshake (or an HTTP error) is done: flush what is queued, then
    /// shut down the write side.
    Flushing,
    /// Write side shut down; read and discard until the client closes or time is up.
    Lingering,
}

/// A client connection owned by one worker.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Unique per worker for the process's life; tells reused slab keys apart.
    pub(crate) serial: u64,
    /// The local port it came in on (for routing).
    pub(crate) port: u16,
    pub(crate) phase: Phase,
    /// The client id (0 until the handshake completes).
    pub(crate) id: u64,
    /// The app and endpoint indices (valid once open).
    pub(crate) app: usize,
    /// Position in the worker's per-app list of open connections.
    pub(crate) app_slot: usize,
    pub(crate) rx: Receiver,
    /// Received bytes not yet decoded (a partial header or control frame, or input
    /// held back while the app's ring is full).
    pub(crate) pending: Vec<u8>,
    /// A data message being assembled from several chunks.
    pub(crate) message: Vec<u8>,
    /// Bytes queued to send, from `out_pos` on.
    pub(crate) out: Vec<u8>,
    pub(crate) out_pos: usize,
    /// In the worker's list of connections to flush.
    pub(crate) dirty: bool,
    /// Waiting for room in its app's ring before reading more.
    pub(crate) read_blocked: bool,
    /// The close code to send once the app is done (`AwaitingApp`); 0 sends an
    /// empty close frame (the client's own close had no code).
    pub(crate) close_code: u16,
    /// When the current phase times out.
    pub(crate) deadline: Option<Instant>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, serial: u64, port: u16, deadline: Instant) -> Conn {
        Conn {
            stream,
            serial,
            port,
            phase: Phase::Handshake,
            id: 0,
            app: 0,
            app_slot: 0,
            rx: Receiver::new(0),
            pending: Vec::new(),
            message: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            dirty: false,
            read_blocked: false,
            close_code: 0,
            deadline: Some(deadline),
        }
    }

    /// Bytes queued but not yet written.
    pub(crate) fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

/// Releases a buffer's memory if a large message left it big.
pub(crate) fn trim(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > 64 * 1024 {
        *buf = Vec::new();
    }
}
