//! The desktop host: renders a desktop per session, encodes it with
//! openh264, and streams it to the session's gateway as UDP datagrams; applies
//! and acknowledges input.
//!
//! Between gateway and host the protocol is stateless datagrams: each one is
//! an [`Envelope`] naming its session. A gateway opens a session with
//! `Hello` (repeated until `Welcome` arrives) and keeps it alive with `Ping`;
//! a session silent for [`SESSION_TIMEOUT`] ends and releases its input.
//!
//! Threads: one receive thread (`nephele-host-rx`) owns the socket's read
//! side, the session table and input delivery; each session has an encoder
//! thread (`nephele-host-enc-N`) that renders, encodes and sends at the
//! session's frame rate.

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

use nephele_protocol::input::InputReceiver;
use nephele_protocol::pad::MAX_PADS;
use nephele_protocol::rate::{RateConfig, RateController, Report};
use nephele_protocol::video::Fragmenter;
use nephele_protocol::wire::{Envelope, GoodbyeReason, InputEvent, Message};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, RateControlMode, UsageType,
};

use crate::audio::{AudioJob, MIC_QUEUE, MicPacket, MicRecorder, mic_recorder};
use crate::desktop::{DesktopState, I420, Renderer};

/// A session that hears nothing for this long ends.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

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
}

/// A running host; stops when dropped.
#[derive(Debug)]
pub struct Host {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<HostStats>,
    rx: Option<JoinHandle<()>>,
}

impl Host {
    /// Binds and starts the host.
    pub fn start(cfg: HostConfig) -> Result<Self, HostError> {
        let socket = bind_udp(cfg.listen).map_err(|source| HostError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let addr = socket.local_addr().map_err(|source| HostError::Bind {
            addr: cfg.listen,
            source,
        })?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
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
        let stats = Arc::new(HostStats::default());
        let mut rx = Receiver {
            socket: Arc::new(socket),
            sessions: HashMap::new(),
            recorder,
            epoch: Instant::now(),
            stop: stop.clone(),
            stats: stats.clone(),
            bitrate: cfg.bitrate,
            motion: cfg.motion,
            tone_hz: cfg.tone_hz,
            mic_recorder,
            next_index: 0,
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
            stats,
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

    /// Stops all sessions and waits for the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
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

struct Session {
    /// The receive thread's own copy of the gateway address, so it compares
    /// without locking; `gateway_addr` is the encoder thread's view.
    gateway: SocketAddr,
    width: u16,
    height: u16,
    fps: u8,
    desktop: Arc<Mutex<DesktopState>>,
    input: InputReceiver,
    last_heard: Instant,
    keyframe: Arc<AtomicBool>,
    loss_permille: Arc<AtomicU32>,
    rate: RateController,
    /// The rate controller's target (video and parity), for the encoder thread.
    target_bps: Arc<AtomicU32>,
    /// Video bytes the encoder thread sent, and that count at the last report.
    sent_bytes: Arc<AtomicU64>,
    sent_at_report: (Instant, u64),
    gateway_addr: Arc<Mutex<SocketAddr>>,
    stop: Arc<AtomicBool>,
    encoder: Option<JoinHandle<()>>,
    /// The microphone's packets, to the session's sound thread.
    mic: SyncSender<MicPacket>,
    sound: Option<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in [self.encoder.take(), self.sound.take()]
            .into_iter()
            .flatten()
        {
            let _ = h.join();
        }
    }
}

struct Receiver {
    socket: Arc<UdpSocket>,
    sessions: HashMap<u64, Session>,
    recorder: Option<BufWriter<File>>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    stats: Arc<HostStats>,
    bitrate: u32,
    motion: bool,
    tone_hz: Option<f32>,
    mic_recorder: Option<MicRecorder>,
    next_index: u64,
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
            if last_sweep.elapsed() >= Duration::from_millis(250) {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            self.end_session(id, GoodbyeReason::Shutdown, &mut out);
        }
    }

    fn send(&self, to: SocketAddr, session: u64, message: Message<'_>, out: &mut Vec<u8>) {
        out.clear();
        Envelope { session, message }.encode(out);
        if let Err(e) = self.socket.send_to(out, to) {
            tracing::debug!(error = %e, %to, "host send");
        }
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
        if let Message::Hello {
            width, height, fps, ..
        } = env.message
        {
            self.open_session(id, from, width, height, fps, out);
            return;
        }
        let now = Instant::now();
        let Some(s) = self.sessions.get_mut(&id) else {
            // Unknown session (expired or never opened): tell the gateway.
            if !matches!(env.message, Message::Goodbye { .. }) {
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
        s.last_heard = now;
        if s.gateway != from {
            // The gateway's address changed (rebinding); follow it.
            s.gateway = from;
            if let Ok(mut g) = s.gateway_addr.lock() {
                *g = from;
            }
        }
        match env.message {
            Message::Input { seq, event } => {
                let (w, h) = (s.width, s.height);
                let desktop = s.desktop.clone();
                let mut applied = Vec::new();
                s.input
                    .handle(seq, event, |seq, ev| applied.push((seq, ev)));
                let ack = s.input.ack();
                // The demo's force feedback: a short buzz for the pads
                // whose face button went down, if they can rumble.
                let mut buzz = [false; MAX_PADS as usize];
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
                }
                self.stats
                    .inputs_applied
                    .fetch_add(applied.len() as u64, Ordering::Relaxed);
                for (seq, ev) in &applied {
                    self.record(id, Some(*seq), ev, false);
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
                s.keyframe.store(true, Ordering::Relaxed);
            }
            Message::Audio {
                seq,
                capture_us,
                payload,
                previous,
            } => {
                let arrived_us = self.epoch.elapsed().as_micros() as u64;
                // Full: the sound thread is stalled, and this packet would
                // be too late anyway.
                let _ = s.mic.try_send(MicPacket::new(
                    seq, capture_us, arrived_us, payload, previous,
                ));
            }
            Message::ReceiverReport {
                loss_permille,
                queue_delay_ms,
                recv_kbps,
            } => {
                s.loss_permille
                    .store(u32::from(loss_permille), Ordering::Relaxed);
                let before = s.rate.decreases();
                let sent = s.sent_bytes.load(Ordering::Relaxed);
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
                s.target_bps.store(target, Ordering::Relaxed);
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
            other => {
                tracing::debug!(?other, "unexpected message from gateway");
            }
        }
    }

    fn open_session(
        &mut self,
        id: u64,
        from: SocketAddr,
        width: u16,
        height: u16,
        fps: u8,
        out: &mut Vec<u8>,
    ) {
        let host_time_us = self.epoch.elapsed().as_micros() as u64;
        if let Some(s) = self.sessions.get_mut(&id) {
            // A repeated hello: the welcome was lost. Answer again.
            s.last_heard = Instant::now();
            let (width, height, fps) = (s.width, s.height, s.fps);
            self.send_welcome(from, id, (width, height, fps), host_time_us, out);
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            self.refuse(from, id, out);
            return;
        }
        let desktop = Arc::new(Mutex::new(DesktopState {
            pointer: (width / 2, height / 2),
            ..Default::default()
        }));
        let keyframe = Arc::new(AtomicBool::new(true));
        let loss_permille = Arc::new(AtomicU32::new(NO_REPORT));
        let stop = Arc::new(AtomicBool::new(false));
        let gateway_addr = Arc::new(Mutex::new(from));
        self.next_index += 1;
        let bitrate = if self.bitrate > 0 {
            self.bitrate
        } else {
            default_bitrate(width, height, fps)
        };
        let rate = RateController::new(RateConfig::new(bitrate));
        let target_bps = Arc::new(AtomicU32::new(rate.target_bps()));
        let sent_bytes = Arc::new(AtomicU64::new(0));
        let job = EncodeJob {
            session: id,
            width,
            height,
            fps,
            bitrate,
            motion: self.motion,
            target_bps: target_bps.clone(),
            sent_bytes: sent_bytes.clone(),
            socket: self.socket.clone(),
            gateway: gateway_addr.clone(),
            desktop: desktop.clone(),
            keyframe: keyframe.clone(),
            loss_permille: loss_permille.clone(),
            stop: stop.clone(),
            epoch: self.epoch,
            stats: self.stats.clone(),
        };
        let encoder = match std::thread::Builder::new()
            .name(format!("nephele-host-enc-{}", self.next_index))
            .spawn(move || {
                // Started from the input thread; encoding is bulk work.
                nephele_platform::sched::ordinary();
                job.run()
            }) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot start encoder thread");
                self.refuse(from, id, out);
                return;
            }
        };
        let (mic_tx, mic_rx) = std::sync::mpsc::sync_channel(MIC_QUEUE);
        let sound_job = AudioJob {
            session: id,
            socket: self.socket.clone(),
            gateway: gateway_addr.clone(),
            desktop: desktop.clone(),
            tone_hz: self.tone_hz,
            mic: mic_rx,
            recorder: self.mic_recorder.clone(),
            stop: stop.clone(),
            epoch: self.epoch,
        };
        let sound = match std::thread::Builder::new()
            .name(format!("nephele-host-audio-{}", self.next_index))
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
        tracing::info!(session = id, %from, width, height, fps, "session opened");
        self.stats.sessions_opened.fetch_add(1, Ordering::Relaxed);
        self.sessions.insert(
            id,
            Session {
                gateway: from,
                width,
                height,
                fps,
                desktop,
                input: InputReceiver::new(),
                last_heard: Instant::now(),
                keyframe,
                loss_permille,
                rate,
                target_bps,
                sent_bytes,
                sent_at_report: (Instant::now(), 0),
                gateway_addr,
                stop,
                encoder: Some(encoder),
                mic: mic_tx,
                sound,
            },
        );
        self.send_welcome(from, id, (width, height, fps), host_time_us, out);
    }

    /// Turns a session request away: the host is full.
    fn refuse(&self, to: SocketAddr, id: u64, out: &mut Vec<u8>) {
        let no = Message::Goodbye {
            reason: GoodbyeReason::NoCapacity,
        };
        self.send(to, id, no, out);
    }

    fn send_welcome(
        &self,
        to: SocketAddr,
        id: u64,
        (width, height, fps): (u16, u16, u8),
        host_time_us: u64,
        out: &mut Vec<u8>,
    ) {
        let welcome = Message::Welcome {
            session_id: id,
            width,
            height,
            fps,
            host_time_us,
        };
        self.send(to, id, welcome, out);
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_heard) > SESSION_TIMEOUT)
            .map(|(&id, _)| id)
            .collect();
        let mut out = Vec::new();
        for id in expired {
            tracing::info!(session = id, "session timed out");
            self.end_session(id, GoodbyeReason::Timeout, &mut out);
        }
        if let Some(r) = self.recorder.as_mut() {
            let _ = r.flush();
        }
    }

    fn end_session(&mut self, id: u64, reason: GoodbyeReason, out: &mut Vec<u8>) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        let released = s
            .desktop
            .lock()
            .map(|mut d| d.release_all())
            .unwrap_or_default();
        for ev in &released {
            self.record(id, None, ev, true);
        }
        if reason != GoodbyeReason::Normal {
            self.send(s.gateway, id, Message::Goodbye { reason }, out);
        }
        tracing::info!(session = id, ?reason, "session ended");
        drop(s);
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
    stop: Arc<AtomicBool>,
    epoch: Instant,
    stats: Arc<HostStats>,
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
    fn run(self) {
        if let Err(e) = self.run_inner() {
            tracing::error!(session = self.session, error = %e, "encoder stopped");
        }
    }

    fn run_inner(&self) -> Result<(), openh264::Error> {
        let (w, h) = (usize::from(self.width), usize::from(self.height));
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
        let mut renderer = Renderer::new(w, h);
        renderer.motion = self.motion;
        let mut picture = I420::new(w, h);
        let mut fragmenter = Fragmenter::new(nephele_protocol::MAX_DATAGRAM - 64);
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
        let mut frame_no: u64 = 0;
        let mut state = DesktopState::default();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
            let loss = match self.loss_permille.load(Ordering::Relaxed) {
                NO_REPORT => FEC_LOSS_BEFORE_REPORTS,
                permille => (f64::from(permille) / 1000.0).max(FEC_LOSS_FLOOR),
            };
            if frame_no > 0 {
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
            if let Ok(d) = self.desktop.lock() {
                state.clone_from(&d);
            }
            renderer.render(
                &state,
                capture.duration_since(self.epoch),
                frame_no,
                &mut picture,
            );
            if self.keyframe.swap(false, Ordering::Relaxed) {
                encoder.force_intra_frame();
            }
            let bs = encoder.encode(&picture)?;
            let key = matches!(bs.frame_type(), FrameType::IDR | FrameType::I);
            au.clear();
            bs.write_vec(&mut au);
            if au.is_empty() {
                continue;
            }
            frame_no += 1;
            let to = self
                .gateway
                .lock()
                .map(|g| *g)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
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
