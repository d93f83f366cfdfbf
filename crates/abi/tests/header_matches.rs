//! Compiles `include/ringsocket.h` (and the frozen v1 header) with the system C compiler
//! and checks that they agree with the Rust mirror on every constant, every struct size
//! and every field offset — and that version 1's structs are prefixes of version 2's.

use ringsocket_abi::*;
use std::mem::{offset_of, size_of};
use std::process::Command;

/// One fact to compare: the C expression and the Rust value.
type Check = (String, usize);

macro_rules! consts {
    ($($name:ident),* $(,)?) => {
        vec![$((format!("(long long)({})", stringify!($name)), $name as i64 as usize)),*]
    };
}

/// The offset of each listed field.
macro_rules! offsets {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        vec![$((
            format!("offsetof(struct {}, {})", stringify!($ty), stringify!($field)),
            offset_of!($ty, $field),
        )),*]
    };
}

/// The size of a struct and the offset of each listed field.
macro_rules! layout {
    ($ty:ident { $($field:ident),* $(,)? }) => {{
        let mut v: Vec<Check> = vec![(
            format!("sizeof(struct {})", stringify!($ty)),
            size_of::<$ty>(),
        )];
        v.extend(offsets!($ty { $($field),* }));
        v
    }};
}

/// Compiles a program printing each C expression under `include`, runs it, and returns
/// the values.
fn evaluate(include: &str, checks: &[Check]) -> Vec<usize> {
    let dir = std::env::temp_dir().join(format!("rs-abi-{}-{}", std::process::id(), include.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"ringsocket.h\"\nint main(void) {\n",
    );
    for (expr, _) in checks {
        src.push_str(&format!("    printf(\"%lld\\n\", (long long)({expr}));\n"));
    }
    src.push_str("    return 0;\n}\n");
    let file = dir.join("layout.c");
    std::fs::write(&file, src).unwrap();
    let exe = dir.join("layout");
    let status = Command::new("cc")
        .args([
            "-std=c17",
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-I",
            include,
            "-o",
        ])
        .arg(&exe)
        .arg(&file)
        .status()
        .expect("a C compiler (cc) is installed");
    assert!(
        status.success(),
        "the header under {include} compiles cleanly"
    );
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    out.lines()
        .map(|l| l.parse::<i64>().unwrap() as usize)
        .collect()
}

fn compare(include: &str, checks: &[Check]) {
    let actual = evaluate(include, checks);
    assert_eq!(actual.len(), checks.len());
    for ((expr, rust), c) in checks.iter().zip(&actual) {
        assert_eq!(c, rust, "{expr}: C says {c}, Rust says {rust}");
    }
}

const V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
const V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include/ringsocket-v1");

#[test]
fn c_header_and_rust_mirror_agree() {
    let mut checks = consts![
        RS_ABI_MAGIC,
        RS_ABI_VERSION,
        RS_MAX_CONTROL_REPLY,
        RS_BIN,
        RS_UTF8,
        RS_TO_CUR,
        RS_TO_SINGLE,
        RS_TO_MULTI,
        RS_TO_EVERY,
        RS_TO_EVERY_EXCEPT,
        RS_OK,
        RS_ERR_CONTEXT,
        RS_ERR_TOO_BIG,
        RS_ERR_INVALID,
        RS_ERR_FULL,
        RS_ERR_CLOSED,
        RS_ERR_NOT_FOUND,
        RS_LOG_ERROR,
        RS_LOG_WARN,
        RS_LOG_INFO,
        RS_LOG_DEBUG,
        RS_TIMER_HOLD,
        RS_TIMER_MIN,
        RS_TIMER_INCR,
        RS_TIMER_MAX,
        RS_TIMER_NEVER,
        RS_ADDR_IPV4,
        RS_ADDR_IPV6,
        RS_MAX_TOPIC_LEN,
    ];
    checks.extend(layout!(rs_header {
        api,
        w_ptr,
        w_len,
        w_cap,
        app_state,
        cur_client,
        cur_kind,
        cur_endpoint_id,
        log_level,
        reserved
    }));
    checks.extend(layout!(rs_addr { family, port, ip }));
    checks.extend(layout!(rs_client_info {
        peer,
        endpoint_id,
        reserved
    }));
    checks.extend(layout!(rs_open_info {
        endpoint_id,
        url_path,
        url_path_len,
        subprotocol,
        subprotocol_len,
        target,
        target_len,
        query,
        query_len,
        head,
        head_len,
        peer,
        data
    }));
    checks.extend(layout!(rs_request {
        size,
        endpoint_id,
        is_upgrade,
        request_id,
        method,
        method_len,
        target,
        target_len,
        path,
        path_len,
        query,
        query_len,
        head,
        head_len,
        body,
        body_len,
        subprotocol,
        subprotocol_len,
        peer
    }));
    checks.extend(layout!(rs_conf {
        size,
        worker_c,
        app_c,
        max_ws_msg_size,
        event_queue_len,
        max_event_size
    }));
    checks.extend(layout!(rs_event_handle { post }));
    checks.extend(layout!(rs_host_api {
        size,
        send,
        close,
        set_timer,
        current_client,
        log,
        w_reserve,
        to,
        client_info,
        header,
        set_periodic,
        event_handle,
        conf,
        subscribe,
        unsubscribe,
        publish,
        to_topic,
        topic_count,
        accept,
        respond,
        client_data,
        control_reply
    }));
    checks.extend(layout!(rs_app_descriptor {
        magic,
        abi_version,
        size,
        reserved,
        name,
        init,
        open,
        read,
        close,
        timer,
        destroy,
        event,
        periodic,
        periodic_min_us,
        periodic_incr_us,
        periodic_max_us,
        upgrade,
        http,
        ping,
        control
    }));
    compare(V2, &checks);
}

/// Version 1's structs, as its frozen header lays them out, are exactly the prefixes of
/// version 2's that a v1 plugin reads (and the server reads of a v1 descriptor).
#[test]
fn version_1_structs_are_prefixes_of_version_2() {
    let mut checks: Vec<Check> = consts![
        RS_ABI_MAGIC,
        RS_BIN,
        RS_UTF8,
        RS_TO_CUR,
        RS_TO_SINGLE,
        RS_TO_MULTI,
        RS_TO_EVERY,
        RS_TO_EVERY_EXCEPT,
        RS_OK,
        RS_ERR_CONTEXT,
        RS_ERR_TOO_BIG,
        RS_ERR_INVALID,
        RS_LOG_ERROR,
        RS_LOG_WARN,
        RS_LOG_INFO,
        RS_LOG_DEBUG
    ];
    checks.push(("RS_ABI_VERSION".into(), 1));
    checks.push((
        "sizeof(struct rs_app_descriptor)".into(),
        V1_DESCRIPTOR_SIZE,
    ));
    checks.push((
        "sizeof(struct rs_host_api)".into(),
        offset_of!(rs_host_api, w_reserve),
    ));
    // A v1 open info ends at subprotocol_len (padded to 8).
    checks.push((
        "sizeof(struct rs_open_info)".into(),
        offset_of!(rs_open_info, target),
    ));
    checks.push((
        "sizeof(struct rs_header)".into(),
        offset_of!(rs_header, w_ptr),
    ));
    checks.extend(offsets!(rs_app_descriptor {
        name,
        init,
        open,
        read,
        close,
        timer,
        destroy
    }));
    checks.extend(offsets!(rs_host_api {
        send,
        close,
        set_timer,
        current_client,
        log
    }));
    checks.extend(offsets!(rs_open_info {
        endpoint_id,
        url_path,
        url_path_len,
        subprotocol,
        subprotocol_len
    }));
    compare(V1, &checks);
}
