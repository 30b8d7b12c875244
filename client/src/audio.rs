//! The session's sound: the desktop's audio played on the default output
//! through the jitter buffer, and the microphone captured, encoded and sent.
//!
//! Neither waits on the network or on video: packets land in the playout
//! from the network thread, the device's callback pulls from it, and the
//! microphone's packets go to the network thread through a bounded queue
//! that drops rather than blocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nephele_platform::audio::{Capture, Device, DeviceStatus, Format, Render};
use nephele_platform::opus::{Content, OpusDecoder, OpusEncoder};
use nephele_protocol::audio::{FRAME_SAMPLES, MAX_AUDIO_PAYLOAD, Playout, SAMPLE_RATE};
use tokio::sync::watch;

use crate::activity::Activity;
use crate::clock::local_us;
use crate::stats::Stats;
use crate::status::HostClock;

/// The microphone's Opus bitrate: clear speech.
const MIC_BITRATE: u32 = 32_000;

/// Microphone packets waiting for the network thread, at most (320 ms):
/// some devices deliver a tenth of a second at a time.
pub const MIC_QUEUE: usize = 32;

/// What the session does with sound; also the settings file's `[audio]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct AudioConfig {
    /// Play the desktop's sound.
    pub speaker: bool,
    /// Capture and send the microphone.
    pub microphone: bool,
    /// Start with the microphone muted.
    pub mic_muted: bool,
    /// Play on the output whose name contains this, if there is one.
    pub output_device: Option<String>,
    /// Record from the input whose name contains this, if there is one.
    pub input_device: Option<String>,
}

impl AudioConfig {
    /// Neither speaker nor microphone.
    pub const OFF: Self = Self {
        speaker: false,
        microphone: false,
        mic_muted: false,
        output_device: None,
        input_device: None,
    };
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            speaker: true,
            microphone: true,
            mic_muted: false,
            output_device: None,
            input_device: None,
        }
    }
}

/// The desktop's sound on its way to the speaker.
pub struct Speaker {
    playout: Playout<OpusDecoder>,
    stats: Arc<Stats>,
    /// The host's clock on this one's, for the sound's latency.
    clock: watch::Receiver<Option<HostClock>>,
    /// The output device's supervisor, once started.
    device: Option<Arc<DeviceStatus>>,
    /// Callbacks since the counters were last published.
    since_publish: u32,
}

impl Speaker {
    fn new(
        stats: Arc<Stats>,
        clock: watch::Receiver<Option<HostClock>>,
    ) -> Result<Self, nephele_platform::opus::OpusError> {
        Ok(Self {
            playout: Playout::new(
                OpusDecoder::new(Content::Desktop)?,
                Content::Desktop.channels(),
            ),
            stats,
            clock,
            device: None,
            since_publish: 0,
        })
    }

    /// A packet from the host.
    pub fn push(&mut self, seq: u32, capture_us: u64, payload: &[u8], previous: &[u8]) {
        let now = local_us(Instant::now()).max(0) as u64;
        self.playout.push(seq, capture_us, payload, previous, now);
    }
}

impl Render for Speaker {
    fn render(&mut self, out: &mut [f32], format: Format, delay: Duration) {
        // When the first sample about to be written was captured.
        let first = self.playout.playing_capture_us();
        self.playout.render(out, format.channels, format.rate);
        // Capture (host clock, mapped) → reaching the speaker.
        let clock = *self.clock.borrow();
        if let (Some(captured), Some(clock)) = (first, clock) {
            let captured = clock.to_local_us(captured);
            let heard = local_us(Instant::now()) + delay.as_micros() as i64;
            self.stats
                .audio_latency
                .record(Duration::from_micros((heard - captured).max(0) as u64));
        }
        self.since_publish += 1;
        if self.since_publish >= 10 {
            self.since_publish = 0;
            if let Ok(mut a) = self.stats.audio.lock() {
                a.playout = self.playout.stats();
                if let Some(d) = &self.device {
                    a.device_opened = d.opened.load(Ordering::Relaxed);
                    a.device_failures = d.failures.load(Ordering::Relaxed);
                    if let Ok(name) = d.device.lock() {
                        a.device.clone_from(&name);
                    }
                }
            }
        }
    }
}

/// One encoded microphone frame for the network thread.
#[derive(Clone, Copy)]
pub struct MicPacket {
    /// Frame number.
    pub seq: u32,
    /// Capture time on this client's clock, µs.
    pub capture_us: u64,
    len: usize,
    data: [u8; MAX_AUDIO_PAYLOAD],
    prev_len: usize,
    prev: [u8; MAX_AUDIO_PAYLOAD],
}

impl MicPacket {
    /// The frame.
    pub fn payload(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// A copy of the frame before.
    pub fn previous(&self) -> &[u8] {
        &self.prev[..self.prev_len]
    }
}

/// The microphone on its way to the host: mixed to mono, brought to 48 kHz,
/// cut into 10 ms frames and encoded.
pub struct Microphone {
    encoder: OpusEncoder,
    frame: [f32; FRAME_SAMPLES],
    filled: usize,
    /// Position in the input between its last two samples, for resampling.
    pos: f64,
    last: f32,
    packet: MicPacket,
    muted: Arc<AtomicBool>,
    tx: tokio::sync::mpsc::Sender<MicPacket>,
    stats: Arc<Stats>,
    activity: Arc<Activity>,
}

impl Microphone {
    fn push_sample(&mut self, s: f32) {
        self.frame[self.filled] = s;
        self.filled += 1;
        if self.filled < FRAME_SAMPLES {
            return;
        }
        self.filled = 0;
        if self.muted.load(Ordering::Relaxed) {
            // Nothing from before the mute may ride along as a copy later.
            self.packet.len = 0;
            return;
        }
        // Speaking is input: it keeps the session from pausing.
        self.activity.heard(&self.frame);
        let p = &mut self.packet;
        p.prev = p.data;
        p.prev_len = p.len;
        match self.encoder.encode(&self.frame, &mut p.data) {
            Ok(n) => p.len = n,
            Err(e) => {
                tracing::debug!(error = %e, "microphone frame not encoded");
                return;
            }
        }
        p.seq = p.seq.wrapping_add(1);
        p.capture_us = local_us(Instant::now()).max(0) as u64;
        if self.tx.try_send(*p).is_ok() {
            self.stats.mic_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.mic_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Capture for Microphone {
    fn capture(&mut self, data: &[f32], format: Format) {
        let ch = format.channels.max(1);
        // Input samples advanced per 48 kHz output sample.
        let step = f64::from(format.rate.max(1)) / f64::from(SAMPLE_RATE);
        for frame in data.chunks(ch) {
            let s = frame.iter().sum::<f32>() / frame.len() as f32;
            // Linear interpolation between the previous input sample and
            // this one; hand-written for the same reason as the playout's.
            while self.pos < 1.0 {
                let v = self.last + (s - self.last) * self.pos as f32;
                self.push_sample(v);
                self.pos += step;
            }
            self.pos -= 1.0;
            self.last = s;
        }
    }
}

/// The session's open sound devices; closes them when dropped.
pub struct Audio {
    speaker: Option<Arc<Mutex<Speaker>>>,
    muted: Arc<AtomicBool>,
    _output: Option<Device>,
    _input: Option<Device>,
}

impl Audio {
    /// Opens what `cfg` asks for; microphone packets go to `mic_tx`. A
    /// missing device is not an error: its supervisor keeps looking.
    pub fn start(
        cfg: AudioConfig,
        stats: Arc<Stats>,
        clock: watch::Receiver<Option<HostClock>>,
        mic_tx: tokio::sync::mpsc::Sender<MicPacket>,
        activity: Arc<Activity>,
    ) -> Self {
        let mut audio = Self {
            speaker: None,
            muted: Arc::new(AtomicBool::new(cfg.mic_muted)),
            _output: None,
            _input: None,
        };
        if cfg.speaker {
            match Speaker::new(stats.clone(), clock) {
                Ok(s) => {
                    let s = Arc::new(Mutex::new(s));
                    match nephele_platform::audio::play(s.clone(), cfg.output_device.clone()) {
                        Ok(d) => {
                            if let Ok(mut sp) = s.lock() {
                                sp.device = Some(d.status());
                            }
                            audio._output = Some(d);
                            audio.speaker = Some(s);
                        }
                        Err(e) => tracing::warn!(error = %e, "no sound output"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "no sound decoder"),
            }
        }
        if cfg.microphone {
            match OpusEncoder::new(Content::Voice, MIC_BITRATE) {
                Ok(encoder) => {
                    let mic = Microphone {
                        encoder,
                        frame: [0.0; FRAME_SAMPLES],
                        filled: 0,
                        pos: 0.0,
                        last: 0.0,
                        packet: MicPacket {
                            seq: u32::MAX,
                            capture_us: 0,
                            len: 0,
                            data: [0; MAX_AUDIO_PAYLOAD],
                            prev_len: 0,
                            prev: [0; MAX_AUDIO_PAYLOAD],
                        },
                        muted: audio.muted.clone(),
                        tx: mic_tx,
                        stats,
                        activity,
                    };
                    match nephele_platform::audio::record(
                        Arc::new(Mutex::new(mic)),
                        cfg.input_device.clone(),
                    ) {
                        Ok(d) => audio._input = Some(d),
                        Err(e) => tracing::warn!(error = %e, "no microphone"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "no microphone encoder"),
            }
        }
        audio
    }

    /// Where the host's packets go (none when sound is off).
    pub fn speaker(&self) -> Option<Arc<Mutex<Speaker>>> {
        self.speaker.clone()
    }

    /// Mutes or unmutes the microphone; returns the new state.
    pub fn set_muted(&self, muted: bool) -> bool {
        self.muted.store(muted, Ordering::Relaxed);
        muted
    }

    /// Whether the microphone is muted.
    pub fn muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }
}
