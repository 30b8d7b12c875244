//! The arm64 client, for thin clients: cross-built with Debian's aarch64
//! GCC against the arm64 multiarch libraries (`.cargo/config.toml` names
//! the linker and pkg-config's directory), packaged as an arm64 `.deb`,
//! and checked as a machine would take it: its fields, its Depends
//! resolved by apt for arm64, and the package installed into a scratch
//! root whose program runs under qemu-user.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use super::verify::{apt_would_install, decodes_reference_clip, dpkg_in, scratch_root};
use super::{Options, client_debs, cross_client, output, workspace_version};
use crate::setup::ARM64_TARGET;

/// A Debian architecture packages are made for.
pub struct Arch {
    /// Debian's name: amd64, arm64.
    pub deb: String,
    /// The GNU triplet of its binutils when they are a cross build's.
    cross: Option<&'static str>,
}

impl Arch {
    /// This machine's.
    pub fn native() -> Result<Self> {
        Ok(Arch {
            deb: output(Command::new("dpkg").arg("--print-architecture"))?,
            cross: None,
        })
    }

    pub fn arm64() -> Self {
        Arch {
            deb: "arm64".into(),
            cross: Some("aarch64-linux-gnu"),
        }
    }

    /// The binutils program `name` (objcopy, strip) that handles this
    /// architecture's binaries.
    pub fn tool(&self, name: &str) -> String {
        match self.cross {
            Some(triplet) => format!("{triplet}-{name}"),
            None => name.to_string(),
        }
    }
}

/// Builds the arm64 client (cargo does nothing when it is up to date);
/// its path.
pub fn arm64_client(debug: bool) -> Result<PathBuf> {
    Ok(cross_client(ARM64_TARGET, debug)?.join("nephele"))
}

/// `qemu-aarch64 PROGRAM`: an arm64 program run here.
pub fn under_qemu(program: &Path) -> Command {
    let mut c = Command::new("qemu-aarch64");
    c.arg(program);
    c
}

/// The arm64 client's packages.
pub struct Arm64Built {
    pub client: PathBuf,
    pub dbgsym: PathBuf,
}

/// `cargo xtask package --arch arm64`: the client's arm64 `.deb` and its
/// `-dbgsym` (the service runs in data centres, not on thin clients).
pub fn arm64(o: &Options) -> Result<Arm64Built> {
    let exe = arm64_client(o.debug)?;
    let (client, dbgsym, _) = client_debs(&exe, &o.out, &workspace_version()?, &Arch::arm64())?;
    Ok(Arm64Built { client, dbgsym })
}

/// The arm64 `.deb` says so, apt resolves its Depends for arm64, and
/// installed into a scratch root its program runs under qemu: its version,
/// and a conformance clip's digest; removal leaves nothing.
pub fn verify_arm64(built: &Arm64Built) -> Result<()> {
    let field = |f: &str| output(Command::new("dpkg-deb").arg("-f").arg(&built.client).arg(f));
    if field("Architecture")? != "arm64" || field("Package")? != "nephele" {
        bail!("{} is not nephele for arm64", built.client.display());
    }
    apt_would_install(&built.client, "nephele")?;
    let scratch = scratch_root(&built.client)?;
    for deb in [&built.client, &built.dbgsym] {
        dpkg_in(&scratch, &["-i", &deb.to_string_lossy()])?;
    }
    let bin = scratch.join("usr/bin/nephele");
    let machine = output(Command::new("readelf").arg("-h").arg(&bin))?;
    if !machine.contains("AArch64") {
        bail!("the arm64 package installs a program for another machine:\n{machine}");
    }
    let version = output(under_qemu(&bin).arg("--version"))?;
    if !version.contains(&workspace_version()?) {
        bail!("the installed arm64 nephele says it is `{version}`");
    }
    decodes_reference_clip(&mut under_qemu(&bin))?;
    dpkg_in(&scratch, &["-r", "nephele-dbgsym", "nephele"])?;
    let debug_dir = scratch.join("usr/lib/debug/.build-id");
    if bin.exists() || debug_dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("dpkg -r left the arm64 package's files behind");
    }
    eprintln!(
        "xtask: {} installs, runs under qemu and removes cleanly",
        built.client.display()
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}
