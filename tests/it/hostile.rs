//! A thousand hostile connections against the memory budget: deaf readers, half-sent
//! maximum-size messages, broadcast amplification and trickling readers cannot push
//! the server's memory past `max_buffered_bytes` plus its fixed overhead, and a
//! well-behaved client keeps its echo round trip throughout.

use ringsocket_tests::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

const MIB: u64 = 1 << 20;
/// `max_buffered_bytes` for the test.
const BUDGET: u64 = 32 * MIB;
/// What the server may hold beyond the budget (README, "Memory bounds"), for 2 workers
/// and 2 apps (8 rings) with 1 MiB messages, whose buffers may have up to 2 MiB of
/// capacity: large messages in flight through the rings, at most one per ring above the
/// gauge's limit (8 × 2 MiB); one backlogged message per app and worker (4 × 2 MiB); the
/// rings themselves (8 × 1 MiB); read buffers, ~300 B per connection and allocator
/// slack (8 MiB).
const FIXED_OVERHEAD: u64 = 16 * MIB + 8 * MIB + 8 * MIB + 8 * MIB;

/// A raw, upgraded connection whose writes give up after a while (the server may
/// stop reading it, or drop it).
fn upgraded(s: &Server, path: &str) -> TcpStream {
    let mut st = s.raw();
    st.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let r = raw_handshake(&mut st, path, "");
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    st
}

#[test]
fn a_thousand_hostile_connections_stay_within_the_memory_budget() {
    raise_fd_limit();
    let s = Server::start(
        json!([
            app("echo", "echo", "/echo"),
            app("broadcast", "broadcast", "/broadcast")
        ]),
        json!({
            "max_ws_msg_size": MIB, "max_outbound_buf_size": 4 * MIB,
            "max_buffered_bytes": BUDGET, "worker_c": 2, "log_level": "info",
        }),
    );
    let mut good = s.connect("/echo");
    let round_trip = |good: &mut Client, i: usize| {
        let start = Instant::now();
        let text = format!("ping {i}");
        good.send(Message::text(text.clone())).unwrap();
        loop {
            match good
                .read()
                .expect("the well-behaved client stays connected")
            {
                Message::Text(t) if t.as_str() == text => return start.elapsed(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    round_trip(&mut good, 0);

    // 1 000 connections: 250 deaf echo senders, 250 half-senders, 250 deaf broadcast
    // subscribers (one of them publishes), 250 tricklers.
    let deaf_echo: Vec<TcpStream> = (0..250).map(|_| upgraded(&s, "/echo")).collect();
    let half: Vec<TcpStream> = (0..250).map(|_| upgraded(&s, "/echo")).collect();
    let subscribers: Vec<TcpStream> = (0..250).map(|_| upgraded(&s, "/broadcast")).collect();
    let tricklers: Vec<TcpStream> = (0..250).map(|_| upgraded(&s, "/echo")).collect();
    round_trip(&mut good, 1);
    let baseline = s.rss();

    let stop = Arc::new(AtomicBool::new(false));
    let big = client_frame(true, 2, &vec![0xab; MIB as usize]);
    let mut attackers = Vec::new();
    // Deaf echo senders: 8 maximum-size messages each, replies never read.
    let frame = big.clone();
    attackers.push(std::thread::spawn(move || {
        for _ in 0..8 {
            for c in &deaf_echo {
                let _ = (&*c).write_all(&frame);
            }
        }
        deaf_echo
    }));
    // Half-senders: a maximum-size message announced, 900 KiB of it sent, never the rest.
    let partial = big[..(900 << 10)].to_vec();
    attackers.push(std::thread::spawn(move || {
        for c in &half {
            let _ = (&*c).write_all(&partial);
        }
        half
    }));
    // Broadcast amplification: one publisher, 250 deaf subscribers, 16 MiB published.
    let frame = big.clone();
    attackers.push(std::thread::spawn(move || {
        let publisher = &subscribers[0];
        for _ in 0..16 {
            let _ = (&*publisher).write_all(&frame);
        }
        subscribers
    }));
    // Tricklers: ask for echoes of 64 KiB and read a few bytes now and then.
    let small = client_frame(true, 2, &[7; 64 << 10]);
    let trickling = stop.clone();
    attackers.push(std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        for c in &tricklers {
            let _ = (&*c).write_all(&small);
            c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        }
        while !trickling.load(Ordering::Relaxed) {
            for c in &tricklers {
                let _ = (&*c).read(&mut buf);
            }
        }
        tricklers
    }));

    // Meanwhile: memory stays bounded and the good client is served.
    let mut peak = baseline;
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 2;
    while attackers[..3].iter().any(|t| !t.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "the attack did not finish in 20 s"
        );
        peak = peak.max(s.rss());
        slowest = slowest.max(round_trip(&mut good, i));
        i += 1;
    }
    for _ in 0..20 {
        peak = peak.max(s.rss());
        slowest = slowest.max(round_trip(&mut good, i));
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let held: Vec<Vec<TcpStream>> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        peak <= baseline + BUDGET + FIXED_OVERHEAD,
        "RSS peaked at {peak} bytes: more than {baseline} + {BUDGET} + {FIXED_OVERHEAD}"
    );
    // The app thread is shared with the attackers' traffic (README, "Memory bounds"):
    // the client is served slowly, never stuck.
    assert!(
        slowest < Duration::from_secs(5),
        "a round trip took {slowest:?}"
    );
    assert!(
        s.log().contains("over max_buffered_bytes"),
        "the budget was enforced:\n{}",
        s.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "baseline {baseline} B, peak {peak} B (+{} MiB), slowest round trip {slowest:?}, {} round trips",
        (peak - baseline) >> 20,
        i
    );
    drop(held);
}
