//! Helpers shared by the client's tests: real X programs under Xvfb, the
//! reference service started beside the client, and ([`session`]) running
//! both from the command line, and ([`foreign`]) the client built for
//! another platform run through a translator.
#![allow(dead_code)] // each test binary uses its own part

pub mod foreign;
pub mod session;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed (and reaped) when dropped, even when a test fails.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails with the way out when `tool` is not on the PATH.
pub fn need(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is not installed: run `cargo xtask setup`");
}

/// Starts Xvfb with one screen of `size` (`WxHxDEPTH`) on a display it
/// picks itself (`-displayfd`: no race with other tests or servers for a
/// number) and waits until it is ready.
pub fn start_xvfb(size: &str) -> (Killed, String) {
    need("Xvfb");
    let mut child = Command::new("Xvfb")
        .args(["-displayfd", "1", "-screen", "0", size, "-nolisten", "tcp"])
        // Without -noreset the server resets when its last client leaves,
        // and a client connecting meanwhile is turned away.
        .arg("-noreset")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Xvfb");
    let display = display_number(&mut child).expect("Xvfb printed no display number");
    (Killed(child), display)
}

/// The display an X server started with `-displayfd 1` and a piped
/// standard output says it took, once it accepts connections.
fn display_number(server: &mut Child) -> Option<String> {
    let stdout = server.stdout.take()?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).ok()?;
    let n: u32 = line.trim().parse().ok()?;
    Some(format!(":{n}"))
}

/// Runs xdotool on `display`; its output, trimmed.
pub fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run xdotool");
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `xclip -selection clipboard ARGS` on `display`, feeding it
/// `input` (to copy) or returning what it printed (to paste).
pub fn xclip(display: &str, args: &[&str], input: Option<&str>) -> String {
    need("xclip");
    // xclip -i leaves a process serving the selection: it must not hold
    // our end of a pipe.
    let mut c = Command::new("xclip")
        .args(["-selection", "clipboard"])
        .args(args)
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::piped())
        .stdout(if input.is_some() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stderr(Stdio::null())
        .spawn()
        .expect("run xclip");
    if let Some(text) = input {
        std::io::Write::write_all(&mut c.stdin.take().unwrap(), text.as_bytes()).unwrap();
    }
    drop(c.stdin.take());
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A window screenshot from `xwd`, as (width, height, RGB pixels).
pub fn screenshot(display: &str, window: &str) -> (usize, usize, Vec<[u8; 3]>) {
    need("xwd");
    let out = Command::new("xwd")
        .args(["-silent", "-id", window])
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run xwd");
    assert!(
        out.status.success(),
        "xwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_xwd(&out.stdout)
}

/// The share of `px` showing the demo desktop's teal (its background):
/// near 0 on a black or empty screen, most of a window showing the demo.
pub fn teal_share(px: &[[u8; 3]]) -> f64 {
    let teal = px.iter().filter(|p| p[2] > 60 && p[0] < 60).count();
    teal as f64 / px.len().max(1) as f64
}

/// Parses an XWD dump of a 24/32-bit TrueColor window (what Xvfb gives).
fn parse_xwd(d: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    let be = |i: usize| {
        u32::from_be_bytes([d[i * 4], d[i * 4 + 1], d[i * 4 + 2], d[i * 4 + 3]]) as usize
    };
    let header_size = be(0);
    let (width, height) = (be(4), be(5));
    let byte_order = be(7);
    let bits_per_pixel = be(11);
    let bytes_per_line = be(12);
    let ncolors = be(19);
    assert_eq!(bits_per_pixel, 32, "expected a 32-bit XWD");
    let data = &d[header_size + ncolors * 12..];
    let mut px = Vec::with_capacity(width * height);
    for y in 0..height {
        for x in 0..width {
            let o = y * bytes_per_line + x * 4;
            let p = &data[o..o + 4];
            let v = if byte_order == 0 {
                u32::from_le_bytes([p[0], p[1], p[2], p[3]])
            } else {
                u32::from_be_bytes([p[0], p[1], p[2], p[3]])
            };
            px.push([(v >> 16) as u8, (v >> 8) as u8, v as u8]);
        }
    }
    (width, height, px)
}

/// What the host's input record shows typed, in order: each key pressed
/// by its code (`KeyH`), each character typed as text as `Text(h)`.
pub fn recorded_key_downs(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| match v["kind"].as_str() {
            Some("key") if v["action"] == "down" => {
                Some(v["code"].as_str().unwrap_or("?").to_string())
            }
            Some("text") => Some(format!("Text({})", v["text"].as_str().unwrap_or("?"))),
            _ => None,
        })
        .collect()
}

/// The `nephele-server` built beside the client.
pub fn server_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_nephele"))
        .with_file_name(format!("nephele-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.exists(),
        "{} not built: run the tests with `cargo xtask test` (or cargo test --workspace)",
        p.display()
    );
    p
}

/// Starts `nephele-server all` with these extra arguments and reads the
/// directory URL it prints on stdout.
pub fn start_all(dir: &Path, extra: &[&str]) -> (std::process::Child, String) {
    start_all_with(dir, extra, Command::new(server_binary()))
}

/// As [`start_all`], with `cmd` (the server binary, with whatever
/// environment the test gives it).
/// Addresses `extra` does not give are chosen by the system.
pub fn start_all_with(dir: &Path, extra: &[&str], mut cmd: Command) -> (Child, String) {
    cmd.arg("all");
    for flag in ["--listen", "--directory-listen"] {
        if !extra.contains(&flag) {
            cmd.args([flag, "127.0.0.1:0"]);
        }
    }
    let mut child = cmd
        .args(["--demo-user", "alice:wonderland", "--state-dir"])
        .arg(dir.join("state"))
        .args(extra)
        .stdout(Stdio::piped())
        // Kept for a failing test's reader.
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("nephele-server all printed the directory URL");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    (child, url)
}

/// Starts Xorg with its dummy video driver (what virtual desktops run),
/// at `mode` (`WxH`) in a framebuffer that may grow to 4096×2304, on a
/// display it picks itself; its config and log go in `dir`.
pub fn start_xorg_dummy(dir: &Path, mode: &str) -> (Killed, String) {
    need("Xorg");
    // Xorg reads a config file given by its path only for root.
    let uid = Command::new("id").arg("-u").output().expect("run id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "Xorg with the test's own config needs root, as CI runs the tests"
    );
    let conf = dir.join("xorg-dummy.conf");
    std::fs::write(
        &conf,
        format!(
            "Section \"ServerFlags\"\n  Option \"DontVTSwitch\" \"true\"\n  \
             Option \"AutoAddDevices\" \"false\"\n  Option \"AutoEnableDevices\" \"false\"\nEndSection\n\
             Section \"Device\"\n  Identifier \"dummy\"\n  Driver \"dummy\"\n  VideoRam 131072\nEndSection\n\
             Section \"Monitor\"\n  Identifier \"monitor\"\n  HorizSync 5.0 - 1000.0\n  VertRefresh 5.0 - 200.0\nEndSection\n\
             Section \"Screen\"\n  Identifier \"screen\"\n  Device \"dummy\"\n  Monitor \"monitor\"\n  DefaultDepth 24\n  \
             SubSection \"Display\"\n    Depth 24\n    Modes \"{mode}\"\n    Virtual 4096 2304\n  EndSubSection\nEndSection\n"
        ),
    )
    .unwrap();
    let mut child = Command::new("Xorg")
        .args(["-displayfd", "1", "-noreset", "-nolisten", "tcp"])
        .args(["-novtswitch", "-keeptty", "-config"])
        .arg(&conf)
        .arg("-logfile")
        .arg(dir.join("xorg.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Xorg");
    let display = display_number(&mut child).unwrap_or_else(|| {
        let log = std::fs::read_to_string(dir.join("xorg.log")).unwrap_or_default();
        panic!("Xorg printed no display number:\n{log}")
    });
    (Killed(child), display)
}
