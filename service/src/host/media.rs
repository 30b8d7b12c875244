//! A session's media: its encoder thread ([`super::encode`]) and its sound
//! thread ([`super::sound`]), started and stopped as the session core says,
//! and steered through their [`MediaControl`].

use crate::link::LinkSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::Instant;

use super::HostStats;
use super::control::MediaControl;
use super::desktop::Pictures;
use super::encode::EncodeJob;
use super::sound::{AudioJob, MIC_QUEUE, MicPacket, MicRecorder};

/// The host's settings for its sessions' media.
pub(super) struct MediaOptions {
    pub bitrate: u32,
    pub motion: bool,
    pub tone_hz: Option<f32>,
    pub mic_recorder: Option<MicRecorder>,
    pub sound_source: String,
    /// The host's clock's zero (capture stamps count from it).
    pub epoch: Instant,
}

/// What one session's media runs with.
pub(super) struct MediaSpec<'a> {
    pub session: u64,
    /// The session's number on this host, for thread names.
    pub index: u64,
    pub size: (u16, u16),
    pub fps: u8,
    pub codec: nephele_protocol::codec::Codec,
    pub pictures: Pictures,
    pub control: &'a Arc<MediaControl>,
}

/// A session's encoder and sound threads; dropped (joined) on suspend and
/// at the session's end.
pub(super) struct Media {
    stop: Arc<AtomicBool>,
    encoder: Option<JoinHandle<()>>,
    sound: Option<JoinHandle<()>>,
    /// The microphone's packets, to the sound thread.
    mic: Option<SyncSender<MicPacket>>,
}

impl Media {
    /// Starts a session's encoder and sound threads.
    pub fn start(
        spec: &MediaSpec<'_>,
        opts: &MediaOptions,
        socket: &Arc<LinkSocket>,
        stats: &Arc<HostStats>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let bitrate = match opts.bitrate {
            0 => nephele_protocol::rate::default_bitrate(spec.size.0, spec.size.1, spec.fps),
            b => b,
        };
        let job = EncodeJob {
            session: spec.session,
            width: spec.size.0,
            height: spec.size.1,
            fps: spec.fps,
            codec: spec.codec,
            bitrate,
            motion: opts.motion,
            socket: socket.clone(),
            control: spec.control.clone(),
            pictures: spec.pictures.clone(),
            stop: stop.clone(),
            epoch: opts.epoch,
            stats: stats.clone(),
        };
        let encoder = std::thread::Builder::new()
            .name(format!("nephele-host-enc-{}", spec.index))
            .spawn(move || {
                // Started from the input thread; encoding is bulk work.
                nephele_platform::sched::ordinary();
                job.run()
            })?;
        let (desktop, pulse_source) = match &spec.pictures {
            Pictures::Drawn(state) => (Some(state.clone()), None),
            Pictures::Captured { sound: true, .. } => (None, Some(opts.sound_source.clone())),
            // A display with no sound of its own: no sound thread at all
            // (not one encoding silence, or the demo's tone).
            Pictures::Captured { sound: false, .. } => {
                return Ok(Self {
                    stop,
                    encoder: Some(encoder),
                    sound: None,
                    mic: None,
                });
            }
        };
        let (mic_tx, mic_rx) = std::sync::mpsc::sync_channel(MIC_QUEUE);
        let sound_job = AudioJob {
            session: spec.session,
            socket: socket.clone(),
            control: spec.control.clone(),
            desktop,
            tone_hz: opts.tone_hz,
            pulse_source,
            mic_source: format!("nephele-mic-{}", spec.index),
            mic: mic_rx,
            recorder: opts.mic_recorder.clone(),
            stop: stop.clone(),
            epoch: opts.epoch,
        };
        let sound = match std::thread::Builder::new()
            .name(format!("nephele-host-audio-{}", spec.index))
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
        Ok(Self {
            stop,
            encoder: Some(encoder),
            sound,
            mic,
        })
    }

    /// Wakes the threads (a resume, or stopping).
    pub fn wake(&self) {
        for h in [&self.encoder, &self.sound].into_iter().flatten() {
            h.thread().unpark();
        }
    }

    /// Passes a microphone packet to the sound thread; dropped when it is
    /// behind (the packet would be too late anyway).
    pub fn mic(&self, p: MicPacket) {
        if let Some(m) = &self.mic {
            let _ = m.try_send(p);
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
