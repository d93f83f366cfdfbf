//! `wss://` through rustls: a certificate made at test time, a real TLS client.

use ringsocket_tests::*;
use rustls::pki_types::ServerName;
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::Message;

/// A TLS client session trusting `cert`, for `localhost`, offering `alpn`.
fn tls_session(cert: &TestCert, alpn: &[&[u8]]) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
        .unwrap()
}

fn tls_client(
    s: &Server,
    cert: &TestCert,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    rustls::StreamOwned::new(tls_session(cert, alpn), s.raw())
}

/// A new `wss://` client of `/echo`, once `text` has come back to it.
fn echoed_client(
    s: &Server,
    cert: &TestCert,
    text: &str,
) -> tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let (mut ws, _) = upgrade_echo(s, tls_client(s, cert, &[])).unwrap();
    ws.send(Message::text(text)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(text));
    ws
}

/// The WebSocket upgrade to `wss://localhost:PORT/echo` over `stream` (the error as
/// text).
fn upgrade_echo<S: std::io::Read + Write>(
    s: &Server,
    stream: S,
) -> Result<
    (
        tungstenite::WebSocket<S>,
        tungstenite::handshake::client::Response,
    ),
    String,
> {
    let url = format!("wss://localhost:{}/echo", s.port);
    tungstenite::client::client_with_config(url, stream, Some(client_config()))
        .map_err(|e| e.to_string())
}

#[test]
fn wss_echo_over_rustls() {
    let dir = TempDir::new();
    let (s, cert) = tls_server(&dir);
    let stream = tls_client(&s, &cert, &[b"http/1.1"]);
    let (mut ws, response) = upgrade_echo(&s, stream).unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(ws.get_ref().conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    ws.send(Message::text("secret")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("secret"));
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    ws.close(None).unwrap();
    match ws.read() {
        Ok(Message::Close(_)) => {}
        other => panic!("expected the close echo, got {other:?}"),
    }
}

/// An idle `wss://` connection holds no TLS buffer: the worker reads and encrypts
/// records in its own scratch buffer (rustls's buffered API kept 4 KiB of input buffer
/// per connection, about 8.2 KiB in all; now about 3.8 KiB).
#[test]
fn an_idle_wss_connection_costs_under_5_kib() {
    let dir = TempDir::new();
    let (s, cert) = tls_server(&dir);
    // One message each way, so that every buffer has been used once.
    let open = |text: &str| echoed_client(&s, &cert, text);
    let first = open("first");
    let before = s.rss();
    const N: u64 = 600;
    let clients: Vec<_> = (0..N).map(|i| open(&i.to_string())).collect();
    let per_conn = s.rss().saturating_sub(before) / N;
    eprintln!("an idle wss connection: {per_conn} bytes of server RSS");
    assert!(
        per_conn < 5 << 10,
        "{per_conn} bytes per idle wss connection"
    );
    drop((first, clients));
}

/// A socket that writes at most 7 bytes per call, each a segment of its own: the
/// server sees TLS records (handshake and traffic) in pieces.
struct Trickle(TcpStream);

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(&buf[..buf.len().min(7)])?;
        self.0.flush()?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[test]
fn tls_records_that_arrive_in_pieces_are_put_together() {
    let dir = TempDir::new();
    let (s, cert) = tls_server(&dir);
    let tcp = s.raw();
    tcp.set_nodelay(true).unwrap();
    let stream = rustls::StreamOwned::new(tls_session(&cert, &[]), Trickle(tcp));
    let (mut ws, _) = upgrade_echo(&s, stream).unwrap();
    for text in ["a", "in pieces", &"x".repeat(40_000)] {
        ws.send(Message::text(text)).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }
}

/// A `wss://` client that sends and never reads is closed at the outbound cap (1008),
/// as on `ws://`: TLS holds at most one sealed chunk of its output, never more.
#[test]
fn a_deaf_wss_client_is_closed_at_the_outbound_cap_not_buffered() {
    let dir = TempDir::new();
    let settings = json!({"max_ws_msg_size": 1000, "max_outbound_buf_size": 20000});
    let (s, cert) = tls_server_with(&dir, settings);
    let stream = tls_client(&s, &cert, &[]);
    let (mut ws, _) = upgrade_echo(&s, stream).unwrap();
    ws.get_ref()
        .sock
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Far more echoes than the kernel's buffers hold, none of them read.
    let message = Message::binary(vec![7u8; 1000]);
    for _ in 0..40_000 {
        if ws.send(message.clone()).is_err() {
            break; // the server closed the connection
        }
    }
    let code = loop {
        match ws.read() {
            Ok(Message::Binary(_)) => {}
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            other => panic!("expected echoes then a close, got {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
}

/// A handshake message announced as 16 MiB is refused on its header, not buffered, and
/// the worker goes on serving. (It once panicked the worker: the alert step handed
/// rustls an empty buffer where its deframer kept positions.)
#[test]
fn an_oversized_handshake_message_is_refused_not_buffered() {
    let dir = TempDir::new();
    let (s, cert) = tls_server(&dir);
    let mut stream = s.raw();
    // One 16 KiB record opening a ClientHello of 16 MiB; nothing more is sent, so only
    // a refusal of the header ends the connection before the read times out.
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    record.resize(5 + 16 * 1024, 0);
    stream.write_all(&record).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(reads_eof(&mut stream), "the server drops the connection");
    echoed_client(&s, &cert, "still here");
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

/// Random bytes on a TLS port — raw, shaped as TLS records, and after a completed
/// handshake — end those connections and nothing else: no worker panics (rustls's
/// errors included) and the server goes on serving.
#[test]
fn tls_garbage_never_takes_the_server_down() {
    let dir = TempDir::new();
    let (s, cert) = tls_server(&dir);
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut after_handshake = 0;
    for round in 0..150 {
        let len = (next() % 2000) as usize;
        let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut bytes = Vec::new();
        match round % 3 {
            0 => bytes = junk,
            1 => {
                // A record header of a random type and length, then junk.
                let kind = [0x14, 0x15, 0x16, 0x17][(next() % 4) as usize];
                bytes.extend_from_slice(&[kind, 0x03, (next() % 5) as u8]);
                bytes.extend_from_slice(&((next() % 0x4200) as u16).to_be_bytes());
                bytes.extend_from_slice(&junk);
            }
            _ => {
                // Junk records after a real handshake.
                let mut tls = tls_client(&s, &cert, &[]);
                let Ok((ws, _)) = upgrade_echo(&s, &mut tls) else {
                    continue;
                };
                drop(ws);
                after_handshake += 1;
                let mut record = vec![0x17, 0x03, 0x03];
                record.extend_from_slice(&(junk.len() as u16).to_be_bytes());
                record.extend_from_slice(&junk);
                let _ = tls.sock.write_all(&record);
                continue;
            }
        }
        let mut stream = s.raw();
        let _ = stream.write_all(&bytes);
    }
    assert_eq!(
        after_handshake, 50,
        "every third round got through its handshake"
    );
    echoed_client(&s, &cert, "still serving");
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

#[test]
fn tls_handshakes_do_not_block_other_connections() {
    let dir = TempDir::new();
    let (s, cert) = tls_server(&dir);
    // A client that opens TCP and never starts TLS.
    let _stalled = s.raw();
    let mut half = s.raw();
    half.write_all(&[0x16, 0x03, 0x01]).unwrap(); // the start of a ClientHello, then nothing
    echoed_client(&s, &cert, "not blocked");
}

#[test]
fn plaintext_on_a_tls_port_is_refused() {
    let dir = TempDir::new();
    let (s, _) = tls_server(&dir);
    let mut stream = s.raw();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
    // A fatal TLS alert record (content type 21) explains the refusal.
    assert_eq!(
        &buf[..n.min(2)],
        &[0x15, 0x03],
        "a TLS alert, got {:?}",
        &buf[..n]
    );
    assert_eq!(buf[5], 2, "fatal");
    assert!(reads_eof(&mut stream), "the server drops the connection");
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

fn fails_to_start(config: serde_json::Value, dir: &TempDir, expected: &[&str]) {
    let path = dir.0.join("bad-tls.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run_binary(&["--foreground", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in: {err}");
    }
}

#[test]
fn unusable_certificates_are_named_at_start() {
    let dir = TempDir::new();
    let a = make_cert(&dir, "a");
    let b = make_cert(&dir, "b");
    let port = 0; // the kernel picks one (these servers never get to serve)
    let config = |key: &str, chain: &str| {
        json!({
            "ports": [{"port_number": port, "ip_addrs": ["127.0.0.1"]}],
            "certs": [{"hostnames": ["localhost"], "privkey_path": key, "pubchain_path": chain}],
            "apps": [{"name": "echo", "app_path": plugin("echo"), "endpoints": [{"url": format!("wss://localhost:{port}/echo")}]}],
        })
    };
    fails_to_start(
        config("/nonexistent/key.pem", &a.cert),
        &dir,
        &["certs[0].privkey_path", "/nonexistent/key.pem"],
    );
    fails_to_start(
        config(&a.key, "/nonexistent/chain.pem"),
        &dir,
        &["certs[0].pubchain_path", "/nonexistent/chain.pem"],
    );
    fails_to_start(
        config(&b.key, &a.cert),
        &dir,
        &["certs[0].privkey_path", &b.key, "does not match", &a.cert],
    );
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").unwrap();
    fails_to_start(
        config(&a.key, garbage.to_str().unwrap()),
        &dir,
        &["certs[0].pubchain_path", "garbage.pem"],
    );
}
