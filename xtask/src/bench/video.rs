//! Decoding against ffmpeg, and the loopback stream's latencies.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Result;

use super::{Server, Xvfb, emit, f, key_script, median, timed};
use crate::run;

/// Decode + conversion CPU per frame against ffmpeg on the same clips:
/// libx264 Baseline from ffmpeg's `testsrc2`, and the demo desktop's own
/// stream as the host encodes it, at 720p and 1080p. Five runs each,
/// alternating, medians. `nephele decode` uses its default decoder (FFmpeg's
/// libavcodec where installed); a second line gives the built-in openh264.
const DECODE_RUNS: usize = 5;

pub fn decode_benches(nephele: &Path, dir: &Path) -> Result<()> {
    for (label, w, h, kbps) in [("720p", 1280, 720, "4M"), ("1080p", 1920, 1080, "8M")] {
        let testsrc = testsrc_clip(dir, label, (w, h), kbps)?;
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
            let r = decode_runs(
                DECODE_RUNS,
                clip,
                &|| Command::new(nephele),
                &|| Command::new("ffmpeg"),
                None,
            )?;
            let (pictures, decoder) = (r.pictures, r.decoder);
            let anchor = (
                "ffmpeg -threads 1 -i CLIP -pix_fmt bgra -f null -",
                r.theirs,
            );
            emit(
                &format!("decode_convert_{label}_{kind}"),
                (r.ours, "cpu_ms_per_frame"),
                anchor,
                serde_json::json!({"frames": pictures, "runs": DECODE_RUNS, "decoder": decoder, "target_ratio": 0.8}),
            );
            emit(
                &format!("decode_convert_{label}_{kind}_openh264"),
                (r.builtin, "cpu_ms_per_frame"),
                anchor,
                serde_json::json!({"frames": pictures, "runs": DECODE_RUNS, "decoder": "openh264"}),
            );
        }
    }
    Ok(())
}

/// Decode + conversion CPU per frame of one clip, medians of alternating
/// runs: `nephele decode --bench` with its default decoder (`ours`) and
/// with the built-in openh264 (`builtin`), and ffmpeg decoding to BGRA on
/// one thread (`theirs`). `nephele` and `ffmpeg` give each program's
/// command (the program itself, or an emulator running it). With `scale`,
/// each picture is also scaled to that size: into a window-sized surface by
/// the client, by libswscale's bilinear (`-vf scale`) for ffmpeg.
pub struct DecodeRuns {
    pub ours: f64,
    pub builtin: f64,
    pub theirs: f64,
    pub pictures: f64,
    /// The default decoder's name, as the client reports it.
    pub decoder: String,
}

pub fn decode_runs(
    runs: usize,
    clip: &Path,
    nephele: &dyn Fn() -> Command,
    ffmpeg: &dyn Fn() -> Command,
    scale: Option<(u32, u32)>,
) -> Result<DecodeRuns> {
    let (mut ours, mut builtin, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pictures, mut decoder) = (0.0, String::new());
    for _ in 0..runs {
        let mut anchor = ffmpeg();
        anchor
            .args(["-nostdin", "-v", "error", "-threads", "1", "-i"])
            .arg(clip);
        if let Some((w, h)) = scale {
            anchor.args(["-vf", &format!("scale={w}:{h}:flags=bilinear")]);
        }
        anchor.args(["-pix_fmt", "bgra", "-f", "null", "-"]);
        theirs.push(timed(&mut anchor)?.0);
        for (extra, into) in [(None, &mut ours), (Some("openh264"), &mut builtin)] {
            let mut cmd = nephele();
            cmd.arg("decode").arg(clip).arg("--bench");
            if let Some((w, h)) = scale {
                cmd.args(["--scale", &format!("{w}x{h}")]);
            }
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
    let per = |s: Vec<f64>| median(s) * 1000.0 / pictures.max(1.0);
    Ok(DecodeRuns {
        ours: per(ours),
        builtin: per(builtin),
        theirs: per(theirs),
        pictures,
        decoder,
    })
}

/// Five seconds of ffmpeg's `testsrc2` at 60 fps as libx264 Baseline,
/// made once into `dir`: moving synthetic content, Constrained Baseline,
/// Annex B, which is what the client decodes from hosts and what both
/// decoders read.
pub fn testsrc_clip(dir: &Path, label: &str, (w, h): (u32, u32), kbps: &str) -> Result<PathBuf> {
    let clip = dir.join(format!("testsrc2-{label}-baseline.264"));
    if !clip.exists() {
        run(Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={w}x{h}:rate=60"))
            .args(["-t", "5", "-c:v", "libx264", "-profile:v", "baseline"])
            .args(["-preset", "veryfast", "-b:v", kbps])
            .args(["-bsf:v", "h264_mp4toannexb", "-f", "h264"])
            .arg(&clip)
            .stdin(Stdio::null()))?;
    }
    Ok(clip)
}

/// 1080p60 on loopback (`nephele-server all` with one PoP and no added
/// delay) with keys typed throughout: client-added latency against the
/// decode time it contains, headless and through a window, and the input
/// round trip against QUIC's own.
pub fn loopback_stream(nephele: &Path, dir: &Path) -> Result<()> {
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
    // The same through a window (under Xvfb, which presents each picture
    // on arrival): the slot, the window's conversion and scaling, and
    // presenting on top of decoding.
    let xvfb = Xvfb::start("1920x1200")?;
    let window_stats = dir.join("loopback-1080p-window.json");
    run(server
        .client(nephele, "connect")
        .args(["--duration", "10", "--width", "1920", "--height", "1080"])
        .args(["--no-audio", "--stats-json"])
        .arg(&window_stats)
        .env("DISPLAY", &xvfb.display)
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stderr(Stdio::null()))?;
    drop(xvfb);
    drop(server);
    let w: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&window_stats)?)?;
    for q in ["p50", "p99"] {
        emit(
            &format!("client_latency_1080p60_window_{q}"),
            (f(&w, &format!("client_latency_ms_{q}")), "ms"),
            ("decode_ms_p50 (same run)", f(&w, "decode_ms_p50")),
            serde_json::json!({"target_ms": if q == "p50" { 4 } else { 8 }, "frames_presented": w["frames_presented"], "frames_dropped": w["frames_dropped"]}),
        );
    }
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
