//! The Windows installer: `packaging/windows/nephele.wxs` built by wixl
//! (Debian's msitools), with the icon rendered from the SVG (rsvg-convert)
//! and packed by icotool; checked by reading the MSI's tables back with
//! msiinfo and unpacking it with msiextract.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{fresh, identity, output};
use crate::{root, run};

/// The icon's sizes: the small ones as bitmaps, 256 as PNG (as Windows
/// stores large icons).
const ICO_SIZES: [u32; 4] = [16, 32, 48, 256];

/// Builds `nephele-VERSION-x64.msi` in `out` around `exe`.
pub fn build(exe: &Path, out: &Path, version: &str) -> Result<PathBuf> {
    let stage = fresh(&out.join("msi"))?;
    let svg = root().join("assets/icons/nephele.svg");
    let mut ico = Command::new("icotool");
    ico.arg("-c").arg("-o").arg(stage.join("nephele.ico"));
    for s in ICO_SIZES {
        let png = stage.join(format!("{s}.png"));
        run(Command::new("rsvg-convert")
            .args(["-w", &s.to_string(), "-h", &s.to_string(), "-o"])
            .arg(&png)
            .arg(&svg))?;
        if s >= 256 {
            ico.arg("-r");
        }
        ico.arg(&png);
    }
    run(&mut ico)?;
    // wixl takes sources by paths relative to where it runs, not absolute.
    let staged = stage.join("nephele.exe");
    if std::fs::hard_link(exe, &staged).is_err() {
        std::fs::copy(exe, &staged)
            .with_context(|| format!("copying {} to {}", exe.display(), staged.display()))?;
    }
    let msi = out.join(format!("nephele-{version}-x64.msi"));
    let define = |k: &str, v: &str| format!("{k}={v}");
    run(Command::new("wixl")
        .args(["-a", "x64", "-o"])
        .arg(&msi)
        .arg("-D")
        .arg(define("Version", version))
        .arg("-D")
        .arg(define("Bin", "nephele.exe"))
        .arg("-D")
        .arg(define("Icon", "nephele.ico"))
        .arg("-D")
        .arg(define("Manufacturer", identity::MAINTAINER_NAME))
        .arg("-D")
        .arg(define("Homepage", identity::HOMEPAGE))
        .arg("-D")
        .arg(define("UpgradeCode", identity::MSI_UPGRADE_CODE))
        .arg(root().join("packaging/windows/nephele.wxs"))
        .current_dir(&stage))?;
    eprintln!("xtask package: {}", msi.display());
    Ok(msi)
}

/// One table of `msi` as rows of tab-separated fields (msiinfo's export,
/// without its three header lines).
/// Binary fields (the icon's) are written as files under `scratch`.
fn table(msi: &Path, name: &str, scratch: &Path) -> Result<Vec<Vec<String>>> {
    let text = output(
        Command::new("msiinfo")
            .arg("export")
            .arg(msi)
            .arg(name)
            .current_dir(scratch),
    )?;
    Ok(text
        .lines()
        .skip(3)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// Reads the MSI back: the exe inside is `exe` byte for byte and lands in
/// Program Files\Nephele; the Start menu entry starts it with the icon;
/// Windows' app list shows the icon and homepage; the version and upgrade
/// code are set, and a newer installer replaces an older one.
pub fn verify(msi: &Path, exe: &Path, version: &str) -> Result<()> {
    let scratch = fresh(&msi.with_extension("unpacked"))?;
    let table = |name: &str| table(msi, name, &scratch);
    let props: Vec<(String, String)> = table("Property")?
        .into_iter()
        .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.clone())))
        .collect();
    let prop = |k: &str| {
        props
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let upgrade = format!("{{{}}}", identity::MSI_UPGRADE_CODE);
    for (k, want) in [
        ("ProductName", "Nephele"),
        ("ProductVersion", version),
        ("Manufacturer", identity::MAINTAINER_NAME),
        ("UpgradeCode", upgrade.as_str()),
        ("ARPPRODUCTICON", "NepheleIcon"),
        ("ARPURLINFOABOUT", identity::HOMEPAGE),
    ] {
        if !prop(k).eq_ignore_ascii_case(want) {
            bail!("{}: {k} is {:?}, not {want:?}", msi.display(), prop(k));
        }
    }
    let files = table("File")?;
    let size = std::fs::metadata(exe)?.len().to_string();
    if !files
        .iter()
        .any(|r| r.get(2).is_some_and(|n| n == "nephele.exe") && r.get(3) == Some(&size))
    {
        bail!(
            "{}: no nephele.exe of {size} bytes in {files:?}",
            msi.display()
        );
    }
    let dirs = table("Directory")?;
    if !dirs
        .iter()
        .any(|r| r[..] == ["INSTALLFOLDER", "ProgramFiles64Folder", "Nephele"])
    {
        bail!(
            "{}: not installed in Program Files\\Nephele: {dirs:?}",
            msi.display()
        );
    }
    let shortcuts = table("Shortcut")?;
    let start = shortcuts
        .iter()
        .find(|r| r.get(1).is_some_and(|d| d == "ProgramMenuFolder"))
        .with_context(|| format!("{}: no Start menu entry", msi.display()))?;
    if start.get(4).map(String::as_str) != Some("[INSTALLFOLDER]nephele.exe")
        || start.get(8).map(String::as_str) != Some("NepheleIcon")
    {
        bail!("{}: the Start menu entry is {start:?}", msi.display());
    }
    if !table("Icon")?
        .iter()
        .any(|r| r.first().is_some_and(|n| n == "NepheleIcon"))
    {
        bail!("{}: no icon", msi.display());
    }
    // Major upgrades: a row finding older versions of the same code.
    if !table("Upgrade")?
        .iter()
        .any(|r| r.first().is_some_and(|c| c.eq_ignore_ascii_case(&upgrade)))
    {
        bail!(
            "{}: a newer version would not replace this one",
            msi.display()
        );
    }
    let unpacked = scratch.join("files");
    std::fs::create_dir_all(&unpacked)?;
    run(Command::new("msiextract")
        .arg("-C")
        .arg(&unpacked)
        .arg(msi)
        .stdout(std::process::Stdio::null()))?;
    let inside = unpacked.join("Nephele/nephele.exe");
    let same = std::fs::read(&inside).with_context(|| format!("{} unpacked", inside.display()))?
        == std::fs::read(exe)?;
    std::fs::remove_dir_all(&scratch)?;
    if !same {
        bail!("{}: its nephele.exe is not the one built", msi.display());
    }
    Ok(())
}
