//! Sound through a private PulseAudio server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{emit, f};
use crate::run;

/// Sound through a private PulseAudio (a null sink as the default output):
/// the demo's 440 Hz tone on loopback and on a 40 ms path with 5 % loss.
/// Audio latency (host capture → leaving the device, through the clock map)
/// is set against the video's end-to-end latency of the same session: how
/// far sound and picture are apart. Concealment is set against the packets
/// the path lost, repaired or not.
pub fn sound(nephele: &Path, dir: &Path) -> Result<()> {
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
