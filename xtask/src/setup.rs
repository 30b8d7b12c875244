//! `cargo xtask setup`: what the machine lacks, installed (system packages,
//! cargo tools, the Windows target).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, run};

#[derive(Debug, Default)]
pub struct Extras {
    /// Tools the benchmarks' anchors need (ffmpeg).
    pub bench: bool,
}

/// A system requirement: a command or file that proves it is present, and
/// the package providing it per package manager.
struct Need {
    what: &'static str,
    present: fn() -> bool,
    apt: &'static str,
    dnf: &'static str,
    pacman: &'static str,
}

fn has_cmd(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn has_pkg_config(lib: &str) -> bool {
    Command::new("pkg-config")
        .args(["--exists", lib])
        .status()
        .is_ok_and(|s| s.success())
}

/// A library of this machine's own architecture (not another's that
/// multiarch put beside it, such as the arm64 client's).
fn has_lib(file: &str) -> bool {
    let multiarch = if cfg!(target_arch = "aarch64") {
        "/usr/lib/aarch64-linux-gnu"
    } else {
        "/usr/lib/x86_64-linux-gnu"
    };
    [multiarch, "/usr/lib64", "/usr/lib"]
        .iter()
        .any(|d| Path::new(d).join(file).exists())
}

/// A library `name.N` in `dir`, whatever its N.
fn has_versioned(dir: &str, name: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.flatten().any(|e| {
            e.file_name()
                .to_str()
                .and_then(|f| f.strip_prefix(name)?.strip_prefix('.'))
                .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit()))
        })
    })
}

/// PostgreSQL's server programs: on PATH, or where Debian
/// (`/usr/lib/postgresql/N/bin`) or Fedora (`/usr/pgsql-N/bin`) put them.
fn has_postgres() -> bool {
    let in_dir = |root: &str, prefix: &str| {
        std::fs::read_dir(root).is_ok_and(|d| {
            d.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with(prefix)
                    && e.path().join("bin/postgres").is_file()
                    && e.path().join("bin/initdb").is_file()
            })
        })
    };
    (has_cmd("postgres") && has_cmd("initdb"))
        || in_dir("/usr/lib/postgresql", "")
        || in_dir("/usr", "pgsql-")
}

fn needs(extras: &Extras) -> Vec<Need> {
    let mut v = vec![
        Need {
            what: "pkg-config",
            present: || has_cmd("pkg-config"),
            apt: "pkg-config",
            dnf: "pkgconf-pkg-config",
            pacman: "pkgconf",
        },
        Need {
            what: "C/C++ compiler",
            present: || has_cmd("c++"),
            apt: "g++",
            dnf: "gcc-c++",
            pacman: "gcc",
        },
        Need {
            what: "NASM (openh264's x86 assembly)",
            present: || has_cmd("nasm"),
            apt: "nasm",
            dnf: "nasm",
            pacman: "nasm",
        },
        Need {
            what: "ALSA headers",
            present: || has_pkg_config("alsa"),
            apt: "libasound2-dev",
            dnf: "alsa-lib-devel",
            pacman: "alsa-lib",
        },
        Need {
            what: "CMake (builds the bundled libopus)",
            present: || has_cmd("cmake"),
            apt: "cmake",
            dnf: "cmake",
            pacman: "cmake",
        },
        Need {
            what: "PulseAudio server and tools (sound tests)",
            present: || has_cmd("pulseaudio") && has_cmd("pactl") && has_cmd("parecord"),
            apt: "pulseaudio pulseaudio-utils",
            dnf: "pulseaudio pulseaudio-utils",
            pacman: "pulseaudio",
        },
        Need {
            what: "ALSA's PulseAudio plugin (cpal's ALSA output reaches the sound server)",
            present: || has_lib("alsa-lib/libasound_module_pcm_pulse.so"),
            apt: "libasound2-plugins",
            dnf: "alsa-plugins-pulseaudio",
            pacman: "alsa-plugins",
        },
        Need {
            what: "PulseAudio client headers (the host records a real desktop's sound)",
            present: || has_pkg_config("libpulse-simple"),
            apt: "libpulse-dev",
            dnf: "pulseaudio-libs-devel",
            pacman: "libpulse",
        },
        Need {
            what: "udev headers",
            present: || has_pkg_config("libudev"),
            apt: "libudev-dev",
            dnf: "systemd-devel",
            pacman: "systemd-libs",
        },
        Need {
            what: "D-Bus headers (the client reaches the Secret Service keychain)",
            present: || has_pkg_config("dbus-1"),
            apt: "libdbus-1-dev",
            dnf: "dbus-devel",
            pacman: "dbus",
        },
        Need {
            what: "a session bus and GNOME Keyring (the keychain tests' Secret Service)",
            present: || has_cmd("dbus-daemon") && has_cmd("gnome-keyring-daemon"),
            apt: "dbus-daemon gnome-keyring",
            dnf: "dbus-daemon gnome-keyring",
            pacman: "dbus gnome-keyring",
        },
        Need {
            what: "Xvfb",
            present: || has_cmd("Xvfb"),
            apt: "xvfb",
            dnf: "xorg-x11-server-Xvfb",
            pacman: "xorg-server-xvfb",
        },
        Need {
            what: "xdotool",
            present: || has_cmd("xdotool"),
            apt: "xdotool",
            dnf: "xdotool",
            pacman: "xdotool",
        },
        Need {
            what: "xwd and xlogo (window screenshots, a second window for focus tests)",
            present: || has_cmd("xwd") && has_cmd("xlogo"),
            apt: "x11-apps",
            dnf: "xwd",
            pacman: "xorg-xwd",
        },
        Need {
            what: "dpkg-deb, dpkg-shlibdeps, rsvg-convert, desktop-file-validate and appstreamcli (the .deb and its checks)",
            present: || {
                has_cmd("dpkg-deb")
                    && has_cmd("dpkg-shlibdeps")
                    && has_cmd("rsvg-convert")
                    && has_cmd("desktop-file-validate")
                    && has_cmd("appstreamcli")
            },
            apt: "dpkg dpkg-dev librsvg2-bin desktop-file-utils appstream",
            dnf: "dpkg dpkg-dev librsvg2-tools desktop-file-utils appstream",
            pacman: "dpkg librsvg desktop-file-utils appstream",
        },
        Need {
            what: "xclip (the clipboard test's other program)",
            present: || has_cmd("xclip"),
            apt: "xclip",
            dnf: "xclip",
            pacman: "xclip",
        },
        Need {
            what: "xprintidle (the screen-saver test reads the X server's idle time)",
            present: || has_cmd("xprintidle"),
            apt: "xprintidle",
            dnf: "xprintidle",
            pacman: "xprintidle",
        },
        Need {
            what: "xrandr (the X11 desktop test changes the screen's size)",
            present: || has_cmd("xrandr"),
            apt: "x11-xserver-utils",
            dnf: "xrandr",
            pacman: "xorg-xrandr",
        },
        Need {
            what: "xterm (the real program the X11 desktop tests type into)",
            present: || has_cmd("xterm"),
            apt: "xterm",
            dnf: "xterm",
            pacman: "xterm",
        },
        Need {
            what: "openbox (a window manager for the fullscreen and kiosk tests)",
            present: || has_cmd("openbox"),
            apt: "openbox",
            dnf: "openbox",
            pacman: "openbox",
        },
        Need {
            what: "libxkbcommon-x11",
            present: || has_lib("libxkbcommon-x11.so.0"),
            apt: "libxkbcommon-x11-0",
            dnf: "libxkbcommon-x11",
            pacman: "libxkbcommon-x11",
        },
        Need {
            what: "libXcursor",
            present: || has_lib("libXcursor.so.1"),
            apt: "libxcursor1",
            dnf: "libXcursor",
            pacman: "libxcursor",
        },
        Need {
            what: "libXrandr",
            present: || has_lib("libXrandr.so.2"),
            apt: "libxrandr2",
            dnf: "libXrandr",
            pacman: "libxrandr",
        },
        Need {
            what: "libXi",
            present: || has_lib("libXi.so.6"),
            apt: "libxi6",
            dnf: "libXi",
            pacman: "libxi",
        },
        Need {
            what: "libX11-xcb",
            present: || has_lib("libX11-xcb.so.1"),
            apt: "libx11-xcb1",
            dnf: "libX11-xcb",
            pacman: "libx11",
        },
        Need {
            what: "FFmpeg's libavcodec (the client's default decoder, the host's HEVC and AV1 encoders)",
            present: || {
                (58..=62).any(|v| {
                    has_lib(&format!("libavcodec.so.{v}"))
                        && has_lib(&format!("libavutil.so.{}", v - 2))
                })
            },
            apt: "libavcodec-dev",
            dnf: "libavcodec-free-devel",
            pacman: "ffmpeg",
        },
        Need {
            what: "PostgreSQL's server (the shared-directory tests and bench start one)",
            present: has_postgres,
            apt: "postgresql",
            dnf: "postgresql-server",
            pacman: "postgresql",
        },
        Need {
            what: "MinGW-w64 (Windows cross-build)",
            present: || has_cmd("x86_64-w64-mingw32-g++"),
            apt: "g++-mingw-w64-x86-64",
            dnf: "mingw64-gcc-c++",
            pacman: "mingw-w64-gcc",
        },
        Need {
            what: "an aarch64 cross GCC (the arm64 client)",
            present: || has_cmd("aarch64-linux-gnu-g++"),
            apt: "gcc-aarch64-linux-gnu g++-aarch64-linux-gnu",
            dnf: "gcc-c++-aarch64-linux-gnu",
            pacman: "aarch64-linux-gnu-gcc",
        },
        Need {
            what: "the arm64 libraries the client links (Debian's multiarch)",
            present: || {
                let arm64 = Path::new("/usr/lib/aarch64-linux-gnu");
                ["alsa.pc", "libudev.pc", "dbus-1.pc"]
                    .iter()
                    .all(|pc| arm64.join("pkgconfig").join(pc).is_file())
                    && arm64.join("libstdc++.so.6").exists()
            },
            apt: "libasound2-dev:arm64 libudev-dev:arm64 libdbus-1-dev:arm64 libstdc++6:arm64",
            // Neither has multiarch libraries: a sysroot is needed there.
            dnf: "",
            pacman: "",
        },
        Need {
            what: "qemu-user (runs the arm64 client's tests)",
            present: || has_cmd("qemu-aarch64"),
            apt: "qemu-user",
            dnf: "qemu-user",
            pacman: "qemu-user",
        },
        Need {
            what: "weston and Mesa's software GL (the Wayland window test's headless compositor)",
            present: || {
                has_cmd("weston") && has_cmd("weston-screenshooter") && has_lib("dri/swrast_dri.so")
            },
            apt: "weston libgl1-mesa-dri libegl-mesa0",
            dnf: "weston mesa-dri-drivers mesa-libEGL",
            pacman: "weston mesa",
        },
        Need {
            what: "Xorg with its dummy driver (an X11 host whose screen takes new modes)",
            present: || has_cmd("Xorg") && has_lib("xorg/modules/drivers/dummy_drv.so"),
            apt: "xserver-xorg-core xserver-xorg-video-dummy",
            dnf: "xorg-x11-server-Xorg xorg-x11-drv-dummy",
            pacman: "xorg-server xf86-video-dummy",
        },
        Need {
            what: "rpmbuild (the client's .rpm)",
            present: || has_cmd("rpmbuild"),
            apt: "rpm",
            dnf: "rpm-build",
            pacman: "rpm-tools",
        },
        Need {
            what: "Wine (the Windows client's tests run it)",
            present: || {
                has_cmd("wine")
                    && (has_cmd("wine64") || Path::new("/usr/lib/wine/wine64").is_file())
            },
            apt: "wine wine64",
            dnf: "wine-core",
            pacman: "wine",
        },
        Need {
            what: "wixl, msiinfo and icotool (the Windows installer, its icon and its check)",
            present: || has_cmd("wixl") && has_cmd("msiinfo") && has_cmd("icotool"),
            apt: "wixl msitools icoutils",
            dnf: "msitools icoutils",
            pacman: "msitools icoutils",
        },
    ];
    if extras.bench {
        v.push(Need {
            what: "ffmpeg (benchmark anchor)",
            present: || has_cmd("ffmpeg"),
            apt: "ffmpeg",
            dnf: "ffmpeg-free",
            pacman: "ffmpeg",
        });
        v.push(Need {
            what: "FFmpeg's arm64 libraries (the arm64 decode bench and its anchor, under qemu)",
            present: || {
                ["libavcodec.so", "libavfilter.so", "libavdevice.so"]
                    .iter()
                    .all(|l| has_versioned("/usr/lib/aarch64-linux-gnu", l))
            },
            // Debian 12's sonames; the arm64 ffmpeg program is unpacked by
            // the bench (it is not co-installable with this machine's).
            apt: "libavcodec59:arm64 libavfilter8:arm64 libavformat59:arm64 libavdevice59:arm64 \
                  libavutil57:arm64 libswscale6:arm64 libswresample4:arm64 libpostproc56:arm64 \
                  libsdl2-2.0-0:arm64",
            dnf: "",
            pacman: "",
        });
    }
    v
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub fn setup(extras: &Extras) -> Result<()> {
    if !cfg!(target_os = "linux") {
        eprintln!(
            "xtask setup: only Linux packages are automated; see README.md for other systems"
        );
        return Ok(());
    }
    let all = needs(extras);
    let missing: Vec<&Need> = all.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        check_nasm()?;
        ensure_cargo_tools()?;
        return ensure_cross_targets();
    }
    let names: Vec<&str> = missing.iter().map(|n| n.what).collect();
    eprintln!("xtask setup: missing {}", names.join(", "));
    let (manager, pkgs): (&str, Vec<&str>) = if has_cmd("apt-get") {
        ("apt-get", missing.iter().map(|n| n.apt).collect())
    } else if has_cmd("dnf") {
        ("dnf", missing.iter().map(|n| n.dnf).collect())
    } else if has_cmd("pacman") {
        ("pacman", missing.iter().map(|n| n.pacman).collect())
    } else {
        bail!(
            "no supported package manager (apt-get, dnf, pacman); install by hand: {}",
            names.join(", ")
        );
    };
    // An entry may name several packages.
    let mut pkgs: Vec<&str> = pkgs.iter().flat_map(|p| p.split_whitespace()).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    let install: Vec<String> = match manager {
        "apt-get" => ["apt-get", "install", "-y", "--no-install-recommends"]
            .iter()
            .map(|s| s.to_string())
            .chain(pkgs.iter().map(|s| s.to_string()))
            .collect(),
        "dnf" => ["dnf", "install", "-y"]
            .iter()
            .map(|s| s.to_string())
            .chain(pkgs.iter().map(|s| s.to_string()))
            .collect(),
        _ => ["pacman", "-S", "--needed", "--noconfirm"]
            .iter()
            .map(|s| s.to_string())
            .chain(pkgs.iter().map(|s| s.to_string()))
            .collect(),
    };
    if !is_root() {
        bail!(
            "xtask setup: run this as root, then retry:\n  sudo {}{}",
            if manager == "apt-get" {
                "apt-get update && sudo "
            } else {
                ""
            },
            install.join(" ")
        );
    }
    if manager == "apt-get" {
        if pkgs.iter().any(|p| p.ends_with(":arm64")) {
            // Debian installs another architecture's libraries once dpkg
            // is told of it.
            run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
        }
        run(Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::io::stderr()))?;
    }
    // Package managers talk on stdout; keep stdout for results (bench's JSON lines).
    run(Command::new(&install[0])
        .args(&install[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::io::stderr()))?;
    let still: Vec<&str> = needs(extras)
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| n.what)
        .collect();
    if !still.is_empty() {
        bail!(
            "xtask setup: still missing after installing: {}",
            still.join(", ")
        );
    }
    check_nasm()?;
    ensure_cargo_tools()?;
    ensure_cross_targets()
}

/// Cargo tools the project runs, installed by setup when missing:
/// (command, crate, extra `cargo install` arguments).
const CARGO_TOOLS: [(&str, &str, &[&str]); 2] = [
    ("cargo-fuzz", "cargo-fuzz", &[]),
    // Without default features: no advisory-database fetching over git,
    // which this project's checks do not use (see deny.toml).
    ("cargo-deny", "cargo-deny", &["--no-default-features"]),
];

/// Installs the cargo tools that are missing (a few minutes, once).
fn ensure_cargo_tools() -> Result<()> {
    for (cmd, krate, extra) in CARGO_TOOLS {
        if has_cmd(cmd) {
            continue;
        }
        eprintln!("xtask setup: installing {krate} (once; a few minutes)");
        run(cargo()
            .args(["install", "--locked", krate])
            .args(extra)
            .stdout(std::io::stderr()))?;
    }
    Ok(())
}

/// The Rust target the client cross-builds for.
pub const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";

/// The Rust target of arm64 Linux thin clients.
pub const ARM64_TARGET: &str = "aarch64-unknown-linux-gnu";

/// The macOS targets the client is checked and linted for (through Zig:
/// Apple's SDK is not here, so nothing is linked).
pub const MACOS_TARGETS: [&str; 2] = ["aarch64-apple-darwin", "x86_64-apple-darwin"];

/// Adds the Windows, arm64 Linux and macOS targets to the Rust toolchain where it lacks
/// them, and Zig with cargo-zigbuild (from PyPI: Zig compiles the C parts
/// of the client's crates for macOS).
fn ensure_cross_targets() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the cross-builds need a rustup toolchain)")?;
    let installed = String::from_utf8_lossy(&installed.stdout).to_string();
    for target in [WINDOWS_TARGET, ARM64_TARGET]
        .into_iter()
        .chain(MACOS_TARGETS)
    {
        if !installed.lines().any(|l| l.trim() == target) {
            run(Command::new("rustup")
                .args(["target", "add", target])
                .stdout(std::io::stderr()))?;
        }
    }
    if !has_cmd("cargo-zigbuild") {
        eprintln!("xtask setup: installing Zig and cargo-zigbuild from PyPI (once)");
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "ziglang",
                "cargo-zigbuild",
            ])
            .stdout(std::io::stderr()))?;
    }
    Ok(())
}

/// NASM must actually run: openh264 falls back to plain C without it.
fn check_nasm() -> Result<()> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        return Ok(());
    }
    let out = Command::new("nasm")
        .arg("-v")
        .output()
        .context("running nasm -v")?;
    if !out.status.success() {
        bail!("nasm is installed but does not run; openh264 would build without its assembly");
    }
    Ok(())
}
