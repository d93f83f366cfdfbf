//! The host API as plugins use it, through the test-only probe plugin: targeted sends,
//! broadcasts, closes, timers, failing callbacks, and full rings.

use ringsocket_tests::*;
use serde_json::json;
use std::io::Write;
use std::time::Duration;
use tungstenite::Message;

/// Asserts that nothing reached `ws` since its last message: `from` (which sent the
/// commands before) sends it a marker, and per-client order means the marker comes
/// next unless something else was sent to `ws` in between.
fn expect_marker_next(clients: &mut [Client], from: usize, to: usize, to_id: u64) {
    cmd(&mut clients[from], &format!("to {to_id} marker"));
    assert_eq!(
        text(&mut clients[to]),
        "marker",
        "client {to} got something"
    );
}

#[test]
fn targeted_sends_and_broadcasts_reach_exactly_their_targets() {
    let s = Server::start(json!([probe(json!({}))]), json!({"worker_c": 2}));
    // The kernel spreads connections over the workers by hash: connect until each
    // worker owns three, then keep those six (interleaved, so both workers are tested).
    let mut per_worker: [Vec<(Client, u64)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..200 {
        if per_worker.iter().all(|w| w.len() >= 3) {
            break;
        }
        let mut ws = s.connect("/probe");
        let id = id_of(&mut ws);
        let w = &mut per_worker[(id & 0xff) as usize];
        if w.len() < 3 {
            w.push((ws, id));
        }
    }
    assert!(
        per_worker.iter().all(|w| w.len() == 3),
        "both workers got clients"
    );
    let [a, b] = per_worker;
    let (mut clients, mut ids) = (Vec::new(), Vec::new());
    for ((ca, ia), (cb, ib)) in a.into_iter().zip(b) {
        clients.extend([ca, cb]);
        ids.extend([ia, ib]);
    }

    cmd(&mut clients[0], &format!("to {} single", ids[5]));
    assert_eq!(text(&mut clients[5]), "single");

    cmd(
        &mut clients[1],
        &format!("multi {},{},{} many", ids[2], ids[3], ids[2]),
    );
    assert_eq!(text(&mut clients[2]), "many");
    assert_eq!(text(&mut clients[3]), "many");
    expect_marker_next(&mut clients, 1, 2, ids[2]); // listed twice, sent once

    cmd(&mut clients[0], "all everyone");
    for c in clients.iter_mut() {
        assert_eq!(text(c), "everyone");
    }

    // The original RingSocket sent "all except one" to everyone.
    cmd(&mut clients[0], &format!("except {} not-you", ids[4]));
    for i in 0..clients.len() {
        if i == 4 {
            expect_marker_next(&mut clients, 0, i, ids[i]);
        } else {
            assert_eq!(text(&mut clients[i]), "not-you", "client {i}");
        }
    }
    cmd(
        &mut clients[0],
        &format!("except {},{} not-you-two", ids[0], ids[3]),
    );
    for i in 0..clients.len() {
        if i == 0 || i == 3 {
            expect_marker_next(&mut clients, 0, i, ids[i]);
        } else {
            assert_eq!(text(&mut clients[i]), "not-you-two", "client {i}");
        }
    }
}

#[test]
fn client_ids_are_never_reused() {
    let s = Server::start(json!([probe(json!({}))]), json!({"worker_c": 1}));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let mut ws = s.connect("/probe");
        let id = id_of(&mut ws);
        assert_ne!(id, 0);
        assert!(seen.insert(id), "id {id} was handed out twice");
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    }
    // A message to a gone client goes nowhere, and nobody else gets it.
    let old = *seen.iter().next().unwrap();
    let mut clients = [s.connect("/probe")];
    let own = id_of(&mut clients[0]);
    cmd(&mut clients[0], &format!("to {old} ghost"));
    expect_marker_next(&mut clients, 0, 0, own);
}

#[test]
fn a_failing_callback_closes_only_its_client_with_1011() {
    let s = Server::start(json!([probe(json!({}))]), json!({}));
    let mut bystander = s.connect("/probe");
    for command in ["panic", "error"] {
        let mut ws = s.connect("/probe");
        cmd(&mut ws, command);
        match ws.read() {
            Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1011, "{command}"),
            other => panic!("{command}: expected close 1011, got {other:?}"),
        }
    }
    cmd(&mut bystander, "still there?");
    assert_eq!(text(&mut bystander), "still there?");
}

#[test]
fn app_close_reaches_the_client_and_the_close_callback() {
    let s = Server::start(json!([probe(json!({"log_close": true}))]), json!({}));
    let mut watcher = s.connect("/probe");
    let mut ws = s.connect("/probe");
    let id = id_of(&mut ws);
    cmd(&mut ws, "close 4321");
    match ws.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 4321);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected close 4321, got {other:?}"),
    }
    // The original RingSocket never called the close callback for app-initiated closes.
    assert_eq!(text(&mut watcher), format!("closed {id} 4321"));
    cmd(&mut watcher, "badsend");
    assert_eq!(text(&mut watcher), "Err(Invalid)", "1005 may not be sent");
}

#[test]
fn nothing_is_sent_after_an_app_close() {
    let s = Server::start(json!([probe(json!({}))]), json!({}));
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/probe", "");
    send_frame(&mut stream, true, 1, b"closesend");
    let (_, opcode, payload) = read_frame(&mut stream);
    assert_eq!(
        opcode,
        8,
        "the close frame comes first: {:?}",
        String::from_utf8_lossy(&payload)
    );
    assert_eq!(payload[..2], 4001u16.to_be_bytes());
    send_frame(&mut stream, true, 8, &4001u16.to_be_bytes());
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    assert!(
        rest.is_empty(),
        "nothing follows the close frame: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn abnormal_disconnects_are_reported_as_1006() {
    let s = Server::start(json!([probe(json!({"log_close": true}))]), json!({}));
    let mut watcher = s.connect("/probe");
    let mut ws = s.connect("/probe");
    let id = id_of(&mut ws);
    drop(ws);
    assert_eq!(text(&mut watcher), format!("closed {id} 1006"));
}

#[test]
fn open_callback_sees_endpoint_and_subprotocol() {
    let mut a = probe(json!({"log_open": true}));
    a["endpoints"][0]["subprotocols"] = json!(["chat"]);
    let s = Server::start(json!([a]), json!({}));
    let mut stream = s.raw();
    let r = raw_handshake(&mut stream, "/probe", "Sec-WebSocket-Protocol: chat\r\n");
    assert!(r.contains("Sec-WebSocket-Protocol: chat"), "{r}");
    let (_, _, payload) = read_frame(&mut stream);
    let line = String::from_utf8(payload).unwrap();
    assert!(
        line.starts_with("open ") && line.ends_with(" 7 /probe chat"),
        "{line}"
    );
}

#[test]
fn timer_fires_once_after_its_delay() {
    let s = Server::start(json!([probe(json!({}))]), json!({}));
    let mut ws = s.connect("/probe");
    let start = std::time::Instant::now();
    cmd(&mut ws, "timer 200");
    assert_eq!(text(&mut ws), "tick 1");
    assert!(
        start.elapsed() >= Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
    // Once: a second timer, set now for 300 ms, must be the next callback, and come no
    // earlier than 300 ms (a repeat of the first one would come at 400 ms after the
    // start, i.e. after about 200 ms from here).
    let again = std::time::Instant::now();
    cmd(&mut ws, "timer 300");
    assert_eq!(text(&mut ws), "tick 2");
    assert!(
        again.elapsed() >= Duration::from_millis(290),
        "a callback after {:?}: the first timer fired again",
        again.elapsed()
    );
    // And nothing after it: a marker comes next.
    cmd(&mut ws, "marker");
    assert_eq!(text(&mut ws), "marker");
}

#[test]
fn full_inbound_ring_loses_and_reorders_nothing() {
    // Rings of 4 KiB (the smallest that holds two 1000-byte messages) and an app that
    // sleeps 50 µs per message: the worker must stop reading, not drop.
    let s = Server::start(
        json!([probe(json!({"read_delay_us": 50}))]),
        json!({"max_ws_msg_size": 1000, "inbound_ring_buf_size": 4096, "outbound_ring_buf_size": 4096, "worker_c": 1}),
    );
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/probe", "");
    let mut writer = stream.try_clone().unwrap();
    let count = 3000u32;
    let sender = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..count {
            let mut payload = vec![(i % 251) as u8; 100 + (i as usize * 37) % 800];
            payload[..4].copy_from_slice(&i.to_le_bytes());
            batch.extend(client_frame(true, 2, &payload));
        }
        writer.write_all(&batch).unwrap();
    });
    for i in 0..count {
        let (_, opcode, payload) = read_frame(&mut stream);
        assert_eq!(opcode, 2);
        assert_eq!(payload.len(), 100 + (i as usize * 37) % 800, "message {i}");
        assert_eq!(
            payload[..4],
            i.to_le_bytes(),
            "message {i} arrives in order"
        );
    }
    sender.join().unwrap();
}

#[test]
fn full_outbound_ring_parks_the_app_and_loses_nothing() {
    let s = Server::start(
        json!([probe(json!({}))]),
        json!({"max_ws_msg_size": 1000, "inbound_ring_buf_size": 4096, "outbound_ring_buf_size": 4096, "worker_c": 1}),
    );
    let mut ws = s.connect("/probe");
    // 20 000 messages of 900 bytes from one callback into a 4 KiB ring.
    cmd(&mut ws, "burst 20000 900");
    for i in 0..20000u32 {
        match ws.read().unwrap() {
            Message::Binary(b) => {
                assert_eq!(b.len(), 900);
                assert_eq!(b[..4], i.to_le_bytes(), "message {i} in order");
            }
            other => panic!("expected binary, got {other:?}"),
        }
    }
}

#[test]
fn a_slow_reader_is_closed_with_1008_not_buffered_forever() {
    let s = Server::start(
        json!([probe(json!({}))]),
        json!({"max_ws_msg_size": 100000, "max_outbound_buf_size": 200000}),
    );
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/probe", "");
    // Ask for 100 MB and read none of it.
    send_frame(&mut stream, true, 1, b"burst 1000 100000");
    let code = read_close(&mut stream);
    assert_eq!(code, Some(1008));
}
