//! Start-up failures: configuration errors and refused plugins, each with a message
//! that names the file and what is wrong, and the right exit status.

use ringsocket_tests::*;
use serde_json::json;
use std::process::Command;

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stderr_of(args: &[&str]) -> (i32, String) {
    let out = run_binary(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn config_errors_name_the_file_and_key_and_exit_2() {
    let dir = TempDir::new();
    let port = 0; // the kernel picks one (these servers never get to serve)
    let cases = [
        (
            format!(
                r#"{{"ports":[{{"port_number":{port},"is_unencrypted":true}}],"apps":[{{"name":"e","app_path":"x.so","endpoints":[{{"url":"ws://h:{port}/a"}},{{"url":"http://h/b"}}]}}]}}"#
            ),
            "apps[0].endpoints[1].url",
        ),
        (
            format!(r#"{{"ports":[{{"port_number":{port},"is_unencrypted":"yes"}}],"apps":[]}}"#),
            "ports[0].is_unencrypted",
        ),
        (
            format!(r#"{{"ports":[{{"port_number":{port}}}],"apps":[],"typo_key":1}}"#),
            "typo_key",
        ),
        (
            format!(
                r#"{{"ports":[{{"port_number":{port},"is_unencrypted":true}}],"apps":[{{"name":"e","app_path":"x.so","endpoints":[{{"url":"ws://h:{port}/a"}}]}}],"max_ws_msg_size":3}}"#
            ),
            "max_ws_msg_size: 3 is outside",
        ),
        ("{ not json".to_string(), "key must be a string"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = write(&dir, &format!("bad{i}.json"), text);
        for args in [
            vec!["--foreground", "--config", path.as_str()],
            vec!["--check-config", path.as_str()],
        ] {
            let (code, err) = stderr_of(&args);
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(err.contains(&path), "names the file: {err}");
            assert!(err.contains(key), "names {key}: {err}");
        }
    }
    let (code, err) = stderr_of(&["--config", "/nonexistent/ringsocket.json"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/ringsocket.json") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn check_config_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../ringsocket.json");
    let out = run_binary(&["--check-config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

/// Compiles a C "plugin" from `source` into `dir` and returns its path.
fn c_plugin(dir: &TempDir, name: &str, source: &str) -> String {
    let c = dir.0.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let so = dir.0.join(format!("lib{name}.so"));
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/abi/include");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-I", include, "-o"])
        .arg(&so)
        .arg(&c)
        .status()
        .unwrap();
    assert!(status.success());
    so.display().to_string()
}

fn start_fails_with(dir: &TempDir, plugin_path: &str, expected: &[&str]) {
    let port = 0; // the kernel picks one (these servers never get to serve)
    let config = json!({
        "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [{"name": "bad", "app_path": plugin_path, "endpoints": [{"url": format!("ws://h:{port}/x")}]}],
    });
    let path = write(dir, "plugin.json", &config.to_string());
    let (code, err) = stderr_of(&["--foreground", "--config", &path]);
    assert_eq!(code, 1, "{err}");
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in: {err}");
    }
}

#[test]
fn plugins_built_for_another_abi_version_are_refused() {
    let dir = TempDir::new();
    let so = c_plugin(
        &dir,
        "v7",
        "#include <ringsocket.h>\nconst struct rs_app_descriptor ringsocket_plugin = {.magic = RS_ABI_MAGIC, .abi_version = 7, .size = sizeof(struct rs_app_descriptor)};\n",
    );
    start_fails_with(&dir, &so, &[&so, "ABI version 7", "versions 1 to 6"]);
    // A v5 descriptor must hold v5's fields (through `ping`).
    let short5 = c_plugin(
        &dir,
        "short5",
        "#include <ringsocket.h>\n#include <stddef.h>\nconst struct rs_app_descriptor ringsocket_plugin = {.magic = RS_ABI_MAGIC, .abi_version = 5, .size = offsetof(struct rs_app_descriptor, ping)};\n",
    );
    start_fails_with(&dir, &short5, &[&short5, "ABI version 5"]);
    // A v4 descriptor must hold v4's fields.
    let short4 = c_plugin(
        &dir,
        "short4",
        "#include <ringsocket.h>\n#include <stddef.h>\nconst struct rs_app_descriptor ringsocket_plugin = {.magic = RS_ABI_MAGIC, .abi_version = 4, .size = offsetof(struct rs_app_descriptor, upgrade)};\n",
    );
    start_fails_with(&dir, &short4, &[&short4, "ABI version 4"]);
    // A v1 descriptor that declares less than v1's layout is refused too.
    let short = c_plugin(
        &dir,
        "short",
        "#include <ringsocket.h>\nconst struct rs_app_descriptor ringsocket_plugin = {.magic = RS_ABI_MAGIC, .abi_version = 1, .size = 16};\n",
    );
    start_fails_with(&dir, &short, &[&short, "declares size 16", "ABI version 1"]);
}

#[test]
fn libraries_without_the_descriptor_are_refused() {
    let dir = TempDir::new();
    let so = c_plugin(&dir, "nosym", "int something_else = 1;\n");
    start_fails_with(
        &dir,
        &so,
        &[&so, "does not export the symbol `ringsocket_plugin`"],
    );
    let legacy = c_plugin(
        &dir,
        "legacy",
        "int ringsocket_app(void *args) { (void)args; return 0; }\n",
    );
    start_fails_with(&dir, &legacy, &[&legacy, "original C RingSocket"]);
    let garbage = c_plugin(
        &dir,
        "magic",
        "const unsigned ringsocket_plugin[16] = {7, 1};\n",
    );
    start_fails_with(&dir, &garbage, &[&garbage, "bad magic"]);
    start_fails_with(
        &dir,
        "/nonexistent/libx.so",
        &[
            "/nonexistent/libx.so",
            "cannot load plugin",
            "No such file or directory",
        ],
    );
}

#[test]
fn a_failing_init_refuses_to_start() {
    let dir = TempDir::new();
    let port = 0; // the kernel picks one (these servers never get to serve)
    let config = json!({
        "ports": [{"port_number": port, "is_unencrypted": true, "ip_addrs": ["127.0.0.1"]}],
        "apps": [{"name": "probe", "app_path": plugin("probe_app"), "settings": {"fail_init": true},
                  "endpoints": [{"url": format!("ws://h:{port}/p")}]}],
    });
    let path = write(&dir, "init.json", &config.to_string());
    let (code, err) = stderr_of(&["--foreground", "--config", &path]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("app 'probe'") && err.contains("init callback failed"),
        "{err}"
    );
    // The app's own error text reaches the log.
    assert!(
        err.contains("app probe: init failed: fail_init is set"),
        "{err}"
    );
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut s = Server::start(json!([app("echo", "echo", "/echo")]), json!({}));
    let mut stream = s.raw();
    raw_handshake(&mut stream, "/echo", "");
    send_frame(&mut stream, true, 1, b"x");
    assert_eq!(read_frame(&mut stream).2, b"x");
    s.signal(libc::SIGTERM);
    assert_eq!(read_close(&mut stream), Some(1001));
    send_frame(&mut stream, true, 8, &1001u16.to_be_bytes());
    assert!(reads_eof(&mut stream));
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", s.log());
}

/// A version-3 plugin (its descriptor ends before v4's upgrade and http callbacks) loads
/// and serves: the server reads no field past the size it declares.
#[test]
fn a_version_3_descriptor_without_the_v4_fields_still_serves() {
    let dir = TempDir::new();
    let so = c_plugin(
        &dir,
        "v3",
        "#include <ringsocket.h>\n#include <stddef.h>\n\
         static int on_read(rs_t *rs, void *s, uint64_t c, uint32_t kind, const uint8_t *d, size_t n) {\n\
             (void)s; (void)c; return rs_send(rs, RS_TO_CUR, NULL, 0, kind, d, n); }\n\
         const struct rs_app_descriptor ringsocket_plugin = {.magic = RS_ABI_MAGIC, .abi_version = 3,\n\
             .size = offsetof(struct rs_app_descriptor, upgrade), .read = on_read};\n",
    );
    let s = Server::start(
        json!([{"name": "v3", "app_path": so,
        "endpoints": [{"url": "ws://127.0.0.1:{port}/v3"}]}]),
        json!({}),
    );
    let mut ws = s.connect("/v3");
    ws.send(tungstenite::Message::text("still here")).unwrap();
    assert_eq!(text(&mut ws), "still here");
}
