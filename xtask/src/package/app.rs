//! The macOS app bundle, `Nephele.app`, laid out the same way here and on
//! a Mac: `Contents/Info.plist` (version and bundle id filled in),
//! `Contents/MacOS/` with the launcher Finder starts and the client beside
//! it, and `Contents/Resources/nephele.icns`, the icon set macOS wants
//! (16 to 512 points at 1× and 2×, rendered from the SVG). On a Mac,
//! `packaging/macos/build-app.sh` builds the client, has this put it in
//! place and signs the bundle; here the client cannot be linked (no
//! Apple SDK), so the bundle is checked with its place empty.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use icns::{IconFamily, IconType, Image};

use super::{fresh, identity};
use crate::{root, run};

/// The icon set iconutil makes from a full `.iconset`.
const ICONSET: [IconType; 10] = [
    IconType::RGBA32_16x16,
    IconType::RGBA32_16x16_2x,
    IconType::RGBA32_32x32,
    IconType::RGBA32_32x32_2x,
    IconType::RGBA32_128x128,
    IconType::RGBA32_128x128_2x,
    IconType::RGBA32_256x256,
    IconType::RGBA32_256x256_2x,
    IconType::RGBA32_512x512,
    IconType::RGBA32_512x512_2x,
];

/// The program Finder starts (Info.plist's CFBundleExecutable), and the
/// client it starts from its own directory.
const LAUNCHER: &str = "nephele-launcher";
const CLIENT: &str = "nephele";

/// Lays out `out/Nephele.app`, with `client` (a macOS build of `nephele`)
/// in its place when there is one; the bundle's path.
pub fn build(out: &Path, version: &str, client: Option<&Path>) -> Result<PathBuf> {
    let app = fresh(&out.join("Nephele.app"))?;
    let contents = app.join("Contents");
    let macos = contents.join("MacOS");
    let resources = contents.join("Resources");
    std::fs::create_dir_all(&macos)?;
    std::fs::create_dir_all(&resources)?;
    let template = std::fs::read_to_string(root().join("packaging/macos/Info.plist"))?;
    std::fs::write(
        contents.join("Info.plist"),
        template
            .replace("@VERSION@", version)
            .replace("@APP_ID@", identity::APP_ID),
    )?;
    // Finder starts apps without arguments: the launcher opens the
    // configured desktop.
    let launcher = macos.join(LAUNCHER);
    std::fs::write(
        &launcher,
        format!("#!/bin/sh\nexec \"$(dirname \"$0\")/{CLIENT}\" connect \"$@\"\n"),
    )?;
    executable(&launcher)?;
    if let Some(client) = client {
        std::fs::copy(client, macos.join(CLIENT))
            .with_context(|| format!("copying {}", client.display()))?;
        executable(&macos.join(CLIENT))?;
    }
    icon_set(&resources.join("nephele.icns"), &out.join("iconset"))?;
    eprintln!("xtask package: {}", app.display());
    Ok(app)
}

/// Renders the SVG at every size of [`ICONSET`] (into `scratch`) and
/// writes them as one `.icns`.
fn icon_set(icns: &Path, scratch: &Path) -> Result<()> {
    let dir = fresh(scratch)?;
    let svg = root().join("assets/icons/nephele.svg");
    let mut family = IconFamily::new();
    for t in ICONSET {
        let px = t.pixel_width().to_string();
        let png = dir.join(format!("{px}.png"));
        if !png.exists() {
            run(Command::new("rsvg-convert")
                .args(["-w", &px, "-h", &px, "-o"])
                .arg(&png)
                .arg(&svg))?;
        }
        let image = Image::read_png(BufReader::new(std::fs::File::open(&png)?))
            .with_context(|| format!("reading {}", png.display()))?;
        family
            .add_icon_with_type(&image, t)
            .with_context(|| format!("adding the {px} px icon"))?;
    }
    family.write(std::fs::File::create(icns)?)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[cfg(unix)]
fn executable(file: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn executable(_: &Path) -> Result<()> {
    Ok(())
}

/// The bundle is what macOS needs to start and show it: Info.plist parses
/// and names an application with this version and id, an executable that
/// exists and starts the client from its place, and an icon file holding
/// every size at its pixel size; the client is in that place unless
/// `client_expected` is false (here, where it cannot be linked).
pub fn verify(app: &Path, version: &str, client_expected: bool) -> Result<()> {
    let contents = app.join("Contents");
    let plist = plist::Value::from_file(contents.join("Info.plist"))
        .context("Info.plist does not parse")?;
    let info = plist
        .as_dictionary()
        .context("Info.plist is no dictionary")?;
    let key = |k: &str| {
        info.get(k)
            .and_then(plist::Value::as_string)
            .with_context(|| format!("Info.plist has no {k}"))
    };
    for (k, want) in [
        ("CFBundlePackageType", "APPL"),
        ("CFBundleIdentifier", identity::APP_ID),
        ("CFBundleVersion", version),
        ("CFBundleShortVersionString", version),
        ("CFBundleExecutable", LAUNCHER),
    ] {
        if key(k)? != want {
            bail!("Info.plist's {k} is `{}`, not `{want}`", key(k)?);
        }
    }
    if info
        .get("NSHighResolutionCapable")
        .and_then(plist::Value::as_boolean)
        != Some(true)
    {
        bail!("Info.plist does not ask for Retina resolution");
    }
    if key("NSMicrophoneUsageDescription")?.len() < 20 {
        bail!("Info.plist does not say why the microphone is used");
    }
    let launcher = contents.join("MacOS").join(key("CFBundleExecutable")?);
    let script = std::fs::read_to_string(&launcher)
        .with_context(|| format!("the bundle's executable {}", launcher.display()))?;
    if !script.starts_with("#!/bin/sh\n")
        || !script.contains(&format!("\"$(dirname \"$0\")/{CLIENT}\" connect"))
    {
        bail!("{} does not start the client beside it", launcher.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(&launcher)?.permissions().mode() & 0o111 == 0 {
            bail!("{} is not executable", launcher.display());
        }
    }
    let client = contents.join("MacOS").join(CLIENT);
    if client_expected != client.is_file() {
        bail!(
            "{} is {}",
            client.display(),
            if client_expected { "missing" } else { "there" }
        );
    }
    let mut icon = key("CFBundleIconFile")?.to_string();
    if !icon.ends_with(".icns") {
        icon.push_str(".icns");
    }
    let icns = contents.join("Resources").join(&icon);
    let family = IconFamily::read(BufReader::new(
        std::fs::File::open(&icns).with_context(|| format!("the icon {}", icns.display()))?,
    ))?;
    for t in ICONSET {
        let image = family
            .get_icon_with_type(t)
            .with_context(|| format!("{icon} lacks {t:?}"))?;
        if (image.width(), image.height()) != (t.pixel_width(), t.pixel_height()) {
            bail!("{icon}'s {t:?} is {}×{}", image.width(), image.height());
        }
        // Drawn, not blank: the middle of the icon is opaque.
        let rgba = image.convert_to(icns::PixelFormat::RGBA);
        let (w, h) = (image.width() as usize, image.height() as usize);
        let centre = ((h / 2) * w + w / 2) * 4;
        if rgba.data()[centre + 3] == 0 {
            bail!("{icon}'s {t:?} is blank in the middle");
        }
    }
    eprintln!("xtask: {} has a complete layout", app.display());
    Ok(())
}
