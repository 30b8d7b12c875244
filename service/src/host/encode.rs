//! A session's encoder thread: at the session's frame rate it draws the
//! demo desktop (or captures an X display when it changed), encodes the
//! picture with openh264 at the bitrate congestion control allows, cuts it
//! into datagrams with parity for the reported loss, and sends them to the
//! session's gateway.

use crate::link::LinkSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nephele_protocol::activity::Phase;
use nephele_protocol::codec::Codec;
use nephele_protocol::rate::{EncoderPlan, parity_loss};
use nephele_protocol::video::Fragmenter;
use nephele_protocol::wire::{Envelope, Message};

use super::HostStats;
use super::control::MediaControl;
use super::desktop::Pictures;
use super::encoder::{EncoderError, VideoEncoder};
use crate::demo::{DesktopState, I420, Renderer};
use crate::screen::{Grab, Grabber, ScreenError};

/// Why an encoder thread stopped.
#[derive(Debug, thiserror::Error)]
enum EncodeError {
    #[error(transparent)]
    Codec(#[from] EncoderError),
    #[error(transparent)]
    Screen(#[from] ScreenError),
}

/// Where an encoder's pictures come from, open.
enum Source {
    /// The demo desktop, drawn every frame.
    Drawn(Renderer, Arc<std::sync::Mutex<DesktopState>>),
    /// An X display, captured when it changed (its connection is large).
    Captured(Box<Grabber>),
}

/// What an encoder thread runs with.
pub(super) struct EncodeJob {
    pub session: u64,
    pub width: u16,
    pub height: u16,
    pub fps: u8,
    /// The codec agreed with the client.
    pub codec: Codec,
    /// The most the encoder is given, bits per second.
    pub bitrate: u32,
    pub motion: bool,
    pub socket: Arc<LinkSocket>,
    pub control: Arc<MediaControl>,
    pub pictures: Pictures,
    pub stop: Arc<AtomicBool>,
    pub epoch: Instant,
    pub stats: Arc<HostStats>,
}

/// Follows congestion control's target with the encoder, as the protocol's
/// [`EncoderPlan`] says.
struct Adapter {
    plan: EncoderPlan,
    applied_bps: u32,
}

impl Adapter {
    fn new(max_bps: u32, size: (u16, u16), fps: u8, payload: usize) -> Self {
        Self {
            plan: EncoderPlan::new(max_bps, size, fps, payload),
            applied_bps: max_bps,
        }
    }

    fn apply(&mut self, encoder: &mut VideoEncoder, target: u32, loss: f64, stats: &HostStats) {
        let (video, fps) = self.plan.plan(target, loss);
        if fps != self.plan.fps && encoder.set_fps(fps) {
            tracing::debug!(fps, target, video, "frame rate changed");
            self.plan.fps = fps;
            stats.encoder_fps.store(u64::from(fps), Ordering::Relaxed);
        }
        // Small changes are not worth disturbing the encoder's rate control.
        let diff = video.abs_diff(self.applied_bps);
        if (diff > self.applied_bps / 20 || (video == self.plan.max_bps && diff > 0))
            && encoder.set_bitrate(video)
        {
            self.applied_bps = video;
            stats
                .encoder_bitrate_bps
                .store(u64::from(video), Ordering::Relaxed);
        }
    }
}

impl EncodeJob {
    /// Sends one message to the session's gateway.
    fn send(&self, message: Message<'_>, out: &mut Vec<u8>) {
        out.clear();
        Envelope {
            session: self.session,
            message,
        }
        .encode(out);
        super::send_to(&self.socket, self.control.gateway(), out);
    }

    /// Sends the pointer's news: its shape in parts of whole rows, then
    /// its position.
    fn send_cursor(&self, update: crate::screen::CursorUpdate, out: &mut Vec<u8>) {
        if let Some(s) = &update.shape {
            // Each part in one datagram, after the session's id.
            for msg in s.parts(nephele_protocol::MAX_DATAGRAM - 8) {
                self.send(msg, out);
            }
        }
        if let Some((x, y, visible)) = update.position {
            self.send(Message::CursorPosition { x, y, visible }, out);
        }
    }

    pub fn run(self) {
        if let Err(e) = self.run_inner() {
            tracing::error!(session = self.session, error = %e, "encoder stopped");
        }
    }

    fn run_inner(&self) -> Result<(), EncodeError> {
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        let c = &self.control;
        // The demo is drawn (its wallpaper cached), an X display captured.
        let mut source = match &self.pictures {
            Pictures::Drawn(state) => {
                let mut renderer = Renderer::new(w, h);
                renderer.motion = self.motion;
                Source::Drawn(renderer, state.clone())
            }
            Pictures::Captured { display, .. } => {
                Source::Captured(Box::new(Grabber::open(display)?))
            }
        };
        let size = (self.width, self.height);
        let mut encoder = VideoEncoder::open(self.codec, size, self.fps, self.bitrate)?;
        let mut picture = I420::new(w, h);
        let mut fragmenter = Fragmenter::new(nephele_protocol::MAX_DATAGRAM - 64);
        fragmenter.continue_at(c.next_frame_id.load(Ordering::Relaxed));
        let mut au = Vec::with_capacity(256 * 1024);
        let mut dgram = Vec::with_capacity(nephele_protocol::MAX_DATAGRAM);
        let payload = fragmenter.payload_size();
        let mut adapt = Adapter::new(self.bitrate, (self.width, self.height), self.fps, payload);
        self.stats
            .encoder_bitrate_bps
            .store(u64::from(self.bitrate), Ordering::Relaxed);
        self.stats
            .encoder_fps
            .store(u64::from(self.fps), Ordering::Relaxed);
        let mut next = Instant::now();
        // The desktop's frame counter continues across encoder restarts.
        let mut frame_no = u64::from(c.next_frame_id.load(Ordering::Relaxed));
        let mut encoded = false;
        let mut state = DesktopState::default();
        // Capture and encode times since the client was last told them.
        let mut timing = Timing::new(Instant::now());
        let mut failed_grabs = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            if c.paused.load(Ordering::Relaxed) {
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
            let loss = parity_loss(c.loss());
            if encoded {
                // The encoder exists only after its first frame.
                let target = c.target_bps.load(Ordering::Relaxed);
                adapt.apply(&mut encoder, target, loss, &self.stats);
            }
            let interval = adapt.plan.interval();
            next += interval;
            if Instant::now() > next + interval {
                // Fell behind (slow machine): skip ahead instead of bursting.
                next = Instant::now() + interval;
            }
            let capture = Instant::now();
            let capture_us = capture.duration_since(self.epoch).as_micros() as u64;
            match &mut source {
                Source::Drawn(renderer, shared) => {
                    if let Some((w, h)) = c.asked_size()
                        && (usize::from(w), usize::from(h)) != (picture.width, picture.height)
                    {
                        // The client's window changed size: drawn anew at
                        // its size, from a keyframe.
                        tracing::info!(session = self.session, size = ?(w, h), "drawing the new size");
                        let motion = renderer.motion;
                        *renderer = Renderer::new(usize::from(w), usize::from(h));
                        renderer.motion = motion;
                        picture = I420::new(usize::from(w), usize::from(h));
                        adapt = Adapter::new(self.bitrate, (w, h), self.fps, payload);
                        c.keyframe.store(true, Ordering::Relaxed);
                    }
                    if let Ok(d) = shared.lock() {
                        state.clone_from(&d);
                    }
                    let t = capture.duration_since(self.epoch);
                    renderer.render(&state, t, frame_no, &mut picture);
                }
                Source::Captured(g) => {
                    // A still screen costs a poll: nothing is captured or
                    // encoded unless it changed or a keyframe is due.
                    let force = !encoded || c.keyframe.load(Ordering::Relaxed);
                    let grab = match g.grab(force, &mut picture) {
                        Ok(grab) => {
                            failed_grabs = 0;
                            grab
                        }
                        // A capture racing a resize asks for the old size
                        // (BadMatch): the next tick sees the new one. Only
                        // a display failing for a while ends the stream.
                        Err(e) if failed_grabs < MAX_FAILED_GRABS => {
                            failed_grabs += 1;
                            tracing::debug!(session = self.session, error = %e, "capture failed; trying again");
                            c.keyframe.store(true, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    // The pointer goes on its own, before the picture:
                    // the client draws it without waiting for video.
                    let pointer = g.cursor(force)?;
                    self.send_cursor(pointer, &mut dgram);
                    // Where its monitors lie: the client may show one alone.
                    match g.monitors(force) {
                        Ok(Some(list)) => self.send(Message::Monitors(list), &mut dgram),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(session = self.session, error = %e, "reading the monitors");
                        }
                    }
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
                            adapt = Adapter::new(self.bitrate, size, self.fps, payload);
                            c.keyframe.store(true, Ordering::Relaxed);
                        }
                        Grab::Captured => {}
                    }
                }
            }
            let keyframe = c.keyframe.swap(false, Ordering::Relaxed);
            let grabbed = Instant::now();
            let key = encoder.encode(&picture, keyframe, &mut au)?;
            let encoded_at = Instant::now();
            if au.is_empty() {
                continue;
            }
            frame_no += 1;
            encoded = true;
            if c.announce.swap(false, Ordering::Relaxed) {
                let status = Message::Status {
                    phase: Phase::Streaming,
                    ms: 0,
                };
                self.send(status, &mut dgram);
            }
            let to = c.gateway();
            let session = self.session.to_be_bytes();
            let mut sent = 0;
            fragmenter.fragment(&au, key, capture_us, loss, |msg| {
                // Counted as the client counts what arrives: the message.
                sent += msg.len() as u64;
                dgram.clear();
                dgram.extend_from_slice(&session);
                dgram.extend_from_slice(msg);
                super::send_to(&self.socket, to, &dgram);
            });
            c.sent_bytes.fetch_add(sent, Ordering::Relaxed);
            let sent_at = Instant::now();
            if let Some(told) = timing.add(capture, grabbed, sent_at) {
                self.send(told, &mut dgram);
            }
            let took = capture.elapsed().as_micros() as u64;
            let st = &self.stats;
            st.frames_timed.fetch_add(1, Ordering::Relaxed);
            st.capture_to_send_us.fetch_add(took, Ordering::Relaxed);
            st.capture_to_send_max_us.fetch_max(took, Ordering::Relaxed);
            let us = |a: Instant, b: Instant| b.duration_since(a).as_micros() as u64;
            st.grab_us
                .fetch_add(us(capture, grabbed), Ordering::Relaxed);
            st.encode_us
                .fetch_add(us(grabbed, encoded_at), Ordering::Relaxed);
            c.next_frame_id
                .store(fragmenter.next_frame_id(), Ordering::Relaxed);
            st.frames_sent.fetch_add(1, Ordering::Relaxed);
            if key {
                st.keyframes_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Captures in a row that may fail (a resize racing them) before the
/// stream ends: a second and a half at 60 frames a second.
const MAX_FAILED_GRABS: u32 = 90;

/// How long frames take on the host (capture and conversion; encoding and
/// sending), summed and told to the client as means once a second, for
/// its latency receipt.
struct Timing {
    since: Instant,
    capture_us: u64,
    encode_us: u64,
    frames: u64,
}

impl Timing {
    /// How often the client is told.
    const EVERY: Duration = Duration::from_secs(1);

    fn new(now: Instant) -> Self {
        Self {
            since: now,
            capture_us: 0,
            encode_us: 0,
            frames: 0,
        }
    }

    /// Adds a frame captured at `capture`, grabbed at `grabbed` and sent at
    /// `sent`; the message for the client when one is due.
    fn add(
        &mut self,
        capture: Instant,
        grabbed: Instant,
        sent: Instant,
    ) -> Option<Message<'static>> {
        let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros() as u64;
        self.capture_us += us(capture, grabbed);
        self.encode_us += us(grabbed, sent);
        self.frames += 1;
        if sent.duration_since(self.since) < Self::EVERY {
            return None;
        }
        let n = self.frames;
        let mean = |sum: u64| u32::try_from(sum / n).unwrap_or(u32::MAX);
        let told = Message::HostTiming {
            capture_us: mean(self.capture_us),
            encode_us: mean(self.encode_us),
            frames: u16::try_from(n).unwrap_or(u16::MAX),
        };
        *self = Self::new(sent);
        Some(told)
    }
}

#[cfg(test)]
mod timing_tests {
    use super::*;

    #[test]
    fn the_client_is_told_the_means_once_a_second() {
        let t0 = Instant::now();
        let mut t = Timing::new(t0);
        let ms = |n: u64| Duration::from_millis(n);
        let mut told = Vec::new();
        for i in 0..70u64 {
            let capture = t0 + ms(i * 16);
            // 2 ms capturing, 5 ms encoding and sending.
            told.extend(t.add(capture, capture + ms(2), capture + ms(7)));
        }
        assert_eq!(told.len(), 1, "{told:?}");
        let Message::HostTiming {
            capture_us,
            encode_us,
            frames,
        } = told[0]
        else {
            panic!("{:?}", told[0])
        };
        assert_eq!((capture_us, encode_us), (2_000, 5_000));
        assert!((60..=64).contains(&frames), "{frames}");
    }
}
