//! The production launch: as root, the daemon drops to `ringsock` with no capabilities,
//! serves a port below 1024, writes its PID file, outlives the shell that started it,
//! logs to syslog (or its log file), and stops cleanly on SIGTERM. Tests that need root
//! are named `root_*` and ignored by a plain `cargo test`; `tests/run` runs them
//! explicitly as root (and fails in CI when it is not root). Those that start a
//! daemon (`root_daemon_*`) run one at a time (`.config/nextest.toml`): they share
//! `/dev/log`.

use ringsocket_tests::*;
use serde_json::json;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ringsock_ids() -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", "ringsock"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the ringsock user must exist (tests/run creates it when run as root)"
    );
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = Command::new("id")
        .args(["-g", "ringsock"])
        .output()
        .unwrap();
    (
        uid,
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
    )
}

/// A free port below 1024.
fn low_port() -> u16 {
    (900..1024)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024")
}

/// Copies a plugin where the unprivileged user can read it.
fn readable_plugin(dir: &TempDir, name: &str) -> String {
    let dest = dir.0.join(format!("lib{name}.so"));
    std::fs::copy(plugin(name), &dest).unwrap();
    dest.display().to_string()
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        // Gone, or a zombie waiting for init to reap it: either way it has exited.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat[stat.rfind(')').unwrap_or(0)..].starts_with(") Z") => return true,
            Ok(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
#[ignore = "root only: tests/run runs it as root"]
fn root_daemon_drops_privileges_serves_and_stops_cleanly() {
    let (uid, gid) = ringsock_ids();
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = low_port();
    let pid_file = dir.0.join("run/ringsocket.pid");
    let config = json!({
        "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [{"name": "echo", "app_path": readable_plugin(&dir, "echo"),
                  "endpoints": [{"url": format!("ws://127.0.0.1:{port}/echo")}]}],
        "pid_file": pid_file,
        "log_level": "info",
    });
    let config_path = dir.0.join("ringsocket.json");
    std::fs::write(&config_path, config.to_string()).unwrap();

    // Listen where syslog() writes, unless a real syslog daemon owns /dev/log.
    let syslog = if Path::new("/dev/log").exists() {
        None
    } else {
        UnixDatagram::bind("/dev/log").ok()
    };

    // Start it from a shell that exits right after.
    let shell = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --config {}",
            binary().display(),
            config_path.display()
        ))
        .output()
        .unwrap();
    assert!(
        shell.status.success(),
        "launch failed: {}",
        String::from_utf8_lossy(&shell.stderr)
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("the PID file")
        .trim()
        .parse()
        .unwrap();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon outlives its launching shell"
    );

    assert_eq!(
        status_field(pid, "Uid"),
        format!("{uid}\t{uid}\t{uid}\t{uid}")
    );
    assert_eq!(
        status_field(pid, "Gid"),
        format!("{gid}\t{gid}\t{gid}\t{gid}")
    );
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    // SAFETY: getsid on a pid.
    let (sid, our_sid) = unsafe { (libc::getsid(pid as i32), libc::getsid(0)) };
    assert_ne!(sid, our_sid, "the daemon runs in a session of its own");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let tty_nr = after_comm.split(' ').nth(4).unwrap();
    assert_eq!(tty_nr, "0", "no controlling terminal");

    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let response = raw_handshake(&mut stream, "/echo", "");
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    send_frame(&mut stream, true, 1, b"low port");
    assert_eq!(read_frame(&mut stream).2, b"low port");

    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert_eq!(
        read_close(&mut stream),
        Some(1001),
        "clients are told the server is going away"
    );
    send_frame(&mut stream, true, 8, &1001u16.to_be_bytes());
    assert!(
        wait_gone(pid, Duration::from_secs(15)),
        "the daemon exits after SIGTERM"
    );
    assert!(!pid_file.exists(), "the PID file is removed at exit");

    if let Some(syslog) = syslog {
        syslog
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut lines = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = syslog.recv(&mut buf) {
            lines.push_str(&String::from_utf8_lossy(&buf[..n]));
            lines.push('\n');
        }
        let _ = std::fs::remove_file("/dev/log");
        assert!(
            lines.contains("ringsocket["),
            "syslog lines carry the ident: {lines}"
        );
        assert!(lines.contains("running as user ringsock"), "{lines}");
        assert!(lines.contains("stopped"), "{lines}");
    }
}

#[test]
#[ignore = "root only: tests/run runs it as root"]
fn root_daemon_second_instance_with_the_same_pid_file_is_refused() {
    ringsock_ids();
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pid_file = dir.0.join("run/rs.pid");
    let make = |port: u16, name: &str| {
        let config = json!({
            "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
            "apps": [{"name": "echo", "app_path": readable_plugin(&dir, "echo"),
                      "endpoints": [{"url": format!("ws://127.0.0.1:{port}/echo")}]}],
            "pid_file": pid_file,
        });
        let path = dir.0.join(name);
        std::fs::write(&path, config.to_string()).unwrap();
        path.display().to_string()
    };
    // Port 0: the refusal is about the PID file, whatever the ports.
    let first = make(0, "a.json");
    let second = make(0, "b.json");
    let out = run_binary(&["--config", &first]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = run_binary(&["--config", &second]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    // SAFETY: kill(2) on the first daemon's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("PID file"), "{err}");
    assert!(wait_gone(pid, Duration::from_secs(15)));
}

#[test]
#[ignore = "root only: tests/run runs it as root"]
fn root_user_is_refused_unless_allowed() {
    let dir = TempDir::new();
    let port = 0; // refused before anything is bound
    let config = json!({
        "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [{"name": "echo", "app_path": plugin("echo"), "endpoints": [{"url": format!("ws://127.0.0.1:{port}/echo")}]}],
        "user": "root",
    });
    let path = dir.0.join("root.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run_binary(&["--foreground", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("user: 'root' is root") && err.contains("allow_root_apps"),
        "{err}"
    );
}

#[test]
#[ignore = "root only: tests/run runs it as root"]
fn root_daemon_without_syslog_logs_to_its_log_file() {
    if Path::new("/dev/log").exists() {
        // A syslog daemon owns /dev/log here; CI machines have none.
        assert!(std::env::var_os("CI").is_none(), "/dev/log exists in CI");
        eprintln!("skipped: a syslog daemon runs on this machine");
        return;
    }
    ringsock_ids();
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = 0; // nothing connects: the test reads the log file
    let pid_file = dir.0.join("run/rs.pid");
    let log_file = dir.0.join("ringsocket.log");
    let config = json!({
        "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [{"name": "echo", "app_path": readable_plugin(&dir, "echo"),
                  "endpoints": [{"url": format!("ws://127.0.0.1:{port}/echo")}]}],
        "pid_file": pid_file, "log_file": log_file, "log_level": "info",
    });
    let path = dir.0.join("log.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run_binary(&["--config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(wait_gone(pid, Duration::from_secs(15)));
    let log = std::fs::read_to_string(&log_file).expect("the log file");
    assert!(log.contains("cannot log to syslog"), "{log}");
    assert!(log.contains("running as user ringsock"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    let (uid, _) = ringsock_ids();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&log_file).unwrap());
    assert_eq!(
        owner, uid,
        "the log file belongs to the run user (reopened on SIGHUP)"
    );
}

#[test]
fn unprivileged_start_says_what_it_skipped() {
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = free_port();
    let config = json!({
        "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [{"name": "echo", "app_path": readable_plugin(&dir, "echo"), "endpoints": [{"url": format!("ws://127.0.0.1:{port}/echo")}]}],
        "log_level": "info",
    });
    let path = dir.0.join("user.json");
    std::fs::write(&path, config.to_string()).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(["--foreground", "--config", path.to_str().unwrap()])
        .stderr(std::process::Stdio::piped());
    if is_root() {
        let (uid, gid) = ringsock_ids();
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, gid);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "it starts"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("(not root): not switching to user 'ringsock' and not dropping capabilities"),
        "{err}"
    );
}

#[test]
fn sighup_reopens_the_log_and_applies_log_level() {
    let mut s = Server::start(
        json!([app("echo", "echo", "/echo")]),
        json!({"log_level": "info"}),
    );
    let path = s.dir.0.join("ringsocket.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"log_level\":\"info\"", "\"log_level\":\"debug\"");
    std::fs::write(&path, text).unwrap();
    s.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("log_level is now debug") {
        assert!(Instant::now() < deadline, "no reload logged:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Per-connection events are logged at debug level now.
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/nope", "");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("refusing upgrade") {
        assert!(
            Instant::now() < deadline,
            "debug lines appear after the reload:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A broken config on SIGHUP keeps the running one.
    std::fs::write(&path, "{ broken").unwrap();
    s.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("keeping the running configuration") {
        assert!(Instant::now() < deadline, "{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(s.is_running());
    let mut ws = s.connect("/echo");
    ws.send(tungstenite::Message::text("still serving"))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        tungstenite::Message::text("still serving")
    );
}
