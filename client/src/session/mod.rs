//! A streaming session, headless: connect to a gateway over QUIC, receive
//! and decode video, send input. The window is one consumer of it (through a
//! [`FrameSink`]); headless runs and tests are others.
//!
//! The session's logic is the protocol's sans-IO [`ClientCore`] (paths,
//! video, reports, pings, activity) and its reconnect policy
//! ([`nephele_protocol::client::reconnect`]); the threads here only carry
//! bytes and events:
//!
//! * `nephele-net` runs a single-threaded tokio runtime with the QUIC
//!   connection and drives the core ([`net`]). Control, input and recovery
//!   each have their own QUIC stream, so a keyframe request never waits
//!   behind input and input never waits behind video (which travels as
//!   datagrams). It writes counters to [`Stats`] and states (phase, route,
//!   pointer, clock map) to the watch channels of [`Observed`].
//! * `nephele-decode` decodes complete frames from a bounded queue and hands
//!   each picture to the sink ([`decode`]). When the queue is full the
//!   frame is dropped and a keyframe requested, rather than letting
//!   latency grow.

mod decode;
mod display;
mod net;
mod plain_udp;
mod quic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nephele_platform::gamepad::PadEvent;
use nephele_protocol::client::{ClientConfig, ClientCore, ClientError};
use nephele_protocol::codec::CodecAsk;
use nephele_protocol::input::InputError;
use nephele_protocol::wire::GoodbyeReason;
use rustls::pki_types::CertificateDer;
use tokio::sync::{Notify, watch};

use crate::activity::Activity;
use crate::audio::{Audio, AudioConfig, MIC_QUEUE};
use crate::gamepad::Gamepads;
use crate::handle::{InputHandle, input_queue};
use crate::stats::Stats;
use crate::status::{Observed, Route};
use crate::video::Picture;

pub use display::DisplaySize;
pub use nephele_protocol::client::StreamInfo;

/// How long the QUIC handshake may take before the gateway counts as unreachable.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A reconnect attempt's handshake may take this long before the next
/// gateway is tried (the first connection allows [`HANDSHAKE_TIMEOUT`]).
pub const RECONNECT_HANDSHAKE: Duration = Duration::from_secs(1);

/// Complete frames waiting for the decoder, at most.
const DECODE_QUEUE: usize = 3;

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
    /// The codec the user chose.
    pub codec: crate::video::CodecChoice,
}

impl ConnectConfig {
    /// The configured gateway first, then the fallbacks.
    fn candidates(&self) -> Vec<Fallback> {
        let mut all = vec![Fallback {
            gateway: self.gateway,
            server_name: self.server_name.clone(),
            route: self.route.clone(),
        }];
        all.extend(self.fallbacks.iter().cloned());
        all
    }
}

/// A way to a fresh session token for the same session, and the gateways
/// live now (the directory's resume endpoint with the session's resume
/// token), and to end the session there. Blocking.
#[derive(Clone)]
pub struct Renew {
    /// A fresh session token and the gateways live now.
    pub renew: Arc<dyn Fn() -> Result<Renewed, String> + Send + Sync>,
    /// Log-off: the session ends at the directory, and nothing reconnects
    /// to it any more (the person closed it; the host ended it).
    pub end: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

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

/// Why a session could not start or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The TLS configuration was refused (bad CA file contents).
    #[error("TLS setup: {0}")]
    Tls(#[from] nephele_api::trust::TrustError),
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
    /// Another device holds the session.
    #[error(
        "this desktop is open on another device: close it there (or wait until that device disconnects) and connect again"
    )]
    InUse,
    /// The session moved to another device.
    #[error("this desktop was opened on another device, so this one was disconnected")]
    Replaced,
    /// The service ended the session (its administrator did).
    #[error("your administrator ended this session")]
    EndedByService,
    /// Too much input went unacknowledged.
    #[error(transparent)]
    Input(#[from] InputError),
}

impl From<quinn::ConnectionError> for SessionError {
    fn from(e: quinn::ConnectionError) -> Self {
        Self::Connection(e)
    }
}

impl From<ClientError> for SessionError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Protocol(p) => Self::Protocol(p),
            ClientError::Ended(GoodbyeReason::InUse) => Self::InUse,
            ClientError::Ended(GoodbyeReason::Replaced) => Self::Replaced,
            ClientError::Ended(GoodbyeReason::Ended) => Self::EndedByService,
            ClientError::Ended(r) => Self::Ended(r),
        }
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
    /// The capture on this client's clock ([`crate::clock::local_us`]),
    /// once the host's clock is mapped.
    pub captured_us: Option<i64>,
}

/// Receives decoded pictures on the decode thread.
pub trait FrameSink: Send + 'static {
    /// Takes (copies or converts) a picture; must not block on the network.
    fn present(&mut self, pic: &Picture<'_>, meta: FrameMeta);
}

/// Called once, on the network thread, when a session ends (with the error, if any).
pub type OnEnd = Box<dyn FnOnce(Option<&SessionError>) + Send>;

/// A running session.
pub struct Session {
    info: StreamInfo,
    input: InputHandle,
    activity: Arc<Activity>,
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
    /// The window's picture area, for the host.
    display: Arc<DisplaySize>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("info", &self.info).finish()
    }
}

impl Session {
    /// Connects, opens the session and starts streaming into `sink`. Returns
    /// once the host has welcomed the session. `on_end` runs on the network
    /// thread when the session ends for any reason. Counters go to `stats`,
    /// the session's state to `observed`.
    pub fn connect(
        cfg: ConnectConfig,
        stats: Arc<Stats>,
        observed: Arc<Observed>,
        sink: Box<dyn FrameSink>,
        on_end: OnEnd,
    ) -> Result<Self, SessionError> {
        observed.status.send_modify(|s| s.route = cfg.route.clone());
        let activity = Arc::new(Activity::default());
        let wake = Arc::new(Notify::new());
        let (input, queue) = input_queue(wake.clone(), activity.clone());
        let wake_net = wake.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let pads = Arc::new(Gamepads::start(input.clone(), stats.clone()));
        let (ready_tx, ready_rx) =
            std::sync::mpsc::sync_channel::<Result<StreamInfo, SessionError>>(1);
        let (frame_tx, frame_rx) = std::sync::mpsc::sync_channel(DECODE_QUEUE);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(DECODE_QUEUE + 8);
        let want_keyframe = Arc::new(AtomicBool::new(false));
        let display = Arc::new(DisplaySize::default());
        let ended = Arc::new(AtomicBool::new(false));
        let (mic_tx, mic_rx) = tokio::sync::mpsc::channel(MIC_QUEUE);
        let audio = Audio::start(
            cfg.audio.clone(),
            stats.clone(),
            observed.clock.subscribe(),
            mic_tx,
            activity.clone(),
        );
        let speaker = audio.speaker();
        let clipboard_out = Arc::new(crate::clipboard::Outbox::default());
        let (clipboard, clipboard_in) = if cfg.clipboard {
            let (tx, rx) = std::sync::mpsc::sync_channel(crate::clipboard::INBOUND);
            let w = wake.clone();
            let link = crate::clipboard::ClipboardLink::start(
                clipboard_out.clone(),
                Arc::new(move || w.notify_one()),
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
        let decoder = crate::video::VideoDecoder::with(cfg.decoder)?;
        let name = decoder.backend().name();
        let decodes = crate::video::VideoDecoder::decodable(cfg.decoder);
        tracing::info!(decoder = name, %decodes, "H.264 decoder; codecs decoded");
        let _ = stats.decoder.set(name);
        let decode = decode::Decode {
            decoder,
            choice: cfg.decoder,
            frames: frame_rx,
            recycle: recycle_tx,
            sink,
            stats: stats.clone(),
            clock: observed.clock.subscribe(),
            want_keyframe: want_keyframe.clone(),
            wake: wake.clone(),
            saver,
        }
        .start()?;

        let core = ClientCore::new(
            ClientConfig {
                width: cfg.width,
                height: cfg.height,
                fps: cfg.fps,
                token: cfg.token.clone(),
                client_session: nephele_platform::process::random_id(),
                codecs: CodecAsk {
                    decodes,
                    prefer: cfg.codec.codec(),
                },
            },
            crate::clock::epoch(),
            Instant::now(),
        );
        let net = {
            let stats = stats.clone();
            let ended = ended.clone();
            let net = net::Net {
                core,
                stats,
                observed,
                input: queue,
                wake,
                frame_tx,
                recycle_rx,
                want_keyframe,
                display: display.clone(),
                stop: stop_rx,
                pads: pads.clone(),
                handle: input.clone(),
                speaker,
                mic: mic_rx,
                clipboard_in,
                clipboard_out,
                current: None,
            };
            std::thread::Builder::new()
                .name("nephele-net".into())
                .spawn(move || {
                    // Input, its acknowledgement and the frames' last
                    // fragments all pass through here.
                    nephele_platform::sched::latency_critical();
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let res = rt.block_on(net.run(cfg, ready_tx));
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
            input,
            activity,
            stats,
            stop: stop_tx,
            net: Some(net),
            decode: Some(decode),
            started: Instant::now(),
            ended,
            pads,
            audio,
            _clipboard: clipboard,
            display,
            wake: wake_net,
        })
    }

    /// The window's picture area settled at `width × height` physical
    /// pixels on a display refreshing `refresh` times a second: the host
    /// sizes the desktop to it where it can (the picture then maps one to
    /// one).
    pub fn set_display_size(&self, width: u16, height: u16, refresh: u8) {
        self.display.set(width, height, refresh);
        self.wake.notify_one();
    }

    /// What the user is doing, as reported to the host (input marks it by
    /// itself; the window adds its state and keep-active requests).
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
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
