//! Fails the build when openh264 would silently lose its x86 assembly.
//!
//! The openh264 crate compiles its C++ with or without NASM and does not
//! say which; without NASM decoding is about a third slower. Refuse to build
//! an x86 client without NASM rather than ship the slow decoder. (A build of
//! openh264 cached from before NASM was installed is caught at run time by
//! `video::openh264_has_simd`, which the tests and `nephele decode --bench`
//! check.)

use std::process::Command;

fn main() {
    windows_runtimes();
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=OPENH264_NO_ASM");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if !matches!(arch.as_str(), "x86_64" | "x86") || std::env::var_os("OPENH264_NO_ASM").is_some() {
        return;
    }
    let nasm = std::env::var("NASM").unwrap_or_else(|_| "nasm".into());
    let ok = Command::new(&nasm)
        .arg("-v")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        panic!(
            "NASM is not installed (tried `{nasm} -v`). openh264 needs it for its x86 assembly; \
             without it decoding is about a third slower. Run `cargo xtask setup` (or install the \
             `nasm` package), then `cargo clean -p openh264-sys2` and build again."
        );
    }
}

/// The Windows (MinGW) client links libstdc++ from its archive
/// (`.cargo/config.toml`), after everything else; what that archive needs
/// (libgcc's threads and TLS emulation, the C runtime) must follow it.
fn windows_runtimes() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "windows" && env == "gnu" {
        for lib in [
            "-Wl,--start-group",
            "-lgcc",
            "-lgcc_eh",
            "-lmingw32",
            "-lmingwex",
            "-lmsvcrt",
            "-lkernel32",
            "-Wl,--end-group",
        ] {
            println!("cargo:rustc-link-arg-bins={lib}");
        }
    }
}
