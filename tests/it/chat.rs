//! `apps/chat`: the JSON protocol over real sockets (rooms, nicknames, notices, history,
//! the rate limit, bad requests), and the page in real headless Chromium browsers.

use ringsocket_tests::*;
use serde_json::{json, Value};
use tungstenite::Message;

fn chat(settings: Value) -> Value {
    app_with_settings("chat", "chat", "/chat", settings)
}

fn recv(ws: &mut Client) -> Value {
    match ws.read().expect("a message") {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn send(ws: &mut Client, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// Joins `room` as `nick` and returns the client with its `joined` and `history` replies.
fn join(s: &Server, room: &str, nick: &str) -> (Client, Value, Value) {
    let mut ws = s.connect("/chat");
    send(&mut ws, json!({"type": "join", "room": room, "nick": nick}));
    let joined = recv(&mut ws);
    assert_eq!(joined["type"], "joined", "{joined}");
    let history = recv(&mut ws);
    assert_eq!(history["type"], "history", "{history}");
    (ws, joined, history)
}

#[test]
fn rooms_nicknames_notices_and_history() {
    // A rate limit this test stays under (the other test checks it).
    let limits = json!({"rate_per_sec": 1000, "burst": 1000});
    let s = Server::start(json!([chat(limits)]), json!({"worker_c": 2}));
    let (mut ann, joined, history) = join(&s, "lobby", "ann");
    assert_eq!(joined["members"], json!(["ann"]));
    assert_eq!(history["messages"], json!([]));
    let (mut bob, joined, _) = join(&s, "lobby", "bob");
    assert_eq!(joined["members"].as_array().unwrap().len(), 2);
    assert_eq!(
        recv(&mut ann),
        json!({"type": "presence", "event": "join", "nick": "bob"})
    );
    // Nicknames are unique per room (ignoring case) and validated.
    let mut eve = s.connect("/chat");
    send(
        &mut eve,
        json!({"type": "join", "room": "lobby", "nick": "ANN"}),
    );
    assert_eq!(recv(&mut eve)["code"], "nick_taken");
    send(
        &mut eve,
        json!({"type": "join", "room": "lobby", "nick": "a b"}),
    );
    assert_eq!(recv(&mut eve)["code"], "bad_nick");
    send(&mut eve, json!({"type": "say", "text": "hi"}));
    assert_eq!(recv(&mut eve)["code"], "not_joined");
    send(&mut eve, json!({"type": "shout"}));
    assert_eq!(recv(&mut eve)["code"], "bad_request");
    // Messages reach the room, sender included, and nobody in another room.
    let (mut cy, _, _) = join(&s, "other", "ann");
    for i in 0..60 {
        send(
            &mut ann,
            json!({"type": "say", "text": format!("line {i}")}),
        );
        for ws in [&mut ann, &mut bob] {
            let m = recv(ws);
            assert_eq!(
                (m["nick"].as_str(), m["text"].as_str()),
                (Some("ann"), Some(&*format!("line {i}")))
            );
        }
    }
    send(&mut cy, json!({"type": "say", "text": "only here"}));
    assert_eq!(
        recv(&mut cy)["text"],
        "only here",
        "cy saw nothing of lobby before this"
    );
    // A newcomer gets the last 50 lines.
    let (_dan, _, history) = join(&s, "lobby", "dan");
    let lines = history["messages"].as_array().unwrap();
    assert_eq!(lines.len(), 50);
    assert_eq!(lines[0]["text"], "line 10");
    assert_eq!(lines[49]["text"], "line 59");
    // Leaving (or disconnecting) is announced.
    drop(bob);
    let leave = loop {
        let m = recv(&mut ann);
        if m["type"] == "presence" && m["event"] == "leave" {
            break m;
        }
    };
    assert_eq!(leave["nick"], "bob");
}

#[test]
fn the_rate_limit_drops_with_a_clear_error() {
    let s = Server::start(
        json!([chat(json!({"rate_per_sec": 1, "burst": 3}))]),
        json!({}),
    );
    let (mut ann, _, _) = join(&s, "r", "ann");
    for i in 0..5 {
        send(&mut ann, json!({"type": "say", "text": format!("m{i}")}));
    }
    for i in 0..3 {
        assert_eq!(recv(&mut ann)["text"], format!("m{i}"));
    }
    for _ in 0..2 {
        let e = recv(&mut ann);
        assert_eq!(e["code"], "rate_limited");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("at most 1 messages a second"),
            "{e}"
        );
    }
}

/// Two Chromium pages join one room and talk; a third, in another room, sees nothing.
#[test]
fn two_browsers_talk_in_a_room_and_a_third_in_another_sees_nothing() {
    use ringsocket_tests::browser::Browser;
    let s = Server::start(json!([chat(json!(null))]), json!({"worker_c": 2}));
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/chat/chat.html");
    let page = page.canonicalize().unwrap();
    let url = |room: &str, nick: &str| {
        format!(
            "file://{}?url={}&room={room}&nick={nick}&autojoin=1",
            page.display(),
            s.url("/chat")
        )
    };
    let mut browser = Browser::start();
    let ann = browser.open(&url("r1", "ann"));
    browser.wait_for(
        &ann,
        "document.getElementById('status').textContent.startsWith('in r1 as ann')",
    );
    let bob = browser.open(&url("r1", "bob"));
    browser.wait_for(
        &bob,
        "document.getElementById('status').textContent.startsWith('in r1 as bob')",
    );
    let cy = browser.open(&url("r2", "cy"));
    browser.wait_for(
        &cy,
        "document.getElementById('status').textContent.startsWith('in r2 as cy')",
    );
    // ann saw bob arrive.
    browser.wait_for(
        &ann,
        "document.getElementById('log').textContent.includes('bob joined')",
    );
    let say = |text: &str| {
        format!(
            "(() => {{ const t = document.getElementById('text'); t.value = {text:?}; \
             document.getElementById('send').click(); return true; }})()"
        )
    };
    let seen = |nick: &str, text: &str| {
        format!(
            "[...document.querySelectorAll('#log div.message')]\
             .some(d => d.dataset.nick === {nick:?} && d.dataset.text === {text:?})"
        )
    };
    browser.eval(&ann, &say("hello from ann"));
    browser.wait_for(&bob, &seen("ann", "hello from ann"));
    browser.eval(&bob, &say("hi ann, bob here"));
    browser.wait_for(&ann, &seen("bob", "hi ann, bob here"));
    // cy's own message is the first message it ever sees: nothing of r1 reached it
    // (publishes reach each subscriber in the order they were made).
    browser.eval(&cy, &say("only in r2"));
    browser.wait_for(&cy, &seen("cy", "only in r2"));
    let texts = browser.eval(
        &cy,
        "[...document.querySelectorAll('#log div.message')].map(d => d.dataset.text)",
    );
    assert_eq!(texts, json!(["only in r2"]));
}
