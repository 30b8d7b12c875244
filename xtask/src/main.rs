//! `cargo xtask setup|demo|test|bench|package|fuzz`: the project's automation.
//!
//! * `setup` installs what the machine lacks to build and test (system
//!   packages through apt, dnf or pacman; cargo-fuzz and cargo-deny through
//!   cargo install) and checks NASM, without which openh264 silently loses
//!   its assembly.
//! * `demo` runs setup, builds release and runs `nephele demo`.
//! * `test` runs setup, then formatting, lint and dependency-policy checks,
//!   the Windows and arm64 Linux cross-builds, the macOS client's lint
//!   through Zig, every test, the Windows client under Wine and the arm64
//!   client under qemu, the packages installed into scratch roots, and the
//!   protocol's fuzz targets for 10 s each.
//! * `package` builds `.deb`s of the client and of the reference service,
//!   with their debug information apart, the client's `.rpm` and the
//!   Windows MSI; `--arch arm64` the arm64 client's `.deb` (see
//!   `package/`).
//! * `fuzz [SECS]` runs every fuzz target for SECS seconds (default 60).
//! * `bench` runs setup (plus the anchors' tools) and prints one JSON object
//!   per line, each measurement beside its anchor from the same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench;
mod fuzz;
mod layout;
mod package;
mod procs;
mod setup;
mod windows_dlls;

use setup::{Extras, MACOS_TARGETS, setup};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("help", &[]));
    match cmd {
        "setup" => setup(&Extras::default()),
        "layout" => {
            // Another checkout's shape when given one.
            let at = rest.first().map_or_else(root, PathBuf::from);
            let sizes = layout::check_sizes(&at);
            layout::check_loops(&at)?;
            sizes
        }
        "demo" => {
            setup(&Extras::default())?;
            demo(rest)
        }
        "test" => {
            setup(&Extras::default())?;
            test(rest)
        }
        "bench" => {
            setup(&Extras { bench: true })?;
            bench::bench(rest)
        }
        "package" => {
            setup(&Extras::default())?;
            let options = package::Options::parse(rest)?;
            if options.macos_app {
                package::macos_app(&options)?;
            } else if options.arm64 {
                let built = package::arm64(&options)?;
                if options.check {
                    package::verify_arm64(&built)?;
                }
            } else {
                let built = package::package(&options)?;
                if options.check {
                    package::verify(&built)?;
                }
            }
            Ok(())
        }
        "fuzz" => {
            setup(&Extras::default())?;
            let secs = match rest.first() {
                Some(s) => s
                    .parse()
                    .with_context(|| format!("`{s}` is no number of seconds per target"))?,
                None => 60,
            };
            fuzz::fuzz(fuzz::TARGETS, secs)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|demo [ARGS…]|test [CARGO TEST ARGS…]|bench [GROUP…]|layout|package [--debug] [--check] [--out DIR] [--arch arm64] [--macos-app [--client PATH]]|fuzz [SECS]>"
            );
            if cmd == "help" || cmd == "--help" {
                Ok(())
            } else {
                bail!("unknown xtask `{cmd}`")
            }
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Builds the release client and, beside it, the reference service that
/// `nephele demo` starts; the client's path. Two builds: one would unify
/// the service's features of shared crates into the client.
fn build_release_client() -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nephele-client",
        "--bin",
        "nephele",
    ]))?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nephele-service",
        "--bin",
        "nephele-server",
    ]))?;
    Ok(root().join("target/release/nephele"))
}

fn demo(args: &[String]) -> Result<()> {
    let mut cmd = Command::new(build_release_client()?);
    cmd.arg("demo").args(args);
    let has_display = std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
        || cfg!(not(target_os = "linux"));
    if !has_display && !args.iter().any(|a| a == "--headless") {
        eprintln!(
            "xtask demo: no display here; running headless for 10 seconds (pass --headless to choose yourself)"
        );
        cmd.args(["--headless", "--duration", "10"]);
    }
    run(&mut cmd)
}

fn test(args: &[String]) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    // The workspace's shape: no import loops, no oversized files, and a
    // client that links none of the service.
    layout::check_loops(&root())?;
    layout::check_sizes(&root())?;
    let tree = package::output(cargo().args([
        "tree",
        "-p",
        "nephele-client",
        "-e",
        "normal,features",
        "--prefix",
        "none",
    ]))?;
    layout::check_client_tree(&tree)?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The client must keep building for Windows: catches Linux-only
    // assumptions outside `platform/` as they are written.
    let windows_exe = package::windows_client(true)?;
    // ... and start on a clean Windows machine: no MinGW runtime DLLs.
    windows_dlls::check(&windows_exe)?;
    // arm64 Linux, for thin clients: cross-built, run under qemu below.
    let arm64_exe = package::arm64_client(true)?;
    // macOS: compiled and linted with its real implementations (Zig as the
    // C compiler); not linked, for want of Apple's SDK.
    for target in MACOS_TARGETS {
        run(Command::new("cargo-zigbuild").current_dir(root()).args([
            "clippy",
            "--target",
            target,
            "-p",
            "nephele-client",
            "--lib",
            "--bins",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // The dependency policy: licences, bans and sources (deny.toml).
    run(cargo().args(["deny", "check", "bans", "licenses", "sources"]))?;
    // Every package with a binary has an integration test, so cargo builds
    // the binaries the CLI and window tests start.
    run(cargo().args(["test", "--workspace"]).args(args))?;
    if !args.is_empty() {
        // A filtered run is someone looking at particular tests.
        return Ok(());
    }
    // The packages, from the dev binaries the tests just built.
    let options = package::Options::parse(&["--debug".to_string()])?;
    let built = package::package(&options)?;
    let arm64 = package::arm64(&options)?;
    // The Windows exe run under Wine against the Linux service, and its
    // MSI installed there (client/tests/windows.rs), then the arm64 client
    // under qemu against the x86-64 service (client/tests/arm64.rs); both
    // ignored by a plain cargo test.
    let foreign = |test: &str, env: &[(&str, &Path)]| {
        let mut cmd = cargo();
        cmd.args(["test", "-p", "nephele-client", "--test", test])
            .args(["--", "--ignored"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    foreign(
        "windows",
        &[
            ("NEPHELE_WINDOWS_EXE", &windows_exe),
            ("NEPHELE_WINDOWS_MSI", &built.msi),
        ],
    )?;
    foreign("arm64", &[("NEPHELE_ARM64_EXE", &arm64_exe)])?;
    // The .debs installed into scratch roots and run; the MSI read back.
    package::verify(&built)?;
    package::verify_arm64(&arm64)?;
    // Every decoder of network input under the fuzzer, briefly.
    fuzz::fuzz(fuzz::IN_TESTS, 10)
}
