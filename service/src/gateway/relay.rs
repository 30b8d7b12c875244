//! One client connection, relayed: the QUIC streams and datagrams of the
//! client and the UDP socket toward its host, driving the protocol's
//! [`GatewaySession`], which decides what passes where (see
//! [`nephele_protocol::gateway`]). Video, sound and input acknowledgements
//! from the host go to the client as datagrams without a copy; control
//! messages go on the control stream through a writer task, so a slow
//! client's stream never holds up its video.

use crate::link::{MAX_SEALED, Opener, Sealer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nephele_protocol::framing::{Lane, write_frame};
use nephele_protocol::gateway::{
    Dest, End, FromHost, GatewayEvent, GatewaySession, HELLO_DEADLINE, LaneReader, OverRate,
};
use nephele_protocol::wire::{ENVELOPE_PREFIX, GoodbyeReason};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::GatewayStats;
use super::routing::Route;

/// Receive buffer for host datagrams, refilled when used up.
const RELAY_BUFFER: usize = 256 * 1024;

/// Control messages waiting for a slow client, at most.
const CONTROL_QUEUE: usize = 64;

/// The longest message a lane carries (an input event or a keyframe
/// request); anything longer is refused there anyway.
const LANE_MESSAGE: usize = 32;

/// A message from a unidirectional lane, copied into a fixed buffer so
/// relaying input allocates nothing.
struct LaneMessage {
    lane: Lane,
    len: usize,
    buf: [u8; LANE_MESSAGE],
}

/// Reads one unidirectional stream's messages for the session task.
async fn read_lane(mut recv: quinn::RecvStream, tx: mpsc::Sender<Result<LaneMessage, End>>) {
    let mut reader = LaneReader::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => return,
        };
        if let Err(e) = reader.push(&buf[..n]) {
            let _ = tx.send(Err(e)).await;
            return;
        }
        let lane = reader.lane().unwrap_or(Lane::Control);
        loop {
            let next = match reader.next_message() {
                Ok(None) => break,
                Ok(Some(m)) if m.len() <= LANE_MESSAGE => {
                    let mut lm = LaneMessage {
                        lane,
                        len: m.len(),
                        buf: [0; LANE_MESSAGE],
                    };
                    lm.buf[..m.len()].copy_from_slice(m);
                    Ok(lm)
                }
                Ok(Some(_)) => Err(End::Protocol(format!(
                    "message not allowed on {lane:?} lane"
                ))),
                Err(e) => Err(e),
            };
            let fatal = next.is_err();
            if tx.send(next).await.is_err() || fatal {
                return;
            }
        }
    }
}

/// Writes framed control messages to the client in order.
async fn write_control(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(m) = rx.recv().await {
        if send.write_all(&m).await.is_err() {
            return;
        }
    }
}

/// A UDP socket toward `host`'s address family, not connected, so a
/// failover only changes where it sends.
fn host_socket(host: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if host.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let s = crate::host::bind_udp(bind)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// The session task's own state.
struct Relay {
    core: GatewaySession,
    conn: quinn::Connection,
    udp: Option<UdpSocket>,
    control: mpsc::Sender<Vec<u8>>,
    stats: Arc<GatewayStats>,
    out: Vec<u8>,
    /// Seals what goes to the host, into `sealed`.
    sealer: Sealer,
    sealed: Vec<u8>,
    /// Opens what the host sends.
    opener: Opener,
    /// Held once the session's token was accepted: it counts as load.
    load: Option<Load>,
    /// What the core dropped over the client's rates, as last mirrored.
    over_rate: OverRate,
}

/// One session counted in the gateway's load while held.
struct Load(Arc<GatewayStats>);

impl Load {
    fn count(stats: &Arc<GatewayStats>) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        Self(stats.clone())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Relays one client connection until either side ends it. The end, for
/// the log, unless the client simply said goodbye.
pub(super) async fn serve(
    conn: quinn::Connection,
    route: &Route,
    stats: Arc<GatewayStats>,
) -> Result<(), End> {
    // A connection that opens no control stream is closed at the Hello
    // deadline, like one that opens it and says nothing.
    let (ctl_send, mut ctl_recv) = tokio::time::timeout(HELLO_DEADLINE, conn.accept_bi())
        .await
        .map_err(|_| End::Protocol("no control stream before the Hello deadline".into()))?
        .map_err(|e| End::Protocol(e.to_string()))?;
    let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let writer = tokio::spawn(write_control(ctl_send, control_rx));
    let (lane_tx, mut lane_rx) = mpsc::channel(256);
    let mut r = Relay {
        core: GatewaySession::new(Instant::now()),
        conn: conn.clone(),
        udp: None,
        control,
        stats,
        out: Vec::with_capacity(2048),
        sealer: Sealer::new(&route.link),
        sealed: vec![0; MAX_SEALED],
        opener: Opener::new(&route.link),
        load: None,
        over_rate: OverRate::default(),
    };
    let mut cbuf = vec![0u8; 4096];
    let mut rx = bytes::BytesMut::with_capacity(RELAY_BUFFER);
    let mut lost = false;
    while r.core.ended().is_none() {
        let now = Instant::now();
        let deadline = r
            .core
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1));
        if rx.capacity() < 2048 {
            rx.reserve(RELAY_BUFFER);
        }
        tokio::select! {
            res = ctl_recv.read(&mut cbuf) => match res {
                Ok(Some(n)) => {
                    let _ = r.core.handle_control(&cbuf[..n], Instant::now());
                }
                // The client closed its control stream: it is leaving.
                Ok(None) => r.core.client_gone(false),
                Err(_) => {
                    lost = true;
                    break;
                }
            },
            s = conn.accept_uni() => match s {
                Ok(recv) => {
                    tokio::spawn(read_lane(recv, lane_tx.clone()));
                }
                Err(_) => {
                    lost = true;
                    break;
                }
            },
            Some(m) = lane_rx.recv() => {
                let now = Instant::now();
                let res = m.and_then(|m| {
                    r.core.handle_lane_message(m.lane, &m.buf[..m.len], now)?;
                    if m.lane == Lane::Input {
                        r.stats.input_relayed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                });
                if let Err(e) = res {
                    tracing::info!(error = %e, "closing client that broke the protocol");
                    r.core.fail(e);
                }
            }
            d = conn.read_datagram() => match d {
                Ok(d) => {
                    // Datagrams may be lost anyway: a bad one is dropped,
                    // not a reason to end the session.
                    let counter = if r.core.handle_client_datagram(&d, Instant::now()) {
                        &r.stats.audio_relayed
                    } else {
                        &r.stats.bad_datagrams
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    lost = true;
                    break;
                }
            },
            got = recv_host(r.udp.as_ref(), &mut rx) => {
                if let Some((n, from)) = got {
                    let mut sealed = rx.split_to(n);
                    match r.opener.open(&mut sealed) {
                        Some(plain) => {
                            let dgram = sealed.freeze().slice(plain);
                            r.host_datagram(&dgram, from).await;
                        }
                        None => {
                            r.stats.link_refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
        r.core.handle_timeout(Instant::now());
        r.events(route).await;
        r.flush().await;
        r.mirror_over_rate();
    }
    // A client that said goodbye and closed may race its own goodbye: a
    // connection it closed normally is a normal end.
    let closed_normally = matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == quinn::VarInt::from_u32(GoodbyeReason::Normal as u32)
    );
    let said_goodbye = matches!(r.core.ended(), Some(End::ClientGoodbye));
    // Tell the host: a goodbye ends the session there; a lost client only
    // detaches it (held input released at once), to be resumed through
    // this or another gateway.
    r.core
        .client_gone(lost && !closed_normally && !said_goodbye);
    r.flush().await;
    let end = r.core.ended().cloned().unwrap_or(End::ClientLost);
    let reason = match &end {
        End::Refused(why) => format!("session refused: {why}"),
        End::HostGoodbye(GoodbyeReason::Unauthorized) => {
            "session refused: the desktop host did not accept this session's token".into()
        }
        _ => "session ended".into(),
    };
    conn.close(quinn::VarInt::from_u32(end.close_code()), reason.as_bytes());
    writer.abort();
    match end {
        End::ClientGoodbye => Ok(()),
        _ if closed_normally => Ok(()),
        e => Err(e),
    }
}

/// A datagram from the host socket, once there is one.
async fn recv_host(
    udp: Option<&UdpSocket>,
    rx: &mut bytes::BytesMut,
) -> Option<(usize, SocketAddr)> {
    match udp {
        Some(u) => u.recv_buf_from(rx).await.ok(),
        None => std::future::pending().await,
    }
}

impl Relay {
    /// What the host sent: relayed as the core says, without a copy.
    async fn host_datagram(&mut self, dgram: &bytes::Bytes, from: SocketAddr) {
        let verdict = self.core.handle_host_datagram(from, dgram, Instant::now());
        let payload = || dgram.slice(ENVELOPE_PREFIX..);
        match verdict {
            FromHost::Drop => {}
            FromHost::Video(_) => {
                self.stats.video_relayed.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = self.conn.send_datagram(payload()) {
                    tracing::debug!(error = %e, "video datagram not sent");
                }
            }
            FromHost::Datagram(_) => {
                let _ = self.conn.send_datagram(payload());
            }
            FromHost::Control(m) => {
                let mut framed = Vec::with_capacity(m.len() + 2);
                write_frame(&mut framed, |o| o.extend_from_slice(m));
                if self.core.ended().is_some() {
                    // The host's goodbye: worth waiting for room.
                    let _ = self.control.send(framed).await;
                } else {
                    let _ = self.control.try_send(framed);
                }
            }
        }
    }

    /// Carries out the core's events.
    async fn events(&mut self, route: &Route) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                GatewayEvent::Authorize {
                    token,
                    client_session,
                } => match route.target_for(&token, client_session) {
                    Ok(t) => match host_socket(t.host) {
                        Ok(u) => {
                            self.udp = Some(u);
                            self.core.authorized(t, Instant::now());
                            self.load.get_or_insert_with(|| Load::count(&self.stats));
                        }
                        Err(e) => self.core.fail(End::Protocol(format!("host socket: {e}"))),
                    },
                    Err(e) => {
                        self.stats.refused_tokens.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(reason = %e, "session refused");
                        self.core.refused(e.to_string());
                    }
                },
                GatewayEvent::Relaying { host } => {
                    let id = self.core.session().unwrap_or_default();
                    tracing::info!(session = id, %host, "session relayed");
                }
                GatewayEvent::Failover { from, to } => {
                    tracing::warn!(primary = %from, backup = %to, "host silent; moving the session to its backup");
                    self.stats.host_failovers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Adds what the core dropped over the client's rates since last time
    /// to the gateway's counters.
    fn mirror_over_rate(&mut self) {
        let now = self.core.over_rate();
        if now == self.over_rate {
            // The usual case, once per packet: nothing to add.
            return;
        }
        let s = &self.stats;
        s.input_over_rate
            .fetch_add(now.input - self.over_rate.input, Ordering::Relaxed);
        s.datagrams_over_rate
            .fetch_add(now.datagrams - self.over_rate.datagrams, Ordering::Relaxed);
        s.control_over_rate
            .fetch_add(now.control - self.over_rate.control, Ordering::Relaxed);
        self.over_rate = now;
    }

    /// Sends what the core queued.
    async fn flush(&mut self) {
        while let Some(dest) = self.core.poll_transmit(&mut self.out) {
            match dest {
                Dest::Host(to) => {
                    if let Some(u) = &self.udp
                        && let Some(sealed) = self.sealer.seal(&self.out, &mut self.sealed)
                        && let Err(e) = u.send_to(sealed, to).await
                    {
                        tracing::debug!(error = %e, "sending to the host");
                    }
                }
                Dest::ClientControl => {
                    let mut framed = Vec::with_capacity(self.out.len() + 2);
                    write_frame(&mut framed, |o| o.extend_from_slice(&self.out));
                    let _ = self.control.try_send(framed);
                }
            }
        }
    }
}
