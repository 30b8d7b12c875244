//! The picture and the window's size under Xvfb: by default the demo
//! desktop takes the window's size whenever it settles after a resize and
//! is shown one to one; at a fixed resolution it is scaled to fit, with a
//! filter (the text's edges gain intermediate levels, where
//! nearest-neighbour scaling has stair-steps).
#![cfg(all(unix, not(target_os = "macos")))]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Killed, need, screenshot, start_xvfb, teal_share, xdotool};

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nephele-size-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// `nephele demo` in a window on `display` for `secs`, with `extra`
/// arguments, its stats to `dir/s.json`; the window's id once it shows the
/// desktop.
fn demo(display: &str, dir: &Path, secs: &str, extra: &[&str]) -> (Killed, String) {
    let client = Command::new(env!("CARGO_BIN_EXE_nephele"))
        .args(["demo", "--duration", secs, "--stats-json"])
        .arg(dir.join("s.json"))
        .args(extra)
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nephele demo");
    let client = Killed(client);
    let wid = xdotool(display, &["search", "--sync", "--name", "Nephele"]);
    let wid = wid.lines().next().unwrap().to_string();
    let end = Instant::now() + Duration::from_secs(20);
    while teal_share(&screenshot(display, &wid).2) < 0.25 {
        assert!(Instant::now() < end, "the window never showed the desktop");
        std::thread::sleep(Duration::from_millis(200));
    }
    (client, wid)
}

/// Waits for the demo to end by itself; its stats.
fn finish(mut client: Killed, dir: &Path) -> serde_json::Value {
    let status = client.0.wait().unwrap();
    assert!(status.success(), "the client failed: {status}");
    serde_json::from_str(&std::fs::read_to_string(dir.join("s.json")).unwrap()).unwrap()
}

fn sizes(stats: &serde_json::Value) -> [(u64, u64); 2] {
    let size = |k: &str| {
        (
            stats[format!("{k}_width")].as_u64().unwrap_or(0),
            stats[format!("{k}_height")].as_u64().unwrap_or(0),
        )
    };
    [size("picture"), size("presented")]
}

#[test]
fn the_desktop_takes_the_window_size_and_is_shown_one_to_one() {
    need("xdotool");
    let (_xvfb, display) = start_xvfb("1280x800x24");
    let dir = scratch("follow");
    let (client, wid) = demo(&display, &dir, "8", &[]);
    xdotool(&display, &["windowsize", &wid, "1000", "700"]);
    let stats = finish(client, &dir);
    assert_eq!(sizes(&stats), [(1000, 700), (1000, 700)], "{stats}");
    assert!(stats["picture_size_changes"].as_u64() >= Some(1), "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pairs of neighbouring pixels across a text edge (their luma differs by
/// more than 40% of the range in `px`), and how many of them include a
/// pixel of an intermediate level (more than 8% of the range from both
/// ends): nearest-neighbour scaling keeps only the two levels either side
/// of an edge, a filter adds the ones between.
fn text_edges(
    px: &[[u8; 3]],
    w: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> (usize, usize) {
    let luma =
        |p: [u8; 3]| (u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000;
    let at = |x: usize, y: usize| luma(px[y * w + x]);
    let all: Vec<u32> = rows
        .clone()
        .flat_map(|y| cols.clone().map(move |x| (x, y)))
        .map(|(x, y)| at(x, y))
        .collect();
    let (lo, hi) = (*all.iter().min().unwrap(), *all.iter().max().unwrap());
    let span = hi - lo;
    let between = |v: u32| v * 100 > lo * 100 + span * 8 && v * 100 + span * 8 < hi * 100;
    let (mut edges, mut soft) = (0, 0);
    for y in rows {
        for x in cols.start..cols.end - 1 {
            let (a, b) = (at(x, y), at(x + 1, y));
            if a.abs_diff(b) * 10 > span * 4 {
                edges += 1;
                soft += usize::from(between(a) || between(b));
            }
        }
    }
    (edges, soft)
}

#[test]
fn a_fixed_resolution_shown_at_half_size_is_filtered_not_stair_stepped() {
    need("xdotool");
    let (_xvfb, display) = start_xvfb("1280x800x24");
    let dir = scratch("fixed");
    let (client, wid) = demo(&display, &dir, "8", &["--resolution", "fixed"]);
    xdotool(&display, &["windowsize", &wid, "640", "360"]);
    // The bar along the bottom: "Nephele demo desktop", white on dark.
    let look = || {
        let (w, h, px) = screenshot(&display, &wid);
        assert_eq!((w, h), (640, 360));
        text_edges(&px, w, h - h / 20..h, 0..w * 5 / 16)
    };
    let end = Instant::now() + Duration::from_secs(10);
    let (edges, soft) = loop {
        let seen = look();
        if seen.0 >= 100 || Instant::now() > end {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(edges >= 100, "no text in the bar: {edges} edges");
    assert!(
        soft * 100 >= edges * 95,
        "{soft} of {edges} text edges have an intermediate level"
    );
    let stats = finish(client, &dir);
    assert_eq!(sizes(&stats), [(1280, 720), (640, 360)], "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}
