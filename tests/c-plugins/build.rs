//! Compiles the workspace's C plugins into `target/<profile>/`, next to the Rust ones:
//!
//! | plugin | source | header |
//! |---|---|---|
//! | `libecho_c.so` | `apps/echo-c/echo.c` | the frozen ABI v1 header: the v1 plugin the tests keep |
//! | `librst_app_echo.so`, `librst_app_stress.so` | `tests/ringsocket1/` (RingSocket 1's own test apps, unmodified) | `ringsocket1/` (source compatibility), with RingSocket 1's flags |
//! | `librst_app_defects.so` | `tests/ringsocket1/rst_app_defects.c` | `ringsocket1/` |
//! | `libcounter_c.so` | `docs/examples/counter.c` (the guide's C example) | `ringsocket.h` (ABI v2) |
//! | `libbad_args_c.so` | `tests/c-plugins/bad_args.c` (every host call with wrong arguments) | `ringsocket.h` |
//! | `libgate_c.so` | `tests/c-plugins/gate.c` (upgrade decisions and HTTP answers in C) | `ringsocket.h` (ABI v4) |

use std::path::{Path, PathBuf};
use std::process::Command;

/// One plugin: its source, the include directory, the output name and the flags.
struct CPlugin {
    source: &'static str,
    include: &'static str,
    output: &'static str,
    flags: &'static [&'static str],
}

/// Our own sources: warnings are errors.
const STRICT: &[&str] = &[
    "-std=c11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-fvisibility=hidden",
];
/// RingSocket 1's flags, exactly (its apps are compiled unchanged).
const RINGSOCKET1: &[&str] = &["-Wall", "-Wextra", "-Wpedantic", "-std=c17", "-O3", "-fpic"];

const PLUGINS: &[CPlugin] = &[
    CPlugin {
        source: "apps/echo-c/echo.c",
        include: "crates/abi/include/ringsocket-v1",
        output: "libecho_c.so",
        flags: STRICT,
    },
    CPlugin {
        source: "tests/ringsocket1/rst_app_echo.c",
        include: "crates/abi/include/ringsocket1",
        output: "librst_app_echo.so",
        flags: RINGSOCKET1,
    },
    CPlugin {
        source: "tests/ringsocket1/rst_app_stress.c",
        include: "crates/abi/include/ringsocket1",
        output: "librst_app_stress.so",
        flags: RINGSOCKET1,
    },
    CPlugin {
        source: "tests/ringsocket1/rst_app_defects.c",
        include: "crates/abi/include/ringsocket1",
        output: "librst_app_defects.so",
        flags: RINGSOCKET1,
    },
    CPlugin {
        source: "docs/examples/counter.c",
        include: "crates/abi/include",
        output: "libcounter_c.so",
        flags: STRICT,
    },
    CPlugin {
        source: "tests/c-plugins/bad_args.c",
        include: "crates/abi/include",
        output: "libbad_args_c.so",
        flags: STRICT,
    },
    CPlugin {
        source: "tests/c-plugins/gate.c",
        include: "crates/abi/include",
        output: "libgate_c.so",
        flags: STRICT,
    },
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../..");
    // OUT_DIR is target/<profile>/build/c-plugins-<hash>/out: the profile dir is 3 up.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is inside target/<profile>");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("crates/abi/include").display()
    );
    let compiler = cc::Build::new().get_compiler();
    for plugin in PLUGINS {
        build(&root, profile_dir, compiler.path(), plugin);
    }
}

fn build(root: &Path, profile_dir: &Path, compiler: &Path, plugin: &CPlugin) {
    let source = root.join(plugin.source);
    println!("cargo:rerun-if-changed={}", source.display());
    let status = Command::new(compiler)
        .args(plugin.flags)
        .args(["-shared", "-fPIC"])
        .arg("-I")
        .arg(root.join(plugin.include))
        .arg("-o")
        .arg(profile_dir.join(plugin.output))
        .arg(&source)
        .status()
        .expect("a C compiler runs");
    assert!(status.success(), "compiling {} failed", plugin.source);
}
