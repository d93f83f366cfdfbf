//! The connection session driven by an arbitrary sequence of events — bytes in any
//! split, app sends, closes and confirmations, writes of any size, the end of input,
//! time passing — with a fake clock. It must never panic (an invalid phase change is a
//! debug assertion), never hold more than its limits allow, and tell the app of a
//! client at most once that it opened and once that it closed, in that order.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ringsocket_proto::{CloseCode, MessageKind};
use ringsocket_session::*;
use std::time::Duration;

#[derive(Debug, Arbitrary)]
enum Op {
    /// Bytes from the client (a valid upgrade request first, if `upgrade`).
    Input { upgrade: bool, bytes: Vec<u8> },
    /// A masked client frame.
    Frame { opcode: u8, fin: bool, payload: Vec<u8> },
    Send { size: u16 },
    AppClose { code: u16 },
    AppDone,
    Close,
    Write { n: u16 },
    Eof,
    Wait { ms: u32 },
}

#[derive(Default)]
struct App {
    opened: bool,
    closed: bool,
}

impl AppEvents for App {
    fn open(&mut self, _: &Route, _: Option<usize>, _: &[u8], _: bool) {
        assert!(!self.opened, "opened twice");
        self.opened = true;
    }
    fn request(&mut self, _: &Route, _: RequestKind, _: &[u8], _: &[u8]) {
        unreachable!("no route here has an app that decides or answers");
    }
    fn cancelled(&mut self) {
        unreachable!("no request was made");
    }
    fn message(&mut self, _: MessageKind, message: Message<'_>) -> Delivery {
        assert!(self.opened && !self.closed, "a message outside open..close");
        assert!(message.bytes().len() <= 4096);
        Delivery::Delivered
    }
    fn close(&mut self, _: CloseCode) {
        assert!(self.opened && !self.closed, "closed twice or before open");
        self.closed = true;
    }
}

const REQUEST: &[u8] = b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fuzz_target!(|ops: Vec<Op>| {
    let limits = Limits {
        max_message: 4096,
        max_header: 1024,
        out_cap: 8192,
        ping_interval: Some(Duration::from_secs(1)),
        pong_timeout: Duration::from_secs(1),
        idle_timeout: Some(Duration::from_secs(5)),
        ..Limits::default()
    };
    let config = SessionConfig {
        routes: Routes::new(vec![Route {
            port: 1,
            path: "/x".into(),
            app: AppIndex(0),
            endpoint: EndpointIndex(0),
            allowed_origins: vec![],
            subprotocols: vec!["p".into()],
            decides_upgrades: false,
            serves_http: false,
        }]),
        limits,
        draining: false,
    };
    let mut now = Tick::ZERO;
    let mut session = Session::new(1, now, &limits);
    let mut app = App::default();
    let mut pending = Vec::new();
    for op in ops {
        if session.is_closed() {
            break;
        }
        match op {
            Op::Input { upgrade, bytes } => {
                if upgrade {
                    pending.extend_from_slice(REQUEST);
                }
                pending.extend_from_slice(&bytes);
            }
            Op::Frame { opcode, fin, payload } => {
                ringsocket_proto::frame::encode_client_frame(fin, opcode, &payload, [1, 2, 3, 4], &mut pending);
            }
            Op::Send { size } => {
                let payload = vec![0u8; usize::from(size)];
                let frame = Frame::message(MessageKind::Binary, &payload);
                if session.send(&frame, now, &limits) == Sent::Overflowed {
                    session.close_overflowed(now, &limits, &mut app);
                }
            }
            Op::AppClose { code } => {
                session.app_close(&code.to_be_bytes(), now, &limits, &mut app)
            }
            Op::AppDone => session.app_done(now, &limits),
            Op::Close => session.close(CloseCode::GOING_AWAY, "bye", now, &limits, &mut app),
            Op::Write { n } => {
                let n = usize::from(n).min(session.output().len());
                session.advance_output(n);
                if session.output().is_empty() {
                    let _ = session.output_drained(now, &limits);
                }
            }
            Op::Eof => session.handle_eof(now, &limits, &mut app),
            Op::Wait { ms } => {
                now += Duration::from_millis(u64::from(ms % 10_000));
                if session.poll_timeout(&limits).is_some_and(|t| t <= now) {
                    session.handle_timeout(now, &limits, &mut app);
                }
            }
        }
        if session.reads_input() && !pending.is_empty() {
            let mut buf = std::mem::take(&mut pending);
            let used = if session.decodes_input() {
                session.handle_input(&config, now, &mut buf, &mut app)
            } else {
                buf.len()
            };
            assert!(used <= buf.len());
            pending = buf[used..].to_vec();
            // Held input stays bounded: a request head or a control frame.
            assert!(pending.len() <= 1024 + 139 + 300, "held {}", pending.len());
        }
        // Output and the message being assembled stay within their caps (the few
        // control frames the server itself sends may exceed the cap by their size).
        assert!(session.unsent() <= limits.out_cap + 4096, "unsent {}", session.unsent());
        assert!(session.held() <= 4 * (limits.out_cap + 4096 + 8192), "held {}", session.held());
    }
});
