//! A real X display behind the host: Xvfb with an xterm (and `ico` for a
//! moving picture), served by `nephele-server all --desktop x11:DISPLAY`,
//! reached by a headless `nephele connect` whose input script types into
//! the xterm. What the typed command did shows on the file system; the
//! X server's own key state shows what is held and what was released.
#![cfg(all(unix, not(target_os = "macos")))]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nephele_platform::x11desktop::X11Input;

mod common;
use common::session::Heard;
use common::{Killed, need, start_all, start_xvfb, xclip};

/// The tests stream and measure CPU: one at a time.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nephele-x11-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < end, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An X program on `display`, started in `dir`, once a window `xdotool
/// search` finds by `by` (`["--class", "xterm"]`) shows.
fn x_program(display: &str, dir: &Path, program: &str, by: [&str; 2], args: &[&str]) -> Killed {
    need(program);
    let log = dir.join(format!("{program}.log"));
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    wait_for(
        &format!("{program}'s window"),
        Duration::from_secs(20),
        || {
            if let Ok(Some(status)) = child.0.try_wait() {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("{program} on {display} ended ({status}): {said}");
            }
            Command::new("xdotool")
                .args(["search", "--onlyvisible", by[0], by[1]])
                .env("DISPLAY", display)
                .env_remove("WAYLAND_DISPLAY")
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
        },
    );
    child
}

/// An xterm filling most of the screen, running a plain bash in `dir`.
fn xterm(display: &str, dir: &Path) -> Killed {
    x_program(
        display,
        dir,
        "xterm",
        ["--class", "xterm"],
        &[
            "-geometry",
            "160x40+0+0",
            "-e",
            "bash",
            "--norc",
            "--noprofile",
        ],
    )
}

/// `nephele-server all` serving the X display `display`, with `extra`
/// arguments; killed when dropped. Its directory URL.
fn serve(dir: &Path, display: &str, extra: &[&str]) -> (Killed, String) {
    let desktop = format!("x11:{display}");
    let args: Vec<&str> = ["--desktop", desktop.as_str()]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let (server, url) = start_all(dir, &args);
    (Killed(server), url)
}

/// `nephele connect --headless` as alice for `secs` seconds at `fps`,
/// with `dir/script.txt` when there is one; stats to `dir/s.json`.
fn connect(url: &str, dir: &Path, secs: u32, fps: u32) -> Client {
    connect_with(url, dir, secs, fps, &["--headless"], None)
}

/// As [`connect`], with `extra` arguments (`--headless` among them, or a
/// window) and the client's own X display.
fn connect_with(
    url: &str,
    dir: &Path,
    secs: u32,
    fps: u32,
    extra: &[&str],
    local_display: Option<&str>,
) -> Client {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nephele"));
    cmd.args(["connect", "--directory", url, "--user", "alice"])
        .arg("--no-audio")
        .args(["--duration", &secs.to_string(), "--fps", &fps.to_string()])
        .env("NEPHELE_PASSWORD", "wonderland")
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_STATE_HOME", dir.join("log"))
        .env_remove("NEPHELE_CONFIG")
        .arg("--ca")
        .arg(dir.join("state/ca.pem"))
        .arg("--stats-json")
        .arg(dir.join("s.json"));
    if dir.join("script.txt").exists() {
        cmd.arg("--input-script").arg(dir.join("script.txt"));
    }
    cmd.args(extra);
    match local_display {
        Some(d) => cmd.env("DISPLAY", d),
        None => cmd.env_remove("DISPLAY"),
    };
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let heard = Heard::listen(child.stderr.take().unwrap());
    Client { child, heard }
}

/// A running `nephele connect` and what it has logged.
struct Client {
    child: Child,
    heard: Heard,
}

/// Waits for the client to end well; its stats.
fn finish(mut client: Client, dir: &Path) -> serde_json::Value {
    let status = client.child.wait().unwrap();
    assert!(
        status.success(),
        "the client failed: {status}\n{}",
        client.heard.all()
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join("s.json")).unwrap()).unwrap()
}

#[test]
fn a_headless_client_types_into_an_xterm_and_its_held_keys_are_released_when_it_leaves() {
    let _turn = turn();
    let dir = scratch("xterm");
    let (_xvfb, display) = start_xvfb("1280x720x24");
    let _xterm = xterm(&display, &dir);
    let rec = dir.join("input.jsonl");
    let (_server, url) = serve(&dir, &display, &["--record-input", rec.to_str().unwrap()]);
    let file = dir.join("out.txt");
    std::fs::write(
        dir.join("script.txt"),
        format!(
            "# the pointer over the xterm (focus follows it without a window manager)\n\
             100 move 300 200\n\
             300 type echo nephele-ok > {}\n\
             700 key Enter down\n\
             720 key Enter up\n\
             # held when the session ends\n\
             900 key ShiftLeft down\n",
            file.display()
        ),
    )
    .unwrap();
    let client = connect(&url, &dir, 4, 30);
    wait_for("the typed command's file", Duration::from_secs(15), || {
        std::fs::read_to_string(&file).is_ok_and(|t| t == "nephele-ok\n")
    });
    // Left Shift (X keycode 50) is down on the X server while the client
    // holds it...
    let probe = X11Input::open(&display).unwrap();
    wait_for(
        "Left Shift held on the X display",
        Duration::from_secs(10),
        || probe.server_keys_down().unwrap().contains(&50),
    );
    let stats = finish(client, &dir);
    // ...and released once it is gone.
    wait_for(
        "Left Shift released on the X display",
        Duration::from_secs(10),
        || probe.server_keys_down().unwrap().is_empty(),
    );
    let text = std::fs::read_to_string(&rec).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("\"released_on_disconnect\":true") && l.contains("\"ShiftLeft\"")),
        "the host's record shows no release of Left Shift:\n{text}"
    );
    assert_eq!(stats["input_sent"], stats["input_acked"], "{stats}");
    // The pointer came beside the video: xterm's shape, and where the
    // script put it.
    assert!(stats["cursor_shapes"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(
        (stats["cursor_x"].as_u64(), stats["cursor_y"].as_u64()),
        (Some(300), Some(200)),
        "{stats}"
    );
    assert!(stats["frames_presented"].as_u64().unwrap() >= 1, "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_still_x_desktop_sends_a_few_frames_and_a_moving_one_streams() {
    // What each costs the server, and the moving one's rate, are bench
    // lines (`cargo xtask bench x11`); here, what is sent.
    let _turn = turn();
    let dir = scratch("motion");
    let (_xvfb, display) = start_xvfb("1280x720x24");
    let _xterm = xterm(&display, &dir);
    let (_server, url) = serve(&dir, &display, &[]);
    let still = finish(connect(&url, &dir, 6, 60), &dir);
    let still_frames = still["frames_presented"].as_u64().unwrap();
    assert!(
        (1..=10).contains(&still_frames),
        "a still desktop sent {still_frames} frames in 6 s: {still}"
    );
    // ico spins a polyhedron as fast as the server draws it.
    let _ico = x_program(
        &display,
        &dir,
        "ico",
        ["--name", "^Ico"],
        &["-geometry", "600x600+340+60"],
    );
    let moving = finish(connect(&url, &dir, 6, 60), &dir);
    let moving_frames = moving["frames_presented"].as_u64().unwrap();
    assert!(
        moving_frames > 10 * still_frames.max(6),
        "a moving desktop sent {moving_frames} frames in 6 s, a still one {still_frames}: {moving}"
    );
    assert_eq!(moving["decode_errors"], 0, "{moving}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_stream_follows_the_x_screen_when_it_changes_size() {
    let _turn = turn();
    need("xrandr");
    let dir = scratch("resize");
    let (_xvfb, display) = start_xvfb("1280x720x24");
    let _xterm = xterm(&display, &dir);
    let (_server, url) = serve(&dir, &display, &[]);
    let client = connect(&url, &dir, 5, 30);
    wait_for("the first picture", Duration::from_secs(20), || {
        client.heard.said("first picture")
    });
    // Xvfb cannot shrink its one output, and says so, but the screen (the
    // root window) does change size, which is what a desktop's
    // resolution change looks like to a capturer.
    let _ = Command::new("xrandr")
        .args(["--fb", "1024x576"])
        .env("DISPLAY", &display)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let stats = finish(client, &dir);
    assert_eq!(
        (
            stats["picture_width"].as_u64(),
            stats["picture_height"].as_u64()
        ),
        (Some(1024), Some(576)),
        "{stats}"
    );
    assert!(
        stats["picture_size_changes"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(stats["decode_errors"], 0, "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client window on `local`, at first 1280×720, then sized to each of
/// `sizes`: the host's screen on `remote` takes each size in turn, and the
/// last is shown one to one.
fn follow_the_window(dir: &Path, remote: &str, local: &str, sizes: &[(u16, u16)]) {
    let (_server, url) = serve(dir, remote, &[]);
    let client = connect_with(&url, dir, 14, 30, &[], Some(local));
    let wid = common::xdotool(local, &["search", "--sync", "--name", "Nephele"]);
    let wid = wid.lines().next().unwrap().to_string();
    let probe = X11Input::open(remote).unwrap();
    // At connect: the desktop takes the window's size.
    wait_for(
        "the host's screen at the window's size",
        Duration::from_secs(20),
        || probe.screen_size().unwrap() == (1280, 720),
    );
    for &(w, h) in sizes {
        common::xdotool(local, &["windowsize", &wid, &w.to_string(), &h.to_string()]);
        wait_for(
            &format!("the host's screen at {w}×{h}"),
            Duration::from_secs(10),
            || probe.screen_size().unwrap() == (w, h),
        );
    }
    let stats = finish(client, dir);
    let size = |k: &str| {
        (
            stats[format!("{k}_width")].as_u64(),
            stats[format!("{k}_height")].as_u64(),
        )
    };
    let last = sizes
        .last()
        .map(|&(w, h)| (Some(u64::from(w)), Some(u64::from(h))));
    assert_eq!(Some(size("picture")), last, "{stats}");
    assert_eq!(Some(size("presented")), last, "one to one: {stats}");
    assert_eq!(stats["decode_errors"], 0, "{stats}");
}

#[test]
fn an_xvfb_screen_follows_the_client_window_within_its_size() {
    let _turn = turn();
    need("xdotool");
    let dir = scratch("follow");
    // Xvfb cannot make modes: the host sizes its screen within the one it
    // started with, its output switched off.
    let (_remote_x, remote) = start_xvfb("1920x1080x24");
    let _xterm = xterm(&remote, &dir);
    let (_local_x, local) = start_xvfb("1280x800x24");
    follow_the_window(&dir, &remote, &local, &[(1000, 700)]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_xorg_screen_follows_the_client_window_with_modes_made_for_it() {
    let _turn = turn();
    need("xdotool");
    let dir = scratch("follow-xorg");
    // Xorg's dummy driver, as virtual desktops run it, starts at 1024×768
    // and grows past it: each size is a mode the host makes.
    let (_remote_x, remote) = common::start_xorg_dummy(&dir, "1024x768");
    let (_local_x, local) = start_xvfb("1920x1200x24");
    follow_the_window(&dir, &remote, &local, &[(1000, 700), (1800, 1000)]);
    let modes = Command::new("xrandr")
        .env("DISPLAY", &remote)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert!(modes.contains("1800x1000"), "{modes}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `xrandr ARGS` on `display`, which must succeed.
fn xrandr(display: &str, args: &[&str]) {
    let out = Command::new("xrandr")
        .args(args)
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xrandr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A desktop of two monitors side by side (Xorg's dummy driver, a second
/// RandR monitor set up beside its output's): the client is told both, the
/// host keeps their layout when the window settles at another size, and a
/// window showing monitor 2 alone shows that monitor's pixels, with a
/// pointer that lands on it.
#[test]
fn a_two_monitor_desktop_shows_the_monitor_chosen_and_maps_the_pointer_onto_it() {
    let _turn = turn();
    need("xdotool");
    need("xrandr");
    let dir = scratch("monitors");
    let (_remote_x, remote) = common::start_xorg_dummy(&dir, "1600x900");
    xrandr(
        &remote,
        &["--setmonitor", "left", "800/211x900/238+0+0", "DUMMY0"],
    );
    xrandr(
        &remote,
        &["--setmonitor", "right", "800/211x900/238+800+0", "none"],
    );
    // Monitor 2 green (an xterm over all of it), monitor 1 the bare root.
    let _green = x_program(
        &remote,
        &dir,
        "xterm",
        ["--class", "xterm"],
        &["-geometry", "200x100+800+0", "-bg", "#00c000", "-bw", "0"],
    );
    let (_local_x, local) = start_xvfb("1280x800x24");
    let (_server, url) = serve(&dir, &remote, &[]);
    let client = connect_with(&url, &dir, 12, 30, &["--monitor", "2"], Some(&local));
    wait_for("the first picture", Duration::from_secs(20), || {
        client.heard.said("first picture")
    });
    let wid = common::xdotool(&local, &["search", "--sync", "--name", "Nephele"]);
    let wid = wid.lines().next().unwrap().to_string();
    // Monitor 2 (800×900) fits the 1280×720 window as 640×720, centred.
    let green = |px: &[[u8; 3]]| {
        px.iter()
            .filter(|p| p[1] > 150 && p[0] < 80 && p[2] < 80)
            .count() as f64
            / px.len().max(1) as f64
    };
    wait_for(
        "monitor 2 alone in the window",
        Duration::from_secs(15),
        || {
            let (w, h, px) = common::screenshot(&local, &wid);
            let inside: Vec<[u8; 3]> = (h / 4..h * 3 / 4)
                .flat_map(|y| px[y * w + w / 2 - 300..y * w + w / 2 + 300].to_vec())
                .collect();
            green(&inside) > 0.95
        },
    );
    // A pointer in the middle of the window: the middle of monitor 2.
    common::xdotool(&local, &["mousemove", "--window", &wid, "640", "360"]);
    wait_for(
        "the host's pointer on monitor 2",
        Duration::from_secs(10),
        || {
            let at = common::xdotool(&remote, &["getmouselocation"]);
            let v = |k: &str| {
                at.split_whitespace()
                    .find_map(|f| f.strip_prefix(k))
                    .and_then(|v| v.parse::<i32>().ok())
            };
            matches!((v("x:"), v("y:")), (Some(x), Some(y)) if (x - 1200).abs() <= 2 && (y - 450).abs() <= 2)
        },
    );
    // The window settled at 1280×720: the two monitors kept their layout.
    let probe = X11Input::open(&remote).unwrap();
    assert_eq!(probe.screen_size().unwrap(), (1600, 900));
    let stats = finish(client, &dir);
    assert_eq!(
        stats["monitors"],
        serde_json::json!([[0, 0, 800, 900], [800, 0, 800, 900]]),
        "{stats}"
    );
    assert_eq!(
        (
            stats["picture_width"].as_u64(),
            stats["presented_width"].as_u64()
        ),
        (Some(1600), Some(640)),
        "{stats}"
    );
    assert_eq!(stats["decode_errors"], 0, "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `setxkbmap LAYOUT` on `display`.
fn layout(display: &str, layout: &str) {
    need("setxkbmap");
    let status = Command::new("setxkbmap")
        .args(["-display", display, layout])
        .status()
        .unwrap();
    assert!(status.success(), "setxkbmap {layout}");
}

#[test]
fn umlauts_and_accents_typed_on_german_and_french_layouts_arrive_in_the_hosts_xterm() {
    let _turn = turn();
    need("xdotool");
    let dir = scratch("layouts");
    // The host's display keeps the US layout, which has none of them.
    let (_remote_x, remote) = start_xvfb("1280x720x24");
    let _xterm = x_program(
        &remote,
        &dir,
        "xterm",
        ["--class", "xterm"],
        &[
            "-u8",
            "-geometry",
            "160x40+0+0",
            "-e",
            "env",
            "LC_ALL=C.UTF-8",
        ]
        .into_iter()
        .chain(["bash", "--norc", "--noprofile"])
        .collect::<Vec<_>>(),
    );
    let (_local_x, local) = start_xvfb("1280x800x24");
    layout(&local, "de");
    let (_server, url) = serve(&dir, &remote, &[]);
    let client = connect_with(&url, &dir, 20, 30, &["--resolution", "fixed"], Some(&local));
    let wid = common::xdotool(&local, &["search", "--sync", "--name", "Nephele"]);
    let wid = wid.lines().next().unwrap().to_string();
    wait_for("the first picture", Duration::from_secs(20), || {
        client.heard.said("first picture")
    });
    common::xdotool(&local, &["windowfocus", "--sync", &wid]);
    // The pointer over the xterm: focus follows it without a window manager.
    common::xdotool(&local, &["mousemove", "--window", &wid, "300", "200"]);
    let file = dir.join("typed.txt");
    let typing = |text: &str| {
        common::xdotool(&local, &["type", "--delay", "40", text]);
    };
    typing("echo Grüße äöü ÄÖÜ ß");
    layout(&local, "fr");
    typing(" éèàç ù ");
    // A dead key, composed locally: ^ then e.
    common::xdotool(&local, &["key", "--delay", "40", "dead_circumflex", "e"]);
    typing(&format!(" > {}", file.display()));
    common::xdotool(&local, &["key", "Return"]);
    wait_for(
        "the typed line in the file",
        Duration::from_secs(15),
        || std::fs::read_to_string(&file).is_ok_and(|t| t.ends_with('\n')),
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "Grüße äöü ÄÖÜ ß éèàç ù ê\n"
    );
    let _ = finish(client, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_clipboard_crosses_between_the_local_display_and_the_x_desktop() {
    let _turn = turn();
    let dir = scratch("clipboard");
    let (_remote_x, remote) = start_xvfb("1280x720x24");
    let (_local_x, local) = start_xvfb("640x480x24");
    let (_server, url) = serve(&dir, &remote, &[]);
    // Copied locally before the session: the desktop can paste it.
    xclip(&local, &["-i"], Some("copied here, pasted there"));
    let client = connect_with(
        &url,
        &dir,
        8,
        30,
        &["--headless", "--clipboard"],
        Some(&local),
    );
    wait_for(
        "the local text on the desktop's clipboard",
        Duration::from_secs(7),
        || xclip(&remote, &["-o"], None) == "copied here, pasted there",
    );
    // Copied by a program on the desktop: the local display can paste it.
    xclip(&remote, &["-i"], Some("copied on the desktop"));
    wait_for(
        "the desktop's text on the local clipboard",
        Duration::from_secs(7),
        || xclip(&local, &["-o"], None) == "copied on the desktop",
    );
    let _ = finish(client, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}
