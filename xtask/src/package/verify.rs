//! The packages installed into a scratch root with dpkg, as a machine
//! would, and checked.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Built, ICON_SIZES, app, debug, msi, output, rpm, workspace_version};
use crate::{root, run};

/// Installs the packages into a scratch root and checks what they
/// installed: the desktop entry and AppStream data validate, the entry's
/// command and icon exist, the icons have their sizes, the client runs
/// (help, version, a conformance clip's digest), the binaries are stripped
/// and their debug information sits where debuggers look, `nephele demo`
/// streams from the installed pair, the entry's command opens the launcher
/// that takes a person to their desktop, and removal leaves nothing
/// behind.
pub fn verify(built: &Built) -> Result<()> {
    msi::verify(&built.msi, &built.windows_exe, &workspace_version()?)?;
    app::verify(&built.macos_app, &workspace_version()?, false)?;
    rpm::verify(&built.rpm, &workspace_version()?)?;
    let deb = &built.client;
    let scratch = scratch_root(deb)?;
    let admin = scratch.join("var/lib/dpkg");
    let dpkg = |args: &[&str]| dpkg_in(&scratch, args);
    depends_resolve(built)?;
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
    // The decode path works from the installed binary.
    decodes_reference_clip(&mut Command::new(&bin))?;
    // The service beside it, and both programs' debug information.
    dpkg(&["-i", &built.server.to_string_lossy()])?;
    for d in &built.dbgsym {
        dpkg(&["-i", &d.to_string_lossy()])?;
    }
    let server = scratch.join("usr/bin/nephele-server");
    for b in [&bin, &server] {
        stripped_with_symbols_apart(b, &scratch)?;
    }
    let stats = scratch.join("demo.json");
    run(Command::new(&bin)
        .args(["demo", "--headless", "--no-audio", "--duration", "2"])
        .arg("--stats-json")
        .arg(&stats)
        .env_remove("NEPHELE_SERVER")
        .env("XDG_STATE_HOME", scratch.join("state"))
        .env("XDG_CONFIG_HOME", scratch.join("config")))?;
    let seen: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    if seen["frames_presented"].as_u64().unwrap_or(0) == 0 {
        bail!("the installed `nephele demo` showed no picture: {seen}");
    }
    // What a person does: the menu's entry, then the launcher by keys.
    super::menu::from_the_menu(&scratch, &exec)?;
    dpkg(&["-r", "nephele-dbgsym", "nephele-server-dbgsym"])?;
    dpkg(&["-r", "nephele", "nephele-server"])?;
    if bin.exists() || desktop.exists() || server.exists() {
        bail!("dpkg -r left the packages' files behind");
    }
    // dpkg removes the directories it emptied.
    let debug_dir = scratch.join("usr/lib/debug/.build-id");
    if debug_dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("dpkg -r left debug files behind");
    }
    eprintln!(
        "xtask: {} and its companions install, run and remove cleanly",
        deb.display()
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// `bin` carries neither symbols nor debug information, and its debug
/// file is installed where its build ID says, with the debug information.
fn stripped_with_symbols_apart(bin: &Path, scratch: &Path) -> Result<()> {
    let kept: Vec<String> = debug::sections(bin)?
        .into_iter()
        // .debug_gdb_scripts is loaded with the program (it names gdb's
        // pretty-printers); it is no debug information.
        .filter(|s| s == ".symtab" || (s.starts_with(".debug_") && s != ".debug_gdb_scripts"))
        .collect();
    if !kept.is_empty() {
        bail!("{} still holds {}", bin.display(), kept.join(", "));
    }
    let id = debug::build_id(bin)?;
    let (head, rest) = id.split_at(2);
    let file = scratch.join(format!("usr/lib/debug/.build-id/{head}/{rest}.debug"));
    let apart =
        debug::sections(&file).with_context(|| format!("{}'s debug file", bin.display()))?;
    if !apart.iter().any(|s| s == ".debug_line") || !apart.iter().any(|s| s == ".symtab") {
        bail!("{} lacks line tables or symbols", file.display());
    }
    Ok(())
}

/// The packages' Depends resolve against this machine's package sources,
/// as apt would install them (the scratch root's install forces them).
fn depends_resolve(built: &Built) -> Result<()> {
    apt_would_install(&built.client, "nephele")?;
    apt_would_install(&built.server, "nephele-server")
}

/// apt finds everything `deb` (the package `name`, of any architecture
/// this machine takes) depends on.
pub(super) fn apt_would_install(deb: &Path, name: &str) -> Result<()> {
    if Command::new("apt-get").arg("--version").output().is_err() {
        eprintln!("xtask package: no apt-get here; the Depends are not checked");
        return Ok(());
    }
    let plan = output(
        Command::new("apt-get")
            .args(["install", "--simulate", "--no-install-recommends"])
            .arg(deb),
    )
    .with_context(|| format!("{name}'s Depends do not resolve here"))?;
    // "Inst nephele (0.1.0 …)", or "Inst nephele:arm64 (…)" for another
    // architecture.
    if !plan.lines().any(|l| {
        l.strip_prefix("Inst ")
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|p| p.split(':').next() == Some(name))
    }) {
        bail!("apt would not install {name}:\n{plan}");
    }
    Ok(())
}

/// An empty dpkg database in a scratch directory beside `deb`.
pub(super) fn scratch_root(deb: &Path) -> Result<std::path::PathBuf> {
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
    Ok(scratch)
}

/// dpkg ARGS on the scratch root.
pub(super) fn dpkg_in(scratch: &Path, args: &[&str]) -> Result<()> {
    run(Command::new("dpkg")
        .arg(format!("--root={}", scratch.display()))
        // The scratch root has no libc6 and friends registered, nor another
        // architecture.
        .args([
            "--force-not-root",
            "--force-depends",
            "--force-architecture",
        ])
        .args(args)
        .stdout(std::io::stderr()))
}

/// `nephele decode --sha1` of a conformance clip, run by `cmd`, gives the
/// digest its manifest lists.
pub(super) fn decodes_reference_clip(cmd: &mut Command) -> Result<()> {
    let data = root().join("tests/data/h264");
    let manifest = std::fs::read_to_string(data.join("MANIFEST.tsv"))?;
    let want = manifest
        .lines()
        .find_map(|l| l.strip_prefix("BA_MW_D.264\t"))
        .and_then(|r| r.split('\t').next())
        .context("BA_MW_D.264 is not in the manifest")?;
    let got = output(cmd.args(["decode", "--sha1"]).arg(data.join("BA_MW_D.264")))?;
    if !got.starts_with(want) {
        bail!("the installed nephele decodes BA_MW_D.264 to `{got}`, not {want}");
    }
    Ok(())
}
