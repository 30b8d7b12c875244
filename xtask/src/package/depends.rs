//! A binary's Depends, as Debian's own packages state them: the packages
//! of the libraries it links, each at the lowest version that has every
//! symbol it uses (`dpkg-shlibdeps`, from the libraries' symbols files).
//!
//! Versions rather than one release's package names: `libasound2 (>=
//! 1.0.29)` installs on Debian 12, and on Ubuntu 24.04, whose
//! `libasound2t64` provides `libasound2` at its own version.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::{Arch, fresh, output};

/// The dependencies `bin` (an ELF binary built for `arch`) needs for what
/// it links; `scratch` is a directory it may use.
pub fn shlib_depends(bin: &Path, scratch: &Path, arch: &Arch) -> Result<Vec<String>> {
    // dpkg-shlibdeps reads the source package's debian/control from where
    // it runs; a minimal one will do.
    let dir = fresh(scratch)?;
    std::fs::create_dir_all(dir.join("debian"))?;
    std::fs::write(
        dir.join("debian/control"),
        "Source: nephele\n\nPackage: nephele\nArchitecture: any\n",
    )?;
    let printed = output(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(format!("-e{}", bin.display()))
            // The arm64 libraries' symbols files, for an arm64 binary.
            .env("DEB_HOST_ARCH", &arch.deb)
            .current_dir(&dir),
    );
    std::fs::remove_dir_all(&dir)?;
    // "shlibs:Depends=libasound2 (>= 1.0.29), libc6 (>= 2.35), …"
    let printed = printed?;
    let list = printed
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps printed no Depends for {}", bin.display()))?;
    Ok(list.split(", ").map(str::to_string).collect())
}
