//! Test support shared by the end-to-end tests: the whole reference
//! service started in this process ([`DemoService`], so tests can reach
//! into its parts), scratch directories and readers for the host's input
//! recordings.

pub mod postgres;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nephele_protocol::activity::IdlePolicy;
use nephele_service::embedded::{Embedded, EmbeddedOptions, PopSpec};
use nephele_service::host::{Host, HostConfig};
use nephele_service::impair::Impairment;
use rustls::pki_types::CertificateDer;

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates `nephele-<name>-<pid>-<n>`.
    pub fn new(name: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("nephele-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Self(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The events of a host `--record-input` file, minus the releases the host
/// made itself on disconnect.
pub fn recorded_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each recorded line is JSON"))
        .filter(|v| v.get("released_on_disconnect").is_none())
        .collect()
}

/// Polls `f` every 10 ms until it holds or `limit` passes; returns its last answer.
pub fn wait_until(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    f()
}

/// The PoPs of the in-process service: name and round trip.
pub const DEMO_POPS: [(&str, u64); 3] = [("pop-near", 5), ("pop-mid", 25), ("pop-far", 60)];

/// The demo account's name.
pub const DEMO_USER: &str = "demo";

/// What the in-process service starts with.
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
    /// The hosts' `--app-account`.
    pub app_account: Option<String>,
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
    format!("{:016x}", nephele_platform::process::random_id())
}

impl DemoService {
    /// Starts the directory, the three PoPs and the host on 127.0.0.1 with
    /// ephemeral ports; the directory's state lives in a temporary directory.
    pub fn start(opts: DemoOptions) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nephele-demo-svc")
            .on_thread_start(|| {
                nephele_platform::sched::latency_critical();
            })
            .enable_all()
            .build()?;
        let state_dir = std::env::temp_dir().join(format!(
            "nephele-demo-{}-{}",
            std::process::id(),
            random_password()
        ));
        let password = random_password();
        let svc = rt.block_on(Embedded::start(EmbeddedOptions {
            state_dir: state_dir.clone(),
            database: None,
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
                apps: Some(nephele_service::host::AppsConfig {
                    dir: state_dir.join("apps"),
                    account: opts.app_account,
                }),
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

/// A headless session as the client runs one: its statistics and state,
/// and the presenter standing in for a window (which outlives it).
pub struct Headless {
    session: Option<nephele_client::session::Session>,
    /// The session's counters.
    pub stats: std::sync::Arc<nephele_client::stats::Stats>,
    /// The session's state.
    pub observed: std::sync::Arc<nephele_client::status::Observed>,
    /// How the session ended, in words, once it did (`""` when as asked).
    pub ending: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    _presenter: nephele_client::headless::HeadlessPresenter,
}

impl std::fmt::Debug for Headless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Headless").finish_non_exhaustive()
    }
}

impl std::ops::Deref for Headless {
    type Target = nephele_client::session::Session;

    fn deref(&self) -> &Self::Target {
        self.session
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only by close"))
    }
}

impl Headless {
    /// Ends the session as the client does.
    pub fn close(mut self) -> Result<(), nephele_client::session::SessionError> {
        self.session
            .take()
            .map_or(Ok(()), nephele_client::session::Session::close)
    }
}

/// A headless 320×240 session at 30 fps through `gateway` (named
/// 127.0.0.1 in its certificate), trusting `ca`, with `token` (empty for a
/// direct gateway): no sound, no clipboard, no renewal.
pub fn headless_config(
    gateway: std::net::SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    token: Vec<u8>,
) -> nephele_client::session::ConnectConfig {
    nephele_client::session::ConnectConfig {
        gateway,
        server_name: "127.0.0.1".into(),
        roots: vec![ca],
        width: 320,
        height: 240,
        fps: 30,
        token,
        route: nephele_client::status::Route::default(),
        fallbacks: Vec::new(),
        save_stream: None,
        audio: nephele_client::audio::AudioConfig::OFF,
        renew: None,
        clipboard: false,
        decoder: Default::default(),
        codec: Default::default(),
    }
}

/// Connects a headless session with `cfg`.
pub fn connect_headless(
    cfg: nephele_client::session::ConnectConfig,
) -> Result<Headless, nephele_client::session::SessionError> {
    let stats = std::sync::Arc::new(nephele_client::stats::Stats::default());
    let observed = std::sync::Arc::new(nephele_client::status::Observed::default());
    let (presenter, sink) = nephele_client::headless::HeadlessPresenter::start(stats.clone())?;
    let ending = std::sync::Arc::new(std::sync::Mutex::new(None));
    let ended = ending.clone();
    let session = nephele_client::session::Session::connect(
        cfg,
        stats.clone(),
        observed.clone(),
        Box::new(sink),
        Box::new(move |e: Option<&nephele_client::session::SessionError>| {
            if let Ok(mut end) = ended.lock() {
                *end = Some(e.map_or_else(String::new, ToString::to_string));
            }
        }),
    )?;
    Ok(Headless {
        session: Some(session),
        stats,
        observed,
        ending,
        _presenter: presenter,
    })
}

/// `n` distinct QUIC Initial datagrams for `gateway`, as quinn's client
/// sends them (each a new connection's ClientHello, padded to 1200 bytes),
/// made by quinn's protocol state machine with no socket: what a flood of
/// connection attempts that never go on looks like.
pub fn quic_initials(
    gateway: SocketAddr,
    roots: &[CertificateDer<'static>],
    n: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let cfg = nephele_api::trust::quic_client_config(roots)?;
    let now = std::time::Instant::now();
    let mut out = Vec::with_capacity(n);
    let mut endpoint = None;
    for i in 0..n {
        // A fresh endpoint now and then: each keeps its connections' ids.
        if i % 1000 == 0 {
            endpoint = Some(quinn_proto::Endpoint::new(
                std::sync::Arc::new(quinn_proto::EndpointConfig::default()),
                None,
                false,
                None,
            ));
        }
        let Some(ep) = endpoint.as_mut() else {
            continue;
        };
        let (_, mut conn) = ep.connect(now, cfg.clone(), gateway, "localhost")?;
        let mut buf = Vec::with_capacity(1500);
        if let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
            buf.truncate(t.size);
            out.push(buf);
        }
    }
    anyhow::ensure!(out.len() == n, "quinn made {} Initials of {n}", out.len());
    Ok(out)
}
