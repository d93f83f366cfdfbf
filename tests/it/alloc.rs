//! Zero heap allocations per message in the steady state, proved with a counting
//! global allocator: the server runs inside this test process (the plugins have their
//! own allocator and are not counted), the clients run in a child process, and every
//! allocation made by any server thread while the measured traffic flows is counted.
//! Metrics are on (counters always run; with metrics, latency samples are taken too).

use ringsocket_server::config::Config;
use ringsocket_server::Server;
use ringsocket_tests::*;
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the test's own thread, whose bookkeeping (reading the child's output)
    /// allocates and is not the server's.
    static EXEMPT: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.load(Relaxed) && !EXEMPT.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; counting has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts the server on a port the kernel picks, and returns it with that port.
fn start_in_process() -> (ringsocket_server::Running, u16) {
    let config = json!({
        "ports": [{"port_number": 0, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [
            {"name": "echo", "app_path": plugin("echo"), "endpoints": [{"url": "ws://127.0.0.1:0/echo"}]},
            {"name": "broadcast", "app_path": plugin("broadcast"), "endpoints": [{"url": "ws://127.0.0.1:0/broadcast"}]},
            {"name": "writer", "app_path": plugin("probe_app"), "endpoints": [{"url": "ws://127.0.0.1:0/writer"}],
             "settings": {"echo_writer": true}},
        ],
        "worker_c": 2,
        "user": "root", "allow_root_apps": true,
        // Counters always run; with metrics on, latency samples too.
        "metrics": {"addr": "127.0.0.1:0"},
    });
    let config = Config::from_json(
        &config.to_string(),
        std::path::Path::new("/alloc-test.json"),
    )
    .unwrap();
    let prepared = Server::prepare(config).unwrap();
    let port = prepared.local_addrs()[0].port();
    (prepared.start().unwrap(), port)
}

/// Runs the client half in a child process and counts the server's allocations while
/// the measured part of its traffic flows.
fn measure(mode: &str) -> (u64, String) {
    EXEMPT.with(|e| e.set(true));
    let (server, port) = start_in_process();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "client_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("RS_ALLOC_CLIENT", format!("{mode}:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for = |word: &str| loop {
        let line = lines
            .next()
            .expect("the client process ended early")
            .unwrap();
        // libtest may print "test client_process ... " before the word, on the same line.
        if let Some(at) = line.find(word) {
            return line[at + word.len()..].trim().to_string();
        }
    };
    wait_for("WARM");
    ALLOCATIONS.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    writeln!(stdin, "GO").unwrap();
    let done = wait_for("DONE");
    COUNTING.store(false, Relaxed);
    let allocations = ALLOCATIONS.load(Relaxed);
    let _ = child.wait();
    server.stop();
    (allocations, done)
}

#[test]
fn echo_steady_state_allocates_nothing() {
    let (allocations, done) = measure("echo");
    assert_eq!(
        allocations, 0,
        "the server allocated {allocations} times while echoing {done} messages"
    );
    assert!(done.parse::<u64>().unwrap() >= 100_000, "{done}");
}

/// The in-place writer (`rs_w_*` + `rs_to_cur`, `ctx.writer()`): the message is written
/// into a record reserved in the outbound ring and published there.
#[test]
fn writer_echo_steady_state_allocates_nothing() {
    let (allocations, done) = measure("writer");
    assert_eq!(
        allocations, 0,
        "the server allocated {allocations} times while echoing {done} messages"
    );
    assert!(done.parse::<u64>().unwrap() >= 100_000, "{done}");
}

/// Topics: 100 subscribers (over both workers), a publisher publishing through the app.
#[test]
fn topic_publish_steady_state_allocates_nothing() {
    let (allocations, done) = measure("topic");
    assert_eq!(
        allocations, 0,
        "the server allocated {allocations} times during {done} topic deliveries"
    );
    assert!(done.parse::<u64>().unwrap() >= 100_000, "{done}");
}

#[test]
fn fanout_steady_state_allocates_nothing() {
    let (allocations, done) = measure("fanout");
    assert_eq!(
        allocations, 0,
        "the server allocated {allocations} times during {done} deliveries"
    );
    assert!(done.parse::<u64>().unwrap() >= 100_000, "{done}");
}

/// The client half (run as a child process by the tests above; does nothing otherwise).
#[test]
#[ignore = "runs only as the child process of the allocation tests"]
fn client_process() {
    let Ok(spec) = std::env::var("RS_ALLOC_CLIENT") else {
        return;
    };
    let (mode, port) = spec.split_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    let connect = |path: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let r = raw_handshake(&mut s, path, "");
        assert!(r.starts_with("HTTP/1.1 101"), "{r}");
        s
    };
    let frame = |payload: &[u8]| client_frame(true, 2, payload);
    // Every frame the server sends is read and checked; the count printed at the end
    // is what was verified, not what was meant to be sent.
    let verified = std::cell::Cell::new(0u64);
    let expect = |s: &mut TcpStream, n: usize, payload: &[u8]| {
        for _ in 0..n {
            let (fin, opcode, got) = read_frame(s);
            assert!(fin && opcode == 2 && got == payload, "unexpected frame");
            verified.set(verified.get() + 1);
        }
    };
    let go = || {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    };
    let out = std::io::stdout();
    match mode {
        "echo" | "writer" => {
            let path = format!("/{mode}");
            let mut conns: Vec<TcpStream> = (0..20).map(|_| connect(&path)).collect();
            let batch: Vec<u8> = (0..10).flat_map(|_| frame(&[7u8; 32])).collect();
            let round = |conns: &mut Vec<TcpStream>| {
                for c in conns.iter_mut() {
                    c.write_all(&batch).unwrap();
                }
                for c in conns.iter_mut() {
                    expect(c, 10, &[7u8; 32]);
                }
            };
            for _ in 0..200 {
                round(&mut conns);
            }
            writeln!(out.lock(), "WARM").unwrap();
            go();
            verified.set(0);
            for _ in 0..600 {
                round(&mut conns);
            }
            writeln!(out.lock(), "DONE {}", verified.get()).unwrap();
        }
        "topic" => {
            let text = |payload: &[u8]| client_frame(true, 1, payload);
            let mut subs: Vec<TcpStream> = (0..100).map(|_| connect("/writer")).collect();
            for s in subs.iter_mut() {
                s.write_all(&text(b"sub t")).unwrap();
                assert_eq!(read_frame(s).2, b"ok");
            }
            let mut publisher = connect("/writer");
            let body = b"0123456789abcdef0123456789abcdef";
            let publish = text(&[&b"pub t "[..], body].concat()).repeat(4);
            let round = |publisher: &mut TcpStream, subs: &mut Vec<TcpStream>| {
                publisher.write_all(&publish).unwrap();
                for s in subs.iter_mut() {
                    for _ in 0..4 {
                        let (fin, opcode, got) = read_frame(s);
                        assert!(fin && opcode == 1 && got == body, "unexpected frame");
                        verified.set(verified.get() + 1);
                    }
                }
            };
            for _ in 0..100 {
                round(&mut publisher, &mut subs);
            }
            writeln!(out.lock(), "WARM").unwrap();
            go();
            verified.set(0);
            for _ in 0..300 {
                round(&mut publisher, &mut subs);
            }
            writeln!(out.lock(), "DONE {}", verified.get()).unwrap();
        }
        _ => {
            let mut subs: Vec<TcpStream> = (0..100).map(|_| connect("/broadcast")).collect();
            // Every subscriber is known to the app once its own message comes back (the
            // app sees a client's open before its messages); then a marker from the
            // publisher, read by everyone, ends the greetings.
            let hello = |i: usize| {
                let mut p = [0u8; 64];
                p[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                p
            };
            for (i, s) in subs.iter_mut().enumerate() {
                s.write_all(&frame(&hello(i))).unwrap();
            }
            for (i, s) in subs.iter_mut().enumerate() {
                while read_frame(s).2 != hello(i) {}
            }
            let mut publisher = connect("/broadcast");
            let marker = [1u8; 64];
            publisher.write_all(&frame(&marker)).unwrap();
            for s in subs.iter_mut().chain(std::iter::once(&mut publisher)) {
                while read_frame(s).2 != marker {}
            }
            let msg = frame(&[9u8; 64]);
            let round = |publisher: &mut TcpStream, subs: &mut Vec<TcpStream>| {
                for _ in 0..4 {
                    publisher.write_all(&msg).unwrap();
                }
                for s in subs.iter_mut().chain(std::iter::once(publisher)) {
                    expect(s, 4, &[9u8; 64]);
                }
            };
            for _ in 0..100 {
                round(&mut publisher, &mut subs);
            }
            writeln!(out.lock(), "WARM").unwrap();
            go();
            verified.set(0);
            for _ in 0..300 {
                round(&mut publisher, &mut subs);
            }
            writeln!(out.lock(), "DONE {}", verified.get()).unwrap();
        }
    }
}
