//! Compiles `include/ringsocket.h` with the system C compiler and checks that it agrees
//! with the Rust mirror on every constant, size and field offset.

use ringsocket_abi::*;
use std::mem::{offset_of, size_of};
use std::process::Command;

#[test]
fn c_header_and_rust_mirror_agree() {
    let dir = std::env::temp_dir().join(format!("rs-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <stddef.h>
#include "ringsocket.h"
#define P(x) printf(#x "=%llu\n", (unsigned long long)(x))
int main(void) {
    P(RS_ABI_MAGIC); P(RS_ABI_VERSION); P(RS_BIN); P(RS_UTF8);
    P(RS_TO_CUR); P(RS_TO_SINGLE); P(RS_TO_MULTI); P(RS_TO_EVERY); P(RS_TO_EVERY_EXCEPT);
    P(-RS_ERR_CONTEXT); P(-RS_ERR_TOO_BIG); P(-RS_ERR_INVALID);
    P(sizeof(struct rs_app_descriptor)); P(offsetof(struct rs_app_descriptor, name));
    P(offsetof(struct rs_app_descriptor, init)); P(offsetof(struct rs_app_descriptor, destroy));
    P(sizeof(struct rs_host_api)); P(offsetof(struct rs_host_api, send));
    P(offsetof(struct rs_host_api, log));
    P(sizeof(struct rs_open_info)); P(offsetof(struct rs_open_info, url_path));
    P(offsetof(struct rs_open_info, subprotocol_len));
    return 0;
}
"#,
    )
    .unwrap();
    let exe = dir.join("layout");
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-I", include, "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) is installed");
    assert!(status.success(), "the header compiles cleanly");
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    let expected = [
        RS_ABI_MAGIC as usize,
        RS_ABI_VERSION as usize,
        RS_BIN as usize,
        RS_UTF8 as usize,
        RS_TO_CUR as usize,
        RS_TO_SINGLE as usize,
        RS_TO_MULTI as usize,
        RS_TO_EVERY as usize,
        RS_TO_EVERY_EXCEPT as usize,
        -RS_ERR_CONTEXT as usize,
        -RS_ERR_TOO_BIG as usize,
        -RS_ERR_INVALID as usize,
        size_of::<rs_app_descriptor>(),
        offset_of!(rs_app_descriptor, name),
        offset_of!(rs_app_descriptor, init),
        offset_of!(rs_app_descriptor, destroy),
        size_of::<rs_host_api>(),
        offset_of!(rs_host_api, send),
        offset_of!(rs_host_api, log),
        size_of::<rs_open_info>(),
        offset_of!(rs_open_info, url_path),
        offset_of!(rs_open_info, subprotocol_len),
    ];
    let actual: Vec<usize> = out
        .lines()
        .map(|l| l.split('=').nth(1).unwrap().parse().unwrap())
        .collect();
    let names: Vec<&str> = out.lines().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(actual.len(), expected.len());
    for ((name, a), e) in names.iter().zip(&actual).zip(&expected) {
        assert_eq!(a, e, "{name}: C says {a}, Rust says {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
