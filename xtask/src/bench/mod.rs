//! `cargo xtask bench`: every figure beside an anchor measured in the same
//! run, one JSON line each.

mod arm64;
mod network;
mod scale;
mod security;
mod service;
mod size;
mod sound;
mod video;
mod x11;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::procs::{Xvfb, first_line};
use crate::{build_release_client, root, run};

/// The benchmarks. Each prints one JSON object per line: `bench`, `value`,
/// `unit`, the `anchor` it is measured against in the same run,
/// `anchor_value`, their `ratio`, and the brief's `target` where it has one.
/// A group of bench lines.
type BenchGroup = fn(&Path, &Path) -> Result<()>;

/// `cargo xtask bench [GROUP...]`: every group, or the ones named.
pub fn bench(only: &[String]) -> Result<()> {
    let groups: [(&str, BenchGroup); 14] = [
        ("size", size::client_size),
        ("decode", video::decode_benches),
        ("scale", scale::scale),
        ("loopback", video::loopback_stream),
        ("loss", network::lossy_streams),
        ("blackout", network::blackout),
        ("saturated", network::saturated_link),
        ("continuity", network::continuity),
        ("sound", sound::sound),
        ("pop", network::pop_choice),
        ("x11", x11::x11_capture),
        ("security", security::security),
        ("service", service::service),
        ("arm64", arm64::arm64_decode),
    ];
    if let Some(bad) = only.iter().find(|o| !groups.iter().any(|(n, _)| n == o)) {
        let names: Vec<&str> = groups.iter().map(|(n, _)| *n).collect();
        bail!(
            "no bench group `{bad}`; the groups are {}",
            names.join(", ")
        );
    }
    let nephele = build_release_client()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    for (name, group) in groups {
        if only.is_empty() || only.iter().any(|o| o == name) {
            group(&nephele, &dir)?;
        }
    }
    Ok(())
}

/// Prints one bench line.
fn emit(
    bench: &str,
    (value, unit): (f64, &str),
    (anchor, anchor_value): (&str, f64),
    extra: serde_json::Value,
) {
    let ratio = if anchor_value.abs() > 1e-9 {
        value / anchor_value
    } else {
        f64::NAN
    };
    let mut line = serde_json::json!({
        "bench": bench,
        "value": round3(value),
        "unit": unit,
        "anchor": anchor,
        "anchor_value": round3(anchor_value),
        "ratio": if ratio.is_finite() { serde_json::json!(round3(ratio)) } else { serde_json::Value::Null },
    });
    if let (Some(l), serde_json::Value::Object(e)) = (line.as_object_mut(), extra) {
        l.extend(e);
    }
    println!("{line}");
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `nephele demo --headless` with `args` and returns its stats JSON.
fn demo_stats(nephele: &Path, dir: &Path, name: &str, args: &[&str]) -> Result<serde_json::Value> {
    let stats = dir.join(format!("{name}.json"));
    run(Command::new(nephele)
        .args(["demo", "--headless"])
        .args(args)
        .arg("--stats-json")
        .arg(&stats)
        .stderr(Stdio::null()))?;
    Ok(serde_json::from_str(&std::fs::read_to_string(&stats)?)?)
}

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// A script pressing and releasing KeyA every 50 ms from half a second in.
fn key_script(dir: &Path, events: u32) -> Result<String> {
    key_script_every(dir, events, 50)
}

/// A script pressing and releasing KeyA every `every_ms` from half a
/// second in.
fn key_script_every(dir: &Path, events: u32, every_ms: u32) -> Result<String> {
    let path = dir.join("keys.txt");
    let script: String = (0..events)
        .map(|i| {
            let action = if i % 2 == 0 { "down" } else { "up" };
            format!("{} key KeyA {action}\n", 500 + i * every_ms)
        })
        .collect();
    std::fs::write(&path, script)?;
    Ok(path.display().to_string())
}

/// `nephele-server all` on loopback with a `bench` account; stopped when dropped.
struct Server {
    child: std::process::Child,
    url: String,
    state: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts it with these extra arguments (no `--pop`: one PoP without delay).
    fn start(nephele: &Path, dir: &Path, name: &str, args: &[String]) -> Result<Self> {
        Self::start_on(nephele, dir, name, args, None)
    }

    /// Starts it as [`Server::start`], on these CPUs only (`taskset -c`) if given.
    fn start_on(
        nephele: &Path,
        dir: &Path,
        name: &str,
        args: &[String],
        cpus: Option<&str>,
    ) -> Result<Self> {
        let state = dir.join(name);
        let _ = std::fs::remove_dir_all(&state);
        let mut cmd = Command::new(nephele.with_file_name("nephele-server"));
        cmd.args(["all", "--listen", "127.0.0.1:0"])
            .args(["--directory-listen", "127.0.0.1:0"])
            .args(["--demo-user", "bench:bench", "--state-dir"])
            .arg(&state)
            .args(args);
        if let Some(cpus) = cpus {
            cmd = on_cpus(&cmd, cpus);
        }
        // Its log beside its state, for a look after a failed run.
        let log = dir.join(format!("{name}.log"));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting nephele-server all")?;
        let url = first_line(&mut child)?;
        let server = Self {
            child,
            url,
            state,
            log,
        };
        if server.url.is_empty() {
            bail!("nephele-server all printed no directory URL");
        }
        Ok(server)
    }

    /// The first gateway's own socket, behind the delay relay its PoP is
    /// listed at (as `all` says on standard error before it prints the URL).
    fn gateway_socket(&self) -> Result<String> {
        let log = std::fs::read_to_string(&self.log)?;
        log.lines()
            .find_map(|l| l.split_once("its own socket ")?.1.split_whitespace().next())
            .map(str::to_string)
            .context("nephele-server all did not say where its gateway listens")
    }

    /// `nephele SUBCOMMAND` signed in to this server as `bench`.
    fn client(&self, nephele: &Path, subcommand: &str) -> Command {
        let mut cmd = Command::new(nephele);
        cmd.args([
            subcommand,
            "--directory",
            &self.url,
            "--user",
            "bench",
            "--ca",
        ])
        .arg(self.state.join("ca.pem"))
        .env("NEPHELE_PASSWORD", "bench");
        cmd
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cmd` (program, arguments, environment and directory; not its standard
/// streams) as run by `taskset -c CPUS`: on these CPUs only.
fn on_cpus(cmd: &Command, cpus: &str) -> Command {
    let mut pinned = Command::new("taskset");
    pinned
        .args(["-c", cpus])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => pinned.env(key, value),
            None => pinned.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        pinned.current_dir(dir);
    }
    pinned
}

/// Runs a command to completion; returns its CPU seconds, wall seconds and stdout.
fn timed(cmd: &mut Command) -> Result<(f64, f64, String)> {
    let cpu_before = children_cpu_s();
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((
        children_cpu_s() - cpu_before,
        wall,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// CPU seconds (user + system) used by waited-for children so far.
fn children_cpu_s() -> f64 {
    // /proc/self/stat fields 16 and 17: cutime and cstime in clock ticks.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name, field 3 (state) is index 0; cutime is field 16.
    (ticks(13) + ticks(14)) / 100.0
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_s_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields count from after its ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, fields 14 and 15.
    (ticks(11) + ticks(12)) / 100.0
}
