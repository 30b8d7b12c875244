//! What the shipped client weighs: its stripped size, the H.264 encoder it
//! must not carry, and the crates it links, each beside the reference
//! service built in the same run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::emit;
use crate::{cargo, package};

/// Symbols of an H.264 encoder (openh264's encoder, x264).
const ENCODER_SYMBOLS: [&str; 3] = ["WelsEnc::", "WelsCreateSVCEncoder", "x264_encoder"];

/// The release `nephele` stripped (as packaged), against `nephele-server`
/// stripped from the same build (the brief's bar: 10 MB); the encoder
/// symbols in each (the client decodes only: none); the crates each links
/// (`cargo tree -e normal`).
pub fn client_size(nephele: &Path, dir: &Path) -> Result<()> {
    let server = nephele.with_file_name("nephele-server");
    let size = |bin: &Path, name: &str| -> Result<(f64, f64)> {
        let stripped = dir.join(format!("{name}.stripped"));
        crate::run(Command::new("strip").arg("-o").arg(&stripped).arg(bin))?;
        let mb = |p: &Path| -> Result<f64> {
            Ok(std::fs::metadata(p)
                .with_context(|| format!("{}", p.display()))?
                .len() as f64
                / 1e6)
        };
        Ok((mb(&stripped)?, mb(bin)?))
    };
    let (client_mb, client_unstripped) = size(nephele, "nephele")?;
    let (server_mb, _) = size(&server, "nephele-server")?;
    emit(
        "client_binary_stripped",
        (client_mb, "MB"),
        ("nephele-server stripped, same build", server_mb),
        serde_json::json!({
            "unstripped_mb": super::round3(client_unstripped),
            "encoder_symbols": encoder_symbols(nephele)?,
            "server_encoder_symbols": encoder_symbols(&server)?,
            "target_mb": 10,
        }),
    );
    let crates = |p: &str| -> Result<f64> {
        let tree =
            package::output(cargo().args(["tree", "-p", p, "-e", "normal", "--prefix", "none"]))?;
        let mut names: Vec<&str> = tree
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        names.sort_unstable();
        names.dedup();
        Ok(names.len() as f64)
    };
    emit(
        "client_crates_linked",
        (crates("nephele-client")?, "crates"),
        ("nephele-service", crates("nephele-service")?),
        serde_json::json!({}),
    );
    Ok(())
}

/// How many of `bin`'s symbols belong to an H.264 encoder.
fn encoder_symbols(bin: &Path) -> Result<usize> {
    let names = package::output(Command::new("nm").arg("-C").arg(bin))?;
    Ok(names
        .lines()
        .filter(|l| ENCODER_SYMBOLS.iter().any(|s| l.contains(s)))
        .count())
}
