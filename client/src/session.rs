//! A streaming session, headless: connect to a gateway over QUIC, receive
//! and decode video, send input. The window is one consumer of it (through a
//! [`FrameSink`]); headless runs and tests are others.
//!
//! Threads:
//!
//! * `nephele-net` runs a single-threaded tokio runtime with the QUIC
//!   connection. It owns the sans-IO [`Reassembler`] and drives the
//!   [`InputSender`] that other threads push into. Control, input and
//!   recovery each have their own QUIC stream, so a keyframe request never
//!   waits behind input and input never waits behind video (which travels as
//!   datagrams).
//! * `nephele-decode` decodes complete frames from a bounded queue and hands
//!   each picture to the sink. When the queue is full the frame is dropped and
//!   a keyframe requested, rather than letting latency grow.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nephele_protocol::activity::Phase;
use nephele_protocol::framing::{FrameReader, Lane, write_frame};
use nephele_protocol::input::{InputError, InputSender};
use nephele_protocol::rate::{ClockMap, QueueDelay};
use nephele_protocol::video::{CompleteFrame, Reassembler, ReassemblerConfig, ReassemblyEvent};
use nephele_protocol::wire::{GoodbyeReason, InputEvent, Message};
use rustls::pki_types::CertificateDer;
use tokio::sync::{Notify, watch};

use crate::activity::Activity;
use crate::audio::{Audio, AudioConfig, MIC_QUEUE, MicPacket, Speaker};
use crate::gamepad::Gamepads;
use crate::stats::{Route, Stats, local_us};
use crate::video::{H264Decoder, Picture};
use nephele_platform::gamepad::PadEvent;

/// How often the client tells the host what the path does to video (loss,
/// queueing delay, receive rate): often enough that the host backs off
/// within a few frames of a queue forming.
const REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// The loss figure is recomputed this often: over shorter windows a few
/// fragments decide it.
const LOSS_WINDOW: Duration = Duration::from_millis(500);

/// Pings (which also map the host's clock) this often after the first
/// [`STARTUP_PINGS`]: often enough that a quiet session (paused, or a still
/// desktop without sound) still hears from the host several times a second,
/// so silence means trouble.
const PING_INTERVAL: Duration = Duration::from_millis(250);

/// The first pings go at once and then every [`STARTUP_PING_INTERVAL`]: the
/// session's first keyframe can hold the first answers in a queue, and the
/// clock map needs one exchange through an empty queue to be right.
const STARTUP_PINGS: u32 = 8;
const STARTUP_PING_INTERVAL: Duration = Duration::from_millis(125);

/// The activity heartbeat's period.
const ACTIVITY_INTERVAL: Duration = Duration::from_secs(1);

/// After losing the connection, the client tries to reconnect this long.
pub const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// A reconnect attempt's handshake may take this long before the next
/// gateway is tried (the first connection allows [`HANDSHAKE_TIMEOUT`]).
const RECONNECT_HANDSHAKE: Duration = Duration::from_secs(1);

/// Runs the session's [`Renew`] off the network thread's runtime.
async fn renew(cfg: &ConnectConfig) -> Option<Result<Renewed, String>> {
    let r = cfg.renew.clone()?;
    tokio::task::spawn_blocking(move || (r.0)()).await.ok()
}

/// Whether an error means the path to the service broke (the gateway died
/// or the network went away), so reconnecting may save the session, rather
/// than that the service ended or refused it.
fn lost_link(e: &SessionError) -> bool {
    let conn = match e {
        SessionError::Connection(c)
        | SessionError::Read(quinn::ReadError::ConnectionLost(c))
        | SessionError::Write(quinn::WriteError::ConnectionLost(c)) => c,
        // The gateway is shutting down, or the host is (the gateway will
        // attach the session to its backup).
        SessionError::Ended(GoodbyeReason::Shutdown) => return true,
        _ => return false,
    };
    match conn {
        quinn::ConnectionError::TimedOut
        | quinn::ConnectionError::Reset
        | quinn::ConnectionError::TransportError(_)
        | quinn::ConnectionError::ConnectionClosed(_) => true,
        quinn::ConnectionError::ApplicationClosed(a) => {
            a.error_code == quinn::VarInt::from_u32(GoodbyeReason::Shutdown as u32)
        }
        _ => false,
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// The gateway's QUIC address.
    pub gateway: SocketAddr,
    /// The name the gateway's certificate must carry (DNS name or IP address).
    pub server_name: String,
    /// Certificate authorities trusted for the gateway.
    pub roots: Vec<CertificateDer<'static>>,
    /// Requested picture width.
    pub width: u16,
    /// Requested picture height.
    pub height: u16,
    /// Requested frame rate.
    pub fps: u8,
    /// Session token from the directory (empty for direct connections).
    pub token: Vec<u8>,
    /// Gateway and PoP labels for the stats.
    pub route: Route,
    /// Gateways to try in turn when this one does not answer (the rest of
    /// the PoP ranking, best first).
    pub fallbacks: Vec<Fallback>,
    /// Append every complete access unit received to this file (raw H.264
    /// Annex B, what `nephele decode` reads).
    pub save_stream: Option<std::path::PathBuf>,
    /// Speaker and microphone.
    pub audio: AudioConfig,
    /// Fetches a fresh session token for the same session, for reconnects
    /// after the first token expired.
    pub renew: Option<Renew>,
    /// Share the clipboard's text with the desktop, both ways.
    pub clipboard: bool,
    /// The H.264 decoder.
    pub decoder: crate::video::DecoderChoice,
}

/// A way to a fresh session token for the same session, and the gateways
/// live now (the directory's resume endpoint with the session's resume
/// token). Blocking.
#[derive(Clone)]
pub struct Renew(pub Arc<dyn Fn() -> Result<Renewed, String> + Send + Sync>);

/// What [`Renew`] brings.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// A fresh session token.
    pub token: Vec<u8>,
    /// The gateways the directory lists now (the set changes with load and
    /// failures), best first where known.
    pub gateways: Vec<Fallback>,
}

impl std::fmt::Debug for Renew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renew")
    }
}

/// Another gateway for the same session.
#[derive(Debug, Clone)]
pub struct Fallback {
    /// Its QUIC address.
    pub gateway: SocketAddr,
    /// The name its certificate carries.
    pub server_name: String,
    /// Its labels.
    pub route: Route,
}

/// What opening a connection yields.
type Opened = (
    quinn::Connection,
    quinn::Endpoint,
    quinn::SendStream,
    quinn::RecvStream,
    StreamInfo,
);

/// Why a session could not start or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The TLS configuration was refused (bad CA file contents).
    #[error("TLS setup: {0}")]
    Tls(#[from] nephele_service::tls::TlsError),
    /// The chosen H.264 decoder cannot start.
    #[error(transparent)]
    Decoder(#[from] crate::video::VideoError),
    /// The gateway address or name cannot be used.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The gateway.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectError,
    },
    /// Nothing came back from the gateway's address during the handshake.
    #[error(
        "the gateway at {addr} did not answer within {secs} s: is it running, and does UDP reach it?",
        secs = HANDSHAKE_TIMEOUT.as_secs()
    )]
    NoAnswer {
        /// The gateway's address.
        addr: SocketAddr,
    },
    /// The QUIC connection failed or was closed. (Not a `source`: the
    /// message already carries quinn's words, once.)
    #[error("connection to the gateway: {0}")]
    Connection(quinn::ConnectionError),
    /// The gateway's certificate is not signed by a trusted authority or not
    /// for the expected name.
    #[error(
        "the gateway at {addr} presented a certificate this client does not trust ({detail}): is --ca the authority that signed it, and is the name right?"
    )]
    Certificate {
        /// The gateway.
        addr: SocketAddr,
        /// What the TLS library said.
        detail: String,
    },
    /// Writing to a stream failed.
    #[error("sending to the gateway: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading a stream failed.
    #[error("receiving from the gateway: {0}")]
    Read(#[from] quinn::ReadError),
    /// Local I/O (socket, thread) failed.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The service ended the session.
    #[error("the service ended the session ({0:?})")]
    Ended(GoodbyeReason),
    /// The gateway refused the session token.
    #[error("the gateway refused the session: {0}")]
    Refused(String),
    /// Too much input went unacknowledged.
    #[error(transparent)]
    Input(#[from] InputError),
}

impl From<quinn::ConnectionError> for SessionError {
    fn from(e: quinn::ConnectionError) -> Self {
        Self::Connection(e)
    }
}

/// Per-frame facts that travel with a picture to the sink.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    /// Frame number.
    pub frame_id: u32,
    /// When its last fragment arrived.
    pub completed_at: Instant,
    /// Host capture stamp.
    pub capture_us: u64,
}

/// Receives decoded pictures on the decode thread.
pub trait FrameSink: Send + 'static {
    /// Takes (copies or converts) a picture; must not block on the network.
    fn present(&mut self, pic: &Picture<'_>, meta: FrameMeta);
}

/// Called once, on the network thread, when a session ends (with the error, if any).
pub type OnEnd = Box<dyn FnOnce(Option<&SessionError>) + Send>;

/// What the host agreed to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// Host's session id.
    pub session_id: u64,
    /// Picture width.
    pub width: u16,
    /// Picture height.
    pub height: u16,
    /// Frame rate.
    pub fps: u8,
}

struct InputShared {
    sender: Mutex<InputSender>,
    wake: Notify,
    activity: Arc<Activity>,
    /// Local clipboard text for the desktop.
    clipboard_out: Arc<crate::clipboard::Outbox>,
}

/// Pushes input into a session from any thread, without blocking.
#[derive(Clone)]
pub struct InputHandle {
    shared: Arc<InputShared>,
}

impl std::fmt::Debug for InputHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputHandle")
    }
}

impl InputHandle {
    /// Queues an event for the host.
    pub fn push(&self, ev: InputEvent) -> Result<(), InputError> {
        self.shared.activity.touch();
        let r = match self.shared.sender.lock() {
            Ok(mut s) => s.push(ev),
            Err(_) => Err(InputError::Stalled),
        };
        self.shared.wake.notify_one();
        r
    }

    /// Events not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.shared
            .sender
            .lock()
            .map(|s| s.in_flight())
            .unwrap_or(0)
    }
}

/// A running session.
pub struct Session {
    info: StreamInfo,
    input: InputHandle,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    net: Option<JoinHandle<Result<(), SessionError>>>,
    decode: Option<JoinHandle<()>>,
    started: Instant,
    ended: Arc<AtomicBool>,
    pads: Arc<Gamepads>,
    audio: Audio,
    /// The clipboard thread, when the clipboard is shared.
    _clipboard: Option<crate::clipboard::ClipboardLink>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("info", &self.info).finish()
    }
}

/// How long the QUIC handshake may take before the gateway counts as unreachable.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Complete frames waiting for the decoder, at most.
const DECODE_QUEUE: usize = 3;

impl Session {
    /// Connects, opens the session and starts streaming into `sink`. Returns
    /// once the host has welcomed the session. `on_end` runs on the network
    /// thread when the session ends for any reason.
    pub fn connect(
        cfg: ConnectConfig,
        stats: Arc<Stats>,
        sink: Box<dyn FrameSink>,
        on_end: OnEnd,
    ) -> Result<Self, SessionError> {
        if let Ok(mut r) = stats.route.lock() {
            *r = cfg.route.clone();
        }
        let activity = Arc::new(Activity::default());
        let shared = Arc::new(InputShared {
            sender: Mutex::new(InputSender::new()),
            wake: Notify::new(),
            activity: activity.clone(),
            clipboard_out: Arc::default(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let pads = Arc::new(Gamepads::start(
            InputHandle {
                shared: shared.clone(),
            },
            stats.clone(),
        ));
        let (ready_tx, ready_rx) =
            std::sync::mpsc::sync_channel::<Result<StreamInfo, SessionError>>(1);
        let (frame_tx, frame_rx) = std::sync::mpsc::sync_channel::<CompleteFrame>(DECODE_QUEUE);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(DECODE_QUEUE + 8);
        let want_keyframe = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let (mic_tx, mic_rx) = tokio::sync::mpsc::channel(MIC_QUEUE);
        let audio = Audio::start(cfg.audio.clone(), stats.clone(), mic_tx, activity.clone());
        let speaker = audio.speaker();
        let (clipboard, clipboard_in) = if cfg.clipboard {
            let (tx, rx) = std::sync::mpsc::sync_channel(crate::clipboard::INBOUND);
            let w = shared.clone();
            let link = crate::clipboard::ClipboardLink::start(
                shared.clipboard_out.clone(),
                Arc::new(move || w.wake.notify_one()),
                rx,
            )?;
            (Some(link), Some(tx))
        } else {
            (None, None)
        };
        let saver = match &cfg.save_stream {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        };

        // Made here so a decoder that cannot start fails the session with
        // its reason.
        let decoder = H264Decoder::with(cfg.decoder)?;
        let name = decoder.backend().name();
        tracing::info!(decoder = name, "H.264 decoder");
        let _ = stats.decoder.set(name);
        let decode = {
            let stats = stats.clone();
            let want_keyframe = want_keyframe.clone();
            let wake = shared.clone();
            std::thread::Builder::new()
                .name("nephele-decode".into())
                .spawn(move || {
                    // Bulk work, though the window's thread may have started it.
                    nephele_platform::sched::ordinary();
                    decode_loop(
                        decoder,
                        frame_rx,
                        recycle_tx,
                        sink,
                        stats,
                        want_keyframe,
                        wake,
                        saver,
                    )
                })?
        };

        let net = {
            let stats = stats.clone();
            let shared = shared.clone();
            let ended = ended.clone();
            let net_pads = pads.clone();
            std::thread::Builder::new()
                .name("nephele-net".into())
                .spawn(move || {
                    // Input, its acknowledgement and the frames' last
                    // fragments all pass through here.
                    nephele_platform::sched::latency_critical();
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let res = rt.block_on(async move {
                        let net = Net {
                            stats,
                            shared,
                            frame_tx,
                            recycle_rx,
                            want_keyframe,
                            stop: stop_rx,
                            pads: net_pads,
                            speaker,
                            mic: mic_rx,
                            client_session: nephele_platform::process::random_id(),
                            clipboard_in,
                        };
                        net.run(cfg, ready_tx).await
                    });
                    ended.store(true, Ordering::Release);
                    on_end(res.as_ref().err());
                    res
                })?
        };

        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = net.join();
                let _ = decode.join();
                return Err(e);
            }
            Err(_) => {
                // The network thread ended without a word: report its error.
                let err = net.join().ok().and_then(|r| r.err());
                let _ = decode.join();
                return Err(
                    err.unwrap_or_else(|| SessionError::Protocol("network thread ended".into()))
                );
            }
        };
        Ok(Self {
            info,
            input: InputHandle { shared },
            stats,
            stop: stop_tx,
            net: Some(net),
            decode: Some(decode),
            started: Instant::now(),
            ended,
            pads,
            audio,
            _clipboard: clipboard,
        })
    }

    /// What the user is doing, as reported to the host (input marks it by
    /// itself; the window adds its state and keep-active requests).
    pub fn activity(&self) -> Arc<Activity> {
        self.input.shared.activity.clone()
    }

    /// Mutes or unmutes the microphone.
    pub fn set_mic_muted(&self, muted: bool) {
        self.audio.set_muted(muted);
    }

    /// Whether the microphone is muted.
    pub fn mic_muted(&self) -> bool {
        self.audio.muted()
    }

    /// The stream's geometry.
    pub fn info(&self) -> StreamInfo {
        self.info
    }

    /// Where to push input.
    pub fn input(&self) -> InputHandle {
        self.input.clone()
    }

    /// Where scripted gamepads' device events go (the same path as real
    /// gamepads' from there on).
    pub fn pad_script(&self) -> std::sync::mpsc::Sender<PadEvent> {
        self.pads.script()
    }

    /// Live statistics.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// When the session started streaming.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the session has ended (connection lost or closed).
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Ends the session: waits (up to a second) until the host has
    /// acknowledged every input event, says goodbye, and joins the threads.
    pub fn close(mut self) -> Result<(), SessionError> {
        let _ = self.stop.send(true);
        let res = self.net.take().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(SessionError::Protocol("network thread panicked".into())))
        });
        if let Some(d) = self.decode.take() {
            let _ = d.join();
        }
        res.unwrap_or(Ok(()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.net.take() {
            let _ = h.join();
        }
        if let Some(d) = self.decode.take() {
            let _ = d.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_loop(
    mut decoder: H264Decoder,
    frames: Receiver<CompleteFrame>,
    recycle: SyncSender<Vec<u8>>,
    mut sink: Box<dyn FrameSink>,
    stats: Arc<Stats>,
    want_keyframe: Arc<AtomicBool>,
    wake: Arc<InputShared>,
    mut saver: Option<std::io::BufWriter<std::fs::File>>,
) {
    while let Ok(frame) = frames.recv() {
        if let Some(w) = saver.as_mut()
            && let Err(e) = std::io::Write::write_all(w, &frame.data)
        {
            tracing::warn!(error = %e, "saving the stream failed; no longer saving");
            saver = None;
        }
        let meta = FrameMeta {
            frame_id: frame.frame_id,
            completed_at: frame.completed_at,
            capture_us: frame.capture_us,
        };
        let t0 = Instant::now();
        let mut got = false;
        let corrupt = decoder.decode(&frame.data, |pic| {
            stats.decode.record(t0.elapsed());
            stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
            stats.picture(pic.width, pic.height);
            got = true;
            sink.present(&pic, meta);
        });
        if corrupt {
            stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            want_keyframe.store(true, Ordering::Release);
            wake.wake.notify_one();
        }
        if !got {
            tracing::trace!(frame = frame.frame_id, "frame produced no picture");
        }
        let _ = recycle.try_send(frame.data);
    }
}

struct Net {
    stats: Arc<Stats>,
    shared: Arc<InputShared>,
    frame_tx: SyncSender<CompleteFrame>,
    recycle_rx: Receiver<Vec<u8>>,
    want_keyframe: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
    pads: Arc<Gamepads>,
    speaker: Option<Arc<Mutex<Speaker>>>,
    mic: tokio::sync::mpsc::Receiver<MicPacket>,
    /// The session's name for direct gateways, the same on every reconnect.
    client_session: u64,
    /// Clipboard text from the desktop, for the clipboard thread (when the
    /// user shares the clipboard).
    clipboard_in: Option<SyncSender<String>>,
}

fn client_socket(gateway: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind: SocketAddr = if gateway.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    // A keyframe arrives as a burst of ~100 datagrams; the default receive
    // buffer can overflow before the network thread runs. Best effort.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&bind.into())?;
    Ok(s.into())
}

impl Net {
    async fn run(
        mut self,
        cfg: ConnectConfig,
        ready: SyncSender<Result<StreamInfo, SessionError>>,
    ) -> Result<(), SessionError> {
        let opened = self.open_any(&cfg).await;
        let (mut conn, mut endpoint, mut ctl_send, mut ctl_recv, info) = match opened {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                let _ = ready.send(Err(e));
                return Err(SessionError::Protocol(msg));
            }
        };
        let _ = ready.send(Ok(info));
        tracing::info!(gateway = %cfg.gateway, width = info.width, height = info.height, fps = info.fps, "streaming");
        if let Ok(mut c) = self.stats.continuity.lock() {
            c.account_cpu();
        }
        let res = loop {
            let res = self.stream(&conn, &mut ctl_send, ctl_recv).await;
            let lost = match &res {
                Err(e) if lost_link(e) && !*self.stop.borrow() => e.to_string(),
                _ => break res,
            };
            // The link is gone, the session is not: reconnect to it through
            // the next gateway in the ranking.
            tracing::warn!(error = %lost, "connection to the gateway lost; reconnecting");
            let last = self.stats.presentation.lock().ok().and_then(|p| p.last);
            if let Ok(mut c) = self.stats.continuity.lock() {
                c.set_reconnecting(true, last);
            }
            conn.close(
                quinn::VarInt::from_u32(GoodbyeReason::Normal as u32),
                b"lost",
            );
            match self.reconnect(&cfg).await {
                Ok(Some((c, e, s, r, _))) => {
                    (conn, endpoint, ctl_send, ctl_recv) = (c, e, s, r);
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut c) = self.stats.continuity.lock() {
                        c.set_reconnecting(false, None);
                    }
                    self.after_new_path();
                }
                // Closed while reconnecting.
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        let reason = if res.is_ok() {
            GoodbyeReason::Normal
        } else {
            GoodbyeReason::ProtocolError
        };
        let mut out = Vec::new();
        write_frame(&mut out, |o| Message::Goodbye { reason }.encode(o));
        let _ = ctl_send.write_all(&out).await;
        let _ = ctl_send.finish();
        conn.close(quinn::VarInt::from_u32(reason as u32), b"client closed");
        let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
        res
    }

    /// The session continues on a new path (another gateway, or a backup
    /// host): what the host may not have gets there again. Input it has not
    /// acknowledged goes at once (it applies each event once), and the
    /// gamepads are announced again (the host released them).
    fn after_new_path(&self) {
        if let Ok(mut s) = self.shared.sender.lock() {
            s.resend_unacked(Instant::now());
        }
        self.pads.announce_again(&InputHandle {
            shared: self.shared.clone(),
        });
    }

    /// Tries the gateways in ranking order, starting after the one in use,
    /// until one attaches the session again, for up to [`RECONNECT_FOR`].
    /// `None` when the session was closed meanwhile.
    async fn reconnect(&mut self, cfg: &ConnectConfig) -> Result<Option<Opened>, SessionError> {
        let mut all = vec![Fallback {
            gateway: cfg.gateway,
            server_name: cfg.server_name.clone(),
            route: cfg.route.clone(),
        }];
        all.extend(cfg.fallbacks.iter().cloned());
        let mut current = self
            .stats
            .route
            .lock()
            .ok()
            .and_then(|r| all.iter().position(|f| f.route.gateway_id == r.gateway_id))
            .unwrap_or(0);
        let give_up = Instant::now() + RECONNECT_FOR;
        let mut last_err = None;
        let mut token = cfg.token.clone();
        let mut renewed = false;
        let mut last_refresh: Option<Instant> = None;
        while Instant::now() < give_up {
            for k in 1..=all.len() {
                if *self.stop.borrow() {
                    return Ok(None);
                }
                let next = &all[(current + k) % all.len()];
                let mut attempt = cfg.clone();
                attempt.gateway = next.gateway;
                attempt.server_name = next.server_name.clone();
                attempt.route = next.route.clone();
                attempt.token.clone_from(&token);
                match self.open(&attempt, RECONNECT_HANDSHAKE).await {
                    Ok(v) => {
                        tracing::info!(pop = %next.route.pop, gateway = %next.route.gateway_id, "reconnected");
                        if let Ok(mut r) = self.stats.route.lock() {
                            *r = next.route.clone();
                        }
                        return Ok(Some(v));
                    }
                    Err(e) if lost_link(&e) || matches!(e, SessionError::NoAnswer { .. }) => {
                        tracing::info!(pop = %next.route.pop, error = %e, "not this gateway");
                        last_err = Some(e);
                    }
                    // The session token expired during a long outage: the
                    // resume token fetches a fresh one for the same session.
                    Err(SessionError::Refused(why)) if !renewed && cfg.renew.is_some() => {
                        renewed = true;
                        tracing::info!(reason = %why, "session token refused; renewing it");
                        match renew(cfg).await {
                            Some(Ok(r)) => token = r.token,
                            Some(Err(e)) => return Err(SessionError::Refused(e)),
                            None => return Err(SessionError::Refused(why)),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            // No gateway of the list answered: the set may have changed
            // (gateways leave and join with load and failures). Ask the
            // directory for the gateways live now.
            if last_refresh.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(2))
                && cfg.renew.is_some()
            {
                last_refresh = Some(Instant::now());
                match renew(cfg).await {
                    Some(Ok(r)) => {
                        token = r.token;
                        if !r.gateways.is_empty() {
                            tracing::info!(
                                gateways = r.gateways.len(),
                                "fresh gateway list from the directory"
                            );
                            all = r.gateways;
                            // The next round starts at the list's head.
                            current = all.len() - 1;
                            continue;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "the directory did not renew the session")
                    }
                    None => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(last_err.unwrap_or_else(|| SessionError::Protocol("no gateway to reconnect to".into())))
    }

    /// Opens the session through the configured gateway, or, when it does
    /// not answer, through each fallback in turn.
    async fn open_any(&mut self, cfg: &ConnectConfig) -> Result<Opened, SessionError> {
        let mut attempt = cfg.clone();
        let mut rest = cfg.fallbacks.iter();
        loop {
            match self.open(&attempt, HANDSHAKE_TIMEOUT).await {
                Ok(v) => {
                    if let Ok(mut r) = self.stats.route.lock() {
                        *r = attempt.route.clone();
                    }
                    return Ok(v);
                }
                Err(e @ (SessionError::NoAnswer { .. } | SessionError::Connection(_))) => {
                    let Some(next) = rest.next() else {
                        return Err(e);
                    };
                    tracing::warn!(
                        pop = %attempt.route.pop,
                        error = %e,
                        next = %next.route.pop,
                        "gateway unavailable; trying the next PoP"
                    );
                    attempt.gateway = next.gateway;
                    attempt.server_name = next.server_name.clone();
                    attempt.route = next.route.clone();
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn open(
        &mut self,
        cfg: &ConnectConfig,
        handshake: Duration,
    ) -> Result<Opened, SessionError> {
        let mut client_cfg = nephele_service::tls::quic_client_config(&cfg.roots)?;
        // The handshake may take `handshake`; once connected the gateway's
        // shorter idle timeout applies (the smaller side wins), so a dead
        // gateway is noticed quickly.
        let mut transport = nephele_service::tls::transport_config();
        transport.max_idle_timeout(quinn::IdleTimeout::try_from(handshake).ok());
        client_cfg.transport_config(Arc::new(transport));
        let socket = client_socket(cfg.gateway)?;
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(client_cfg);
        let connecting = endpoint
            .connect(cfg.gateway, &cfg.server_name)
            .map_err(|source| SessionError::Connect {
                addr: cfg.gateway,
                source,
            })?;
        let conn = match tokio::time::timeout(handshake, connecting).await {
            Err(_) | Ok(Err(quinn::ConnectionError::TimedOut)) => {
                return Err(SessionError::NoAnswer { addr: cfg.gateway });
            }
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let text = e.to_string();
                return Err(match text.split_once("invalid peer certificate: ") {
                    Some((_, detail)) => SessionError::Certificate {
                        addr: cfg.gateway,
                        detail: detail.to_string(),
                    },
                    None => e.into(),
                });
            }
        };
        let (mut ctl_send, mut ctl_recv) = conn.open_bi().await?;
        let mut out = vec![Lane::Control as u8];
        write_frame(&mut out, |o| {
            Message::Hello {
                width: cfg.width,
                height: cfg.height,
                fps: cfg.fps,
                token: &cfg.token,
                client_session: self.client_session,
            }
            .encode(o)
        });
        ctl_send.write_all(&out).await?;
        let mut reader = FrameReader::new();
        let mut buf = [0u8; 1024];
        let welcome = loop {
            if let Some(f) = reader
                .next_frame()
                .map_err(|e| SessionError::Protocol(e.to_string()))?
            {
                break f.to_vec();
            }
            match ctl_recv.read(&mut buf).await {
                Ok(Some(n)) => reader.push(&buf[..n]),
                Ok(None) => {
                    return Err(SessionError::Protocol(
                        "gateway closed the control stream before welcome".into(),
                    ));
                }
                Err(quinn::ReadError::ConnectionLost(
                    quinn::ConnectionError::ApplicationClosed(c),
                )) if c.error_code
                    == quinn::VarInt::from_u32(GoodbyeReason::Unauthorized as u32) =>
                {
                    let reason = String::from_utf8_lossy(&c.reason);
                    let reason = reason.strip_prefix("session refused: ").unwrap_or(&reason);
                    return Err(SessionError::Refused(reason.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        };
        match Message::decode(&welcome).map_err(|e| SessionError::Protocol(e.to_string()))? {
            Message::Welcome {
                session_id,
                width,
                height,
                fps,
                ..
            } => Ok((
                conn,
                endpoint,
                ctl_send,
                ctl_recv,
                StreamInfo {
                    session_id,
                    width,
                    height,
                    fps,
                },
            )),
            Message::Goodbye { reason } => Err(SessionError::Ended(reason)),
            other => Err(SessionError::Protocol(format!(
                "expected welcome, got {other:?}"
            ))),
        }
    }

    async fn stream(
        &mut self,
        conn: &quinn::Connection,
        ctl_send: &mut quinn::SendStream,
        mut ctl_recv: quinn::RecvStream,
    ) -> Result<(), SessionError> {
        let mut input_stream = conn.open_uni().await?;
        input_stream.write_all(&[Lane::Input as u8]).await?;
        let mut recovery_stream = conn.open_uni().await?;
        recovery_stream.write_all(&[Lane::Recovery as u8]).await?;

        let mut reasm = Reassembler::new(ReassemblerConfig::default(), Instant::now());
        let mut ctl_reader = FrameReader::new();
        let mut ctl_buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(4096);
        let mut next_ping = Instant::now();
        let mut pings = 0u32;
        let mut next_report = Instant::now() + REPORT_INTERVAL;
        let mut next_loss = Instant::now() + LOSS_WINDOW;
        let mut reported = nephele_protocol::video::ReassemblyStats::default();
        let mut loss = 0.0f64;
        let mut bytes_at_report = 0u64;
        let mut queue = QueueDelay::default();
        let mut clock = ClockMap::default();
        let mut draining: Option<Instant> = None;
        let mut mic_buf = bytes::BytesMut::new();
        let mut mic_msg = Vec::with_capacity(nephele_protocol::MAX_DATAGRAM);
        let mut next_activity = Instant::now();
        // A fresh path: the host tells the phase if it is not streaming.
        if let Ok(mut c) = self.stats.continuity.lock() {
            c.set_phase(Phase::Streaming, 0);
        }

        loop {
            let now = Instant::now();
            let mut deadline = next_ping.min(next_report).min(next_activity);
            if let Some(t) = reasm.poll_timeout(now) {
                deadline = deadline.min(t);
            }
            if let Ok(s) = self.shared.sender.lock()
                && let Some(t) = s.poll_timeout()
            {
                deadline = deadline.min(t);
            }
            if let Some(d) = draining {
                deadline = deadline.min(d);
            }
            let deadline = deadline.max(now);
            tokio::select! {
                biased;
                changed = self.stop.changed(), if draining.is_none() => {
                    if changed.is_err() || *self.stop.borrow() {
                        draining = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
                d = conn.read_datagram() => {
                    let d = d?;
                    self.stats.heard();
                    self.stats.bytes_received.fetch_add(d.len() as u64, Ordering::Relaxed);
                    self.on_datagram(&d, &mut reasm, &clock);
                }
                Some(p) = self.mic.recv() => {
                    // Datagrams leave as slices of one buffer, refilled
                    // when used up, so sending allocates once per 64 KiB.
                    if mic_buf.capacity() < 2 * nephele_protocol::MAX_DATAGRAM {
                        mic_buf.reserve(64 * 1024);
                    }
                    mic_msg.clear();
                    Message::Audio {
                        seq: p.seq,
                        capture_us: p.capture_us,
                        payload: p.payload(),
                        previous: p.previous(),
                    }
                    .encode(&mut mic_msg);
                    mic_buf.extend_from_slice(&mic_msg);
                    if let Err(e) = conn.send_datagram(mic_buf.split().freeze()) {
                        tracing::debug!(error = %e, "microphone datagram not sent");
                    }
                }
                () = self.shared.wake.notified() => {}
                r = ctl_recv.read(&mut ctl_buf) => {
                    match r? {
                        Some(n) => {
                            self.stats.heard();
                            self.stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                            ctl_reader.push(&ctl_buf[..n]);
                            while let Some(f) = ctl_reader.next_frame().map_err(|e| SessionError::Protocol(e.to_string()))? {
                                match Message::decode(f) {
                                    Ok(Message::Goodbye { reason }) => return Err(SessionError::Ended(reason)),
                                    Ok(Message::Pong { stamp_us, host_us }) => {
                                        clock.on_pong(stamp_us as i64, local_us(Instant::now()), host_us);
                                        self.publish_clock(&clock);
                                    }
                                    Ok(Message::Rumble { pad, strong, weak, duration_ms }) => {
                                        self.pads.rumble(pad, strong, weak, duration_ms);
                                    }
                                    Ok(Message::Status { phase, ms }) => self.on_status(phase, ms),
                                    Ok(m @ (Message::CursorShape { .. } | Message::CursorPosition { .. })) => {
                                        self.stats.cursor.take(&m);
                                    }
                                    Ok(Message::Clipboard { text }) => {
                                        if let (Some(tx), Ok(text)) = (&self.clipboard_in, std::str::from_utf8(text)) {
                                            let _ = tx.try_send(text.to_string());
                                        }
                                    }
                                    Ok(Message::Welcome { session_id, .. }) => {
                                        // A backup host took the session over (the gateway
                                        // moved it): a new clock, frames numbered afresh.
                                        tracing::warn!(session_id, "the session moved to a backup host");
                                        reasm = Reassembler::new(ReassemblerConfig::default(), Instant::now());
                                        reported = nephele_protocol::video::ReassemblyStats::default();
                                        queue = QueueDelay::default();
                                        clock = ClockMap::default();
                                        pings = 0;
                                        next_ping = Instant::now();
                                        self.stats.new_host();
                                        let last = self.stats.presentation.lock().ok().and_then(|p| p.last);
                                        if let Ok(mut c) = self.stats.continuity.lock() {
                                            c.takeovers += 1;
                                            c.outage_from = Some((last.unwrap_or_else(Instant::now), true));
                                            c.set_phase(Phase::Streaming, 0);
                                        }
                                        self.after_new_path();
                                    }
                                    Ok(other) => tracing::debug!(?other, "unexpected control message"),
                                    Err(e) => return Err(SessionError::Protocol(e.to_string())),
                                }
                            }
                        }
                        None => return Err(SessionError::Protocol("gateway closed the control stream".into())),
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();

            // Input out, in order.
            out.clear();
            if let Ok(mut s) = self.shared.sender.lock() {
                let rtt = conn.rtt();
                s.set_rto(rtt * 3 + Duration::from_millis(30));
                let sent_before = s.stats().sent;
                while let Some((seq, event)) = s.poll_transmit(now) {
                    write_frame(&mut out, |o| Message::Input { seq, event }.encode(o));
                }
                if s.stats().sent > sent_before {
                    self.input_while_stopped(now);
                }
                let st = s.stats();
                self.stats.input_sent.store(st.sent, Ordering::Relaxed);
                self.stats.input_acked.store(st.acked, Ordering::Relaxed);
            }
            if !out.is_empty() {
                input_stream.write_all(&out).await?;
            }

            // Frames to the decoder.
            while let Ok(buf) = self.recycle_rx.try_recv() {
                reasm.recycle(buf);
            }
            if self.want_keyframe.swap(false, Ordering::AcqRel) {
                reasm.request_keyframe();
            }
            while let Some(ev) = reasm.poll(now) {
                match ev {
                    ReassemblyEvent::Frame(f) => {
                        self.stats.frames_received.fetch_add(1, Ordering::Relaxed);
                        queue.on_frame(local_us(f.completed_at), f.capture_us);
                        self.stats.saw_frame(f.frame_id);
                        match self.frame_tx.try_send(f) {
                            Ok(()) => {}
                            Err(TrySendError::Full(f)) => {
                                // The decoder is behind: drop rather than queue, and restart from a keyframe.
                                self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                                reasm.recycle(f.data);
                                reasm.request_keyframe();
                            }
                            Err(TrySendError::Disconnected(_)) => {
                                return Err(SessionError::Protocol("decoder stopped".into()));
                            }
                        }
                    }
                    ReassemblyEvent::Lost { frame_id, count } => {
                        tracing::debug!(frame_id, count, "frames lost");
                        self.stats
                            .saw_frame(frame_id.wrapping_add(count.saturating_sub(1)));
                        self.stats
                            .frames_dropped
                            .fetch_add(u64::from(count), Ordering::Relaxed);
                    }
                }
            }
            if let Some(last_good_frame) = reasm.poll_keyframe_request(now) {
                self.stats
                    .keyframes_requested
                    .fetch_add(1, Ordering::Relaxed);
                out.clear();
                write_frame(&mut out, |o| {
                    Message::KeyframeRequest { last_good_frame }.encode(o)
                });
                recovery_stream.write_all(&out).await?;
            }

            if now >= next_loss {
                next_loss = now + LOSS_WINDOW;
                let counters = reasm.settle(now);
                // Quick to rise, slow to fall (a tenth per window, so 1 %
                // takes about 14 s of silence to read as none): a few quiet
                // half seconds on a lossy path must not switch parity off.
                loss = counters.loss_since(&reported).max(loss * 0.9);
                reported = counters;
                self.stats
                    .fec_recovered
                    .store(counters.fec_recovered, Ordering::Relaxed);
                self.stats
                    .loss_permille
                    .store((loss * 1000.0).round() as u64, Ordering::Relaxed);
            }
            if now >= next_report {
                let bytes = self.stats.bytes_received.load(Ordering::Relaxed);
                let elapsed = REPORT_INTERVAL + now.saturating_duration_since(next_report);
                next_report = now + REPORT_INTERVAL;
                let recv_kbps = (bytes.saturating_sub(bytes_at_report) as f64 * 8.0
                    / elapsed.as_secs_f64()
                    / 1000.0) as u32;
                bytes_at_report = bytes;
                // No frame lately: report no queue rather than an old one;
                // the host holds its rate on a quiet path either way.
                let delay = queue.current(local_us(now)).unwrap_or_default();
                let delay_us = delay.as_micros() as u64;
                self.stats.queue_delay_us.store(delay_us, Ordering::Relaxed);
                self.stats
                    .queue_delay_max_us
                    .fetch_max(delay_us, Ordering::Relaxed);
                out.clear();
                write_frame(&mut out, |o| {
                    Message::ReceiverReport {
                        loss_permille: (loss * 1000.0).round() as u16,
                        queue_delay_ms: delay.as_millis().min(u128::from(u16::MAX)) as u16,
                        recv_kbps,
                    }
                    .encode(o)
                });
                ctl_send.write_all(&out).await?;
            }
            // The heartbeat: once a second, and at once when input comes
            // while the host is not simply streaming (speech into the
            // microphone resumes a paused session this way).
            // (The phase is looked up only when input came: this loop runs
            // per datagram.)
            let fresh = self.shared.activity.take_fresh();
            let not_streaming = || {
                self.stats
                    .continuity
                    .lock()
                    .is_ok_and(|c| c.phase != Phase::Streaming)
            };
            if now >= next_activity || (fresh && not_streaming()) {
                next_activity = now + ACTIVITY_INTERVAL;
                let report = self.shared.activity.report(now);
                if fresh {
                    self.input_while_stopped(now);
                }
                out.clear();
                write_frame(&mut out, |o| Message::Activity(report).encode(o));
                ctl_send.write_all(&out).await?;
            }
            // (Only a shared clipboard has an outbox worth a lock per loop.)
            if self.clipboard_in.is_some()
                && let Some(text) = self.shared.clipboard_out.take()
            {
                out.clear();
                write_frame(&mut out, |o| {
                    Message::Clipboard {
                        text: text.as_bytes(),
                    }
                    .encode(o)
                });
                ctl_send.write_all(&out).await?;
            }
            if now >= next_ping {
                pings += 1;
                next_ping = now
                    + if pings < STARTUP_PINGS {
                        STARTUP_PING_INTERVAL
                    } else {
                        PING_INTERVAL
                    };
                out.clear();
                write_frame(&mut out, |o| {
                    Message::Ping {
                        stamp_us: local_us(Instant::now()) as u64,
                    }
                    .encode(o)
                });
                ctl_send.write_all(&out).await?;
            }
            self.stats
                .rtt_us
                .store(conn.rtt().as_micros() as u64, Ordering::Relaxed);

            if let Some(d) = draining {
                let in_flight = self
                    .shared
                    .sender
                    .lock()
                    .map(|s| s.in_flight())
                    .unwrap_or(0);
                if in_flight == 0 || now >= d {
                    if in_flight > 0 {
                        tracing::warn!(in_flight, "closing with unacknowledged input");
                    }
                    return Ok(());
                }
            }
        }
    }

    /// The host told the session's phase.
    fn on_status(&self, phase: Phase, ms: u32) {
        tracing::info!(phase = phase.name(), ms, "session phase");
        if phase.is_stopped() {
            self.stats.stream_stopped();
        }
        if let Ok(mut c) = self.stats.continuity.lock() {
            c.set_phase(phase, ms);
        }
    }

    /// Input is leaving while the host has stopped the stream: it resumes
    /// it; the time to the next picture is the resume time.
    fn input_while_stopped(&self, now: Instant) {
        if let Ok(mut c) = self.stats.continuity.lock()
            && c.phase.is_stopped()
            && c.resume_started.is_none()
        {
            c.resume_started = Some(now);
        }
    }

    /// Publishes the clock map for the presentation threads.
    fn publish_clock(&self, clock: &ClockMap) {
        if let (Some(at_zero), Some(unc)) = (clock.to_client(0), clock.uncertainty()) {
            // to_client(h) = h − offset, so offset = −to_client(0).
            self.stats
                .host_clock_offset_us
                .store(-at_zero, Ordering::Relaxed);
            self.stats
                .clock_uncertainty_us
                .store(unc.as_micros() as u64, Ordering::Relaxed);
        }
    }

    fn on_datagram(&mut self, d: &[u8], reasm: &mut Reassembler, clock: &ClockMap) {
        let now = Instant::now();
        match Message::decode(d) {
            Ok(Message::Video(f)) => {
                if let Err(e) = reasm.handle_fragment(&f, now) {
                    tracing::trace!(error = %e, "fragment rejected");
                }
            }
            Ok(Message::Audio {
                seq,
                capture_us,
                payload,
                previous,
            }) => {
                if let Some(s) = &self.speaker
                    && let Ok(mut s) = s.lock()
                {
                    s.push(seq, capture_us, payload, previous);
                }
            }
            Ok(Message::InputAck { seq, host_us }) => {
                // When the newest acknowledged input was applied, on this clock.
                let applied_us = clock.to_client(host_us);
                if let Ok(mut s) = self.shared.sender.lock() {
                    let stats = &self.stats;
                    s.handle_ack(seq, |acked, sent| {
                        stats.input_rtt.record(now.saturating_duration_since(sent));
                        if let (true, Some(applied)) = (acked == seq, applied_us) {
                            let one_way = (applied - local_us(sent)).max(0) as u64;
                            stats.input_one_way.record(Duration::from_micros(one_way));
                        }
                    });
                }
            }
            Ok(other) => tracing::debug!(?other, "unexpected datagram"),
            Err(e) => tracing::debug!(error = %e, "malformed datagram"),
        }
    }
}
