//! The client as an `.rpm` (Fedora, openSUSE, RHEL), from the same staged
//! files as its `.deb`, built by rpmbuild. rpm states what the binary
//! links by soname and symbol version itself (`libasound.so.2()(64bit)`,
//! `libc.so.6(GLIBC_2.34)(64bit)`): no distribution's package names. The
//! libraries winit opens at run time are added the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{DLOPENED, fresh, identity, output};
use crate::run;

/// What winit and softbuffer open with dlopen, as rpm names a 64-bit
/// library.
fn dlopened() -> Vec<String> {
    DLOPENED
        .iter()
        .map(|(_, soname)| format!("{soname}()(64bit)"))
        .collect()
}

/// Every file under `dir`, as paths from it ("/usr/bin/nephele"), leaving
/// out dpkg's DEBIAN directory.
fn files(dir: &Path, under: &str, found: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir.join(under.trim_start_matches('/')))? {
        let e = e?;
        let rel = format!("{under}/{}", e.file_name().to_string_lossy());
        if rel == "/DEBIAN" {
            continue;
        }
        if e.file_type()?.is_dir() {
            files(dir, &rel, found)?;
        } else {
            found.push(rel);
        }
    }
    Ok(())
}

/// Builds `nephele-VERSION-1.x86_64.rpm` in `out` from the client's
/// staged tree.
pub fn build(stage: &Path, out: &Path, version: &str) -> Result<PathBuf> {
    let top = fresh(&out.join("rpmbuild"))?;
    let mut list = Vec::new();
    files(stage, "", &mut list)?;
    list.sort();
    let spec = top.join("nephele.spec");
    std::fs::write(
        &spec,
        format!(
            "Name: nephele\n\
             Version: {version}\n\
             Release: 1\n\
             Summary: Client for cloud desktops and game streaming\n\
             License: MIT OR Apache-2.0\n\
             URL: {homepage}\n\
             Packager: {packager}\n\
             Requires: {dlopened}\n\
             Recommends: (pulseaudio or pipewire-pulseaudio)\n\
             Recommends: (libavcodec.so.62()(64bit) or libavcodec.so.61()(64bit) or libavcodec.so.60()(64bit) or libavcodec.so.59()(64bit) or libavcodec.so.58()(64bit))\n\
             \n\
             %description\n\
             Nephele finds the service's nearest point of presence, connects over\n\
             QUIC and shows the remote desktop with keyboard, mouse, gamepads,\n\
             speakers and microphone working as if local. Includes a kiosk mode\n\
             (a systemd user unit and an autostart entry) for thin clients.\n\
             \n\
             %install\n\
             cp -a {stage}/usr %{{buildroot}}/\n\
             \n\
             %files\n\
             {list}\n",
            homepage = identity::HOMEPAGE,
            packager = identity::maintainer(),
            dlopened = dlopened().join(", "),
            stage = stage.display(),
            list = list.join("\n"),
        ),
    )?;
    run(Command::new("rpmbuild")
        .arg("-bb")
        .args(["--target", "x86_64"])
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        // Stripped already; its debug information is in nephele-dbgsym.
        .args(["--define", "debug_package %{nil}"])
        .arg(&spec)
        .stdout(std::io::stderr()))?;
    let built = top.join(format!("RPMS/x86_64/nephele-{version}-1.x86_64.rpm"));
    let rpm = out.join(built.file_name().context("a file name")?);
    std::fs::rename(&built, &rpm)
        .with_context(|| format!("moving {} to {}", built.display(), rpm.display()))?;
    eprintln!("xtask package: {}", rpm.display());
    Ok(rpm)
}

/// Reads the package back with rpm: its identity, the binary and its
/// desktop files among the contents, and dependencies by soname (what it
/// links, found by rpm, and what winit opens).
pub fn verify(rpm: &Path, version: &str) -> Result<()> {
    let query = |what: &[&str]| output(Command::new("rpm").arg("-qp").args(what).arg(rpm));
    let info = query(&["--queryformat", "%{NAME} %{VERSION} %{ARCH} %{URL}"])?;
    let want = format!("nephele {version} x86_64 {}", identity::HOMEPAGE);
    if info != want {
        bail!("{}: {info:?}, not {want:?}", rpm.display());
    }
    let contents = query(&["--list"])?;
    for f in [
        "/usr/bin/nephele",
        "/usr/share/applications/nephele.desktop",
        "/usr/share/icons/hicolor/scalable/apps/nephele.svg",
        "/usr/lib/systemd/user/nephele-kiosk.service",
    ] {
        if !contents.lines().any(|l| l == f) {
            bail!("{}: no {f} among\n{contents}", rpm.display());
        }
    }
    let requires = query(&["--requires"])?;
    for r in dlopened().into_iter().chain([
        "libasound.so.2()(64bit)".into(),
        "libudev.so.1()(64bit)".into(),
    ]) {
        if !requires.lines().any(|l| l.trim() == r) {
            bail!("{}: does not require {r}:\n{requires}", rpm.display());
        }
    }
    if !requires.lines().any(|l| l.starts_with("libc.so.6(GLIBC_")) {
        bail!(
            "{}: no glibc symbol versions required:\n{requires}",
            rpm.display()
        );
    }
    // Installed into a scratch root (its dependencies are this machine's,
    // not rpm's to see), run, and removed without a trace.
    let root = fresh(&rpm.with_extension("root"))?;
    let in_root = |args: &[&str]| {
        run(Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdout(std::io::stderr()))
    };
    in_root(&["--initdb"])?;
    in_root(&["-i", "--nodeps", &rpm.to_string_lossy()])?;
    let said = output(Command::new(root.join("usr/bin/nephele")).arg("--version"))?;
    if said != format!("nephele {version}") {
        bail!("the installed client says {said:?}");
    }
    in_root(&["-e", "nephele"])?;
    let mut left = Vec::new();
    if root.join("usr").is_dir() {
        files(&root, "/usr", &mut left)?;
    }
    if !left.is_empty() {
        bail!("removing the .rpm left {left:?}");
    }
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
