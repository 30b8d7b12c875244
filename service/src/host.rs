//! The desktop host: renders a desktop per session, encodes it with
//! openh264, and streams it to the session's gateway as UDP datagrams; applies
//! and acknowledges input.
//!
//! Between gateway and host the protocol is stateless datagrams: each one is
//! an [`Envelope`] naming its session. A gateway attaches a session with
//! `Attach` (repeated until `Welcome` arrives) and keeps it alive with
//! `Ping`. The session's id is the directory's, the same through every
//! gateway, so a client that reconnects elsewhere re-attaches to its
//! session: the new gateway replaces the old one, held input is released
//! and the picture restarts from a keyframe. A session lost by its gateway
//! (`Detach`, or [`DETACHED_AFTER`] of silence) releases held input and
//! stops sending; one silent for [`SESSION_RETAIN`] ends.
//!
//! Idle sessions follow the directory's policy
//! ([`nephele_protocol::activity`]): warned, then paused (the encoder and
//! sound threads sleep), then suspended (both threads end, releasing the
//! encoder; the desktop's state is kept). Input, or a client's report of
//! input or of a keep-active request, resumes, keyframe first.
//!
//! Continuity: when the gateway names a backup host, the session's state
//! (typed text, pointer, input position) is replicated to it after every
//! input and once a second, before the input is acknowledged. The backup
//! keeps it on standby and, when a gateway attaches the session there
//! after the primary failed, takes the session over from it.
//!
//! Threads: one receive thread (`nephele-host-rx`) owns the socket's read
//! side, the session table and input delivery; each streaming session has
//! an encoder thread (`nephele-host-enc-N`) that renders, encodes and sends
//! at the session's frame rate, and a sound thread.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nephele_protocol::activity::{IdlePolicy, IdleTracker, Phase, Transition};
use nephele_protocol::input::InputReceiver;
use nephele_protocol::pad::MAX_PADS;
use nephele_protocol::rate::{RateConfig, RateController, Report};
use nephele_protocol::video::Fragmenter;
use nephele_protocol::wire::{Envelope, GoodbyeReason, InputEvent, MAX_CLIPBOARD, Message};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, RateControlMode, UsageType,
};

use crate::audio::{AudioJob, MIC_QUEUE, MicPacket, MicRecorder, mic_recorder};
use crate::desktop::{DesktopState, I420, Renderer};
use crate::screen::{ClipboardBridge, DesktopSource, Grab, Grabber, Injector, ScreenError};

/// Why an encoder thread stopped.
#[derive(Debug, thiserror::Error)]
enum EncodeError {
    #[error(transparent)]
    Codec(#[from] openh264::Error),
    #[error(transparent)]
    Screen(#[from] ScreenError),
}

/// A session whose gateway is silent this long is detached: held input is
/// released and nothing more is sent until a gateway attaches it again.
pub const DETACHED_AFTER: Duration = Duration::from_secs(3);

/// A session that hears nothing for this long ends.
pub const SESSION_RETAIN: Duration = Duration::from_secs(600);

/// Standby states kept for sessions of other hosts, at most.
const MAX_STANDBY: usize = 256;

/// A standby state not refreshed for this long is forgotten.
const STANDBY_TTL: Duration = Duration::from_secs(3600);

/// The primary re-sends a session's state this often without changes, so
/// a lost replication datagram is repaired.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The monitor of the sound server's default sink (PulseAudio's name).
pub const DEFAULT_SOUND_SOURCE: &str = "@DEFAULT_MONITOR@";

/// Most sessions one host runs at once.
pub const MAX_SESSIONS: usize = 16;

/// Host settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// UDP address to listen on for gateways.
    pub listen: SocketAddr,
    /// Append every input event received to this file as JSON lines.
    pub record_input: Option<PathBuf>,
    /// Most bits per second a session sends (congestion control may choose
    /// less); 0 picks a figure from the picture size.
    pub bitrate: u32,
    /// The demo desktop plays a video panel that changes completely every
    /// frame, as a game or a film would, so the encoder uses all its bitrate.
    pub motion: bool,
    /// The demo desktop plays a steady tone of this many hertz (besides
    /// its clicks on key presses).
    pub tone_hz: Option<f32>,
    /// Write the microphone sound received to this WAV file.
    pub record_mic: Option<PathBuf>,
    /// The desktop served: the demo, or a running X display.
    pub desktop: DesktopSource,
    /// Where a real desktop's sound is recorded: a PulseAudio source,
    /// normally the monitor of the sink the session plays to.
    pub sound_source: String,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            record_input: None,
            bitrate: 0,
            motion: false,
            tone_hz: None,
            record_mic: None,
            desktop: DesktopSource::Demo,
            sound_source: DEFAULT_SOUND_SOURCE.into(),
        }
    }
}

/// Errors starting a host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Binding or configuring the UDP socket failed.
    #[error("binding the host socket on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input recording could not be opened.
    #[error("opening input recording {path}: {source}")]
    Record {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The microphone recording could not be created.
    #[error("creating microphone recording {path}: {source}")]
    RecordMic {
        /// The file.
        path: String,
        /// What went wrong.
        source: hound::Error,
    },
    /// Spawning a thread failed.
    #[error("starting host thread: {0}")]
    Thread(std::io::Error),
    /// The desktop to serve cannot be reached.
    #[error("serving {desktop}: {source}")]
    Desktop {
        /// The desktop.
        desktop: DesktopSource,
        /// Why.
        source: ScreenError,
    },
}

/// Counters of a running host, shared with tests.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Frames encoded and sent, all sessions.
    pub frames_sent: AtomicU64,
    /// Keyframes sent.
    pub keyframes_sent: AtomicU64,
    /// Input events applied.
    pub inputs_applied: AtomicU64,
    /// Datagrams that failed to decode.
    pub bad_datagrams: AtomicU64,
    /// Sessions opened.
    pub sessions_opened: AtomicU64,
    /// The bitrate the newest session's encoder was last set to.
    pub encoder_bitrate_bps: AtomicU64,
    /// The frame rate the newest session's encoder was last set to.
    pub encoder_fps: AtomicU64,
    /// Times congestion control cut a session's rate, all sessions.
    pub rate_decreases: AtomicU64,
    /// Sessions running now (streaming, paused or suspended).
    pub sessions: AtomicU64,
    /// Sessions re-attached through a different gateway.
    pub reattached: AtomicU64,
    /// Sessions taken over from a failed primary's replicated state.
    pub takeovers: AtomicU64,
    /// Frames timed from the start of their capture (or drawing) to their
    /// last datagram handed to the socket, all sessions, and the sum and
    /// largest of those times in microseconds.
    pub frames_timed: AtomicU64,
    /// See `frames_timed`.
    pub capture_to_send_us: AtomicU64,
    /// See `frames_timed`.
    pub capture_to_send_max_us: AtomicU64,
    /// Of `capture_to_send_us`: capturing (or drawing) and converting.
    pub grab_us: AtomicU64,
    /// Of `capture_to_send_us`: encoding.
    pub encode_us: AtomicU64,
    /// Ticks of an X display's encoders that found nothing changed and
    /// captured nothing.
    pub unchanged_ticks: AtomicU64,
    /// Pauses, suspensions and resumptions, all sessions.
    pub pauses: AtomicU64,
    /// See `pauses`.
    pub suspends: AtomicU64,
    /// See `pauses`.
    pub resumes: AtomicU64,
}

impl HostStats {
    /// The counters as JSON, with the per-frame means in milliseconds.
    pub fn summary(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let frames = get(&self.frames_timed);
        let mean_ms = |a: &AtomicU64| {
            if frames == 0 {
                serde_json::Value::Null
            } else {
                let ms = get(a) as f64 / frames as f64 / 1000.0;
                ((ms * 1000.0).round() / 1000.0).into()
            }
        };
        serde_json::json!({
            "frames_sent": get(&self.frames_sent),
            "keyframes_sent": get(&self.keyframes_sent),
            "unchanged_ticks": get(&self.unchanged_ticks),
            "inputs_applied": get(&self.inputs_applied),
            "bad_datagrams": get(&self.bad_datagrams),
            "sessions_opened": get(&self.sessions_opened),
            "rate_decreases": get(&self.rate_decreases),
            "capture_to_send_ms_mean": mean_ms(&self.capture_to_send_us),
            "capture_to_send_ms_max": get(&self.capture_to_send_max_us) as f64 / 1000.0,
            "grab_ms_mean": mean_ms(&self.grab_us),
            "encode_ms_mean": mean_ms(&self.encode_us),
        })
    }
}

/// A running host; stops when dropped.
#[derive(Debug)]
pub struct Host {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    crash: Arc<AtomicBool>,
    stats: Arc<HostStats>,
    desktops: Desktops,
    rx: Option<JoinHandle<()>>,
}

/// The live sessions' desktops, for [`Host::typed`].
type Desktops = Arc<Mutex<HashMap<u64, Arc<Mutex<DesktopState>>>>>;

impl Host {
    /// Binds and starts the host.
    pub fn start(cfg: HostConfig) -> Result<Self, HostError> {
        if let DesktopSource::X11 { display } = &cfg.desktop {
            // Now rather than at the first session: a wrong display name
            // is the operator's to hear about.
            let size =
                crate::screen::screen_size(display).map_err(|source| HostError::Desktop {
                    desktop: cfg.desktop.clone(),
                    source,
                })?;
            tracing::info!(desktop = %cfg.desktop, ?size, "serving an X display");
        }
        let socket = bind_udp(cfg.listen).map_err(|source| HostError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let addr = socket.local_addr().map_err(|source| HostError::Bind {
            addr: cfg.listen,
            source,
        })?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|source| HostError::Bind { addr, source })?;
        let recorder = match &cfg.record_input {
            Some(p) => Some(BufWriter::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| HostError::Record {
                        path: p.display().to_string(),
                        source,
                    })?,
            )),
            None => None,
        };
        let mic_recorder = match &cfg.record_mic {
            Some(p) => Some(mic_recorder(p).map_err(|source| HostError::RecordMic {
                path: p.display().to_string(),
                source,
            })?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let crash = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(HostStats::default());
        let desktops = Desktops::default();
        let mut rx = Receiver {
            socket: Arc::new(socket),
            sessions: HashMap::new(),
            standby: HashMap::new(),
            recorder,
            epoch: Instant::now(),
            stop: stop.clone(),
            crash: crash.clone(),
            stats: stats.clone(),
            desktops: desktops.clone(),
            bitrate: cfg.bitrate,
            motion: cfg.motion,
            tone_hz: cfg.tone_hz,
            mic_recorder,
            source: cfg.desktop.clone(),
            sound_source: cfg.sound_source.clone(),
            next_index: 0,
            resume_eta: ResumeEta::default(),
            state_buf: Vec::with_capacity(nephele_protocol::wire::MAX_STATE),
        };
        let rx = std::thread::Builder::new()
            .name("nephele-host-rx".into())
            .spawn(move || {
                // Input is applied and acknowledged here, next to encoders.
                nephele_platform::sched::latency_critical();
                rx.run()
            })
            .map_err(HostError::Thread)?;
        tracing::info!(%addr, "host listening");
        Ok(Self {
            addr,
            stop,
            crash,
            stats,
            desktops,
            rx: Some(rx),
        })
    }

    /// The UDP address gateways send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<HostStats> {
        self.stats.clone()
    }

    /// Sessions running now.
    pub fn sessions(&self) -> u64 {
        self.stats.sessions.load(Ordering::Relaxed)
    }

    /// The text typed on each live session's demo desktop, by session id.
    pub fn typed(&self) -> Vec<(u64, String)> {
        let Ok(d) = self.desktops.lock() else {
            return Vec::new();
        };
        d.iter()
            .map(|(&id, s)| (id, s.lock().map(|s| s.typed.clone()).unwrap_or_default()))
            .collect()
    }

    /// Stops all sessions and waits for the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Stops as a crash would: every thread ends (within a few tens of
    /// milliseconds) and the socket closes, with no goodbye to anyone. For
    /// chaos tests and demos.
    pub fn crash(&self) {
        self.crash.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`Host::crash`] was called.
    pub fn crashed(&self) -> bool {
        self.crash.load(Ordering::Relaxed)
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.rx.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds a UDP socket with buffers large enough for a keyframe burst.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// What the encoder and sound threads of a session share with the receiver.
struct Shared {
    desktop: Arc<Mutex<DesktopState>>,
    keyframe: Arc<AtomicBool>,
    loss_permille: Arc<AtomicU32>,
    /// The rate controller's target (video and parity), for the encoder thread.
    target_bps: Arc<AtomicU32>,
    /// Video bytes the encoder thread sent.
    sent_bytes: Arc<AtomicU64>,
    /// Where the session's gateway is now.
    gateway: Arc<Mutex<SocketAddr>>,
    /// Set while nothing is to be captured or sent (paused, or no gateway).
    paused: Arc<AtomicBool>,
    /// Set on resuming: the encoder tells the client it streams again,
    /// just before the first new frame.
    announce: Arc<AtomicBool>,
    /// The next frame's id, kept across encoder restarts so the client's
    /// reassembler sees one stream.
    next_frame_id: Arc<AtomicU32>,
}

/// A session's encoder and sound threads; dropped (joined) on suspend.
struct Media {
    stop: Arc<AtomicBool>,
    encoder: Option<JoinHandle<()>>,
    sound: Option<JoinHandle<()>>,
    /// The microphone's packets, to the sound thread.
    mic: Option<SyncSender<MicPacket>>,
}

impl Media {
    fn wake(&self) {
        for h in [&self.encoder, &self.sound].into_iter().flatten() {
            h.thread().unpark();
        }
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake();
        for h in [self.encoder.take(), self.sound.take()]
            .into_iter()
            .flatten()
        {
            let _ = h.join();
        }
    }
}

struct Session {
    /// The gateway the session is attached through.
    gateway: SocketAddr,
    width: u16,
    height: u16,
    fps: u8,
    shared: Shared,
    input: InputReceiver,
    last_heard: Instant,
    /// No gateway now: held input released, nothing sent.
    detached: bool,
    idle: IdleTracker,
    rate: RateController,
    sent_at_report: (Instant, u64),
    /// Where the session's state is replicated, and how far.
    backup: Option<SocketAddr>,
    sync_version: u32,
    last_sync: Instant,
    /// `None` while suspended.
    media: Option<Media>,
    /// When a resume from suspension began, to learn how long one takes.
    resuming_since: Option<Instant>,
    index: u64,
    /// Where input goes on an X display (`None` on the demo desktop).
    injector: Option<Injector>,
    /// The X display's clipboard (`None` on the demo desktop).
    clipboard: Option<ClipboardBridge>,
}

/// A session of another host, replicated here in case that host fails.
struct Standby {
    input_seq: u32,
    version: u32,
    state: Vec<u8>,
    at: Instant,
}

/// How long resuming from suspension takes here: a moving average of the
/// last ones, told to clients as the ETA.
#[derive(Debug, Clone, Copy)]
struct ResumeEta {
    ms: f64,
}

impl Default for ResumeEta {
    fn default() -> Self {
        Self { ms: 150.0 }
    }
}

impl ResumeEta {
    fn learn(&mut self, took: Duration) {
        self.ms = 0.7 * self.ms + 0.3 * took.as_secs_f64() * 1000.0;
    }
}

struct Receiver {
    socket: Arc<UdpSocket>,
    sessions: HashMap<u64, Session>,
    standby: HashMap<u64, Standby>,
    recorder: Option<BufWriter<File>>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    crash: Arc<AtomicBool>,
    stats: Arc<HostStats>,
    desktops: Desktops,
    bitrate: u32,
    motion: bool,
    tone_hz: Option<f32>,
    mic_recorder: Option<MicRecorder>,
    source: DesktopSource,
    sound_source: String,
    next_index: u64,
    resume_eta: ResumeEta,
    /// The state snapshot replicated to backups, reused.
    state_buf: Vec<u8>,
}

fn send_on(
    socket: &UdpSocket,
    to: SocketAddr,
    session: u64,
    message: Message<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    Envelope { session, message }.encode(out);
    if let Err(e) = socket.send_to(out, to) {
        tracing::debug!(error = %e, %to, "host send");
    }
}

/// The demo desktop's state as replicated: pointer, wheel, counters and
/// the typed text. Held keys and buttons are not: a takeover releases them.
/// Hand-written because it is a few fixed fields and one string, bounded
/// to fit one datagram.
fn snapshot(d: &DesktopState, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&d.pointer.0.to_be_bytes());
    out.extend_from_slice(&d.pointer.1.to_be_bytes());
    out.extend_from_slice(&d.wheel.0.to_be_bytes());
    out.extend_from_slice(&d.wheel.1.to_be_bytes());
    out.extend_from_slice(&d.events.to_be_bytes());
    out.extend_from_slice(&d.key_presses.to_be_bytes());
    let room = nephele_protocol::wire::MAX_STATE - out.len();
    let mut start = d.typed.len().saturating_sub(room);
    while !d.typed.is_char_boundary(start) {
        start += 1;
    }
    out.extend_from_slice(&d.typed.as_bytes()[start..]);
}

fn restore(bytes: &[u8]) -> Option<DesktopState> {
    let (head, text) = bytes.split_at_checked(28)?;
    let u16_at = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
    let i32_at = |i: usize| i32::from_be_bytes(head[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_be_bytes(head[i..i + 8].try_into().unwrap_or_default());
    Some(DesktopState {
        pointer: (u16_at(0), u16_at(2)),
        wheel: (i32_at(4), i32_at(8)),
        events: u64_at(12),
        key_presses: u64_at(20),
        typed: String::from_utf8_lossy(text).into_owned(),
        ..Default::default()
    })
}

impl Receiver {
    fn run(&mut self) {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(64);
        let mut last_sweep = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.handle(&buf[..n], from, &mut out),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    // ICMP port unreachable from a gone gateway surfaces here on Linux.
                    tracing::debug!(error = %e, "host recv");
                }
            }
            if last_sweep.elapsed() >= Duration::from_millis(50) {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        if self.crash.load(Ordering::Relaxed) {
            // A crash says nothing to anyone.
            self.sessions.clear();
            if let Ok(mut d) = self.desktops.lock() {
                d.clear();
            }
            self.stats.sessions.store(0, Ordering::Relaxed);
            return;
        }
        for id in ids {
            self.end_session(id, GoodbyeReason::Shutdown, &mut out);
        }
    }

    fn send(&self, to: SocketAddr, session: u64, message: Message<'_>, out: &mut Vec<u8>) {
        send_on(&self.socket, to, session, message, out);
    }

    fn handle(&mut self, dgram: &[u8], from: SocketAddr, out: &mut Vec<u8>) {
        let env = match Envelope::decode(dgram) {
            Ok(e) => e,
            Err(e) => {
                self.stats.bad_datagrams.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, %from, "malformed datagram");
                return;
            }
        };
        let id = env.session;
        match env.message {
            Message::Attach {
                width,
                height,
                fps,
                policy,
                backup,
            } => {
                self.attach(id, from, (width, height, fps), policy, backup, out);
                return;
            }
            Message::StateSync {
                input_seq,
                version,
                state,
            } => {
                self.keep_standby(id, input_seq, version, state);
                return;
            }
            _ => {}
        }
        let now = Instant::now();
        let Some(s) = self.sessions.get_mut(&id) else {
            // Unknown session (ended, or never opened): tell the gateway.
            if !matches!(env.message, Message::Goodbye { .. } | Message::Detach) {
                self.send(
                    from,
                    id,
                    Message::Goodbye {
                        reason: GoodbyeReason::Timeout,
                    },
                    out,
                );
            }
            return;
        };
        if s.gateway != from {
            // A gateway the session has left (the client re-attached
            // elsewhere): it is told so and closes its side.
            if !matches!(env.message, Message::Goodbye { .. } | Message::Detach) {
                self.send(
                    from,
                    id,
                    Message::Goodbye {
                        reason: GoodbyeReason::Replaced,
                    },
                    out,
                );
            }
            return;
        }
        s.last_heard = now;
        if s.detached {
            // Heard from again (a gap longer than DETACHED_AFTER).
            s.detached = false;
            s.shared.keyframe.store(true, Ordering::Relaxed);
            self.refresh_paused(id);
        }
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        match env.message {
            Message::Input { seq, event } => {
                let (w, h) = (s.width, s.height);
                let desktop = s.shared.desktop.clone();
                let mut applied = Vec::new();
                s.input
                    .handle(seq, event, |seq, ev| applied.push((seq, ev)));
                let ack = s.input.ack();
                // The demo's force feedback: a short buzz for the pads
                // whose face button went down, if they can rumble.
                let mut buzz = [false; MAX_PADS as usize];
                let mut copied = None;
                if let Ok(mut d) = desktop.lock() {
                    for (_, ev) in &applied {
                        d.apply(ev, w, h);
                        if let InputEvent::PadButton {
                            pad,
                            button,
                            down: true,
                        } = *ev
                            && button.is_face()
                            && d.pad(pad).is_some_and(|p| p.rumble)
                        {
                            buzz[usize::from(pad)] = true;
                        }
                    }
                    copied = d.copied.take();
                }
                if let Some(injector) = s.injector.as_mut() {
                    // The demo's note has no place on a real desktop: what
                    // is typed there is not kept (nor replicated), and it
                    // has no clipboard.
                    copied = None;
                    if let Ok(mut d) = desktop.lock() {
                        d.typed.clear();
                    }
                    for (_, ev) in &applied {
                        if let Err(e) = injector.inject(ev) {
                            tracing::warn!(session = id, error = %e, "injecting input into the X display");
                            break;
                        }
                    }
                }
                if let Some(text) = copied {
                    // To the client's clipboard (it drops it unless its
                    // user allows sharing), cut to a whole character.
                    let mut end = text.len().min(MAX_CLIPBOARD);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    let msg = Message::Clipboard {
                        text: &text.as_bytes()[..end],
                    };
                    self.send(from, id, msg, out);
                    self.record_note(id, "clipboard-out", end);
                }
                self.stats
                    .inputs_applied
                    .fetch_add(applied.len() as u64, Ordering::Relaxed);
                for (seq, ev) in &applied {
                    self.record(id, Some(*seq), ev, false);
                }
                if !applied.is_empty() {
                    // Replicated before acknowledged: what the client
                    // counts as delivered survives this host.
                    self.sync(id, out);
                    let t = self
                        .sessions
                        .get_mut(&id)
                        .and_then(|s| s.idle.on_input(now));
                    self.transition(id, t, now, out);
                }
                for pad in (0..MAX_PADS).filter(|&p| buzz[usize::from(p)]) {
                    let rumble = Message::Rumble {
                        pad,
                        strong: u16::MAX / 2,
                        weak: u16::MAX / 2,
                        duration_ms: 150,
                    };
                    self.send(from, id, rumble, out);
                }
                let host_us = self.epoch.elapsed().as_micros() as u64;
                self.send(from, id, Message::InputAck { seq: ack, host_us }, out);
            }
            Message::KeyframeRequest { .. } => {
                s.shared.keyframe.store(true, Ordering::Relaxed);
            }
            Message::Activity(report) => {
                let t = s.idle.on_report(now, report);
                self.transition(id, t, now, out);
            }
            Message::Clipboard { text } => {
                let Ok(text) = std::str::from_utf8(text) else {
                    return;
                };
                if let Some(bridge) = &s.clipboard {
                    bridge.offer(text.to_string());
                    self.record_note(id, "clipboard-in", text.len());
                    return;
                }
                let desktop = s.shared.desktop.clone();
                if let Ok(mut d) = desktop.lock() {
                    d.clipboard = text.to_string();
                }
                self.record_note(id, "clipboard-in", text.len());
            }
            Message::Audio {
                seq,
                capture_us,
                payload,
                previous,
            } => {
                let arrived_us = self.epoch.elapsed().as_micros() as u64;
                // Full: the sound thread is stalled or paused, and this
                // packet would be too late anyway.
                if let Some(mic) = s.media.as_ref().and_then(|m| m.mic.as_ref()) {
                    let _ = mic.try_send(MicPacket::new(
                        seq, capture_us, arrived_us, payload, previous,
                    ));
                }
            }
            Message::ReceiverReport {
                loss_permille,
                queue_delay_ms,
                recv_kbps,
            } => {
                s.shared
                    .loss_permille
                    .store(u32::from(loss_permille), Ordering::Relaxed);
                let before = s.rate.decreases();
                let sent = s.shared.sent_bytes.load(Ordering::Relaxed);
                let (then, sent_then) = std::mem::replace(&mut s.sent_at_report, (now, sent));
                let secs = now.saturating_duration_since(then).as_secs_f64().max(1e-3);
                let sent_kbps = ((sent - sent_then) as f64 * 8.0 / 1000.0 / secs) as u32;
                let (target, _) = s.rate.on_report(
                    now,
                    Report {
                        loss_permille,
                        queue_delay_ms,
                        recv_kbps,
                        sent_kbps,
                    },
                );
                s.shared.target_bps.store(target, Ordering::Relaxed);
                tracing::trace!(
                    session = id,
                    target,
                    loss_permille,
                    queue_delay_ms,
                    recv_kbps,
                    sent_kbps,
                    "report"
                );
                if s.rate.decreases() > before {
                    self.stats.rate_decreases.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        session = id,
                        target,
                        queue_delay_ms,
                        recv_kbps,
                        sent_kbps,
                        "rate cut"
                    );
                }
            }
            Message::Ping { stamp_us } => {
                let host_us = self.epoch.elapsed().as_micros() as u64;
                self.send(from, id, Message::Pong { stamp_us, host_us }, out);
            }
            Message::Goodbye { .. } => {
                self.end_session(id, GoodbyeReason::Normal, out);
            }
            Message::Detach => {
                tracing::info!(session = id, "client lost; session detached");
                self.detach(id);
            }
            other => {
                tracing::debug!(?other, "unexpected message from gateway");
            }
        }
    }

    /// Keeps (or refreshes) another host's session state, in case that host fails.
    fn keep_standby(&mut self, id: u64, input_seq: u32, version: u32, state: &[u8]) {
        if self.sessions.contains_key(&id) {
            return; // taken over already: the old primary is stale
        }
        let now = Instant::now();
        if let Some(s) = self.standby.get_mut(&id) {
            // Versions restart only with a new primary; wrapping compare.
            if (version.wrapping_sub(s.version) as i32) >= 0 {
                s.input_seq = input_seq;
                s.version = version;
                s.state.clear();
                s.state.extend_from_slice(state);
            }
            s.at = now;
            return;
        }
        if self.standby.len() >= MAX_STANDBY {
            self.standby
                .retain(|_, s| now.duration_since(s.at) < STANDBY_TTL);
            if self.standby.len() >= MAX_STANDBY
                && let Some(oldest) = self
                    .standby
                    .iter()
                    .min_by_key(|(_, s)| s.at)
                    .map(|(k, _)| *k)
            {
                self.standby.remove(&oldest);
            }
        }
        self.standby.insert(
            id,
            Standby {
                input_seq,
                version,
                state: state.to_vec(),
                at: now,
            },
        );
    }

    /// Sends the session's state to its backup host.
    fn sync(&mut self, id: u64, out: &mut Vec<u8>) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(backup) = s.backup else { return };
        // Runs per input event: the snapshot goes into one reused buffer.
        let state = &mut self.state_buf;
        if let Ok(d) = s.shared.desktop.lock() {
            snapshot(&d, state);
        }
        s.sync_version = s.sync_version.wrapping_add(1);
        s.last_sync = Instant::now();
        let msg = Message::StateSync {
            input_seq: s.input.ack(),
            version: s.sync_version,
            state,
        };
        send_on(&self.socket, backup, id, msg, out);
    }

    /// Attaches a session to the gateway `from`: opens it, re-attaches it
    /// (a client back through another gateway) or takes it over from a
    /// failed primary's replicated state.
    fn attach(
        &mut self,
        id: u64,
        from: SocketAddr,
        (width, height, fps): (u16, u16, u8),
        policy: IdlePolicy,
        backup: Option<SocketAddr>,
        out: &mut Vec<u8>,
    ) {
        let now = Instant::now();
        let host_time_us = self.epoch.elapsed().as_micros() as u64;
        if let Some(s) = self.sessions.get_mut(&id) {
            s.last_heard = now;
            let moved = s.gateway != from;
            if moved || s.detached {
                if moved {
                    tracing::info!(session = id, old = %s.gateway, new = %from, "session re-attached through another gateway");
                    self.stats.reattached.fetch_add(1, Ordering::Relaxed);
                }
                s.gateway = from;
                if let Ok(mut g) = s.shared.gateway.lock() {
                    *g = from;
                }
                s.detached = false;
                s.backup = backup.or(s.backup);
                s.shared.keyframe.store(true, Ordering::Relaxed);
                self.release_held(id);
                self.refresh_paused(id);
            }
            // Otherwise a repeated attach: the welcome was lost. Answer again.
            self.welcome(id, host_time_us, out);
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            self.refuse(from, id, out);
            return;
        }
        // An X display streams at its own size, whatever the client asked.
        let (width, height, injector) = match &self.source {
            DesktopSource::Demo => (width, height, None),
            DesktopSource::X11 { display } => {
                // The input connection tells the size: no capture is set
                // up here (the encoder thread opens its own).
                let opened = Injector::open(display)
                    .and_then(|injector| Ok((injector.screen_size()?, injector)));
                match opened {
                    Ok(((w, h), injector)) => (w, h, Some(injector)),
                    Err(e) => {
                        tracing::error!(session = id, desktop = %self.source, error = %e, "cannot reach the X display; session refused");
                        self.refuse(from, id, out);
                        return;
                    }
                }
            }
        };
        let (desktop, input) = match self
            .standby
            .remove(&id)
            .and_then(|sb| restore(&sb.state).map(|d| (d, sb.input_seq)))
        {
            Some((d, seq)) => {
                tracing::warn!(
                    session = id,
                    input_seq = seq,
                    typed = d.typed.len(),
                    "taking the session over from its failed primary"
                );
                self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
                if let Some(w) = self.recorder.as_mut() {
                    let t_ms = self.epoch.elapsed().as_secs_f64() * 1000.0;
                    let line = serde_json::json!({
                        "t_ms": (t_ms * 1000.0).round() / 1000.0,
                        "session": id,
                        "kind": "takeover",
                        "input_seq": seq,
                        "typed": d.typed,
                    });
                    let _ = writeln!(w, "{line}").and_then(|()| w.flush());
                }
                (d, InputReceiver::resuming_after(seq))
            }
            None => (
                DesktopState {
                    pointer: (width / 2, height / 2),
                    ..Default::default()
                },
                InputReceiver::new(),
            ),
        };
        self.next_index += 1;
        let bitrate = if self.bitrate > 0 {
            self.bitrate
        } else {
            default_bitrate(width, height, fps)
        };
        let rate = RateController::new(RateConfig::new(bitrate));
        let shared = Shared {
            desktop: Arc::new(Mutex::new(desktop)),
            keyframe: Arc::new(AtomicBool::new(true)),
            loss_permille: Arc::new(AtomicU32::new(NO_REPORT)),
            target_bps: Arc::new(AtomicU32::new(rate.target_bps())),
            sent_bytes: Arc::new(AtomicU64::new(0)),
            gateway: Arc::new(Mutex::new(from)),
            paused: Arc::new(AtomicBool::new(false)),
            announce: Arc::new(AtomicBool::new(false)),
            next_frame_id: Arc::new(AtomicU32::new(0)),
        };
        let clipboard = match &self.source {
            DesktopSource::Demo => None,
            DesktopSource::X11 { display } => {
                let socket = self.socket.clone();
                let gateway = shared.gateway.clone();
                let to_client = move |text: &str| {
                    // Cut to a whole character; the client drops it
                    // unless its user shares the clipboard.
                    let mut end = text.len().min(MAX_CLIPBOARD);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    let Ok(to) = gateway.lock().map(|g| *g) else {
                        return;
                    };
                    let msg = Message::Clipboard {
                        text: &text.as_bytes()[..end],
                    };
                    send_on(&socket, to, id, msg, &mut Vec::with_capacity(64));
                };
                let name = format!("nephele-host-clip-{}", self.next_index);
                match ClipboardBridge::start(display, name, MAX_CLIPBOARD, to_client) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        tracing::warn!(session = id, error = %e, "no clipboard on the X display");
                        None
                    }
                }
            }
        };
        let mut idle = IdleTracker::new(policy, now);
        // A film or game playing on the desktop keeps it active by itself.
        idle.set_host_keep_active(self.motion, now);
        let mut session = Session {
            gateway: from,
            width,
            height,
            fps,
            shared,
            input,
            last_heard: now,
            detached: false,
            idle,
            rate,
            sent_at_report: (now, 0),
            backup,
            sync_version: 0,
            last_sync: now,
            media: None,
            resuming_since: None,
            index: self.next_index,
            injector,
            clipboard,
        };
        match self.start_media(id, &session) {
            Ok(m) => session.media = Some(m),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the encoder thread");
                self.refuse(from, id, out);
                return;
            }
        }
        tracing::info!(session = id, %from, width, height, fps, backup = ?backup, "session opened");
        self.stats.sessions_opened.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut d) = self.desktops.lock() {
            d.insert(id, session.shared.desktop.clone());
        }
        self.sessions.insert(id, session);
        self.stats
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        self.sync(id, out);
        self.welcome(id, host_time_us, out);
    }

    /// Starts a session's encoder and sound threads.
    fn start_media(&self, id: u64, s: &Session) -> std::io::Result<Media> {
        let stop = Arc::new(AtomicBool::new(false));
        let job = EncodeJob {
            session: id,
            width: s.width,
            height: s.height,
            fps: s.fps,
            bitrate: if self.bitrate > 0 {
                self.bitrate
            } else {
                default_bitrate(s.width, s.height, s.fps)
            },
            motion: self.motion,
            target_bps: s.shared.target_bps.clone(),
            sent_bytes: s.shared.sent_bytes.clone(),
            socket: self.socket.clone(),
            gateway: s.shared.gateway.clone(),
            desktop: s.shared.desktop.clone(),
            keyframe: s.shared.keyframe.clone(),
            loss_permille: s.shared.loss_permille.clone(),
            paused: s.shared.paused.clone(),
            announce: s.shared.announce.clone(),
            next_frame_id: s.shared.next_frame_id.clone(),
            stop: stop.clone(),
            epoch: self.epoch,
            stats: self.stats.clone(),
            source: self.source.clone(),
        };
        let encoder = std::thread::Builder::new()
            .name(format!("nephele-host-enc-{}", s.index))
            .spawn(move || {
                // Started from the input thread; encoding is bulk work.
                nephele_platform::sched::ordinary();
                job.run()
            })?;
        let (mic_tx, mic_rx) = std::sync::mpsc::sync_channel(MIC_QUEUE);
        let sound_job = AudioJob {
            session: id,
            socket: self.socket.clone(),
            gateway: s.shared.gateway.clone(),
            desktop: s.shared.desktop.clone(),
            tone_hz: self.tone_hz,
            pulse_source: match self.source {
                DesktopSource::Demo => None,
                DesktopSource::X11 { .. } => Some(self.sound_source.clone()),
            },
            mic_source: format!("nephele-mic-{}", s.index),
            mic: mic_rx,
            recorder: self.mic_recorder.clone(),
            paused: s.shared.paused.clone(),
            stop: stop.clone(),
            epoch: self.epoch,
        };
        let sound = match std::thread::Builder::new()
            .name(format!("nephele-host-audio-{}", s.index))
            .spawn(move || {
                // Small and periodic: it must not wait behind the encoders.
                nephele_platform::sched::latency_critical();
                sound_job.run()
            }) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the sound thread; streaming without sound");
                None
            }
        };
        let mic = sound.as_ref().map(|_| mic_tx);
        Ok(Media {
            stop,
            encoder: Some(encoder),
            sound,
            mic,
        })
    }

    fn welcome(&mut self, id: u64, host_time_us: u64, out: &mut Vec<u8>) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let (to, width, height, fps) = (s.gateway, s.width, s.height, s.fps);
        let phase = s.idle.phase();
        let welcome = Message::Welcome {
            session_id: id,
            width,
            height,
            fps,
            host_time_us,
        };
        self.send(to, id, welcome, out);
        if phase != Phase::Streaming {
            // A client back while the session is paused learns so at once.
            self.send(to, id, Message::Status { phase, ms: 0 }, out);
        }
    }

    /// Releases every held key and button of a session (its client is
    /// gone, or came back through another path and will press them anew).
    fn release_held(&mut self, id: u64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let released = s
            .shared
            .desktop
            .lock()
            .map(|mut d| d.release_all())
            .unwrap_or_default();
        if let Some(injector) = s.injector.as_mut() {
            for ev in &released {
                let _ = injector.inject(ev);
            }
            // Whatever the record missed (an event that failed halfway).
            match injector.release_all() {
                Ok(0) => {}
                Ok(n) => tracing::debug!(session = id, n, "released on the X display"),
                Err(e) => {
                    tracing::warn!(session = id, error = %e, "releasing input on the X display")
                }
            }
        }
        for ev in &released {
            self.record(id, None, ev, true);
        }
    }

    fn detach(&mut self, id: u64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.detached = true;
        self.release_held(id);
        self.refresh_paused(id);
    }

    /// The encoder and sound threads sleep while the session is paused
    /// or has no gateway, and wake (keyframe first) when neither holds.
    fn refresh_paused(&mut self, id: u64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let pause = s.detached || s.idle.phase().is_stopped();
        let was = s.shared.paused.swap(pause, Ordering::Relaxed);
        if was && !pause {
            s.shared.keyframe.store(true, Ordering::Relaxed);
            if let Some(m) = &s.media {
                m.wake();
            }
        }
    }

    /// Carries out an idle transition and tells the client.
    fn transition(&mut self, id: u64, t: Option<Transition>, now: Instant, out: &mut Vec<u8>) {
        let Some(t) = t else { return };
        let eta = self.resume_eta.ms.round() as u32;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let (phase, ms) = match t {
            Transition::Warn(d) => (
                Phase::Warning,
                d.as_millis().min(u128::from(u32::MAX)) as u32,
            ),
            Transition::Clear => (Phase::Streaming, 0),
            Transition::Pause => {
                self.stats.pauses.fetch_add(1, Ordering::Relaxed);
                tracing::info!(session = id, "idle: paused");
                (Phase::Paused, 0)
            }
            Transition::Suspend => {
                self.stats.suspends.fetch_add(1, Ordering::Relaxed);
                tracing::info!(session = id, "idle: suspended, encoder released");
                // Joins the threads: the encoder and its buffers are freed.
                s.media = None;
                (Phase::Suspended, 0)
            }
            Transition::Resume(from) => {
                self.stats.resumes.fetch_add(1, Ordering::Relaxed);
                s.shared.announce.store(true, Ordering::Relaxed);
                s.shared.keyframe.store(true, Ordering::Relaxed);
                let eta = if from == Phase::Suspended {
                    s.resuming_since = Some(now);
                    eta
                } else {
                    // One frame away.
                    (1000 / u32::from(s.fps.max(1))).max(1)
                };
                tracing::info!(session = id, from = from.name(), eta_ms = eta, "resuming");
                (Phase::Resuming, eta)
            }
        };
        let restart = matches!(t, Transition::Resume(Phase::Suspended)) && s.media.is_none();
        if restart && let Some(s) = self.sessions.get(&id) {
            match self.start_media(id, s) {
                Ok(m) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.media = Some(m);
                    }
                }
                Err(e) => tracing::error!(session = id, error = %e, "cannot restart the encoder"),
            }
        }
        self.refresh_paused(id);
        if let Some(s) = self.sessions.get(&id)
            && !s.detached
        {
            let to = s.gateway;
            self.send(to, id, Message::Status { phase, ms }, out);
        }
    }

    /// Turns a session request away: the host is full.
    fn refuse(&self, to: SocketAddr, id: u64, out: &mut Vec<u8>) {
        let no = Message::Goodbye {
            reason: GoodbyeReason::NoCapacity,
        };
        self.send(to, id, no, out);
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let mut out = Vec::new();
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            let silent = now.duration_since(s.last_heard);
            if silent > SESSION_RETAIN {
                tracing::info!(session = id, "session timed out");
                self.end_session(id, GoodbyeReason::Timeout, &mut out);
                continue;
            }
            if silent > DETACHED_AFTER && !s.detached {
                tracing::info!(session = id, "gateway silent; session detached");
                self.detach(id);
            }
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            // A resume from suspension is over when the first frame left.
            if let Some(since) = s.resuming_since
                && !s.shared.announce.load(Ordering::Relaxed)
            {
                s.resuming_since = None;
                self.resume_eta.learn(now.duration_since(since));
            }
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            let t = s.idle.poll(now);
            let due_sync = s.backup.is_some() && now.duration_since(s.last_sync) >= SYNC_INTERVAL;
            self.transition(id, t, now, &mut out);
            if due_sync {
                self.sync(id, &mut out);
            }
        }
        self.standby
            .retain(|_, s| now.duration_since(s.at) < STANDBY_TTL);
        if let Some(r) = self.recorder.as_mut() {
            let _ = r.flush();
        }
    }

    fn end_session(&mut self, id: u64, reason: GoodbyeReason, out: &mut Vec<u8>) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        self.release_held(id);
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        if let Ok(mut d) = self.desktops.lock() {
            d.remove(&id);
        }
        self.stats
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        if reason != GoodbyeReason::Normal && !s.detached {
            self.send(s.gateway, id, Message::Goodbye { reason }, out);
        }
        tracing::info!(session = id, ?reason, "session ended");
        drop(s);
    }

    /// Records that clipboard text of `bytes` went `kind` (in or out);
    /// never the text itself.
    fn record_note(&mut self, session: u64, kind: &str, bytes: usize) {
        let Some(w) = self.recorder.as_mut() else {
            return;
        };
        let t_ms = self.epoch.elapsed().as_secs_f64() * 1000.0;
        let line = serde_json::json!({
            "t_ms": (t_ms * 1000.0).round() / 1000.0,
            "session": session,
            "kind": kind,
            "bytes": bytes,
        });
        let _ = writeln!(w, "{line}").and_then(|()| w.flush());
    }

    fn record(&mut self, session: u64, seq: Option<u32>, ev: &InputEvent, released: bool) {
        let Some(w) = self.recorder.as_mut() else {
            return;
        };
        let t_ms = self.epoch.elapsed().as_secs_f64() * 1000.0;
        let mut line = serde_json::json!({
            "t_ms": (t_ms * 1000.0).round() / 1000.0,
            "session": session,
            "kind": ev.kind(),
        });
        if let Some(seq) = seq {
            line["seq"] = seq.into();
        }
        match *ev {
            InputEvent::Key { usage, down } => {
                line["action"] = if down { "down" } else { "up" }.into();
                line["usage"] = usage.into();
                if let Some(code) = nephele_protocol::hid::name_from_usage(usage) {
                    line["code"] = code.into();
                }
            }
            InputEvent::Button { button, down } => {
                line["action"] = if down { "down" } else { "up" }.into();
                line["button"] = button.name().into();
            }
            InputEvent::Move { x, y } => {
                line["x"] = x.into();
                line["y"] = y.into();
            }
            InputEvent::MoveBy { dx, dy } => {
                line["dx"] = dx.into();
                line["dy"] = dy.into();
            }
            InputEvent::Wheel { dx, dy } => {
                line["dx"] = dx.into();
                line["dy"] = dy.into();
            }
            InputEvent::PadConnect { pad, kind, rumble } => {
                line["pad"] = pad.into();
                line["action"] = "connect".into();
                line["type"] = kind.name().into();
                line["rumble"] = rumble.into();
            }
            InputEvent::PadDisconnect { pad } => {
                line["pad"] = pad.into();
                line["action"] = "disconnect".into();
            }
            InputEvent::PadButton { pad, button, down } => {
                line["pad"] = pad.into();
                line["action"] = if down { "down" } else { "up" }.into();
                line["button"] = button.name().into();
            }
            InputEvent::PadAxis { pad, axis, value } => {
                line["pad"] = pad.into();
                line["action"] = "axis".into();
                line["axis"] = axis.name().into();
                // Four decimals: the wire's 1/32767 steps, without the
                // float noise (0.5 reads 0.5, not 0.500015).
                let v = f64::from(nephele_protocol::pad::axis_to_f32(value));
                line["value"] = ((v * 1e4).round() / 1e4).into();
            }
        }
        if released {
            line["released_on_disconnect"] = true.into();
        }
        // One line per event, flushed so a reader never sees half a line.
        let _ = writeln!(w, "{line}").and_then(|()| w.flush());
    }
}

/// A bitrate that gives the demo desktop crisp text: about 0.1 bit per pixel per frame.
fn default_bitrate(w: u16, h: u16, fps: u8) -> u32 {
    let px = u64::from(w) * u64::from(h) * u64::from(fps);
    (px / 10).clamp(1_000_000, 40_000_000) as u32
}

/// Where an encoder's pictures come from.
enum Pictures {
    /// The demo desktop, drawn every frame.
    Drawn(Renderer),
    /// An X display, captured when it changed (its connection is large).
    Captured(Box<Grabber>),
}

struct EncodeJob {
    session: u64,
    width: u16,
    height: u16,
    fps: u8,
    bitrate: u32,
    motion: bool,
    socket: Arc<UdpSocket>,
    gateway: Arc<Mutex<SocketAddr>>,
    desktop: Arc<Mutex<DesktopState>>,
    keyframe: Arc<AtomicBool>,
    /// Congestion control's target for video and parity together.
    target_bps: Arc<AtomicU32>,
    /// Bytes sent, for congestion control to compare with what arrives.
    sent_bytes: Arc<AtomicU64>,
    /// The client's latest loss report.
    loss_permille: Arc<AtomicU32>,
    /// Set while the session is paused: no capture, no encoding.
    paused: Arc<AtomicBool>,
    /// Set on resuming: say so to the client before the first new frame.
    announce: Arc<AtomicBool>,
    /// Where the frame ids continue from, and where they got to.
    next_frame_id: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    stats: Arc<HostStats>,
    source: DesktopSource,
}

/// Until the client's first loss report (half a second in), parity is sized
/// for this much loss, so the session's first keyframe survives a lossy
/// path. After that the reports decide.
const FEC_LOSS_BEFORE_REPORTS: f64 = 0.05;

/// Parity is never sized for less: the first loss on a path that looked
/// clean is repaired too, instead of costing a keyframe round trip. A small
/// frame then carries two full-size parity datagrams, about 1.2 Mbit/s at
/// 60 frames a second.
const FEC_LOSS_FLOOR: f64 = 0.005;

/// `loss_permille` before any report.
const NO_REPORT: u32 = u32::MAX;

/// Below this many bits per pixel per frame at the full frame rate, the
/// frame rate halves: 1.7 Mbit/s at 720p60, 3.7 Mbit/s at 1080p60.
const LOW_BITS_PER_PIXEL: f64 = 0.03;

/// Follows congestion control's target with the encoder: its bitrate is the
/// target less the parity's share, and when that leaves fewer than
/// [`LOW_BITS_PER_PIXEL`] per pixel per frame the frame rate halves, so each
/// frame keeps enough bits to stay legible (text on a remote desktop matters
/// more than motion). Full rate returns above 1.5 times that.
struct Adapter {
    max_bps: u32,
    /// Pixels per second at the full frame rate.
    pixel_rate: f64,
    full_fps: u8,
    fps: u8,
    applied_bps: u32,
    /// Payload bytes per video datagram.
    payload: usize,
}

impl Adapter {
    fn new(max_bps: u32, (width, height): (u16, u16), fps: u8, payload: usize) -> Self {
        Self {
            max_bps,
            pixel_rate: f64::from(width) * f64::from(height) * f64::from(fps),
            full_fps: fps,
            fps,
            applied_bps: max_bps,
            payload,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.fps.max(1)))
    }

    /// Bytes sent per byte encoded for a frame that uses its share of
    /// `target` on a path losing `loss`: headers and parity. Computed for a
    /// frame of the budgeted size rather than measured, because a still
    /// desktop's tiny frames carry far more parity per byte (one full-size
    /// parity datagram each) without being what uses the bitrate.
    fn overhead(&self, target: u32, loss: f64) -> f64 {
        let frame = (f64::from(target) / 8.0 / f64::from(self.fps.max(1))).max(1.0);
        let count = (frame / self.payload as f64).ceil().max(1.0);
        let parity = f64::from(nephele_protocol::video::parity_for(count as u16, loss));
        let header = nephele_protocol::wire::VIDEO_HEADER_LEN as f64;
        let sent = frame + count * header + parity * (self.payload as f64 + header);
        sent / frame
    }

    /// The encoder's bitrate and frame rate for a `target` (video and
    /// parity together) on a path losing `loss`.
    fn plan(&self, target: u32, loss: f64) -> (u32, u8) {
        let video = ((f64::from(target) / self.overhead(target, loss)) as u32).min(self.max_bps);
        let bpp = f64::from(video) / self.pixel_rate.max(1.0);
        let fps = if bpp < LOW_BITS_PER_PIXEL {
            (self.full_fps / 2).max(1)
        } else if bpp > LOW_BITS_PER_PIXEL * 1.5 {
            self.full_fps
        } else {
            self.fps
        };
        (video, fps)
    }

    fn apply(&mut self, encoder: &mut Encoder, target: u32, loss: f64, stats: &HostStats) {
        let (video, fps) = self.plan(target, loss);
        if fps != self.fps {
            let mut rate = f32::from(fps);
            // SAFETY: the encoder is initialised (a frame has been encoded)
            // and the option takes a pointer to one f32, live for the call.
            let rc = unsafe {
                encoder.raw_api().set_option(
                    openh264_sys2::ENCODER_OPTION_FRAME_RATE,
                    std::ptr::addr_of_mut!(rate).cast(),
                )
            };
            if rc == 0 {
                tracing::debug!(fps, target, video, "frame rate changed");
                self.fps = fps;
                stats.encoder_fps.store(u64::from(fps), Ordering::Relaxed);
            }
        }
        // Small changes are not worth disturbing the encoder's rate control.
        let diff = video.abs_diff(self.applied_bps);
        if diff > self.applied_bps / 20 || (video == self.max_bps && diff > 0) {
            let mut info = openh264_sys2::SBitrateInfo {
                iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
                iBitrate: video.min(i32::MAX as u32) as i32,
            };
            // SAFETY: as above; the option takes a pointer to an SBitrateInfo.
            let rc = unsafe {
                encoder.raw_api().set_option(
                    openh264_sys2::ENCODER_OPTION_BITRATE,
                    std::ptr::addr_of_mut!(info).cast(),
                )
            };
            if rc == 0 {
                self.applied_bps = video;
                stats
                    .encoder_bitrate_bps
                    .store(u64::from(video), Ordering::Relaxed);
            } else {
                tracing::debug!(rc, video, "openh264 refused the bitrate");
            }
        }
    }
}

impl EncodeJob {
    fn gateway(&self) -> SocketAddr {
        self.gateway
            .lock()
            .map(|g| *g)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Sends the pointer's news: its shape in parts of whole rows, then
    /// its position.
    fn send_cursor(&self, update: crate::screen::CursorUpdate, out: &mut Vec<u8>) {
        let to = self.gateway();
        if let Some(s) = &update.shape {
            // Each part in one datagram, after the session's id.
            for msg in s.parts(nephele_protocol::MAX_DATAGRAM - 8) {
                send_on(&self.socket, to, self.session, msg, out);
            }
        }
        if let Some((x, y, visible)) = update.position {
            let msg = Message::CursorPosition { x, y, visible };
            send_on(&self.socket, to, self.session, msg, out);
        }
    }

    fn run(self) {
        if let Err(e) = self.run_inner() {
            tracing::error!(session = self.session, error = %e, "encoder stopped");
        }
    }

    fn run_inner(&self) -> Result<(), EncodeError> {
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        // The demo is drawn (its wallpaper cached), an X display captured.
        let mut source = match &self.source {
            DesktopSource::Demo => {
                let mut renderer = Renderer::new(w, h);
                renderer.motion = self.motion;
                Pictures::Drawn(renderer)
            }
            DesktopSource::X11 { display } => Pictures::Captured(Box::new(Grabber::open(display)?)),
        };
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(self.bitrate))
            .max_frame_rate(FrameRate::from_hz(f32::from(self.fps)))
            .usage_type(UsageType::ScreenContentRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            // Neither is supported for screen content; saying so keeps openh264 quiet.
            .adaptive_quantization(false)
            .background_detection(false)
            // openh264 only holds a bitrate when it may skip frames.
            .skip_frames(true);
        let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)?;
        let mut picture = I420::new(w, h);
        let mut fragmenter = Fragmenter::new(nephele_protocol::MAX_DATAGRAM - 64);
        fragmenter.continue_at(self.next_frame_id.load(Ordering::Relaxed));
        let mut au = Vec::with_capacity(256 * 1024);
        let mut dgram = Vec::with_capacity(nephele_protocol::MAX_DATAGRAM);
        let mut adapt = Adapter::new(
            self.bitrate,
            (self.width, self.height),
            self.fps,
            fragmenter.payload_size(),
        );
        self.stats
            .encoder_bitrate_bps
            .store(u64::from(self.bitrate), Ordering::Relaxed);
        self.stats
            .encoder_fps
            .store(u64::from(self.fps), Ordering::Relaxed);
        let mut next = Instant::now();
        // The desktop's frame counter continues across encoder restarts.
        let mut frame_no = u64::from(self.next_frame_id.load(Ordering::Relaxed));
        let mut encoded = false;
        let mut state = DesktopState::default();
        while !self.stop.load(Ordering::Relaxed) {
            if self.paused.load(Ordering::Relaxed) {
                // Woken by the receiver on resume (or stop); the timeout
                // only bounds a missed wake.
                std::thread::park_timeout(Duration::from_millis(100));
                next = Instant::now();
                continue;
            }
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
            let loss = match self.loss_permille.load(Ordering::Relaxed) {
                NO_REPORT => FEC_LOSS_BEFORE_REPORTS,
                permille => (f64::from(permille) / 1000.0).max(FEC_LOSS_FLOOR),
            };
            if encoded {
                // The encoder exists only after its first frame.
                adapt.apply(
                    &mut encoder,
                    self.target_bps.load(Ordering::Relaxed),
                    loss,
                    &self.stats,
                );
            }
            let interval = adapt.interval();
            next += interval;
            if Instant::now() > next + interval {
                // Fell behind (slow machine): skip ahead instead of bursting.
                next = Instant::now() + interval;
            }
            let capture = Instant::now();
            let capture_us = capture.duration_since(self.epoch).as_micros() as u64;
            match &mut source {
                Pictures::Drawn(renderer) => {
                    if let Ok(d) = self.desktop.lock() {
                        state.clone_from(&d);
                    }
                    renderer.render(
                        &state,
                        capture.duration_since(self.epoch),
                        frame_no,
                        &mut picture,
                    );
                }
                Pictures::Captured(g) => {
                    // A still screen costs a poll: nothing is captured or
                    // encoded unless it changed or a keyframe is due.
                    let force = !encoded || self.keyframe.load(Ordering::Relaxed);
                    let grab = g.grab(force, &mut picture)?;
                    // The pointer goes on its own, before the picture:
                    // the client draws it without waiting for video.
                    let pointer = g.cursor(force)?;
                    self.send_cursor(pointer, &mut dgram);
                    match grab {
                        Grab::Unchanged => {
                            self.stats.unchanged_ticks.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Grab::Resized => {
                            let size = (picture.width as u16, picture.height as u16);
                            tracing::info!(
                                session = self.session,
                                ?size,
                                "streaming the new screen size"
                            );
                            adapt = Adapter::new(
                                self.bitrate,
                                size,
                                self.fps,
                                fragmenter.payload_size(),
                            );
                            self.keyframe.store(true, Ordering::Relaxed);
                        }
                        Grab::Captured => {}
                    }
                }
            }
            if self.keyframe.swap(false, Ordering::Relaxed) {
                encoder.force_intra_frame();
            }
            let grabbed = Instant::now();
            let bs = encoder.encode(&picture)?;
            let encoded_at = Instant::now();
            let key = matches!(bs.frame_type(), FrameType::IDR | FrameType::I);
            au.clear();
            bs.write_vec(&mut au);
            if au.is_empty() {
                continue;
            }
            frame_no += 1;
            encoded = true;
            let to = self.gateway();
            if self.announce.swap(false, Ordering::Relaxed) {
                let msg = Message::Status {
                    phase: Phase::Streaming,
                    ms: 0,
                };
                send_on(&self.socket, to, self.session, msg, &mut dgram);
            }
            let session = self.session.to_be_bytes();
            let mut sent = 0;
            fragmenter.fragment(&au, key, capture_us, loss, |msg| {
                // Counted as the client counts what arrives: the message.
                sent += msg.len() as u64;
                dgram.clear();
                dgram.extend_from_slice(&session);
                dgram.extend_from_slice(msg);
                if let Err(e) = self.socket.send_to(&dgram, to) {
                    tracing::trace!(error = %e, "video send");
                }
            });
            self.sent_bytes.fetch_add(sent, Ordering::Relaxed);
            let took = capture.elapsed().as_micros() as u64;
            self.stats.frames_timed.fetch_add(1, Ordering::Relaxed);
            self.stats
                .capture_to_send_us
                .fetch_add(took, Ordering::Relaxed);
            self.stats
                .capture_to_send_max_us
                .fetch_max(took, Ordering::Relaxed);
            self.stats.grab_us.fetch_add(
                grabbed.duration_since(capture).as_micros() as u64,
                Ordering::Relaxed,
            );
            self.stats.encode_us.fetch_add(
                encoded_at.duration_since(grabbed).as_micros() as u64,
                Ordering::Relaxed,
            );
            self.next_frame_id
                .store(fragmenter.next_frame_id(), Ordering::Relaxed);
            self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            if key {
                self.stats.keyframes_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicated_state_round_trips_and_keeps_the_newest_text_when_long() {
        let mut d = DesktopState {
            typed: "héllo wörld".into(),
            pointer: (12, 34),
            wheel: (-240, 120),
            events: 99,
            key_presses: 42,
            ..Default::default()
        };
        d.keys_down.insert(4);
        let mut buf = Vec::new();
        snapshot(&d, &mut buf);
        let back = restore(&buf).unwrap();
        assert_eq!(back.typed, d.typed);
        assert_eq!((back.pointer, back.wheel), (d.pointer, d.wheel));
        assert_eq!((back.events, back.key_presses), (99, 42));
        assert!(back.keys_down.is_empty(), "held keys are not carried over");
        // Text beyond a datagram's room: the newest part, cut on a character.
        d.typed = "ä".repeat(crate::desktop::MAX_TYPED);
        snapshot(&d, &mut buf);
        assert!(buf.len() <= nephele_protocol::wire::MAX_STATE);
        let back = restore(&buf).unwrap();
        assert!(back.typed.chars().all(|c| c == 'ä') && !back.typed.is_empty());
        assert!(restore(&buf[..10]).is_none(), "a short state is refused");
    }

    #[test]
    fn the_frame_rate_halves_only_when_bits_per_frame_run_short() {
        let payload = Fragmenter::new(nephele_protocol::MAX_DATAGRAM - 64).payload_size();
        let a = Adapter::new(default_bitrate(1280, 720, 60), (1280, 720), 60, payload);
        // At its own default bitrate, with parity for the floor loss, a
        // session keeps its full frame rate and most of the bits go to video.
        let (video, fps) = a.plan(a.max_bps, FEC_LOSS_FLOOR);
        assert_eq!(fps, 60);
        assert!(video > a.max_bps * 3 / 4, "{video} of {}", a.max_bps);
        // Parity for heavy loss takes a larger share.
        let (lossy, _) = a.plan(a.max_bps, 0.1);
        assert!(lossy < video, "{lossy} vs {video}");
        // 1.2 Mbit/s at 720p60 is under 0.03 bits per pixel: half rate.
        assert_eq!(a.plan(1_200_000, FEC_LOSS_FLOOR).1, 30);
        // Between the two thresholds the current rate holds either way.
        let mid = 3_000_000;
        let (video, fps) = a.plan(mid, FEC_LOSS_FLOOR);
        let bpp = f64::from(video) / a.pixel_rate;
        assert!(
            (LOW_BITS_PER_PIXEL..LOW_BITS_PER_PIXEL * 1.5).contains(&bpp),
            "{bpp}"
        );
        assert_eq!(fps, 60);
        let halved = Adapter { fps: 30, ..a };
        assert_eq!(halved.plan(mid, FEC_LOSS_FLOOR).1, 30);
    }
}
