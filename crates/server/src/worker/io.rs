//! Socket writes shared by plain and TLS connections.

use mio::net::TcpStream;
use std::io::{ErrorKind, Write};

/// Writes `bytes` until done or the socket would block; returns how many went out.
pub(crate) fn write_until_blocked(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
