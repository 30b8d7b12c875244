//! Debug information apart from the binary, as Debian's `dh_strip` does:
//! the binary is stripped of it and of its symbol table, and a `.debug`
//! file under `/usr/lib/debug/.build-id/` (where debuggers look it up by
//! the binary's build ID) keeps it for the `-dbgsym` package.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::{Arch, output};
use crate::run;

/// Moves `bin`'s debug information into `symbols` (a package's staging
/// root) and strips `bin`, linking the two; the build ID.
pub fn split(bin: &Path, symbols: &Path, arch: &Arch) -> Result<String> {
    let id = build_id(bin)?;
    let (head, rest) = id.split_at(2);
    let file = symbols.join(format!("usr/lib/debug/.build-id/{head}/{rest}.debug"));
    std::fs::create_dir_all(file.parent().context("a path with a parent")?)?;
    run(Command::new(arch.tool("objcopy"))
        .args(["--only-keep-debug", "--compress-debug-sections=zlib"])
        .arg(bin)
        .arg(&file))?;
    run(Command::new(arch.tool("strip"))
        .args(["--strip-all", "--remove-section=.comment"])
        .arg(bin))?;
    run(Command::new(arch.tool("objcopy"))
        .arg(format!("--add-gnu-debuglink={}", file.display()))
        .arg(bin))?;
    Ok(id)
}

/// The binary's GNU build ID, in hex.
pub fn build_id(bin: &Path) -> Result<String> {
    let notes = output(Command::new("readelf").arg("-n").arg(bin))?;
    notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .map(str::to_string)
        .with_context(|| format!("{} has no build ID", bin.display()))
}

/// The binary's section names.
pub fn sections(bin: &Path) -> Result<Vec<String>> {
    let table = output(Command::new("readelf").args(["-S", "-W"]).arg(bin))?;
    Ok(table
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.starts_with('[')
                .then(|| l.split_once(']')?.1.split_whitespace().next())
                .flatten()
                .map(str::to_string)
        })
        .collect())
}
