//! One client connection as a worker sees it: its socket, its phase, and its buffers.

use mio::net::TcpStream;
use ringsocket_proto::Receiver;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
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
    /// The TLS session, on `wss://` ports.
    pub(crate) tls: Option<Box<rustls::ServerConnection>>,
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
    /// Free `out` once it is written (it held the handshake response).
    pub(crate) release_out: bool,
    /// Waiting for room in its app's ring before reading more.
    pub(crate) read_blocked: bool,
    /// The close code to send once the app is done (`AwaitingApp`); 0 sends an
    /// empty close frame (the client's own close had no code).
    pub(crate) close_code: u16,
    /// When the current phase times out.
    pub(crate) deadline: Option<Instant>,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        tls: Option<Box<rustls::ServerConnection>>,
        serial: u64,
        port: u16,
        deadline: Instant,
    ) -> Conn {
        Conn {
            stream,
            tls,
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
            release_out: false,
            read_blocked: false,
            close_code: 0,
            deadline: Some(deadline),
        }
    }

    /// Bytes queued but not yet written.
    pub(crate) fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Reads application bytes (decrypted on TLS connections) into `buf`.
    /// `Ok(0)` is the end of the stream; `WouldBlock` means wait for readiness.
    pub(crate) fn read_plain(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.stream.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.stream)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                // Last gasp: send the alert that explains the failure.
                let _ = tls.write_tls(&mut self.stream);
                return Err(std::io::Error::new(ErrorKind::InvalidData, e));
            }
        }
    }

    /// Whether there is anything to write: queued bytes, or TLS records (handshake
    /// messages, alerts) rustls wants to send.
    pub(crate) fn wants_write(&self) -> bool {
        self.out_pos < self.out.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes queued bytes (through TLS where there is TLS) until done or the socket
    /// would block. Returns whether everything was written.
    pub(crate) fn write_out(&mut self) -> std::io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            while self.out_pos < self.out.len() {
                match self.stream.write(&self.out[self.out_pos..]) {
                    Ok(n) => self.out_pos += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(true);
        };
        loop {
            let mut moved = 0;
            if self.out_pos < self.out.len() {
                // rustls takes what fits its buffer limit (it never grows unbounded).
                moved = tls.writer().write(&self.out[self.out_pos..])?;
                self.out_pos += moved;
            }
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.out_pos == self.out.len() {
                return Ok(true);
            }
            if moved == 0 {
                // Plaintext cannot go out before the TLS handshake completes; the read
                // side marks the connection for flushing when it does.
                return Ok(false);
            }
        }
    }

    /// Ends the write side: a TLS close_notify (best effort), then a TCP FIN.
    pub(crate) fn shutdown_write(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut self.stream);
        }
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Releases a buffer's memory if a large message left it big.
pub(crate) fn trim(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > 64 * 1024 {
        *buf = Vec::new();
    }
}
