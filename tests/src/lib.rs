//! Test harness: starts the real `ringsocket` binary on a generated configuration with
//! real plugins, and talks to it over loopback sockets.
//!
//! The binary and plugins come from the same target directory as the test executable,
//! so build the workspace first (`cargo build --workspace`; `tests/run` does it).

pub mod browser;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `target/<profile>`: where the binary and the plugins are.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The `ringsocket` binary under test.
pub fn binary() -> PathBuf {
    let path = target_dir().join("ringsocket");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// A plugin built by the workspace, e.g. `plugin("echo")` → `libecho.so`.
pub fn plugin(name: &str) -> PathBuf {
    let path = target_dir().join(format!("lib{name}.so"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// The port in a server log's first "ports[0]: listening on ADDR" line.
pub fn listening_port(log: &str) -> Option<u16> {
    let line = log
        .lines()
        .find(|l| l.contains("ports[0]: listening on "))?;
    let addr = line.rsplit("listening on ").next()?;
    addr.trim()
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.port())
}

/// A port that was free a moment ago (only for configurations that need a fixed port
/// number, such as a second instance on the same port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rs-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An `apps[]` entry for `plugin` served at `path` on `{port}` (filled in by [`Server`]).
pub fn app(name: &str, plugin_name: &str, path: &str) -> Value {
    json!({
        "name": name,
        "app_path": plugin(plugin_name),
        "endpoints": [{"endpoint_id": 7, "url": format!("ws://127.0.0.1:{{port}}{path}"), "allowed_origins": ["*"]}]
    })
}

/// [`app`] with `settings` (the app's `settings` value).
pub fn app_with_settings(name: &str, plugin_name: &str, path: &str, settings: Value) -> Value {
    let mut a = app(name, plugin_name, path);
    a["settings"] = settings;
    a
}

/// The test-only probe plugin at `/probe`, with `settings`.
pub fn probe(settings: Value) -> Value {
    app_with_settings("probe", "probe_app", "/probe", settings)
}

/// The next message, which must be text.
pub fn text(ws: &mut Client) -> String {
    match ws.read().expect("a message") {
        tungstenite::Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Sends a text command (to the probe plugin).
pub fn cmd(ws: &mut Client, command: &str) {
    ws.send(tungstenite::Message::text(command)).unwrap();
}

/// Sends a command and returns the text that comes next.
pub fn ask(ws: &mut Client, command: &str) -> String {
    cmd(ws, command);
    text(ws)
}

/// The probe plugin's client id for `ws`.
pub fn id_of(ws: &mut Client) -> u64 {
    ask(ws, "id").parse().unwrap()
}

/// Polls `done` every 10 ms until it holds; fails after 10 s, saying `what` never did.
pub fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `ringsocket --foreground` with its configuration and log.
pub struct Server {
    child: Option<Child>,
    /// The port it serves.
    pub port: u16,
    /// Holds the configuration file.
    pub dir: TempDir,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the server with these `apps` (their URLs may say `{port}`) and extra root
    /// keys, and waits until it accepts connections.
    pub fn start(apps: Value, extra: Value) -> Server {
        Self::start_on(true, apps, extra)
    }

    /// Like [`Server::start`], but the port is plain (`ws://`) only if `plain`; a TLS
    /// port needs `certs` in `extra`.
    pub fn start_on(plain: bool, apps: Value, extra: Value) -> Server {
        // Port 0: the kernel picks a free port, which the server logs.
        let mut config = json!({
            "ports": [{"port_number": 0, "is_unencrypted": plain, "ip_addrs": ["127.0.0.1"]}],
            "apps": apps,
            "log_level": "debug",
            "worker_c": 2,
        });
        let dir = TempDir::new();
        // Each server its own control socket (the default path is one per machine).
        config["ctl_socket"] = json!(dir.0.join("ctl.sock"));
        if let (Some(root), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                root.insert(k.clone(), v.clone());
            }
        }
        let text = config.to_string().replace("{port}", "0");
        let path = dir.0.join("ringsocket.json");
        std::fs::write(&path, text).unwrap();
        let mut child = Command::new(binary())
            .args(["--foreground", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ringsocket starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let server = Server {
            child: Some(child),
            port: 0,
            dir,
            log,
        };
        Self::wait_listening(server, Instant::now() + Duration::from_secs(15))
    }

    /// Waits for the "listening on ADDR" line, then for the port to accept.
    fn wait_listening(mut server: Server, deadline: Instant) -> Server {
        loop {
            if server.port == 0 {
                server.port = listening_port(&server.log()).unwrap_or(0);
            }
            if server.port != 0 && TcpStream::connect(("127.0.0.1", server.port)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.as_mut().unwrap().try_wait() {
                panic!(
                    "ringsocket exited with {status} at start:\n{}",
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ringsocket did not listen within 15 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// A connected TCP socket with 10 s read/write timeouts.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// Opens new connections to `path` until one upgrades (101) or 10 s pass, for when
    /// room must come back (a limit freed up); panics with `why` otherwise.
    pub fn wait_for_upgrade(&self, path: &str, why: &str) -> TcpStream {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut stream = self.raw();
            if raw_handshake(&mut stream, path, "").starts_with("HTTP/1.1 101") {
                return stream;
            }
            assert!(Instant::now() < deadline, "{why}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A WebSocket client (tungstenite) connected to `path`.
    pub fn connect(&self, path: &str) -> Client {
        let stream = self.raw();
        let (ws, _) =
            tungstenite::client::client_with_config(self.url(path), stream, Some(client_config()))
                .expect("handshake");
        ws
    }

    /// Runs `ringsocketctl --socket <this server's control socket> ARGS`, feeding it
    /// `stdin`; returns its exit status, stdout and stderr.
    pub fn ctl(&self, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        let mut child = Command::new(target_dir().join("ringsocketctl"))
            .arg("--socket")
            .arg(self.dir.0.join("ctl.sock"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ringsocketctl is built (cargo build --workspace)");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The server's resident memory in bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// Sends `signal` to the server process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().unwrap().id();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, signal) };
    }

    /// Waits (at most 20 s) for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ringsocket did not exit within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking tungstenite client.
pub type Client = tungstenite::WebSocket<TcpStream>;

/// A small xorshift generator from `seed` (not 0): deterministic, so a test's random
/// input can be replayed.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// Client limits big enough for the server's 16 MiB messages.
pub fn client_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// Runs the binary with `args` and returns its output (bounded to 30 s).
pub fn run_binary(args: &[&str]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringsocket {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Sends an upgrade request for `path` with `extra` header lines, and returns the whole
/// HTTP response head (and body, for errors) as text.
pub fn raw_handshake(stream: &mut TcpStream, path: &str, extra: &str) -> String {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    read_http_response(stream)
}

/// Reads an HTTP response head, plus its body if it has a Content-Length.
pub fn read_http_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// Reads one HTTP response: its status, its head, and a body of its Content-Length
/// unless `head_only` (the answer to a HEAD request).
pub fn read_response(stream: &mut TcpStream, head_only: bool) -> (u16, String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "EOF inside a response head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; if head_only { 0 } else { len }];
    stream.read_exact(&mut body).unwrap();
    (status, head, body)
}

/// One HTTP/1.1 request on a new connection to `port`: `method` and `target`, extra
/// header lines, a body; returns the response's status, head and body.
pub fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_response(&mut stream, method == "HEAD")
}

/// One masked client frame (any opcode bits, reserved ones included).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    ringsocket_proto::frame::encode_client_frame(
        fin,
        opcode,
        payload,
        [0x12, 0x34, 0x56, 0x78],
        &mut frame,
    );
    frame
}

/// Writes one masked client frame.
pub fn send_frame(stream: &mut TcpStream, fin: bool, opcode: u8, payload: &[u8]) {
    stream
        .write_all(&client_frame(fin, opcode, payload))
        .unwrap();
}

/// Reads one server frame: (fin, opcode, payload). Panics on EOF or timeout.
pub fn read_frame(stream: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("a frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).unwrap();
    (head[0] & 0x80 != 0, head[0] & 0x0f, payload)
}

/// Reads frames until a close frame and returns its code (None for an empty payload).
pub fn read_close(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let (_, opcode, payload) = read_frame(stream);
        if opcode == 8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// Whether the peer closed the TCP connection (EOF) within 10 s.
pub fn reads_eof(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// A self-signed certificate for `localhost`, written as PEM files into `dir`.
pub struct TestCert {
    /// The certificate's PEM file.
    pub cert: String,
    /// The key's PEM file.
    pub key: String,
    /// The certificate.
    pub der: rustls::pki_types::CertificateDer<'static>,
}

/// Makes one (`NAME.crt`, `NAME.key`).
pub fn make_cert(dir: &TempDir, name: &str) -> TestCert {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.0.join(format!("{name}.crt"));
    let key = dir.0.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    TestCert {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        der: generated.cert.der().clone(),
    }
}

/// A server with `/echo` on a `wss://` port, with a certificate made in `dir`.
pub fn tls_server(dir: &TempDir) -> (Server, TestCert) {
    tls_server_with(dir, json!({}))
}

/// [`tls_server`] with more top-level settings (`extra`, a JSON object).
pub fn tls_server_with(dir: &TempDir, mut extra: Value) -> (Server, TestCert) {
    let cert = make_cert(dir, "server");
    let mut echo = app("echo", "echo", "/echo");
    echo["endpoints"][0]["url"] = json!("wss://localhost:{port}/echo");
    extra["certs"] =
        json!([{"hostnames": ["localhost"], "privkey_path": cert.key, "pubchain_path": cert.cert}]);
    (Server::start_on(false, json!([echo]), extra), cert)
}
