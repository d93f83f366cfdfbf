//! The sans-I/O protocol core of ringsocket.
//!
//! This crate knows RFC 6455 and nothing else: it parses the HTTP/1.1 upgrade request
//! ([`handshake`]), decodes client frames into message chunks and control frames
//! ([`receiver`]), encodes server frames ([`frame`]), validates UTF-8 incrementally
//! ([`utf8`]) and applies the close-code rules ([`close`]).
//!
//! It does **not** own sockets, clocks or threads. Its inputs are byte slices the caller
//! owns and its outputs borrow from them, so it allocates nothing per frame:
//!
//! ```text
//!   socket bytes ──► handshake::parse_request ──► UpgradeRequest ──► (caller routes it)
//!   socket bytes ──► Receiver::handle ──► Event::{Data, Ping, Pong, Close}
//!   payload      ──► frame::encode_header ──► header bytes to write before the payload
//! ```
//!
//! Every protocol violation is a [`ProtocolError`] naming the broken rule; its
//! [`ProtocolError::close_code`] is the close code to send.
#![forbid(unsafe_code)]

pub mod close;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod receiver;
pub mod utf8;

pub use close::CloseCode;
pub use error::ProtocolError;
pub use frame::{FrameHeader, MessageKind, Opcode};
pub use handshake::{HandshakeError, RequestHead, UpgradeRequest};
pub use http::{HttpRequest, HttpResponse};
pub use receiver::{Event, Receiver, Step};
