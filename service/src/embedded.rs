//! The whole service in one process on loopback: a directory, one gateway
//! per simulated point of presence (each behind an [`ImpairedRelay`] adding
//! its round-trip delay to both its QUIC and its probe port) and a desktop
//! host. `nephele-server all` and `nephele demo` are this.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;

use crate::dirclient::DirectoryClient;
use crate::directory::api::GatewayInfo;
use crate::directory::{Directory, DirectoryConfig};
use crate::gateway::{Gateway, GatewayConfig};
use crate::host::{Host, HostConfig};
use crate::impair::{ImpairedRelay, Impairment};
use crate::token::{SessionClaims, TokenError};

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
    /// The directory's HTTPS address (port 0 for any).
    pub directory_listen: SocketAddr,
    /// `(user[@tenant], password)` accounts allowed to open the demo desktop.
    pub demo_users: Vec<(String, String)>,
    /// Points of presence; one gateway each.
    pub pops: Vec<PopSpec>,
    /// The desktop host.
    pub host: HostConfig,
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
    _relays: [ImpairedRelay; 2],
}

/// The running service. Dropping it stops everything; call it from outside
/// the runtime the service was started on, or from its own thread.
#[derive(Debug)]
pub struct Embedded {
    /// The directory.
    pub directory: Directory,
    /// The PoPs in the order given.
    pub pops: Vec<EmbeddedPop>,
    host: Option<Host>,
    ca: CertificateDer<'static>,
    ca_path: PathBuf,
}

impl Embedded {
    /// Starts everything on the current tokio runtime and waits until every
    /// gateway is listed by the directory.
    pub async fn start(opts: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let host = Host::start(opts.host.clone())?;
        let identity =
            crate::tls::generate(&["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
        let ca = identity
            .ca
            .clone()
            .ok_or_else(|| EmbeddedError::Other("no CA was generated".into()))?;
        std::fs::create_dir_all(&opts.state_dir).map_err(|e| {
            EmbeddedError::Other(format!("creating {}: {e}", opts.state_dir.display()))
        })?;
        let ca_path = opts.state_dir.join("ca.pem");
        crate::tls::write_cert_pem(&ca_path, &ca)?;
        let mut dcfg = DirectoryConfig::new(
            opts.directory_listen,
            opts.state_dir.clone(),
            identity.clone(),
        );
        dcfg.hosts = vec![host.local_addr()];
        let directory = Directory::start(dcfg).await?;
        for (user, password) in &opts.demo_users {
            directory
                .add_demo_user(user, password)
                .map_err(|e| EmbeddedError::Other(format!("adding user {user}: {e}")))?;
        }
        let client = DirectoryClient::new(&directory.url(), std::slice::from_ref(&ca))
            .map_err(|e| EmbeddedError::Other(e.to_string()))?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut pops = Vec::with_capacity(opts.pops.len());
        for pop in &opts.pops {
            let mut cfg = GatewayConfig::direct(loopback, host.local_addr(), identity.clone());
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
            gateway.register(
                client.clone(),
                directory.service_key().to_string(),
                info.clone(),
            );
            pops.push(EmbeddedPop {
                info,
                gateway,
                _relays: [quic, probe],
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while directory.live_gateways() < pops.len() {
            if Instant::now() > deadline {
                return Err(EmbeddedError::Other(
                    "gateways did not register with the directory within 10 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Self {
            directory,
            pops,
            host: Some(host),
            ca,
            ca_path,
        })
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

    /// The desktop host.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }

    /// A session token for the host, valid for `ttl`, signed by the directory
    /// (for tests and tools that connect to a gateway directly).
    pub fn session_token(&self, ttl: Duration) -> Result<String, TokenError> {
        let now = crate::token::unix_now();
        let host = self
            .host
            .as_ref()
            .map(|h| h.local_addr().to_string())
            .unwrap_or_default();
        self.directory.sign(&SessionClaims {
            sid: format!("direct-{now}"),
            sub: "direct".into(),
            tenant: crate::directory::DEFAULT_TENANT.into(),
            desktop: crate::directory::DEMO_DESKTOP.into(),
            host,
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
        if let Some(h) = self.host.take() {
            h.shutdown();
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}
