//! A real X display captured, encoded and sent.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Server, Xvfb, children_cpu_s, cpu_s_of, emit, f, round3, timed};
use crate::run;

/// A real X display's capture-to-send time per frame (capture through
/// MIT-SHM, conversion, encoding, the last datagram handed to the socket)
/// at 720p and 1080p, with `ico` spinning across the whole screen so every
/// frame changes. Anchor: ffmpeg grabbing the same display with x11grab
/// and encoding with libx264 (Baseline, ultrafast, zerolatency, one
/// thread), CPU time per frame — the well-known tool's cost for the same
/// job. A second line puts the whole server's CPU per frame sent (gateway
/// and directory included) beside the same anchor.
pub fn x11_capture(nephele: &Path, dir: &Path) -> Result<()> {
    for (label, w, h) in [("720p", 1280, 720), ("1080p", 1920, 1080)] {
        let size = format!("{w}x{h}");
        let xvfb = Xvfb::start(&size)?;
        x11_capture_at(nephele, dir, label, &xvfb.display, &size)?;
    }
    still_and_moving(nephele, dir)
}

/// `ico` spinning a polyhedron as fast as the X server draws it, in a
/// window of `geometry`; stopped when dropped.
struct Ico(std::process::Child);

impl Ico {
    fn start(display: &str, geometry: &str) -> Result<Self> {
        let child = Command::new("ico")
            .args(["-geometry", geometry])
            .env("DISPLAY", display)
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ico (x11-apps)")?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self(child))
    }
}

impl Drop for Ico {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What an unchanging X desktop costs the server beside a moving one, at
/// 720p and 60 fps asked: the whole server's CPU over the middle three
/// seconds of a six-second session on a still screen, against the same
/// with `ico` spinning in a 600×600 window (the brief's bar: a tenth);
/// and the moving session's presented rate against the rate asked for.
fn still_and_moving(nephele: &Path, dir: &Path) -> Result<()> {
    let xvfb = Xvfb::start("1280x720")?;
    let server = Server::start(
        nephele,
        dir,
        "x11-motion-state",
        &["--desktop".into(), format!("x11:{}", xvfb.display)],
    )?;
    let pid = server.child.id();
    let session = |name: &str| -> Result<(f64, serde_json::Value)> {
        let stats = dir.join(format!("x11-{name}.json"));
        let mut client = server
            .client(nephele, "connect")
            .args(["--headless", "--no-audio", "--duration", "6", "--fps", "60"])
            .arg("--stats-json")
            .arg(&stats)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nephele connect")?;
        std::thread::sleep(Duration::from_secs(2));
        let before = cpu_s_of(pid);
        std::thread::sleep(Duration::from_secs(3));
        let used = cpu_s_of(pid) - before;
        let status = client.wait()?;
        if !status.success() {
            bail!("nephele connect ({name} desktop) failed: {status}");
        }
        let seen = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        Ok((100.0 * used / 3.0, seen))
    };
    let (still_cpu, still) = session("still")?;
    let ico = Ico::start(&xvfb.display, "600x600+340+60")?;
    let (moving_cpu, moving) = session("moving")?;
    drop(ico);
    let fps = f(&moving, "frames_presented") / f(&moving, "duration_s");
    emit(
        "x11_server_cpu_still_720p",
        (still_cpu, "% of a core"),
        ("the same desktop moving (ico), same server", moving_cpu),
        serde_json::json!({
            "still_frames": still["frames_presented"],
            "moving_fps": round3(fps),
            "target_ratio": 0.1,
        }),
    );
    emit(
        "x11_fps_moving_720p60",
        (fps, "fps"),
        ("the rate asked for", 60.0),
        serde_json::json!({"target_fps": 54, "frames_presented": moving["frames_presented"]}),
    );
    Ok(())
}

fn x11_capture_at(
    nephele: &Path,
    dir: &Path,
    label: &str,
    display: &str,
    size: &str,
) -> Result<()> {
    let ico = Ico::start(display, &format!("{size}+0+0"))?;
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
    drop(ico);
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
