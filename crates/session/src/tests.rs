//! The session driven with a fake clock and no sockets.

use super::*;
use ringsocket_proto::frame::encode_client_frame;
use ringsocket_proto::{CloseCode, MessageKind, Opcode};
use std::time::Duration;

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Open(u16, Option<usize>),
    /// An upgrade to decide (with the protocol index), or a plain request (None), with
    /// its head's first line and its body.
    Request(Option<Option<usize>>, String, Vec<u8>),
    Cancelled,
    Alive,
    Message(MessageKind, Vec<u8>),
    Close(u16),
}

#[derive(Default)]
struct App {
    seen: Vec<Seen>,
    pause: bool,
}

impl AppEvents for App {
    fn open(&mut self, route: &Route, protocol: Option<usize>, _head: &[u8], _decided: bool) {
        self.seen.push(Seen::Open(route.endpoint.0, protocol));
    }
    fn request(&mut self, _route: &Route, kind: RequestKind, head: &[u8], body: &[u8]) {
        let line = String::from_utf8_lossy(head)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let kind = match kind {
            RequestKind::Upgrade { protocol } => Some(protocol),
            RequestKind::Http => None,
        };
        self.seen.push(Seen::Request(kind, line, body.to_vec()));
    }
    fn cancelled(&mut self) {
        self.seen.push(Seen::Cancelled);
    }
    fn alive(&mut self) {
        self.seen.push(Seen::Alive);
    }
    fn message(&mut self, kind: MessageKind, message: Message<'_>) -> Delivery {
        self.seen
            .push(Seen::Message(kind, message.bytes().to_vec()));
        if self.pause {
            Delivery::Paused
        } else {
            Delivery::Delivered
        }
    }
    fn close(&mut self, code: CloseCode) {
        self.seen.push(Seen::Close(code.0));
    }
}

/// A session, its config, a fake clock and a fake app.
struct Harness {
    config: SessionConfig,
    session: Session,
    now: Tick,
    app: App,
    /// Everything the session asked to write, in order.
    written: Vec<u8>,
    shutdown: bool,
}

const REQUEST: &str =
    "GET /chat?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

impl Harness {
    fn new(limits: Limits) -> Harness {
        let routes = Routes::new(vec![Route {
            port: 80,
            path: "/chat".into(),
            app: AppIndex(0),
            endpoint: EndpointIndex(3),
            allowed_origins: vec!["https://ok".into()],
            subprotocols: vec!["a".into(), "b".into()],
            decides_upgrades: false,
            serves_http: false,
        }]);
        Harness::with_routes(limits, routes)
    }

    /// A harness whose app decides upgrades and serves HTTP, on `/chat` and `/api/*`.
    fn deciding(limits: Limits) -> Harness {
        let route = |path: &str, endpoint| Route {
            port: 80,
            path: path.into(),
            app: AppIndex(0),
            endpoint: EndpointIndex(endpoint),
            allowed_origins: vec!["*".into()],
            subprotocols: vec!["a".into(), "b".into()],
            decides_upgrades: true,
            serves_http: true,
        };
        Harness::with_routes(
            limits,
            Routes::new(vec![route("/chat", 3), route("/api/*", 4)]),
        )
    }

    fn with_routes(limits: Limits, routes: Routes) -> Harness {
        let now = Tick::ZERO;
        Harness {
            session: Session::new(80, now, &limits),
            config: SessionConfig {
                routes,
                limits,
                draining: false,
            },
            now,
            app: App::default(),
            written: Vec::new(),
            shutdown: false,
        }
    }

    fn open(limits: Limits) -> Harness {
        let mut h = Harness::new(limits);
        h.input(REQUEST.as_bytes());
        assert_eq!(h.app.seen, [Seen::Open(3, None)]);
        assert!(String::from_utf8_lossy(&h.take_written()).starts_with("HTTP/1.1 101"));
        h.app.seen.clear();
        h
    }

    fn limits(&self) -> Limits {
        self.config.limits
    }

    /// Feeds bytes, keeping what is not consumed (as a worker does).
    fn input(&mut self, bytes: &[u8]) -> usize {
        let mut buf = bytes.to_vec();
        let n = self
            .session
            .handle_input(&self.config, self.now, &mut buf, &mut self.app);
        self.drain();
        n
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = Vec::new();
        encode_client_frame(true, opcode, payload, [1, 2, 3, 4], &mut f);
        assert_eq!(self.input(&f), f.len());
    }

    /// Writes everything out, as a socket that always has room would.
    fn drain(&mut self) {
        let out = self.session.output().to_vec();
        self.session.advance_output(out.len());
        self.written.extend_from_slice(&out);
        if self.session.output_drained(self.now, &self.config.limits) == Drained::ShutdownWrite {
            self.shutdown = true;
        }
    }

    fn take_written(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.written)
    }

    /// Advances the fake clock to the session's next deadline and handles it.
    fn run_to_deadline(&mut self) -> Duration {
        let due = self
            .session
            .poll_timeout(&self.config.limits)
            .expect("a deadline");
        let waited = due.since(self.now);
        self.now = due;
        self.session
            .handle_timeout(self.now, &self.config.limits, &mut self.app);
        self.drain();
        waited
    }

    fn send(&mut self, payload: &[u8]) -> Sent {
        let limits = self.limits();
        let sent = self.session.send(
            &Frame::message(MessageKind::Text, payload),
            self.now,
            &limits,
        );
        if sent == Sent::Overflowed {
            self.session
                .close_overflowed(self.now, &limits, &mut self.app);
        }
        self.drain();
        sent
    }
}

/// Parses server frames: (opcode, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(bytes[1] & 0x7f);
        assert!(len < 126, "test frames are short");
        out.push((bytes[0] & 0x0f, bytes[2..2 + len].to_vec()));
        bytes = &bytes[2 + len..];
    }
    out
}

fn close_payload(code: u16) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(CloseCode(code).default_reason().as_bytes());
    p
}

#[test]
fn upgrade_routes_and_selects_subprotocol() {
    let mut h = Harness::new(Limits::default());
    let req = REQUEST.replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Protocol: x, b\r\nOrigin: https://ok\r\n\r\n",
    );
    // Split anywhere: nothing is consumed until the head is complete.
    assert_eq!(h.input(&req.as_bytes()[..40]), 0);
    assert_eq!(h.input(req.as_bytes()), req.len());
    assert_eq!(h.app.seen, [Seen::Open(3, Some(1))]);
    assert_eq!(h.session.phase(), Phase::Open);
    let response = String::from_utf8(h.take_written()).unwrap();
    assert!(
        response.contains("Sec-WebSocket-Protocol: b\r\n"),
        "{response}"
    );
    // The 101's buffer is released once written: an idle connection holds nothing.
    assert_eq!(h.session.held(), 0);
}

#[test]
fn refused_upgrades_get_their_status_then_flush_and_linger() {
    for (req, status) in [
        (REQUEST.replace("/chat", "/nope"), "404"),
        (
            REQUEST.replace("\r\n\r\n", "\r\nOrigin: https://evil\r\n\r\n"),
            "403",
        ),
        (REQUEST.replace("GET", "PUT"), "405"),
        (REQUEST.replace("Version: 13", "Version: 8"), "426"),
    ] {
        let mut h = Harness::new(Limits::default());
        h.input(req.as_bytes());
        let response = String::from_utf8(h.take_written()).unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(h.app.seen.is_empty());
        assert!(h.shutdown, "write side shut down after the response");
        assert_eq!(h.session.phase(), Phase::Lingering);
        assert_eq!(h.run_to_deadline(), h.limits().http_wait);
        assert!(h.session.is_closed());
    }
}

#[test]
fn oversized_head_gets_431_at_once() {
    let mut h = Harness::new(Limits {
        max_header: 300,
        ..Limits::default()
    });
    // Incomplete, but already over the limit: no need to wait for the rest.
    let mut head = b"GET /chat HTTP/1.1\r\nX: ".to_vec();
    head.resize(301, b'a');
    h.input(&head);
    let response = String::from_utf8(h.take_written()).unwrap();
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
}

#[test]
fn handshake_timeout() {
    let mut h = Harness::new(Limits::default());
    h.input(b"GET /chat HTTP/1.1\r\n");
    assert_eq!(h.run_to_deadline(), h.limits().handshake_timeout);
    assert!(h.session.is_closed());
    assert!(h.app.seen.is_empty());
}

#[test]
fn client_close_waits_for_the_app_replies_pending() {
    let mut h = Harness::open(Limits::default());
    h.frame(0x1, b"hi");
    h.frame(0x8, &close_payload(1000));
    assert_eq!(
        h.app.seen,
        [
            Seen::Message(MessageKind::Text, b"hi".to_vec()),
            Seen::Close(1000)
        ]
    );
    assert!(matches!(h.session.phase(), Phase::AwaitingApp { .. }));
    // No close frame yet: the app's reply to "hi" is still to come, and goes first.
    assert!(h.take_written().is_empty());
    assert_eq!(h.send(b"re: hi"), Sent::Queued);
    h.session.app_done(h.now, &h.limits());
    h.drain();
    assert_eq!(
        frames(&h.take_written()),
        [
            (0x1, b"re: hi".to_vec()),
            (0x8, 1000u16.to_be_bytes().to_vec())
        ]
    );
    assert!(h.shutdown);
    // Lingering: input is dropped; EOF ends it.
    h.frame(0x1, b"late");
    assert_eq!(h.app.seen.len(), 2);
    h.session.handle_eof(h.now, &h.limits(), &mut h.app);
    assert!(h.session.is_closed());
}

#[test]
fn client_close_without_code_is_echoed_empty() {
    let mut h = Harness::open(Limits::default());
    h.frame(0x8, &[]);
    assert_eq!(h.app.seen, [Seen::Close(1005)]);
    h.session.app_done(h.now, &h.limits());
    h.drain();
    assert_eq!(frames(&h.take_written()), [(0x8, vec![])]);
}

#[test]
fn app_that_never_confirms_is_timed_out() {
    let mut h = Harness::open(Limits::default());
    h.frame(0x8, &close_payload(1000));
    assert_eq!(h.run_to_deadline(), h.limits().ws_wait);
    assert!(h.session.is_closed());
}

#[test]
fn app_initiated_close() {
    let mut h = Harness::open(Limits::default());
    h.session
        .app_close(&close_payload(4000), h.now, &h.limits(), &mut h.app);
    h.drain();
    assert_eq!(h.app.seen, [Seen::Close(4000)]);
    assert_eq!(h.session.phase(), Phase::Closing);
    // Nothing after the close frame, not even the app's later sends.
    assert_eq!(h.send(b"after"), Sent::Dropped);
    assert_eq!(frames(&h.take_written()), [(0x8, close_payload(4000))]);
    // Data the client sent before seeing our close is dropped; its close ends it: a
    // flush is due even with nothing left to write (it shuts the write side).
    h.frame(0x1, b"crossing");
    let mut reply = Vec::new();
    encode_client_frame(true, 0x8, &close_payload(4000), [1, 2, 3, 4], &mut reply);
    let mut buf = reply.clone();
    h.session
        .handle_input(&h.config, h.now, &mut buf, &mut h.app);
    assert!(h.session.output().is_empty() && h.session.wants_flush());
    h.drain();
    assert_eq!(h.app.seen.len(), 1);
    assert!(h.shutdown);
    assert_eq!(h.session.phase(), Phase::Lingering);
}

#[test]
fn server_close_times_out_without_the_client_reply() {
    let mut h = Harness::open(Limits::default());
    h.session
        .close(CloseCode::GOING_AWAY, "bye", h.now, &h.limits(), &mut h.app);
    h.drain();
    assert_eq!(h.app.seen, [Seen::Close(1001)]);
    assert_eq!(h.run_to_deadline(), h.limits().ws_wait);
    assert!(h.session.is_closed());
}

#[test]
fn protocol_errors_in_each_phase() {
    // Open: the app is told the code; the close frame follows its confirmation.
    let mut h = Harness::open(Limits::default());
    h.frame(0x3, b"reserved opcode");
    assert_eq!(h.app.seen, [Seen::Close(1002)]);
    h.session.app_done(h.now, &h.limits());
    h.drain();
    assert_eq!(frames(&h.take_written()), [(0x8, close_payload(1002))]);

    // Open, invalid UTF-8: 1007.
    let mut h = Harness::open(Limits::default());
    h.frame(0x1, &[0xff, 0xfe]);
    assert_eq!(h.app.seen, [Seen::Close(1007)]);

    // Open, message too big: 1009 before the payload arrives.
    let mut h = Harness::open(Limits {
        max_message: 10,
        ..Limits::default()
    });
    let mut f = Vec::new();
    encode_client_frame(true, 0x2, &[0; 11], [0; 4], &mut f);
    h.input(&f[..6]);
    assert_eq!(h.app.seen, [Seen::Close(1009)]);

    // Handshake: garbage is a 400.
    let mut h = Harness::new(Limits::default());
    h.input(b"\x16\x03\x01garbage\r\n\r\n");
    assert!(String::from_utf8_lossy(&h.take_written()).starts_with("HTTP/1.1 400"));

    // Closing: garbage instead of the close reply ends the wait.
    let mut h = Harness::open(Limits::default());
    h.session
        .close(CloseCode::GOING_AWAY, "", h.now, &h.limits(), &mut h.app);
    h.drain();
    h.input(&[0x81, 0x00]); // unmasked
    assert!(h.shutdown);
    assert_eq!(h.app.seen, [Seen::Close(1001)]);
}

#[test]
fn ping_then_pong_timeout_drops_with_1006() {
    let limits = Limits {
        ping_interval: Some(Duration::from_secs(30)),
        pong_timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let mut h = Harness::open(limits);
    assert_eq!(h.run_to_deadline(), Duration::from_secs(30));
    assert_eq!(frames(&h.take_written()), [(0x9, vec![])]);
    assert_eq!(h.session.phase(), Phase::Open);
    assert_eq!(h.run_to_deadline(), Duration::from_secs(10));
    assert_eq!(h.app.seen, [Seen::Close(1006)]);
    assert!(h.session.is_closed());
}

#[test]
fn pong_keeps_the_connection() {
    let mut h = Harness::open(Limits::default());
    h.run_to_deadline();
    assert_eq!(frames(&h.take_written()), [(0x9, vec![])]);
    h.now += Duration::from_secs(5);
    h.frame(0xA, &[]);
    // The next ping is due a full interval after the pong.
    assert_eq!(h.run_to_deadline(), Duration::from_secs(30));
    assert_eq!(frames(&h.take_written()), [(0x9, vec![])]);
    assert_eq!(h.app.seen, [Seen::Alive], "only the pong's sign of life");
    // A connection that only exchanges pings holds no buffer between them...
    assert_eq!(h.session.held(), 0);
    // ...while one that carries messages keeps its (small) buffer.
    assert_eq!(h.send(b"data"), Sent::Queued);
    assert!(h.session.held() > 0);
}

#[test]
fn busy_connections_are_not_pinged() {
    let mut h = Harness::open(Limits::default());
    for _ in 0..10 {
        h.now += Duration::from_secs(20);
        h.frame(0x1, b"x");
        h.session.handle_timeout(h.now, &h.limits(), &mut h.app);
    }
    let written = h.take_written();
    assert!(frames(&written).is_empty(), "{written:?}");
}

#[test]
fn pings_off() {
    let h = Harness::open(Limits {
        ping_interval: None,
        ..Limits::default()
    });
    assert_eq!(h.session.poll_timeout(&h.limits()), None);
}

#[test]
fn idle_timeout_closes_with_1001() {
    let limits = Limits {
        idle_timeout: Some(Duration::from_secs(60)),
        ..Limits::default()
    };
    let mut h = Harness::open(limits);
    // Pings and pongs are not data: the connection still goes idle.
    loop {
        h.run_to_deadline();
        if h.session.phase() != Phase::Open {
            break;
        }
        h.frame(0xA, &[]);
    }
    // The pongs told the app the client is alive; then the idle close.
    assert_eq!(h.app.seen.last(), Some(&Seen::Close(1001)));
    assert!(h.app.seen[..h.app.seen.len() - 1]
        .iter()
        .all(|s| *s == Seen::Alive));
    let written = frames(&h.take_written());
    assert_eq!(
        written.last().unwrap(),
        &(0x8, close_payload_with(1001, "idle timeout"))
    );
    // A data message either way restarts the idle clock.
    let mut h = Harness::open(limits);
    h.now += Duration::from_secs(50);
    assert_eq!(h.send(b"out"), Sent::Queued);
    h.now += Duration::from_secs(50);
    h.frame(0xA, &[]);
    h.session.handle_timeout(h.now, &h.limits(), &mut h.app);
    assert_eq!(h.session.phase(), Phase::Open);
}

fn close_payload_with(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

#[test]
fn outbound_cap_closes_with_1008() {
    let mut h = Harness::open(Limits {
        out_cap: 100,
        ..Limits::default()
    });
    let limits = h.limits();
    // A client that does not read: nothing is drained.
    let frame = Frame::message(MessageKind::Binary, &[0; 60]);
    assert_eq!(h.session.send(&frame, h.now, &limits), Sent::Queued);
    assert_eq!(h.session.send(&frame, h.now, &limits), Sent::Overflowed);
    assert!(h.app.seen.is_empty(), "the caller closes it");
    h.session.close_overflowed(h.now, &limits, &mut h.app);
    assert_eq!(h.app.seen, [Seen::Close(1008)]);
    assert_eq!(h.session.phase(), Phase::Closing);
}

#[test]
fn paused_delivery_stops_decoding() {
    let mut h = Harness::open(Limits::default());
    h.app.pause = true;
    let mut two = Vec::new();
    encode_client_frame(true, 0x1, b"a", [0; 4], &mut two);
    let first = two.len();
    encode_client_frame(true, 0x1, b"b", [0; 4], &mut two);
    assert_eq!(h.input(&two), first);
    h.app.pause = false;
    assert_eq!(h.input(&two[first..]), two.len() - first);
    assert_eq!(
        h.app.seen,
        [
            Seen::Message(MessageKind::Text, b"a".to_vec()),
            Seen::Message(MessageKind::Text, b"b".to_vec())
        ]
    );
}

#[test]
fn fragmented_messages_are_assembled_and_released() {
    let mut h = Harness::open(Limits::default());
    let mut f = Vec::new();
    encode_client_frame(false, 0x2, &[1; 100_000], [9; 4], &mut f);
    encode_client_frame(true, 0x0, &[2; 10], [9; 4], &mut f);
    assert_eq!(h.input(&f), f.len());
    let Seen::Message(MessageKind::Binary, m) = &h.app.seen[0] else {
        panic!("{:?}", h.app.seen)
    };
    assert_eq!(m.len(), 100_010);
    assert_eq!(h.session.held(), 0, "a large assembly buffer is released");
}

#[test]
fn eof_while_open_tells_the_app_1006() {
    let mut h = Harness::open(Limits::default());
    h.session.handle_eof(h.now, &h.limits(), &mut h.app);
    assert_eq!(h.app.seen, [Seen::Close(1006)]);
    assert!(h.session.is_closed());
    // Nothing reaches a closed session.
    assert_eq!(h.send(b"x"), Sent::Dropped);
    let _ = Opcode::Text;
}

const DECIDE: &str =
    "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Protocol: b\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

fn response(status: u16, body: &[u8]) -> ringsocket_proto::HttpResponse<'_> {
    ringsocket_proto::HttpResponse {
        status,
        headers: b"X-A: 1\r\n",
        body,
    }
}

#[test]
fn an_app_accepts_an_upgrade_after_seeing_it() {
    let mut h = Harness::deciding(Limits::default());
    let mut early = DECIDE.as_bytes().to_vec();
    let mut frame = Vec::new();
    encode_client_frame(true, 1, b"early", [1, 2, 3, 4], &mut frame);
    early.extend_from_slice(&frame);
    // The head is taken; a frame sent before the 101 waits for the decision.
    assert_eq!(h.input(&early), DECIDE.len());
    assert_eq!(h.session.phase(), Phase::Deciding);
    let line = "GET /chat HTTP/1.1".to_string();
    assert_eq!(h.app.seen, [Seen::Request(Some(Some(1)), line, vec![])]);
    assert!(h.take_written().is_empty(), "nothing before the decision");
    assert_eq!(h.input(&frame), 0);
    let config = h.config.clone();
    assert!(h.session.accept_upgrade(&config, h.now, &mut h.app));
    h.drain();
    let written = String::from_utf8(h.take_written()).unwrap();
    assert!(written.starts_with("HTTP/1.1 101"), "{written}");
    assert!(
        written.contains("Sec-WebSocket-Protocol: b\r\n"),
        "{written}"
    );
    assert_eq!(h.app.seen[1], Seen::Open(3, Some(1)));
    assert_eq!(h.input(&frame), frame.len());
    assert_eq!(
        h.app.seen[2],
        Seen::Message(MessageKind::Text, b"early".to_vec())
    );
    // A second answer finds nothing to answer.
    assert!(!h.session.accept_upgrade(&config, h.now, &mut h.app));
    assert!(!h
        .session
        .respond(&response(403, b""), h.now, &config.limits));
}

#[test]
fn an_app_refuses_an_upgrade_with_its_status_and_body() {
    let mut h = Harness::deciding(Limits::default());
    h.input(DECIDE.as_bytes());
    let limits = h.limits();
    assert!(h.session.respond(&response(401, b"no"), h.now, &limits));
    h.drain();
    let written = String::from_utf8(h.take_written()).unwrap();
    assert_eq!(
        written,
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\nX-A: 1\r\n\r\nno"
    );
    assert!(h.shutdown);
    assert_eq!(h.session.phase(), Phase::Lingering);
}

#[test]
fn an_undecided_upgrade_times_out_with_503_and_the_app_hears_of_it() {
    let mut h = Harness::deciding(Limits::default());
    h.input(DECIDE.as_bytes());
    assert_eq!(h.run_to_deadline(), Limits::default().app_answer_timeout);
    assert_eq!(h.app.seen.last(), Some(&Seen::Cancelled));
    let written = String::from_utf8(h.take_written()).unwrap();
    assert!(written.starts_with("HTTP/1.1 503 "), "{written}");
}

#[test]
fn a_client_leaving_before_the_decision_cancels_it() {
    let mut h = Harness::deciding(Limits::default());
    h.input(DECIDE.as_bytes());
    let limits = h.limits();
    h.session.handle_eof(h.now, &limits, &mut h.app);
    assert_eq!(h.app.seen.last(), Some(&Seen::Cancelled));
    assert!(h.session.is_closed());
}

#[test]
fn plain_requests_are_answered_in_turn_on_one_connection() {
    let mut h = Harness::deciding(Limits::default());
    let first = "POST /api/send?user=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nHello";
    let second = "GET /api/ping HTTP/1.1\r\nHost: h\r\n\r\n";
    let both = format!("{first}{second}");
    // Pipelined: the first is taken, the second waits for the first's answer.
    assert_eq!(h.input(both.as_bytes()), first.len());
    let line = "POST /api/send?user=1 HTTP/1.1".to_string();
    assert_eq!(h.app.seen, [Seen::Request(None, line, b"Hello".to_vec())]);
    assert_eq!(h.input(second.as_bytes()), 0);
    let limits = h.limits();
    assert!(h.session.respond(&response(200, b"ok"), h.now, &limits));
    h.drain();
    let written = String::from_utf8(h.take_written()).unwrap();
    assert_eq!(
        written,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"
    );
    assert_eq!(h.session.phase(), Phase::Handshake);
    assert_eq!(h.input(second.as_bytes()), second.len());
    let line = "GET /api/ping HTTP/1.1".to_string();
    assert_eq!(h.app.seen[1], Seen::Request(None, line, vec![]));
}

#[test]
fn a_body_arrives_in_pieces_after_100_continue() {
    let mut h = Harness::deciding(Limits::default());
    let head =
        "POST /api/x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n";
    assert_eq!(h.input(head.as_bytes()), head.len());
    assert_eq!(h.take_written(), b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(h.app.seen.is_empty());
    assert_eq!(h.input(b"abc"), 3);
    assert_eq!(h.input(b"defGET"), 3, "only the body is taken");
    assert_eq!(h.app.seen.len(), 1);
    assert!(matches!(&h.app.seen[0], Seen::Request(None, _, body) if body == b"abcdef"));
}

#[test]
fn plain_requests_the_server_refuses() {
    for (request, status) in [
        (
            "POST /api/x HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n",
            "413",
        ),
        (
            "POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "411",
        ),
        ("GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n", "404"),
        (
            &format!(
                "GET /api/x?{} HTTP/1.1\r\nHost: h\r\n\r\n",
                "q".repeat(9000)
            )[..],
            "431",
        ),
    ] {
        let mut h = Harness::deciding(Limits::default());
        h.input(request.as_bytes());
        let written = String::from_utf8(h.take_written()).unwrap();
        assert!(
            written.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request}: {written}"
        );
        assert!(h.app.seen.is_empty());
    }
    // A route whose app does not serve HTTP answers as before (400: no upgrade).
    let mut h = Harness::new(Limits::default());
    h.input(b"GET /chat HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(String::from_utf8(h.take_written())
        .unwrap()
        .starts_with("HTTP/1.1 400 "));
}

#[test]
fn an_unanswered_request_gets_504_and_a_connection_close() {
    let mut h = Harness::deciding(Limits::default());
    h.input(b"GET /api/slow HTTP/1.1\r\nHost: h\r\n\r\n");
    h.run_to_deadline();
    assert_eq!(h.app.seen.last(), Some(&Seen::Cancelled));
    let written = String::from_utf8(h.take_written()).unwrap();
    assert!(written.starts_with("HTTP/1.1 504 "), "{written}");
    assert!(written.contains("Connection: close"), "{written}");
}

#[test]
fn a_clients_pings_and_pongs_tell_the_app_it_is_alive() {
    let mut h = Harness::open(Limits::default());
    h.frame(0x9, b"p");
    h.frame(0xA, b"");
    assert_eq!(h.app.seen, [Seen::Alive, Seen::Alive]);
    assert!(
        h.take_written().ends_with(&[0x8A, 1, b'p']),
        "the ping is answered"
    );
}
