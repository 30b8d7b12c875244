//! `cargo xtask setup|demo|test|bench`: the project's automation.
//!
//! * `setup` installs what the machine lacks to build and test (system
//!   packages through apt, dnf or pacman) and checks NASM, without which
//!   openh264 silently loses its assembly.
//! * `demo` runs setup, builds release and runs `nephele demo`.
//! * `test` runs setup, then formatting and lint checks and every test.
//! * `bench` runs setup (plus the anchors' tools) and prints one JSON object
//!   per line, each measurement beside its anchor from the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("help", &[]));
    match cmd {
        "setup" => setup(&Extras::default()),
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
            bench()
        }
        _ => {
            eprintln!("usage: cargo xtask <setup|demo [ARGS…]|test [CARGO TEST ARGS…]|bench>");
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
    let mut pkgs = pkgs;
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
    ensure_windows_target()
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
fn build_release_client() -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nephele-client",
        "--bin",
        "nephele",
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
    // Every package with a binary has an integration test, so cargo builds
    // the binaries the CLI and window tests start.
    run(cargo().args(["test", "--workspace"]).args(args))
}

fn bench() -> Result<()> {
    let nephele = build_release_client()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let clip = dir.join("testsrc2-1080p-baseline.264");
    if !clip.exists() {
        // Moving synthetic content, Constrained Baseline, Annex B: what the
        // client decodes from hosts, and something both decoders can read.
        run(Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1920x1080:rate=60",
                "-t",
                "5",
            ])
            .args([
                "-c:v",
                "libx264",
                "-profile:v",
                "baseline",
                "-preset",
                "veryfast",
                "-b:v",
                "8M",
                "-bsf:v",
                "h264_mp4toannexb",
                "-f",
                "h264",
            ])
            .arg(&clip)
            .stdin(Stdio::null()))?;
    }
    let frames = 300.0;

    // Anchor: ffmpeg, one thread, decoding to BGRA (what a window needs).
    let mut anchor = Command::new("ffmpeg");
    anchor
        .args(["-v", "error", "-threads", "1", "-i"])
        .arg(&clip)
        .args(["-f", "rawvideo", "-pix_fmt", "bgra", "-y", "/dev/null"]);
    let (ff_cpu, ff_wall, _) = timed(&mut anchor)?;
    println!(
        "{{\"bench\":\"decode_convert_1080p\",\"impl\":\"ffmpeg -threads 1 to bgra (anchor)\",\"frames\":{frames},\"cpu_ms_per_frame\":{:.3},\"wall_ms_per_frame\":{:.3}}}",
        ff_cpu * 1000.0 / frames,
        ff_wall * 1000.0 / frames
    );

    let mut ours = Command::new(&nephele);
    ours.arg("decode").arg(&clip).arg("--bench");
    let (ne_cpu, ne_wall, stdout) = timed(&mut ours)?;
    let summary = stdout
        .lines()
        .find(|l| l.contains("\"summary\""))
        .unwrap_or("{}");
    println!(
        "{{\"bench\":\"decode_convert_1080p\",\"impl\":\"nephele decode (openh264 + yuv BGRA)\",\"frames\":{frames},\"cpu_ms_per_frame\":{:.3},\"wall_ms_per_frame\":{:.3},\"detail\":{summary}}}",
        ne_cpu * 1000.0 / frames,
        ne_wall * 1000.0 / frames
    );
    println!(
        "{{\"bench\":\"decode_convert_1080p\",\"ratio_cpu_vs_anchor\":{:.3},\"target\":0.8}}",
        ne_cpu / ff_cpu.max(1e-9)
    );

    // Streaming at 1080p60 through the real path on loopback.
    let stats = dir.join("stream-1080p.json");
    run(Command::new(&nephele)
        .args([
            "demo",
            "--headless",
            "--duration",
            "10",
            "--width",
            "1920",
            "--height",
            "1080",
            "--stats-json",
        ])
        .arg(&stats)
        .stderr(Stdio::null()))?;
    let s = std::fs::read_to_string(&stats)?;
    let compact: String = s.split_whitespace().collect::<Vec<_>>().join("");
    println!(
        "{{\"bench\":\"stream_1080p60_loopback\",\"targets\":{{\"client_latency_ms_p50\":4,\"client_latency_ms_p99\":8}},\"stats\":{compact}}}"
    );
    lossy_streams(&nephele, &dir)?;
    pop_choice(&nephele, &dir)
}

/// The demo at 720p60 through a 40 ms path with 0, 1 and 5 % loss: frames
/// presented, longest freeze, frames rebuilt from parity. The clean path is
/// the anchor; the brief asks ≥ 99 % presented and no freeze over 100 ms at 5 %.
fn lossy_streams(nephele: &Path, dir: &Path) -> Result<()> {
    for (name, spec) in [
        ("anchor_clean_40ms", "rtt=40ms"),
        ("loss_1pct_40ms", "rtt=40ms,loss=1%"),
        ("loss_5pct_40ms", "rtt=40ms,loss=5%"),
    ] {
        let stats = dir.join(format!("{name}.json"));
        run(Command::new(nephele)
            .args(["demo", "--headless", "--duration", "10", "--network", spec])
            .arg("--stats-json")
            .arg(&stats)
            .stderr(Stdio::null()))?;
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        println!(
            "{{\"bench\":\"stream_720p60_{name}\",\"network\":\"{spec}\",\"frames_presented_pct\":{},\"max_freeze_ms\":{},\"fec_recovered\":{},\"keyframes_requested\":{},\"input_rtt_ms_p50\":{},\"targets\":{{\"frames_presented_pct\":99,\"max_freeze_ms\":100}}}}",
            v["frames_presented_pct"],
            v["max_freeze_ms"],
            v["fec_recovered"],
            v["keyframes_requested"],
            v["input_rtt_ms_p50"]
        );
    }
    Ok(())
}

/// Choosing among 20 PoPs on loopback, the nearest (pop-13, 20 ms) 15 %
/// nearer than the next (23 ms). The anchor is the floor no prober with the
/// same plan can beat: its last round leaves at 80 ms and the nearest PoP's
/// reply needs one round trip (its measured minimum) after that.
fn pop_choice(nephele: &Path, dir: &Path) -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nephele-service",
        "--bin",
        "nephele-server",
    ]))?;
    let state = dir.join("pop-state");
    let _ = std::fs::remove_dir_all(&state);
    let mut server = Command::new(nephele.with_file_name("nephele-server"));
    server
        .args([
            "all",
            "--listen",
            "127.0.0.1:0",
            "--directory-listen",
            "127.0.0.1:0",
        ])
        .args(["--demo-user", "bench:bench", "--state-dir"])
        .arg(&state);
    for i in 0..20u32 {
        let ms = if i == 13 { 20 } else { 23 + (i * 37 % 20) * 3 };
        server.arg("--pop").arg(format!("pop-{i:02}:{ms}"));
    }
    let mut child = server
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nephele-server all")?;
    let result = (|| -> Result<()> {
        let mut url = String::new();
        let stdout = child.stdout.as_mut().context("server stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut url)?;
        let url = url.trim();
        for run in 0..5 {
            let out = Command::new(nephele)
                .args([
                    "probe",
                    "--directory",
                    url,
                    "--user",
                    "bench",
                    "--json",
                    "--ca",
                ])
                .arg(state.join("ca.pem"))
                .env("NEPHELE_PASSWORD", "bench")
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
            println!(
                "{{\"bench\":\"pop_choice_20\",\"run\":{run},\"chosen\":\"{chosen}\",\"right\":{},\"decision_ms\":{decision:.1},\"anchor_floor_ms\":{:.1},\"target_ms\":500}}",
                chosen == "pop-13",
                80.0 + nearest_min
            );
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
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
