//! dSock's acceptance checks (`reference/seeds/dsock.md` §3) against `apps/dsock` on one
//! node, with the proposals marked there: 401 for bad authorization, a JWT without
//! `exp` refused, in-order delivery. The API (A) and the clients' side (W) are two
//! endpoints of the app on two ports, as dSock's API and worker are.

use ringsocket_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tungstenite::Message;

const TOKEN: &str = "abc123";

/// A dSock node: the API on `api` (port 0, reported), the clients' side on `worker`.
struct Node {
    server: Server,
    worker: u16,
}

impl Node {
    fn start() -> Node {
        Node::start_with(json!({}))
    }

    /// A node with `extra` settings (e.g. `redis`).
    fn start_with(extra: Value) -> Node {
        Node::start_with_root(extra, json!({}))
    }

    /// A node with `extra` settings and `root` keys of the server's config.
    fn start_with_root(extra: Value, root: Value) -> Node {
        let worker = free_port();
        let mut settings = json!({"token": TOKEN, "jwt": {"algorithm": "HS256", "secret": "abc123"},
                                  "default_channels": ["global"]});
        for (k, v) in extra.as_object().unwrap() {
            settings[k] = v.clone();
        }
        let apps = json!([{
            "name": "dsock",
            "app_path": plugin("dsock"),
            "settings": settings,
            "endpoints": [
                {"endpoint_id": 1, "url": "http://127.0.0.1:{port}/*"},
                {"endpoint_id": 2, "url": format!("ws://127.0.0.1:{worker}/*")}
            ]
        }]);
        let ports = json!([
            {"port_number": 0, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]},
            {"port_number": worker, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}
        ]);
        let mut root = root;
        root["ports"] = ports;
        let server = Server::start(apps, root);
        Node { server, worker }
    }

    /// An API call with the token as a query parameter.
    fn api(&self, method: &str, path_and_query: &str, body: &[u8]) -> (u16, Value) {
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let target = format!("{path_and_query}{sep}token={TOKEN}");
        let (status, _, body) = http(self.server.port, method, &target, "", body);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A client connect that must be refused: the refusal's status and JSON.
    fn connect(&self, query: &str) -> Result<(), (u16, Value)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.worker)).unwrap();
        let reply = raw_handshake(&mut stream, &format!("/connect?{query}"), "");
        assert!(
            !reply.starts_with("HTTP/1.1 101"),
            "/connect?{query} was accepted"
        );
        let status = reply[9..12].parse().unwrap();
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        Err((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// A client that must be accepted.
    fn connect_ws(&self, query: &str) -> Client {
        let url = format!("ws://127.0.0.1:{}/connect?{query}", self.worker);
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.worker)).unwrap();
        tungstenite::client::client_with_config(url, stream, Some(client_config()))
            .expect("the upgrade is accepted")
            .0
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claim(node: &Node, query: &str) -> Value {
    let (status, body) = node.api("POST", &format!("/claim?{query}"), b"");
    assert_eq!(status, 200, "{body}");
    body["claim"].clone()
}

fn code(reply: (u16, Value)) -> (u16, String) {
    (
        reply.0,
        reply.1["errorCode"].as_str().unwrap_or("").to_string(),
    )
}

/// An HS256 JWT of `claims` signed with `secret`.
fn jwt(claims: Value, secret: &str) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn checks_1_to_7_api_authorization_and_claims() {
    let node = Node::start();
    // 1. No token: 401 (proposal) with INVALID_AUTHORIZATION.
    let (status, _, body) = http(node.server.port, "POST", "/send?user=1&type=text", "", b"");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (401, Some("INVALID_AUTHORIZATION"))
    );
    assert_eq!(body["success"], false);
    // A wrong token, and a header without `Bearer `.
    let (status, _, _) = http(
        node.server.port,
        "POST",
        "/send?user=1&type=text&token=abc124",
        "",
        b"",
    );
    assert_eq!(status, 401);
    let (status, _, _) = http(
        node.server.port,
        "POST",
        "/send?user=1",
        "Authorization: xxxxxxxabc123\r\n",
        b"",
    );
    assert_eq!(status, 401);
    // 2. Bearer header: 200 even with nobody connected.
    let (status, _, body) = http(
        node.server.port,
        "POST",
        "/send?user=1&type=text",
        "Authorization: Bearer abc123\r\n",
        b"hi",
    );
    assert_eq!(
        (status, serde_json::from_slice::<Value>(&body).unwrap()),
        (200, json!({"success": true}))
    );
    // 3. A claim: channels de-duplicated, a 32-character id, expiration now + 10.
    let c = claim(&node, "user=1&duration=10&channels=g1,g2,g1");
    assert_eq!(c["user"], "1");
    assert_eq!(c["channels"], json!(["g1", "g2"]));
    let id = c["id"].as_str().unwrap();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_alphanumeric()),
        "{id}"
    );
    assert!(c["expiration"].as_u64().unwrap().abs_diff(now() + 10) <= 1);
    // 4. No user.
    assert_eq!(
        code(node.api("POST", "/claim", b"")),
        (400, "USER_ID_REQUIRED".into())
    );
    // 5. Bad expirations and durations.
    for (query, want) in [
        ("expiration=abc", "INVALID_EXPIRATION"),
        ("expiration=0", "NEGATIVE_EXPIRATION"),
        (
            &format!("expiration={}", now() - 10)[..],
            "INVALID_EXPIRATION",
        ),
        ("duration=-5", "NEGATIVE_DURATION"),
        ("duration=x", "INVALID_DURATION"),
    ] {
        assert_eq!(
            code(node.api("POST", &format!("/claim?user=1&{query}"), b"")),
            (400, want.into()),
            "{query}"
        );
    }
    // 6. A chosen id, twice.
    assert_eq!(claim(&node, "user=1&id=a1b2c3")["id"], "a1b2c3");
    assert_eq!(
        code(node.api("POST", "/claim?user=1&id=a1b2c3", b"")),
        (400, "CLAIM_ID_ALREADY_USED".into())
    );
    // 7. The default lifetime: 60 s.
    let c = claim(&node, "user=2");
    assert!(c["expiration"].as_u64().unwrap().abs_diff(now() + 60) <= 1);
    // Errors carry a request id.
    let (_, body) = node.api("POST", "/claim", b"");
    assert_eq!(body["requestId"].as_str().map(str::len), Some(36));
}

#[test]
fn checks_8_to_15_connecting_with_claims_and_jwts() {
    let node = Node::start();
    // 8. A claim connects; /info shows the connection with the claim's channels and global.
    let c = claim(&node, "user=1&channels=g1,g2");
    let id = c["id"].as_str().unwrap().to_string();
    let _ws = node.connect_ws(&format!("claim={id}"));
    let (status, info) = node.api("GET", "/info?user=1", b"");
    assert_eq!(status, 200, "{info}");
    let conns = info["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{info}");
    assert_eq!(conns[0]["user"], "1");
    assert_eq!(conns[0]["id"].as_str().map(str::len), Some(36));
    assert_eq!(conns[0]["channels"], json!(["g1", "g2", "global"]));
    assert_eq!(info["claims"], json!([]), "the claim was consumed");
    // 9. The same claim again.
    assert_eq!(
        code(node.connect(&format!("claim={id}")).err().unwrap()),
        (400, "MISSING_CLAIM".into())
    );
    // 10. An unknown claim; no authentication at all.
    assert_eq!(
        code(node.connect("claim=nope").err().unwrap()),
        (400, "MISSING_CLAIM".into())
    );
    assert_eq!(
        code(node.connect("x=1").err().unwrap()),
        (400, "MISSING_AUTHENTICATION".into())
    );
    // 11. A claim past its expiration (1 s) is refused.
    let short = claim(&node, "user=1&duration=1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(2100));
    let refused = code(node.connect(&format!("claim={short}")).err().unwrap());
    assert!(
        refused == (400, "EXPIRED_CLAIM".into()) || refused == (400, "MISSING_CLAIM".into()),
        "{refused:?}"
    );
    // 12. A JWT connects; /info finds it by user and session.
    let good = jwt(
        json!({"sub": "connect", "sid": "jwt", "exp": 2_147_485_546u64}),
        "abc123",
    );
    let _j = node.connect_ws(&format!("jwt={good}"));
    let (_, info) = node.api("GET", "/info?user=connect&session=jwt", b"");
    assert_eq!(info["connections"].as_array().unwrap().len(), 1, "{info}");
    // 13. Another key, a bad exp, an expired exp. 14. No exp at all (proposal).
    for bad in [
        jwt(json!({"sub": "connect", "exp": 2_147_485_546u64}), "other"),
        jwt(json!({"sub": "connect", "exp": "invalid"}), "abc123"),
        jwt(json!({"sub": "connect", "exp": now() - 3600}), "abc123"),
        jwt(json!({"sub": "connect", "iat": now()}), "abc123"),
        "not.a.jwt".to_string(),
    ] {
        assert_eq!(
            code(node.connect(&format!("jwt={bad}")).err().unwrap()),
            (400, "INVALID_JWT".into())
        );
    }
    // 15. A valid claim beats a bad JWT.
    let id = claim(&node, "user=15")["id"].as_str().unwrap().to_string();
    let _c = node.connect_ws(&format!("claim={id}&jwt=bad"));
}

fn text_of(ws: &mut Client) -> Message {
    ws.read().expect("a message")
}

#[test]
fn checks_16_to_24_sending_channels_disconnects_and_order() {
    let node = Node::start();
    let conn = |user: &str, session: &str| {
        let id = claim(&node, &format!("user={user}&session={session}"))["id"]
            .as_str()
            .unwrap()
            .to_string();
        node.connect_ws(&format!("claim={id}"))
    };
    let mut a = conn("1", "a");
    let mut b = conn("1", "b");
    let mut other = conn("2", "a");
    // 16. To a user: every connection of user 1 gets the text.
    assert_eq!(
        node.api("POST", "/send?user=1&type=text", br#"{"message":"Hello"}"#)
            .0,
        200
    );
    for ws in [&mut a, &mut b] {
        assert_eq!(text_of(ws), Message::text(r#"{"message":"Hello"}"#));
    }
    // 17. To one connection by id, binary.
    let (_, info) = node.api("GET", "/info?user=1&session=a", b"");
    let a_id = info["connections"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        node.api(
            "POST",
            &format!("/send?id={a_id}&type=binary"),
            &[1, 2, 3, 4]
        )
        .0,
        200
    );
    assert_eq!(text_of(&mut a), Message::binary(vec![1u8, 2, 3, 4]));
    // 18. To a user's session: b gets nothing (the marker that follows comes first).
    assert_eq!(
        node.api("POST", "/send?user=1&session=a&type=text", b"only a")
            .0,
        200
    );
    assert_eq!(
        node.api("POST", "/send?user=1&session=b&type=text", b"marker")
            .0,
        200
    );
    assert_eq!(text_of(&mut a), Message::text("only a"));
    assert_eq!(text_of(&mut b), Message::text("marker"));
    // 19. Types: xml refused, 1 is text, 2 binary; no target.
    assert_eq!(
        code(node.api("POST", "/send?user=1&type=xml", b"x")),
        (400, "INVALID_MESSAGE_TYPE".into())
    );
    assert_eq!(
        code(node.api("POST", "/send?type=text", b"x")),
        (400, "MISSING_TARGET".into())
    );
    assert_eq!(
        code(node.api("POST", "/send", b"x")),
        (400, "MISSING_TARGET".into()),
        "the target is checked first"
    );
    node.api("POST", "/send?user=2&type=1", b"t");
    node.api("POST", "/send?user=2&type=2", b"b");
    assert_eq!(text_of(&mut other), Message::text("t"));
    assert_eq!(text_of(&mut other), Message::binary(b"b".to_vec()));
    // 20. Channels: subscribe user 1 to g9, send, unsubscribe, send again (only the
    // marker to the default channel arrives after).
    assert_eq!(node.api("POST", "/channel/subscribe/g9?user=1", b"").0, 200);
    node.api("POST", "/send?channel=g9&type=text", b"to g9");
    assert_eq!(text_of(&mut a), Message::text("to g9"));
    assert_eq!(text_of(&mut b), Message::text("to g9"));
    assert_eq!(
        node.api("POST", "/channel/unsubscribe/g9?user=1&channel=g9", b"")
            .0,
        200
    );
    node.api("POST", "/send?channel=g9&type=text", b"nobody");
    node.api("POST", "/send?channel=global&type=text", b"everyone");
    for ws in [&mut a, &mut b, &mut other] {
        assert_eq!(text_of(ws), Message::text("everyone"));
    }
    // 24. Order: 100 sequential sends to one connection arrive in order.
    for i in 0..100 {
        node.api(
            "POST",
            &format!("/send?id={a_id}&type=text"),
            format!("{i}").as_bytes(),
        );
    }
    for i in 0..100 {
        assert_eq!(text_of(&mut a), Message::text(format!("{i}")));
    }
    // 22. keepClaims: a waiting claim of user 1 survives a disconnect of user 1's
    // session b, and still connects after.
    let kept = claim(&node, "user=1&session=b")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        node.api("POST", "/disconnect?user=1&session=b&keepClaims=true", b"")
            .0,
        200
    );
    match b.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close 1000, got {other:?}"),
    }
    let (_, info) = node.api("GET", "/info?user=1&session=b", b"");
    assert_eq!(info["claims"][0]["id"], kept.as_str(), "{info}");
    // 21. A disconnect of session a closes a with 1000, deletes a's claims, and leaves
    // the rest.
    let doomed = claim(&node, "user=1&session=a")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(node.api("POST", "/disconnect?user=1&session=a", b"").0, 200);
    match a.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close 1000, got {other:?}"),
    }
    poll_until("a's connection leaves /info", || {
        node.api("GET", "/info?user=1&session=a", b"").1["connections"] == json!([])
    });
    let (_, info) = node.api("GET", "/info?user=1&session=a", b"");
    assert_eq!(info["claims"], json!([]), "{doomed} deleted: {info}");
    assert_eq!(
        code(node.connect(&format!("claim={doomed}")).err().unwrap()),
        (400, "MISSING_CLAIM".into())
    );
    let _b2 = node.connect_ws(&format!("claim={kept}"));
    node.api("POST", "/send?user=2&type=text", b"still here");
    assert_eq!(text_of(&mut other), Message::text("still here"));
}

#[test]
fn check_25_ping_and_bad_input() {
    let node = Node::start();
    for method in ["GET", "POST", "PUT"] {
        let (status, _, body) = http(node.worker, method, "/ping", "", b"");
        assert_eq!((status, body), (200, b"pong".to_vec()), "W {method}");
    }
    let (status, _, body) = http(
        node.server.port,
        "GET",
        &format!("/ping?token={TOKEN}"),
        "",
        b"",
    );
    assert_eq!((status, body), (200, b"pong".to_vec()));
    assert_eq!(http(node.server.port, "GET", "/ping", "", b"").0, 401);
    // Bad input gets a clear status, never a crash.
    assert_eq!(
        code(node.api("POST", "/send?user=1&type=text", &[0xff, 0xfe])),
        (400, "INVALID_MESSAGE_BODY".into())
    );
    assert_eq!(node.api("GET", "/nowhere", b"").0, 404);
    let long = "x".repeat(6000);
    assert_eq!(
        node.api("POST", &format!("/send?user={long}&type=text"), b"")
            .0,
        200
    );
    let (status, _, _) = http(
        node.server.port,
        "GET",
        &format!("/info?user={}", "y".repeat(9000)),
        "",
        b"",
    );
    assert_eq!(status, 431);
    assert_eq!(
        code(node.connect("jwt=%%%").err().unwrap()),
        (400, "INVALID_JWT".into())
    );
    assert!(
        node.server.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        node.server.log()
    );
}

/// A claim is single-use even under 50 simultaneous connects (dSock reads, then deletes:
/// several could pass): exactly one is accepted, the others get MISSING_CLAIM.
#[test]
fn fifty_concurrent_connects_with_one_claim_and_exactly_one_wins() {
    let node = Node::start();
    let id = claim(&node, "user=race")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let request = format!(
        "GET /connect?claim={id} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    // Every connection is made and its request written before any answer is read.
    let mut streams: Vec<std::net::TcpStream> = (0..50)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", node.worker)).unwrap())
        .collect();
    for s in &mut streams {
        std::io::Write::write_all(s, request.as_bytes()).unwrap();
    }
    let statuses: Vec<u16> = streams
        .iter_mut()
        .map(|s| read_response(s, false).0)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 101).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 400).count(),
        49,
        "{statuses:?}"
    );
    let (_, info) = node.api("GET", "/info?user=race", b"");
    assert_eq!(info["connections"].as_array().unwrap().len(), 1, "{info}");
}

/// A `redis-server` of the test's own, on a free port, without persistence; killed
/// when dropped. It can be stopped and started again on the same port.
struct Redis {
    port: u16,
    child: Option<std::process::Child>,
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.child = Some(child);
        poll_until("redis-server accepts connections", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// How many clients listen on pub/sub `channel` (`PUBSUB NUMSUB`, through redis-cli).
    fn subscribers(&self, channel: &str) -> u64 {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "PUBSUB", "NUMSUB", channel])
            .output()
            .expect("redis-cli is installed with redis-server");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two nodes on one Redis, ready (each has told its API that Redis is up).
fn two_nodes(redis: &Redis, ttl_s: u64) -> (Node, Node) {
    let settings = json!({"redis": {"url": redis.url(), "ttl_s": ttl_s}});
    let (a, b) = (
        Node::start_with(settings.clone()),
        Node::start_with(settings),
    );
    for node in [&a, &b] {
        poll_until("the node reaches Redis", || {
            node.api("GET", "/info?user=nobody", b"").0 == 200
        });
    }
    (a, b)
}

#[test]
fn nodes_share_claims_sends_info_and_channels_through_redis() {
    let redis = Redis::start();
    let (a, b) = two_nodes(&redis, 30);
    // A claim made on A connects on B (once).
    let id = claim(&a, "user=7&channels=c1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut on_b = b.connect_ws(&format!("claim={id}"));
    assert_eq!(
        code(a.connect(&format!("claim={id}")).err().unwrap()),
        (400, "MISSING_CLAIM".into())
    );
    // A client of A's own, by JWT.
    let token = jwt(
        json!({"sub": "7", "sid": "s", "exp": 2_147_485_546u64}),
        "abc123",
    );
    let mut on_a = a.connect_ws(&format!("jwt={token}"));
    // /info on either node shows both connections, with their nodes.
    poll_until("both connections are in /info", || {
        a.api("GET", "/info?user=7", b"").1["connections"]
            .as_array()
            .map(Vec::len)
            == Some(2)
    });
    let (_, info) = b.api("GET", "/info?user=7", b"");
    let workers: std::collections::HashSet<_> = info["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["worker"].clone())
        .collect();
    assert_eq!(workers.len(), 2, "{info}");
    // A send through A reaches B's client, and A's; in order.
    for i in 0..20 {
        assert_eq!(
            a.api("POST", "/send?user=7&type=text", format!("m{i}").as_bytes())
                .0,
            200
        );
    }
    for ws in [&mut on_a, &mut on_b] {
        for i in 0..20 {
            assert_eq!(text_of(ws), Message::text(format!("m{i}")));
        }
    }
    // A channel spans nodes: subscribe through B, send through A.
    assert_eq!(b.api("POST", "/channel/subscribe/room?user=7", b"").0, 200);
    assert_eq!(
        a.api("POST", "/send?channel=room&type=text", b"to room").0,
        200
    );
    assert_eq!(text_of(&mut on_a), Message::text("to room"));
    assert_eq!(text_of(&mut on_b), Message::text("to room"));
    // A session narrows across nodes; a disconnect through B closes A's client.
    assert_eq!(b.api("POST", "/disconnect?user=7&session=s", b"").0, 200);
    match on_a.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close 1000, got {other:?}"),
    }
    assert_eq!(a.api("POST", "/send?user=7&type=text", b"still").0, 200);
    assert_eq!(text_of(&mut on_b), Message::text("still"));
}

#[test]
fn a_killed_node_leaves_info_within_its_ttl() {
    let redis = Redis::start();
    let (a, mut b) = two_nodes(&redis, 3);
    let id = claim(&a, "user=k")["id"].as_str().unwrap().to_string();
    let _client = b.connect_ws(&format!("claim={id}"));
    poll_until("B's connection is in /info", || {
        a.api("GET", "/info?user=k", b"").1["connections"]
            .as_array()
            .map(Vec::len)
            == Some(1)
    });
    b.server.signal(libc::SIGKILL);
    let killed = std::time::Instant::now();
    poll_until("B's connection leaves /info", || {
        a.api("GET", "/info?user=k", b"").1["connections"] == json!([])
    });
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "{:?}",
        killed.elapsed()
    );
    let _ = b.server.wait_exit();
}

#[test]
fn without_redis_the_api_says_503_and_clients_stay_then_it_reconnects() {
    let mut redis = Redis::start();
    let (a, b) = two_nodes(&redis, 30);
    let id = claim(&a, "user=r")["id"].as_str().unwrap().to_string();
    let mut client = b.connect_ws(&format!("claim={id}"));
    assert_eq!(a.api("POST", "/send?user=r&type=text", b"before").0, 200);
    assert_eq!(text_of(&mut client), Message::text("before"));
    redis.stop();
    // Every call answers 503 with a clear code (the first may be the one that notices).
    poll_until("A answers 503", || {
        code(a.api("POST", "/send?user=r&type=text", b"lost?")) == (503, "REDIS_UNAVAILABLE".into())
    });
    assert_eq!(
        code(a.api("POST", "/claim?user=r", b"")),
        (503, "REDIS_UNAVAILABLE".into())
    );
    redis.restart();
    poll_until("A reaches Redis again", || {
        a.api("GET", "/info?user=nobody", b"").0 == 200
    });
    poll_until("B reaches Redis again", || {
        b.api("GET", "/info?user=nobody", b"").0 == 200
    });
    // B re-registers its client, and B's listener is back on the bus.
    poll_until("B's client is in /info again", || {
        a.api("GET", "/info?user=r", b"").1["connections"]
            .as_array()
            .map(Vec::len)
            == Some(1)
    });
    // Both listeners are back on the bus (Redis says so), so a send now reaches B.
    poll_until("both nodes listen on the bus again", || {
        redis.subscribers("dsock:bus") == 2
    });
    assert_eq!(a.api("POST", "/send?user=r&type=text", b"after").0, 200);
    // At most once: the sends refused with 503 never arrive; "after" arrives once.
    assert_eq!(text_of(&mut client), Message::text("after"));
    assert_eq!(a.api("POST", "/send?user=r&type=text", b"marker").0, 200);
    assert_eq!(text_of(&mut client), Message::text("marker"));
}

/// dSock's README examples, as curl commands, unchanged but for host and port.
#[test]
fn the_dsock_readme_examples_work_through_curl() {
    let node = Node::start_with(json!({"token": "abcxyz"}));
    let api = format!("http://127.0.0.1:{}", node.server.port);
    let curl = |args: &[&str]| -> Value {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .args(args)
            .output()
            .expect("curl is installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    // "Create a claim for a user (1) expiring in 10 seconds, with 2 channels".
    let c = curl(&[
        "-X",
        "POST",
        &format!("{api}/claim?token=abcxyz&user=1&duration=10&channels=group-1,group-2"),
    ]);
    assert_eq!(c["claim"]["channels"], json!(["group-1", "group-2"]), "{c}");
    let mut one = node.connect_ws(&format!("claim={}", c["claim"]["id"].as_str().unwrap()));
    // "... with a session (a) with a claim ID (a1b2c3) expiring at some time" (Bearer).
    let at = (now() + 60).to_string();
    let c = curl(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer abcxyz",
        &format!("{api}/claim?user=1&session=a&expiration={at}&id=a1b2c3"),
    ]);
    assert_eq!(
        (c["claim"]["id"].as_str(), c["claim"]["session"].as_str()),
        (Some("a1b2c3"), Some("a")),
        "{c}"
    );
    let mut one_a = node.connect_ws("claim=a1b2c3");
    // "Send a JSON message to a user (1)".
    let body = r#"{"message":"Hello world!","from":"Charles"}"#;
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            &format!("{api}/send?token=abcxyz&user=1&type=text"),
            "--data-raw",
            body
        ]),
        json!({"success": true})
    );
    for ws in [&mut one, &mut one_a] {
        assert_eq!(text_of(ws), Message::text(body));
    }
    // "Send a text value to a user (1) with a session (a)".
    curl(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer abcxyz",
        &format!("{api}/send?user=1&session=a&type=text"),
        "--data-raw",
        "<Cretezy> Hey!",
    ]);
    assert_eq!(text_of(&mut one_a), Message::text("<Cretezy> Hey!"));
    // "Send a binary value to all clients subscribed in a channel".
    curl(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer abcxyz",
        &format!("{api}/send?channel=group-1&type=binary"),
        "--data-binary",
        "\u{1}\u{2}",
    ]);
    assert_eq!(text_of(&mut one), Message::binary(vec![1u8, 2]));
    // "Get info for a user (1) with a session (a)".
    let info = curl(&[&format!("{api}/info?token=abcxyz&user=1&session=a")]);
    assert_eq!(
        info["connections"].as_array().map(Vec::len),
        Some(1),
        "{info}"
    );
    // "Subscribe a user (1) to a channel (a)"; "Unsubscribe all clients in a channel".
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            &format!("{api}/channel/subscribe/a?token=abcxyz&user=1")
        ]),
        json!({"success": true})
    );
    curl(&[
        "-X",
        "POST",
        &format!("{api}/send?token=abcxyz&channel=a&type=text"),
        "--data-raw",
        "in a",
    ]);
    for ws in [&mut one, &mut one_a] {
        assert_eq!(text_of(ws), Message::text("in a"));
    }
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            &format!("{api}/channel/unsubscribe/a?token=abcxyz&channel=a")
        ]),
        json!({"success": true})
    );
    let info = curl(&[&format!("{api}/info?token=abcxyz&channel=a")]);
    assert_eq!(info["connections"], json!([]), "{info}");
    // "Disconnect a user (1) with a session (a)" (the README shows /send there: a typo
    // that gets INVALID_MESSAGE_TYPE, as in dSock), then as /disconnect.
    let typo = curl(&[
        "-X",
        "POST",
        &format!("{api}/send?token=abcxyz&user=1&session=a"),
    ]);
    assert_eq!(typo["errorCode"], "INVALID_MESSAGE_TYPE");
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            &format!("{api}/disconnect?token=abcxyz&user=1&session=a")
        ]),
        json!({"success": true})
    );
    assert!(matches!(one_a.read(), Ok(Message::Close(_))));
}

/// Check 23: a client that answers pings sees the server's ping (here every second),
/// and the client's own ping moves its `lastPing` in `/info`.
#[test]
fn check_23_keepalive_pings_and_last_ping() {
    let node = Node::start_with_root(json!({}), json!({"ping_interval": 1}));
    let id = claim(&node, "user=p")["id"].as_str().unwrap().to_string();
    let mut ws = node.connect_ws(&format!("claim={id}"));
    let started = std::time::Instant::now();
    assert!(
        matches!(ws.read(), Ok(Message::Ping(_))),
        "the server pings"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let last = |node: &Node| {
        node.api("GET", "/info?user=p", b"").1["connections"][0]["lastPing"]
            .as_u64()
            .unwrap()
    };
    let first = last(&node);
    poll_until("a second passes", || now() > first);
    ws.send(Message::Ping(b"hi".to_vec().into())).unwrap();
    poll_until("lastPing advances after the client's ping", || {
        last(&node) > first
    });
}
