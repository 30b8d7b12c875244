//! The service under attack, each figure beside the same without it: a
//! real user's sign-ins while 200 guessers (each from its own loopback
//! address) try passwords, and a session's input round trip while another
//! session of the same host floods input.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{Server, emit, f, key_script};
use crate::{cargo, root, run};

/// Guessers in the attack.
const GUESSERS: u32 = 200;

pub fn security(nephele: &Path, dir: &Path) -> Result<()> {
    sign_in_under_guessing(nephele, dir)?;
    input_beside_a_flood(nephele, dir)
}

fn sign_in_under_guessing(nephele: &Path, dir: &Path) -> Result<()> {
    // The load generator: built like the tests (it is not what is measured).
    run(cargo().args(["build", "-p", "nephele-e2e", "--bin", "nephele-guess"]))?;
    let guess = root().join("target/debug/nephele-guess");
    let server = Server::start(nephele, dir, "security-signin", &[])?;
    let ca = server.state.join("ca.pem");
    let measure = |guessers: u32| -> Result<serde_json::Value> {
        let out = Command::new(&guess)
            .arg(&server.url)
            .arg(&ca)
            .args(["bench", "bench", &guessers.to_string(), "8"])
            .stdin(Stdio::null())
            .output()
            .context("running nephele-guess")?;
        if !out.status.success() {
            bail!("nephele-guess: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let quiet = measure(0)?;
    let attacked = measure(GUESSERS)?;
    let extra = serde_json::json!({
        "guessers": GUESSERS,
        "real_quiet": quiet["real"],
        "real_attacked": attacked["real"],
        "guesses": attacked["guesses"],
        "guess_answers": attacked["guess_answers"],
    });
    for q in ["p50", "p99"] {
        let key = format!("{q}_ms");
        emit(
            &format!("signin_{q}_{GUESSERS}_guessers"),
            (f(&attacked["real"], &key), "ms"),
            (
                "the same sign-ins without guessers",
                f(&quiet["real"], &key),
            ),
            extra.clone(),
        );
    }
    emit(
        &format!("signin_checks_per_s_{GUESSERS}_guessers"),
        (f(&attacked, "checks_per_s"), "per_s"),
        ("without guessers", f(&quiet, "checks_per_s")),
        extra,
    );
    Ok(())
}

fn input_beside_a_flood(nephele: &Path, dir: &Path) -> Result<()> {
    let keys = key_script(dir, 120)?;
    // 40,000 key events in 8 s: ten times what a session may send.
    let flood = dir.join("flood.txt");
    let script: String = (0..40_000u32)
        .map(|i| {
            let action = if i % 2 == 0 { "down" } else { "up" };
            format!("{} key KeyB {action}\n", 300 + i / 5)
        })
        .collect();
    std::fs::write(&flood, script)?;
    let session = |server: &Server, name: &str, script: &str, secs: &str| -> Command {
        let mut c = server.client(nephele, "connect");
        c.args(["--headless", "--no-audio", "--duration", secs])
            .args([
                "--width",
                "640",
                "--height",
                "360",
                "--input-script",
                script,
            ])
            .arg("--stats-json")
            .arg(dir.join(format!("{name}.json")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let stats = |name: &str| -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            dir.join(format!("{name}.json")),
        )?)?)
    };
    let server = Server::start(nephele, dir, "security-input", &[])?;
    run(&mut session(&server, "input-quiet", &keys, "8"))?;
    let quiet = stats("input-quiet")?;
    let flood = flood.display().to_string();
    let mut flooder = session(&server, "input-flooder", &flood, "10")
        .spawn()
        .context("starting the flooding session")?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let measured = run(&mut session(&server, "input-flooded", &keys, "8"));
    let _ = flooder.wait();
    measured?;
    let flooded = stats("input-flooded")?;
    let flooder = stats("input-flooder")?;
    let extra = serde_json::json!({
        "flooder_input_sent": flooder["input_sent"],
        "flooder_input_acked": flooder["input_acked"],
        "acked_quiet": quiet["input_acked"],
        "acked_flooded": flooded["input_acked"],
    });
    for q in ["p50", "p99"] {
        let key = format!("input_rtt_ms_{q}");
        emit(
            &format!("input_rtt_{q}_beside_a_flooding_session"),
            (f(&flooded, &key), "ms"),
            ("the same session alone", f(&quiet, &key)),
            extra.clone(),
        );
    }
    Ok(())
}
