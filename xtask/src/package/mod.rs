//! `cargo xtask package`: `.deb`s of the client (`nephele`) and of the
//! reference service `nephele demo` starts (`nephele-server`), each with
//! its debug information apart in a `-dbgsym` package, as Debian ships it;
//! the client as an `.rpm` (`rpm.rs`) and the Windows client's MSI
//! (`msi.rs`).
//!
//! dpkg-deb assembles them (Debian's own tool; no packaging crate needed).
//! The icon is drawn once as SVG; rsvg-convert renders the hicolor sizes.
//! Depends are what each binary links, at the lowest versions its symbols
//! need (`depends.rs`), plus, for the client, the X11 libraries winit opens
//! at run time.

mod app;
mod arm64;
mod debug;
mod depends;
mod identity;
mod menu;
mod msi;
mod rpm;
mod verify;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::WINDOWS_TARGET;
use crate::{cargo, root, run};
pub use arm64::{Arch, arm64, arm64_client, under_qemu, verify_arm64};

/// `cargo xtask package --macos-app [--client PATH]`: `Nephele.app`, and
/// with `--check` its layout checked.
pub fn macos_app(o: &Options) -> Result<()> {
    let version = workspace_version()?;
    let bundle = app::build(&o.out, &version, o.client.as_deref())?;
    if o.check {
        app::verify(&bundle, &version, o.client.is_some())?;
    }
    Ok(())
}
pub use verify::verify;

/// The icon sizes installed besides the scalable SVG.
const ICON_SIZES: [u32; 5] = [32, 48, 64, 128, 256];

/// What winit and softbuffer open with dlopen (so no NEEDED entry shows
/// them): Debian's package and the library's soname (the .rpm's names),
/// for X11 and Wayland sessions alike.
const DLOPENED: [(&str, &str); 8] = [
    ("libx11-6", "libX11.so.6"),
    ("libx11-xcb1", "libX11-xcb.so.1"),
    ("libxcursor1", "libXcursor.so.1"),
    ("libxi6", "libXi.so.6"),
    ("libxrandr2", "libXrandr.so.2"),
    ("libxkbcommon-x11-0", "libxkbcommon-x11.so.0"),
    ("libxkbcommon0", "libxkbcommon.so.0"),
    ("libwayland-client0", "libwayland-client.so.0"),
];

/// The packages one run makes.
pub struct Built {
    /// `nephele`: the client.
    pub client: PathBuf,
    /// `nephele-server`: the reference service.
    pub server: PathBuf,
    /// `nephele-dbgsym` and `nephele-server-dbgsym`: their debug information.
    pub dbgsym: Vec<PathBuf>,
    /// The client as an `.rpm`.
    pub rpm: PathBuf,
    /// The Windows installer, and the exe inside it.
    pub msi: PathBuf,
    pub windows_exe: PathBuf,
    /// `Nephele.app`, without the client.
    pub macos_app: PathBuf,
}

/// A binary package's control fields beyond name, version and size.
struct Control {
    name: String,
    depends: Vec<String>,
    extra: String,
    section: &'static str,
    description: &'static str,
}

/// What `cargo xtask package` was asked for.
pub struct Options {
    /// Package the dev binaries as they are (what the tests built; built
    /// first when missing), to check the packaging rather than ship.
    pub debug: bool,
    /// Where the packages go.
    pub out: PathBuf,
    /// `--arch arm64`: the arm64 client's `.deb` (thin clients) instead of
    /// the build machine's set.
    pub arm64: bool,
    /// `--macos-app`: only `Nephele.app`, with `--client PATH` (a macOS
    /// build) in it when given: what `packaging/macos/build-app.sh` asks.
    pub macos_app: bool,
    pub client: Option<PathBuf>,
    /// `--check`: install and check the result (the caller's, [`verify`]).
    pub check: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options {
            debug: false,
            out: root().join("target/package"),
            arm64: false,
            macos_app: false,
            client: None,
            check: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--debug" => o.debug = true,
                "--check" => o.check = true,
                "--macos-app" => o.macos_app = true,
                "--client" => {
                    o.client = Some(PathBuf::from(
                        it.next()
                            .context("--client needs the macOS client's path")?,
                    ))
                }
                "--out" => o.out = PathBuf::from(it.next().context("--out needs a directory")?),
                "--arch" => match it.next().map(String::as_str) {
                    Some("arm64") => o.arm64 = true,
                    Some(a) if Some(a) == Arch::native().ok().map(|n| n.deb).as_deref() => {}
                    other => bail!(
                        "xtask package: --arch {} is not made here (arm64, or this machine's)",
                        other.unwrap_or("needs a name")
                    ),
                },
                other => bail!(
                    "xtask package: unknown option `{other}` (--debug, --check, --out DIR, --arch arm64, --macos-app [--client PATH])"
                ),
            }
        }
        Ok(o)
    }
}

/// The build machine's packages: the client and service `.deb`s with
/// their `-dbgsym`, the client's `.rpm`, the Windows MSI, and the macOS
/// app's layout (without its client, which only a Mac links).
pub fn package(o: &Options) -> Result<Built> {
    let (debug, out) = (o.debug, o.out.clone());
    let target = root().join(if debug {
        "target/debug"
    } else {
        "target/release"
    });
    for (package, bin) in [
        ("nephele-client", "nephele"),
        ("nephele-service", "nephele-server"),
    ] {
        // The dev binaries are packaged as the tests built them (to check
        // the packaging, not what ships).
        if debug && target.join(bin).is_file() {
            continue;
        }
        // Apart: one build would unify the service's features of shared
        // crates into the client.
        let mut build = cargo();
        build.args(["build", "-p", package, "--bin", bin]);
        if !debug {
            build.arg("--release");
        }
        run(&mut build)?;
    }
    let version = workspace_version()?;
    let arch = Arch::native()?;
    let deb = |stage: &Path, c: &Control| write_deb(stage, c, &version, &arch.deb, &out);
    let mut dbgsym = Vec::new();

    let (client, client_dbgsym, stage) =
        client_debs(&target.join("nephele"), &out, &version, &arch)?;
    dbgsym.push(client_dbgsym);
    let rpm = rpm::build(&stage, &out, &version)?;

    let stage = fresh(&out.join("nephele-server"))?;
    let bin = target.join("nephele-server");
    put(&stage, "usr/bin/nephele-server", &bin)?;
    let symbols = fresh(&out.join("nephele-server-dbgsym"))?;
    let id = debug::split(&stage.join("usr/bin/nephele-server"), &symbols, &arch)?;
    copyright(&stage, "nephele-server")?;
    let server = deb(
        &stage,
        &Control {
            name: "nephele-server".into(),
            depends: depends::shlib_depends(
                &stage.join("usr/bin/nephele-server"),
                &out.join("shlibdeps"),
                &arch,
            )?,
            extra: String::new(),
            section: "net",
            description: "reference service for the Nephele client\n \
             The directory, gateways and desktop host of a Nephele service in one\n \
             program, for trying the client on one machine (`nephele demo` starts\n \
             it) and for testing.\n",
        },
    )?;
    dbgsym.push(deb(
        &symbols,
        &dbgsym_control("nephele-server", &version, &id),
    )?);
    let windows_exe = windows_client(debug)?;
    let msi = msi::build(&windows_exe, &out, &version)?;
    let macos_app = app::build(&out, &version, None)?;
    Ok(Built {
        macos_app,
        client,
        server,
        dbgsym,
        rpm,
        msi,
        windows_exe,
    })
}

/// Builds the Windows client (cargo does nothing when it is up to date);
/// its path.
pub fn windows_client(debug: bool) -> Result<PathBuf> {
    Ok(cross_client(WINDOWS_TARGET, debug)?.join("nephele.exe"))
}

/// Builds the client for `target` (cargo does nothing when it is up to
/// date); the directory it is in.
fn cross_client(target: &str, debug: bool) -> Result<PathBuf> {
    let mut build = cargo();
    build.args([
        "build",
        "--target",
        target,
        "-p",
        "nephele-client",
        "--bin",
        "nephele",
    ]);
    if !debug {
        build.arg("--release");
    }
    run(&mut build)?;
    Ok(root()
        .join("target")
        .join(target)
        .join(if debug { "debug" } else { "release" }))
}

/// An empty staging directory at `dir`.
fn fresh(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

/// Copies `from` to `stage/rel`.
fn put(stage: &Path, rel: &str, from: &Path) -> Result<()> {
    let to = stage.join(rel);
    std::fs::create_dir_all(to.parent().context("a path with a parent")?)?;
    std::fs::copy(from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The client's `.deb` and its `-dbgsym` from the binary `bin` built for
/// `arch`; the staged tree too (the `.rpm` is made from it).
fn client_debs(
    bin: &Path,
    out: &Path,
    version: &str,
    arch: &Arch,
) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let stage = fresh(&out.join(format!("nephele_{}", arch.deb)))?;
    put(&stage, "usr/bin/nephele", bin)?;
    let symbols = fresh(&out.join(format!("nephele-dbgsym_{}", arch.deb)))?;
    let id = debug::split(&stage.join("usr/bin/nephele"), &symbols, arch)?;
    let linux = root().join("packaging/linux");
    for (to, from) in [
        ("usr/share/applications", "nephele.desktop"),
        ("usr/share/metainfo", "invalid.example.Nephele.metainfo.xml"),
        ("usr/lib/systemd/user", "nephele-kiosk.service"),
        ("usr/share/nephele", "nephele-kiosk-autostart.desktop"),
    ] {
        put(&stage, &format!("{to}/{from}"), &linux.join(from))?;
    }
    let svg = root().join("assets/icons/nephele.svg");
    put(
        &stage,
        "usr/share/icons/hicolor/scalable/apps/nephele.svg",
        &svg,
    )?;
    for s in ICON_SIZES {
        let to = stage.join(format!("usr/share/icons/hicolor/{s}x{s}/apps/nephele.png"));
        std::fs::create_dir_all(to.parent().context("a path with a parent")?)?;
        run(Command::new("rsvg-convert")
            .args(["-w", &s.to_string(), "-h", &s.to_string(), "-o"])
            .arg(&to)
            .arg(&svg))?;
    }
    copyright(&stage, "nephele")?;
    let mut depends =
        depends::shlib_depends(&stage.join("usr/bin/nephele"), &out.join("shlibdeps"), arch)?;
    depends.extend(DLOPENED.iter().map(|(package, _)| package.to_string()));
    depends.sort();
    depends.dedup();
    let client = write_deb(
        &stage,
        &Control {
            name: "nephele".into(),
            depends,
            extra: "Recommends: pulseaudio | pipewire-pulse, libavcodec62 | libavcodec61 | libavcodec60 | libavcodec59 | libavcodec58\n\
                    Suggests: nephele-server\n"
                .into(),
            section: "net",
            description: "client for cloud desktops and game streaming\n \
             Nephele finds the service's nearest point of presence, connects over\n \
             QUIC and shows the remote desktop with keyboard, mouse, gamepads,\n \
             speakers and microphone working as if local. Includes a kiosk mode\n \
             (a systemd user unit and an autostart entry) for thin clients.\n",
        },
        version,
        &arch.deb,
        out,
    )?;
    let dbgsym = write_deb(
        &symbols,
        &dbgsym_control("nephele", version, &id),
        version,
        &arch.deb,
        out,
    )?;
    Ok((client, dbgsym, stage))
}

/// The package's copyright file.
fn copyright(stage: &Path, name: &str) -> Result<()> {
    let doc = stage.join("usr/share/doc").join(name);
    std::fs::create_dir_all(&doc)?;
    std::fs::write(
        doc.join("copyright"),
        format!(
            "Nephele\nLicense: MIT OR Apache-2.0\nSource: {}\n",
            identity::HOMEPAGE
        ),
    )?;
    Ok(())
}

/// The control fields of `name`'s debug-symbols package.
fn dbgsym_control(name: &str, version: &str, build_id: &str) -> Control {
    Control {
        name: format!("{name}-dbgsym"),
        depends: vec![format!("{name} (= {version})")],
        extra: format!("Auto-Built-Package: debug-symbols\nBuild-Ids: {build_id}\n"),
        section: "debug",
        description: "debug symbols for the Nephele programs\n \
             Found by debuggers through the binary's build ID.\n",
    }
}

/// Writes `stage/DEBIAN/control` and builds the `.deb` into `out`.
fn write_deb(stage: &Path, c: &Control, version: &str, arch: &str, out: &Path) -> Result<PathBuf> {
    let size_kib = dir_size(stage)? / 1024;
    std::fs::create_dir_all(stage.join("DEBIAN"))?;
    std::fs::write(
        stage.join("DEBIAN/control"),
        format!(
            "Package: {}\n\
             Version: {version}\n\
             Architecture: {arch}\n\
             Maintainer: {}\n\
             Installed-Size: {size_kib}\n\
             Depends: {}\n\
             {}\
             Section: {}\n\
             Priority: optional\n\
             Homepage: {}\n\
             Description: {}",
            c.name,
            identity::maintainer(),
            c.depends.join(", "),
            c.extra,
            c.section,
            identity::HOMEPAGE,
            c.description,
        ),
    )?;
    let deb = out.join(format!("{}_{version}_{arch}.deb", c.name));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(stage)
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
