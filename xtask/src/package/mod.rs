//! `cargo xtask package`: a `.deb` of the client, built from the files in
//! `packaging/linux` and `assets/icons`.
//!
//! dpkg-deb assembles it (Debian's own tool; no packaging crate needed).
//! The icon is drawn once as SVG; rsvg-convert renders the hicolor sizes.
//! Depends are what the binary links (objdump's NEEDED, owned per `dpkg -S`)
//! plus the X11 libraries winit opens at run time.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

/// The icon sizes installed besides the scalable SVG.
const ICON_SIZES: [u32; 5] = [32, 48, 64, 128, 256];

/// What winit and softbuffer open with dlopen (so no NEEDED entry shows them).
const DLOPENED: [&str; 6] = [
    "libx11-6",
    "libx11-xcb1",
    "libxcursor1",
    "libxi6",
    "libxrandr2",
    "libxkbcommon-x11-0",
];

/// Options: `--debug` packages the dev build (what the tests use, since
/// it is built already), `--out DIR` where the `.deb` goes; `--check` is
/// the caller's ([`verify`]).
pub fn package(args: &[String]) -> Result<PathBuf> {
    let mut debug = false;
    let mut out = root().join("target/package");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--debug" => debug = true,
            // Handled by the caller: install and check the result.
            "--check" => {}
            "--out" => out = PathBuf::from(it.next().context("--out needs a directory")?),
            other => bail!("xtask package: unknown option `{other}` (--debug, --check, --out DIR)"),
        }
    }
    let mut build = cargo();
    build.args(["build", "-p", "nephele-client", "--bin", "nephele"]);
    if !debug {
        build.arg("--release");
    }
    run(&mut build)?;
    let bin = root().join(if debug {
        "target/debug/nephele"
    } else {
        "target/release/nephele"
    });
    let version = workspace_version()?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let stage = out.join("root");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    let put = |rel: &str, from: &Path| -> Result<()> {
        let to = stage.join(rel);
        std::fs::create_dir_all(to.parent().context("a path with a parent")?)?;
        std::fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        Ok(())
    };
    put("usr/bin/nephele", &bin)?;
    // Debug information stays in the build tree; the package is for running.
    run(Command::new("strip")
        .arg("--strip-debug")
        .arg(stage.join("usr/bin/nephele")))?;
    let linux = root().join("packaging/linux");
    put(
        "usr/share/applications/nephele.desktop",
        &linux.join("nephele.desktop"),
    )?;
    put(
        "usr/share/metainfo/invalid.example.Nephele.metainfo.xml",
        &linux.join("invalid.example.Nephele.metainfo.xml"),
    )?;
    put(
        "usr/lib/systemd/user/nephele-kiosk.service",
        &linux.join("nephele-kiosk.service"),
    )?;
    put(
        "usr/share/nephele/nephele-kiosk-autostart.desktop",
        &linux.join("nephele-kiosk-autostart.desktop"),
    )?;
    let svg = root().join("assets/icons/nephele.svg");
    put("usr/share/icons/hicolor/scalable/apps/nephele.svg", &svg)?;
    for s in ICON_SIZES {
        let to = stage.join(format!("usr/share/icons/hicolor/{s}x{s}/apps/nephele.png"));
        std::fs::create_dir_all(to.parent().context("a path with a parent")?)?;
        run(Command::new("rsvg-convert")
            .args(["-w", &s.to_string(), "-h", &s.to_string(), "-o"])
            .arg(&to)
            .arg(&svg))?;
    }
    let doc = stage.join("usr/share/doc/nephele");
    std::fs::create_dir_all(&doc)?;
    std::fs::write(
        doc.join("copyright"),
        "Nephele\nLicense: MIT OR Apache-2.0\nSource: https://example.invalid/nephele\n",
    )?;
    let depends = depends(&bin)?;
    let size_kib = dir_size(&stage)? / 1024;
    std::fs::create_dir_all(stage.join("DEBIAN"))?;
    std::fs::write(
        stage.join("DEBIAN/control"),
        format!(
            "Package: nephele\n\
             Version: {version}\n\
             Architecture: {arch}\n\
             Maintainer: The Nephele developers <nephele@example.invalid>\n\
             Installed-Size: {size_kib}\n\
             Depends: {}\n\
             Recommends: pulseaudio | pipewire-pulse, libavcodec62 | libavcodec61 | libavcodec60 | libavcodec59 | libavcodec58\n\
             Section: net\n\
             Priority: optional\n\
             Homepage: https://example.invalid/nephele\n\
             Description: client for cloud desktops and game streaming\n \
             Nephele finds the service's nearest point of presence, connects over\n \
             QUIC and shows the remote desktop with keyboard, mouse, gamepads,\n \
             speakers and microphone working as if local. Includes a kiosk mode\n \
             (a systemd user unit and an autostart entry) for thin clients.\n",
            depends.join(", ")
        ),
    )?;
    let deb = out.join(format!("nephele_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    eprintln!("xtask package: {}", deb.display());
    Ok(deb)
}

/// The workspace's version, from the root manifest.
fn workspace_version() -> Result<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml"))?;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .context("no version in the workspace's Cargo.toml")
}

pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let o = cmd.output().with_context(|| format!("running {shown}"))?;
    if !o.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The packages owning the libraries `bin` links, and the dlopened ones.
fn depends(bin: &Path) -> Result<Vec<String>> {
    let ldd = output(Command::new("ldd").arg(bin))?;
    let mut pkgs: Vec<String> = DLOPENED.iter().map(|s| s.to_string()).collect();
    for line in ldd.lines() {
        // "libasound.so.2 => /lib/x86_64-linux-gnu/libasound.so.2 (0x…)"
        let Some(path) = line.split("=> ").nth(1).and_then(|r| r.split(' ').next()) else {
            continue;
        };
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        let candidates = [
            PathBuf::from(path),
            real.clone(),
            PathBuf::from(path.replacen("/lib/", "/usr/lib/", 1)),
        ];
        let owner = candidates.iter().find_map(|p| {
            let o = Command::new("dpkg").arg("-S").arg(p).output().ok()?;
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            o.status.success().then(|| {
                text.split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
        });
        match owner {
            Some(p) if !p.is_empty() => pkgs.push(p),
            _ => bail!("no package owns {path}, which nephele links"),
        }
    }
    pkgs.sort();
    pkgs.dedup();
    Ok(pkgs)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// Installs `deb` into a scratch root with dpkg, as a machine would, and
/// checks what it installed: the desktop entry and AppStream data
/// validate, the entry's command and icon exist, the icons have their
/// sizes, the binary runs (help, version, a conformance clip's digest),
/// and removal leaves nothing behind.
pub fn verify(deb: &Path) -> Result<()> {
    let scratch = deb
        .parent()
        .context("the package has a directory")?
        .join("scratch-root");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let admin = scratch.join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("info"))?;
    std::fs::create_dir_all(admin.join("updates"))?;
    std::fs::write(admin.join("status"), "")?;
    let dpkg = |args: &[&str]| -> Result<()> {
        run(Command::new("dpkg")
            .arg(format!("--root={}", scratch.display()))
            // The scratch root has no libc6 and friends registered.
            .args(["--force-not-root", "--force-depends"])
            .args(args)
            .stdout(std::io::stderr()))
    };
    dpkg(&["-i", &deb.to_string_lossy()])?;
    let installed = output(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", admin.display()))
            .args(["-W", "-f", "${Package} ${Version} ${Status}", "nephele"]),
    )?;
    if !installed.ends_with("install ok installed") {
        bail!("dpkg says: {installed}");
    }
    let desktop = scratch.join("usr/share/applications/nephele.desktop");
    run(Command::new("desktop-file-validate").arg(&desktop))?;
    run(Command::new("appstreamcli")
        .args(["validate", "--no-net"])
        .arg(scratch.join("usr/share/metainfo/invalid.example.Nephele.metainfo.xml")))?;
    let entry = std::fs::read_to_string(&desktop)?;
    let key = |k: &str| {
        entry
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_string)
            .with_context(|| format!("the desktop entry has no {k}"))
    };
    let exec = key("Exec=")?;
    let program = exec.split_whitespace().next().unwrap_or_default();
    let bin = scratch.join("usr/bin").join(program);
    if !bin.is_file() {
        bail!("the desktop entry runs `{program}`, which the package does not install");
    }
    let icon = key("Icon=")?;
    for s in ICON_SIZES {
        let png = scratch.join(format!("usr/share/icons/hicolor/{s}x{s}/apps/{icon}.png"));
        let data = std::fs::read(&png).with_context(|| format!("reading {}", png.display()))?;
        let dim = |at: usize| {
            data.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        if !data.starts_with(b"\x89PNG\r\n\x1a\n") || dim(16) != Some(s) || dim(20) != Some(s) {
            bail!("{} is no {s}×{s} PNG", png.display());
        }
    }
    if !scratch
        .join(format!("usr/share/icons/hicolor/scalable/apps/{icon}.svg"))
        .is_file()
    {
        bail!("no scalable icon named {icon}");
    }
    let help = output(Command::new(&bin).arg("--help"))?;
    for section in ["KIOSK MODE", "SETTINGS FILE", "SHORTCUTS"] {
        if !help.contains(section) {
            bail!("the installed nephele's --help lacks {section}");
        }
    }
    let version = output(Command::new(&bin).arg("--version"))?;
    if !version.contains(&workspace_version()?) {
        bail!("the installed nephele says it is `{version}`");
    }
    // The decode path works from the installed binary: a conformance clip
    // gives the digest its manifest lists.
    let data = root().join("tests/data/h264");
    let manifest = std::fs::read_to_string(data.join("MANIFEST.tsv"))?;
    let want = manifest
        .lines()
        .find_map(|l| l.strip_prefix("BA_MW_D.264\t"))
        .and_then(|r| r.split('\t').next())
        .context("BA_MW_D.264 is not in the manifest")?;
    let got = output(
        Command::new(&bin)
            .args(["decode", "--sha1"])
            .arg(data.join("BA_MW_D.264")),
    )?;
    if !got.starts_with(want) {
        bail!("the installed nephele decodes BA_MW_D.264 to `{got}`, not {want}");
    }
    dpkg(&["-r", "nephele"])?;
    if bin.exists() || desktop.exists() {
        bail!("dpkg -r left the package's files behind");
    }
    eprintln!(
        "xtask: {} installs, runs and removes cleanly",
        deb.display()
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}
