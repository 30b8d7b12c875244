//! The client built for another platform and run through a translator
//! (Wine for Windows, qemu-user for arm64 Linux): the same checks for
//! each, so that a platform is held to what x86-64 Linux is.

use std::path::Path;
use std::process::Command;

use super::session::{Reap, exclusive, json, scratch};
use super::start_all;

/// How to run the foreign build.
pub struct Foreign<'a> {
    /// What the failures call it ("under Wine").
    pub name: &'a str,
    /// `nephele` with no arguments yet, ready to run.
    pub nephele: &'a dyn Fn() -> Command,
    /// A local path as the foreign program names it.
    pub path: &'a dyn Fn(&Path) -> String,
}

/// Every stream of `tests/data/h264` decodes through the built-in openh264
/// to its reference digest.
pub fn assert_conformance(f: &Foreign<'_>) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/h264");
    let sums = std::fs::read_to_string(data.join("SHA1SUMS")).unwrap();
    let cases: Vec<(&str, &str)> = sums.lines().filter_map(|l| l.split_once("  ")).collect();
    assert_eq!(cases.len(), 27, "the suite has 27 streams with digests");
    let mut failures = Vec::new();
    for (sum, file) in cases {
        let out = (f.nephele)()
            .args(["decode", "--sha1", "--decoder", "openh264"])
            .arg((f.path)(&data.join(file)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got = stdout.split_whitespace().next().unwrap_or("");
        if !out.status.success() || got != sum {
            failures.push(format!(
                "{file}: expected {sum}, got {got:?} ({}; {})",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}:\n{}", f.name, failures.join("\n"));
}

/// Against the x86-64 Linux service on loopback with two PoPs, 30 ms and
/// 2 ms away: the client signs in, probes both and picks the nearer,
/// presents pictures for `seconds` with no decode error, and every input
/// of its script is acknowledged and reaches the host.
pub fn assert_session(f: &Foreign<'_>, seconds: u32, min_frames: u64) {
    let _turn = exclusive();
    let dir = scratch("foreign-connect");
    let rec = dir.join("rec.jsonl");
    let (server, url) = start_all(
        &dir,
        &[
            "--pop",
            "pop-a:30",
            "--pop",
            "pop-b:2",
            "--record-input",
            rec.to_str().unwrap(),
        ],
    );
    let _server = Reap(server);
    std::fs::write(dir.join("script.txt"), "100 type hi\n300 move 10 20\n").unwrap();
    let out = (f.nephele)()
        .args(["connect", "--directory", &url, "--user", "alice"])
        .args(["--headless", "--duration", &seconds.to_string()])
        .arg("--ca")
        .arg((f.path)(&dir.join("state/ca.pem")))
        .arg("--stats-json")
        .arg((f.path)(&dir.join("s.json")))
        .arg("--input-script")
        .arg((f.path)(&dir.join("script.txt")))
        .env("NEPHELE_PASSWORD", "wonderland")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let name = f.name;
    assert!(out.status.success(), "{name}: {err}");
    assert!(
        err.contains("signing in to") && err.contains("probing 2 PoPs"),
        "{name}: {err}"
    );
    let s = json(&dir.join("s.json"));
    assert_eq!(s["pop"], "pop-b", "{name}, the nearer PoP: {s}");
    let frames = s["frames_presented"].as_u64().unwrap();
    assert!(frames >= min_frames, "{name}: {frames} frames: {s}");
    assert_eq!(s["decode_errors"], 0, "{name}: {s}");
    // "hi" is two key presses (four edges), then a move.
    assert_eq!(s["input_sent"], 5, "{name}: {s}");
    assert_eq!(s["input_acked"], 5, "{name}: {s}");
    let recorded = std::fs::read_to_string(&rec).unwrap();
    let moves = recorded.lines().filter(|l| l.contains("\"move\"")).count();
    assert_eq!(
        moves, 1,
        "{name}: the host got the pointer move: {recorded}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
