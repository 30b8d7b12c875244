//! Network benches: loss, a blackout, idle pauses and failures, a saturated
//! link, and the PoP choice.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Result, bail};

use super::{Server, demo_stats, emit, f, key_script, round3};

/// 720p60 through a 40 ms path with 1 % and 5 % loss: frames presented and
/// the longest freeze, against the same path without loss.
pub fn lossy_streams(nephele: &Path, dir: &Path) -> Result<()> {
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
pub fn blackout(nephele: &Path, dir: &Path) -> Result<()> {
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
pub fn continuity(nephele: &Path, dir: &Path) -> Result<()> {
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
/// the cap: what congestion control keeps of the delay and of input; and
/// through a link that narrows for a while.
pub fn saturated_link(nephele: &Path, dir: &Path) -> Result<()> {
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
    // The link narrows to 5 Mbit/s from 4 s to 8 s: the host must fall to
    // what arrives in a step or two, not slide down while the queue
    // overflows. The longest freeze against the unnarrowed path's.
    let spec = "rtt=40ms,bw=20mbit; @4s bw=5mbit; @8s bw=20mbit";
    let narrowed = demo_stats(
        nephele,
        dir,
        "motion-narrows",
        &[&common[..], &["--network", spec]].concat(),
    )?;
    emit(
        "max_freeze_720p60_link_narrows_20_to_5mbit",
        (f(&narrowed, "max_freeze_ms"), "ms"),
        ("same path without the cap", f(&free, "max_freeze_ms")),
        serde_json::json!({
            "network": spec,
            "frames_presented_pct": narrowed["frames_presented_pct"],
            "keyframes_requested": narrowed["keyframes_requested"],
            "e2e_latency_ms_p50": narrowed["e2e_latency_ms_p50"],
        }),
    );
    Ok(())
}

/// Choosing among 20 PoPs on loopback, the nearest (pop-13, 20 ms) 15 %
/// nearer than the next (23 ms). The anchor is the floor no prober with the
/// same plan can beat: its last round leaves at 80 ms and the nearest PoP's
/// reply needs one round trip (its measured minimum) after that.
pub fn pop_choice(nephele: &Path, dir: &Path) -> Result<()> {
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
