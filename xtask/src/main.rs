//! `cargo xtask setup|demo|test|bench|package|fuzz`: the project's automation.
//!
//! * `setup` installs what the machine lacks to build and test (system
//!   packages through apt, dnf or pacman; cargo-fuzz and cargo-deny through
//!   cargo install) and checks NASM, without which openh264 silently loses
//!   its assembly.
//! * `demo` runs setup, builds release and runs `nephele demo`.
//! * `test` runs setup, then formatting, lint and dependency-policy checks,
//!   the Windows cross-build, every test, the `.deb` installed into a
//!   scratch root, and the protocol's fuzz targets for 10 s each.
//! * `package` builds a `.deb` of the client (see `package.rs`).
//! * `fuzz [SECS]` runs every fuzz target for SECS seconds (default 60).
//! * `bench` runs setup (plus the anchors' tools) and prints one JSON object
//!   per line, each measurement beside its anchor from the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod layout;
mod package;

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
            bench(rest)
        }
        "package" => {
            setup(&Extras::default())?;
            let deb = package::package(rest)?;
            if rest.iter().any(|a| a == "--check") {
                package::verify(&deb)?;
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
            fuzz(FUZZ_TARGETS, secs)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|demo [ARGS…]|test [CARGO TEST ARGS…]|bench [GROUP…]|layout|package [--debug] [--check] [--out DIR]|fuzz [SECS]>"
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

#[derive(Debug, Default)]
struct Extras {
    /// Tools the benchmarks' anchors need (ffmpeg).
    bench: bool,
}

/// A system requirement: a command or file that proves it is present, and
/// the package providing it per package manager.
struct Need {
    what: &'static str,
    present: fn() -> bool,
    apt: &'static str,
    dnf: &'static str,
    pacman: &'static str,
}

fn has_cmd(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn has_pkg_config(lib: &str) -> bool {
    Command::new("pkg-config")
        .args(["--exists", lib])
        .status()
        .is_ok_and(|s| s.success())
}

fn has_lib(file: &str) -> bool {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/lib/aarch64-linux-gnu",
    ]
    .iter()
    .any(|d| Path::new(d).join(file).exists())
}

fn needs(extras: &Extras) -> Vec<Need> {
    let mut v = vec![
        Need {
            what: "pkg-config",
            present: || has_cmd("pkg-config"),
            apt: "pkg-config",
            dnf: "pkgconf-pkg-config",
            pacman: "pkgconf",
        },
        Need {
            what: "C/C++ compiler",
            present: || has_cmd("c++"),
            apt: "g++",
            dnf: "gcc-c++",
            pacman: "gcc",
        },
        Need {
            what: "NASM (openh264's x86 assembly)",
            present: || has_cmd("nasm"),
            apt: "nasm",
            dnf: "nasm",
            pacman: "nasm",
        },
        Need {
            what: "ALSA headers",
            present: || has_pkg_config("alsa"),
            apt: "libasound2-dev",
            dnf: "alsa-lib-devel",
            pacman: "alsa-lib",
        },
        Need {
            what: "CMake (builds the bundled libopus)",
            present: || has_cmd("cmake"),
            apt: "cmake",
            dnf: "cmake",
            pacman: "cmake",
        },
        Need {
            what: "PulseAudio server and tools (sound tests)",
            present: || has_cmd("pulseaudio") && has_cmd("pactl") && has_cmd("parecord"),
            apt: "pulseaudio pulseaudio-utils",
            dnf: "pulseaudio pulseaudio-utils",
            pacman: "pulseaudio",
        },
        Need {
            what: "ALSA's PulseAudio plugin (cpal's ALSA output reaches the sound server)",
            present: || has_lib("alsa-lib/libasound_module_pcm_pulse.so"),
            apt: "libasound2-plugins",
            dnf: "alsa-plugins-pulseaudio",
            pacman: "alsa-plugins",
        },
        Need {
            what: "PulseAudio client headers (the host records a real desktop's sound)",
            present: || has_pkg_config("libpulse-simple"),
            apt: "libpulse-dev",
            dnf: "pulseaudio-libs-devel",
            pacman: "libpulse",
        },
        Need {
            what: "udev headers",
            present: || has_pkg_config("libudev"),
            apt: "libudev-dev",
            dnf: "systemd-devel",
            pacman: "systemd-libs",
        },
        Need {
            what: "Xvfb",
            present: || has_cmd("Xvfb"),
            apt: "xvfb",
            dnf: "xorg-x11-server-Xvfb",
            pacman: "xorg-server-xvfb",
        },
        Need {
            what: "xdotool",
            present: || has_cmd("xdotool"),
            apt: "xdotool",
            dnf: "xdotool",
            pacman: "xdotool",
        },
        Need {
            what: "xwd and xlogo (window screenshots, a second window for focus tests)",
            present: || has_cmd("xwd") && has_cmd("xlogo"),
            apt: "x11-apps",
            dnf: "xwd",
            pacman: "xorg-xwd",
        },
        Need {
            what: "dpkg-deb, rsvg-convert, desktop-file-validate and appstreamcli (the .deb and its checks)",
            present: || {
                has_cmd("dpkg-deb")
                    && has_cmd("rsvg-convert")
                    && has_cmd("desktop-file-validate")
                    && has_cmd("appstreamcli")
            },
            apt: "dpkg librsvg2-bin desktop-file-utils appstream",
            dnf: "dpkg librsvg2-tools desktop-file-utils appstream",
            pacman: "dpkg librsvg desktop-file-utils appstream",
        },
        Need {
            what: "xclip (the clipboard test's other program)",
            present: || has_cmd("xclip"),
            apt: "xclip",
            dnf: "xclip",
            pacman: "xclip",
        },
        Need {
            what: "xprintidle (the screen-saver test reads the X server's idle time)",
            present: || has_cmd("xprintidle"),
            apt: "xprintidle",
            dnf: "xprintidle",
            pacman: "xprintidle",
        },
        Need {
            what: "xrandr (the X11 desktop test changes the screen's size)",
            present: || has_cmd("xrandr"),
            apt: "x11-xserver-utils",
            dnf: "xrandr",
            pacman: "xorg-xrandr",
        },
        Need {
            what: "xterm (the real program the X11 desktop tests type into)",
            present: || has_cmd("xterm"),
            apt: "xterm",
            dnf: "xterm",
            pacman: "xterm",
        },
        Need {
            what: "openbox (a window manager for the fullscreen and kiosk tests)",
            present: || has_cmd("openbox"),
            apt: "openbox",
            dnf: "openbox",
            pacman: "openbox",
        },
        Need {
            what: "libxkbcommon-x11",
            present: || has_lib("libxkbcommon-x11.so.0"),
            apt: "libxkbcommon-x11-0",
            dnf: "libxkbcommon-x11",
            pacman: "libxkbcommon-x11",
        },
        Need {
            what: "libXcursor",
            present: || has_lib("libXcursor.so.1"),
            apt: "libxcursor1",
            dnf: "libXcursor",
            pacman: "libxcursor",
        },
        Need {
            what: "libXrandr",
            present: || has_lib("libXrandr.so.2"),
            apt: "libxrandr2",
            dnf: "libXrandr",
            pacman: "libxrandr",
        },
        Need {
            what: "libXi",
            present: || has_lib("libXi.so.6"),
            apt: "libxi6",
            dnf: "libXi",
            pacman: "libxi",
        },
        Need {
            what: "libX11-xcb",
            present: || has_lib("libX11-xcb.so.1"),
            apt: "libx11-xcb1",
            dnf: "libX11-xcb",
            pacman: "libx11",
        },
        Need {
            what: "FFmpeg's libavcodec (the client's default H.264 decoder)",
            present: || {
                (58..=62).any(|v| {
                    has_lib(&format!("libavcodec.so.{v}"))
                        && has_lib(&format!("libavutil.so.{}", v - 2))
                })
            },
            apt: "libavcodec-dev",
            dnf: "libavcodec-free-devel",
            pacman: "ffmpeg",
        },
        Need {
            what: "MinGW-w64 (Windows cross-build)",
            present: || has_cmd("x86_64-w64-mingw32-g++"),
            apt: "g++-mingw-w64-x86-64",
            dnf: "mingw64-gcc-c++",
            pacman: "mingw-w64-gcc",
        },
    ];
    if extras.bench {
        v.push(Need {
            what: "ffmpeg (benchmark anchor)",
            present: || has_cmd("ffmpeg"),
            apt: "ffmpeg",
            dnf: "ffmpeg-free",
            pacman: "ffmpeg",
        });
    }
    v
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn setup(extras: &Extras) -> Result<()> {
    if !cfg!(target_os = "linux") {
        eprintln!(
            "xtask setup: only Linux packages are automated; see README.md for other systems"
        );
        return Ok(());
    }
    let all = needs(extras);
    let missing: Vec<&Need> = all.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        check_nasm()?;
        ensure_cargo_tools()?;
        return ensure_windows_target();
    }
    let names: Vec<&str> = missing.iter().map(|n| n.what).collect();
    eprintln!("xtask setup: missing {}", names.join(", "));
    let (manager, pkgs): (&str, Vec<&str>) = if has_cmd("apt-get") {
        ("apt-get", missing.iter().map(|n| n.apt).collect())
    } else if has_cmd("dnf") {
        ("dnf", missing.iter().map(|n| n.dnf).collect())
    } else if has_cmd("pacman") {
        ("pacman", missing.iter().map(|n| n.pacman).collect())
    } else {
        bail!(
            "no supported package manager (apt-get, dnf, pacman); install by hand: {}",
            names.join(", ")
        );
    };
    // An entry may name several packages.
    let mut pkgs: Vec<&str> = pkgs.iter().flat_map(|p| p.split_whitespace()).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    let install: Vec<String> = match manager {
        "apt-get" => ["apt-get", "install", "-y", "--no-install-recommends"]
            .iter()
            .map(|s| s.to_string())
            .chain(pkgs.iter().map(|s| s.to_string()))
            .collect(),
        "dnf" => ["dnf", "install", "-y"]
            .iter()
            .map(|s| s.to_string())
            .chain(pkgs.iter().map(|s| s.to_string()))
            .collect(),
        _ => ["pacman", "-S", "--needed", "--noconfirm"]
            .iter()
            .map(|s| s.to_string())
            .chain(pkgs.iter().map(|s| s.to_string()))
            .collect(),
    };
    if !is_root() {
        bail!(
            "xtask setup: run this as root, then retry:\n  sudo {}{}",
            if manager == "apt-get" {
                "apt-get update && sudo "
            } else {
                ""
            },
            install.join(" ")
        );
    }
    if manager == "apt-get" {
        run(Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::io::stderr()))?;
    }
    // Package managers talk on stdout; keep stdout for results (bench's JSON lines).
    run(Command::new(&install[0])
        .args(&install[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::io::stderr()))?;
    let still: Vec<&str> = needs(extras)
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| n.what)
        .collect();
    if !still.is_empty() {
        bail!(
            "xtask setup: still missing after installing: {}",
            still.join(", ")
        );
    }
    check_nasm()?;
    ensure_cargo_tools()?;
    ensure_windows_target()
}

/// Cargo tools the project runs, installed by setup when missing:
/// (command, crate, extra `cargo install` arguments).
const CARGO_TOOLS: [(&str, &str, &[&str]); 2] = [
    ("cargo-fuzz", "cargo-fuzz", &[]),
    // Without default features: no advisory-database fetching over git,
    // which this project's checks do not use (see deny.toml).
    ("cargo-deny", "cargo-deny", &["--no-default-features"]),
];

/// Installs the cargo tools that are missing (a few minutes, once).
fn ensure_cargo_tools() -> Result<()> {
    for (cmd, krate, extra) in CARGO_TOOLS {
        if has_cmd(cmd) {
            continue;
        }
        eprintln!("xtask setup: installing {krate} (once; a few minutes)");
        run(cargo()
            .args(["install", "--locked", krate])
            .args(extra)
            .stdout(std::io::stderr()))?;
    }
    Ok(())
}

/// Every fuzz target in `fuzz/`, with the cargo feature it needs.
const FUZZ_TARGETS: &[(&str, Option<&str>)] = &[
    ("message", None),
    ("stream_frames", None),
    ("reassembly", None),
    ("input_receiver", None),
    ("probe", None),
    ("token", Some("service")),
    ("h264", Some("client")),
];

/// The fuzz targets `cargo xtask test` runs briefly: every decoder of the
/// wire protocol (the heavier token and H.264 targets build the service and
/// client under the sanitizer and run in `cargo xtask fuzz`).
const FUZZ_IN_TESTS: &[(&str, Option<&str>)] = &[
    ("message", None),
    ("stream_frames", None),
    ("reassembly", None),
    ("input_receiver", None),
    ("probe", None),
];

/// Runs each target for `secs` under libFuzzer with AddressSanitizer; a
/// crash, a leak or a timeout fails (cargo fuzz keeps the input under
/// fuzz/artifacts). The machine's stable toolchain is enough with
/// RUSTC_BOOTSTRAP (the sanitizer flags are unstable options).
fn fuzz(targets: &[(&str, Option<&str>)], secs: u32) -> Result<()> {
    for (target, feature) in targets {
        let corpus = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let mut cmd = cargo();
        cmd.args(["fuzz", "run", "--fuzz-dir", "fuzz"]);
        if let Some(f) = feature {
            cmd.args(["--features", f]);
        }
        cmd.arg(target)
            .arg(&corpus)
            .args([
                "--".to_string(),
                format!("-max_total_time={secs}"),
                "-timeout=10".into(),
                "-rss_limit_mb=2048".into(),
                "-print_final_stats=1".into(),
            ])
            .env("RUSTC_BOOTSTRAP", "1");
        run(&mut cmd).with_context(|| format!("fuzz target `{target}` found a failure"))?;
    }
    Ok(())
}

/// The Rust target the client cross-builds for.
const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";

/// Adds the Windows target to the Rust toolchain if it lacks it.
fn ensure_windows_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the Windows cross-build needs a rustup toolchain)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WINDOWS_TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup")
        .args(["target", "add", WINDOWS_TARGET])
        .stdout(std::io::stderr()))
}

/// NASM must actually run: openh264 falls back to plain C without it.
fn check_nasm() -> Result<()> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        return Ok(());
    }
    let out = Command::new("nasm")
        .arg("-v")
        .output()
        .context("running nasm -v")?;
    if !out.status.success() {
        bail!("nasm is installed but does not run; openh264 would build without its assembly");
    }
    Ok(())
}

/// Builds the client in release and returns the binary's path.
/// Builds the release client and, beside it, the reference service that
/// `nephele demo` starts.
fn build_release_client() -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nephele-client",
        "--bin",
        "nephele",
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
        "normal",
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
    run(cargo().args([
        "build",
        "--target",
        WINDOWS_TARGET,
        "-p",
        "nephele-client",
        "--bin",
        "nephele",
    ]))?;
    // The dependency policy: licences, bans and sources (deny.toml).
    run(cargo().args(["deny", "check", "bans", "licenses", "sources"]))?;
    // Every package with a binary has an integration test, so cargo builds
    // the binaries the CLI and window tests start.
    run(cargo().args(["test", "--workspace"]).args(args))?;
    if !args.is_empty() {
        // A filtered run is someone looking at particular tests.
        return Ok(());
    }
    // The .deb: built from the dev binary the tests just built, installed
    // into a scratch root and run.
    package::verify(&package::package(&["--debug".to_string()])?)?;
    // Every decoder of network input under the fuzzer, briefly.
    fuzz(FUZZ_IN_TESTS, 10)
}

/// The benchmarks. Each prints one JSON object per line: `bench`, `value`,
/// `unit`, the `anchor` it is measured against in the same run,
/// `anchor_value`, their `ratio`, and the brief's `target` where it has one.
/// A group of bench lines.
type BenchGroup = fn(&Path, &Path) -> Result<()>;

/// `cargo xtask bench [GROUP...]`: every group, or the ones named.
fn bench(only: &[String]) -> Result<()> {
    let groups: [(&str, BenchGroup); 9] = [
        ("decode", decode_benches),
        ("loopback", loopback_stream),
        ("loss", lossy_streams),
        ("blackout", blackout),
        ("saturated", saturated_link),
        ("continuity", continuity),
        ("sound", sound),
        ("pop", pop_choice),
        ("x11", x11_capture),
    ];
    if let Some(bad) = only.iter().find(|o| !groups.iter().any(|(n, _)| n == o)) {
        let names: Vec<&str> = groups.iter().map(|(n, _)| *n).collect();
        bail!(
            "no bench group `{bad}`; the groups are {}",
            names.join(", ")
        );
    }
    let nephele = build_release_client()?;
    run(cargo().args(["build", "--release", "-p", "nephele-service"]))?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    for (name, group) in groups {
        if only.is_empty() || only.iter().any(|o| o == name) {
            group(&nephele, &dir)?;
        }
    }
    Ok(())
}

/// A real X display's capture-to-send time per frame (capture through
/// MIT-SHM, conversion, encoding, the last datagram handed to the socket)
/// at 720p and 1080p, with `ico` spinning across the whole screen so every
/// frame changes. Anchor: ffmpeg grabbing the same display with x11grab
/// and encoding with libx264 (Baseline, ultrafast, zerolatency, one
/// thread), CPU time per frame — the well-known tool's cost for the same
/// job. A second line puts the whole server's CPU per frame sent (gateway
/// and directory included) beside the same anchor.
fn x11_capture(nephele: &Path, dir: &Path) -> Result<()> {
    for (label, w, h) in [("720p", 1280, 720), ("1080p", 1920, 1080)] {
        let size = format!("{w}x{h}");
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", &format!("{size}x24")])
            .args(["-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Xvfb (cargo xtask setup installs it)")?;
        let mut n = String::new();
        if let Some(out) = xvfb.stdout.as_mut() {
            std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut n)?;
        }
        let display = format!(":{}", n.trim());
        let result = x11_capture_at(nephele, dir, label, &display, &size);
        let _ = xvfb.kill();
        let _ = xvfb.wait();
        result?;
    }
    Ok(())
}

fn x11_capture_at(
    nephele: &Path,
    dir: &Path,
    label: &str,
    display: &str,
    size: &str,
) -> Result<()> {
    let mut ico = Command::new("ico")
        .args(["-geometry", &format!("{size}+0+0")])
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ico (x11-apps)")?;
    std::thread::sleep(Duration::from_millis(500));
    let frames = 480;
    let anchor = timed(
        Command::new("ffmpeg")
            .args(["-v", "error", "-f", "x11grab", "-framerate", "60"])
            .args(["-video_size", size, "-i", display])
            .args(["-frames:v", &frames.to_string(), "-pix_fmt", "yuv420p"])
            .args(["-c:v", "libx264"])
            .args(["-preset", "ultrafast", "-tune", "zerolatency"])
            .args(["-profile:v", "baseline", "-threads", "1", "-f", "null", "-"]),
    );
    let host_stats = dir.join(format!("x11-{label}-host.json"));
    let cpu_before = children_cpu_s();
    let mut server = Server::start(
        nephele,
        dir,
        &format!("x11-{label}-state"),
        &[
            "--desktop".into(),
            format!("x11:{display}"),
            "--stats-json".into(),
            host_stats.display().to_string(),
        ],
    )?;
    let client_stats = dir.join(format!("x11-{label}-client.json"));
    let client = run(server
        .client(nephele, "connect")
        .args(["--headless", "--no-audio", "--duration", "8", "--fps", "60"])
        .arg("--stats-json")
        .arg(&client_stats)
        .stdin(Stdio::null())
        .stderr(Stdio::null()));
    // Asked to stop, the server writes its counters.
    let _ = Command::new("kill")
        .args(["-INT", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    let server_cpu = children_cpu_s() - cpu_before;
    let _ = ico.kill();
    let _ = ico.wait();
    client?;
    let (anchor_cpu, _, _) = anchor?;
    let host: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&host_stats)?)?;
    let host = &host["hosts"][0];
    let seen: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&client_stats)?)?;
    let sent = f(host, "frames_sent");
    let anchor_ms = anchor_cpu * 1000.0 / f64::from(frames);
    let extra = serde_json::json!({
        "grab_ms_mean": host["grab_ms_mean"],
        "encode_ms_mean": host["encode_ms_mean"],
        "capture_to_send_ms_max": host["capture_to_send_ms_max"],
        "frames_sent": sent,
        "fps_presented": round3(f(&seen, "frames_presented") / f(&seen, "duration_s")),
    });
    emit(
        &format!("x11_capture_to_send_{label}"),
        (f(host, "capture_to_send_ms_mean"), "ms"),
        ("ffmpeg x11grab+libx264 ultrafast CPU per frame", anchor_ms),
        extra,
    );
    emit(
        &format!("x11_server_cpu_per_frame_{label}"),
        (server_cpu * 1000.0 / sent.max(1.0), "ms"),
        ("ffmpeg x11grab+libx264 ultrafast CPU per frame", anchor_ms),
        serde_json::json!({ "server_cpu_s": round3(server_cpu) }),
    );
    Ok(())
}

/// Prints one bench line.
fn emit(
    bench: &str,
    (value, unit): (f64, &str),
    (anchor, anchor_value): (&str, f64),
    extra: serde_json::Value,
) {
    let ratio = if anchor_value.abs() > 1e-9 {
        value / anchor_value
    } else {
        f64::NAN
    };
    let mut line = serde_json::json!({
        "bench": bench,
        "value": round3(value),
        "unit": unit,
        "anchor": anchor,
        "anchor_value": round3(anchor_value),
        "ratio": if ratio.is_finite() { serde_json::json!(round3(ratio)) } else { serde_json::Value::Null },
    });
    if let (Some(l), serde_json::Value::Object(e)) = (line.as_object_mut(), extra) {
        l.extend(e);
    }
    println!("{line}");
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `nephele demo --headless` with `args` and returns its stats JSON.
fn demo_stats(nephele: &Path, dir: &Path, name: &str, args: &[&str]) -> Result<serde_json::Value> {
    let stats = dir.join(format!("{name}.json"));
    run(Command::new(nephele)
        .args(["demo", "--headless"])
        .args(args)
        .arg("--stats-json")
        .arg(&stats)
        .stderr(Stdio::null()))?;
    Ok(serde_json::from_str(&std::fs::read_to_string(&stats)?)?)
}

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// Decode + conversion CPU per frame against ffmpeg on the same clips:
/// libx264 Baseline from ffmpeg's `testsrc2`, and the demo desktop's own
/// stream as the host encodes it, at 720p and 1080p. Five runs each,
/// alternating, medians. `nephele decode` uses its default decoder (FFmpeg's
/// libavcodec where installed); a second line gives the built-in openh264.
const DECODE_RUNS: usize = 5;

fn decode_benches(nephele: &Path, dir: &Path) -> Result<()> {
    for (label, w, h, kbps) in [("720p", 1280, 720, "4M"), ("1080p", 1920, 1080, "8M")] {
        let testsrc = dir.join(format!("testsrc2-{label}-baseline.264"));
        if !testsrc.exists() {
            // Moving synthetic content, Constrained Baseline, Annex B: what
            // the client decodes from hosts, and what both decoders read.
            run(Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
                .arg(format!("testsrc2=size={w}x{h}:rate=60"))
                .args(["-t", "5", "-c:v", "libx264", "-profile:v", "baseline"])
                .args(["-preset", "veryfast", "-b:v", kbps])
                .args(["-bsf:v", "h264_mp4toannexb", "-f", "h264"])
                .arg(&testsrc)
                .stdin(Stdio::null()))?;
        }
        let desktop = dir.join(format!("desktop-{label}.264"));
        if !desktop.exists() {
            let w = w.to_string();
            let h = h.to_string();
            let stats = dir.join("desktop-clip.json");
            run(Command::new(nephele)
                .args(["demo", "--headless", "--duration", "5", "--width", &w])
                .args(["--height", &h, "--stats-json"])
                .arg(&stats)
                .arg("--save-stream")
                .arg(&desktop)
                .stderr(Stdio::null()))?;
        }
        for (kind, clip) in [("testsrc2", &testsrc), ("desktop", &desktop)] {
            let (mut ours, mut builtin, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
            let (mut pictures, mut decoder) = (0.0, String::new());
            for _ in 0..DECODE_RUNS {
                let mut anchor = Command::new("ffmpeg");
                anchor
                    .args(["-nostdin", "-v", "error", "-threads", "1", "-i"])
                    .arg(clip)
                    .args(["-pix_fmt", "bgra", "-f", "null", "-"]);
                theirs.push(timed(&mut anchor)?.0);
                for (extra, into) in [(None, &mut ours), (Some("openh264"), &mut builtin)] {
                    let mut cmd = Command::new(nephele);
                    cmd.arg("decode").arg(clip).arg("--bench");
                    if let Some(d) = extra {
                        cmd.args(["--decoder", d]);
                    }
                    let (cpu, _, stdout) = timed(&mut cmd)?;
                    into.push(cpu);
                    let summary: serde_json::Value = stdout
                        .lines()
                        .find(|l| l.contains("\"summary\""))
                        .map(serde_json::from_str)
                        .transpose()?
                        .unwrap_or_default();
                    pictures = summary["pictures"].as_f64().unwrap_or(0.0);
                    if extra.is_none() {
                        decoder = summary["decoder"].as_str().unwrap_or("").to_string();
                    }
                }
            }
            let per = |s: f64| s * 1000.0 / pictures.max(1.0);
            let anchor = (
                "ffmpeg -threads 1 -i CLIP -pix_fmt bgra -f null -",
                per(median(theirs)),
            );
            emit(
                &format!("decode_convert_{label}_{kind}"),
                (per(median(ours)), "cpu_ms_per_frame"),
                anchor,
                serde_json::json!({"frames": pictures, "runs": DECODE_RUNS, "decoder": decoder, "target_ratio": 0.8}),
            );
            emit(
                &format!("decode_convert_{label}_{kind}_openh264"),
                (per(median(builtin)), "cpu_ms_per_frame"),
                anchor,
                serde_json::json!({"frames": pictures, "runs": DECODE_RUNS, "decoder": "openh264"}),
            );
        }
    }
    Ok(())
}

/// 1080p60 on loopback (`nephele-server all` with one PoP and no added
/// delay) with keys typed throughout: client-added latency against the
/// decode time it contains, and the input round trip against QUIC's own.
fn loopback_stream(nephele: &Path, dir: &Path) -> Result<()> {
    let keys = key_script(dir, 180)?;
    let server = Server::start(nephele, dir, "loopback-state", &[])?;
    let stats = dir.join("loopback-1080p.json");
    run(server
        .client(nephele, "connect")
        .args([
            "--headless",
            "--duration",
            "10",
            "--width",
            "1920",
            "--height",
            "1080",
        ])
        .args(["--input-script", &keys, "--stats-json"])
        .arg(&stats)
        .stdin(Stdio::null())
        .stderr(Stdio::null()))?;
    drop(server);
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    let decode = f(&s, "decode_ms_p50");
    for q in ["p50", "p99"] {
        emit(
            &format!("client_latency_1080p60_{q}"),
            (f(&s, &format!("client_latency_ms_{q}")), "ms"),
            ("decode_ms_p50 (same run)", decode),
            serde_json::json!({"target_ms": if q == "p50" { 4 } else { 8 }}),
        );
    }
    emit(
        "e2e_latency_1080p60_loopback_p50",
        (f(&s, "e2e_latency_ms_p50"), "ms"),
        (
            "client_latency_ms_p50 (same run)",
            f(&s, "client_latency_ms_p50"),
        ),
        serde_json::json!({"p99": f(&s, "e2e_latency_ms_p99")}),
    );
    emit(
        "input_rtt_loopback_streaming_p99",
        (f(&s, "input_rtt_ms_p99"), "ms"),
        ("QUIC smoothed rtt (same run)", f(&s, "rtt_ms")),
        serde_json::json!({"p50": f(&s, "input_rtt_ms_p50"), "sent": s["input_sent"], "acked": s["input_acked"]}),
    );
    // The brief's measure (input → host), through the clock map.
    emit(
        "input_one_way_loopback_streaming_p99",
        (f(&s, "input_one_way_ms_p99"), "ms"),
        ("QUIC smoothed rtt (same run)", f(&s, "rtt_ms")),
        serde_json::json!({"p50": f(&s, "input_one_way_ms_p50"), "clock_uncertainty_ms": s["clock_uncertainty_ms"], "target_ms": 2}),
    );
    Ok(())
}

/// A script pressing and releasing KeyA every 50 ms from half a second in.
fn key_script(dir: &Path, events: u32) -> Result<String> {
    let path = dir.join("keys.txt");
    let script: String = (0..events)
        .map(|i| {
            let action = if i % 2 == 0 { "down" } else { "up" };
            format!("{} key KeyA {action}\n", 500 + i * 50)
        })
        .collect();
    std::fs::write(&path, script)?;
    Ok(path.display().to_string())
}

/// 720p60 through a 40 ms path with 1 % and 5 % loss: frames presented and
/// the longest freeze, against the same path without loss.
fn lossy_streams(nephele: &Path, dir: &Path) -> Result<()> {
    let clean = demo_stats(
        nephele,
        dir,
        "clean-40ms",
        &["--duration", "10", "--network", "rtt=40ms"],
    )?;
    for (name, spec) in [("1pct", "rtt=40ms,loss=1%"), ("5pct", "rtt=40ms,loss=5%")] {
        let s = demo_stats(nephele, dir, name, &["--duration", "10", "--network", spec])?;
        let extra = serde_json::json!({
            "network": spec,
            "fec_recovered": s["fec_recovered"],
            "keyframes_requested": s["keyframes_requested"],
        });
        emit(
            &format!("frames_presented_720p60_loss_{name}_40ms"),
            (f(&s, "frames_presented_pct"), "percent"),
            ("same path without loss", f(&clean, "frames_presented_pct")),
            extra.clone(),
        );
        emit(
            &format!("max_freeze_720p60_loss_{name}_40ms"),
            (f(&s, "max_freeze_ms"), "ms"),
            ("same path without loss", f(&clean, "max_freeze_ms")),
            extra,
        );
    }
    Ok(())
}

/// A 500 ms blackout in both directions two seconds into a 720p60 session
/// on a 40 ms path: how long after the path returns a new frame is shown
/// (the longest freeze less the blackout), against the longest freeze
/// without one.
fn blackout(nephele: &Path, dir: &Path) -> Result<()> {
    // The relay's clock starts with the demo service; the session is up
    // about a second later.
    let spec = "rtt=40ms,blackout=3s+500ms";
    let s = demo_stats(
        nephele,
        dir,
        "blackout",
        &["--duration", "8", "--network", spec],
    )?;
    let clean = demo_stats(
        nephele,
        dir,
        "clean-40ms-b",
        &["--duration", "8", "--network", "rtt=40ms"],
    )?;
    emit(
        "recovery_after_500ms_blackout_720p60_40ms",
        (f(&s, "max_freeze_ms") - 500.0, "ms"),
        (
            "longest freeze without a blackout",
            f(&clean, "max_freeze_ms"),
        ),
        serde_json::json!({"network": spec, "keyframes_requested": s["keyframes_requested"]}),
    );
    Ok(())
}

/// Idle pauses and failures: the first picture after a key press from a
/// paused and from a suspended session (against the same session's capture
/// → presented p99), the process's CPU while paused against streaming, and
/// the picture gap when the session's gateway or host is killed (against
/// the longest freeze of a session without).
fn continuity(nephele: &Path, dir: &Path) -> Result<()> {
    let policy = "warn=2s,pause=3s,suspend=6s";
    for (from, key_ms, secs) in [("pause", 4500, "6"), ("suspend", 8000, "9.5")] {
        let script = dir.join(format!("resume-{from}.txt"));
        std::fs::write(
            &script,
            format!("{key_ms} key KeyA down\n{} key KeyA up\n", key_ms + 50),
        )?;
        let s = demo_stats(
            nephele,
            dir,
            &format!("resume-{from}"),
            &[
                "--no-audio",
                "--duration",
                secs,
                "--idle-policy",
                policy,
                "--input-script",
                script.to_str().unwrap_or_default(),
            ],
        )?;
        emit(
            &format!("resume_from_{from}_720p60_loopback"),
            (f(&s, "resume_ms_max"), "ms"),
            (
                "e2e latency p99 while streaming",
                f(&s, "e2e_latency_ms_p99"),
            ),
            serde_json::json!({"idle_policy": policy}),
        );
        if from == "suspend" {
            for phase in ["paused", "suspended"] {
                emit(
                    &format!("cpu_{phase}_720p60_demo"),
                    (f(&s, &format!("cpu_{phase}_pct")), "% of a core"),
                    ("streaming", f(&s, "cpu_streaming_pct")),
                    serde_json::json!({"process": "nephele demo (service and client)"}),
                );
            }
        }
    }
    let clean = demo_stats(
        nephele,
        dir,
        "clean-chaos",
        &["--no-audio", "--duration", "8"],
    )?;
    let s = demo_stats(
        nephele,
        dir,
        "chaos",
        &[
            "--no-audio",
            "--duration",
            "8",
            "--chaos",
            "kill-gateway@2s,kill-host@5s",
        ],
    )?;
    for (bench, key) in [
        (
            "gateway_killed_to_streaming_again_720p60",
            "reconnect_ms_max",
        ),
        ("host_killed_to_streaming_again_720p60", "takeover_ms_max"),
    ] {
        emit(
            bench,
            (f(&s, key), "ms"),
            ("longest freeze without a kill", f(&clean, "max_freeze_ms")),
            serde_json::json!({"reconnects": s["reconnects"], "takeovers": s["takeovers"]}),
        );
    }
    Ok(())
}

/// The motion panel at up to 20 Mbit/s through a 10 Mbit/s link with a
/// 40 ms round trip, keys typed throughout, against the same path without
/// the cap: what congestion control keeps of the delay and of input.
fn saturated_link(nephele: &Path, dir: &Path) -> Result<()> {
    let keys = key_script(dir, 180)?;
    let common = [
        "--duration",
        "10",
        "--motion",
        "--bitrate",
        "20000000",
        "--input-script",
        &keys,
    ];
    let free = demo_stats(
        nephele,
        dir,
        "motion-40ms",
        &[&common[..], &["--network", "rtt=40ms"]].concat(),
    )?;
    let spec = "rtt=40ms,bw=10mbit";
    let capped = demo_stats(
        nephele,
        dir,
        "motion-10mbit",
        &[&common[..], &["--network", spec]].concat(),
    )?;
    let mbit = |s: &serde_json::Value| f(s, "bytes_received") * 8.0 / f(s, "duration_s") / 1e6;
    let extra = serde_json::json!({
        "network": spec,
        "received_mbit_s": round3(mbit(&capped)),
        "uncapped_mbit_s": round3(mbit(&free)),
        "frames_presented_pct": capped["frames_presented_pct"],
        "max_freeze_ms": capped["max_freeze_ms"],
        "queue_delay_ms_max": capped["queue_delay_ms_max"],
    });
    for q in ["p50", "p99"] {
        emit(
            &format!("e2e_latency_720p60_10mbit_saturated_{q}"),
            (f(&capped, &format!("e2e_latency_ms_{q}")), "ms"),
            (
                "same path without the cap",
                f(&free, &format!("e2e_latency_ms_{q}")),
            ),
            extra.clone(),
        );
        emit(
            &format!("input_rtt_10mbit_saturated_{q}"),
            (f(&capped, &format!("input_rtt_ms_{q}")), "ms"),
            (
                "same path without the cap",
                f(&free, &format!("input_rtt_ms_{q}")),
            ),
            serde_json::json!({"network": spec}),
        );
    }
    // The brief's measure: input → host one way, at most the path's one-way
    // delay + 5 ms. The uplink is not the saturated direction, but its
    // packets share the gateway, the relay and the host with the video.
    let free_one_way = f(&free, "input_one_way_ms_p50");
    emit(
        "input_one_way_10mbit_saturated_p99",
        (f(&capped, "input_one_way_ms_p99"), "ms"),
        ("same path without the cap, p50", free_one_way),
        serde_json::json!({
            "network": spec,
            "p50": f(&capped, "input_one_way_ms_p50"),
            "clock_uncertainty_ms": capped["clock_uncertainty_ms"],
            "target_ms": round3(free_one_way + 5.0),
        }),
    );
    Ok(())
}

/// Choosing among 20 PoPs on loopback, the nearest (pop-13, 20 ms) 15 %
/// nearer than the next (23 ms). The anchor is the floor no prober with the
/// same plan can beat: its last round leaves at 80 ms and the nearest PoP's
/// reply needs one round trip (its measured minimum) after that.
fn pop_choice(nephele: &Path, dir: &Path) -> Result<()> {
    let pops: Vec<String> = (0..20u32)
        .flat_map(|i| {
            let ms = if i == 13 { 20 } else { 23 + (i * 37 % 20) * 3 };
            ["--pop".to_string(), format!("pop-{i:02}:{ms}")]
        })
        .collect();
    let server = Server::start(nephele, dir, "pop-state", &pops)?;
    for run in 0..5 {
        let out = server
            .client(nephele, "probe")
            .arg("--json")
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "nephele probe failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let chosen = v["chosen"].as_str().unwrap_or_default();
        let decision = v["decision_ms"].as_f64().unwrap_or(f64::NAN);
        // Candidates come best first.
        let nearest_min = v["pops"][0]["rtt_min_ms"].as_f64().unwrap_or(f64::NAN);
        emit(
            "pop_choice_20",
            (decision, "ms"),
            (
                "floor: last probe round + the nearest PoP's round trip",
                80.0 + nearest_min,
            ),
            serde_json::json!({"run": run, "chosen": chosen, "right": chosen == "pop-13", "target_ms": 500}),
        );
    }
    Ok(())
}

/// Sound through a private PulseAudio (a null sink as the default output):
/// the demo's 440 Hz tone on loopback and on a 40 ms path with 5 % loss.
/// Audio latency (host capture → leaving the device, through the clock map)
/// is set against the video's end-to-end latency of the same session: how
/// far sound and picture are apart. Concealment is set against the packets
/// the path lost, repaired or not.
fn sound(nephele: &Path, dir: &Path) -> Result<()> {
    let pulse = SoundServer::start(&dir.join("pulse"))?;
    let mut runs = Vec::new();
    for (name, spec) in [("loopback", ""), ("loss_5pct_40ms", "rtt=40ms,loss=5%")] {
        let stats = dir.join(format!("sound-{name}.json"));
        run(Command::new(nephele)
            .args([
                "demo",
                "--headless",
                "--duration",
                "10",
                "--tone",
                "440",
                "--no-mic",
            ])
            .args(["--network", spec, "--stats-json"])
            .arg(&stats)
            .envs(pulse.env())
            .stderr(Stdio::null()))?;
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        for q in ["p50", "p99"] {
            emit(
                &format!("audio_latency_{name}_{q}"),
                (f(&s, &format!("audio_latency_ms_{q}")), "ms"),
                (
                    "video e2e latency, same session",
                    f(&s, &format!("e2e_latency_ms_{q}")),
                ),
                serde_json::json!({"network": spec, "buffer_ms": s["audio_buffer_ms"], "jitter_ms": s["audio_jitter_ms"], "device": s["audio_device"]}),
            );
        }
        runs.push(s);
    }
    let s = &runs[1];
    let packets = f(s, "audio_packets");
    let (repaired, concealed) = (f(s, "audio_repaired"), f(s, "audio_concealed"));
    emit(
        "audio_concealed_loss_5pct_40ms",
        (100.0 * concealed / packets.max(1.0), "percent"),
        (
            "packets lost on the path (repaired + concealed)",
            100.0 * (repaired + concealed) / packets.max(1.0),
        ),
        serde_json::json!({"packets": packets, "repaired": repaired, "concealed": concealed, "underruns": s["audio_underruns"]}),
    );
    Ok(())
}

/// A private PulseAudio server whose default output is a null sink;
/// stopped when dropped.
struct SoundServer {
    child: std::process::Child,
    dir: PathBuf,
}

impl SoundServer {
    fn start(dir: &Path) -> Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("run"))?;
        let script = dir.join("default.pa");
        std::fs::write(
            &script,
            "load-module module-native-protocol-unix\n\
             load-module module-null-sink sink_name=speaker rate=48000 channels=2\n\
             set-default-sink speaker\n",
        )?;
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "-F",
            ])
            .arg(&script)
            .envs(Self::env_of(dir))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pulseaudio (cargo xtask setup installs it)")?;
        let server = Self {
            child,
            dir: dir.to_path_buf(),
        };
        let until = Instant::now() + Duration::from_secs(10);
        while !Command::new("pactl")
            .arg("info")
            .envs(server.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            if Instant::now() > until {
                bail!("pulseaudio did not come up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn env_of(dir: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
        let run = dir.join("run");
        vec![
            ("XDG_RUNTIME_DIR", run.clone().into()),
            ("PULSE_RUNTIME_PATH", run.clone().into()),
            (
                "PULSE_SERVER",
                format!("unix:{}", run.join("native").display()).into(),
            ),
            ("HOME", dir.into()),
        ]
    }

    fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        Self::env_of(&self.dir)
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nephele-server all` on loopback with a `bench` account; stopped when dropped.
struct Server {
    child: std::process::Child,
    url: String,
    state: PathBuf,
}

impl Server {
    /// Starts it with these extra arguments (no `--pop`: one PoP without delay).
    fn start(nephele: &Path, dir: &Path, name: &str, args: &[String]) -> Result<Self> {
        let state = dir.join(name);
        let _ = std::fs::remove_dir_all(&state);
        let mut cmd = Command::new(nephele.with_file_name("nephele-server"));
        cmd.args(["all", "--listen", "127.0.0.1:0"])
            .args(["--directory-listen", "127.0.0.1:0"])
            .args(["--demo-user", "bench:bench", "--state-dir"])
            .arg(&state)
            .args(args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nephele-server all")?;
        let mut url = String::new();
        if let Some(out) = child.stdout.as_mut() {
            std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut url)?;
        }
        let url = url.trim().to_string();
        let server = Self { child, url, state };
        if server.url.is_empty() {
            bail!("nephele-server all printed no directory URL");
        }
        Ok(server)
    }

    /// `nephele SUBCOMMAND` signed in to this server as `bench`.
    fn client(&self, nephele: &Path, subcommand: &str) -> Command {
        let mut cmd = Command::new(nephele);
        cmd.args([
            subcommand,
            "--directory",
            &self.url,
            "--user",
            "bench",
            "--ca",
        ])
        .arg(self.state.join("ca.pem"))
        .env("NEPHELE_PASSWORD", "bench");
        cmd
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion; returns its CPU seconds, wall seconds and stdout.
fn timed(cmd: &mut Command) -> Result<(f64, f64, String)> {
    let cpu_before = children_cpu_s();
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((
        children_cpu_s() - cpu_before,
        wall,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// CPU seconds (user + system) used by waited-for children so far.
fn children_cpu_s() -> f64 {
    // /proc/self/stat fields 16 and 17: cutime and cstime in clock ticks.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name, field 3 (state) is index 0; cutime is field 16.
    (ticks(13) + ticks(14)) / 100.0
}
