//! `nephele demo`: the whole reference service started in-process on
//! loopback — a directory with a demo account, three gateways posing as
//! three PoPs at different distances, and a desktop host — so the client
//! goes through sign-in, probing and QUIC exactly as against a real service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nephele_protocol::activity::IdlePolicy;

use nephele_service::embedded::{Embedded, EmbeddedError, EmbeddedOptions, PopSpec};
use nephele_service::host::{Host, HostConfig};
use nephele_service::impair::Impairment;
use rustls::pki_types::CertificateDer;

use crate::stats::Stats;

/// Errors starting the demo service.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A component failed to start.
    #[error(transparent)]
    Service(#[from] EmbeddedError),
    /// The runtime or the state directory could not be made.
    #[error("starting the demo service: {0}")]
    Io(std::io::Error),
}

/// The PoPs of the demo: name and round trip.
pub const DEMO_POPS: [(&str, u64); 3] = [("pop-near", 5), ("pop-mid", 25), ("pop-far", 60)];

/// The demo account's name.
pub const DEMO_USER: &str = "demo";

/// Demo service settings.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Passed to the host's `--record-input`.
    pub record_input: Option<PathBuf>,
    /// The network between the client and the PoPs.
    pub network: Impairment,
    /// The host's most bits per second per session (0: from the picture size).
    pub bitrate: u32,
    /// The demo desktop plays a video panel that changes every frame.
    pub motion: bool,
    /// The demo desktop plays a steady tone of this many hertz.
    pub tone_hz: Option<f32>,
    /// Where the host records the microphone (WAV).
    pub record_mic: Option<PathBuf>,
    /// The directory's idle policy.
    pub idle_policy: IdlePolicy,
}

/// Something the chaos plan does to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosAction {
    /// Kill the gateway the session goes through.
    KillGateway,
    /// Kill the host the session runs on.
    KillHost,
}

/// `--chaos kill-gateway@3s,kill-host@6s`: components killed (as a crash
/// would: no goodbyes) at those times after the first picture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chaos(pub Vec<(Duration, ChaosAction)>);

impl std::str::FromStr for Chaos {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut plan = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (what, at) = item
                .split_once('@')
                .ok_or_else(|| format!("`{item}` should be ACTION@TIME, as in kill-gateway@3s"))?;
            let action = match what {
                "kill-gateway" => ChaosAction::KillGateway,
                "kill-host" => ChaosAction::KillHost,
                other => {
                    return Err(format!(
                        "unknown chaos action `{other}`: use kill-gateway or kill-host"
                    ));
                }
            };
            let secs = at
                .strip_suffix("ms")
                .and_then(|v| v.parse::<f64>().ok().map(|v| v / 1000.0))
                .or_else(|| at.strip_suffix('s').and_then(|v| v.parse::<f64>().ok()))
                .filter(|s| s.is_finite() && (0.0..=86_400.0).contains(s))
                .ok_or_else(|| format!("`{at}` in `{item}` is not a time such as 3s or 500ms"))?;
            plan.push((Duration::from_secs_f64(secs), action));
        }
        plan.sort_by_key(|(t, _)| *t);
        Ok(Self(plan))
    }
}

/// The running service; stops when dropped.
pub struct DemoService {
    svc: Option<Embedded>,
    password: String,
    state_dir: PathBuf,
    // Dropped last: the service's tasks run on it.
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for DemoService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoService")
            .field("directory", &self.svc.as_ref().map(Embedded::url))
            .finish()
    }
}

/// A password for the demo account, fresh per run.
fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    // Hand-rolled from std's OS-seeded hasher: a throwaway password for a
    // loopback-only account does not justify an RNG dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    format!("{:016x}", h.finish())
}

impl DemoService {
    /// Starts the directory, the three PoPs and the host on 127.0.0.1 with
    /// ephemeral ports; the directory's state lives in a temporary directory.
    pub fn start(opts: DemoOptions) -> Result<Self, DemoError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nephele-demo-svc")
            .on_thread_start(|| {
                nephele_platform::sched::latency_critical();
            })
            .enable_all()
            .build()
            .map_err(DemoError::Io)?;
        let state_dir = std::env::temp_dir().join(format!(
            "nephele-demo-{}-{}",
            std::process::id(),
            random_password()
        ));
        let password = random_password();
        let svc = rt.block_on(Embedded::start(EmbeddedOptions {
            state_dir: state_dir.clone(),
            directory_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            demo_users: vec![(DEMO_USER.into(), password.clone())],
            pops: DEMO_POPS
                .iter()
                .map(|(name, ms)| PopSpec {
                    name: (*name).into(),
                    rtt: Duration::from_millis(*ms),
                })
                .collect(),
            host: HostConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                record_input: opts.record_input,
                bitrate: opts.bitrate,
                motion: opts.motion,
                tone_hz: opts.tone_hz,
                record_mic: opts.record_mic,
                ..HostConfig::default()
            },
            network: opts.network,
            idle_policy: opts.idle_policy,
        }));
        let svc = match svc {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&state_dir);
                return Err(e.into());
            }
        };
        Ok(Self {
            svc: Some(svc),
            password,
            state_dir,
            rt,
        })
    }

    fn svc(&self) -> &Embedded {
        // Only taken in Drop.
        self.svc
            .as_ref()
            .unwrap_or_else(|| unreachable!("service taken before drop"))
    }

    /// The directory's URL.
    pub fn directory_url(&self) -> String {
        self.svc().url()
    }

    /// The demo account: user name and password.
    pub fn credentials(&self) -> (&str, &str) {
        (DEMO_USER, &self.password)
    }

    /// The QUIC address of the nearest PoP's gateway itself (no added delay),
    /// for tests that connect directly.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.svc().pops[0].gateway.local_addr()
    }

    /// A session token the gateways accept, for direct connections.
    pub fn token(&self) -> Vec<u8> {
        self.svc()
            .session_token(Duration::from_secs(600))
            .map(String::into_bytes)
            .unwrap_or_default()
    }

    /// The CA the directory's and gateways' certificates are signed by.
    pub fn ca(&self) -> CertificateDer<'static> {
        self.svc().ca()
    }

    /// The host, for tests that watch its counters.
    pub fn host(&self) -> Option<&Host> {
        self.svc.as_ref().and_then(Embedded::host)
    }

    /// The embedded service, for tests that reach into its parts.
    pub fn service(&self) -> &Embedded {
        self.svc()
    }

    /// Carries out a chaos plan against the session whose statistics are
    /// `stats`, timed from its first picture, until `done` is set.
    pub fn run_chaos(&self, plan: &Chaos, stats: &Stats, done: &AtomicBool) {
        let wait = |until: &dyn Fn() -> bool| {
            while !done.load(Ordering::Relaxed) && !until() {
                std::thread::sleep(Duration::from_millis(5));
            }
            !done.load(Ordering::Relaxed)
        };
        if !wait(&|| stats.frames_presented.load(Ordering::Relaxed) > 0) {
            return;
        }
        let start = Instant::now();
        for &(at, action) in &plan.0 {
            if !wait(&|| start.elapsed() >= at) {
                return;
            }
            match action {
                ChaosAction::KillGateway => {
                    let id = stats
                        .route
                        .lock()
                        .map(|r| r.gateway_id.clone())
                        .unwrap_or_default();
                    if self.svc().kill_gateway(&id) {
                        tracing::warn!(gateway = %id, "chaos: gateway killed");
                    } else {
                        tracing::warn!(gateway = %id, "chaos: no such gateway to kill");
                    }
                }
                ChaosAction::KillHost => match self.svc().kill_host() {
                    Some(addr) => tracing::warn!(host = %addr, "chaos: host killed"),
                    None => tracing::warn!("chaos: no host left to kill"),
                },
            }
        }
    }

    /// The embedded service, for tests that stop parts of it.
    pub fn service_mut(&mut self) -> &mut Embedded {
        self.svc
            .as_mut()
            .unwrap_or_else(|| unreachable!("service taken before drop"))
    }
}

impl Drop for DemoService {
    fn drop(&mut self) {
        if let Some(s) = self.svc.take() {
            s.shutdown();
        }
        let _ = &self.rt;
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}
