//! Apps that decide upgrades and answer plain HTTP requests (ABI v4), through the gate
//! plugin (`tests/gate-app`): accept with data, refuse with a status and body, decide
//! later, time out; plain requests with keep-alive, pipelining, `Expect: 100-continue`,
//! HEAD, the server's 411/413/500/504, and curl as a real client.

use ringsocket_tests::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

/// A server with the gate app at `/gate` (upgrades) and `/api/*` (plain requests), its
/// answers due within 1 s, and plain bodies up to 1000 bytes.
fn gate() -> Server {
    let apps = json!([{
        "name": "gate",
        "app_path": plugin("gate_app"),
        "endpoints": [
            {"endpoint_id": 5, "url": "ws://127.0.0.1:{port}/gate"},
            {"endpoint_id": 6, "url": "http://127.0.0.1:{port}/api/*"}
        ]
    }]);
    Server::start(
        apps,
        json!({"app_answer_timeout": 1, "max_http_body_size": 1000}),
    )
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn an_accepted_upgrade_opens_with_the_data_the_app_attached() {
    let s = gate();
    let mut ws = s.connect("/gate?token=good");
    let open = text(&mut ws);
    assert!(open.starts_with("open data=42 id="), "{open}");
    ws.send(tungstenite::Message::text("hi")).unwrap();
    assert_eq!(text(&mut ws), "hi");
}

#[test]
fn an_upgrade_decided_later_opens_then() {
    let s = gate();
    let mut ws = s.connect("/gate?token=later");
    assert!(text(&mut ws).starts_with("open data=7 id="));
}

#[test]
fn a_refused_upgrade_gets_the_apps_status_headers_and_body_then_eof() {
    let s = gate();
    let mut stream = s.raw();
    let reply = raw_handshake(&mut stream, "/gate?token=wrong", "");
    assert!(
        reply.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{reply}"
    );
    assert!(reply.contains("\r\nConnection: close\r\n"), "{reply}");
    assert!(
        reply.contains("\r\nWWW-Authenticate: Bearer\r\n"),
        "{reply}"
    );
    assert!(
        reply.ends_with("\r\n\r\n{\"error\":\"bad token\"}"),
        "{reply}"
    );
    assert!(reads_eof(&mut stream));
}

#[test]
fn undecided_and_failed_upgrades_get_503_and_500() {
    let s = gate();
    let mut stream = s.raw();
    let start = Instant::now();
    let reply = raw_handshake(&mut stream, "/gate?token=never", "");
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    let mut stream = s.raw();
    let reply = raw_handshake(&mut stream, "/gate?token=fail", "");
    assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
    // The gate still serves.
    assert!(text(&mut s.connect("/gate?token=good")).starts_with("open data=42"));
}

#[test]
fn a_client_that_leaves_before_the_decision_costs_nothing_and_blocks_nobody() {
    let s = gate();
    for _ in 0..50 {
        let mut stream = s.raw();
        let req = "GET /gate?token=later HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(req.as_bytes()).unwrap();
    } // all dropped before the timer accepts them
    let mut ws = s.connect("/gate?token=later");
    assert!(text(&mut ws).starts_with("open data=7"));
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

#[test]
fn plain_requests_share_one_keep_alive_connection_and_may_be_pipelined() {
    let s = gate();
    let mut stream = s.raw();
    let post = "POST /api/echo?user=1&type=text HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\n\
                Content-Length: 11\r\n\r\nhello world";
    stream.write_all(post.as_bytes()).unwrap();
    let (status, head, body) = read_response(&mut stream, false);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: application/json\r\n"),
        "{head}"
    );
    assert!(!head.contains("Connection: close"), "{head}");
    let body = json_body(&body);
    assert_eq!(body["method"], "POST");
    assert_eq!(body["query"], "user=1&type=text");
    assert_eq!(
        (body["body"].as_str(), body["x_test"].as_str()),
        (Some("hello world"), Some("yes"))
    );
    // Two requests in one write, the second a HEAD: two responses, in order.
    let two =
        "GET /api/echo?n=2 HTTP/1.1\r\nHost: h\r\n\r\nHEAD /api/echo HTTP/1.1\r\nHost: h\r\n\r\n";
    stream.write_all(two.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut stream, false);
    assert_eq!(
        (status, json_body(&body)["query"].as_str()),
        (200, Some("n=2"))
    );
    let (status, head, _) = read_response(&mut stream, true);
    assert_eq!(status, 200);
    assert!(head.contains("Content-Length: "), "{head}");
    // The body of the HEAD response is not sent: the next response follows at once.
    stream
        .write_all(b"GET /api/missing HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut stream, false);
    assert_eq!((status, body), (404, b"no such path\n".to_vec()));
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(reads_eof(&mut stream));
}

#[test]
fn answers_given_later_and_the_servers_own_answers() {
    let s = gate();
    let ask = |request: &str| {
        let mut stream = s.raw();
        stream.write_all(request.as_bytes()).unwrap();
        read_response(&mut stream, false)
    };
    let (status, _, body) = ask("GET /api/later HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((status, body), (202, b"later".to_vec()));
    let (status, _, _) = ask("GET /api/fail HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status, 500);
    let (status, _, body) = ask("GET /api/reserved HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        (status, String::from_utf8(body).unwrap()),
        (400, "invalid argument".to_string())
    );
    let (status, _, body) = ask("GET /api/big?n=300000 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((status, body.len()), (200, 300_000));
    assert!(body.starts_with(b"abcdef") && body[26..].starts_with(b"abc"));
    let start = Instant::now();
    let (status, head, _) = ask("GET /api/never HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status, 504, "{head}");
    assert!(start.elapsed() >= Duration::from_millis(900));
    let (status, _, _) = ask("POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n");
    assert_eq!(status, 413);
    let (status, _, _) =
        ask("POST /api/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(status, 411);
    let (status, _, _) = ask("GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status, 404);
    // The app answers plain requests on every endpoint of its, the upgrade one too
    // (an app without the http callback leaves them the server's 400: handshake.rs).
    let (status, _, body) = ask("GET /gate HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((status, body), (404, b"no such path\n".to_vec()));
}

#[test]
fn a_body_sent_after_100_continue_in_pieces() {
    let s = gate();
    let mut stream = s.raw();
    let head =
        "POST /api/echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    for piece in [&b"01234"[..], b"567", b"89"] {
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, _, body) = read_response(&mut stream, false);
    assert_eq!(
        (status, json_body(&body)["body"].as_str()),
        (200, Some("0123456789"))
    );
}

#[test]
fn curl_talks_to_the_app_with_keep_alive_and_a_large_body() {
    let s = gate();
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", s.port);
    // 900 bytes: curl sends `Expect: 100-continue` past 1 KiB only in old versions;
    // either way the answer must come.
    let big = "x".repeat(900);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-H",
            "X-Test: curl",
            "--data-binary",
            &big,
        ])
        .arg(url("/api/echo?a=1"))
        .args([
            "--next",
            "-sS",
            "--max-time",
            "5",
            "-w",
            "%{http_code} %{num_connects}",
        ])
        .arg(url("/api/missing"))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (first, rest) = stdout.split_at(stdout.find('}').unwrap() + 1);
    let body = json_body(first.as_bytes());
    assert_eq!(
        (body["method"].as_str(), body["x_test"].as_str()),
        (Some("POST"), Some("curl"))
    );
    assert_eq!(body["body"].as_str().map(str::len), Some(900));
    // The second request reused the first's connection (0 new connects).
    assert!(rest.ends_with("404 0"), "{rest}");
}

/// The same through the C header (`tests/c-plugins/gate.c`): accept with data, refuse
/// with 403, answer a POST; and the wrong calls it makes first are refused, not fatal.
#[test]
fn a_c_plugin_decides_and_answers_through_the_header() {
    let apps = json!([{
        "name": "gate-c",
        "app_path": plugin("gate_c"),
        "endpoints": [{"endpoint_id": 3, "url": "ws://127.0.0.1:{port}/*"}]
    }]);
    let s = Server::start(apps, json!({}));
    let mut ws = s.connect("/c?token=good");
    assert_eq!(text(&mut ws), "data=7 client_data=7");
    let mut stream = s.raw();
    let reply = raw_handshake(&mut stream, "/c?token=bad", "");
    assert!(reply.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nforbidden\n"), "{reply}");
    let (status, head, body) = http(s.port, "POST", "/c/x", "", b"hello");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("X-C: 1\r\n"), "{head}");
    // -3 invalid, -3 reserved header, -6 unknown, -3 not an upgrade, -3 bare LF.
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "POST /c/x hello | -3 -3 -6 -3 -3"
    );
}
