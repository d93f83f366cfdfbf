//! The sans-I/O connection core of ringsocket: what happens to one client connection,
//! from its first byte to its last, with no sockets, threads or clocks.
//!
//! ```text
//!   bytes read ─────► Session::handle_input ─┬─► AppEvents::{open, message, close}
//!   app records ────► send / app_close / app_done  │
//!   now ────────────► handle_timeout          ├─► output() bytes to write
//!   EOF, errors ────► handle_eof / abort      ├─► poll_timeout() next deadline
//!                                             └─► is_closed(): drop the socket
//! ```
//!
//! A worker (crate `ringsocket-server`) owns the sockets and the poll loop, feeds each
//! connection's [`Session`] and routes what it returns. Everything that decides *what*
//! happens — the upgrade and its routing, the phases and the close handshake's
//! ordering, pings, timeouts and the outbound cap — is here, and is tested with a fake
//! clock and no sockets.

pub mod clock;
pub mod outbuf;
pub mod route;
pub mod session;

pub use clock::{Epoch, Tick};
pub use outbuf::{prefetch, LazyVec, OutBuf, Overflow};
pub use route::{AppIndex, EndpointIndex, Route, Routes};
pub use session::{
    AppEvents, Delivery, Drained, Frame, Limits, Message, Phase, RequestKind, Sent, Session,
    SessionConfig,
};

#[cfg(test)]
mod tests;
