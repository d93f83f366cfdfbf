//! Frame headers (RFC 6455 §5.2), masking, and server frame encoding.

use crate::error::ProtocolError;

/// A frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// Decodes the low four bits of a frame's first byte.
    ///
    /// # Errors
    /// [`ProtocolError::ReservedOpcode`] for 0x3–0x7 and 0xB–0xF.
    pub fn from_bits(bits: u8) -> Result<Opcode, ProtocolError> {
        Ok(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xa => Opcode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The opcode's four-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xa,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Whether a data message is text (UTF-8) or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    /// A binary message.
    Binary = 0,
    /// A text message, always valid UTF-8.
    Text = 1,
}

impl MessageKind {
    /// The opcode of the first frame of such a message.
    pub fn opcode(self) -> Opcode {
        match self {
            MessageKind::Binary => Opcode::Binary,
            MessageKind::Text => Opcode::Text,
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this frame ends its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: Opcode,
    /// The masking key, if the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// The longest possible frame header: 2 + 8 length bytes + 4 mask bytes.
pub const MAX_HEADER_LEN: usize = 14;
/// The longest header of a server frame (which is never masked).
pub const MAX_SERVER_HEADER_LEN: usize = 10;

impl FrameHeader {
    /// Parses a frame header at the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` is too short to hold the whole header (nothing is
    /// consumed), or the header and its length in bytes.
    ///
    /// # Errors
    /// Reserved bits or opcodes, and a 64-bit length with its top bit set. Rules that
    /// depend on the connection's state are checked by [`crate::Receiver`].
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::NonZeroReservedBits);
        }
        let opcode = Opcode::from_bits(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, len_bytes) = match b1 & 0x7f {
            126 => match rest {
                [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
                _ => return Ok(None),
            },
            127 => match rest.get(..8) {
                Some(bytes) => {
                    let mut be = [0; 8];
                    be.copy_from_slice(bytes);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(ProtocolError::InvalidPayloadLength);
                    }
                    (len, 8)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 0),
        };
        let mut header_len = 2 + len_bytes;
        let mask = if masked {
            let Some(key) = buf.get(header_len..header_len + 4) else {
                return Ok(None);
            };
            header_len += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, header_len)))
    }
}

/// Encodes an unmasked (server) frame header into `out` and returns its length.
pub fn encode_header(
    fin: bool,
    opcode: Opcode,
    payload_len: u64,
    out: &mut [u8; MAX_SERVER_HEADER_LEN],
) -> usize {
    encode_raw_header(fin, opcode.bits(), payload_len, out)
}

/// [`encode_header`] for any four opcode bits, reserved ones included.
fn encode_raw_header(
    fin: bool,
    opcode_bits: u8,
    payload_len: u64,
    out: &mut [u8; MAX_SERVER_HEADER_LEN],
) -> usize {
    out[0] = (u8::from(fin) << 7) | (opcode_bits & 0x0f);
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    }
}

/// Appends a complete masked (client) frame to `out`: what a WebSocket client sends, for
/// test clients and load generators. `opcode_bits` may be any four bits, reserved
/// opcodes included, so that tests can send what a server must refuse.
pub fn encode_client_frame(
    fin: bool,
    opcode_bits: u8,
    payload: &[u8],
    mask: [u8; 4],
    out: &mut Vec<u8>,
) {
    let mut header = [0; MAX_SERVER_HEADER_LEN];
    let n = encode_raw_header(fin, opcode_bits, payload.len() as u64, &mut header);
    header[1] |= 0x80;
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// XORs `buf` with `mask`, where `buf` starts `offset` bytes into the masked payload.
///
/// Works sixteen bytes at a time (then four, then one); [`apply_mask_bytewise`] is the
/// reference it is tested against.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Little-endian throughout: byte `i` of the word is byte `i % 4` of the mask,
    // starting at phase `offset`.
    let rotated = u32::from_le_bytes(mask).rotate_right(8 * (offset & 3) as u32);
    let wide = u128::from(rotated) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
    let mut blocks = buf.chunks_exact_mut(16);
    for block in &mut blocks {
        let block: &mut [u8; 16] = block.try_into().expect("16 bytes");
        *block = (u128::from_le_bytes(*block) ^ wide).to_le_bytes();
    }
    // Whole blocks keep the mask phase, so what is left starts at phase 0 of `rotated`.
    let mut quads = blocks.into_remainder().chunks_exact_mut(4);
    for quad in &mut quads {
        let quad: &mut [u8; 4] = quad.try_into().expect("4 bytes");
        *quad = (u32::from_le_bytes(*quad) ^ rotated).to_le_bytes();
    }
    apply_mask_bytewise(quads.into_remainder(), rotated.to_le_bytes(), 0);
}

/// The plain byte-at-a-time masking loop that [`apply_mask`] must agree with.
pub fn apply_mask_bytewise(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_input_consumes_nothing() {
        let frame = [0x81, 0xfe, 0x01, 0x00, 1, 2, 3, 4];
        for len in 0..frame.len() {
            assert_eq!(FrameHeader::parse(&frame[..len]), Ok(None), "{len}");
        }
        let (h, n) = FrameHeader::parse(&frame).unwrap().unwrap();
        assert_eq!(
            (h.payload_len, n, h.mask, h.fin),
            (256, 8, Some([1, 2, 3, 4]), true)
        );
    }

    #[test]
    fn header_rules() {
        assert_eq!(
            FrameHeader::parse(&[0xc1, 0x80]),
            Err(ProtocolError::NonZeroReservedBits)
        );
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x80]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        let mut big = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            FrameHeader::parse(&big),
            Err(ProtocolError::InvalidPayloadLength)
        );
        big[2] = 0;
        assert_eq!(FrameHeader::parse(&big), Ok(None), "mask missing");
    }

    #[test]
    fn encode_round_trips() {
        for len in [0u64, 125, 126, 65535, 65536, 1 << 40] {
            let mut out = [0; MAX_SERVER_HEADER_LEN];
            let n = encode_header(true, Opcode::Binary, len, &mut out);
            let (h, m) = FrameHeader::parse(&out[..n]).unwrap().unwrap();
            assert_eq!(
                (h.payload_len, h.fin, h.opcode, h.mask, m),
                (len, true, Opcode::Binary, None, n)
            );
        }
    }

    proptest! {
        #[test]
        fn fast_mask_matches_bytewise(data in proptest::collection::vec(any::<u8>(), 0..80),
                                      mask in any::<[u8; 4]>(), offset in 0usize..8, start in 0usize..4) {
            let start = start.min(data.len());
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast[start..], mask, offset);
            apply_mask_bytewise(&mut slow[start..], mask, offset);
            prop_assert_eq!(fast, slow);
        }
    }
}
