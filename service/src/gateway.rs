//! The gateway: terminates QUIC from clients and relays each connection to
//! its desktop host over stateless UDP datagrams.
//!
//! Per client connection the gateway opens its own UDP socket toward the host
//! (so replies need no lookup), picks a random session id, and relays:
//!
//! * control stream → `Hello` to the host (repeated until `Welcome`), then
//!   `Ping`/`Goodbye` both ways;
//! * input stream → each `Input` message as one datagram;
//! * recovery stream → `KeyframeRequest` datagrams;
//! * host video fragments → QUIC datagrams, bytes untouched;
//! * host `InputAck` → QUIC datagram (cumulative, so a lost one is repaired by the next).
//!
//! Every message from a client is decoded and checked before it is relayed;
//! a malformed one closes that client's connection with a reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nephele_protocol::framing::{FrameReader, Lane, write_frame};
use nephele_protocol::wire::{ENVELOPE_PREFIX, Envelope, GoodbyeReason, Message, split_envelope};
use tokio::net::UdpSocket;
use tracing::Instrument;

use crate::tls::{GatewayIdentity, quic_server_config};

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// UDP address for QUIC.
    pub listen: SocketAddr,
    /// The desktop host sessions are relayed to.
    pub host: SocketAddr,
    /// Certificate and key presented to clients.
    pub identity: GatewayIdentity,
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
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    endpoint: quinn::Endpoint,
    stats: Arc<GatewayStats>,
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
        let ep = endpoint.clone();
        let st = stats.clone();
        let host = cfg.host;
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let st = st.clone();
                let span = tracing::info_span!("client", remote = %incoming.remote_address());
                tokio::spawn(
                    async move {
                        match incoming.await {
                            Ok(conn) => {
                                st.connections.fetch_add(1, Ordering::Relaxed);
                                if let Err(e) = serve(conn, host, st).await {
                                    tracing::info!(error = %e, "client session ended");
                                }
                            }
                            Err(e) => tracing::info!(error = %e, "handshake failed"),
                        }
                    }
                    .instrument(span),
                );
            }
        });
        if let Ok(addr) = endpoint.local_addr() {
            tracing::info!(%addr, %host, "gateway listening");
        }
        Ok(Self { endpoint, stats })
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

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(
            quinn::VarInt::from_u32(GoodbyeReason::Shutdown as u32),
            b"gateway shutting down",
        );
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
    host: SocketAddr,
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
    if !matches!(hello_msg, Message::Hello { .. }) {
        return Err(SessionEnd::Protocol("expected hello".into()));
    }

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
    udp.connect(host).await?;
    let udp = Arc::new(udp);
    let session: u64 = rand_u64();
    let span = tracing::info_span!("session", id = session);
    let _enter = span.enter();

    // Open the session: repeat hello until the host welcomes it.
    let mut out = Vec::with_capacity(2048);
    let mut dgram = vec![0u8; 2048];
    let welcome = {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > 12 {
                return Err(SessionEnd::HostSilent);
            }
            out.clear();
            Envelope {
                session,
                message: hello_msg.clone(),
            }
            .encode(&mut out);
            udp.send(&out).await?;
            match tokio::time::timeout(Duration::from_millis(250), udp.recv(&mut dgram)).await {
                Ok(Ok(n)) => match Envelope::decode(&dgram[..n]) {
                    Ok(Envelope {
                        session: s,
                        message: m @ Message::Welcome { .. },
                    }) if s == session => break m.to_vec(),
                    Ok(Envelope {
                        message: Message::Goodbye { reason },
                        ..
                    }) => return Err(SessionEnd::HostGoodbye(reason)),
                    _ => continue,
                },
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "host unreachable, retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(_) => {}
            }
        }
    };
    out.clear();
    write_frame(&mut out, |o| o.extend_from_slice(&welcome));
    ctl_send.write_all(&out).await?;
    tracing::info!(%host, "session relayed");

    let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);

    // Host → client.
    let host_to_client = {
        let udp = udp.clone();
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
                let n = udp.recv_buf(&mut rx).await?;
                let dgram = rx.split_to(n).freeze();
                let Ok((s, msg)) = split_envelope(&dgram) else {
                    continue;
                };
                if s != session || msg.len() < 2 {
                    continue;
                }
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
                    Ok(Message::InputAck { .. }) => {
                        let _ = conn.send_datagram(payload());
                    }
                    Ok(Message::Pong { .. }) => {
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
        let udp = udp.clone();
        async move {
            let mut buf = vec![0u8; 4096];
            let mut out = Vec::with_capacity(64);
            while let Some(m) = read_message(&mut ctl_recv, &mut reader, &mut buf).await? {
                let msg = Message::decode(&m).map_err(|e| SessionEnd::Protocol(e.to_string()))?;
                match msg {
                    Message::Ping { .. } => {}
                    Message::Goodbye { .. } => {
                        relay(&udp, session, &m, &mut out).await?;
                        return Err(SessionEnd::ClientGoodbye);
                    }
                    _ => return Err(SessionEnd::Protocol("unexpected control message".into())),
                }
                relay(&udp, session, &m, &mut out).await?;
            }
            Err(SessionEnd::ClientGoodbye)
        }
    };

    // Further client streams: input and recovery lanes.
    let lanes = {
        let udp = udp.clone();
        let conn = conn.clone();
        let stats = stats.clone();
        async move {
            loop {
                let mut recv = conn.accept_uni().await?;
                let udp = udp.clone();
                let stats = stats.clone();
                let conn = conn.clone();
                tokio::spawn(async move {
                    match relay_lane(&mut recv, &udp, session, &stats).await {
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

    // Keep the host session alive while the client is connected.
    let keepalive = {
        let udp = udp.clone();
        async move {
            let mut out = Vec::with_capacity(32);
            let start = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                out.clear();
                Envelope {
                    session,
                    message: Message::Ping {
                        stamp_us: start.elapsed().as_micros() as u64,
                    },
                }
                .encode(&mut out);
                udp.send(&out).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), SessionEnd>(())
        }
    };

    let result = tokio::select! {
        r = host_to_client => r,
        r = ctl_writer => r,
        r = ctl_reader => r,
        r = lanes => r,
        r = keepalive => r,
        e = conn.closed() => Err(SessionEnd::Connection(e)),
    };
    // A client that said goodbye and closed may race its own goodbye: a
    // connection it closed normally is a normal end.
    let closed_normally = matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == quinn::VarInt::from_u32(GoodbyeReason::Normal as u32)
    );
    // Tell the host, so it releases held input at once rather than at timeout.
    out.clear();
    Envelope {
        session,
        message: Message::Goodbye {
            reason: GoodbyeReason::Normal,
        },
    }
    .encode(&mut out);
    let _ = udp.send(&out).await;
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

/// Receive buffer for host datagrams, refilled when used up.
const RELAY_BUFFER: usize = 256 * 1024;

async fn relay(
    udp: &UdpSocket,
    session: u64,
    msg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SessionEnd> {
    out.clear();
    out.extend_from_slice(&session.to_be_bytes());
    out.extend_from_slice(msg);
    udp.send(out).await?;
    Ok(())
}

async fn relay_lane(
    recv: &mut quinn::RecvStream,
    udp: &UdpSocket,
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
        relay(udp, session, &m, &mut out).await?;
    }
    Ok(())
}

/// A random session id. Hand-rolled from the OS-seeded std hasher so the
/// gateway needs no RNG crate for one number per connection.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
