//! The client-to-server half of a WebSocket connection: turns raw bytes into message
//! chunks and control frames, enforcing every RFC 6455 rule that depends on state.

use crate::close::CloseCode;
use crate::error::ProtocolError;
use crate::frame::{apply_mask, FrameHeader, MessageKind, Opcode};
use crate::utf8::Utf8Validator;

/// What one call to [`Receiver::handle`] produced.
#[derive(Debug)]
#[must_use]
pub struct Step<'a> {
    /// How many bytes of the input were used. The caller must keep the rest and pass them
    /// again (followed by newer bytes) on the next call.
    pub consumed: usize,
    /// The event, if any. `None` with `consumed == 0` means more input is needed.
    pub event: Option<Event<'a>>,
}

/// Something the client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A piece of a data message, unmasked; for text it is valid UTF-8 so far.
    Data {
        /// Text or binary.
        kind: MessageKind,
        /// The bytes, borrowed from (and unmasked in) the caller's buffer.
        chunk: &'a [u8],
        /// This is the message's first chunk.
        first: bool,
        /// This is the message's last chunk.
        last: bool,
    },
    /// A ping with its payload; answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (unsolicited or not); nothing to do.
    Pong(&'a [u8]),
    /// The client's close frame: its code and reason, if it sent any. After this the
    /// receiver accepts no more frames.
    Close(Option<(CloseCode, &'a str)>),
}

#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    fin: bool,
    remaining: u64,
    mask: [u8; 4],
    mask_offset: usize,
}

#[derive(Debug, Clone)]
struct MessageInProgress {
    kind: MessageKind,
    len: u64,
    /// No chunk of this message has been handed out yet.
    at_start: bool,
    utf8: Utf8Validator,
}

/// Decodes the frames a client sends, one step at a time.
///
/// The caller owns the buffers; data payloads are unmasked in place and handed back as
/// borrowed chunks as soon as they arrive, so a large message never has to be buffered
/// here. Control frames are handed back whole, so the caller may need to keep up to
/// 139 bytes (one header and 125 bytes of payload) between calls.
#[derive(Debug, Clone)]
pub struct Receiver {
    max_message_size: u64,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    closed: bool,
}

impl Receiver {
    /// A receiver that fails messages whose payload exceeds `max_message_size` bytes.
    pub fn new(max_message_size: u64) -> Self {
        Receiver {
            max_message_size,
            frame: None,
            message: None,
            closed: false,
        }
    }

    /// Whether a data message has started but not ended.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Decodes the next event from `buf`, which must start where the previous call's
    /// `consumed` ended.
    ///
    /// Call it again while it consumes bytes; once it returns `consumed == 0` it needs
    /// more input.
    ///
    /// # Errors
    /// The first rule the client broke. The connection must then be failed with
    /// [`ProtocolError::close_code`]; the receiver must not be used again.
    pub fn handle<'a>(&mut self, buf: &'a mut [u8]) -> Result<Step<'a>, ProtocolError> {
        if self.frame.is_some() {
            return self.data_payload(buf, 0);
        }
        if let Some(whole) = self.whole_small_message(buf) {
            return whole.decode(buf);
        }
        if self.closed {
            return if buf.is_empty() {
                Ok(Step {
                    consumed: 0,
                    event: None,
                })
            } else {
                Err(ProtocolError::DataAfterClose)
            };
        }
        let Some((header, header_len)) = FrameHeader::parse(buf)? else {
            return Ok(Step {
                consumed: 0,
                event: None,
            });
        };
        let Some(mask) = header.mask else {
            return Err(ProtocolError::UnmaskedFrame);
        };
        if header.opcode.is_control() {
            return self.control_frame(header, header_len, mask, buf);
        }
        self.start_data_frame(header, mask)?;
        self.data_payload(buf, header_len)
    }

    /// Recognizes the usual frame in one look: a whole message in one masked frame of at
    /// most 125 bytes, all of it in `buf`, outside any other message. Anything else —
    /// fragments, control frames, longer headers, rule breaks — is left to the general
    /// path, which reports the same events and errors for it.
    #[inline(always)]
    fn whole_small_message(&self, buf: &[u8]) -> Option<WholeSmallMessage> {
        let &[first, second, m0, m1, m2, m3, ..] = buf else {
            return None;
        };
        // FIN set, no reserved bits, text or binary; the mask bit set, a 7-bit length.
        let kind = match first {
            0x81 => MessageKind::Text,
            0x82 => MessageKind::Binary,
            _ => return None,
        };
        let len = usize::from(second ^ 0x80);
        let fits = len <= 125 && len as u64 <= self.max_message_size;
        if !fits || buf.len() < 6 + len || self.message.is_some() || self.closed {
            return None;
        }
        Some(WholeSmallMessage {
            kind,
            len,
            mask: [m0, m1, m2, m3],
        })
    }

    fn control_frame<'a>(
        &mut self,
        header: FrameHeader,
        header_len: usize,
        mask: [u8; 4],
        buf: &'a mut [u8],
    ) -> Result<Step<'a>, ProtocolError> {
        if !header.fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        if header.payload_len > 125 {
            return Err(ProtocolError::ControlFrameTooLong);
        }
        let end = header_len + header.payload_len as usize;
        let Some(payload) = buf.get_mut(header_len..end) else {
            return Ok(Step {
                consumed: 0,
                event: None,
            });
        };
        apply_mask(payload, mask, 0);
        let payload = &*payload;
        let event = match header.opcode {
            Opcode::Ping => Event::Ping(payload),
            Opcode::Pong => Event::Pong(payload),
            _ => {
                self.closed = true;
                Event::Close(parse_close_payload(payload)?)
            }
        };
        Ok(Step {
            consumed: end,
            event: Some(event),
        })
    }

    fn start_data_frame(
        &mut self,
        header: FrameHeader,
        mask: [u8; 4],
    ) -> Result<(), ProtocolError> {
        let message = match (header.opcode, &mut self.message) {
            (Opcode::Continuation, Some(message)) => message,
            (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (opcode, message @ None) => {
                let kind = if opcode == Opcode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                message.insert(MessageInProgress {
                    kind,
                    len: 0,
                    at_start: true,
                    utf8: Utf8Validator::new(),
                })
            }
        };
        message.len = message.len.saturating_add(header.payload_len);
        if message.len > self.max_message_size {
            return Err(ProtocolError::MessageTooBig(self.max_message_size));
        }
        self.frame = Some(FrameInProgress {
            fin: header.fin,
            remaining: header.payload_len,
            mask,
            mask_offset: 0,
        });
        Ok(())
    }

    /// Hands out the payload bytes of the current data frame that `buf[start..]` holds.
    fn data_payload<'a>(
        &mut self,
        buf: &'a mut [u8],
        start: usize,
    ) -> Result<Step<'a>, ProtocolError> {
        let (Some(frame), Some(message)) = (self.frame.as_mut(), self.message.as_mut()) else {
            unreachable!("data_payload is only called inside a data frame");
        };
        let available = buf.len() - start;
        let take = usize::try_from(frame.remaining).map_or(available, |r| r.min(available));
        if take == 0 && frame.remaining > 0 {
            return Ok(Step {
                consumed: start,
                event: None,
            });
        }
        let chunk = &mut buf[start..start + take];
        apply_mask(chunk, frame.mask, frame.mask_offset);
        frame.mask_offset = (frame.mask_offset + take) & 3;
        frame.remaining -= take as u64;
        let frame_done = frame.remaining == 0;
        let last = frame_done && frame.fin;
        if message.kind == MessageKind::Text {
            message
                .utf8
                .feed(chunk, last)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        let first = std::mem::replace(&mut message.at_start, false);
        let kind = message.kind;
        if frame_done {
            self.frame = None;
        }
        if last {
            self.message = None;
        }
        // An empty non-final fragment carries nothing worth reporting.
        let event = (take > 0 || last || first).then_some(Event::Data {
            kind,
            chunk,
            first,
            last,
        });
        Ok(Step {
            consumed: start + take,
            event,
        })
    }
}

/// A frame [`Receiver::whole_small_message`] recognized, still masked in the buffer.
struct WholeSmallMessage {
    kind: MessageKind,
    /// The payload's length; the payload follows the 6-byte header.
    len: usize,
    mask: [u8; 4],
}

impl WholeSmallMessage {
    /// Unmasks the payload in place, checks a text message's UTF-8 and reports it.
    #[inline(always)]
    fn decode(self, buf: &mut [u8]) -> Result<Step<'_>, ProtocolError> {
        let end = 6 + self.len;
        let chunk = &mut buf[6..end];
        apply_mask(chunk, self.mask, 0);
        if self.kind == MessageKind::Text && simdutf8::basic::from_utf8(chunk).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Step {
            consumed: end,
            event: Some(Event::Data {
                kind: self.kind,
                chunk,
                first: true,
                last: true,
            }),
        })
    }
}

/// Parses and validates a client's close payload: `None` for an empty payload, otherwise
/// the code and the UTF-8 reason.
///
/// # Errors
/// A one-byte payload or an unsendable code is a [`ProtocolError`] (1002); a reason that
/// is not UTF-8 is [`ProtocolError::InvalidUtf8`] (1007).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason =
                simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_payload_rules() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(
            parse_close_payload(&[3]),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            parse_close_payload(&[3, 0xed]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(&[3, 0xe8, b'o', b'k']),
            Ok(Some((CloseCode::NORMAL, "ok")))
        );
        assert_eq!(
            parse_close_payload(&[3, 0xe8, 0xff]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    pub(super) fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::frame::encode_client_frame(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d], &mut out);
        out
    }

    /// What a caller sees: messages (kind, bytes) and control events, in order.
    #[derive(Debug, PartialEq)]
    pub(super) enum Seen {
        Message(MessageKind, Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<(u16, String)>),
        Error(ProtocolError),
    }

    /// Feeds `wire` in pieces of `piece` bytes the way a worker does: the unconsumed
    /// rest is carried over in front of the next read.
    pub(super) fn run(wire: &[u8], piece: usize, max: u64) -> Vec<Seen> {
        let mut rx = Receiver::new(max);
        let mut seen = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut message = Vec::new();
        for read in wire.chunks(piece.max(1)) {
            pending.extend_from_slice(read);
            let mut buf = std::mem::take(&mut pending);
            let mut off = 0;
            loop {
                let step = match rx.handle(&mut buf[off..]) {
                    Ok(step) => step,
                    Err(e) => {
                        seen.push(Seen::Error(e));
                        return seen;
                    }
                };
                let consumed = step.consumed;
                match step.event {
                    Some(Event::Data {
                        kind,
                        chunk,
                        first,
                        last,
                    }) => {
                        if first {
                            assert!(message.is_empty());
                        }
                        message.extend_from_slice(chunk);
                        if last {
                            seen.push(Seen::Message(kind, std::mem::take(&mut message)));
                        }
                    }
                    Some(Event::Ping(p)) => seen.push(Seen::Ping(p.to_vec())),
                    Some(Event::Pong(_)) => seen.push(Seen::Pong),
                    Some(Event::Close(c)) => {
                        seen.push(Seen::Close(c.map(|(c, r)| (c.0, r.to_string()))))
                    }
                    None if consumed == 0 => break,
                    None => {}
                }
                off += consumed;
            }
            pending = buf[off..].to_vec();
        }
        seen
    }

    fn run_all_splits(wire: &[u8], max: u64) -> Vec<Seen> {
        let whole = run(wire, wire.len(), max);
        for piece in 1..wire.len().min(40) {
            assert_eq!(run(wire, piece, max), whole, "piece size {piece}");
        }
        whole
    }

    #[test]
    fn fragmented_text_with_interleaved_ping() {
        let mut wire = masked_frame(false, 1, "héllo ".as_bytes());
        wire.extend(masked_frame(true, 9, b"p"));
        wire.extend(masked_frame(false, 0, b""));
        wire.extend(masked_frame(true, 0, "wörld".as_bytes()));
        wire.extend(masked_frame(true, 8, &[3, 0xe8, b'b', b'y', b'e']));
        assert_eq!(
            run_all_splits(&wire, 1 << 20),
            vec![
                Seen::Ping(b"p".to_vec()),
                Seen::Message(MessageKind::Text, "héllo wörld".as_bytes().to_vec()),
                Seen::Close(Some((1000, "bye".into()))),
            ]
        );
    }

    #[test]
    fn empty_messages_are_reported() {
        let mut wire = masked_frame(true, 2, b"");
        wire.extend(masked_frame(true, 1, b""));
        wire.extend(masked_frame(false, 1, b""));
        wire.extend(masked_frame(true, 0, b""));
        assert_eq!(
            run_all_splits(&wire, 10),
            vec![
                Seen::Message(MessageKind::Binary, vec![]),
                Seen::Message(MessageKind::Text, vec![]),
                Seen::Message(MessageKind::Text, vec![]),
            ]
        );
    }

    #[test]
    fn large_binary_message_streams() {
        let payload: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let wire = masked_frame(true, 2, &payload);
        for piece in [1000, 4096, 65536] {
            assert_eq!(
                run(&wire, piece, 1 << 20),
                vec![Seen::Message(MessageKind::Binary, payload.clone())]
            );
        }
    }

    #[test]
    fn state_rules() {
        let err = |wire: Vec<u8>| run_all_splits(&wire, 1000).pop().unwrap();
        assert_eq!(
            err(masked_frame(true, 0, b"x")),
            Seen::Error(ProtocolError::UnexpectedContinuation)
        );
        let mut wire = masked_frame(false, 1, b"a");
        wire.extend(masked_frame(true, 1, b"b"));
        assert_eq!(err(wire), Seen::Error(ProtocolError::ExpectedContinuation));
        assert_eq!(
            err(masked_frame(false, 9, b"")),
            Seen::Error(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            err(masked_frame(true, 9, &[0; 126])),
            Seen::Error(ProtocolError::ControlFrameTooLong)
        );
        assert_eq!(
            err(masked_frame(true, 2, &[0; 1001])),
            Seen::Error(ProtocolError::MessageTooBig(1000))
        );
        let mut wire = masked_frame(false, 2, &[0; 600]);
        wire.extend(masked_frame(true, 0, &[0; 600]));
        assert_eq!(err(wire), Seen::Error(ProtocolError::MessageTooBig(1000)));
        assert_eq!(
            err(vec![0x81, 0x01, b'a']),
            Seen::Error(ProtocolError::UnmaskedFrame)
        );
        let mut wire = masked_frame(true, 8, &[]);
        wire.extend(masked_frame(true, 2, b"late"));
        assert_eq!(err(wire), Seen::Error(ProtocolError::DataAfterClose));
    }

    #[test]
    fn invalid_utf8_fails_before_the_message_ends() {
        // The bad byte is in the first fragment; the rest never arrives.
        let wire = masked_frame(false, 1, &[b'a', 0xff, b'b']);
        assert_eq!(
            run_all_splits(&wire, 100),
            vec![Seen::Error(ProtocolError::InvalidUtf8)]
        );
        // A code point split across fragments is fine.
        let mut wire = masked_frame(false, 1, &[0xe2, 0x82]);
        wire.extend(masked_frame(true, 0, &[0xac]));
        assert_eq!(
            run_all_splits(&wire, 100),
            vec![Seen::Message(MessageKind::Text, "€".as_bytes().to_vec())]
        );
    }

    #[test]
    fn invalid_utf8_in_one_frame_fails_on_partial_payload() {
        let mut wire = masked_frame(true, 1, &[b'a', 0xff, b'b', b'c', b'd', b'e']);
        let header_len = wire.len() - 6;
        wire.truncate(header_len + 2);
        assert_eq!(
            run(&wire, wire.len(), 100),
            vec![Seen::Error(ProtocolError::InvalidUtf8)]
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Arbitrary bytes, in arbitrary pieces, never panic the receiver and never make
        /// it report more payload than it was given.
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), piece in 1usize..64) {
            let mut rx = Receiver::new(300);
            let mut pending: Vec<u8> = Vec::new();
            let mut delivered = 0usize;
            'outer: for read in data.chunks(piece) {
                pending.extend_from_slice(read);
                let mut off = 0;
                loop {
                    match rx.handle(&mut pending[off..]) {
                        Err(_) => break 'outer,
                        Ok(step) => {
                            if let Some(Event::Data { chunk, .. }) = &step.event {
                                delivered += chunk.len();
                            }
                            if step.consumed == 0 && step.event.is_none() {
                                break;
                            }
                            off += step.consumed;
                        }
                    }
                }
                pending.drain(..off);
            }
            prop_assert!(delivered <= data.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Sequences of well-formed and rule-breaking frames decode to the same messages,
        /// control events and errors whether each frame arrives whole (the one-look path
        /// for small messages) or a byte at a time (the general path).
        #[test]
        fn whole_frames_decode_as_pieces_do(
            frames in proptest::collection::vec(
                (any::<bool>(), prop_oneof![Just(0u8), Just(1), Just(2), Just(8), Just(9), Just(10)],
                 prop_oneof![
                     // Empty, and a valid close payload (code 1000), so that frames
                     // after a close are tried as well.
                     Just(Vec::new()),
                     Just(vec![3, 0xe8]),
                     proptest::collection::vec(prop_oneof![Just(b'a'), Just(0xce), Just(0xba), Just(0xff), any::<u8>()], 0..130),
                 ]),
                1..8),
            max in 0u64..200,
        ) {
            let mut wire = Vec::new();
            for (fin, opcode, payload) in &frames {
                // Mostly final frames: whole messages are what the one-look path sees.
                let fin = *fin || payload.len() % 3 != 0;
                wire.extend(super::tests::masked_frame(fin, *opcode, payload));
            }
            let whole = super::tests::run(&wire, wire.len(), max);
            prop_assert_eq!(&super::tests::run(&wire, 1, max), &whole);
            prop_assert_eq!(&super::tests::run(&wire, 7, max), &whole);
        }
    }
}
