//! Protocol errors raised while decoding client frames.

use crate::close::CloseCode;

/// A violation of RFC 6455 by the client; each variant names the rule it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved bit (RSV1–3) was set but no extension was negotiated (§5.2).
    #[error("a reserved bit is set without a negotiated extension")]
    NonZeroReservedBits,
    /// A client frame was not masked (§5.1).
    #[error("a client frame is not masked")]
    UnmaskedFrame,
    /// The opcode is one of the reserved values (§5.2).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame had FIN clear (§5.5).
    #[error("a control frame is fragmented")]
    FragmentedControlFrame,
    /// A control frame carried more than 125 bytes (§5.5).
    #[error("a control frame payload is longer than 125 bytes")]
    ControlFrameTooLong,
    /// A continuation frame arrived with no fragmented message in progress (§5.4).
    #[error("a continuation frame arrived outside a fragmented message")]
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was still open (§5.4).
    #[error("a new data frame arrived inside a fragmented message")]
    ExpectedContinuation,
    /// The 64-bit payload length had its most significant bit set (§5.2).
    #[error("the payload length has its most significant bit set")]
    InvalidPayloadLength,
    /// A close frame's payload was exactly one byte long (§5.5.1).
    #[error("a close frame payload of one byte")]
    InvalidClosePayload,
    /// A close frame carried a code that may not be sent on the wire (§7.4).
    #[error("close code {0} may not be sent by an endpoint")]
    InvalidCloseCode(u16),
    /// A text message or close reason was not valid UTF-8 (§8.1).
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// The message grew past the configured maximum size.
    #[error("the message is larger than the maximum of {0} bytes")]
    MessageTooBig(u64),
    /// Data arrived after the client's close frame (§5.5.1).
    #[error("data after the close frame")]
    DataAfterClose,
}

impl ProtocolError {
    /// The close code the server sends when it fails the connection for this error.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            ProtocolError::MessageTooBig(_) => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}
