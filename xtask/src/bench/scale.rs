//! Scaling and big pictures: conversion + filtered scaling against
//! libswscale's bilinear on the same pictures, and 4K at 60 fps decoded,
//! and presented in a 4K window.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Result;

use super::video::{decode_runs, testsrc_clip};
use super::{Server, Xvfb, emit, f, timed};

const RUNS: usize = 3;

/// `cargo xtask bench scale`.
pub fn scale(nephele: &Path, dir: &Path) -> Result<()> {
    let clip_720 = testsrc_clip(dir, "720p", (1280, 720), "4M")?;
    let clip_1080 = testsrc_clip(dir, "1080p", (1920, 1080), "8M")?;
    for (label, clip, to) in [
        ("720p_to_1080p", &clip_720, (1920, 1080)),
        ("1080p_to_720p", &clip_1080, (1280, 720)),
    ] {
        // Every picture of testsrc2 changes throughout, so the client
        // converts and scales all of it, as ffmpeg does.
        let r = decode_runs(
            RUNS,
            clip,
            &|| Command::new(nephele),
            &|| Command::new("ffmpeg"),
            Some(to),
        )?;
        emit(
            &format!("decode_convert_scale_{label}_testsrc2"),
            (r.ours, "cpu_ms_per_frame"),
            (
                "ffmpeg -threads 1 -i CLIP -vf scale=W:H:flags=bilinear -pix_fmt bgra -f null -",
                r.theirs,
            ),
            serde_json::json!({"frames": r.pictures, "runs": RUNS, "decoder": r.decoder, "filter": "fast_image_resize bilinear (footprint-wide when shrinking)"}),
        );
    }
    let clip_2160 = testsrc_clip(dir, "2160p", (3840, 2160), "30M")?;
    let r = decode_runs(
        RUNS,
        &clip_2160,
        &|| Command::new(nephele),
        &|| Command::new("ffmpeg"),
        None,
    )?;
    emit(
        "decode_convert_2160p60_testsrc2",
        (r.ours, "cpu_ms_per_frame"),
        (
            "ffmpeg -threads 1 -i CLIP -pix_fmt bgra -f null -",
            r.theirs,
        ),
        serde_json::json!({"frames": r.pictures, "runs": RUNS, "decoder": r.decoder, "budget_ms_at_60fps": 16.667}),
    );
    window_2160p60(nephele, dir)
}

/// The demo desktop at 3840×2160 and 60 fps from `nephele-server all` on
/// loopback, in a 4K window under Xvfb: what the client
/// presents a second, beside what it decoded (the host's rate), and the
/// client's CPU per presented picture beside its decode time.
fn window_2160p60(nephele: &Path, dir: &Path) -> Result<()> {
    // Above the default per-session cap (1080p at 120 fps).
    let cap = (3840u64 * 2160 * 60).to_string();
    let server = Server::start(
        nephele,
        dir,
        "scale-4k-state",
        &["--max-pixel-rate".into(), cap],
    )?;
    let xvfb = Xvfb::start("3840x2160")?;
    let stats = dir.join("window-2160p.json");
    // Xvfb has no window manager to make the window full screen: it is
    // sized to the screen once it shows.
    let display = xvfb.display.clone();
    let sizer = std::thread::spawn(move || {
        Command::new("xdotool")
            .args(["search", "--sync", "--name", "Nephele"])
            .args(["windowsize", "%@", "3840", "2160"])
            .env("DISPLAY", display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    });
    let (cpu_s, _, _) = timed(
        server
            .client(nephele, "connect")
            .args(["--duration", "10", "--no-audio"])
            .args(["--width", "3840", "--height", "2160", "--fps", "60"])
            .arg("--stats-json")
            .arg(&stats)
            .env("DISPLAY", &xvfb.display)
            .env_remove("WAYLAND_DISPLAY")
            .stderr(Stdio::null()),
    )?;
    let _ = sizer.join();
    drop(xvfb);
    drop(server);
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    let secs = f(&s, "duration_s").max(1e-3);
    let presented = f(&s, "frames_presented");
    emit(
        "window_2160p60_presented_fps",
        (presented / secs, "fps"),
        (
            "frames decoded a second (same run)",
            f(&s, "frames_decoded") / secs,
        ),
        serde_json::json!({"target_fps": 60, "picture": [s["picture_width"], s["picture_height"]], "presented_at": [s["presented_width"], s["presented_height"]], "frames_dropped": s["frames_dropped"]}),
    );
    emit(
        "window_2160p60_client_cpu_per_frame",
        (cpu_s * 1000.0 / presented.max(1.0), "cpu_ms_per_frame"),
        ("decode_ms_p50 (same run)", f(&s, "decode_ms_p50")),
        serde_json::json!({"client_cpu_s": cpu_s, "frames_presented": presented}),
    );
    Ok(())
}
