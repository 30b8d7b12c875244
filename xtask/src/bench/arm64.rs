//! The arm64 client's decode under qemu-user beside Debian's arm64 ffmpeg
//! under the same emulation: emulation makes absolute times meaningless,
//! but both pay it alike, so their ratio says how the client's decode
//! path would compare on an arm64 thin client.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::emit;
use super::video::{decode_runs, testsrc_clip};
use crate::package::{arm64_client, output, under_qemu};
use crate::run;

const RUNS: usize = 3;

/// Decode + conversion CPU per frame of the 720p testsrc2 clip: the arm64
/// `nephele decode` (its default decoder, FFmpeg's libavcodec for arm64,
/// then the built-in openh264) against the arm64 `ffmpeg -threads 1 …
/// -pix_fmt bgra -f null -`, all under qemu-aarch64.
pub fn arm64_decode(_host_nephele: &Path, dir: &Path) -> Result<()> {
    let nephele = arm64_client(false)?;
    let ffmpeg = arm64_ffmpeg(dir)?;
    let clip = testsrc_clip(dir, "720p", (1280, 720), "4M")?;
    let r = decode_runs(
        RUNS,
        &clip,
        &|| under_qemu(&nephele),
        &|| under_qemu(&ffmpeg),
        None,
    )?;
    let pictures = r.pictures;
    let anchor = (
        "arm64 ffmpeg -threads 1 -i CLIP -pix_fmt bgra -f null - under qemu-aarch64",
        r.theirs,
    );
    let extra = |decoder: &str| serde_json::json!({"frames": pictures, "runs": RUNS, "decoder": decoder, "emulated": "qemu-aarch64"});
    emit(
        "arm64_decode_convert_720p_testsrc2",
        (r.ours, "cpu_ms_per_frame"),
        anchor,
        extra(&r.decoder),
    );
    emit(
        "arm64_decode_convert_720p_testsrc2_openh264",
        (r.builtin, "cpu_ms_per_frame"),
        anchor,
        extra("openh264"),
    );
    Ok(())
}

/// Debian's arm64 `ffmpeg` program, unpacked into `dir` (its libraries
/// are installed by setup as multiarch packages; the program itself is not
/// co-installable with the build machine's).
fn arm64_ffmpeg(dir: &Path) -> Result<PathBuf> {
    let unpacked = dir.join("arm64-ffmpeg");
    let program = unpacked.join("usr/bin/ffmpeg");
    if program.is_file() {
        return Ok(program);
    }
    std::fs::create_dir_all(&unpacked)?;
    run(Command::new("apt-get")
        .args(["download", "ffmpeg:arm64"])
        .current_dir(&unpacked)
        .stdout(std::io::stderr()))?;
    let listing = output(Command::new("ls").current_dir(&unpacked))?;
    let deb = listing
        .lines()
        .find(|l| l.starts_with("ffmpeg_") && l.ends_with("_arm64.deb"))
        .context("apt-get download left no ffmpeg arm64 package")?;
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(unpacked.join(deb))
        .arg(&unpacked))?;
    Ok(program)
}
