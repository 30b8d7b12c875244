//! Sound between host and client: the packet cadence both ends share, and
//! the receiver's playout — a jitter buffer that holds latency low, repairs
//! single losses from the redundant copy each packet carries, conceals the
//! rest, and follows the sender's clock by resampling a fraction of a percent
//! rather than by jumps.
//!
//! The codec stays outside: [`Playout`] hands packets (or "lost") to a
//! [`FrameDecoder`] and works on the PCM it gets back, so the same logic runs
//! with Opus in the client and with a plain decoder on a virtual clock in the
//! tests.

/// Samples per second of every audio stream.
pub const SAMPLE_RATE: u32 = 48_000;

/// Samples per channel in one packet: 10 ms.
pub const FRAME_SAMPLES: usize = 480;

/// One packet's duration in microseconds.
pub const FRAME_US: u64 = 10_000;

/// Largest encoded frame a packet carries (twice: the frame and a copy of the
/// one before), so a packet fits one datagram: 400 kbit/s, far above what
/// the encoders are set to.
pub const MAX_AUDIO_PAYLOAD: usize = 500;

/// Channels of the desktop's sound.
pub const DESKTOP_CHANNELS: usize = 2;

/// Channels of the microphone.
pub const MIC_CHANNELS: usize = 1;

/// Fewest packets the buffer holds before playing: 30 ms, so the packet after
/// a lost one (carrying the lost one's copy) has arrived, with 10 ms to
/// spare, when the lost one is due. (With 20 ms, a packet a millisecond
/// late already costs the repair.)
pub const MIN_TARGET_FRAMES: u32 = 3;

/// Most packets the buffer aims to hold, however jittery the path: 40 ms.
pub const MAX_TARGET_FRAMES: u32 = 4;

/// Packets the buffer can hold; arrivals further ahead are dropped.
const SLOTS: usize = 32;

/// After this many packets in a row with nothing arrived, playout stops
/// concealing, plays silence and buffers afresh when packets return.
const MAX_CONCEALED_RUN: u32 = 5;

/// Largest playback-rate correction for clock drift and excess buffering:
/// 0.5 %, a pitch change nobody hears (a semitone is 6 %).
const MAX_RATE_CORRECTION: f64 = 0.005;

/// Rate correction per packet of buffering above or below the target.
const RATE_PER_FRAME: f64 = 0.002;

/// Decodes one packet into PCM, or conceals a lost one.
pub trait FrameDecoder {
    /// Decodes `packet` (or conceals a missing packet when `None`) into
    /// `out`, which holds [`FRAME_SAMPLES`] interleaved samples per channel.
    /// Returns the samples per channel written; an error counts as a loss.
    fn decode(&mut self, packet: Option<&[u8]>, out: &mut [f32]) -> Option<usize>;
}

#[derive(Clone)]
struct Slot {
    seq: u32,
    full: bool,
    capture_us: u64,
    len: usize,
    data: [u8; MAX_AUDIO_PAYLOAD],
}

/// Counters of one stream's playout.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PlayoutStats {
    /// Packets that arrived in time to be played.
    pub received: u64,
    /// Packets restored from the copy the next packet carried.
    pub repaired: u64,
    /// Packets concealed (lost, neither they nor their copy arrived in time).
    pub concealed: u64,
    /// Packets that arrived after their turn, or duplicates.
    pub late: u64,
    /// Times the buffer ran dry and playout started over.
    pub underruns: u64,
    /// Packets skipped to bring the delay back after a burst.
    pub skipped: u64,
    /// The buffer's current target, in packets.
    pub target_frames: u32,
    /// Interarrival jitter estimate (RFC 3550), microseconds.
    pub jitter_us: u64,
    /// The playback-rate correction now applied, parts per million
    /// (positive: playing faster than the device to drain).
    pub rate_ppm: i32,
}

/// The receiving end of an audio stream: packets in (from the network, any
/// order), samples out (to the device, at its rate).
pub struct Playout<D> {
    decoder: D,
    channels: usize,
    slots: Vec<Slot>,
    /// The next sequence number to play, once playing.
    next: Option<u32>,
    /// Newest sequence number seen.
    newest: Option<u32>,
    /// Consecutive packets concealed with nothing arrived.
    dry_run: u32,
    /// Decoded samples (interleaved) not yet consumed, with their read position.
    pcm: Vec<f32>,
    pcm_len: usize,
    pcm_pos: f64,
    /// The last sample of the previous frame per channel, for interpolating
    /// across frame boundaries.
    last: [f32; 2],
    /// Smoothed buffering in packets (arrived but unplayed).
    level: f64,
    jitter_us: f64,
    last_transit: Option<i64>,
    /// The capture time of the sample played last (host clock, µs).
    playing_capture_us: u64,
    stats: PlayoutStats,
}

impl<D: FrameDecoder> Playout<D> {
    /// A playout of `channels` channels (1 or 2) decoding with `decoder`.
    pub fn new(decoder: D, channels: usize) -> Self {
        let channels = channels.clamp(1, 2);
        Self {
            decoder,
            channels,
            slots: vec![
                Slot {
                    seq: 0,
                    full: false,
                    capture_us: 0,
                    len: 0,
                    data: [0; MAX_AUDIO_PAYLOAD],
                };
                SLOTS
            ],
            next: None,
            newest: None,
            dry_run: 0,
            pcm: vec![0.0; FRAME_SAMPLES * channels],
            pcm_len: 0,
            pcm_pos: 0.0,
            last: [0.0; 2],
            level: 0.0,
            jitter_us: 0.0,
            last_transit: None,
            playing_capture_us: 0,
            stats: PlayoutStats {
                target_frames: MIN_TARGET_FRAMES,
                ..Default::default()
            },
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PlayoutStats {
        PlayoutStats {
            jitter_us: self.jitter_us as u64,
            rate_ppm: (self.rate_correction() * 1e6) as i32,
            ..self.stats
        }
    }

    /// When the next sample to be rendered was captured, on the sender's
    /// clock (µs), once playing; with the clock map, the stream's latency.
    pub fn playing_capture_us(&self) -> Option<u64> {
        let into_frame = self.pcm_pos.max(0.0) * 1e6 / f64::from(SAMPLE_RATE);
        self.next
            .map(|_| self.playing_capture_us + into_frame as u64)
    }

    /// Packets buffered and not yet played.
    pub fn buffered(&self) -> u32 {
        match (self.next, self.newest) {
            (Some(next), Some(newest)) => {
                // Negative while concealing past the newest arrival.
                (newest.wrapping_sub(next).wrapping_add(1) as i32).clamp(0, SLOTS as i32) as u32
            }
            (None, Some(_)) => self.slots.iter().filter(|s| s.full).count() as u32,
            _ => 0,
        }
    }

    /// A packet arrived at `now_us` (the receiver's clock): `payload` is
    /// frame `seq`, `previous` (possibly empty) a copy of frame `seq - 1`.
    pub fn push(
        &mut self,
        seq: u32,
        capture_us: u64,
        payload: &[u8],
        previous: &[u8],
        now_us: u64,
    ) {
        // Interarrival jitter, RFC 3550 §6.4.1, on the one-way transit.
        let transit = now_us as i64 - capture_us as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_transit = Some(transit);
        self.stats.target_frames = self.target_frames();
        if self.store(seq, capture_us, payload) {
            self.stats.received += 1;
            if self.newest.is_none_or(|n| seq.wrapping_sub(n) as i32 > 0) {
                self.newest = Some(seq);
            }
        } else {
            self.stats.late += 1;
        }
        if !previous.is_empty() {
            let prev = seq.wrapping_sub(1);
            if self.store(prev, capture_us.saturating_sub(FRAME_US), previous) {
                self.stats.repaired += 1;
            }
        }
    }

    /// Stores a frame if it is still to be played and not already held.
    fn store(&mut self, seq: u32, capture_us: u64, payload: &[u8]) -> bool {
        if payload.len() > MAX_AUDIO_PAYLOAD {
            return false;
        }
        if let Some(next) = self.next {
            let ahead = seq.wrapping_sub(next);
            if ahead as i32 <= -1 {
                return false;
            }
            if ahead >= SLOTS as u32 {
                // Playback stood still (the device went away) while the
                // stream went on: pick it up at the newest, at the target
                // delay, rather than play what is stale.
                let start = seq.wrapping_sub(self.target_frames() - 1);
                self.stats.skipped += u64::from(start.wrapping_sub(next));
                for s in &mut self.slots {
                    s.full = false;
                }
                self.next = Some(start);
                self.newest = Some(seq);
                self.level = f64::from(self.target_frames());
            }
        }
        let slot = &mut self.slots[seq as usize % SLOTS];
        if slot.full && slot.seq == seq {
            return false;
        }
        if slot.full && self.next.is_none() && slot.seq.wrapping_sub(seq) as i32 > 0 {
            // Buffering: keep the newer packet in a contested slot.
            return false;
        }
        slot.seq = seq;
        slot.full = true;
        slot.capture_us = capture_us;
        slot.len = payload.len();
        slot.data[..payload.len()].copy_from_slice(payload);
        true
    }

    /// How many packets to hold: three, plus three times the jitter beyond
    /// the first 2 ms, up to four.
    fn target_frames(&self) -> u32 {
        // The first 2 ms are free: timer noise on a busy machine, not the path.
        let extra = ((3.0 * self.jitter_us - 2_000.0) / FRAME_US as f64)
            .ceil()
            .max(0.0) as u32;
        (MIN_TARGET_FRAMES + extra).min(MAX_TARGET_FRAMES)
    }

    /// The fraction by which playback runs faster than the device (negative:
    /// slower), from how far the smoothed buffering sits from the target.
    fn rate_correction(&self) -> f64 {
        if self.next.is_none() {
            return 0.0;
        }
        // Packets are counted as each one starts playing, so a steady stream
        // shows between target − 1 and target, by the arrivals' phase
        // against the device's pulls: that band is left alone.
        let excess = self.level - (f64::from(self.target_frames()) - 0.5);
        let excess = excess.signum() * (excess.abs() - 0.5).max(0.0);
        (excess * RATE_PER_FRAME).clamp(-MAX_RATE_CORRECTION, MAX_RATE_CORRECTION)
    }

    /// Fills `out` (interleaved, `out_channels` channels at `out_rate` Hz)
    /// with what plays next. Never blocks; silence while buffering.
    pub fn render(&mut self, out: &mut [f32], out_channels: usize, out_rate: u32) {
        let out_channels = out_channels.max(1);
        let step = f64::from(SAMPLE_RATE) / f64::from(out_rate.max(1));
        for frame in out.chunks_mut(out_channels) {
            // Linear interpolation between the previous and current sample.
            // Hand-written: the correction changes every packet by a few
            // hundred ppm, and a windowed-sinc resampler would add its
            // filter's delay to a path that budgets 40 ms in all.
            let (a, b, t) = match self.sample_pair() {
                Some(p) => p,
                None => {
                    frame.fill(0.0);
                    continue;
                }
            };
            for (c, o) in frame.iter_mut().enumerate() {
                let ch = if self.channels == 1 { 0 } else { c.min(1) };
                *o = a[ch] + (b[ch] - a[ch]) * t;
            }
            self.pcm_pos += step * (1.0 + self.rate_correction());
        }
    }

    /// The two samples around the read position, and the fraction between.
    fn sample_pair(&mut self) -> Option<([f32; 2], [f32; 2], f32)> {
        while self.pcm_pos >= self.pcm_len as f64 {
            if self.pcm_len > 0 {
                let i = (self.pcm_len - 1) * self.channels;
                self.last = [self.pcm[i], self.pcm[i + self.channels - 1]];
                self.pcm_pos -= self.pcm_len as f64;
            }
            self.pcm_len = 0;
            if !self.next_frame() {
                self.pcm_pos = 0.0;
                return None;
            }
        }
        let i = self.pcm_pos.floor() as usize;
        let t = (self.pcm_pos - i as f64) as f32;
        let at = |k: usize| {
            [
                self.pcm[k * self.channels],
                self.pcm[k * self.channels + self.channels - 1],
            ]
        };
        let a = if i == 0 { self.last } else { at(i - 1) };
        Some((a, at(i), t))
    }

    /// The stream went on after a run with nothing arriving: that run was
    /// concealed loss after all.
    fn settle_dry_run(&mut self) {
        self.stats.concealed += u64::from(self.dry_run);
        self.dry_run = 0;
    }

    /// Decodes the next frame into `pcm`; false while buffering.
    fn next_frame(&mut self) -> bool {
        let target = self.target_frames();
        let Some(next) = self.next else {
            // Start once the target is buffered, from the oldest held.
            if self.buffered() < target {
                return false;
            }
            let Some(newest) = self.newest else {
                return false;
            };
            let start = newest.wrapping_sub(target - 1);
            for s in &mut self.slots {
                // Left from before a restart.
                if s.seq.wrapping_sub(start) as i32 <= -1 {
                    s.full = false;
                }
            }
            self.next = Some(start);
            self.level = f64::from(target);
            self.dry_run = 0;
            return self.next_frame();
        };
        // Far too much buffered (a burst after a stall): skip to the target
        // rather than play seconds late.
        let buffered = self.buffered();
        let mut next = next;
        if buffered > target + MAX_TARGET_FRAMES {
            let skip = buffered - target;
            for s in 0..skip {
                self.slots[next.wrapping_add(s) as usize % SLOTS].full = false;
            }
            self.stats.skipped += u64::from(skip);
            next = next.wrapping_add(skip);
            self.level = f64::from(target);
        }
        self.level += (f64::from(self.buffered()) - self.level) * 0.02;
        let i = next as usize % SLOTS;
        let have = self.slots[i].full && self.slots[i].seq == next;
        self.slots[i].full = false;
        self.next = Some(next.wrapping_add(1));
        let n = if have {
            self.settle_dry_run();
            let slot = &self.slots[i];
            self.playing_capture_us = slot.capture_us;
            self.decoder
                .decode(Some(&slot.data[..slot.len]), &mut self.pcm)
        } else {
            let nothing_newer = self.newest.is_none_or(|n| n.wrapping_sub(next) as i32 <= 0);
            if nothing_newer {
                // Counted as concealed only once the stream goes on.
                self.dry_run += 1;
                if self.dry_run > MAX_CONCEALED_RUN {
                    // The stream stopped: silence, and buffer afresh. The
                    // run just concealed was the stream's end, not a loss.
                    self.stats.underruns += 1;
                    self.dry_run = 0;
                    self.next = None;
                    self.newest = None;
                    for s in &mut self.slots {
                        s.full = false;
                    }
                    return false;
                }
            } else {
                self.settle_dry_run();
                self.stats.concealed += 1;
            }
            self.playing_capture_us += FRAME_US;
            self.decoder.decode(None, &mut self.pcm)
        };
        match n {
            Some(n) if n > 0 => {
                self.pcm_len = n.min(self.pcm.len() / self.channels);
                true
            }
            _ => {
                self.pcm[..FRAME_SAMPLES * self.channels].fill(0.0);
                self.pcm_len = FRAME_SAMPLES;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Carries PCM in the clear: each packet is one i16 sample value per
    /// frame, so tests can tell which frame played. Concealment plays zeros.
    struct Plain;

    impl FrameDecoder for Plain {
        fn decode(&mut self, packet: Option<&[u8]>, out: &mut [f32]) -> Option<usize> {
            let v = match packet {
                Some(p) => f32::from(i16::from_be_bytes([p[0], p[1]])),
                None => 0.0,
            };
            out[..FRAME_SAMPLES].fill(v);
            Some(FRAME_SAMPLES)
        }
    }

    fn packet(seq: u32) -> [u8; 2] {
        ((seq % 30000) as i16 + 1).to_be_bytes()
    }

    /// Sends `frames` packets at the sender's rate (`sender_ppm` fast),
    /// drops those `lose` picks, and plays at 48 kHz in 5 ms device
    /// callbacks; returns the playout and the per-frame values heard.
    fn run(
        frames: u32,
        sender_ppm: f64,
        jitter_us: impl Fn(u32) -> u64,
        lose: impl Fn(u32) -> bool,
        redundant: bool,
    ) -> (Playout<Plain>, Vec<f32>) {
        let mut p = Playout::new(Plain, 1);
        let period = FRAME_US as f64 / (1.0 + sender_ppm / 1e6);
        let mut arrivals: Vec<(u64, u32)> = (0..frames)
            .map(|s| ((f64::from(s) * period) as u64 + 5_000 + jitter_us(s), s))
            .filter(|&(_, s)| !lose(s))
            .collect();
        arrivals.sort();
        let mut heard = Vec::new();
        let mut out = vec![0.0f32; 240];
        let end = (f64::from(frames) * period) as u64;
        let (mut t, mut a) = (0u64, 0usize);
        while t < end {
            while a < arrivals.len() && arrivals[a].0 <= t {
                let s = arrivals[a].1;
                let prev = if redundant && s > 0 {
                    packet(s - 1).to_vec()
                } else {
                    vec![]
                };
                p.push(s, (f64::from(s) * period) as u64, &packet(s), &prev, t);
                a += 1;
            }
            p.render(&mut out, 1, SAMPLE_RATE);
            heard.extend_from_slice(&out);
            t += 5_000;
        }
        (p, heard)
    }

    #[test]
    fn a_clean_stream_plays_every_frame_in_order_at_the_minimum_delay() {
        let (p, heard) = run(500, 0.0, |_| 0, |_| false, true);
        let s = p.stats();
        assert_eq!(s.concealed, 0);
        assert_eq!(s.underruns, 0);
        assert_eq!(s.target_frames, MIN_TARGET_FRAMES);
        // Values rise frame by frame: nothing skipped or repeated.
        let firsts: Vec<f32> = heard.iter().copied().filter(|&v| v > 0.0).collect();
        assert!(
            firsts
                .windows(2)
                .all(|w| w[1] - w[0] <= 1.0 && w[1] >= w[0] - 1e-3)
        );
        assert!(p.buffered() <= MIN_TARGET_FRAMES + 1, "{}", p.buffered());
    }

    #[test]
    fn single_losses_are_repaired_from_the_next_packets_copy() {
        let (p, _) = run(1000, 0.0, |_| 0, |s| s % 20 == 7, true);
        let s = p.stats();
        assert!(s.repaired >= 45, "{s:?}");
        assert_eq!(s.concealed, 0, "{s:?}");
        let (p, _) = run(1000, 0.0, |_| 0, |s| s % 20 == 7, false);
        assert!(p.stats().concealed >= 45, "{:?}", p.stats());
    }

    #[test]
    fn bursts_are_concealed_and_playout_never_stalls() {
        // Three in a row lost every 100 packets: the copy saves one.
        let (p, heard) = run(1000, 0.0, |_| 0, |s| s % 100 < 3 && s > 10, true);
        let s = p.stats();
        assert!(s.concealed >= 18 && s.concealed <= 20, "{s:?}");
        assert_eq!(s.underruns, 0);
        let tail = &heard[heard.len() / 2..];
        assert!(tail.iter().filter(|&&v| v == 0.0).count() < tail.len() / 20);
    }

    #[test]
    fn a_stream_that_pauses_is_an_underrun_not_a_loss_and_counters_only_rise() {
        // Packets 0..200, nothing for a second (a muted microphone), then
        // 300..500; the device pulls all along.
        let (p, _) = run(500, 0.0, |_| 0, |s| (200..300).contains(&s), true);
        let s = p.stats();
        assert_eq!(s.underruns, 1, "{s:?}");
        assert_eq!(s.concealed, 0, "{s:?}");
        let mut p = Playout::new(Plain, 1);
        let mut out = [0.0f32; 240];
        let mut last = PlayoutStats::default();
        for s in 0..400u32 {
            if !(100..200).contains(&s) {
                p.push(
                    s,
                    u64::from(s) * FRAME_US,
                    &packet(s),
                    &[],
                    u64::from(s) * FRAME_US,
                );
            }
            for _ in 0..2 {
                p.render(&mut out, 1, SAMPLE_RATE);
                let now = p.stats();
                assert!(now.concealed >= last.concealed && now.underruns >= last.underruns);
                last = now;
            }
        }
    }

    #[test]
    fn jitter_raises_the_target_but_never_past_forty_ms() {
        let (p, _) = run(
            1000,
            0.0,
            |s| u64::from((s * 7919) % 13) * 1_000,
            |_| false,
            true,
        );
        let s = p.stats();
        assert!(s.target_frames > MIN_TARGET_FRAMES, "{s:?}");
        assert!(s.target_frames <= MAX_TARGET_FRAMES);
        let (p, _) = run(
            1000,
            0.0,
            |s| u64::from((s * 7919) % 97) * 1_000,
            |_| false,
            true,
        );
        assert_eq!(p.stats().target_frames, MAX_TARGET_FRAMES);
    }

    #[test]
    fn clock_drift_is_followed_by_resampling_without_skips_or_underruns() {
        // The sender's clock 0.1 % fast, then 0.1 % slow: over 60 s either
        // would gain or lose 60 ms, six packets.
        for ppm in [1000.0, -1000.0] {
            let (p, _) = run(6000, ppm, |_| 0, |_| false, true);
            let s = p.stats();
            assert_eq!(s.skipped, 0, "{ppm}: {s:?}");
            assert_eq!(s.underruns, 0, "{ppm}: {s:?}");
            assert_eq!(s.concealed, 0, "{ppm}: {s:?}");
            assert!(
                p.buffered() <= MAX_TARGET_FRAMES + 1,
                "{ppm}: {}",
                p.buffered()
            );
        }
    }

    #[test]
    fn a_stall_then_a_burst_skips_back_to_low_delay() {
        // Nothing for 300 ms, then it all arrives at once.
        let (p, _) = run(
            1000,
            0.0,
            |s| {
                if (300..330).contains(&s) {
                    (330 - u64::from(s)) * FRAME_US
                } else {
                    0
                }
            },
            |_| false,
            true,
        );
        let s = p.stats();
        assert!(s.skipped > 0 || s.underruns > 0, "{s:?}");
        assert!(p.buffered() <= MAX_TARGET_FRAMES + 1, "{}", p.buffered());
    }

    #[test]
    fn playback_that_stood_still_resumes_at_the_newest_not_at_the_stale() {
        let mut p = Playout::new(Plain, 1);
        let mut out = [0.0f32; 240];
        for s in 0..10 {
            p.push(
                s,
                u64::from(s) * FRAME_US,
                &packet(s),
                &[],
                u64::from(s) * FRAME_US,
            );
            p.render(&mut out, 1, SAMPLE_RATE);
            p.render(&mut out, 1, SAMPLE_RATE);
        }
        // The device stops pulling for two seconds; the stream goes on.
        for s in 10..210 {
            p.push(
                s,
                u64::from(s) * FRAME_US,
                &packet(s),
                &[],
                u64::from(s) * FRAME_US,
            );
        }
        // What was decoded before the stop (at most 10 ms) plays out first.
        for _ in 0..3 {
            p.render(&mut out, 1, SAMPLE_RATE);
        }
        let playing = p.playing_capture_us().unwrap();
        assert!(playing >= 206 * FRAME_US, "playing {playing} µs, stale");
        assert!(p.stats().skipped >= 190, "{:?}", p.stats());
        assert!(out[239] >= 207.0, "{}", out[239]);
    }

    #[test]
    fn hostile_packets_are_ignored() {
        let mut p = Playout::new(Plain, 2);
        p.push(5, 0, &[0u8; MAX_AUDIO_PAYLOAD + 1], &[], 0);
        p.push(u32::MAX, 0, &packet(1), &[1; MAX_AUDIO_PAYLOAD + 1], 0);
        let mut out = [0.0f32; 960];
        p.render(&mut out, 2, 44_100);
        p.render(&mut out, 0, 0);
        assert_eq!(p.stats().received, 1);
    }
}
