//! The Windows client (`nephele.exe`, cross-built with MinGW) run under
//! Wine: every conformance digest through its decode path, and a session
//! from sign-in and PoP probing to pictures and acknowledged input against
//! the Linux service on loopback; and the MSI installed, run and
//! uninstalled.
//!
//! Ignored by a plain `cargo test`, which does not build for Windows;
//! `cargo xtask test` builds the exe, then runs these with
//! `NEPHELE_WINDOWS_EXE` naming it and `NEPHELE_WINDOWS_MSI` its
//! installer.
//!
//! Wine 8 lacks `bcryptprimitives.dll`, which Rust's standard library
//! imports; the tests build a stand-in (`wine/bcryptprimitives.c`) into
//! the Wine prefix's system32. It is a fixture of these tests, never
//! shipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

mod common;
use common::foreign::{Foreign, assert_conformance, assert_session};
use common::need;

const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

/// A Wine prefix with the exe and the stand-in DLL in one directory.
struct Wine {
    dir: PathBuf,
    prefix: PathBuf,
}

impl Wine {
    /// `wine nephele.exe ARGS` in the prefix, from the exe's directory.
    fn nephele(&self, args: &[&str]) -> Command {
        let mut c = self.wine(&self.dir.join("nephele.exe"));
        c.args(args);
        c
    }

    /// `wine PROGRAM` in the prefix.
    fn wine(&self, program: &Path) -> Command {
        let mut c = Command::new("wine");
        c.arg(program)
            .current_dir(&self.dir)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            // No Mono or Gecko installers: nothing here uses .NET or HTML.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .stdin(Stdio::null());
        c
    }

    /// A Linux path as the Windows program names it (Wine's drive Z: is /).
    fn path(p: &Path) -> String {
        format!("Z:{}", p.display())
    }
}

fn windows_exe() -> PathBuf {
    let exe = std::env::var_os("NEPHELE_WINDOWS_EXE").map(PathBuf::from);
    let exe = exe.expect(
        "NEPHELE_WINDOWS_EXE is not set: `cargo xtask test` builds the Windows client and runs these",
    );
    assert!(exe.is_file(), "{} is not built", exe.display());
    exe
}

/// Sets up once per test binary: the stand-in DLL built, the exe copied
/// beside it, the prefix made, and a wineserver started that outlives each
/// program (so none of them starts one holding the test's pipes).
fn wine() -> &'static Wine {
    static WINE: OnceLock<Wine> = OnceLock::new();
    WINE.get_or_init(|| {
        need("wine");
        need(MINGW_GCC);
        let exe = windows_exe();
        // One place per build tree, cleared each run: a Wine prefix is
        // most of a gigabyte.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wine");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make the Wine directory");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine");
        let shim = dir.join("bcryptprimitives.dll");
        let built = Command::new(MINGW_GCC)
            .args(["-shared", "-O2", "-o"])
            .arg(&shim)
            .arg(fixture.join("bcryptprimitives.c"))
            .arg(fixture.join("bcryptprimitives.def"))
            .arg("-ladvapi32")
            .output()
            .expect("run MinGW's gcc");
        assert!(
            built.status.success(),
            "building the stand-in bcryptprimitives.dll: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        std::fs::copy(&exe, dir.join("nephele.exe")).expect("copy nephele.exe");
        let prefix = dir.join("prefix");
        let server = Command::new("wineserver")
            .args(["-p", "60"])
            .env("WINEPREFIX", &prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wineserver");
        // Reaped by the system when the test binary ends; it leaves by
        // itself a minute after its last program.
        std::mem::forget(server);
        let boot = Command::new("wine")
            .args(["wineboot", "--init"])
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .stdin(Stdio::null())
            .output()
            .expect("run wineboot");
        assert!(
            boot.status.success(),
            "wineboot: {}",
            String::from_utf8_lossy(&boot.stderr)
        );
        // Where Windows keeps its own DLLs, for the installed exe too.
        std::fs::copy(
            &shim,
            prefix.join("drive_c/windows/system32/bcryptprimitives.dll"),
        )
        .expect("put the stand-in DLL in system32");
        Wine { dir, prefix }
    })
}

impl Wine {
    /// The exe as the shared checks run it.
    fn foreign<'a>(&'a self, nephele: &'a dyn Fn() -> Command) -> Foreign<'a> {
        Foreign {
            name: "under Wine",
            nephele,
            path: &Wine::path,
        }
    }
}

#[test]
#[ignore = "needs the Windows build and Wine: cargo xtask test runs it"]
fn the_windows_exe_decodes_every_conformance_stream_under_wine() {
    let wine = wine();
    let help = wine.nephele(&["--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success() && text.contains("%APPDATA%"),
        "nephele.exe --help: {text}{}",
        String::from_utf8_lossy(&help.stderr)
    );
    // openh264 is built into the exe; FFmpeg's DLLs are not on this
    // Windows.
    assert_conformance(&wine.foreign(&|| wine.nephele(&[])));
}

#[test]
#[ignore = "needs the Windows build and Wine: cargo xtask test runs it"]
fn the_windows_exe_signs_in_probes_and_streams_with_input_acked_under_wine() {
    let wine = wine();
    assert_session(&wine.foreign(&|| wine.nephele(&[])), 3, 30);
}

#[test]
#[ignore = "needs the Windows build, its MSI and Wine: cargo xtask test runs it"]
fn the_msi_installs_the_exe_with_its_start_menu_entry_and_uninstalls_cleanly_under_wine() {
    let wine = wine();
    let msi = std::env::var_os("NEPHELE_WINDOWS_MSI")
        .map(PathBuf::from)
        .expect("NEPHELE_WINDOWS_MSI is not set: `cargo xtask test` builds the MSI and runs this");
    let drive_c = wine.prefix.join("drive_c");
    let installed = drive_c.join("Program Files/Nephele/nephele.exe");
    let msiexec = |verb: &str| {
        let out = wine
            .wine(Path::new("msiexec"))
            .args([verb, &Wine::path(&msi), "/qn"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "msiexec {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    msiexec("/i");
    assert!(
        std::fs::read(&installed).ok() == std::fs::read(windows_exe()).ok(),
        "{} is not the exe built",
        installed.display()
    );
    let shortcuts = || {
        let out = Command::new("find")
            .arg(&drive_c)
            .args(["-path", "*Start Menu/Programs/Nephele.lnk"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(!shortcuts().is_empty(), "no Start menu entry for Nephele");
    let version = wine
        .wine(Path::new("C:\\Program Files\\Nephele\\nephele.exe"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("nephele {}", env!("CARGO_PKG_VERSION")),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );
    msiexec("/x");
    assert!(
        !installed.exists(),
        "uninstalling left {}",
        installed.display()
    );
    assert_eq!(shortcuts(), "", "uninstalling left the Start menu entry");
}
