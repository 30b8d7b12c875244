//! The service under attack, each figure beside the same without it: a
//! real user's sign-ins while 200 guessers (each from its own loopback
//! address) try passwords, a session's input round trip while another
//! session of the same host floods input, and the same while QUIC Initials
//! flood its gateway.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{Server, emit, f, key_script_every};
use crate::{cargo, root, run};

/// Guessers in the attack.
const GUESSERS: u32 = 200;

/// Key events of the measured sessions, 17 ms apart (7 s of an 8 s
/// session): enough that a p99 is not one or two stalls of the machine.
const KEY_EVENTS: u32 = 400;

/// QUIC Initials a second in the flood (what froze a session for 7.6 s
/// before the gateway sent Retry).
const INITIALS_PER_S: u32 = 6000;

pub fn security(nephele: &Path, dir: &Path) -> Result<()> {
    // The load generators: built like the tests (they are not what is measured).
    run(cargo().args([
        "build",
        "-p",
        "nephele-e2e",
        "--bin",
        "nephele-guess",
        "--bin",
        "nephele-initials",
    ]))?;
    sign_in_under_guessing(nephele, dir)?;
    input_beside_a_flood(nephele, dir)?;
    input_under_an_initial_flood(nephele, dir)
}

fn sign_in_under_guessing(nephele: &Path, dir: &Path) -> Result<()> {
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
    let keys = key_script_every(dir, KEY_EVENTS, 17)?;
    // 40,000 key events in 8 s: ten times what a session may send.
    let flood = dir.join("flood.txt");
    let script: String = (0..40_000u32)
        .map(|i| {
            let action = if i % 2 == 0 { "down" } else { "up" };
            format!("{} key KeyB {action}\n", 300 + i / 5)
        })
        .collect();
    std::fs::write(&flood, script)?;
    let server = Server::start(nephele, dir, "security-input", &[])?;
    run(&mut session(
        nephele,
        dir,
        &server,
        "input-quiet",
        &keys,
        "8",
    ))?;
    let quiet = stats(dir, "input-quiet")?;
    let flood = flood.display().to_string();
    let mut flooder = session(nephele, dir, &server, "input-flooder", &flood, "10")
        .spawn()
        .context("starting the flooding session")?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let measured = run(&mut session(
        nephele,
        dir,
        &server,
        "input-flooded",
        &keys,
        "8",
    ));
    let _ = flooder.wait();
    measured?;
    let flooded = stats(dir, "input-flooded")?;
    let flooder = stats(dir, "input-flooder")?;
    let extra = serde_json::json!({
        "flooder_input_sent": flooder["input_sent"],
        "flooder_input_acked": flooder["input_acked"],
        "acked_quiet": quiet["input_acked"],
        "acked_flooded": flooded["input_acked"],
    });
    emit_rtt(
        "beside_a_flooding_session",
        (&flooded, &quiet),
        "the same session alone",
        &extra,
    );
    Ok(())
}

/// The input round trip's p50 and p99 under an attack, beside the same
/// session's without it.
fn emit_rtt(
    under: &str,
    (attacked, quiet): (&serde_json::Value, &serde_json::Value),
    anchor: &str,
    extra: &serde_json::Value,
) {
    for q in ["p50", "p99"] {
        let key = format!("input_rtt_ms_{q}");
        emit(
            &format!("input_rtt_{q}_{under}"),
            (f(attacked, &key), "ms"),
            (anchor, f(quiet, &key)),
            extra.clone(),
        );
    }
}

/// A headless 640×360 session of `secs` seconds playing `script`, its
/// stats to `dir/NAME.json`.
fn session(
    nephele: &Path,
    dir: &Path,
    server: &Server,
    name: &str,
    script: &str,
    secs: &str,
) -> Command {
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
}

fn stats(dir: &Path, name: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.join(format!("{name}.json")),
    )?)?)
}

fn input_under_an_initial_flood(nephele: &Path, dir: &Path) -> Result<()> {
    use std::io::BufRead as _;
    let keys = key_script_every(dir, KEY_EVENTS, 17)?;
    let server = Server::start(nephele, dir, "security-initials", &[])?;
    run(&mut session(
        nephele,
        dir,
        &server,
        "initials-quiet",
        &keys,
        "8",
    ))?;
    let quiet = stats(dir, "initials-quiet")?;
    let mut flooder = Command::new(root().join("target/debug/nephele-initials"))
        .arg(&server.url)
        .arg(server.state.join("ca.pem"))
        .args(["bench", "bench", &INITIALS_PER_S.to_string(), "11"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting nephele-initials")?;
    let mut out = std::io::BufReader::new(flooder.stdout.take().context("its output")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "flooding" {
        bail!("nephele-initials did not start flooding: {line:?}");
    }
    let measured = run(&mut session(
        nephele,
        dir,
        &server,
        "initials-flooded",
        &keys,
        "8",
    ));
    let mut report = String::new();
    std::io::Read::read_to_string(&mut out, &mut report)?;
    let status = flooder.wait()?;
    measured?;
    if !status.success() {
        bail!("nephele-initials failed");
    }
    let flood: serde_json::Value = serde_json::from_str(report.trim())?;
    let flooded = stats(dir, "initials-flooded")?;
    let sent = f(&flood, "bytes_sent");
    let extra = serde_json::json!({
        "initials_per_s": INITIALS_PER_S,
        "initials_sent": flood["initials"],
        "bytes_back_per_byte_sent": if sent > 0.0 { f(&flood, "bytes_back") / sent } else { 0.0 },
        "acked_quiet": quiet["input_acked"],
        "acked_flooded": flooded["input_acked"],
        "frames_presented_flooded": flooded["frames_presented"],
    });
    emit_rtt(
        "under_an_initial_flood",
        (&flooded, &quiet),
        "the same session without the flood",
        &extra,
    );
    Ok(())
}
