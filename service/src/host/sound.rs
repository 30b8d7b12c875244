//! A session's sound, one thread per session: the demo desktop's click for
//! every key pressed (and a steady tone when asked), or what a real
//! desktop's PulseAudio plays (recorded from a sink's monitor), encoded
//! with Opus in 10 ms packets that each carry a copy of the packet before;
//! and the client's microphone, received through a jitter buffer and
//! written to a WAV file.

use crate::link::LinkSocket;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nephele_platform::opus::{Content, OpusDecoder, OpusEncoder};
use nephele_protocol::audio::{
    DESKTOP_CHANNELS, FRAME_SAMPLES, FRAME_US, MAX_AUDIO_PAYLOAD, MIC_CHANNELS, Playout,
    SAMPLE_RATE,
};
use nephele_protocol::{Envelope, Message};

use super::control::MediaControl;
use crate::demo::DesktopState;

/// The desktop's Opus bitrate (stereo).
const DESKTOP_BITRATE: u32 = 96_000;

/// Loudness of the demo's tone and clicks (full scale is 1).
const TONE_LEVEL: f32 = 0.3;
const CLICK_LEVEL: f32 = 0.5;

/// A click: a 2 kHz blip fading over 6 ms.
const CLICK_HZ: f32 = 2_000.0;
const CLICK_SAMPLES: u32 = 288;

/// Microphone packets waiting for the session's sound thread, at most.
pub(crate) const MIC_QUEUE: usize = 16;

/// Where the microphone is recorded; shared by every session of a host.
pub type MicRecorder = Arc<Mutex<Option<hound::WavWriter<BufWriter<File>>>>>;

/// Reads a tone frequency from the command line: 20–20000 Hz.
pub fn parse_tone(s: &str) -> Result<f32, String> {
    let hz: f32 = s
        .trim_end_matches("Hz")
        .trim_end_matches("hz")
        .parse()
        .map_err(|_| format!("`{s}` is not a frequency in hertz, such as 440"))?;
    if (20.0..=20_000.0).contains(&hz) {
        Ok(hz)
    } else {
        Err(format!("{hz} Hz is outside what people hear (20–20000 Hz)"))
    }
}

/// Opens the microphone recording: 48 kHz mono, 16 bits.
pub(crate) fn mic_recorder(path: &Path) -> Result<MicRecorder, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    Ok(Arc::new(Mutex::new(Some(hound::WavWriter::create(
        path, spec,
    )?))))
}

/// One microphone packet, as received.
#[derive(Clone, Copy)]
pub struct MicPacket {
    pub seq: u32,
    pub capture_us: u64,
    pub arrived_us: u64,
    pub len: usize,
    pub data: [u8; MAX_AUDIO_PAYLOAD],
    pub prev_len: usize,
    pub prev: [u8; MAX_AUDIO_PAYLOAD],
}

impl MicPacket {
    /// Copies a packet's parts, which the decoder has already size-checked.
    pub fn new(
        seq: u32,
        capture_us: u64,
        arrived_us: u64,
        payload: &[u8],
        previous: &[u8],
    ) -> Self {
        let mut p = Self {
            seq,
            capture_us,
            arrived_us,
            len: payload.len().min(MAX_AUDIO_PAYLOAD),
            data: [0; MAX_AUDIO_PAYLOAD],
            prev_len: previous.len().min(MAX_AUDIO_PAYLOAD),
            prev: [0; MAX_AUDIO_PAYLOAD],
        };
        p.data[..p.len].copy_from_slice(&payload[..p.len]);
        p.prev[..p.prev_len].copy_from_slice(&previous[..p.prev_len]);
        p
    }
}

/// A session's sound thread.
pub(crate) struct AudioJob {
    pub session: u64,
    pub socket: Arc<LinkSocket>,
    pub control: Arc<MediaControl>,
    /// The demo desktop's state (its key presses click); `None` for a real
    /// desktop.
    pub desktop: Option<Arc<Mutex<DesktopState>>>,
    pub tone_hz: Option<f32>,
    /// Record the desktop's sound from this PulseAudio source instead of
    /// making the demo's.
    pub pulse_source: Option<String>,
    /// With `pulse_source`: offer the client's microphone to the desktop
    /// as a PulseAudio source of this name.
    pub mic_source: String,
    pub mic: Receiver<MicPacket>,
    pub recorder: Option<MicRecorder>,
    pub stop: Arc<AtomicBool>,
    pub epoch: Instant,
}

impl AudioJob {
    pub fn run(self) {
        if let Err(e) = self.run_inner() {
            tracing::error!(session = self.session, error = %e, "sound stopped");
        }
    }

    fn run_inner(&self) -> Result<(), nephele_platform::opus::OpusError> {
        let mut encoder = OpusEncoder::new(Content::Desktop, DESKTOP_BITRATE)?;
        let mut mic = Playout::new(OpusDecoder::new(Content::Voice)?, Content::Voice.channels());
        let mut pcm = [0.0f32; FRAME_SAMPLES * DESKTOP_CHANNELS];
        let mut heard = [0.0f32; FRAME_SAMPLES];
        let mut packet = [0u8; MAX_AUDIO_PAYLOAD];
        let mut previous = [0u8; MAX_AUDIO_PAYLOAD];
        let mut prev_len = 0;
        let mut out = Vec::with_capacity(nephele_protocol::MAX_DATAGRAM);
        let mut synth = Synth::new(self.tone_hz);
        let mut monitor = match &self.pulse_source {
            None => None,
            Some(source) => match monitor::open(source) {
                Ok(m) => {
                    tracing::info!(
                        session = self.session,
                        source,
                        "streaming the desktop's sound"
                    );
                    Some(m)
                }
                Err(e) => {
                    tracing::warn!(session = self.session, error = %e, "the desktop streams without sound");
                    None
                }
            },
        };
        // The client's microphone, as an input the desktop's programs
        // can record from (only where the desktop's sound server runs).
        if self.pulse_source.is_some() && monitor.is_none() && self.recorder.is_none() {
            // A real desktop without a sound server, and nobody recording
            // the microphone: nothing for this thread to do.
            return Ok(());
        }
        let microphone = match monitor {
            None => None,
            Some(_) => MicFeed::start(self.session, &self.mic_source),
        };
        let mut was_paused = false;
        let mut presses_seen = None;
        let mut mic_started = false;
        let mut seq: u32 = 0;
        let mut next = Instant::now();
        let mut last_flush = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if self.control.paused.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(100));
                next = Instant::now();
                was_paused = true;
                continue;
            }
            if std::mem::take(&mut was_paused)
                && let Some(m) = &monitor
            {
                // What played while paused is not worth hearing late.
                let _ = m.discard();
            }
            let now = Instant::now();
            if monitor.is_none() && now < next {
                // The monitor's reads keep time by themselves.
                std::thread::sleep(next - now);
            }
            next += Duration::from_micros(FRAME_US);
            if Instant::now() > next + Duration::from_millis(50) {
                // Far behind (a stalled machine): start the cadence afresh.
                next = Instant::now();
            }
            if let Some(m) = monitor.as_mut() {
                if let Err(e) = m.read(&mut pcm) {
                    tracing::warn!(session = self.session, error = %e, "the desktop's sound stopped");
                    monitor = None;
                    continue;
                }
            } else if self.pulse_source.is_none() {
                // A click per key pressed since the last frame.
                let presses = self
                    .desktop
                    .as_ref()
                    .and_then(|d| d.lock().ok().map(|d| d.key_presses))
                    .unwrap_or(0);
                let new = presses.saturating_sub(presses_seen.unwrap_or(presses));
                presses_seen = Some(presses);
                synth.click(new);
                synth.fill(&mut pcm);
            }
            // Stamped when the last sample was captured.
            let capture_us = self.epoch.elapsed().as_micros() as u64;
            // A real desktop without a sound server sends no sound.
            if self.pulse_source.is_none() || monitor.is_some() {
                let len = encoder.encode(&pcm, &mut packet)?;
                out.clear();
                Envelope {
                    session: self.session,
                    message: Message::Audio {
                        seq,
                        capture_us,
                        payload: &packet[..len],
                        previous: &previous[..prev_len],
                    },
                }
                .encode(&mut out);
                super::send_to(&self.socket, self.control.gateway(), &out);
                previous[..len].copy_from_slice(&packet[..len]);
                prev_len = len;
                seq = seq.wrapping_add(1);
            }

            self.hear_mic(&mut mic, &mut mic_started, &mut heard, &mut last_flush);
            if mic_started && let Some(m) = &microphone {
                m.feed(&heard);
            }
        }
        if let Some(rec) = &self.recorder
            && let Ok(mut w) = rec.lock()
            && let Some(w) = w.as_mut()
        {
            let _ = w.flush();
        }
        Ok(())
    }

    /// The microphone: what arrived, then the next 10 ms of it.
    fn hear_mic(
        &self,
        mic: &mut Playout<OpusDecoder>,
        started: &mut bool,
        heard: &mut [f32; FRAME_SAMPLES],
        last_flush: &mut Instant,
    ) {
        while let Ok(p) = self.mic.try_recv() {
            mic.push(
                p.seq,
                p.capture_us,
                &p.data[..p.len],
                &p.prev[..p.prev_len],
                p.arrived_us,
            );
            *started = true;
        }
        if *started {
            mic.render(heard, MIC_CHANNELS, SAMPLE_RATE);
            if let Some(rec) = &self.recorder
                && let Ok(mut w) = rec.lock()
                && let Some(w) = w.as_mut()
            {
                for &s in heard.iter() {
                    let v = (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
                    if w.write_sample(v).is_err() {
                        break;
                    }
                }
                // Keep the header current, so the file is whole even if
                // the host is killed.
                if last_flush.elapsed() >= Duration::from_millis(500) {
                    *last_flush = Instant::now();
                    let _ = w.flush();
                }
            }
        }
    }
}

/// The client's microphone played into a source on the desktop, on a
/// thread of its own (`nephele-host-mic`): the sound server's buffer may
/// make a write wait, and the desktop's sound must not wait behind it.
struct MicFeed {
    tx: std::sync::mpsc::SyncSender<[f32; FRAME_SAMPLES]>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MicFeed {
    /// Starts the thread that creates the source `name` and feeds it.
    fn start(session: u64, name: &str) -> Option<Self> {
        // Four packets (40 ms) waiting at most: a stalled server costs
        // dropped voice, never a growing delay.
        let (tx, rx) = std::sync::mpsc::sync_channel::<[f32; FRAME_SAMPLES]>(4);
        let name = name.to_string();
        let thread = std::thread::Builder::new()
            .name("nephele-host-mic".into())
            .spawn(move || {
                let mut mic = match monitor::microphone(&name) {
                    Ok(m) => {
                        tracing::info!(session, source = %name, "the client's microphone is a source on the desktop");
                        m
                    }
                    Err(e) => {
                        tracing::warn!(session, error = %e, "no microphone source on the desktop");
                        return;
                    }
                };
                while let Ok(pcm) = rx.recv() {
                    if let Err(e) = mic.play(&pcm) {
                        tracing::warn!(session, error = %e, "the microphone source stopped");
                        return;
                    }
                }
            })
            .ok()?;
        Some(Self {
            tx,
            thread: Some(thread),
        })
    }

    fn feed(&self, pcm: &[f32; FRAME_SAMPLES]) {
        let _ = self.tx.try_send(*pcm);
    }
}

impl Drop for MicFeed {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which removes the source.
        let (dead, _) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The demo's sound generator.
struct Synth {
    tone_step: Option<f64>,
    phase: f64,
    /// Samples left of the current click, and its phase.
    click_left: u32,
    click_phase: f64,
}

impl Synth {
    fn new(tone_hz: Option<f32>) -> Self {
        Self {
            tone_step: tone_hz.map(|hz| f64::from(hz) / f64::from(SAMPLE_RATE)),
            phase: 0.0,
            click_left: 0,
            click_phase: 0.0,
        }
    }

    /// Starts a click if any keys were pressed.
    fn click(&mut self, presses: u64) {
        if presses > 0 {
            self.click_left = CLICK_SAMPLES;
            self.click_phase = 0.0;
        }
    }

    /// The next 10 ms, stereo.
    fn fill(&mut self, pcm: &mut [f32; FRAME_SAMPLES * DESKTOP_CHANNELS]) {
        use std::f64::consts::TAU;
        for frame in pcm.chunks_mut(DESKTOP_CHANNELS) {
            let mut v = 0.0f32;
            if let Some(step) = self.tone_step {
                v += TONE_LEVEL * (TAU * self.phase).sin() as f32;
                self.phase = (self.phase + step).fract();
            }
            if self.click_left > 0 {
                let fade = self.click_left as f32 / CLICK_SAMPLES as f32;
                v += CLICK_LEVEL * fade * fade * (TAU * self.click_phase).sin() as f32;
                self.click_phase += f64::from(CLICK_HZ) / f64::from(SAMPLE_RATE);
                self.click_left -= 1;
            }
            frame.fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_is_continuous_and_a_key_press_adds_a_click() {
        let mut s = Synth::new(Some(440.0));
        let mut a = [0.0; FRAME_SAMPLES * DESKTOP_CHANNELS];
        let mut all = Vec::new();
        for _ in 0..100 {
            s.fill(&mut a);
            all.extend(a.iter().step_by(2));
        }
        // One second of 440 Hz: 880 zero crossings, and no jumps between frames.
        let crossings = all
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((878..=882).contains(&crossings), "{crossings}");
        let max_step = all
            .windows(2)
            .map(|w: &[f32]| (w[1] - w[0]).abs())
            .fold(0.0, f32::max);
        assert!(max_step < 0.02, "{max_step}");

        let mut quiet = Synth::new(None);
        quiet.fill(&mut a);
        assert!(a.iter().all(|&v| v == 0.0));
        quiet.click(1);
        quiet.fill(&mut a);
        let peak = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak > 0.3, "{peak}");
        quiet.fill(&mut a);
        assert!(a.iter().all(|&v| v == 0.0), "the click ends within a frame");
    }
}

/// The desktop's sound server (where the platform has none, opening fails
/// with the reason).
mod monitor {
    use nephele_platform::pulse::{MonitorRecorder, PulseError, VirtualMicrophone};
    use nephele_protocol::audio::{DESKTOP_CHANNELS, FRAME_SAMPLES, SAMPLE_RATE};

    /// The client's microphone as a source `name` on the desktop.
    pub fn microphone(name: &str) -> Result<VirtualMicrophone, PulseError> {
        VirtualMicrophone::create(name, SAMPLE_RATE)
    }

    /// What the desktop plays, recorded from `source`.
    pub fn open(source: &str) -> Result<MonitorRecorder, PulseError> {
        MonitorRecorder::open(
            "Nephele host",
            source,
            SAMPLE_RATE,
            DESKTOP_CHANNELS as u8,
            FRAME_SAMPLES,
        )
    }
}
