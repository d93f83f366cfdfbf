//! The metrics listener: `/metrics` counts real traffic and parses with the Prometheus
//! client library's OpenMetrics parser, `/health` and `/ready` follow the lifecycle,
//! and the status page shows live numbers in real headless Chromium.

use base64::Engine as _;
use ringsocket_tests::browser::Browser;
use ringsocket_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// The metrics listener's port, from the server's "metrics on http://ADDR/metrics" line.
fn metrics_port(s: &Server) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = s.log();
        let port = log
            .lines()
            .find_map(|l| l.split("metrics on http://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port());
        if let Some(port) = port {
            return port;
        }
        assert!(Instant::now() < deadline, "no metrics line in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(port: u16, path: &str) -> (u16, String) {
    let (status, _, body) = http(port, "GET", path, "Connection: close\r\n", b"");
    (status, String::from_utf8(body).unwrap())
}

/// `/metrics` as parsed by the `prometheus_client` Python package's OpenMetrics parser
/// (Debian's `python3-prometheus-client`): `name{label="v",...}` (labels sorted) → value.
/// The parser rejects anything that is not valid OpenMetrics text.
fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (status, text) = get(port, "/metrics");
    assert_eq!(status, 200);
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        out["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (apt-get install python3-prometheus-client; .ci/run does it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<BTreeMap<String, f64>>(&out.stdout).unwrap()
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} missing from {m:#?}"))
}

fn with_metrics(extra: Value) -> Value {
    let mut extra = extra;
    extra["metrics"] = json!({"addr": "127.0.0.1:0"});
    extra
}

#[test]
fn metrics_count_real_traffic_and_parse_as_openmetrics() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        with_metrics(json!({"worker_c": 2})),
    );
    let port = metrics_port(&s);
    let mut clients: Vec<Client> = (0..3).map(|_| s.connect("/echo")).collect();
    let mut bytes_in = 0;
    for (c, ws) in clients.iter_mut().enumerate() {
        for i in 0..10 {
            let text = format!("client {c} message {i}");
            bytes_in += text.len();
            ws.send(Message::text(text.clone())).unwrap();
            assert_eq!(ws.read().unwrap(), Message::text(text));
        }
    }
    // Refused upgrades: an unknown path and an unsupported version.
    let mut statuses = Vec::new();
    for (path, extra) in [("/nope", ""), ("/echo", "Sec-WebSocket-Version: 8\r\n")] {
        let mut raw = s.raw();
        let response = raw_handshake(&mut raw, path, extra);
        statuses.push(response[9..12].to_string());
    }
    assert_eq!(statuses, ["404", "426"]);
    // One client leaves properly.
    let mut leaving = clients.pop().unwrap();
    leaving
        .close(Some(CloseFrame {
            code: WsCloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
    while leaving.read().is_ok() {}

    let endpoint = r#"app="echo",endpoint="ws://127.0.0.1:0/echo""#;
    let mut m = scrape(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(&m, &format!("ringsocket_connections{{{endpoint}}}")) != 2.0 {
        assert!(Instant::now() < deadline, "the close never counted: {m:#?}");
        std::thread::sleep(Duration::from_millis(20));
        m = scrape(port);
    }
    let app = r#"app="echo""#;
    assert_eq!(
        value(
            &m,
            &format!("ringsocket_connections_opened_total{{{endpoint}}}")
        ),
        3.0
    );
    assert_eq!(
        value(&m, &format!("ringsocket_messages_in_total{{{app}}}")),
        30.0
    );
    assert_eq!(
        value(&m, &format!("ringsocket_messages_out_total{{{app}}}")),
        30.0
    );
    assert_eq!(
        value(&m, &format!("ringsocket_bytes_in_total{{{app}}}")),
        bytes_in as f64
    );
    // Each echo is a frame of 2 header bytes and the payload.
    assert_eq!(
        value(&m, &format!("ringsocket_bytes_out_total{{{app}}}")),
        (bytes_in + 2 * 30) as f64
    );
    assert_eq!(
        value(&m, r#"ringsocket_handshakes_total{status="101"}"#),
        3.0
    );
    assert_eq!(
        value(&m, r#"ringsocket_handshakes_total{status="404"}"#),
        1.0
    );
    assert_eq!(
        value(&m, r#"ringsocket_handshakes_total{status="426"}"#),
        1.0
    );
    assert_eq!(
        value(&m, r#"ringsocket_closes_total{app="echo",code="1000"}"#),
        1.0
    );
    assert_eq!(value(&m, "ringsocket_ready{}"), 1.0);
    // Every message was sampled or not, but some were: each client waited for its echo,
    // so each message began a loop round of its own.
    let sampled = value(
        &m,
        r#"ringsocket_read_to_callback_seconds_count{app="echo"}"#,
    );
    assert!((1.0..=30.0).contains(&sampled), "{sampled}");
    // One sample per app round that sent to a worker (the close's round too).
    let written = value(&m, "ringsocket_send_to_write_seconds_count{}");
    assert!((1.0..=32.0).contains(&written), "{written}");
    assert_eq!(
        value(
            &m,
            r#"ringsocket_read_to_callback_seconds_bucket{app="echo",le="+Inf"}"#
        ),
        sampled
    );
    assert_eq!(
        value(
            &m,
            r#"ringsocket_slow_consumer_closes_total{app="echo",reason="outbound_cap"}"#
        ),
        0.0
    );

    // The JSON twin says the same.
    let (status, json) = get(port, "/status.json");
    assert_eq!(status, 200);
    let j: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["connections"], 2);
    assert_eq!(j["apps"][0]["messages_in"], 30);
    assert_eq!(j["workers"], 2);
    assert!(j["config_path"]
        .as_str()
        .unwrap()
        .ends_with("ringsocket.json"));
    assert_eq!(get(port, "/nothing-here").0, 404);
}

#[test]
fn health_and_ready_follow_the_lifecycle() {
    let dir = TempDir::new();
    let go = dir.0.join("go");
    let settings = json!({"init_wait_file": go.display().to_string()});
    let s = Server::start(
        json!([app_with_settings("probe", "probe_app", "/probe", settings)]),
        with_metrics(json!({})),
    );
    let port = metrics_port(&s);
    // The app's init is still running: alive, not ready.
    poll_until("/health answers", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(get(port, "/health"), (200, "ok\n".into()));
    assert_eq!(get(port, "/ready").0, 503);
    assert_eq!(value(&scrape(port), "ringsocket_ready{}"), 0.0);
    std::fs::write(&go, b"").unwrap();
    poll_until("/ready says 200 once init is done", || {
        get(port, "/ready").0 == 200
    });
    assert_eq!(value(&scrape(port), "ringsocket_ready{}"), 1.0);
    // And the server serves.
    let mut ws = s.connect("/probe");
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1, 2, 3]));
}

#[test]
fn a_bad_metrics_address_is_a_config_error_naming_the_key() {
    let dir = TempDir::new();
    let path = dir.0.join("bad.json");
    let config = json!({
        "ports": [{"port_number": 0, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [app("echo", "echo", "/echo")],
        "metrics": {"addr": "not an address"},
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run_binary(&["--check-config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.json") && stderr.contains("metrics.addr"),
        "{stderr}"
    );
}

#[test]
fn the_status_page_shows_live_numbers_in_chromium() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        with_metrics(json!({"worker_c": 2})),
    );
    let port = metrics_port(&s);
    let mut a = s.connect("/echo");
    let mut b = s.connect("/echo");
    for i in 0..5 {
        a.send(Message::text(format!("a{i}"))).unwrap();
        a.read().unwrap();
    }
    let mut browser = Browser::start();
    let page = browser.open(&format!("http://127.0.0.1:{port}/"));
    let text = |id: &str| format!("document.getElementById('{id}').textContent");
    browser.wait_for(&page, &format!("{} === '2'", text("connections")));
    browser.wait_for(&page, &format!("{} === '5'", text("messages-in")));
    browser.wait_for(&page, &format!("{} === 'ready'", text("state")));
    // Live: the page polls, so new traffic shows without a reload.
    for i in 0..3 {
        b.send(Message::text(format!("b{i}"))).unwrap();
        b.read().unwrap();
    }
    browser.wait_for(&page, &format!("{} === '8'", text("messages-in")));
    browser.wait_for(&page, &format!("{} === '8'", text("messages-out")));
    browser.wait_for(
        &page,
        "document.querySelector('#apps tbody td').textContent === 'echo'",
    );
    // A screenshot for humans (target/status-page.png), checked to be a real PNG.
    let shot = browser.call(
        Some(&page),
        "Page.captureScreenshot",
        json!({"format": "png"}),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}",
        png.len()
    );
    std::fs::write(target_dir().join("status-page.png"), &png).unwrap();
}
