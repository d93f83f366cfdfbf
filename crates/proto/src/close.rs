//! Close codes (RFC 6455 §7.4) and encoding the server's close-frame payload. (A
//! client's close payload is checked where frames are received:
//! [`crate::receiver::parse_close_payload`].)

/// A WebSocket close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is going down.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the peer sent a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: a text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy was violated (e.g. the outbound buffer cap).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server hit an unexpected condition (e.g. an app callback failed).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1013: try again later (the server is short of a resource, e.g. memory).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1005: reported (never sent) when a close frame carried no code.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported (never sent) when the connection was lost without a close frame.
    pub const ABNORMAL: CloseCode = CloseCode(1006);

    /// The reason the server sends with a code it chose itself.
    pub fn default_reason(self) -> &'static str {
        match self.0 {
            1001 => "going away",
            1002 => "protocol error",
            1007 => "invalid UTF-8",
            1008 => "policy violation",
            1009 => "message too big",
            1011 => "internal error",
            1013 => "try again later",
            _ => "",
        }
    }

    /// Whether an endpoint may put this code in a close frame on the wire (§7.4.1, §7.4.2).
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }

    /// Whether an app may close a client with this code: the standard codes a server
    /// may send, and the registered and private ranges 3000–4999.
    pub fn is_app_allowed(self) -> bool {
        matches!(
            self.0,
            1000 | 1001 | 1003 | 1007 | 1008 | 1009 | 1011 | 3000..=4999
        )
    }
}

/// Writes a close payload (code, then a reason cut to fit 125 bytes on a UTF-8 boundary)
/// into `out` and returns its length.
pub fn encode_close_payload(code: CloseCode, reason: &str, out: &mut [u8; 125]) -> usize {
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    let mut len = reason.len().min(123);
    while !reason.is_char_boundary(len) {
        len -= 1;
    }
    out[2..2 + len].copy_from_slice(&reason.as_bytes()[..len]);
    2 + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(CloseCode(code).is_sendable(), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(code).is_sendable(), "{code}");
        }
    }

    #[test]
    fn encoded_reason_is_cut_on_a_char_boundary() {
        let mut out = [0; 125];
        let reason = "é".repeat(100);
        let n = encode_close_payload(CloseCode::NORMAL, &reason, &mut out);
        assert!(n <= 125);
        assert!(std::str::from_utf8(&out[2..n]).is_ok());
    }
}
