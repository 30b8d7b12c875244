//! The fuzz targets and their runner.

use anyhow::{Context, Result};

use crate::{cargo, root, run};

/// Every fuzz target in `fuzz/`, with the cargo feature it needs.
pub const TARGETS: &[(&str, Option<&str>)] = &[
    ("message", None),
    ("stream_frames", None),
    ("reassembly", None),
    ("input_receiver", None),
    ("probe", None),
    ("cores", None),
    ("token", Some("service")),
    ("h264", Some("client")),
];

/// The fuzz targets `cargo xtask test` runs briefly: every decoder of the
/// wire protocol and the session cores (the heavier token and H.264
/// targets build the service and client under the sanitizer and run in
/// `cargo xtask fuzz`).
pub const IN_TESTS: &[(&str, Option<&str>)] = &[
    ("message", None),
    ("stream_frames", None),
    ("reassembly", None),
    ("input_receiver", None),
    ("probe", None),
    ("cores", None),
];

/// Runs each target for `secs` under libFuzzer with AddressSanitizer; a
/// crash, a leak or a timeout fails (cargo fuzz keeps the input under
/// fuzz/artifacts). The machine's stable toolchain is enough with
/// RUSTC_BOOTSTRAP (the sanitizer flags are unstable options).
pub fn fuzz(targets: &[(&str, Option<&str>)], secs: u32) -> Result<()> {
    for (target, feature) in targets {
        let corpus = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let mut cmd = cargo();
        cmd.args(["fuzz", "run", "--fuzz-dir", "fuzz"]);
        if let Some(f) = feature {
            cmd.args(["--features", f]);
        }
        cmd.arg(target)
            .arg(&corpus)
            .args([
                "--".to_string(),
                format!("-max_total_time={secs}"),
                "-timeout=10".into(),
                "-rss_limit_mb=2048".into(),
                "-print_final_stats=1".into(),
            ])
            .env("RUSTC_BOOTSTRAP", "1");
        run(&mut cmd).with_context(|| format!("fuzz target `{target}` found a failure"))?;
    }
    Ok(())
}
