//! `apps/groups` (SocketForwarder over WebSocket) against the acceptance checks of its
//! spec (`../shared/reference/seeds/socketforwarder.md` §3): joins, relay without echo,
//! isolation, refusals with 1008, a member leaving, fan-out in order, large messages,
//! preconfigured groups, and a silent client that blocks nobody.

use ringsocket_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tungstenite::Message;

const PREFIX: &str = "SOCKETFORWARDER-NEW:";

fn groups(settings: Value) -> Value {
    app_with_settings("groups", "groups", "/groups", settings)
}

/// A client that joined `group` (waiting for the join's acknowledgement, which the
/// tests turn on with `ack_join` so that no message to the group can overtake a join).
fn join(s: &Server, group: &str) -> Client {
    let mut ws = s.connect("/groups");
    let line = format!("{PREFIX}{group}");
    ws.send(Message::text(line.clone())).unwrap();
    next_is(&mut ws, &line);
    ws
}

/// The app with `ack_join` and `settings`.
fn acked(mut settings: Value) -> Value {
    if settings.is_null() {
        settings = json!({});
    }
    settings["ack_join"] = json!(true);
    groups(settings)
}

/// Expects `want` to be the next message `to` gets: nothing else reached it before.
fn next_is(to: &mut Client, want: &str) {
    match to.read().expect("a message") {
        Message::Text(t) => assert_eq!(t.as_str(), want),
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

fn closed_with(ws: &mut Client, code: u16, reason_part: &str) {
    match ws.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), code, "{frame:?}");
            assert!(frame.reason.contains(reason_part), "{frame:?}");
        }
        other => panic!("expected close {code}, got {other:?}"),
    }
}

#[test]
fn members_relay_to_each_other_never_back_and_never_across_groups() {
    let s = Server::start(json!([acked(json!(null))]), json!({"worker_c": 2}));
    let mut a = join(&s, "g1");
    let mut b = join(&s, "g1");
    let mut c = join(&s, "g2");
    b.send(Message::text("hi from b")).unwrap();
    next_is(&mut a, "hi from b");
    a.send(Message::text("hello")).unwrap();
    next_is(&mut b, "hello");
    b.send(Message::text("hello12738651239132434")).unwrap();
    next_is(&mut a, "hello12738651239132434");
    // c (group g2) got none of it, and a and b never their own: markers come next.
    let mut d = join(&s, "g2");
    d.send(Message::text("marker g2")).unwrap();
    next_is(&mut c, "marker g2");
    b.send(Message::text("marker a")).unwrap();
    next_is(&mut a, "marker a");
    a.send(Message::text("marker b")).unwrap();
    next_is(&mut b, "marker b");
    // Binary messages go as they are.
    a.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(b.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
}

#[test]
fn bad_joins_are_closed_with_1008_and_a_reason() {
    let s = Server::start(
        json!([acked(json!({"max_group_size": 2, "max_group_id_len": 8}))]),
        json!({}),
    );
    for (first, reason) in [
        (
            Message::text("HELLO:g1"),
            "first message must be SOCKETFORWARDER-NEW:<group>",
        ),
        (
            Message::text("socketforwarder-new:g1"),
            "first message must be",
        ),
        (
            Message::binary(PREFIX.as_bytes().to_vec()),
            "first message must be",
        ),
        (
            Message::text(format!("{PREFIX}123456789")),
            "group id too long",
        ),
    ] {
        let mut ws = s.connect("/groups");
        ws.send(first).unwrap();
        closed_with(&mut ws, 1008, reason);
    }
    let mut a = join(&s, "full");
    let mut b = join(&s, "full");
    b.send(Message::text("in")).unwrap();
    next_is(&mut a, "in");
    let mut c = s.connect("/groups");
    c.send(Message::text(format!("{PREFIX}full"))).unwrap();
    closed_with(&mut c, 1008, "group full");
}

#[test]
fn the_prefix_is_configurable_and_ids_are_verbatim() {
    let s = Server::start(json!([acked(json!({"prefix": "JOIN/"}))]), json!({}));
    let mut old = s.connect("/groups");
    old.send(Message::text(format!("{PREFIX}g7"))).unwrap();
    closed_with(&mut old, 1008, "first message must be JOIN/<group>");
    let custom = |line: &str| {
        let mut ws = s.connect("/groups");
        ws.send(Message::text(line)).unwrap();
        next_is(&mut ws, line);
        ws
    };
    let mut a = custom("JOIN/g1\n");
    let mut b = custom("JOIN/g1");
    let mut c = custom("JOIN/g1\n");
    // "g1\n" and "g1" are different groups.
    c.send(Message::text("to g1-newline")).unwrap();
    next_is(&mut a, "to g1-newline");
    let mut d = custom("JOIN/g1");
    d.send(Message::text("to g1")).unwrap();
    next_is(&mut b, "to g1");
    c.send(Message::text("marker")).unwrap();
    next_is(&mut a, "marker");
    // The empty id is a group too.
    let mut e = custom("JOIN/");
    let mut f = custom("JOIN/");
    f.send(Message::text("empty")).unwrap();
    next_is(&mut e, "empty");
}

#[test]
fn a_member_leaving_mid_stream_disturbs_nobody() {
    let s = Server::start(json!([acked(json!(null))]), json!({"worker_c": 2}));
    let mut a = join(&s, "g3");
    let mut b = join(&s, "g3");
    let c = join(&s, "g3");
    b.send(Message::text("ready")).unwrap();
    next_is(&mut a, "ready");
    drop(c);
    for i in 0..200 {
        a.send(Message::text(format!("m{i}"))).unwrap();
    }
    for i in 0..200 {
        next_is(&mut b, &format!("m{i}"));
    }
}

/// One sender, 20 receivers, 1000 messages each, in order, as distinct messages; and a
/// 1 MiB message relayed whole.
#[test]
fn fan_out_to_20_keeps_every_message_and_its_order() {
    let s = Server::start(json!([acked(json!(null))]), json!({"worker_c": 2}));
    let mut receivers: Vec<Client> = (0..20).map(|_| join(&s, "fan")).collect();
    let mut sender = join(&s, "fan");
    for i in 0..1000 {
        sender
            .send(Message::text(format!("TestNumerousClients{i}")))
            .unwrap();
    }
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    sender.send(Message::binary(big.clone())).unwrap();
    for r in receivers.iter_mut() {
        for n in 0..1000 {
            next_is(r, &format!("TestNumerousClients{n}"));
        }
        assert_eq!(r.read().unwrap(), Message::binary(big.clone()));
    }
    // The sender got nothing of its own: a marker from a receiver comes next.
    receivers[0].send(Message::text("marker")).unwrap();
    next_is(&mut sender, "marker");
}

/// A client that connects and says nothing blocks no one else's join, and is closed
/// after the join timeout.
#[test]
fn a_silent_client_blocks_nobody_and_times_out() {
    let s = Server::start(json!([acked(json!({"join_timeout_ms": 2000}))]), json!({}));
    let start = Instant::now();
    let mut silent = s.connect("/groups");
    let mut a = join(&s, "g1");
    let mut b = join(&s, "g1");
    b.send(Message::text("quick")).unwrap();
    next_is(&mut a, "quick");
    // Order, not time: when the others have joined and relayed, the silent client's
    // close has not been sent yet (were joins waiting for it, it would have been).
    silent.get_mut().set_nonblocking(true).unwrap();
    let pending = silent.get_mut().peek(&mut [0; 1]);
    assert!(
        matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the silent client heard from the server before the others were done: {pending:?}"
    );
    silent.get_mut().set_nonblocking(false).unwrap();
    closed_with(&mut silent, 1008, "no join message within 2000 ms");
    // The timer never fires early; `start` was taken before the connection existed.
    assert!(
        start.elapsed() >= Duration::from_millis(2000),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_preconfigured_address_joins_without_a_message() {
    let s = Server::start(
        json!([acked(json!({"preconfig": {"127.0.0.1": "pre"}}))]),
        json!({}),
    );
    // Both clients come from 127.0.0.1: both are in "pre" at once (acknowledged).
    let mut a = s.connect("/groups");
    next_is(&mut a, &format!("{PREFIX}pre"));
    let mut b = s.connect("/groups");
    next_is(&mut b, &format!("{PREFIX}pre"));
    b.send(Message::text("no join needed")).unwrap();
    next_is(&mut a, "no join needed");
}

#[test]
fn bad_settings_refuse_to_start() {
    let dir = TempDir::new();
    let mut a = groups(json!({"prefix": ""}));
    a["endpoints"][0]["url"] = json!("ws://127.0.0.1:0/groups");
    let config = json!({
        "ports": [{"port_number": 0, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [a],
    });
    let path = dir.0.join("rs.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run_binary(&["--foreground", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("prefix must not be empty"),
        "{err}"
    );
}

/// Without `ack_join` (the default, as the original), joining sends nothing back.
#[test]
fn joins_are_silent_by_default() {
    let s = Server::start(json!([groups(json!(null))]), json!({}));
    let mut a = s.connect("/groups");
    a.send(Message::text(format!("{PREFIX}quiet"))).unwrap();
    let mut b = s.connect("/groups");
    b.send(Message::text(format!("{PREFIX}quiet"))).unwrap();
    // b's messages reach a once both joins are in; the first thing a ever gets is one.
    let deadline = Instant::now() + Duration::from_secs(10);
    a.get_mut()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    loop {
        b.send(Message::text("ping")).unwrap();
        match a.read() {
            Ok(Message::Text(t)) => {
                assert_eq!(t.as_str(), "ping", "a got its join acknowledged");
                break;
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => assert!(Instant::now() < deadline, "a never got b's messages"),
        }
    }
}
