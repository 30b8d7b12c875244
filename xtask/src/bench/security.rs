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
//!
//! The Initial flood is sent to the gateway's own socket, past the delay
//! relay `nephele-server all` puts in front of it to stand for the network
//! (forwarding the flood through it cost the service's core more than the
//! gateway's own work did).
//!
//! On a real service the attacker is another machine. So where the machine
//! has two CPUs or more, the attack's load generators run on the last CPU
//! and everything else (the service, the measured client or real user) on
//! the others, quiet rounds included: a figure then tells what the attack
//! costs the service, not what the load generator's own work costs the
//! machine it shares. Each line says which CPUs each side had.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{Server, emit, f, key_script_every, median, on_cpus};
use crate::{cargo, root, run};

/// Guessers in the attack.
const GUESSERS: u32 = 200;

/// Rounds of each measurement, quiet and attacked alternating.
const ROUNDS: usize = 5;

/// Key events of the measured sessions, 17 ms apart (7 s of an 8 s
/// session): enough that a p99 is not one or two stalls of the machine.
const KEY_EVENTS: u32 = 400;

/// QUIC Initials a second in the flood (what froze a session for 7.6 s
/// before the gateway sent Retry).
const INITIALS_PER_S: u32 = 6000;

/// Where each side runs: the service and the measured clients, and the
/// attack's load generators.
struct Cpus {
    service: Option<String>,
    attack: Option<String>,
}

impl Cpus {
    /// The last CPU this process may use for the attack, the others for
    /// the service; nothing pinned on a machine of one CPU.
    fn split() -> Self {
        let allowed = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|l| cpu_list(l.trim()))
            })
            .unwrap_or_default();
        match allowed.split_last() {
            Some((last, rest)) if !rest.is_empty() => Self {
                service: Some(
                    rest.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                attack: Some(last.to_string()),
            },
            _ => Self {
                service: None,
                attack: None,
            },
        }
    }

    fn service(&self, cmd: Command) -> Command {
        pin(cmd, self.service.as_deref())
    }

    fn attack(&self, cmd: Command) -> Command {
        pin(cmd, self.attack.as_deref())
    }

    /// For a line's extra fields.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "service_cpus": self.service.as_deref().unwrap_or("all"),
            "attack_cpus": self.attack.as_deref().unwrap_or("all"),
        })
    }
}

fn pin(cmd: Command, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => on_cpus(&cmd, cpus),
        None => cmd,
    }
}

/// `0-3,6,8-9` as the CPUs it names.
fn cpu_list(list: &str) -> Vec<u32> {
    list.split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((a, b)) => Some((a.trim().parse().ok()?..=b.trim().parse().ok()?).collect()),
            None => Some(vec![part.trim().parse().ok()?]),
        })
        .flatten()
        .collect()
}

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
    let cpus = Cpus::split();
    sign_in_under_guessing(nephele, dir, &cpus)?;
    input_beside_a_flood(nephele, dir, &cpus)?;
    input_under_an_initial_flood(nephele, dir, &cpus)
}

fn sign_in_under_guessing(nephele: &Path, dir: &Path, cpus: &Cpus) -> Result<()> {
    let guess = root().join("target/debug/nephele-guess");
    let command = |server: &Server, user: &str, guessers: u32| {
        let mut c = Command::new(&guess);
        c.arg(&server.url).arg(server.state.join("ca.pem")).args([
            user,
            "bench",
            &guessers.to_string(),
            "8",
        ]);
        c
    };
    let spawn = |cmd: Command, what: &str| -> Result<std::process::Child> {
        let mut cmd = cmd;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting nephele-guess for {what}"))
    };
    let report = |child: std::process::Child| -> Result<serde_json::Value> {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nephele-guess: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = String::from_utf8_lossy(&out.stdout);
        let last = out
            .lines()
            .last()
            .context("nephele-guess printed nothing")?;
        Ok(serde_json::from_str(last)?)
    };
    // Waits for `ready`: the real user signed in once, its device known.
    let ready = |child: &mut std::process::Child| -> Result<()> {
        use std::io::BufRead as _;
        let out = child.stdout.as_mut().context("nephele-guess's output")?;
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("nephele-guess did not get ready: {line:?}");
        }
        Ok(())
    };
    // The guessers and the real user are processes of their own, each on
    // its side's CPUs.
    let measure = |server: &Server, guessers: u32| -> Result<serde_json::Value> {
        let mut real = spawn(cpus.service(command(server, "bench", 0)), "the real user")?;
        ready(&mut real)?;
        let attack = match guessers {
            0 => None,
            n => Some(spawn(cpus.attack(command(server, "-", n)), "the guessers")?),
        };
        let real = report(real)?;
        let Some(attack) = attack else {
            return Ok(real);
        };
        let attack = report(attack)?;
        Ok(serde_json::json!({
            "real": real["real"],
            "guesses": attack["guesses"],
            "guess_answers": attack["guess_answers"],
            "checks_per_s": f(&real, "checks_per_s") + f(&attack, "checks_per_s"),
        }))
    };
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        // A directory of its own each round: the guessers' addresses held
        // back in one round would make the next round's attack a cheap one.
        let server = Server::start_on(
            nephele,
            dir,
            "security-signin",
            &[],
            cpus.service.as_deref(),
        )?;
        let quiet = measure(&server, 0)?;
        rounds.push((measure(&server, GUESSERS)?, quiet));
    }
    let (attacked, quiet) = &rounds[rounds.len() - 1];
    let mut extra = cpus.json();
    extra["guessers"] = GUESSERS.into();
    extra["rounds"] = ROUNDS.into();
    extra["real_quiet_last_round"] = quiet["real"].clone();
    extra["real_attacked_last_round"] = attacked["real"].clone();
    extra["guesses_last_round"] = attacked["guesses"].clone();
    extra["guess_answers_last_round"] = attacked["guess_answers"].clone();
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

fn input_beside_a_flood(nephele: &Path, dir: &Path, cpus: &Cpus) -> Result<()> {
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
    let server = Server::start_on(nephele, dir, "security-input", &[], cpus.service.as_deref())?;
    let flood = flood.display().to_string();
    let mut rounds = Vec::new();
    let mut flooders = Vec::new();
    for i in 0..ROUNDS {
        let quiet = format!("input-quiet-{i}");
        measured(nephele, dir, &server, &quiet, &keys, cpus)?;
        let (flooder, flooded) = (format!("input-flooder-{i}"), format!("input-flooded-{i}"));
        let mut flooding = session(nephele, dir, &server, &flooder, &flood, "10", &cpus.attack)
            .spawn()
            .context("starting the flooding session")?;
        std::thread::sleep(std::time::Duration::from_secs(1));
        let result = measured(nephele, dir, &server, &flooded, &keys, cpus);
        let _ = flooding.wait();
        result?;
        rounds.push((stats(dir, &flooded)?, stats(dir, &quiet)?));
        flooders.push(stats(dir, &flooder)?);
    }
    let quiet: Vec<_> = rounds.iter().map(|r| r.1.clone()).collect();
    let flooded: Vec<_> = rounds.iter().map(|r| r.0.clone()).collect();
    let mut extra = cpus.json();
    extra["flooder_input_sent"] = column(&flooders, "input_sent");
    extra["flooder_input_acked"] = column(&flooders, "input_acked");
    extra["acked_quiet"] = column(&quiet, "input_acked");
    extra["acked_flooded"] = column(&flooded, "input_acked");
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

/// The measured session: 8 s of `keys` on the service's CPUs.
fn measured(
    nephele: &Path,
    dir: &Path,
    server: &Server,
    name: &str,
    keys: &str,
    cpus: &Cpus,
) -> Result<()> {
    run(&mut session(
        nephele,
        dir,
        server,
        name,
        keys,
        "8",
        &cpus.service,
    ))
}

/// A headless 640×360 session of `secs` seconds playing `script`, its
/// stats to `dir/NAME.json`, on these CPUs if given.
fn session(
    nephele: &Path,
    dir: &Path,
    server: &Server,
    name: &str,
    script: &str,
    secs: &str,
    cpus: &Option<String>,
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
        .arg(dir.join(format!("{name}.json")));
    let mut c = pin(c, cpus.as_deref());
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// `key` of each of `v`.
fn column(v: &[serde_json::Value], key: &str) -> serde_json::Value {
    v.iter().map(|s| s[key].clone()).collect()
}

fn stats(dir: &Path, name: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.join(format!("{name}.json")),
    )?)?)
}

fn input_under_an_initial_flood(nephele: &Path, dir: &Path, cpus: &Cpus) -> Result<()> {
    use std::io::BufRead as _;
    let keys = key_script_every(dir, KEY_EVENTS, 17)?;
    let server = Server::start_on(
        nephele,
        dir,
        "security-initials",
        &[],
        cpus.service.as_deref(),
    )?;
    // The flood goes to the gateway's own socket: the delay relay `all`
    // lists in front of it stands for the network, which on a real service
    // is not the service's CPU. The measured session goes through it, quiet
    // and flooded alike.
    let gateway = server.gateway_socket()?;
    let (mut rounds, mut floods) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let (quiet, flooded) = (
            format!("initials-quiet-{i}"),
            format!("initials-flooded-{i}"),
        );
        measured(nephele, dir, &server, &quiet, &keys, cpus)?;
        let mut flooder = Command::new(root().join("target/debug/nephele-initials"));
        flooder
            .arg(&server.url)
            .arg(server.state.join("ca.pem"))
            .args(["bench", "bench", &INITIALS_PER_S.to_string(), "11"])
            .arg(&gateway);
        let mut flooder = cpus
            .attack(flooder)
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
        let result = measured(nephele, dir, &server, &flooded, &keys, cpus);
        let mut report = String::new();
        std::io::Read::read_to_string(&mut out, &mut report)?;
        let status = flooder.wait()?;
        result?;
        if !status.success() {
            bail!("nephele-initials failed");
        }
        floods.push(serde_json::from_str::<serde_json::Value>(report.trim())?);
        rounds.push((stats(dir, &flooded)?, stats(dir, &quiet)?));
    }
    let sum = |k: &str| floods.iter().map(|r| f(r, k)).sum::<f64>();
    let sent = sum("bytes_sent");
    let quiet: Vec<_> = rounds.iter().map(|r| r.1.clone()).collect();
    let flooded: Vec<_> = rounds.iter().map(|r| r.0.clone()).collect();
    let mut extra = cpus.json();
    extra["initials_per_s"] = INITIALS_PER_S.into();
    extra["initials_to"] = "the gateway's own socket, past its delay relay".into();
    extra["initials_sent"] = column(&floods, "initials");
    extra["bytes_back_per_byte_sent"] = (if sent > 0.0 {
        sum("bytes_back") / sent
    } else {
        0.0
    })
    .into();
    extra["acked_quiet"] = column(&quiet, "input_acked");
    extra["acked_flooded"] = column(&flooded, "input_acked");
    extra["frames_presented_flooded"] = column(&flooded, "frames_presented");
    emit_rtt(
        "under_an_initial_flood",
        &rounds,
        "the same session without the flood",
        &extra,
    );
    Ok(())
}
