//! The gateway: terminates QUIC from clients and relays each connection to
//! its desktop host over stateless UDP datagrams.
//!
//! Per client connection the gateway opens its own UDP socket toward the host
//! (so replies need no lookup) and relays under the session's id (the
//! directory's session id, the same on every gateway, so a client that
//! comes back through another gateway re-attaches to its session):
//!
//! * control stream → `Attach` to the host (repeated until `Welcome`), then
//!   `Ping`, `Activity`, `ReceiverReport` and `Goodbye`;
//! * input stream → each `Input` message as one datagram;
//! * recovery stream → `KeyframeRequest` datagrams;
//! * host video fragments → QUIC datagrams, bytes untouched;
//! * host `InputAck` → QUIC datagram (cumulative, so a lost one is repaired by the next);
//! * host `Pong`, `Rumble`, `Status` (the idle phase) and a backup's
//!   `Welcome` → control stream.
//!
//! Continuity: the gateway pings the host four times a second; a host
//! silent for [`HOST_SILENT`] has failed, and the session moves to the
//! backup host the token names, which takes it over from the state the
//! primary replicated to it. A client whose connection is lost (rather than
//! closed with a goodbye) leaves its session detached on the host, to be
//! resumed.
//!
//! Every message from a client is decoded and checked before it is relayed;
//! a malformed one closes that client's connection with a reason.
//!
//! Behind a directory, the client's `Hello` must carry a session token the
//! directory signed: the gateway checks it offline with the directory's
//! public key and relays to the host the token names; a missing, forged,
//! expired or misdirected token closes the connection with the reason. The
//! gateway also answers latency probes ([`nephele_protocol::probe`]) on a
//! UDP port of its own and registers and heartbeats its load with the
//! directory ([`Gateway::register`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nephele_protocol::activity::IdlePolicy;
use nephele_protocol::framing::{FrameReader, Lane, write_frame};
use nephele_protocol::wire::{ENVELOPE_PREFIX, Envelope, GoodbyeReason, Message, split_envelope};
use tokio::net::UdpSocket;
use tracing::Instrument;

use crate::dirclient::DirectoryClient;
use crate::directory::api::GatewayInfo;
use crate::tls::{GatewayIdentity, quic_server_config};
use crate::token::{TokenError, Verifier};

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
}

impl GatewayConfig {
    /// A direct gateway: every client goes to `host`, no tokens, no probes.
    pub fn direct(listen: SocketAddr, host: SocketAddr, identity: GatewayIdentity) -> Self {
        Self {
            listen,
            host: Some(host),
            identity,
            probe_listen: None,
            tokens: None,
            capacity: 64,
            idle_policy: IdlePolicy::default(),
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
    /// Sessions being relayed now.
    pub active: AtomicU64,
    /// Sessions refused for their token.
    pub refused_tokens: AtomicU64,
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
    registration: std::sync::Mutex<Option<Registration>>,
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
            tasks.push(tokio::spawn(answer_probes(
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
        });
        tasks.push(tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let st = st.clone();
                let route = route.clone();
                let span = tracing::info_span!("client", remote = %incoming.remote_address());
                tokio::spawn(
                    async move {
                        match incoming.await {
                            Ok(conn) => {
                                st.connections.fetch_add(1, Ordering::Relaxed);
                                st.active.fetch_add(1, Ordering::Relaxed);
                                let res = serve(conn, &route, st.clone()).await;
                                st.active.fetch_sub(1, Ordering::Relaxed);
                                if let Err(e) = res {
                                    tracing::info!(error = %e, "client session ended");
                                }
                            }
                            Err(e) => tracing::info!(error = %e, "handshake failed"),
                        }
                    }
                    .instrument(span),
                );
            }
        }));
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
    pub fn register(&mut self, directory: DirectoryClient, service_key: String, info: GatewayInfo) {
        let r = Registration::start(
            directory,
            service_key,
            info,
            self.stats.clone(),
            self.capacity,
        );
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

/// Where sessions go: the host a token names, or the direct host.
#[derive(Debug)]
struct Route {
    host: Option<SocketAddr>,
    tokens: Option<Verifier>,
    idle_policy: IdlePolicy,
}

/// Where one session goes.
#[derive(Debug, Clone, Copy)]
struct Target {
    /// The session's id between gateways and hosts: the same through every
    /// gateway, so a client that reconnects elsewhere re-attaches.
    session: u64,
    host: SocketAddr,
    backup: Option<SocketAddr>,
    policy: IdlePolicy,
}

impl Route {
    fn target_for(&self, token: &[u8], client_session: u64) -> Result<Target, TokenError> {
        let Some(v) = &self.tokens else {
            let host = self.host.ok_or(TokenError::Missing)?;
            return Ok(Target {
                session: if client_session == 0 {
                    nephele_platform::process::random_id()
                } else {
                    client_session
                },
                host,
                backup: None,
                policy: self.idle_policy,
            });
        };
        let claims = v.session(token)?;
        let addr = |a: &str| {
            a.parse::<SocketAddr>()
                .map_err(|_| TokenError::Malformed(format!("host `{a}` is not an address")))
        };
        let policy = match claims.idle {
            Some(ms) => IdlePolicy::from_wire(ms).map_err(TokenError::Malformed)?,
            None => self.idle_policy,
        };
        Ok(Target {
            session: session_of(&claims.sid),
            host: addr(&claims.host)?,
            backup: claims.backup.as_deref().map(addr).transpose()?,
            policy,
        })
    }
}

/// The 64-bit id of a directory session: the same on every gateway.
fn session_of(sid: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // `DefaultHasher::new()` is keyed the same everywhere, so every gateway
    // (of one build) maps a session id to the same number; the session id
    // itself is the directory's 128 random bits.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sid.hash(&mut h);
    h.finish()
}

/// The heartbeat thread.
#[derive(Debug)]
struct Registration {
    stop: Arc<AtomicBool>,
    deregister: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Registration {
    fn start(
        dir: DirectoryClient,
        key: String,
        info: GatewayInfo,
        stats: Arc<GatewayStats>,
        capacity: u32,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let deregister = Arc::new(AtomicBool::new(true));
        let leave = deregister.clone();
        let thread = std::thread::Builder::new()
            .name("nephele-gw-heartbeat".into())
            .spawn(move || {
                let mut registered = false;
                let mut interval = Duration::from_secs(1);
                while !flag.load(Ordering::Relaxed) {
                    let load = load_of(&stats, capacity);
                    if registered {
                        match dir.heartbeat(&key, &info.id, load) {
                            Ok(true) => {}
                            Ok(false) => registered = false,
                            Err(e) => tracing::warn!(error = %e, "heartbeat to the directory failed"),
                        }
                    }
                    if !registered {
                        let mut me = info.clone();
                        me.load = load;
                        match dir.register(&key, &me) {
                            Ok(r) => {
                                registered = true;
                                interval = Duration::from_millis(r.heartbeat_ms.clamp(100, 60_000));
                                tracing::info!(id = %info.id, directory = dir.url(), "registered with the directory");
                            }
                            Err(e) => tracing::warn!(error = %e, "registering with the directory failed"),
                        }
                    }
                    // Sleep in small steps so closing is prompt.
                    let until = Instant::now() + interval;
                    while Instant::now() < until && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                if registered
                    && leave.load(Ordering::Relaxed)
                    && let Err(e) = dir.deregister(&key, &info.id)
                {
                    tracing::debug!(error = %e, "leaving the directory");
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the heartbeat thread"))
            .ok();
        Self {
            stop,
            deregister,
            thread,
        }
    }

    fn stop(mut self, deregister: bool) {
        self.deregister.store(deregister, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Verified tokens remembered by the probe responder: a probe series carries
/// the same token, so each is checked once, not per probe.
const TOKEN_CACHE: usize = 4096;

/// Answers latency probes: statelessly, never with more bytes than asked,
/// and only in small measure to probes without a valid session token.
async fn answer_probes(
    sock: UdpSocket,
    tokens: Option<Verifier>,
    stats: Arc<GatewayStats>,
    capacity: u32,
) {
    use nephele_protocol::probe::{ProbeReply, ProbeRequest, ProbeStatus, RateLimiter};
    let mut buf = vec![0u8; nephele_protocol::MAX_DATAGRAM + 1];
    let hasher = std::collections::hash_map::RandomState::new();
    let mut verified: HashMap<u64, u64> = HashMap::new();
    // Signature checks of unseen tokens, and refusals, are what an attacker
    // can make us spend: both are bounded.
    let mut verify_budget = RateLimiter::new(500.0, 100);
    let mut refusal_budget = RateLimiter::new(20.0, 20);
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(req) = ProbeRequest::decode(&buf[..n]) else {
            continue;
        };
        let now = Instant::now();
        let status = match &tokens {
            None => ProbeStatus::Ok,
            Some(v) => {
                let key = std::hash::BuildHasher::hash_one(&hasher, req.token);
                let unix = crate::token::unix_now();
                match verified.get(&key) {
                    Some(&exp) if exp > unix => ProbeStatus::Ok,
                    _ if !verify_budget.allow(now) => continue,
                    _ => match v.session(req.token) {
                        Ok(c) => {
                            if verified.len() >= TOKEN_CACHE {
                                verified.retain(|_, exp| *exp > unix);
                                if verified.len() >= TOKEN_CACHE {
                                    verified.clear();
                                }
                            }
                            verified.insert(key, c.exp);
                            ProbeStatus::Ok
                        }
                        Err(_) => ProbeStatus::Unauthorized,
                    },
                }
            }
        };
        if status == ProbeStatus::Unauthorized && !refusal_budget.allow(now) {
            continue;
        }
        let load = (load_of(&stats, capacity) * 1000.0) as u16;
        let reply = ProbeReply::to(&req, status, load).encode();
        debug_assert!(reply.len() <= n);
        if sock.send_to(&reply, from).await.is_ok() && status == ProbeStatus::Ok {
            stats.probes_answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Why a relayed session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("host socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("client protocol error: {0}")]
    Protocol(String),
    #[error("host did not answer the session request")]
    HostSilent,
    #[error("host ended the session: {0:?}")]
    HostGoodbye(GoodbyeReason),
    #[error("client said goodbye")]
    ClientGoodbye,
    #[error("session token refused: {0}")]
    Unauthorized(TokenError),
}

async fn read_message(
    recv: &mut quinn::RecvStream,
    reader: &mut FrameReader,
    buf: &mut [u8],
) -> Result<Option<Vec<u8>>, SessionEnd> {
    loop {
        match reader.next_frame() {
            Ok(Some(f)) => return Ok(Some(f.to_vec())),
            Ok(None) => {}
            Err(e) => return Err(SessionEnd::Protocol(e.to_string())),
        }
        match recv.read(buf).await? {
            Some(n) => reader.push(&buf[..n]),
            None => return Ok(None),
        }
    }
}

async fn serve(
    conn: quinn::Connection,
    route: &Route,
    stats: Arc<GatewayStats>,
) -> Result<(), SessionEnd> {
    let (mut ctl_send, mut ctl_recv) = conn.accept_bi().await?;
    let mut lane = [0u8; 1];
    ctl_recv
        .read_exact(&mut lane)
        .await
        .map_err(|e| SessionEnd::Protocol(e.to_string()))?;
    if Lane::from_u8(lane[0]) != Some(Lane::Control) {
        return Err(SessionEnd::Protocol(
            "first stream is not the control lane".into(),
        ));
    }
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 4096];
    let hello = read_message(&mut ctl_recv, &mut reader, &mut buf)
        .await?
        .ok_or_else(|| SessionEnd::Protocol("control stream closed before hello".into()))?;
    let hello_msg = Message::decode(&hello).map_err(|e| SessionEnd::Protocol(e.to_string()))?;
    let Message::Hello {
        width,
        height,
        fps,
        token,
        client_session,
    } = hello_msg
    else {
        return Err(SessionEnd::Protocol("expected hello".into()));
    };
    let target = match route.target_for(token, client_session) {
        Ok(t) => t,
        Err(e) => {
            stats.refused_tokens.fetch_add(1, Ordering::Relaxed);
            let reason = format!("session refused: {e}");
            tracing::info!(%reason);
            conn.close(
                quinn::VarInt::from_u32(GoodbyeReason::Unauthorized as u32),
                reason.as_bytes(),
            );
            return Err(SessionEnd::Unauthorized(e));
        }
    };
    let session = target.session;
    // The host needs no token: the gateway vouches for the session.
    let attach = |backup| {
        Message::Attach {
            width,
            height,
            fps,
            policy: target.policy,
            backup,
        }
        .to_vec()
    };
    let link = Arc::new(HostLink::bind(target.host)?);
    let span = tracing::info_span!("session", id = session);
    let _enter = span.enter();

    // Attach: repeat until the host welcomes the session; a primary that
    // stays silent is given up for the backup.
    let mut out = Vec::with_capacity(2048);
    let mut dgram = vec![0u8; 2048];
    let welcome = {
        let mut attempt = 0;
        let mut msg = attach(target.backup);
        loop {
            attempt += 1;
            if attempt > 12 {
                return Err(SessionEnd::HostSilent);
            }
            if attempt == 5
                && let Some(b) = target.backup
            {
                tracing::warn!(primary = %target.host, backup = %b, "primary host silent; attaching to the backup");
                link.set_host(b);
                msg = attach(None);
            }
            link.send(session, &msg, &mut out).await;
            let until = Instant::now() + Duration::from_millis(250);
            let got = loop {
                let Ok(Ok((n, from))) =
                    tokio::time::timeout_at(until.into(), link.udp.recv_from(&mut dgram)).await
                else {
                    break None;
                };
                if from != link.host() {
                    continue;
                }
                match Envelope::decode(&dgram[..n]) {
                    Ok(Envelope {
                        session: s,
                        message: m @ Message::Welcome { .. },
                    }) if s == session => break Some(Ok(m.to_vec())),
                    Ok(Envelope {
                        session: s,
                        message: Message::Goodbye { reason },
                    }) if s == session => break Some(Err(reason)),
                    _ => {}
                }
            };
            match got {
                Some(Ok(w)) => break w,
                Some(Err(reason)) => return Err(SessionEnd::HostGoodbye(reason)),
                None => {}
            }
        }
    };
    link.heard();
    out.clear();
    write_frame(&mut out, |o| o.extend_from_slice(&welcome));
    ctl_send.write_all(&out).await?;
    tracing::info!(host = %link.host(), "session relayed");

    let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);

    // Host → client.
    let host_to_client = {
        let link = link.clone();
        let conn = conn.clone();
        let stats = stats.clone();
        let ctl_tx = ctl_tx.clone();
        async move {
            // Datagrams land in one shared buffer and leave as slices of it,
            // so relaying allocates once per RELAY_BUFFER bytes, not per packet.
            let mut rx = bytes::BytesMut::with_capacity(RELAY_BUFFER);
            loop {
                if rx.capacity() < 2048 {
                    rx.reserve(RELAY_BUFFER);
                }
                let (n, from) = link.udp.recv_buf_from(&mut rx).await?;
                let dgram = rx.split_to(n).freeze();
                // Only the session's host now: not a failed primary coming back.
                if from != link.host() {
                    continue;
                }
                let Ok((s, msg)) = split_envelope(&dgram) else {
                    continue;
                };
                if s != session || msg.len() < 2 {
                    continue;
                }
                link.heard();
                let payload = || dgram.slice(ENVELOPE_PREFIX..);
                // Video travels untouched; everything else is decoded first.
                if nephele_protocol::wire::is_video(msg) {
                    stats.video_relayed.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = conn.send_datagram(payload()) {
                        tracing::debug!(error = %e, "video datagram not sent");
                    }
                    continue;
                }
                match Message::decode(msg) {
                    Ok(Message::InputAck { .. } | Message::Audio { .. }) => {
                        let _ = conn.send_datagram(payload());
                    }
                    // The answer to the gateway's own keepalive stays here.
                    Ok(Message::Pong { stamp_us, .. }) if stamp_us & KEEPALIVE_STAMP != 0 => {}
                    // Answers to the client's pings, gamepad rumble, the
                    // session's phase and a backup's welcome go on the
                    // control stream: reliable, and never behind video.
                    Ok(
                        Message::Pong { .. }
                        | Message::Rumble { .. }
                        | Message::Status { .. }
                        | Message::Clipboard { .. }
                        | Message::CursorShape { .. }
                        | Message::CursorPosition { .. }
                        | Message::Welcome { .. },
                    ) => {
                        let _ = ctl_tx.try_send(msg.to_vec());
                    }
                    Ok(Message::Goodbye { reason }) => {
                        let _ = ctl_tx.send(msg.to_vec()).await;
                        return Err::<(), _>(SessionEnd::HostGoodbye(reason));
                    }
                    Ok(_) | Err(_) => {}
                }
            }
        }
    };

    // Control stream writer (welcome already sent).
    let ctl_writer = async move {
        let mut out = Vec::with_capacity(256);
        while let Some(m) = ctl_rx.recv().await {
            out.clear();
            write_frame(&mut out, |o| o.extend_from_slice(&m));
            ctl_send.write_all(&out).await?;
        }
        Ok::<(), SessionEnd>(())
    };

    // Client control messages → host.
    let ctl_reader = {
        let link = link.clone();
        async move {
            let mut buf = vec![0u8; 4096];
            let mut out = Vec::with_capacity(64);
            while let Some(m) = read_message(&mut ctl_recv, &mut reader, &mut buf).await? {
                let msg = Message::decode(&m).map_err(|e| SessionEnd::Protocol(e.to_string()))?;
                match msg {
                    Message::Ping { .. }
                    | Message::ReceiverReport { .. }
                    | Message::Clipboard { .. }
                    | Message::Activity(_) => {}
                    Message::Goodbye { .. } => return Err(SessionEnd::ClientGoodbye),
                    _ => return Err(SessionEnd::Protocol("unexpected control message".into())),
                }
                link.send(session, &m, &mut out).await;
            }
            Err(SessionEnd::ClientGoodbye)
        }
    };

    // Further client streams: input and recovery lanes.
    let lanes = {
        let link = link.clone();
        let conn = conn.clone();
        let stats = stats.clone();
        async move {
            loop {
                let mut recv = conn.accept_uni().await?;
                let link = link.clone();
                let stats = stats.clone();
                let conn = conn.clone();
                tokio::spawn(async move {
                    match relay_lane(&mut recv, &link, session, &stats).await {
                        Err(e @ SessionEnd::Protocol(_)) => {
                            tracing::info!(error = %e, "closing client that broke the protocol");
                            conn.close(
                                quinn::VarInt::from_u32(GoodbyeReason::ProtocolError as u32),
                                e.to_string().as_bytes(),
                            );
                        }
                        Err(e) => tracing::debug!(error = %e, "lane closed"),
                        Ok(()) => {}
                    }
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), SessionEnd>(())
        }
    };

    // Client datagrams: the microphone's sound, and nothing else.
    let client_datagrams = {
        let link = link.clone();
        let conn = conn.clone();
        let stats = stats.clone();
        async move {
            let mut out = Vec::with_capacity(nephele_protocol::MAX_DATAGRAM + ENVELOPE_PREFIX);
            loop {
                let d = conn.read_datagram().await?;
                match Message::decode(&d) {
                    Ok(Message::Audio { .. }) => {
                        stats.audio_relayed.fetch_add(1, Ordering::Relaxed);
                        link.send(session, &d, &mut out).await;
                    }
                    // Datagrams may be lost anyway: a bad one is dropped,
                    // not a reason to end the session.
                    Ok(_) | Err(_) => {
                        stats.bad_datagrams.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), SessionEnd>(())
        }
    };

    // Keep the host session alive while the client is connected, and move
    // the session to its backup host when the primary falls silent.
    let keepalive = {
        let link = link.clone();
        let stats = stats.clone();
        async move {
            let mut out = Vec::with_capacity(64);
            let start = Instant::now();
            let mut backup = target.backup;
            let ping = |out: &mut Vec<u8>| {
                out.clear();
                Message::Ping {
                    stamp_us: start.elapsed().as_micros() as u64 | KEEPALIVE_STAMP,
                }
                .encode(out);
            };
            let mut msg = Vec::with_capacity(64);
            loop {
                tokio::time::sleep(KEEPALIVE).await;
                let silent = link.silent();
                if silent > HOST_SILENT
                    && let Some(b) = backup.take()
                {
                    tracing::warn!(primary = %link.host(), backup = %b, silent_ms = silent.as_millis() as u64, "host silent; moving the session to its backup");
                    stats.host_failovers.fetch_add(1, Ordering::Relaxed);
                    link.set_host(b);
                    // The backup's welcome reaches the client on the
                    // control stream: its sign to restart from a keyframe.
                    let attach = attach(None);
                    let until = Instant::now() + HOST_GIVE_UP;
                    while link.silent() > HOST_SILENT && Instant::now() < until {
                        link.send(session, &attach, &mut out).await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                if link.silent() > HOST_GIVE_UP {
                    return Err::<(), _>(SessionEnd::HostSilent);
                }
                ping(&mut msg);
                link.send(session, &msg, &mut out).await;
            }
        }
    };

    let result = tokio::select! {
        r = host_to_client => r,
        r = ctl_writer => r,
        r = ctl_reader => r,
        r = lanes => r,
        r = client_datagrams => r,
        r = keepalive => r,
        e = conn.closed() => Err(SessionEnd::Connection(e)),
    };
    // A client that said goodbye and closed may race its own goodbye: a
    // connection it closed normally is a normal end.
    let closed_normally = matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == quinn::VarInt::from_u32(GoodbyeReason::Normal as u32)
    );
    let client_left = closed_normally || matches!(result, Ok(()) | Err(SessionEnd::ClientGoodbye));
    // Tell the host: a goodbye ends the session there; a lost client only
    // detaches it (held input released at once), to be resumed through
    // this or another gateway.
    let farewell = if client_left {
        Some(Message::Goodbye {
            reason: GoodbyeReason::Normal,
        })
    } else if matches!(result, Err(SessionEnd::HostGoodbye(_))) {
        None
    } else {
        Some(Message::Detach)
    };
    if let Some(m) = farewell {
        link.send(session, &m.to_vec(), &mut out).await;
    }
    let code = match &result {
        Err(SessionEnd::HostGoodbye(r)) => *r as u32,
        Err(SessionEnd::Protocol(_)) => GoodbyeReason::ProtocolError as u32,
        _ => GoodbyeReason::Normal as u32,
    };
    conn.close(quinn::VarInt::from_u32(code), b"session ended");
    match result {
        Err(SessionEnd::ClientGoodbye) | Ok(()) => Ok(()),
        Err(_) if closed_normally => Ok(()),
        other => other,
    }
}

/// The gateway keeps the host session alive this often.
const KEEPALIVE: Duration = Duration::from_millis(250);

/// A host silent this long (four keepalives unanswered) has failed: the
/// session moves to its backup.
const HOST_SILENT: Duration = Duration::from_millis(1000);

/// A host silent this long, with no backup left, ends the session.
const HOST_GIVE_UP: Duration = Duration::from_secs(10);

/// The gateway's side of one session toward its host: its own UDP socket,
/// not connected, so a failover only changes where it sends, and datagrams
/// from anyone but the current host are ignored.
struct HostLink {
    udp: UdpSocket,
    host: std::sync::Mutex<SocketAddr>,
    start: Instant,
    heard_ms: AtomicU64,
}

impl HostLink {
    fn bind(host: SocketAddr) -> std::io::Result<Self> {
        let bind: SocketAddr = if host.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let udp = UdpSocket::from_std({
            let s = crate::host::bind_udp(bind)?;
            s.set_nonblocking(true)?;
            s
        })?;
        Ok(Self {
            udp,
            host: std::sync::Mutex::new(host),
            start: Instant::now(),
            heard_ms: AtomicU64::new(0),
        })
    }

    fn host(&self) -> SocketAddr {
        self.host
            .lock()
            .map(|h| *h)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn set_host(&self, to: SocketAddr) {
        if let Ok(mut h) = self.host.lock() {
            *h = to;
        }
    }

    fn heard(&self) {
        self.heard_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long the host has been silent.
    fn silent(&self) -> Duration {
        let heard = Duration::from_millis(self.heard_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(heard)
    }

    /// Sends one message to the host; a failure (a host that is gone) is
    /// noticed by its silence, not here.
    async fn send(&self, session: u64, msg: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&session.to_be_bytes());
        out.extend_from_slice(msg);
        if let Err(e) = self.udp.send_to(out, self.host()).await {
            tracing::debug!(error = %e, "sending to the host");
        }
    }
}

/// Receive buffer for host datagrams, refilled when used up.
const RELAY_BUFFER: usize = 256 * 1024;

/// Set in the stamps of the gateway's own keepalive pings to the host, so
/// their pongs are told apart from the client's (whose stamps are its clock
/// in microseconds, far below 2^63) and not passed on to it.
const KEEPALIVE_STAMP: u64 = 1 << 63;

async fn relay_lane(
    recv: &mut quinn::RecvStream,
    link: &HostLink,
    session: u64,
    stats: &GatewayStats,
) -> Result<(), SessionEnd> {
    let mut lane = [0u8; 1];
    recv.read_exact(&mut lane)
        .await
        .map_err(|e| SessionEnd::Protocol(e.to_string()))?;
    let lane = Lane::from_u8(lane[0])
        .ok_or_else(|| SessionEnd::Protocol(format!("unknown lane {}", lane[0])))?;
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(64);
    while let Some(m) = read_message(recv, &mut reader, &mut buf).await? {
        let msg = Message::decode(&m).map_err(|e| SessionEnd::Protocol(e.to_string()))?;
        let allowed = match lane {
            Lane::Input => matches!(msg, Message::Input { .. }),
            Lane::Recovery => matches!(msg, Message::KeyframeRequest { .. }),
            Lane::Control => false,
        };
        if !allowed {
            return Err(SessionEnd::Protocol(format!(
                "message not allowed on {lane:?} lane"
            )));
        }
        if lane == Lane::Input {
            stats.input_relayed.fetch_add(1, Ordering::Relaxed);
        }
        link.send(session, &m, &mut out).await;
    }
    Ok(())
}
