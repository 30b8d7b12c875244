//! The desktop host: a desktop per session (the demo, drawn; a running X
//! display, captured; or, for an application, a private display of the
//! session's own — [`apps`]), encoded with openh264 and streamed to the
//! session's gateway as UDP datagrams; input applied and acknowledged.
//!
//! The session logic — attach and re-attach, input exactly once, state
//! replication before acknowledgement, the idle ladder, congestion control,
//! takeover from a failed primary — is the protocol's sans-IO
//! [`HostCore`]; this module is its driver:
//!
//! * [`rx`]: the receive thread (`nephele-host-rx`) owns the socket's read
//!   side and the core, and carries out the core's events;
//! * [`desktop`]: a session's desktop behind the [`desktop::Desktop`]
//!   trait — the demo's or an X display's — where input goes and what is
//!   replicated;
//! * [`media`]: a session's encoder (`nephele-host-enc-N`, [`encode`]) and
//!   sound (`nephele-host-audio-N`, [`sound`]) threads, and the control
//!   block they share with the receive thread ([`control`]);
//! * [`replication`]: the demo desktop's state as replicated;
//! * [`recording`]: `--record-input`'s JSON lines;
//! * [`apps`]: application sessions' displays, programs and profiles
//!   (`nephele-host-apps`).

mod admission;
mod app_display;
mod apps;
mod control;
mod desktop;
mod encode;
mod encoder;
mod enrolment;
mod media;
mod recording;
mod replication;
mod rx;
mod sound;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};

use crate::link::{LinkKey, LinkSocket, Opener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use nephele_protocol::codec::Codec;
use nephele_protocol::host::{HostCore, HostCoreConfig};

use crate::demo::DesktopState;
use crate::screen::{DesktopSource, ScreenError};
use sound::mic_recorder;

pub use admission::{Admitted, Sids, TokenAdmission};
pub use apps::AppsConfig;
pub use nephele_protocol::host::{DETACHED_AFTER, MAX_SESSIONS, SESSION_RETAIN};
pub use sound::parse_tone;

/// The monitor of the sound server's default sink (PulseAudio's name).
pub const DEFAULT_SOUND_SOURCE: &str = "@DEFAULT_MONITOR@";

/// The codecs a host offers unless told otherwise, best first: H.264
/// leads because its encoders cost a fraction of the others' on a CPU
/// (FFmpeg's testsrc2 at 720p on the 2-core test machine, CPU a picture:
/// libx264 veryfast 7 ms, libx265 ultrafast 21 ms, libaom realtime 26 ms);
/// a client's user may choose HEVC or AV1 for their smaller streams.
pub const DEFAULT_CODECS: [Codec; 3] = [Codec::H264, Codec::Hevc, Codec::Av1];

/// A codec's name as settings give it: `h264`, `hevc` (or `h265`), `av1`.
pub fn parse_codec(s: &str) -> Result<Codec, String> {
    match s.to_ascii_lowercase().as_str() {
        "h264" | "h.264" | "avc" => Ok(Codec::H264),
        "hevc" | "h265" | "h.265" => Ok(Codec::Hevc),
        "av1" => Ok(Codec::Av1),
        _ => Err(format!("`{s}`: expected h264, hevc or av1")),
    }
}

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
    /// Most picture pixels a second one session may ask for (0: the
    /// protocol's default, 1920×1080 at 120 fps); more gets a lower frame
    /// rate, then a smaller picture.
    pub max_pixel_rate: u64,
    /// The codecs to offer clients, best first, of those this system can
    /// encode (H.264 always).
    pub codecs: Vec<Codec>,
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
    /// The key the deployment's gateways and hosts seal their datagrams
    /// with; nothing else reaches the sessions.
    pub link: LinkKey,
    /// The directory's token key: with it, a session is attached only with
    /// a session token signed for this host, and its backup, idle policy
    /// and picture cap come from the token. `None`: direct sessions from
    /// gateways without a directory (the link key alone decides).
    pub tokens: Option<crate::token::Verifier>,
    /// Where and as whom application sessions run (each on a private
    /// display); `None`: the host refuses them.
    pub apps: Option<AppsConfig>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            record_input: None,
            bitrate: 0,
            max_pixel_rate: 0,
            codecs: DEFAULT_CODECS.to_vec(),
            motion: false,
            tone_hz: None,
            record_mic: None,
            desktop: DesktopSource::Demo,
            sound_source: DEFAULT_SOUND_SOURCE.into(),
            // A key nobody else holds: such a host talks to no one until
            // given the deployment's.
            link: LinkKey::random(),
            tokens: None,
            apps: None,
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
    /// The directory for application sessions cannot be made, or their
    /// worker thread started.
    #[error("running applications in {dir}: {source}")]
    Apps {
        /// The directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
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
    /// Datagrams dropped unanswered: not sealed with the link key,
    /// tampered with, or replayed.
    pub link_refused: AtomicU64,
    /// Attaches refused for their session token (missing, forged, expired,
    /// or for another session or other hosts).
    pub attaches_refused: AtomicU64,
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
            "link_refused": get(&self.link_refused),
            "attaches_refused": get(&self.attaches_refused),
            "sessions_opened": get(&self.sessions_opened),
            "rate_decreases": get(&self.rate_decreases),
            "capture_to_send_ms_mean": mean_ms(&self.capture_to_send_us),
            "capture_to_send_ms_max": get(&self.capture_to_send_max_us) as f64 / 1000.0,
            "grab_ms_mean": mean_ms(&self.grab_us),
            "encode_ms_mean": mean_ms(&self.encode_us),
        })
    }

    /// The session core's counters, mirrored.
    fn mirror(&self, core: &HostCore) {
        let c = core.counters();
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.inputs_applied, c.inputs_applied);
        set(&self.bad_datagrams, c.bad_datagrams);
        set(&self.sessions_opened, c.sessions_opened);
        set(&self.rate_decreases, c.rate_decreases);
        set(&self.reattached, c.reattached);
        set(&self.takeovers, c.takeovers);
        set(&self.attaches_refused, c.attaches_refused);
        set(&self.pauses, c.pauses);
        set(&self.suspends, c.suspends);
        set(&self.resumes, c.resumes);
        set(&self.sessions, core.sessions() as u64);
    }
}

/// The live sessions' desktop states, for [`Host::typed`].
pub(crate) type Desktops = Arc<Mutex<HashMap<u64, Arc<Mutex<DesktopState>>>>>;

/// What the directory asks of sessions, for the receive thread.
#[derive(Debug, Default)]
pub(crate) struct Ordered {
    /// New backups.
    pub backups: Vec<(u64, SocketAddr)>,
    /// Sessions to end (the service ended them).
    pub ends: Vec<u64>,
}

/// [`Ordered`], shared between the enrolment and receive threads.
pub(crate) type Orders = Arc<Mutex<Ordered>>;

/// A running host; stops when dropped.
#[derive(Debug)]
pub struct Host {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    crash: Arc<AtomicBool>,
    stats: Arc<HostStats>,
    desktops: Desktops,
    sids: Sids,
    orders: Orders,
    enrolment: Mutex<Option<crate::enrol::Enrolment>>,
    /// How application sessions reach the directory, once enrolled.
    app_link: apps::SharedLink,
    rx: Option<JoinHandle<()>>,
}

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
            .set_read_timeout(Some(rx::TICK))
            .map_err(|source| HostError::Bind { addr, source })?;
        let recorder = cfg
            .record_input
            .as_deref()
            .map(recording::Recorder::open)
            .transpose()
            .map_err(|(path, source)| HostError::Record { path, source })?;
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
        let now = Instant::now();
        let mut core = HostCore::new(
            HostCoreConfig {
                bitrate: cfg.bitrate,
                max_pixel_rate: cfg.max_pixel_rate,
                codecs: encoder::offer(&cfg.codecs),
            },
            now,
        );
        let sids = Sids::default();
        let orders = Orders::default();
        if let Some(tokens) = cfg.tokens.clone() {
            core.set_admission(Box::new(TokenAdmission::new(tokens, addr, sids.clone())));
        }
        let app_link = apps::SharedLink::default();
        let apps = cfg
            .apps
            .clone()
            .map(|a| {
                let dir = a.dir.display().to_string();
                apps::Apps::start(a, app_link.clone())
                    .map_err(|source| HostError::Apps { dir, source })
            })
            .transpose()?;
        let rx = rx::Rx {
            socket: Arc::new(LinkSocket::new(socket, &cfg.link)),
            opener: Opener::new(&cfg.link),
            core,
            sessions: HashMap::new(),
            media: media::MediaOptions {
                bitrate: cfg.bitrate,
                motion: cfg.motion,
                tone_hz: cfg.tone_hz,
                mic_recorder,
                sound_source: cfg.sound_source.clone(),
                epoch: now,
            },
            source: cfg.desktop.clone(),
            recorder,
            stop: stop.clone(),
            crash: crash.clone(),
            stats: stats.clone(),
            desktops: desktops.clone(),
            next_index: 0,
            out: Vec::with_capacity(nephele_protocol::MAX_DATAGRAM),
            state_buf: Vec::with_capacity(nephele_protocol::wire::MAX_STATE),
            orders: orders.clone(),
            sids: sids.clone(),
            apps,
            starting: HashMap::new(),
            apps_checked: now,
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
            sids,
            orders,
            enrolment: Mutex::new(None),
            app_link,
            rx: Some(rx),
        })
    }

    /// Enrols with a directory as `info` and heartbeats the sessions it
    /// serves until it stops, on a thread of its own (the directory client
    /// blocks); backups the directory gives sessions are applied, and
    /// sessions it ended end.
    pub fn enrol(
        &self,
        directory: nephele_api::DirectoryClient,
        creds: crate::enrol::Credentials,
        info: nephele_api::directory::HostInfo,
    ) {
        let (host, dir) = (info.id.clone(), directory.clone());
        let member = enrolment::Enrolled {
            info,
            desktops: self.desktops.clone(),
            sids: self.sids.clone(),
            orders: self.orders.clone(),
        };
        let e = crate::enrol::Enrolment::start(directory, creds, member, "nephele-host-heartbeat");
        if let Ok(mut l) = self.app_link.lock() {
            let key = e.key();
            *l = Some(apps::AppLink { dir, host, key });
        }
        if let Ok(mut slot) = self.enrolment.lock() {
            *slot = Some(e);
        }
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
        if let Some(e) = self.enrolment.lock().ok().and_then(|mut e| e.take()) {
            e.stop(false);
        }
        self.crash.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`Host::crash`] was called.
    pub fn crashed(&self) -> bool {
        self.crash.load(Ordering::Relaxed)
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The sessions end first: application sessions keep their
        // profiles with the directory while the host is still enrolled.
        if let Some(h) = self.rx.take() {
            let _ = h.join();
        }
        if let Some(e) = self.enrolment.lock().ok().and_then(|mut e| e.take()) {
            e.stop(true);
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

/// Sends one already-encoded datagram, sealed; a failure (a gateway that
/// is gone) is noticed by its silence, not here.
pub(crate) fn send_to(socket: &LinkSocket, to: SocketAddr, datagram: &[u8]) {
    socket.send_to(datagram, to);
}
