//! The gateway: terminates QUIC from clients and relays each connection to
//! its desktop host over stateless UDP datagrams.
//!
//! What passes where, attaching, keepalives and failover to the backup
//! host are the protocol's sans-IO [`nephele_protocol::gateway`]; here are
//! its drivers and the gateway's own business:
//!
//! * [`relay`]: one client connection driven through its
//!   [`nephele_protocol::gateway::GatewaySession`]: the client's streams and
//!   datagrams, a UDP socket of its own toward the host (so replies need no
//!   lookup), video relayed untouched;
//! * [`routing`]: behind a directory, the client's session token is checked
//!   offline with the directory's public key and names the host (a missing,
//!   forged, expired or misdirected token closes the connection with the
//!   reason); without one, every client goes to the direct host;
//! * [`door`]: which new connections get a handshake, which a QUIC Retry
//!   first, and how long a handshake may take;
//! * [`probe`]: latency probes answered on a UDP port of its own
//!   ([`nephele_protocol::probe`]);
//! * [`registration`]: registering with the directory and heartbeating the
//!   gateway's load ([`Gateway::register`]).

mod door;
mod probe;
mod registration;
mod relay;
mod routing;

use crate::link::LinkKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nephele_api::DirectoryClient;
use nephele_api::directory::GatewayInfo;
use nephele_protocol::activity::IdlePolicy;
use nephele_protocol::wire::GoodbyeReason;
use tokio::net::UdpSocket;

pub use crate::enrol::Credentials;
use crate::enrol::Enrolment;
use crate::tls::{GatewayIdentity, quic_server_config};
use crate::token::Verifier;
pub use door::{HANDSHAKE_DEADLINE, MAX_HANDSHAKING};
use routing::Route;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// UDP address for QUIC.
    pub listen: SocketAddr,
    /// The desktop host of direct (token-less) sessions; `None` to accept
    /// only sessions with a directory token.
    pub host: Option<SocketAddr>,
    /// Certificate and key presented to clients.
    pub identity: GatewayIdentity,
    /// UDP address answering latency probes; `None` for no prober port.
    pub probe_listen: Option<SocketAddr>,
    /// The directory's token key: when set, every session needs a valid token.
    pub tokens: Option<Verifier>,
    /// Sessions at which the gateway reports itself fully loaded.
    pub capacity: u32,
    /// Idle policy of direct sessions (tokens carry the directory's).
    pub idle_policy: IdlePolicy,
    /// The key datagrams to and from hosts are sealed with.
    pub link: LinkKey,
    /// New connections a second above which a client must first prove its
    /// address (a QUIC Retry, one round trip more), so a flood of forged
    /// Initials costs a packet each and gets no handshake.
    pub retry_above: u32,
}

impl GatewayConfig {
    /// A direct gateway: every client goes to `host`, no tokens, no probes.
    pub fn direct(
        listen: SocketAddr,
        host: SocketAddr,
        identity: GatewayIdentity,
        link: LinkKey,
    ) -> Self {
        Self {
            listen,
            host: Some(host),
            identity,
            probe_listen: None,
            tokens: None,
            capacity: 64,
            idle_policy: IdlePolicy::default(),
            link,
            retry_above: 100,
        }
    }
}

/// Errors starting a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Binding the QUIC endpoint failed.
    #[error("binding the gateway on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Counters of a running gateway.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Video datagrams relayed to clients.
    pub video_relayed: AtomicU64,
    /// Input events relayed to hosts.
    pub input_relayed: AtomicU64,
    /// Sessions whose token was accepted, open now (connections that have
    /// not shown a valid token are not load).
    pub active: AtomicU64,
    /// Sessions refused for their token.
    pub refused_tokens: AtomicU64,
    /// New connections answered with a Retry (their address unproven
    /// while Initials came faster than `retry_above` a second, or with
    /// [`MAX_HANDSHAKING`] handshakes under way).
    pub retries: AtomicU64,
    /// Handshakes that did not finish: the client fell silent (the idle
    /// timeout) or took longer than [`HANDSHAKE_DEADLINE`].
    pub handshakes_unfinished: AtomicU64,
    /// Input messages dropped over a session's rate.
    pub input_over_rate: AtomicU64,
    /// Client datagrams dropped over a session's rate.
    pub datagrams_over_rate: AtomicU64,
    /// Control messages dropped over a session's rate.
    pub control_over_rate: AtomicU64,
    /// Datagrams from a host's address dropped: not sealed with the link
    /// key, tampered with, or replayed.
    pub link_refused: AtomicU64,
    /// Probes answered.
    pub probes_answered: AtomicU64,
    /// Microphone datagrams relayed to hosts.
    pub audio_relayed: AtomicU64,
    /// Client datagrams dropped as malformed or not allowed.
    pub bad_datagrams: AtomicU64,
    /// Sessions moved to their backup host after the primary fell silent.
    pub host_failovers: AtomicU64,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    endpoint: quinn::Endpoint,
    stats: Arc<GatewayStats>,
    probe_addr: Option<SocketAddr>,
    capacity: u32,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    registration: std::sync::Mutex<Option<Enrolment>>,
}

impl Gateway {
    /// Binds the endpoint and starts accepting clients on the current tokio runtime.
    pub fn start(cfg: GatewayConfig) -> Result<Self, GatewayError> {
        let server = quic_server_config(&cfg.identity)?;
        let socket = crate::host::bind_udp(cfg.listen).map_err(|source| GatewayError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| GatewayError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let stats = Arc::new(GatewayStats::default());
        let mut tasks = Vec::new();
        let mut probe_addr = None;
        if let Some(addr) = cfg.probe_listen {
            let sock = crate::host::bind_udp(addr)
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    UdpSocket::from_std(s)
                })
                .map_err(|source| GatewayError::Bind { addr, source })?;
            probe_addr = sock.local_addr().ok();
            tasks.push(tokio::spawn(probe::answer_probes(
                sock,
                cfg.tokens.clone(),
                stats.clone(),
                cfg.capacity,
            )));
        }
        let ep = endpoint.clone();
        let st = stats.clone();
        let route = Arc::new(Route {
            host: cfg.host,
            tokens: cfg.tokens,
            idle_policy: cfg.idle_policy,
            link: cfg.link,
        });
        tasks.push(tokio::spawn(door::accept(
            ep,
            door::Door::new(cfg.retry_above, Instant::now()),
            route,
            st,
        )));
        if let Ok(addr) = endpoint.local_addr() {
            tracing::info!(%addr, probe = ?probe_addr, "gateway listening");
        }
        Ok(Self {
            endpoint,
            stats,
            probe_addr,
            capacity: cfg.capacity.max(1),
            tasks,
            registration: std::sync::Mutex::new(None),
        })
    }

    /// The UDP address answering probes, if any.
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.probe_addr
    }

    /// Load, 0.0 (idle) to 1.0 (at capacity).
    pub fn load(&self) -> f64 {
        load_of(&self.stats, self.capacity)
    }

    /// Registers with a directory and heartbeats the load until closed, on
    /// a thread of its own (the directory client blocks). `info.id`, `pop`,
    /// `region` and the advertised addresses come from the caller, since
    /// a relay or NAT may stand in front of the gateway.
    pub fn register(&mut self, directory: DirectoryClient, creds: Credentials, info: GatewayInfo) {
        let listed = registration::Listed {
            info,
            stats: self.stats.clone(),
            capacity: self.capacity,
        };
        let r = Enrolment::start(directory, creds, listed, "nephele-gw-heartbeat");
        if let Ok(mut slot) = self.registration.lock() {
            *slot = Some(r);
        }
    }

    /// The QUIC address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<GatewayStats> {
        self.stats.clone()
    }

    /// Leaves the directory's lists, closes every connection and stops
    /// accepting and answering probes.
    pub fn close(&mut self) {
        if let Some(r) = self.registration.lock().ok().and_then(|mut r| r.take()) {
            r.stop(true);
        }
        self.halt();
    }

    /// Stops as a crash would: no goodbye to the directory, which notices
    /// the missing heartbeats; no goodbye to hosts. For chaos tests and
    /// demos; callers that want the clients to hear nothing either put the
    /// gateway behind a relay they black out first.
    pub fn kill(&self) {
        if let Some(r) = self.registration.lock().ok().and_then(|mut r| r.take()) {
            r.stop(false);
        }
        self.halt();
    }

    fn halt(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.endpoint.close(
            quinn::VarInt::from_u32(GoodbyeReason::Shutdown as u32),
            b"gateway shutting down",
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.close();
    }
}

fn load_of(stats: &GatewayStats, capacity: u32) -> f64 {
    (stats.active.load(Ordering::Relaxed) as f64 / f64::from(capacity.max(1))).min(1.0)
}
