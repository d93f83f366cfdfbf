//! The HTTP upgrade over real sockets: every refusal gets its full HTTP response.

use ringsocket_tests::*;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

fn server() -> Server {
    let mut echo = app("echo", "echo", "/echo");
    echo["endpoints"][0]["allowed_origins"] = json!(["https://good.example"]);
    echo["endpoints"][0]["subprotocols"] = json!(["v2.probe", "v1.probe"]);
    Server::start(
        json!([echo]),
        json!({"handshake_timeout": 1, "max_http_header_size": 1024}),
    )
}

/// Asserts a complete error response: status line, Content-Length matching the body,
/// `Connection: close`, and then the server closes the connection.
fn assert_refused(response: &str, status: &str, stream: &mut std::net::TcpStream) {
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status}\r\n")),
        "expected {status}, got:\n{response}"
    );
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.contains("Connection: close"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(!body.is_empty(), "the body says why");
    assert!(reads_eof(stream), "the server closes after refusing");
}

#[test]
fn accepts_a_valid_upgrade_and_negotiates_a_subprotocol() {
    let s = server();
    let mut stream = s.raw();
    let response = raw_handshake(
        &mut stream,
        "/echo",
        "Origin: https://good.example\r\nSec-WebSocket-Protocol: v0, v1.probe, v2.probe\r\n",
    );
    assert!(
        response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{response}"
    );
    assert!(
        response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{response}"
    );
    // The client's first acceptable offer wins.
    assert!(
        response.contains("Sec-WebSocket-Protocol: v1.probe\r\n"),
        "{response}"
    );
    send_frame(&mut stream, true, 1, b"hi");
    assert_eq!(read_frame(&mut stream), (true, 1, b"hi".to_vec()));
}

#[test]
fn no_subprotocol_header_when_none_matches() {
    let s = server();
    let mut stream = s.raw();
    let response = raw_handshake(&mut stream, "/echo", "Sec-WebSocket-Protocol: other\r\n");
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(!response.contains("Sec-WebSocket-Protocol"), "{response}");
}

#[test]
fn unknown_path_is_404() {
    let s = server();
    let mut stream = s.raw();
    let r = raw_handshake(&mut stream, "/nope", "");
    assert_refused(&r, "404 Not Found", &mut stream);
}

#[test]
fn foreign_origin_is_403() {
    let s = server();
    let mut stream = s.raw();
    let r = raw_handshake(&mut stream, "/echo", "Origin: https://evil.example\r\n");
    assert_refused(&r, "403 Forbidden", &mut stream);
}

#[test]
fn wrong_version_is_426_with_the_supported_version() {
    let s = server();
    let mut stream = s.raw();
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
        .unwrap();
    let r = read_http_response(&mut stream);
    assert!(r.contains("Sec-WebSocket-Version: 13\r\n"), "{r}");
    assert_refused(&r, "426 Upgrade Required", &mut stream);
}

#[test]
fn malformed_requests_are_400() {
    let s = server();
    for request in [
        "GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET /echo HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "this is not http\r\n\r\n",
    ] {
        let mut stream = s.raw();
        stream.write_all(request.as_bytes()).unwrap();
        let r = read_http_response(&mut stream);
        assert_refused(&r, "400 Bad Request", &mut stream);
    }
}

#[test]
fn non_get_is_405() {
    let s = server();
    let mut stream = s.raw();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let r = read_http_response(&mut stream);
    assert!(r.contains("Allow: GET\r\n"), "{r}");
    assert_refused(&r, "405 Method Not Allowed", &mut stream);
}

#[test]
fn oversized_headers_are_431() {
    let s = server();
    let mut stream = s.raw();
    let big = format!("X-Big: {}\r\n", "a".repeat(2000));
    let r = raw_handshake(&mut stream, "/echo", &big);
    assert_refused(&r, "431 Request Header Fields Too Large", &mut stream);
    // Also when the head never ends.
    let mut stream = s.raw();
    stream
        .write_all(format!("GET /echo HTTP/1.1\r\n{}", "X-A: b\r\n".repeat(300)).as_bytes())
        .unwrap();
    let r = read_http_response(&mut stream);
    assert_refused(&r, "431 Request Header Fields Too Large", &mut stream);
}

#[test]
fn slow_handshakes_time_out() {
    let s = server();
    let mut stream = s.raw();
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: h\r\n")
        .unwrap();
    let start = Instant::now();
    assert!(
        reads_eof(&mut stream),
        "the server drops an unfinished handshake"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // The worker still serves others.
    let mut ws = s.connect("/echo");
    ws.send(tungstenite::Message::text("alive")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("alive"));
}

#[test]
fn connections_beyond_fd_alloc_c_get_503() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"fd_alloc_c": 64, "worker_c": 1}),
    );
    // fd_alloc_c counts every file the server uses: listeners, polls and eventfds take
    // some, so fewer than 64 clients fit, and the next one gets 503.
    let mut held = Vec::new();
    let refused = loop {
        assert!(held.len() < 64, "no 503 within fd_alloc_c clients");
        let mut st = s.raw();
        let r = raw_handshake(&mut st, "/echo", "");
        if r.starts_with("HTTP/1.1 503 Service Unavailable\r\n") {
            break r;
        }
        assert!(r.starts_with("HTTP/1.1 101"), "{r}");
        held.push(st);
    };
    assert!(held.len() >= 16, "only {} clients fit", held.len());
    assert!(refused.contains("connection limit"), "{refused}");
    // Room again once a client leaves.
    held.pop();
    s.wait_for_upgrade("/echo", "no room after a client left");
}
