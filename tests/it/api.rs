//! App API v2 through the probe plugin (Rust SDK): connection metadata, the in-place
//! writer, events from other threads, the adaptive periodic timer and typed reads.

use ringsocket_tests::*;
use serde_json::json;
use std::time::Duration;
use tungstenite::Message;

fn text_frame(stream: &mut std::net::TcpStream) -> String {
    let (_, opcode, payload) = read_frame(stream);
    assert_eq!(opcode, 1, "a text frame");
    String::from_utf8(payload).unwrap()
}

#[test]
fn open_sees_target_with_query_peer_address_and_headers() {
    let s = Server::start(json!([probe(json!({"log_open": true}))]), json!({}));
    let mut stream = s.raw();
    let local = stream.local_addr().unwrap();
    raw_handshake(
        &mut stream,
        "/probe?jwt=abc&x=1",
        "User-Agent: probe-test/1.0\r\nCookie: session=s3cr3t; theme=dark\r\n",
    );
    let open = text_frame(&mut stream);
    assert!(
        open.starts_with("open ") && open.ends_with(" 7 /probe -"),
        "{open}"
    );
    assert_eq!(
        text_frame(&mut stream),
        format!(
            "meta /probe?jwt=abc&x=1|jwt=abc&x=1|{local}|probe-test/1.0|session=s3cr3t; theme=dark"
        )
    );
}

#[test]
fn client_info_by_id_at_any_callback_until_the_client_is_gone() {
    let s = Server::start(json!([probe(json!({"log_close": true}))]), json!({}));
    let mut a = s.connect("/probe");
    let mut b = s.connect("/probe");
    let a_id = id_of(&mut a);
    let a_addr = a.get_ref().local_addr().unwrap();
    cmd(&mut b, &format!("info {a_id}"));
    assert_eq!(text(&mut b), format!("info {a_addr} 7"));
    cmd(&mut b, "info 999999999");
    assert_eq!(text(&mut b), "info NotFound");
    drop(a);
    // Once the app has handled a's close, a is unknown.
    assert_eq!(text(&mut b), format!("closed {a_id} 1006"));
    cmd(&mut b, &format!("info {a_id}"));
    assert_eq!(text(&mut b), "info NotFound");
}

#[test]
fn the_in_place_writer_sends_small_and_spilled_messages_to_every_target_kind() {
    let s = Server::start(json!([probe(json!({}))]), json!({"worker_c": 2}));
    let mut clients: Vec<(Client, u64)> = (0..4)
        .map(|_| {
            let mut ws = s.connect("/probe");
            let id = id_of(&mut ws);
            (ws, id)
        })
        .collect();
    let expected =
        |n: usize| -> String { (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect() };
    // Small (in the reserved record), and larger than any reservation (spilled to the
    // heap and sent as a shared large message).
    for n in [0, 1, 10, 5000, 70_000, 300_000] {
        cmd(&mut clients[0].0, &format!("write {n}"));
        assert_eq!(text(&mut clients[0].0), expected(n), "write {n}");
    }
    cmd(&mut clients[1].0, "wall to everyone");
    for (ws, _) in &mut clients {
        assert_eq!(text(ws), "to everyone");
    }
    let skip = clients[2].1;
    cmd(&mut clients[1].0, &format!("wexcept {skip} not to 2"));
    for (i, (ws, _)) in clients.iter_mut().enumerate() {
        if i != 2 {
            assert_eq!(text(ws), "not to 2");
        }
    }
    let list = format!("{},{}", clients[2].1, clients[3].1);
    cmd(&mut clients[0].0, &format!("wmulti {list} to 2 and 3"));
    assert_eq!(text(&mut clients[2].0), "to 2 and 3");
    assert_eq!(text(&mut clients[3].0), "to 2 and 3");
    // Client 2 got nothing else in between: "not to 2" never reached it.
    let (a, b) = clients.split_at_mut(2);
    cmd(&mut a[0].0, &format!("to {} marker", b[0].1));
    assert_eq!(text(&mut b[0].0), "marker");
}

#[test]
fn events_posted_from_another_thread_reach_the_app_thread() {
    let s = Server::start(json!([probe(json!({}))]), json!({}));
    let mut a = s.connect("/probe");
    let mut b = s.connect("/probe");
    cmd(&mut a, "post hello from a thread");
    assert_eq!(text(&mut a), "event hello from a thread");
    assert_eq!(text(&mut b), "event hello from a thread");
}

#[test]
fn the_periodic_timer_backs_off_by_its_increment_then_stops() {
    // min 40 ms, +60 ms per call, at most 120 ms: calls about 40, 100 and 120 ms apart;
    // the third returns Never. The app starts the timer when the client opens and
    // reports each gap as it measured it, so the client's own delays do not count.
    let settings = json!({"periodic": [40, 60, 120]});
    let s = Server::start(json!([probe(settings)]), json!({}));
    let mut ws = s.connect("/probe");
    let mut gaps = Vec::new();
    for n in 1..=3 {
        let msg = text(&mut ws);
        let gap_us = msg
            .strip_prefix(&format!("periodic {n} "))
            .and_then(|g| g.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("call {n}: {msg:?}"));
        gaps.push(Duration::from_micros(gap_us));
    }
    // Timers never fire early: each gap is at least its interval (40, 40+60, then
    // 100+60 capped at 120; the client sends nothing, so no traffic resets it to min).
    let intervals = [40, 100, 120].map(Duration::from_millis);
    for (gap, interval) in gaps.iter().zip(intervals) {
        assert!(*gap >= interval, "gaps {gaps:?}, intervals {intervals:?}");
    }
    // Stopped: 300 ms later (more than the largest interval) a marker comes next.
    std::thread::sleep(Duration::from_millis(300));
    cmd(&mut ws, "marker");
    assert_eq!(text(&mut ws), "marker");
}

#[test]
fn typed_reads_parse_binary_views_and_close_with_4900_on_a_wrong_size() {
    let s = Server::start(json!([probe(json!({}))]), json!({}));
    let mut ws = s.connect("/probe");
    let mut msg = b"TYPD".to_vec();
    msg.extend(5u32.to_be_bytes());
    msg.extend(b"12345");
    ws.send(Message::binary(msg.clone())).unwrap();
    assert_eq!(text(&mut ws), "typed 5");
    msg.push(b'6');
    ws.send(Message::binary(msg)).unwrap();
    match ws.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 4900);
            assert_eq!(frame.reason.as_str(), "message of the wrong size");
        }
        other => panic!("expected a 4900 close, got {other:?}"),
    }
}

/// Every host call given wrong arguments returns an error code (and the server, and the
/// client that made the app do it, carry on).
#[test]
fn wrong_arguments_to_host_calls_return_error_codes() {
    let s = Server::start(json!([app("bad", "bad_args_c", "/bad")]), json!({}));
    let mut ws = s.connect("/bad");
    ws.send(Message::binary(vec![1u8])).unwrap();
    // INVALID x6, INVALID x3 (closes), TOO_BIG, TOO_BIG (the failed write's send),
    // INVALID (w_len past w_cap), INVALID (NULL out), NOT_FOUND, NULL header, INVALID.
    assert_eq!(
        text(&mut ws),
        "-3 -3 -3 -3 -3 -3 -3 -3 -3 -2 -2 -3 -3 -6 0 -3"
    );
    ws.send(Message::binary(vec![1u8])).unwrap();
    assert_eq!(
        text(&mut ws),
        "-3 -3 -3 -3 -3 -3 -3 -3 -3 -2 -2 -3 -3 -6 0 -3"
    );
}
