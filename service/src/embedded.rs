//! The whole service in one process on loopback: a directory, one gateway
//! per simulated point of presence (each behind an [`ImpairedRelay`] adding
//! its round-trip delay to both its QUIC and its probe port) and two desktop
//! hosts, each the other's backup. `nephele-server all` and `nephele demo`
//! are this.
//!
//! [`Embedded::kill_gateway`] and [`Embedded::kill_host`] stop a part the
//! way a crash would, for chaos demos and tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;

use nephele_protocol::activity::IdlePolicy;

use crate::directory::{Directory, DirectoryConfig};
use crate::gateway::{Credentials, Gateway, GatewayConfig};
use crate::host::{Host, HostConfig};
use crate::impair::{ImpairedRelay, Impairment};
use crate::link::LinkKey;
use crate::token::{SessionClaims, TokenError};
use nephele_api::DirectoryClient;
use nephele_api::directory::{GatewayInfo, HostInfo};

/// A simulated point of presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopSpec {
    /// PoP id, as listed to clients.
    pub name: String,
    /// Round-trip delay added in front of its gateway.
    pub rtt: Duration,
}

impl std::str::FromStr for PopSpec {
    type Err = String;

    /// `NAME:RTT_MS`, as in `pop-near:5`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, ms) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` should be NAME:RTT_MS, as in pop-near:5"))?;
        let ms: f64 = ms
            .parse()
            .ok()
            .filter(|m: &f64| m.is_finite() && (0.0..=10_000.0).contains(m))
            .ok_or_else(|| format!("`{ms}` in `{s}` is not a round trip of 0–10000 ms"))?;
        crate::directory::store::check_name("PoP name", name).map_err(|e| e.to_string())?;
        Ok(Self {
            name: name.into(),
            rtt: Duration::from_secs_f64(ms / 1000.0),
        })
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Directory database (and `ca.pem`) location.
    pub state_dir: PathBuf,
    /// A PostgreSQL database for the directory's state instead
    /// (`postgres://…`).
    pub database: Option<String>,
    /// The directory's HTTPS address (port 0 for any).
    pub directory_listen: SocketAddr,
    /// `(user[@tenant], password)` accounts allowed to open the demo desktop.
    pub demo_users: Vec<(String, String)>,
    /// Points of presence; one gateway each.
    pub pops: Vec<PopSpec>,
    /// The desktop hosts' settings (both hosts get them).
    pub host: HostConfig,
    /// When idle sessions are warned, paused and suspended.
    pub idle_policy: IdlePolicy,
    /// The network between clients and every PoP (on top of each PoP's own
    /// distance), in each direction.
    pub network: Impairment,
}

/// Errors starting the embedded service.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The host failed.
    #[error("starting the host: {0}")]
    Host(#[from] crate::host::HostError),
    /// The directory failed.
    #[error("starting the directory: {0}")]
    Directory(#[from] crate::directory::DirectoryError),
    /// A gateway failed.
    #[error("starting a gateway: {0}")]
    Gateway(#[from] crate::gateway::GatewayError),
    /// Certificates failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A delay relay or the demo accounts failed.
    #[error("{0}")]
    Other(String),
}

/// One PoP: its gateway and the relays in front of it.
#[derive(Debug)]
pub struct EmbeddedPop {
    /// How it is listed.
    pub info: GatewayInfo,
    /// The gateway itself.
    pub gateway: Gateway,
    relays: [ImpairedRelay; 2],
}

/// The running service. Dropping it stops everything; call it from outside
/// the runtime the service was started on, or from its own thread.
#[derive(Debug)]
pub struct Embedded {
    /// The directory.
    pub directory: Directory,
    /// The PoPs in the order given.
    pub pops: Vec<EmbeddedPop>,
    hosts: Vec<Host>,
    ca: CertificateDer<'static>,
    ca_path: PathBuf,
    link: LinkKey,
}

impl Embedded {
    /// Starts everything on the current tokio runtime and waits until every
    /// gateway is listed by the directory.
    pub async fn start(opts: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        // The second host is the first's backup and the other way round:
        // the directory hands out sessions in turn.
        // The backup listens on a port of its own and records input to the
        // same file (appending whole lines); it does not record the
        // microphone, whose WAV file only one writer can own.
        std::fs::create_dir_all(&opts.state_dir).map_err(|e| {
            EmbeddedError::Other(format!("creating {}: {e}", opts.state_dir.display()))
        })?;
        // The hosts and gateways seal their datagrams with the key kept
        // beside the CA.
        let link = LinkKey::open_or_create(&opts.state_dir.join("link.key"))
            .map_err(|e| EmbeddedError::Other(e.to_string()))?;
        let mut primary = opts.host.clone();
        primary.link = link.clone();
        // The hosts attach only sessions the directory signed tokens for.
        primary.tokens = Some(Directory::token_verifier(
            &opts.state_dir,
            opts.database.as_deref(),
        )?);
        let mut backup = primary.clone();
        backup.listen.set_port(0);
        backup.record_mic = None;
        // Application sessions run in a directory per host (beside the
        // state unless given one).
        let apps = primary
            .apps
            .take()
            .unwrap_or_else(|| crate::host::AppsConfig {
                dir: opts.state_dir.join("apps"),
                account: None,
            });
        for (h, name) in [(&mut primary, "host-a"), (&mut backup, "host-b")] {
            h.apps = Some(crate::host::AppsConfig {
                dir: apps.dir.join(name),
                account: apps.account.clone(),
            });
        }
        let hosts = vec![Host::start(primary)?, Host::start(backup)?];
        // The CA is kept in the state directory, so a restart with it is
        // the same service to its clients.
        let ca_path = opts.state_dir.join("ca.pem");
        let (issuer, _) = crate::tls::Ca::open(&ca_path)?;
        let identity = issuer.issue(&["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
        let ca = issuer.cert().clone();
        let mut dcfg = DirectoryConfig::new(
            opts.directory_listen,
            opts.state_dir.clone(),
            identity.clone(),
        );
        dcfg.idle_policy = opts.idle_policy;
        dcfg.database = opts.database.clone();
        let directory = Directory::start(dcfg).await?;
        for (user, password) in &opts.demo_users {
            directory
                .add_demo_user(user, password)
                .map_err(|e| EmbeddedError::Other(format!("adding user {user}: {e}")))?;
        }
        // The service key beside the CA, so standalone gateways and hosts
        // can join (`--service-key-file STATE_DIR/service.key`).
        let key_file = opts.state_dir.join("service.key");
        nephele_platform::fs::write_private(&key_file, directory.service_key().as_bytes())
            .map_err(|e| EmbeddedError::Other(format!("writing {}: {e}", key_file.display())))?;
        let client = DirectoryClient::new(&directory.url(), std::slice::from_ref(&ca))
            .map_err(|e| EmbeddedError::Other(e.to_string()))?;
        let creds = Credentials {
            service_key: directory.service_key().to_string(),
            key_file: None,
        };
        // The hosts enrol in the site of the first PoP, as hosts beside it.
        let site = opts.pops.first().map_or("local", |p| p.name.as_str());
        for (h, name) in hosts.iter().zip(["host-a", "host-b"]) {
            let info = HostInfo {
                id: name.into(),
                site: site.into(),
                address: h.local_addr().to_string(),
                capacity: crate::host::MAX_SESSIONS as u32,
            };
            h.enrol(client.clone(), creds.clone(), info);
        }
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut pops = Vec::with_capacity(opts.pops.len());
        for pop in &opts.pops {
            let mut cfg = GatewayConfig::direct(
                loopback,
                hosts[0].local_addr(),
                identity.clone(),
                link.clone(),
            );
            cfg.host = None;
            cfg.probe_listen = Some(loopback);
            cfg.tokens = Some(directory.verifier());
            let mut gateway = Gateway::start(cfg)?;
            let imp = opts.network.plus_delay(pop.rtt / 2);
            let relay_err = |e: std::io::Error| EmbeddedError::Other(format!("delay relay: {e}"));
            let quic = ImpairedRelay::start(loopback, gateway.local_addr(), imp.clone())
                .await
                .map_err(relay_err)?;
            let probe_target = gateway
                .probe_addr()
                .ok_or_else(|| EmbeddedError::Other("gateway has no probe port".into()))?;
            let probe = ImpairedRelay::start(loopback, probe_target, imp)
                .await
                .map_err(relay_err)?;
            let info = GatewayInfo {
                id: format!("gw-{}", pop.name),
                pop: pop.name.clone(),
                region: format!("loopback +{} ms", pop.rtt.as_millis()),
                address: quic.local_addr().to_string(),
                probe_address: probe.local_addr().to_string(),
                server_name: "127.0.0.1".into(),
                load: 0.0,
            };
            gateway.register(client.clone(), creds.clone(), info.clone());
            pops.push(EmbeddedPop {
                info,
                gateway,
                relays: [quic, probe],
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while directory.live_gateways() < pops.len() || directory.live_hosts() < hosts.len() {
            if Instant::now() > deadline {
                return Err(EmbeddedError::Other(
                    "gateways and hosts did not enrol with the directory within 10 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Self {
            directory,
            pops,
            hosts,
            ca,
            ca_path,
            link,
        })
    }

    /// The key the hosts and gateways seal their datagrams with
    /// (`STATE_DIR/link.key`), for a gateway joining them.
    pub fn link_key(&self) -> &LinkKey {
        &self.link
    }

    /// The CA every certificate here is signed by.
    pub fn ca(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// Where the CA was written (`STATE_DIR/ca.pem`).
    pub fn ca_path(&self) -> &std::path::Path {
        &self.ca_path
    }

    /// The directory's URL.
    pub fn url(&self) -> String {
        self.directory.url()
    }

    /// The first desktop host (the one direct sessions go to).
    pub fn host(&self) -> Option<&Host> {
        self.hosts.first()
    }

    /// The desktop hosts (including crashed ones).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Kills the gateway `id` as a crash would: its relays black out at
    /// once (clients hear nothing more, not even a close), it stops without
    /// leaving the directory's lists, which drop it when its heartbeats stop.
    /// Returns whether there was such a gateway.
    pub fn kill_gateway(&self, id: &str) -> bool {
        let Some(pop) = self.pops.iter().find(|p| p.info.id == id) else {
            return false;
        };
        for r in &pop.relays {
            r.black_out();
        }
        pop.gateway.kill();
        true
    }

    /// The id of a gateway relaying a session now, if any.
    pub fn busy_gateway(&self) -> Option<String> {
        self.pops
            .iter()
            .find(|p| {
                p.gateway
                    .stats()
                    .active
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
            })
            .map(|p| p.info.id.clone())
    }

    /// Kills the host serving sessions (the one with the most), as a
    /// crash would: no goodbyes, its socket closed. Returns its address.
    pub fn kill_host(&self) -> Option<SocketAddr> {
        let host = self
            .hosts
            .iter()
            .filter(|h| !h.crashed())
            .max_by_key(|h| h.sessions())?;
        host.crash();
        Some(host.local_addr())
    }

    /// A session token for the host, valid for `ttl`, signed by the directory
    /// (for tests and tools that connect to a gateway directly).
    pub fn session_token(&self, ttl: Duration) -> Result<String, TokenError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let now = crate::token::unix_now();
        // Each token names a session of its own.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = |i: usize| self.hosts.get(i).map(|h| h.local_addr().to_string());
        self.directory.sign(&SessionClaims {
            sid: format!("direct-{now}-{n}"),
            sub: "direct".into(),
            tenant: crate::directory::DEFAULT_TENANT.into(),
            desktop: crate::directory::DEMO_DESKTOP.into(),
            host: addr(0).unwrap_or_default(),
            backup: addr(1),
            idle: None,
            pixels: None,
            grant: 0,
            app: false,
            aud: crate::token::AUD_GATEWAY.into(),
            iss: crate::token::ISSUER.into(),
            iat: now,
            exp: now + ttl.as_secs(),
        })
    }

    /// Stops the gateways (leaving the directory's lists), the directory and the host.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for p in &mut self.pops {
            p.gateway.close();
        }
        for h in self.hosts.drain(..) {
            h.shutdown();
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}
