//! TLS on a `wss://` connection, on rustls's unbuffered API: the worker owns the
//! buffers. Records are read into and encrypted in the worker's one scratch buffer; a
//! connection keeps bytes of its own only while they wait (a partial record, output the
//! socket would not take, plaintext the caller had no room for), so an idle TLS
//! connection holds no buffer — rustls's buffered API keeps 4 KiB of it per connection
//! for good.

use super::io::write_until_blocked;
use mio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use std::io::{self, ErrorKind, Read};
use std::sync::Arc;

/// The largest TLS record on the wire: 16 KiB of plaintext, the cipher's expansion
/// and the header.
const RECORD_MAX: usize = 16 * 1024 + 256 + 5;

/// Bytes of the worker's scratch buffer: room for a whole handshake message (rustls
/// accepts up to 64 KiB) or several records. Received TLS bytes that do not fit end
/// the connection.
pub(crate) const SCRATCH: usize = 64 * 1024 + 2 * RECORD_MAX;

/// Plaintext encrypted at once: its records fit the scratch buffer.
const PLAIN_CHUNK: usize = 64 * 1024;

/// A TLS connection and the bytes it holds between calls.
pub(crate) struct Tls {
    conn: UnbufferedServerConnection,
    /// Received TLS bytes not processed yet: a partial record.
    incoming: Vec<u8>,
    /// Encoded TLS bytes the socket did not take yet.
    outgoing: Vec<u8>,
    /// Decrypted bytes the caller had no room for.
    plain: Vec<u8>,
    /// The peer sent close_notify: no more input.
    peer_closed: bool,
}

/// What to do after a state rustls returned (its borrows released).
enum Step {
    Again,
    Transmit,
    NeedInput,
    Ended,
    Failed(rustls::Error),
}

/// Runs `f`, turning a panic inside rustls into the connection's error: a library bug
/// that one client's bytes reach must end that connection, not the worker (which
/// aborts the process on a panic).
fn guarded<T>(f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(io::Error::other("the TLS library panicked")))
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e.to_string())
}

/// Moves the decrypted records `traffic` has into `buf` from `*n` on (advancing `*n`),
/// and what does not fit into `plain`; returns how many more bytes to discard.
fn drain_records(
    traffic: &mut rustls::unbuffered::ReadTraffic<'_, '_, rustls::server::ServerConnectionData>,
    buf: &mut [u8],
    n: &mut usize,
    plain: &mut Vec<u8>,
) -> Result<usize, rustls::Error> {
    let mut discard = 0;
    while let Some(record) = traffic.next_record() {
        let record = record?;
        discard += record.discard;
        let take = record.payload.len().min(buf.len() - *n);
        buf[*n..*n + take].copy_from_slice(&record.payload[..take]);
        *n += take;
        plain.extend_from_slice(&record.payload[take..]);
    }
    Ok(discard)
}

/// Appends what `encode` holds to `outgoing`.
fn encode_into(
    encode: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let at = outgoing.len();
    outgoing.resize(at + 1024, 0);
    loop {
        match encode.encode(&mut outgoing[at..]) {
            Ok(n) => {
                outgoing.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(e)) => outgoing.resize(at + e.required_size, 0),
            Err(e) => {
                outgoing.truncate(at);
                return Err(rustls::Error::General(e.to_string()));
            }
        }
    }
}

impl Tls {
    /// A server-side TLS connection, before its handshake.
    pub(crate) fn new(config: Arc<rustls::ServerConfig>) -> Result<Tls, rustls::Error> {
        Ok(Tls {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            plain: Vec::new(),
            peer_closed: false,
        })
    }

    /// Heap bytes its buffers hold now (rustls's own state aside).
    pub(crate) fn held(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plain.capacity()
    }

    /// Whether encoded TLS bytes wait for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Reads and decrypts into `buf`, using `scratch` (at least [`SCRATCH`] bytes) for
    /// the TLS bytes. `Ok(0)` is the end of the stream (close_notify or FIN);
    /// `WouldBlock` means wait for readiness. Handshake messages are answered on the
    /// way.
    pub(crate) fn read(
        &mut self,
        stream: &mut TcpStream,
        scratch: &mut [u8],
        buf: &mut [u8],
    ) -> io::Result<usize> {
        guarded(|| self.read_unguarded(stream, scratch, buf))
    }

    fn read_unguarded(
        &mut self,
        stream: &mut TcpStream,
        scratch: &mut [u8],
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let mut n = self.take_plain(buf);
        if n == buf.len() {
            return Ok(n);
        }
        let mut filled = self.incoming.len();
        scratch[..filled].copy_from_slice(&self.incoming);
        let result = loop {
            let status = self.conn.process_tls_records(&mut scratch[..filled]);
            let mut discard = status.discard;
            let step = match status.state {
                Err(e) => Step::Failed(e),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    match drain_records(&mut traffic, buf, &mut n, &mut self.plain) {
                        Ok(more) => {
                            discard += more;
                            Step::Again
                        }
                        Err(e) => Step::Failed(e),
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    match encode_into(&mut encode, &mut self.outgoing) {
                        Ok(()) => Step::Again,
                        Err(e) => Step::Failed(e),
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Step::Transmit
                }
                Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => {
                    Step::NeedInput
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Step::Again
                }
                Ok(ConnectionState::Closed) => Step::Ended,
                Ok(_) => Step::Failed(rustls::Error::General("unexpected early data".into())),
            };
            scratch.copy_within(discard..filled, 0);
            filled -= discard;
            match step {
                Step::Again => {}
                Step::Transmit => {
                    if let Err(e) = self.send_outgoing(stream) {
                        break Err(e);
                    }
                }
                Step::Ended => break Ok(n),
                Step::NeedInput if self.peer_closed || n > 0 || !self.plain.is_empty() => {
                    break Ok(n)
                }
                Step::NeedInput if filled == scratch.len() => {
                    break Err(invalid("a TLS message larger than 64 KiB"))
                }
                Step::NeedInput => match stream.read(&mut scratch[filled..]) {
                    Ok(0) => break Ok(0),
                    Ok(got) => filled += got,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                },
                Step::Failed(e) => {
                    // Last gasp: the alert that explains the failure.
                    self.send_alert(stream, &mut scratch[..filled]);
                    break Err(invalid(e));
                }
            }
        };
        // Keep only a partial record; an idle connection holds no buffer.
        if filled == 0 {
            self.incoming = Vec::new();
        } else {
            self.incoming.clear();
            self.incoming.extend_from_slice(&scratch[..filled]);
        }
        result
    }

    /// Moves held plaintext into `buf`; returns how much.
    fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        if self.plain.is_empty() {
            return 0;
        }
        let n = self.plain.len().min(buf.len());
        buf[..n].copy_from_slice(&self.plain[..n]);
        self.plain.drain(..n);
        if self.plain.is_empty() {
            self.plain = Vec::new();
        }
        n
    }

    /// Writes held TLS bytes until done (`Ok(true)`) or the socket would block.
    fn send_outgoing(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        let written = write_until_blocked(stream, &self.outgoing)?;
        if written == self.outgoing.len() {
            self.outgoing = Vec::new();
            return Ok(true);
        }
        self.outgoing.drain(..written);
        Ok(false)
    }

    /// Encodes and sends (as far as the socket takes it) what rustls queued after a
    /// failure: the fatal alert, if it made one. rustls is only asked while it has
    /// records queued, so it never deframes the failed input again (that would make a
    /// second fatal alert, which it asserts against). `incoming` must be the received
    /// bytes as rustls last saw them, less what it said to discard: its deframer keeps
    /// positions in them (an empty buffer makes it index out of bounds).
    fn send_alert(&mut self, stream: &mut TcpStream, incoming: &mut [u8]) {
        let mut len = incoming.len();
        for _ in 0..8 {
            if !self.conn.wants_write() {
                break;
            }
            let status = self.conn.process_tls_records(&mut incoming[..len]);
            let discard = status.discard;
            let encoded = match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, &mut self.outgoing).is_ok()
                }
                _ => false,
            };
            incoming.copy_within(discard..len, 0);
            len -= discard;
            if !encoded {
                break;
            }
        }
        let _ = self.send_outgoing(stream);
    }

    /// Encrypts `output` and writes it, using `scratch` (at least [`SCRATCH`] bytes).
    /// Returns how many bytes of `output` were taken (encrypted: sent or held) and
    /// whether everything, held bytes included, went out. Before the handshake is done
    /// nothing is taken.
    pub(crate) fn write(
        &mut self,
        stream: &mut TcpStream,
        scratch: &mut [u8],
        output: &[u8],
    ) -> io::Result<(usize, bool)> {
        guarded(|| self.write_unguarded(stream, scratch, output))
    }

    fn write_unguarded(
        &mut self,
        stream: &mut TcpStream,
        scratch: &mut [u8],
        output: &[u8],
    ) -> io::Result<(usize, bool)> {
        if !self.send_outgoing(stream)? {
            return Ok((0, false));
        }
        let mut taken = 0;
        while taken < output.len() {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let step = match status.state {
                Err(e) => return Err(invalid(e)),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let chunk = &output[taken..output.len().min(taken + PLAIN_CHUNK)];
                    let sealed = match traffic.encrypt(chunk, scratch) {
                        Ok(sealed) => sealed,
                        Err(EncryptError::InsufficientSize(e)) => {
                            return Err(invalid(format!("TLS scratch too small: {e:?}")))
                        }
                        Err(e) => return Err(invalid(e)),
                    };
                    taken += chunk.len();
                    // Straight from the scratch buffer; only what the socket does not
                    // take is kept.
                    let sent = write_until_blocked(stream, &scratch[..sealed])?;
                    self.outgoing.extend_from_slice(&scratch[sent..sealed]);
                    Step::Transmit
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, &mut self.outgoing).map_err(invalid)?;
                    Step::Again
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Step::Transmit
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    // Decrypted earlier than the reader asked: kept for it.
                    discard += drain_records(&mut traffic, &mut [], &mut 0, &mut self.plain)
                        .map_err(invalid)?;
                    Step::Again
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Step::Again
                }
                Ok(ConnectionState::BlockedHandshake) => Step::NeedInput,
                Ok(_) => Step::Ended,
            };
            self.incoming.drain(..discard);
            match step {
                Step::Again => {}
                Step::Transmit => {
                    if !self.send_outgoing(stream)? {
                        return Ok((taken, false));
                    }
                }
                // Plaintext waits for the handshake; the read side finishes it.
                Step::NeedInput => return Ok((taken, false)),
                Step::Ended | Step::Failed(_) => {
                    return Err(io::Error::new(ErrorKind::BrokenPipe, "TLS session closed"))
                }
            }
        }
        Ok((taken, true))
    }

    /// Sends close_notify, as far as the socket takes it (best effort).
    pub(crate) fn close_notify(&mut self, stream: &mut TcpStream, scratch: &mut [u8]) {
        let _ = guarded(|| {
            self.close_notify_unguarded(stream, scratch);
            Ok(())
        });
    }

    fn close_notify_unguarded(&mut self, stream: &mut TcpStream, scratch: &mut [u8]) {
        let status = self.conn.process_tls_records(&mut self.incoming);
        let discard = status.discard;
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = status.state {
            if let Ok(n) = traffic.queue_close_notify(scratch) {
                self.outgoing.extend_from_slice(&scratch[..n]);
            }
        }
        self.incoming.drain(..discard);
        let _ = self.send_outgoing(stream);
    }
}
