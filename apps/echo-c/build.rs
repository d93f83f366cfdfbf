//! Compiles `echo.c` against the frozen ABI v1 header
//! (`crates/abi/include/ringsocket-v1/ringsocket.h`) into `libecho_c.so`, next to the
//! workspace's other plugins in `target/<profile>/`: the v1 plugin that proves the
//! server still loads and runs plugins built for ABI version 1.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let include = manifest.join("../../crates/abi/include/ringsocket-v1");
    let source = manifest.join("echo.c");
    println!("cargo:rerun-if-changed={}", source.display());
    println!(
        "cargo:rerun-if-changed={}",
        include.join("ringsocket.h").display()
    );
    // OUT_DIR is target/<profile>/build/echo-c-<hash>/out: the profile dir is 3 up.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is inside target/<profile>");
    let compiler = cc::Build::new().get_compiler();
    let status = Command::new(compiler.path())
        .args([
            "-std=c11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
        ])
        .arg("-I")
        .arg(&include)
        .arg("-o")
        .arg(profile_dir.join("libecho_c.so"))
        .arg(&source)
        .status()
        .expect("a C compiler runs");
    assert!(status.success(), "compiling echo.c failed");
}
