//! RingSocket 1 source compatibility: the original's own test apps, compiled unchanged
//! against `crates/abi/include/ringsocket1` (see `tests/ringsocket1/README.md`), and an
//! app of ours written against the same API that covers the read macros and the two
//! RingSocket 1 defects ringsocket keeps out.

use ringsocket_tests::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

fn bin(ws: &mut Client, bytes: Vec<u8>) {
    ws.send(Message::binary(bytes)).unwrap();
}

#[test]
fn the_echo_app_echoes_text_and_binary() {
    let s = Server::start(
        json!([app("echo", "rst_app_echo", "/echo")]),
        json!({"log_level": "info"}),
    );
    let mut ws = s.connect("/echo");
    ws.send(Message::text("héllo")).unwrap();
    assert_eq!(text(&mut ws), "héllo");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    bin(&mut ws, big.clone());
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    bin(&mut ws, Vec::new());
    assert_eq!(ws.read().unwrap(), Message::binary(Vec::new()));
}

fn defects(worker_c: u32) -> (Server, Vec<(Client, u64)>) {
    let s = Server::start(
        json!([app("defects", "rst_app_defects", "/defects")]),
        json!({"worker_c": worker_c}),
    );
    let clients = (0..4)
        .map(|_| {
            let mut ws = s.connect("/defects");
            bin(&mut ws, vec![3]);
            let id = text(&mut ws).parse().unwrap();
            (ws, id)
        })
        .collect();
    (s, clients)
}

#[test]
fn read_macros_getters_and_writers_behave_as_in_ringsocket_1() {
    let (s, mut clients) = defects(1);
    let ws = &mut clients[0].0;
    // RS_NTOH(uint16_t), RS_STR(0, 100).
    let mut m = vec![4, 0x01, 0x02];
    m.extend(b"abc");
    bin(ws, m);
    assert_eq!(text(ws), "str 258 abc 3");
    // RS_NET(uint32_t, 2) in host order, RS_NTOH(int16_t, 3) in network order.
    let mut m = vec![5];
    m.extend(7u32.to_ne_bytes());
    m.extend(9u32.to_ne_bytes());
    for v in [-2i16, 300, 5] {
        m.extend(v.to_be_bytes());
    }
    bin(ws, m);
    assert_eq!(text(ws), "arr 7 9 -2 300 5");
    // RS_NET_VLA(uint8_t, 0, 64), written back with rs_w_p + rs_w_uint8.
    bin(ws, vec![9, 1, 2, 3]);
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1u8, 2, 3, 0xFF]));
    // RS_CASE_UTF8 + RS_STR_HEAP.
    ws.send(Message::text("tmixed Case")).unwrap();
    assert_eq!(text(ws), "MIXED CASE", "the case byte is consumed");
    // rs_get_client_addr + rs_get_endpoint_id.
    let port = ws.get_ref().local_addr().unwrap().port();
    bin(ws, vec![6]);
    assert_eq!(text(ws), format!("addr {port} 7"));
    // The RS_TIMER callback has run (it only counts; poll until it has).
    poll_until("the timer runs", || {
        bin(ws, vec![8]);
        text(ws) != "ticks 0"
    });
    // Size, kind and case checks close with 4900, 4901 and 4902.
    for (message, code) in [
        (Message::binary(vec![4u8, 0]), 4900), // half a u16
        (Message::binary(vec![2u8, 0, 0, 0, 0, 0, 0, 0, 0, 1]), 4900), // u64 + 1 byte
        (Message::text("\u{1}"), 4901),        // case 1 is binary-only
        (Message::binary(vec![200u8]), 4902),  // no case 200
    ] {
        let mut ws = s.connect("/defects");
        ws.send(message.clone()).unwrap();
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), code, "{message:?}")
            }
            other => panic!("{message:?}: expected close {code}, got {other:?}"),
        }
    }
    // RS_CB_FATAL closes that client with 1011 and the server keeps serving.
    let mut ws = s.connect("/defects");
    bin(&mut ws, vec![7]);
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1011),
        other => panic!("expected close 1011, got {other:?}"),
    }
    let ws = &mut clients[1].0;
    bin(ws, vec![4, 0, 1, b'x']);
    assert_eq!(text(ws), "str 1 x 1");
    // The app logs the fatal return; its line reaches the log reader soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("returned RS_CB_FATAL") {
        assert!(
            Instant::now() < deadline,
            "no RS_CB_FATAL line:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// RingSocket 1's RS_NET_HEAP allocated `elem_c` bytes for `elem_c` elements.
#[test]
fn rs_net_heap_allocates_room_for_every_element() {
    let (_s, mut clients) = defects(1);
    let ws = &mut clients[0].0;
    for n in [1u64, 7, 1000] {
        let mut m = vec![1];
        for i in 1..=n {
            m.extend(i.to_ne_bytes());
        }
        bin(ws, m);
        assert_eq!(text(ws), format!("heap {n} {} ok", n * (n + 1) / 2));
    }
}

/// RingSocket 1's rs_to_every_except_single sent to everyone, the excluded client too.
#[test]
fn every_except_single_leaves_out_its_client() {
    let (_s, mut clients) = defects(2);
    for excluded in 0..clients.len() {
        let id = clients[excluded].1;
        let mut m = vec![2];
        m.extend(id.to_be_bytes());
        bin(&mut clients[0].0, m);
        for (i, (ws, _)) in clients.iter_mut().enumerate() {
            if i != excluded {
                assert_eq!(text(ws), "except");
            }
        }
        // The excluded client's next message is the reply to its own request.
        let ws = &mut clients[excluded].0;
        bin(ws, vec![3]);
        assert_eq!(text(ws), id.to_string(), "client {excluded} got 'except'");
    }
}

/// The stress app, driven for 30 s by 100 clients that echo every binary message back:
/// it checks every id and byte it gets back, and logs an error (RS_CB_FATAL) on any
/// mismatch; it never closes a client itself.
#[test]
fn the_stress_app_runs_30_s_with_100_clients_without_an_error_or_a_close() {
    let s = Server::start(
        json!([app("stress", "rst_app_stress", "/stress")]),
        // The app keeps up to 64 MB of messages in flight, each copied into every
        // recipient's output buffer and echoed back (assembled): a budget of 4 GiB.
        json!({"log_level": "info", "worker_c": 2, "max_buffered_bytes": 4u64 << 30}),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let mut ws = s.connect("/stress");
            ws.get_mut()
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let (stop, echoed, bytes) = (stop.clone(), echoed.clone(), bytes.clone());
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Relaxed) {
                    match ws.read() {
                        Ok(Message::Binary(b)) => {
                            bytes.fetch_add(b.len() as u64, Relaxed);
                            ws.send(Message::Binary(b))
                                .map_err(|e| format!("client {i}: send: {e}"))?;
                            echoed.fetch_add(1, Relaxed);
                        }
                        Ok(Message::Close(frame)) => {
                            return Err(format!("client {i} was closed: {frame:?}"))
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => return Err(format!("client {i}: {e}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(30));
    // Snapshot the log before anyone closes (the app logs every close as an error).
    let log = s.log();
    stop.store(true, Relaxed);
    for c in clients {
        if let Err(e) = c.join().unwrap() {
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("INFO"))
                .take(30)
                .collect();
            panic!("{e}; server log ends:\n{}", tail.join("\n"));
        }
    }
    let (echoed, bytes) = (echoed.load(Relaxed), bytes.load(Relaxed));
    for line in log.lines() {
        assert!(
            !line.contains("ERROR") && !line.contains("WARN"),
            "the stress app or server complained: {line}"
        );
    }
    assert!(
        log.contains("Total size of all messages") || echoed > 1000,
        "too little traffic: {echoed} messages"
    );
    eprintln!("stress: {echoed} messages ({bytes} bytes) echoed in 30 s");
    assert!(echoed > 1000, "{echoed} messages echoed");
}
