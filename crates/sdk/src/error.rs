//! Errors of host calls and of callbacks, and close codes.

use ringsocket_abi as abi;
use std::ffi::c_int;

/// A WebSocket close code an app sends or receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: done.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server (or the client's page) is going away.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1003: a kind of data the app does not take.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005 (received only): the client sent no code.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006 (received only): the connection was lost without a close frame.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with its type.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy was violated.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the app failed.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 4900: a message of the wrong size (RingSocket's `RS_NET` checks).
    pub const WRONG_SIZE: CloseCode = CloseCode(4900);
    /// 4901: a text message where binary was expected, or the reverse.
    pub const WRONG_KIND: CloseCode = CloseCode(4901);
    /// 4902: an unknown leading case byte (RingSocket's `RS_READ_SWITCH`).
    pub const UNKNOWN_CASE: CloseCode = CloseCode(4902);

    /// Whether an app may send it: 1000, 1001, 1003, 1007–1009, 1011, 3000–4999.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000 | 1001 | 1003 | 1007..=1009 | 1011 | 3000..=4999)
    }
}

/// Why a host call failed, or a callback's own failure. Returned from a callback, the
/// `Wrong*`/`Parse` errors close the client with their 4900-series code; the others
/// close it with 1011 (and are logged with their text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The call is not allowed in this callback (e.g. `reply` in a timer).
    WrongCallback,
    /// The message is larger than the server's `max_ws_msg_size` (or an event larger
    /// than `max_event_size`).
    TooBig,
    /// An argument was invalid (e.g. a close code an app may not use).
    Invalid,
    /// The event queue is full.
    Full,
    /// The app has stopped.
    Closed,
    /// No such client.
    NotFound,
    /// A message had the wrong size for what was read from it (closes with 4900).
    WrongSize,
    /// A text message where binary was expected or the reverse (closes with 4901).
    WrongKind,
    /// An unknown leading case byte (closes with 4902).
    UnknownCase(u8),
    /// A message that does not parse (closes with 4900, the reason carries the text).
    Parse(String),
    /// The app's own failure; the current client is closed with 1011.
    App(String),
}

impl Error {
    /// The close code a read that failed this way gets: the 4900 series for messages
    /// the app could not take, else 1011.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::WrongSize | Error::Parse(_) => CloseCode::WRONG_SIZE,
            Error::WrongKind => CloseCode::WRONG_KIND,
            Error::UnknownCase(_) => CloseCode::UNKNOWN_CASE,
            _ => CloseCode::INTERNAL_ERROR,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::WrongCallback => f.write_str("not allowed in this callback"),
            Error::TooBig => f.write_str("larger than the server allows"),
            Error::Invalid => f.write_str("invalid argument"),
            Error::Full => f.write_str("the event queue is full"),
            Error::Closed => f.write_str("the app has stopped"),
            Error::NotFound => f.write_str("no such client"),
            Error::WrongSize => f.write_str("message of the wrong size"),
            Error::WrongKind => f.write_str("message of the wrong kind"),
            Error::UnknownCase(c) => write!(f, "unknown case {c}"),
            Error::Parse(msg) | Error::App(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

/// The result of a host call as a `Result`.
pub(crate) fn check(code: c_int) -> Result<(), Error> {
    match code {
        abi::RS_OK => Ok(()),
        abi::RS_ERR_CONTEXT => Err(Error::WrongCallback),
        abi::RS_ERR_TOO_BIG => Err(Error::TooBig),
        abi::RS_ERR_FULL => Err(Error::Full),
        abi::RS_ERR_CLOSED => Err(Error::Closed),
        abi::RS_ERR_NOT_FOUND => Err(Error::NotFound),
        _ => Err(Error::Invalid),
    }
}
