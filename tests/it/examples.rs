//! The app author's guide's two complete examples (`docs/examples/counter.c` and
//! `docs/examples/counter-rs`), built by the workspace and run end to end; and the
//! guide quotes them exactly.

use ringsocket_tests::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Connects with a name and a User-Agent, and returns the client and its greeting.
fn join(s: &Server, name: &str) -> (Client, String) {
    let stream = s.raw();
    let port = stream.local_addr().unwrap().port();
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(
        s.url(&format!("/counter?x=1&name={name}")),
    )
    .unwrap();
    request
        .headers_mut()
        .insert("User-Agent", "guide-test/2".parse().unwrap());
    let (mut ws, _) =
        tungstenite::client::client_with_config(request, stream, Some(client_config())).unwrap();
    let greeting = text(&mut ws);
    assert_eq!(
        greeting,
        format!("hello {name} from 127.0.0.1 port {port} (guide-test/2)")
    );
    (ws, greeting)
}

/// The next line that is not a periodic `stats` line.
fn reply(ws: &mut Client) -> String {
    loop {
        let line = text(ws);
        if !line.starts_with("stats ") {
            return line;
        }
    }
}

/// Reads until a `stats` line saying `want`, skipping earlier stats.
fn wait_for_stats(ws: &mut Client, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = text(ws);
        if line == want {
            return;
        }
        assert!(line.starts_with("stats "), "{line}");
        assert!(Instant::now() < deadline, "no '{want}' within 10 s");
    }
}

fn exercise(plugin: &str) {
    let s = Server::start(json!([app("counter", plugin, "/counter")]), json!({}));
    let (mut ann, _) = join(&s, "ann");
    let (mut bob, _) = join(&s, "bob");
    // Counts are per client; replies come before any later stats line.
    for n in 1..=3 {
        ann.send(Message::text("hi")).unwrap();
        assert_eq!(reply(&mut ann), format!("count {n}"));
    }
    bob.send(Message::binary(vec![1u8, 2])).unwrap();
    assert_eq!(reply(&mut bob), "count 1");
    wait_for_stats(&mut bob, "stats total=4 clients=2");
    drop(ann);
    wait_for_stats(&mut bob, "stats total=4 clients=1");
}

#[test]
fn the_c_example_counts_greets_and_reports() {
    exercise("counter_c");
}

#[test]
fn the_rust_example_counts_greets_and_reports() {
    exercise("counter_rs");
}

#[test]
fn the_rust_example_takes_json_and_closes_with_4900_on_bad_json() {
    let s = Server::start(json!([app("counter", "counter_rs", "/counter")]), json!({}));
    let (mut ws, _) = join(&s, "cy");
    ws.send(Message::text(r#"{"add": 40}"#)).unwrap();
    assert_eq!(reply(&mut ws), "count 40");
    ws.send(Message::text("{not json")).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.starts_with("stats ") => continue,
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4900);
                break;
            }
            other => panic!("expected a 4900 close, got {other:?}"),
        }
    }
}

/// The guide shows each example's whole source, as built here.
#[test]
fn the_guide_quotes_the_examples_exactly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/apps.md")).unwrap();
    for (fence, path) in [
        ("```c\n", "docs/examples/counter.c"),
        ("```rust\n", "docs/examples/counter-rs/src/lib.rs"),
    ] {
        let source = std::fs::read_to_string(root.join(path)).unwrap();
        let quoted = format!("{fence}{source}```");
        assert!(
            guide.contains(&quoted),
            "docs/apps.md must contain {path} verbatim in a {} block",
            fence.trim()
        );
    }
}
