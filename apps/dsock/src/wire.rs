//! The one framing of everything that crosses a thread or a node: a JSON header and raw
//! bytes (a message body, never base64). Used for the nodes' bus (Redis pub/sub) and
//! for the events the Redis threads post to the app thread, so that a message from the
//! bus reaches the app thread as it came.
//!
//! Layout: header length (u32, little-endian), the header (JSON), the body.

use serde_json::Value;

/// Frames `header` and `body`.
pub fn encode(header: &Value, body: &[u8]) -> Vec<u8> {
    let header = header.to_string();
    let mut out = Vec::with_capacity(4 + header.len() + body.len());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

/// The header and body of a frame, or `None` if it is not one.
pub fn decode(frame: &[u8]) -> Option<(Value, &[u8])> {
    let len = u32::from_le_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    let header = frame.get(4..4 + len)?;
    let header = serde_json::from_slice(header).ok()?;
    Some((header, &frame[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let h = serde_json::json!({"op": "send", "n": 1});
        let f = encode(&h, &[0, 255, 1]);
        let (h2, body) = decode(&f).unwrap();
        assert_eq!((h2, body), (h, &[0u8, 255, 1][..]));
        assert!(decode(&[1]).is_none());
        assert!(decode(&[9, 0, 0, 0, b'{']).is_none());
        assert!(decode(&[1, 0, 0, 0, b'x']).is_none());
    }
}
