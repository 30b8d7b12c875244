//! The service under attack, each figure beside the same without it: a
//! real user's sign-ins while 200 guessers (each from its own loopback
//! address) try passwords, a session's input round trip while another
//! session of the same host floods input, and the same while QUIC Initials
//! flood its gateway.
//!
//! Each is measured in [`ROUNDS`] rounds, quiet and attacked alternating
//! on the same server, so both see the same machine; a line gives the
//! median round of each and lists every round's figures. (On a shared
//! 2-core machine one stall of a few milliseconds moves a p99 of a single
//! run by more than any attack here.)

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{Server, emit, f, key_script_every, median};
use crate::{cargo, root, run};

/// Guessers in the attack.
const GUESSERS: u32 = 200;

/// Rounds of each measurement, quiet and attacked alternating.
const ROUNDS: usize = 3;

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
    let measure = |server: &Server, guessers: u32| -> Result<serde_json::Value> {
        let out = Command::new(&guess)
            .arg(&server.url)
            .arg(server.state.join("ca.pem"))
            .args(["bench", "bench", &guessers.to_string(), "8"])
            .stdin(Stdio::null())
            .output()
            .context("running nephele-guess")?;
        if !out.status.success() {
            bail!("nephele-guess: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        // A directory of its own each round: the guessers' addresses held
        // back in one round would make the next round's attack a cheap one.
        let server = Server::start(nephele, dir, "security-signin", &[])?;
        let quiet = measure(&server, 0)?;
        rounds.push((measure(&server, GUESSERS)?, quiet));
    }
    let (attacked, quiet) = &rounds[rounds.len() - 1];
    let extra = serde_json::json!({
        "guessers": GUESSERS,
        "rounds": ROUNDS,
        "real_quiet_last_round": quiet["real"],
        "real_attacked_last_round": attacked["real"],
        "guesses_last_round": attacked["guesses"],
        "guess_answers_last_round": attacked["guess_answers"],
    });
    let real = |r: &serde_json::Value, key: &str| f(&r["real"], key);
    for q in ["p50", "p99"] {
        let key = format!("{q}_ms");
        emit_rounds(
            &format!("signin_{q}_{GUESSERS}_guessers"),
            "ms",
            &rounds,
            |r| real(r, &key),
            "the same sign-ins without guessers",
            &extra,
        );
    }
    emit_rounds(
        &format!("signin_checks_per_s_{GUESSERS}_guessers"),
        "per_s",
        &rounds,
        |r| f(r, "checks_per_s"),
        "without guessers",
        &extra,
    );
    Ok(())
}

/// One line: the median round's figure under attack beside the median
/// round's without, every round's pair listed.
fn emit_rounds(
    bench: &str,
    unit: &str,
    rounds: &[(serde_json::Value, serde_json::Value)],
    figure: impl Fn(&serde_json::Value) -> f64,
    anchor: &str,
    extra: &serde_json::Value,
) {
    let pairs: Vec<(f64, f64)> = rounds
        .iter()
        .map(|(attacked, quiet)| (figure(attacked), figure(quiet)))
        .collect();
    let mut extra = extra.clone();
    extra["rounds_attacked_quiet"] = serde_json::json!(pairs);
    emit(
        bench,
        (median(pairs.iter().map(|p| p.0).collect()), unit),
        (anchor, median(pairs.iter().map(|p| p.1).collect())),
        extra,
    );
}

fn input_beside_a_flood(nephele: &Path, dir: &Path) -> Result<()> {
    let keys = key_script_every(dir, KEY_EVENTS, 17)?;
    // 40,000 key events in 8 s, more than a session may send: the client
    // sends them as fast as it lets itself (nine tenths of the gateway's
    // input rate), so the gateway relays every one to the host.
    let flood = dir.join("flood.txt");
    let script: String = (0..40_000u32)
        .map(|i| {
            let action = if i % 2 == 0 { "down" } else { "up" };
            format!("{} key KeyB {action}\n", 300 + i / 5)
        })
        .collect();
    std::fs::write(&flood, script)?;
    let server = Server::start(nephele, dir, "security-input", &[])?;
    let flood = flood.display().to_string();
    let mut rounds = Vec::new();
    let mut flooders = Vec::new();
    for i in 0..ROUNDS {
        let quiet = format!("input-quiet-{i}");
        run(&mut session(nephele, dir, &server, &quiet, &keys, "8"))?;
        let (flooder, flooded) = (format!("input-flooder-{i}"), format!("input-flooded-{i}"));
        let mut flooding = session(nephele, dir, &server, &flooder, &flood, "10")
            .spawn()
            .context("starting the flooding session")?;
        std::thread::sleep(std::time::Duration::from_secs(1));
        let measured = run(&mut session(nephele, dir, &server, &flooded, &keys, "8"));
        let _ = flooding.wait();
        measured?;
        rounds.push((stats(dir, &flooded)?, stats(dir, &quiet)?));
        flooders.push(stats(dir, &flooder)?);
    }
    let extra = serde_json::json!({
        "flooder_input_sent": flooders.iter().map(|s| s["input_sent"].clone()).collect::<Vec<_>>(),
        "flooder_input_acked": flooders.iter().map(|s| s["input_acked"].clone()).collect::<Vec<_>>(),
        "acked_quiet": rounds.iter().map(|r| r.1["input_acked"].clone()).collect::<Vec<_>>(),
        "acked_flooded": rounds.iter().map(|r| r.0["input_acked"].clone()).collect::<Vec<_>>(),
    });
    emit_rtt(
        "beside_a_flooding_session",
        &rounds,
        "the same session alone",
        &extra,
    );
    Ok(())
}

/// The input round trip's p50 and p99 under an attack, beside the same
/// session's without it.
fn emit_rtt(
    under: &str,
    rounds: &[(serde_json::Value, serde_json::Value)],
    anchor: &str,
    extra: &serde_json::Value,
) {
    for q in ["p50", "p99"] {
        let key = format!("input_rtt_ms_{q}");
        emit_rounds(
            &format!("input_rtt_{q}_{under}"),
            "ms",
            rounds,
            |s| f(s, &key),
            anchor,
            extra,
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
    let (mut rounds, mut floods) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let (quiet, flooded) = (
            format!("initials-quiet-{i}"),
            format!("initials-flooded-{i}"),
        );
        run(&mut session(nephele, dir, &server, &quiet, &keys, "8"))?;
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
        let measured = run(&mut session(nephele, dir, &server, &flooded, &keys, "8"));
        let mut report = String::new();
        std::io::Read::read_to_string(&mut out, &mut report)?;
        let status = flooder.wait()?;
        measured?;
        if !status.success() {
            bail!("nephele-initials failed");
        }
        floods.push(serde_json::from_str::<serde_json::Value>(report.trim())?);
        rounds.push((stats(dir, &flooded)?, stats(dir, &quiet)?));
    }
    let sum = |k: &str| floods.iter().map(|r| f(r, k)).sum::<f64>();
    let sent = sum("bytes_sent");
    let extra = serde_json::json!({
        "initials_per_s": INITIALS_PER_S,
        "initials_sent": floods.iter().map(|r| r["initials"].clone()).collect::<Vec<_>>(),
        "bytes_back_per_byte_sent": if sent > 0.0 { sum("bytes_back") / sent } else { 0.0 },
        "acked_quiet": rounds.iter().map(|r| r.1["input_acked"].clone()).collect::<Vec<_>>(),
        "acked_flooded": rounds.iter().map(|r| r.0["input_acked"].clone()).collect::<Vec<_>>(),
        "frames_presented_flooded": rounds.iter().map(|r| r.0["frames_presented"].clone()).collect::<Vec<_>>(),
    });
    emit_rtt(
        "under_an_initial_flood",
        &rounds,
        "the same session without the flood",
        &extra,
    );
    Ok(())
}
