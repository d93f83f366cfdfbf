//! The frame receiver fed arbitrary bytes in arbitrary splits, the way a worker feeds
//! it: unconsumed bytes are kept and passed again with the next piece. It must never
//! panic, never consume more than it was given, and stop for good after an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsocket_proto::{Event, Receiver};

fuzz_target!(|input: (u16, Vec<u8>, Vec<u8>)| {
    let (max, splits, bytes) = input;
    let mut rx = Receiver::new(u64::from(max));
    let mut pending: Vec<u8> = Vec::new();
    let mut rest = &bytes[..];
    let mut split = splits.iter().cycle();
    let mut message_len = 0u64;
    while !rest.is_empty() {
        let n = usize::from(*split.next().unwrap_or(&255)).max(1).min(rest.len());
        pending.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let mut buf = std::mem::take(&mut pending);
        let mut off = 0;
        loop {
            let available = buf.len() - off;
            let step = match rx.handle(&mut buf[off..]) {
                Ok(step) => step,
                Err(_) => return, // the connection is failed; the receiver is not used again
            };
            assert!(step.consumed <= available);
            off += step.consumed;
            match step.event {
                None if step.consumed == 0 => break,
                Some(Event::Data { chunk, first, last, .. }) => {
                    if first {
                        message_len = 0;
                    }
                    message_len += chunk.len() as u64;
                    assert!(message_len <= u64::from(max), "a message over the limit got through");
                    let _ = last;
                }
                Some(Event::Ping(p) | Event::Pong(p)) => assert!(p.len() <= 125),
                _ => {}
            }
        }
        pending.extend_from_slice(&buf[off..]);
        // What is held between reads stays small: at most a frame header and a control
        // frame's payload.
        assert!(pending.len() <= 14 + 125 + 255, "held {} bytes", pending.len());
    }
});
