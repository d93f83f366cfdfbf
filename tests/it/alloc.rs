//! Zero heap allocations per message in the steady state, proved with a counting
//! global allocator: the server runs inside this test process (the plugins have their
//! own allocator and are not counted), the clients run in a child process, and every
//! allocation made by any server thread while the measured traffic flows is counted.

use ringsocket_server::config::Config;
use ringsocket_server::Server;
use ringsocket_tests::*;
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
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

fn start_in_process(port: u16) -> ringsocket_server::Running {
    let config = json!({
        "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [
            {"name": "echo", "app_path": plugin("echo"), "endpoints": [{"url": format!("ws://127.0.0.1:{port}/echo")}]},
            {"name": "broadcast", "app_path": plugin("broadcast"), "endpoints": [{"url": format!("ws://127.0.0.1:{port}/broadcast")}]},
        ],
        "worker_c": 2,
        "user": "root", "allow_root_apps": true,
    });
    let config = Config::from_json(
        &config.to_string(),
        std::path::Path::new("/alloc-test.json"),
    )
    .unwrap();
    Server::prepare(config).unwrap().start().unwrap()
}

/// Runs the client half in a child process and counts the server's allocations while
/// the measured part of its traffic flows.
fn measure(mode: &str) -> (u64, String) {
    EXEMPT.with(|e| e.set(true));
    let port = free_port();
    let server = start_in_process(port);
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
    // Let the server settle after the warm-up (buffers reach their steady size).
    std::thread::sleep(std::time::Duration::from_millis(200));
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
    let skip = |s: &mut TcpStream, len: usize| {
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).unwrap();
    };
    let go = || {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    };
    let out = std::io::stdout();
    match mode {
        "echo" => {
            let mut conns: Vec<TcpStream> = (0..20).map(|_| connect("/echo")).collect();
            let batch: Vec<u8> = (0..10).flat_map(|_| frame(&[7u8; 32])).collect();
            let round = |conns: &mut Vec<TcpStream>| {
                for c in conns.iter_mut() {
                    c.write_all(&batch).unwrap();
                }
                for c in conns.iter_mut() {
                    skip(c, 10 * 34);
                }
            };
            for _ in 0..200 {
                round(&mut conns);
            }
            writeln!(out.lock(), "WARM").unwrap();
            go();
            for _ in 0..600 {
                round(&mut conns);
            }
            writeln!(out.lock(), "DONE {}", 600 * 20 * 10).unwrap();
        }
        _ => {
            let mut subs: Vec<TcpStream> = (0..100).map(|_| connect("/broadcast")).collect();
            let mut publisher = connect("/broadcast");
            std::thread::sleep(std::time::Duration::from_millis(200));
            let msg = frame(&[9u8; 64]);
            let round = |publisher: &mut TcpStream, subs: &mut Vec<TcpStream>| {
                for _ in 0..4 {
                    publisher.write_all(&msg).unwrap();
                }
                for s in subs.iter_mut().chain(std::iter::once(publisher)) {
                    skip(s, 4 * 66);
                }
            };
            for _ in 0..100 {
                round(&mut publisher, &mut subs);
            }
            writeln!(out.lock(), "WARM").unwrap();
            go();
            for _ in 0..300 {
                round(&mut publisher, &mut subs);
            }
            writeln!(out.lock(), "DONE {}", 300 * 4 * 101).unwrap();
        }
    }
}
