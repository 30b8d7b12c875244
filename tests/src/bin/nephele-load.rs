//! Load for `cargo xtask bench service`: WORKERS threads (tasks for
//! `quic`) doing one kind of request back to back for SECONDS against a
//! `nephele-server all` whose state is in STATE_DIR (its administrator's
//! and service keys are read from there).
//!
//! `nephele-load URL CA_PEM STATE_DIR OP SECONDS WORKERS [GATEWAY]` prints
//! one JSON object: `op`, `count` (requests answered as asked), `errors`,
//! `seconds`, `per_s`. OP is one of:
//!
//! * `route`: `GET /v1/public-key`, a route that does no work (the anchor),
//!   each worker on its own kept-alive connection;
//! * `tls`: the same on a new TCP and TLS connection each time;
//! * `signin`: each worker signs in as a user of its own (added first);
//! * `create`: each worker opens sessions, one after another, on a host
//!   enrolled here with room for all of them;
//! * `heartbeat`: 1,000 gateways and 1,000 hosts registered first, then
//!   their heartbeats in turn;
//! * `quic`: QUIC handshakes (TLS 1.3 included) at the gateway socket
//!   GATEWAY, each connection closed once it is up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nephele_api::DirectoryClient;
use nephele_api::admin::AdminRequest;
use nephele_api::directory::{GatewayInfo, HostHeartbeat, HostInfo};
use rustls::pki_types::CertificateDer;

/// Gateways and hosts the heartbeat load simulates, each.
const SIMULATED: usize = 1000;

struct Load {
    url: String,
    roots: Vec<CertificateDer<'static>>,
    service_key: String,
    admin_key: String,
}

impl Load {
    fn client(&self) -> Result<DirectoryClient> {
        Ok(DirectoryClient::new(&self.url, &self.roots)?)
    }

    fn admin(&self, req: AdminRequest) -> Result<()> {
        self.client()?.admin(&self.admin_key, &req)?;
        Ok(())
    }
}

/// Counts of one run.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    errors: AtomicU64,
}

impl Counts {
    fn add(&self, ok: bool) {
        let c = if ok { &self.ok } else { &self.errors };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, ca, state, op, seconds, workers, gateway) = match args.as_slice() {
        [u, c, s, o, secs, w, rest @ ..] if rest.len() <= 1 => (u, c, s, o, secs, w, rest.first()),
        _ => bail!("usage: nephele-load URL CA_PEM STATE_DIR OP SECONDS WORKERS [GATEWAY]"),
    };
    let run_for = Duration::from_secs_f64(seconds.parse().context("SECONDS")?);
    let workers: usize = workers.parse().context("WORKERS")?;
    let state = Path::new(state);
    let read = |f: &str| -> Result<String> {
        Ok(std::fs::read_to_string(state.join(f))
            .with_context(|| format!("reading {f} in {}", state.display()))?
            .trim()
            .to_string())
    };
    let load = Arc::new(Load {
        url: url.clone(),
        roots: nephele_api::trust::read_cert_pem(Path::new(ca))?,
        service_key: read("service.key")?,
        admin_key: read("admin.key")?,
    });
    let counts = Arc::new(Counts::default());
    let elapsed = match op.as_str() {
        "quic" => quic(
            &load,
            gateway.context("quic needs the GATEWAY socket")?,
            workers,
            run_for,
            &counts,
        )?,
        other => {
            let work = prepare(&load, other, workers)?;
            threads(workers, run_for, &counts, work)?
        }
    };
    let ok = counts.ok.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "op": op,
            "count": ok,
            "errors": counts.errors.load(Ordering::Relaxed),
            "seconds": elapsed,
            "per_s": ok as f64 / elapsed,
            "workers": workers,
        })
    );
    Ok(())
}

/// What worker `i` does once: whether it was answered as asked.
type Work = Arc<dyn Fn(usize, &mut u64) -> bool + Send + Sync>;

/// Runs `work` on `workers` threads for `run_for`; the seconds it took.
fn threads(workers: usize, run_for: Duration, counts: &Arc<Counts>, work: Work) -> Result<f64> {
    let start = Instant::now();
    let deadline = start + run_for;
    let mut handles = Vec::new();
    for i in 0..workers {
        let (counts, work) = (counts.clone(), work.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("nephele-load-{i}"))
                .spawn(move || {
                    let mut turn = 0u64;
                    while Instant::now() < deadline {
                        counts.add(work(i, &mut turn));
                        turn += 1;
                    }
                })?,
        );
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Sets up what `op` needs and returns its work.
fn prepare(load: &Arc<Load>, op: &str, workers: usize) -> Result<Work> {
    let clients: Vec<DirectoryClient> =
        (0..workers).map(|_| load.client()).collect::<Result<_>>()?;
    Ok(match op {
        "route" => Arc::new(move |i, _| clients[i].public_key().is_ok()),
        "tls" => {
            let load = load.clone();
            Arc::new(move |_, _| load.client().is_ok_and(|c| c.public_key().is_ok()))
        }
        "signin" => {
            let users = add_users(load, op, workers)?;
            Arc::new(move |i, _| clients[i].sign_in(&users[i], PASSWORD).is_ok())
        }
        "create" => {
            let users = add_users(load, op, workers)?;
            keep_host_with_room(load)?;
            let tokens: Vec<String> = users
                .iter()
                .zip(&clients)
                .map(|(u, c)| Ok(c.sign_in(u, PASSWORD)?.token))
                .collect::<Result<_>>()?;
            Arc::new(move |i, _| clients[i].create_session(&tokens[i], "demo", false).is_ok())
        }
        "heartbeat" => {
            let keys = register_simulated(load, &clients)?;
            Arc::new(move |i, turn| {
                // Each worker goes through its share of the members.
                let n = (i + *turn as usize * clients.len()) % keys.len();
                let (id, key, host) = &keys[n];
                if *host {
                    clients[i]
                        .host_heartbeat(key, id, &HostHeartbeat::default())
                        .is_ok_and(|a| a.is_some())
                } else {
                    clients[i].heartbeat(key, id, 0.1).unwrap_or(false)
                }
            })
        }
        other => bail!("no op `{other}`: route, tls, signin, create, heartbeat or quic"),
    })
}

const PASSWORD: &str = "load-test-password";

/// Users `OP-N` (each may open the demo desktop), added through the
/// administration API.
fn add_users(load: &Load, op: &str, n: usize) -> Result<Vec<String>> {
    (0..n)
        .map(|i| {
            let user = format!("{op}-{i}");
            load.admin(AdminRequest::UserAdd {
                tenant: "default".into(),
                user: user.clone(),
                password: PASSWORD.into(),
                grants: vec!["demo".into()],
            })?;
            Ok(user)
        })
        .collect()
}

/// A host with room for every session the run opens, enrolled and kept
/// alive on a thread of its own (its heartbeats never report a session).
fn keep_host_with_room(load: &Arc<Load>) -> Result<()> {
    let dir = load.client()?;
    let info = HostInfo {
        id: "load-host".into(),
        site: "load".into(),
        address: "127.0.0.1:9".into(),
        capacity: u32::MAX,
    };
    let key = dir
        .register_host(&load.service_key, &info)?
        .gateway_key
        .context("no host key issued")?;
    std::thread::Builder::new()
        .name("nephele-load-host".into())
        .spawn(move || {
            loop {
                let _ = dir.host_heartbeat(&key, "load-host", &HostHeartbeat::default());
                std::thread::sleep(Duration::from_millis(500));
            }
        })?;
    Ok(())
}

/// Registers the simulated gateways and hosts (each issued its own key),
/// spread over the clients; (id, key, is a host) of each.
fn register_simulated(
    load: &Load,
    clients: &[DirectoryClient],
) -> Result<Vec<(String, String, bool)>> {
    let mut out = Vec::with_capacity(2 * SIMULATED);
    for i in 0..SIMULATED {
        let c = &clients[i % clients.len()];
        let gw = GatewayInfo {
            id: format!("load-gw-{i}"),
            pop: format!("load-pop-{}", i % 20),
            region: "load".into(),
            address: "127.0.0.1:9".into(),
            probe_address: "127.0.0.1:9".into(),
            server_name: "localhost".into(),
            load: 0.0,
        };
        let key = c
            .register(&load.service_key, &gw)?
            .gateway_key
            .context("no gateway key issued")?;
        out.push((gw.id, key, false));
        let host = HostInfo {
            id: format!("load-host-{i}"),
            site: format!("load-pop-{}", i % 20),
            address: "127.0.0.1:9".into(),
            capacity: 16,
        };
        let key = c
            .register_host(&load.service_key, &host)?
            .gateway_key
            .context("no host key issued")?;
        out.push((host.id, key, true));
    }
    Ok(out)
}

/// QUIC handshakes at `gateway` from `workers` tasks for `run_for`; the
/// seconds it took.
fn quic(
    load: &Load,
    gateway: &str,
    workers: usize,
    run_for: Duration,
    counts: &Arc<Counts>,
) -> Result<f64> {
    let addr: std::net::SocketAddr = gateway.parse().context("GATEWAY")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let config = nephele_api::trust::quic_client_config(&load.roots)?;
    rt.block_on(async move {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(config);
        let start = Instant::now();
        let deadline = start + run_for;
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (endpoint, counts) = (endpoint.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let ok = match endpoint.connect(addr, "localhost") {
                        Ok(connecting) => match connecting.await {
                            Ok(c) => {
                                c.close(0u32.into(), b"");
                                true
                            }
                            Err(_) => false,
                        },
                        Err(_) => false,
                    };
                    counts.add(ok);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let took = start.elapsed().as_secs_f64();
        endpoint.wait_idle().await;
        Ok(took)
    })
}
