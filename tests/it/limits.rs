//! Server pings and timeouts, connection limits, memory bounds and what a stop or a
//! second instance does: each over real sockets against the real binary.

use ringsocket_tests::*;
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::Message;

fn probe(settings: serde_json::Value) -> serde_json::Value {
    let mut app = app("probe", "probe_app", "/probe");
    app["settings"] = settings;
    app
}

#[test]
fn unanswered_pings_drop_the_client_and_its_app_hears_1006() {
    let s = Server::start(
        json!([probe(json!({"log_close": true}))]),
        json!({"ping_interval": 1, "pong_timeout": 1, "worker_c": 1}),
    );
    // A watcher that answers pings (tungstenite does, while reading) and reports the
    // first "closed" notice it gets.
    let mut watcher = s.connect("/probe");
    cmd_id(&mut watcher);
    let notice = std::thread::spawn(move || loop {
        match watcher.read().expect("a message") {
            Message::Text(t) if t.starts_with("closed ") => return t.to_string(),
            _ => {}
        }
    });
    let mut dead = s.raw();
    assert!(raw_handshake(&mut dead, "/probe", "").starts_with("HTTP/1.1 101"));
    send_frame(&mut dead, true, 1, b"id");
    let (_, _, id) = read_frame(&mut dead);
    let id = String::from_utf8(id).unwrap();
    // It is pinged after a quiet second...
    let (_, opcode, _) = read_frame(&mut dead);
    assert_eq!(opcode, 9, "a ping");
    // ...and, answering nothing, dropped a second later; its app hears 1006.
    let start = Instant::now();
    assert!(reads_eof(&mut dead), "the server drops it");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(notice.join().unwrap(), format!("closed {id} 1006"));
}

fn cmd_id(ws: &mut Client) -> u64 {
    ws.send(Message::text("id")).unwrap();
    match ws.read().unwrap() {
        Message::Text(t) => t.parse().unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn answered_pings_keep_the_client() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"ping_interval": 1, "pong_timeout": 1}),
    );
    let mut stream = s.raw();
    assert!(raw_handshake(&mut stream, "/echo", "").starts_with("HTTP/1.1 101"));
    for _ in 0..3 {
        let (_, opcode, payload) = read_frame(&mut stream);
        assert_eq!(opcode, 9);
        send_frame(&mut stream, true, 0xA, &payload);
    }
    // Three pings answered, more than three seconds: still open.
    send_frame(&mut stream, true, 1, b"alive");
    loop {
        let (_, opcode, payload) = read_frame(&mut stream);
        if opcode == 1 {
            assert_eq!(payload, b"alive");
            break;
        }
        assert_eq!(opcode, 9);
        send_frame(&mut stream, true, 0xA, &payload);
    }
}

#[test]
fn idle_connections_are_closed_with_1001() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"idle_timeout": 1, "ping_interval": 0}),
    );
    let mut stream = s.raw();
    assert!(raw_handshake(&mut stream, "/echo", "").starts_with("HTTP/1.1 101"));
    send_frame(&mut stream, true, 1, b"data");
    assert_eq!(read_frame(&mut stream).2, b"data");
    let start = Instant::now();
    let (_, opcode, payload) = read_frame(&mut stream);
    assert_eq!(opcode, 8);
    assert_eq!(&payload[..2], &1001u16.to_be_bytes());
    assert_eq!(&payload[2..], b"idle timeout");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn connections_beyond_max_conns_per_ip_get_503() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"max_conns_per_ip": 3}),
    );
    let mut held: Vec<Client> = (0..3).map(|_| s.connect("/echo")).collect();
    let mut extra = s.raw();
    let r = raw_handshake(&mut extra, "/echo", "");
    assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    // One leaves (closes properly): there is room again.
    let mut leaving = held.pop().unwrap();
    leaving.close(None).unwrap();
    while leaving.read().is_ok() {}
    drop(leaving);
    s.wait_for_upgrade("/echo", "no room after a client left");
}

/// An upgrade request whose head is `size` bytes, padded with one long header.
fn request_of_size(size: usize) -> Vec<u8> {
    let head = "GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Pad: ";
    let mut req = head.as_bytes().to_vec();
    req.resize(size - 4, b'a');
    req.extend_from_slice(b"\r\n\r\n");
    req
}

#[test]
fn heads_up_to_max_http_header_size_upgrade_and_larger_get_431_at_once() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"max_http_header_size": 1 << 20}),
    );
    // 300 KiB: more than the old fixed read buffer, within the limit.
    let mut ok = s.raw();
    ok.write_all(&request_of_size(300 << 10)).unwrap();
    let r = read_http_response(&mut ok);
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    // 2 MiB: the answer comes once 1 MiB has arrived, without waiting for the rest
    // (which is written on another thread and never finishes the head).
    let big = s.raw();
    let mut writer = big.try_clone().unwrap();
    let sent = std::thread::spawn(move || {
        let req = request_of_size(2 << 20);
        let _ = writer.write_all(&req[..req.len() - 4]);
    });
    let mut reader = big;
    let start = Instant::now();
    let r = read_http_response(&mut reader);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(reader);
    let _ = sent.join();
}

#[test]
fn a_second_instance_on_the_same_port_is_refused() {
    let dir = TempDir::new();
    let port = free_port();
    let config = json!({
        "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [{"name": "echo", "app_path": plugin("echo"),
                  "endpoints": [{"url": format!("ws://127.0.0.1:{port}/echo")}]}],
        "user": "root", "allow_root_apps": true,
    });
    let path = dir.0.join("same.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let path = path.to_str().unwrap();
    let mut first = std::process::Command::new(binary())
        .args(["--foreground", "--config", path])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the first instance listens");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run_binary(&["--foreground", "--config", path]);
    let _ = first.kill();
    let _ = first.wait();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another ringsocket instance is already listening"),
        "{err}"
    );
}

#[test]
fn listeners_are_closed_when_a_stop_begins() {
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        // One worker: it closes its listeners before it sends any close frame (with
        // several, another worker's listener could still be open when the first
        // close frame arrives).
        json!({"shutdown_timeout": 30, "shutdown_wait_ws": 30, "worker_c": 1}),
    );
    // A client that will not answer the close frame keeps the stop going.
    let mut stubborn = s.raw();
    assert!(raw_handshake(&mut stubborn, "/echo", "").starts_with("HTTP/1.1 101"));
    s.signal(libc::SIGTERM);
    assert_eq!(read_close(&mut stubborn), Some(1001));
    // The stop has begun (the close frame came): new clients are refused at once
    // instead of finishing TCP and hanging in a backlog nobody accepts from.
    match TcpStream::connect(("127.0.0.1", s.port)) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a client connected during the stop"),
    }
}

#[test]
fn a_steady_reader_with_data_in_flight_holds_bounded_memory() {
    // A client keeps 16 MiB in flight on /echo (more than the kernel's socket buffers
    // hold, so the server's output buffer never empties) and reads steadily: far more
    // passes through than the outbound cap, and the server's memory must not follow.
    let s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"max_ws_msg_size": 1 << 20, "max_outbound_buf_size": 24 << 20, "worker_c": 1}),
    );
    let mut stream = s.raw();
    assert!(raw_handshake(&mut stream, "/echo", "").starts_with("HTTP/1.1 101"));
    let message = vec![0x5a; 256 << 10];
    let frame = client_frame(true, 2, &message);
    let mut writer = stream.try_clone().unwrap();
    let total = 1200; // 300 MiB
    let in_flight = 64; // 16 MiB
                        // Writes run ahead of reads by at most `in_flight` messages: the reader hands the
                        // writer one credit per message it gets back.
    let (credit_tx, credit_rx) = std::sync::mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        credit_tx.send(()).unwrap();
    }
    let writer_thread = std::thread::spawn(move || {
        for _ in 0..total {
            credit_rx.recv().unwrap();
            writer.write_all(&frame).unwrap();
        }
    });
    let baseline = s.rss();
    let mut peak = baseline;
    for i in 0..total {
        let (_, opcode, payload) = read_frame(&mut stream);
        assert_eq!((opcode, payload.len()), (2, message.len()));
        let _ = credit_tx.try_send(());
        // Read at about 250 MiB/s: slower than the server could write, so its output
        // buffer stays non-empty the whole time (load shaping, not synchronisation).
        std::thread::sleep(Duration::from_millis(1));
        if i % 50 == 0 {
            peak = peak.max(s.rss());
        }
    }
    writer_thread.join().unwrap();
    peak = peak.max(s.rss());
    assert!(
        peak < baseline + (64 << 20),
        "server RSS grew from {baseline} to {peak} bytes while 300 MiB passed through"
    );
}

#[test]
fn out_of_file_descriptors_clients_get_503_and_the_listener_recovers() {
    // The server stays as the test's user, so that the test may lower its limit.
    // SAFETY: geteuid(2) has no preconditions.
    let same_user = if unsafe { libc::geteuid() } == 0 {
        json!({"worker_c": 1, "user": "root", "allow_root_apps": true})
    } else {
        json!({"worker_c": 1})
    };
    let s = Server::start(json!([app("echo", "echo", "/echo")]), same_user);
    let mut first = vec![s.connect("/echo")];
    // Lower the running server's open-file limit to just above what it uses now: the
    // kernel, not the server's own accounting, runs out first (accept fails EMFILE).
    let open = std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .unwrap()
        .count();
    let limit = open + 3;
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", s.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        let mut st = s.raw();
        let r = raw_handshake(&mut st, "/echo", "");
        if r.starts_with("HTTP/1.1 101") {
            held.push(st);
        } else {
            assert!(r.starts_with("HTTP/1.1 503 ") || r.is_empty(), "{r}");
            refused += 1;
        }
    }
    assert!(
        held.len() <= 5,
        "{} upgrades under a limit of {limit}",
        held.len()
    );
    assert!(refused >= 6, "only {refused} refused");
    // Files free up: the listener (edge-triggered) accepts again.
    drop(held);
    first.clear();
    s.wait_for_upgrade("/echo", "the listener did not recover");
}

/// A network namespace joined to this one by a veth pair, removed on drop.
struct Namespace {
    name: String,
    host_if: String,
    host_ip: String,
    peer_ip: String,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Namespace {
    fn new() -> Namespace {
        let id = std::process::id() % 10_000;
        let net = 1 + std::process::id() % 250;
        let ns = Namespace {
            name: format!("rs-peer-{id}"),
            host_if: format!("rsh{id}"),
            host_ip: format!("10.231.{net}.1"),
            peer_ip: format!("10.231.{net}.2"),
        };
        let peer_if = format!("rsp{id}");
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&[
            "addr",
            "add",
            &format!("{}/30", ns.peer_ip),
            "dev",
            &peer_if,
        ]);
        inside(&["link", "set", &peer_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens live there).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: setns(2) on a namespace fd, for this thread only (CLONE_NEWNET).
            let joined =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    /// Cuts the link: nothing more passes either way, and no FIN or RST is sent.
    fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
#[ignore = "root only (network namespaces): tests/run runs it as root"]
fn root_a_peer_whose_link_is_cut_is_reaped_and_its_app_hears_1006() {
    let ns = Namespace::new();
    let s = Server::start(
        json!([probe(json!({"log_close": true}))]),
        json!({
            "ports": [{"port_number": 0, "is_unencrypted": true,
                       "ip_addrs": ["127.0.0.1", ns.host_ip]}],
            "ping_interval": 1, "pong_timeout": 2, "worker_c": 1,
        }),
    );
    let line = s
        .log()
        .lines()
        .find(|l| l.contains(&format!("listening on {}:", ns.host_ip)))
        .map(str::to_string)
        .expect("the namespace-facing listener is logged");
    let addr: std::net::SocketAddr = line
        .rsplit("listening on ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut watcher = s.connect("/probe");
    cmd_id(&mut watcher);
    let notice = std::thread::spawn(move || loop {
        match watcher.read().expect("a message") {
            Message::Text(t) if t.starts_with("closed ") => return t.to_string(),
            _ => {}
        }
    });
    // A peer inside the namespace connects and learns its id.
    let (peer, id) = ns.run(move || {
        let mut st = TcpStream::connect(addr).unwrap();
        st.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(raw_handshake(&mut st, "/probe", "").starts_with("HTTP/1.1 101"));
        send_frame(&mut st, true, 1, b"id");
        let id = String::from_utf8(read_frame(&mut st).2).unwrap();
        (st, id)
    });
    // Its link goes dead: no FIN, no RST, nothing.
    ns.cut();
    let start = Instant::now();
    assert_eq!(notice.join().unwrap(), format!("closed {id} 1006"));
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(10), "reaped after {waited:?}");
    drop(peer);
}
