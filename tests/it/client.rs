//! `ringsocket-client` against a live server: stdin lines out, messages in, exit
//! statuses, subprotocols and headers, pings, binary, and `wss://` with a CA file, with
//! `--insecure` and (refused) with neither.

use ringsocket_tests::*;
use serde_json::json;
use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

/// Starts `ringsocket-client ARGS` with its standard streams piped.
fn spawn(args: &[&str]) -> Child {
    Command::new(target_dir().join("ringsocket-client"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringsocket-client is built (cargo build --workspace)")
}

/// Runs `ringsocket-client ARGS`, feeding it `stdin` and then closing it.
fn client(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn(args);
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn lines_go_out_messages_come_back_and_the_exit_says_how_it_ended() {
    let s = Server::start(json!([app("echo", "echo", "/echo")]), json!({}));
    let out = client(&[&s.url("/echo")], b"hello\nworld\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\nworld\n");
    assert!(text(&out.stderr).contains("closed: 1000"));
    // Binary lines, shown as hex.
    let out = client(&[&s.url("/echo"), "--binary", "--hex"], b"abc\n\x00\xff\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "616263\n00ff\n");
    // A refused upgrade: status 3 and the server's answer.
    let out = client(&[&s.url("/nope")], b"");
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    // Nobody listening.
    let out = client(&[&format!("ws://127.0.0.1:{}/echo", free_port())], b"");
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("cannot connect"));
    let out = client(&["http://x/"], b"");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_script_receives_pushed_messages_and_sees_the_close_code() {
    let s = Server::start(json!([app("probe", "probe_app", "/probe")]), json!({}));
    // --count: exits 0 after the pushed message.
    let bin = target_dir().join("ringsocket-client");
    let url = s.url("/probe");
    let receiver = std::thread::spawn(move || {
        Command::new(bin)
            .args([url.as_str(), "--no-input", "--count", "1"])
            .output()
            .unwrap()
    });
    poll_until("the client is connected", || {
        let (_, out, _) = s.ctl(&["status", "--json"], b"");
        out.contains(r#""connections":1"#)
    });
    let (code, out, _) = s.ctl(&["send", "probe", "--all", "pushed"], b"");
    assert_eq!((code, out.trim()), (0, "reached 1 client"));
    let out = receiver.join().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "pushed\n");
    // The app closes it with 4321 (stdin stays open: the close is the server's): status
    // 1, the code and reason on stderr.
    let mut child = spawn(&[&s.url("/probe")]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"close 4321\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("closed: 4321 bye"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn subprotocols_and_headers_reach_the_app() {
    let mut probe = app_with_settings("probe", "probe_app", "/probe", json!({"log_open": true}));
    probe["endpoints"][0]["subprotocols"] = json!(["v2.chat", "v1.chat"]);
    let s = Server::start(json!([probe]), json!({}));
    let out = client(
        &[
            &s.url("/probe?x=1"),
            "--subprotocol",
            "v1.chat",
            "-H",
            "Cookie: session=abc",
            "-H",
            "User-Agent: ringsocket-test",
            "--count",
            "2",
            "--no-input",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let open = lines.next().unwrap();
    assert!(
        open.starts_with("open ") && open.ends_with(" v1.chat"),
        "{open}"
    );
    let meta = lines.next().unwrap();
    assert!(
        meta.contains("ringsocket-test") && meta.contains("session=abc") && meta.contains("x=1"),
        "{meta}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("subprotocol v1.chat"), "{stderr}");
}

#[test]
fn pings_are_answered() {
    use std::io::{BufRead, BufReader};
    let s = Server::start(json!([app("echo", "echo", "/echo")]), json!({}));
    let mut child = spawn(&[&s.url("/echo"), "--ping", "0.02"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // The first pong is reported; then a marker goes through and stdin ends.
    let mut line = String::new();
    while !line.contains("pong") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no pong before the end"
        );
    }
    stdin.write_all(b"marker\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "marker\n");
}

#[test]
fn wss_with_a_ca_file_with_insecure_and_refused_with_neither() {
    let dir = TempDir::new();
    let (s, cert) = tls_server(&dir);
    let url = format!("wss://localhost:{}/echo", s.port);
    let out = client(&[&url, "--ca", &cert.cert], b"over tls\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "over tls\n");
    let out = client(&[&url, "--insecure"], b"anyway\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "anyway\n");
    // The system's CAs do not know a certificate made a moment ago.
    let out = client(&[&url], b"no\n");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&out.stderr)
    );
}
