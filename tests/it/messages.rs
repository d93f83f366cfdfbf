//! Messages over real sockets: echo of every kind and size, fragmentation, protocol
//! violations and their close codes, many clients at once, close from both sides.

use ringsocket_tests::*;
use serde_json::json;
use std::io::Write;
use tungstenite::Message;

fn echo_server() -> Server {
    Server::start(
        json!([
            app("echo", "echo", "/echo"),
            app("echo-c", "echo_c", "/echo-c")
        ]),
        json!({}),
    )
}

#[test]
fn echoes_text_and_binary_through_rust_and_c_apps() {
    let s = echo_server();
    for path in ["/echo", "/echo-c"] {
        let mut ws = s.connect(path);
        ws.send(Message::text("héllo wörld")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("héllo wörld"));
        ws.send(Message::binary(vec![0u8, 255, 1, 2])).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 255, 1, 2]));
        ws.send(Message::text("")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(""));
    }
}

#[test]
fn echoes_16_mib_messages() {
    let s = echo_server();
    for path in ["/echo", "/echo-c"] {
        let mut ws = s.connect(path);
        let big: Vec<u8> = (0..16u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
        ws.send(Message::binary(big.clone())).unwrap();
        match ws.read().unwrap() {
            Message::Binary(got) => assert!(got[..] == big[..], "16 MiB echo differs"),
            other => panic!("expected binary, got {other:?}"),
        }
    }
}

#[test]
fn one_byte_over_the_limit_is_1009() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"max_ws_msg_size": 1000}),
    );
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/echo", "");
    send_frame(&mut stream, true, 2, &[1; 1000]);
    assert_eq!(read_frame(&mut stream).2.len(), 1000);
    send_frame(&mut stream, false, 2, &[1; 600]);
    send_frame(&mut stream, true, 0, &[1; 401]);
    assert_eq!(read_close(&mut stream), Some(1009));
    assert!(reads_eof(&mut stream));
}

#[test]
fn fragmented_messages_with_interleaved_control_frames() {
    let s = echo_server();
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/echo", "");
    send_frame(&mut stream, false, 1, "frag".as_bytes());
    send_frame(&mut stream, true, 9, b"ping!");
    send_frame(&mut stream, false, 0, "mént".as_bytes());
    send_frame(&mut stream, true, 0, b"ed");
    assert_eq!(
        read_frame(&mut stream),
        (true, 10, b"ping!".to_vec()),
        "pong first, with the ping's payload"
    );
    assert_eq!(
        read_frame(&mut stream),
        (true, 1, "fragménted".as_bytes().to_vec())
    );
}

#[test]
fn protocol_violations_get_their_close_codes() {
    let s = echo_server();
    type Violation = Box<dyn Fn(&mut std::net::TcpStream)>;
    let cases: [(&str, Violation, u16); 6] = [
        (
            "reserved bit",
            Box::new(|st| st.write_all(&[0xc1, 0x80, 0, 0, 0, 0]).unwrap()),
            1002,
        ),
        (
            "reserved opcode",
            Box::new(|st| send_frame(st, true, 3, b"")),
            1002,
        ),
        (
            "unmasked frame",
            Box::new(|st| st.write_all(&[0x81, 0x01, b'a']).unwrap()),
            1002,
        ),
        (
            "fragmented ping",
            Box::new(|st| send_frame(st, false, 9, b"")),
            1002,
        ),
        (
            "stray continuation",
            Box::new(|st| send_frame(st, true, 0, b"x")),
            1002,
        ),
        (
            "invalid UTF-8",
            Box::new(|st| send_frame(st, true, 1, &[0xce, 0xba, 0xff])),
            1007,
        ),
    ];
    for (name, send, code) in cases {
        let mut stream = s.raw();
        raw_handshake(&mut stream, "/echo", "");
        send(&mut stream);
        assert_eq!(read_close(&mut stream), Some(code), "{name}");
        assert!(
            reads_eof(&mut stream),
            "{name}: the server closes the TCP connection"
        );
    }
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    let s = echo_server();
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/echo", "");
    // The first fragment is already invalid; the rest never comes.
    send_frame(&mut stream, false, 1, &[b'o', b'k', 0xc0, 0xaf]);
    assert_eq!(read_close(&mut stream), Some(1007));
}

#[test]
fn client_close_is_echoed_then_the_server_closes_tcp() {
    let s = echo_server();
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/echo", "");
    send_frame(&mut stream, true, 1, b"last words");
    send_frame(&mut stream, true, 8, &[0x0f, 0xa0, b'o', b'k']); // 4000 "ok"
    assert_eq!(
        read_frame(&mut stream),
        (true, 1, b"last words".to_vec()),
        "replies come before the close"
    );
    assert_eq!(read_close(&mut stream), Some(4000));
    assert!(reads_eof(&mut stream));

    let mut ws = s.connect("/echo-c");
    ws.close(None).unwrap();
    match ws.read() {
        Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {}
        Ok(other) => panic!("unexpected {other:?}"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn invalid_close_codes_are_protocol_errors() {
    let s = echo_server();
    for payload in [&[0x03, 0xed][..], &[0x03][..], &[0x03, 0xe8, 0xff][..]] {
        let mut stream = s.raw();
        raw_handshake(&mut stream, "/echo", "");
        send_frame(&mut stream, true, 8, payload);
        let code = read_close(&mut stream);
        assert!(
            code == Some(1002) || code == Some(1007),
            "{payload:?} → {code:?}"
        );
    }
}

#[test]
fn a_thousand_concurrent_clients() {
    raise_fd_limit();
    let s = echo_server();
    let mut streams: Vec<_> = (0..1000)
        .map(|i| {
            let mut st = s.raw();
            let path = if i % 2 == 0 { "/echo" } else { "/echo-c" };
            let r = raw_handshake(&mut st, path, "");
            assert!(r.starts_with("HTTP/1.1 101"), "client {i}: {r}");
            st
        })
        .collect();
    for (i, st) in streams.iter_mut().enumerate() {
        send_frame(st, true, 1, format!("client {i}").as_bytes());
    }
    for (i, st) in streams.iter_mut().enumerate() {
        assert_eq!(read_frame(st).2, format!("client {i}").into_bytes());
    }
}

#[test]
fn many_small_messages_arrive_in_order() {
    let s = echo_server();
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/echo", "");
    let mut batch = Vec::new();
    for i in 0..5000u32 {
        batch.extend(client_frame(true, 2, &i.to_le_bytes()));
    }
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&batch).unwrap());
    for i in 0..5000u32 {
        assert_eq!(read_frame(&mut stream).2, i.to_le_bytes());
    }
    sender.join().unwrap();
}

#[test]
fn broadcast_app_sends_every_message_to_every_client() {
    let s = Server::start(
        json!([app("broadcast", "broadcast", "/broadcast")]),
        json!({"worker_c": 2}),
    );
    let mut clients: Vec<Client> = (0..8).map(|_| s.connect("/broadcast")).collect();
    clients[3].send(Message::text("to all")).unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read().unwrap(), Message::text("to all"), "client {i}");
    }
    clients[0].send(Message::binary(vec![1, 2, 3])).unwrap();
    for c in clients.iter_mut() {
        assert_eq!(c.read().unwrap(), Message::binary(vec![1, 2, 3]));
    }
    // Large messages cross the rings as shared heap buffers, in both directions.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    clients[5].send(Message::binary(big.clone())).unwrap();
    for c in clients.iter_mut() {
        assert_eq!(c.read().unwrap(), Message::binary(big.clone()));
    }
}

#[test]
fn a_client_that_pings_without_reading_is_closed_not_buffered() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"max_ws_msg_size": 1000, "max_outbound_buf_size": 20000}),
    );
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/echo", "");
    // Tens of MB of pongs owed to a client that reads nothing: the kernel buffers fill,
    // then the server's own buffer hits its cap.
    let ping = client_frame(true, 9, &[b'p'; 125]);
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    let mut writer = stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    for _ in 0..400 {
        if writer.write_all(&batch).is_err() {
            break; // the server closed the connection
        }
    }
    assert_eq!(read_close(&mut stream), Some(1008));
}

#[test]
fn random_garbage_never_takes_the_server_down() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"max_ws_msg_size": 4096}),
    );
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for round in 0..300 {
        let mut stream = s.raw();
        if round % 3 != 0 {
            raw_handshake(&mut stream, "/echo", "");
        }
        let len = (next() % 3000) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 5 == 0 && !junk.is_empty() {
            junk[0] = 0x81 | (next() as u8 & 0x70); // a plausible first byte, maybe with RSV bits
        }
        let _ = stream.write_all(&junk);
        drop(stream);
    }
    let mut ws = s.connect("/echo");
    ws.send(Message::text("still alive")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still alive"));
    let mut s = s;
    assert!(s.is_running());
    assert!(!s.log().contains("panicked"), "{}", s.log());
}
