//! The arm64 Linux client (thin clients), cross-built with Debian's
//! aarch64 GCC and run under qemu-user: every conformance digest through
//! its decode path, and a session from sign-in and PoP probing to pictures
//! and acknowledged input against the x86-64 service on loopback.
//!
//! Ignored by a plain `cargo test`, which does not build for arm64;
//! `cargo xtask test` builds the client, then runs these with
//! `NEPHELE_ARM64_EXE` naming it. qemu finds the arm64 C libraries where
//! Debian's multiarch puts them (setup installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::foreign::{Foreign, assert_conformance, assert_session};
use common::need;

fn arm64_exe() -> PathBuf {
    need("qemu-aarch64");
    let exe = std::env::var_os("NEPHELE_ARM64_EXE").map(PathBuf::from);
    let exe = exe.expect(
        "NEPHELE_ARM64_EXE is not set: `cargo xtask test` builds the arm64 client and runs these",
    );
    assert!(exe.is_file(), "{} is not built", exe.display());
    exe
}

/// `qemu-aarch64 nephele`.
fn nephele() -> Command {
    let mut c = Command::new("qemu-aarch64");
    c.arg(arm64_exe()).stdin(Stdio::null());
    c
}

fn qemu() -> Foreign<'static> {
    Foreign {
        name: "arm64 under qemu",
        nephele: &nephele,
        path: &|p: &Path| p.display().to_string(),
    }
}

#[test]
#[ignore = "needs the arm64 build and qemu-user: cargo xtask test runs it"]
fn the_arm64_client_is_an_arm64_program_that_decodes_every_conformance_stream_under_qemu() {
    let elf = std::fs::read(arm64_exe()).unwrap();
    // e_machine, little-endian at offset 18: 183 is EM_AARCH64.
    assert_eq!(
        u16::from_le_bytes([elf[18], elf[19]]),
        183,
        "not an arm64 program"
    );
    let version = nephele().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("nephele {}", env!("CARGO_PKG_VERSION")),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );
    assert_conformance(&qemu());
}

#[test]
#[ignore = "needs the arm64 build and qemu-user: cargo xtask test runs it"]
fn the_arm64_client_signs_in_probes_and_streams_with_input_acked_under_qemu() {
    assert_session(&qemu(), 4, 30);
}
