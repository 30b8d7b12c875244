//! The service under load, each figure beside a route that does no work in
//! the same run: sign-ins, session creations and heartbeats a second at
//! the directory, on its embedded database (redb) and on a PostgreSQL
//! server started for the run, and QUIC handshakes a second at one gateway
//! beside HTTPS requests that each open a new TLS connection.
//!
//! The load comes from `nephele-load` (tests/src/bin), run on the same
//! machine as `nephele-server all`: both share its CPUs, so a figure is
//! what this machine does with the load generator's own work on it too.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{Server, emit, f};
use crate::procs::first_line;
use crate::{cargo, root, run};

/// Seconds each load runs.
const SECONDS: &str = "5";

/// Concurrent requests of the directory loads.
const WORKERS: &str = "8";

/// Concurrent handshakes of the QUIC load.
const QUIC_WORKERS: &str = "16";

pub fn service(nephele: &Path, dir: &Path) -> Result<()> {
    // The load generator is built like the tests (it is not what is measured).
    run(cargo().args([
        "build",
        "-p",
        "nephele-e2e",
        "--bin",
        "nephele-load",
        "--bin",
        "nephele-pg",
    ]))?;
    let server = Server::start(nephele, dir, "service-load", &[])?;
    directory_loads(&server, "redb")?;
    quic_loads(&server, "redb")?;
    drop(server);
    // The same directory loads with the state on a PostgreSQL server of
    // the system's, on this machine, with its default settings (every
    // commit flushed to disk).
    let pg_dir = dir.join("service-postgres");
    let _ = std::fs::remove_dir_all(&pg_dir);
    std::fs::create_dir_all(&pg_dir)?;
    let mut pg = Command::new(root().join("target/debug/nephele-pg"))
        .arg(&pg_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting nephele-pg")?;
    let url = first_line(&mut pg)?;
    if url.is_empty() {
        bail!(
            "nephele-pg started no PostgreSQL server (is `postgresql` installed? `cargo xtask setup`)"
        );
    }
    let server = Server::start(
        nephele,
        dir,
        "service-load-postgres",
        &["--database".into(), url],
    )?;
    let measured =
        directory_loads(&server, "postgresql").and_then(|()| quic_loads(&server, "postgresql"));
    drop(server);
    // Its input closed, it stops the server.
    drop(pg.stdin.take());
    let _ = pg.wait();
    measured
}

/// `nephele-load OP` against `server`, its JSON answer.
fn load(server: &Server, op: &str, workers: &str, extra: &[String]) -> Result<serde_json::Value> {
    let out = Command::new(root().join("target/debug/nephele-load"))
        .arg(&server.url)
        .arg(server.state.join("ca.pem"))
        .arg(&server.state)
        .args([op, SECONDS, workers])
        .args(extra)
        .output()
        .with_context(|| format!("running nephele-load {op}"))?;
    if !out.status.success() {
        bail!(
            "nephele-load {op}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .with_context(|| format!("nephele-load {op} printed {text:?}"))?;
    if f(&v, "count") < 1.0 {
        bail!("nephele-load {op} got no answer as asked: {v}");
    }
    Ok(v)
}

/// Sign-ins, session creations and heartbeats a second at the directory
/// of `server`, keeping its state on `database`.
fn directory_loads(server: &Server, database: &str) -> Result<()> {
    let load = |op: &str, workers: &str, extra: &[String]| load(server, op, workers, extra);
    let route = load("route", WORKERS, &[])?;
    let anchor = (
        "GET /v1/public-key (a route without work) on kept-alive connections",
        f(&route, "per_s"),
    );
    let extra = |v: &serde_json::Value, more: serde_json::Value| {
        let mut e = serde_json::json!({
            "database": database,
            "workers": v["workers"],
            "errors": v["errors"],
            "seconds": v["seconds"],
        });
        if let (Some(e), serde_json::Value::Object(m)) = (e.as_object_mut(), more) {
            e.extend(m);
        }
        e
    };
    let signin = load("signin", WORKERS, &[])?;
    emit(
        &format!("service_signins_per_s_{database}"),
        (f(&signin, "per_s"), "per_s"),
        anchor,
        extra(
            &signin,
            serde_json::json!({
                // The argon2 crate's defaults, which the directory hashes with.
                "argon2": "Argon2id v19, m=19456 KiB, t=2, p=1",
            }),
        ),
    );
    let create = load("create", WORKERS, &[])?;
    emit(
        &format!("service_session_creations_per_s_{database}"),
        (f(&create, "per_s"), "per_s"),
        anchor,
        extra(&create, serde_json::json!({})),
    );
    let beats = load("heartbeat", WORKERS, &[])?;
    emit(
        &format!("service_heartbeats_per_s_{database}_1000_gateways_1000_hosts"),
        (f(&beats, "per_s"), "per_s"),
        anchor,
        extra(&beats, serde_json::json!({})),
    );
    Ok(())
}

/// QUIC handshakes a second at one gateway of `server` (whose directory
/// keeps its state on `database`: each handshake's session is made there).
fn quic_loads(server: &Server, database: &str) -> Result<()> {
    let load = |op: &str, workers: &str, extra: &[String]| load(server, op, workers, extra);
    let tls = load("tls", WORKERS, &[])?;
    let quic = load("quic", QUIC_WORKERS, &[server.gateway_socket()?])?;
    emit(
        &format!("service_quic_handshakes_per_s_one_gateway_{database}"),
        (f(&quic, "per_s"), "per_s"),
        (
            "HTTPS requests at the directory, each on a new TCP and TLS connection",
            f(&tls, "per_s"),
        ),
        serde_json::json!({
            "workers": quic["workers"],
            "errors": quic["errors"],
            "anchor_workers": tls["workers"],
        }),
    );
    Ok(())
}
