//! Session statistics: counters and latency distributions, shared between
//! the network, decode and presentation threads, and written as the stats
//! JSON of headless runs. Only counters, gauges and distributions live
//! here; what a session *is* doing (its phase, route, the pointer, the
//! clock map) reaches its readers through [`crate::status`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nephele_protocol::activity::Phase;
use nephele_protocol::audio::{FRAME_US, PlayoutStats};
use nephele_protocol::codec::Codec;
use serde::Serialize;

use crate::status::Observed;

/// A latency distribution in microseconds (1 µs … 60 s, 3 significant digits).
#[derive(Debug)]
pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Self {
        // Bounds are fixed, so recording never allocates.
        let h = Histogram::new_with_bounds(1, 60_000_000, 3)
            .expect("constant histogram bounds are valid");
        Self(Mutex::new(h))
    }
}

impl Latency {
    /// Records one sample.
    pub fn record(&self, d: Duration) {
        if let Ok(mut h) = self.0.lock() {
            h.saturating_record(d.as_micros().clamp(1, 60_000_000) as u64);
        }
    }

    /// The `q` quantile in milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0
            .lock()
            .map(|h| {
                if h.is_empty() {
                    0.0
                } else {
                    h.value_at_quantile(q) as f64 / 1000.0
                }
            })
            .unwrap_or(0.0)
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.0.lock().map(|h| h.len()).unwrap_or(0)
    }
}

/// Everything a session counts.
#[derive(Debug)]
pub struct Stats {
    /// Pictures out of the decoder.
    pub frames_decoded: AtomicU64,
    /// The last picture's size, `width << 32 | height` (the desktop's
    /// size, which may change while streaming).
    pub picture_size: AtomicU64,
    /// Times the picture's size changed after the first.
    pub picture_size_changes: AtomicU64,
    /// The size the last picture was shown at in the window, `width << 32
    /// | height` (the picture's own size when it maps one to one).
    pub presented_size: AtomicU64,
    /// The host's latest mean capture time per frame, µs (0 before it said).
    pub host_capture_us: AtomicU64,
    /// The host's latest mean encode-and-send time per frame, µs.
    pub host_encode_us: AtomicU64,
    /// Pictures that reached the screen (window) or the sink standing in
    /// for it (headless).
    pub frames_presented: AtomicU64,
    /// Decoded pictures replaced by a newer one before they could be shown
    /// (or whose colour conversion failed).
    pub frames_dropped: AtomicU64,
    /// Frames that never became a picture: lost in reassembly, or dropped
    /// before decode because the decoder was behind.
    pub frames_lost: AtomicU64,
    /// Complete frames handed to the decoder.
    pub frames_received: AtomicU64,
    /// Keyframe requests sent.
    pub keyframes_requested: AtomicU64,
    /// Decoder errors (corrupt bitstream).
    pub decode_errors: AtomicU64,
    /// The H.264 decoder in use (`ffmpeg` or `openh264`), once chosen.
    pub decoder: std::sync::OnceLock<&'static str>,
    /// The codec the host agreed to, as its place in [`Codec::ALL`]: the
    /// network thread sets it at each welcome, the decoder follows it.
    codec: AtomicU8,
    /// Input events sent (a coalesced run of moves counts once).
    pub input_sent: AtomicU64,
    /// Input events the host acknowledged.
    pub input_acked: AtomicU64,
    /// Bytes of datagrams and stream data received.
    pub bytes_received: AtomicU64,
    /// Reconnections during the session.
    pub reconnects: AtomicU64,
    /// QUIC's smoothed RTT to the gateway, microseconds.
    pub rtt_us: AtomicU64,
    /// Decode time per access unit.
    pub decode: Latency,
    /// Last fragment of a frame received → frame presented.
    pub client_latency: Latency,
    /// Host capture → frame presented, through the clock map.
    pub end_to_end: Latency,
    /// The queueing delay last reported to the host, microseconds.
    pub queue_delay_us: AtomicU64,
    /// The highest queueing delay reported, microseconds.
    pub queue_delay_max_us: AtomicU64,
    /// Input event sent → acknowledged by the host.
    pub input_rtt: Latency,
    /// Input event first sent → applied by the host, through the clock map.
    pub input_one_way: Latency,
    /// Rumble requests from the host played on a gamepad.
    pub pad_rumbles: AtomicU64,
    /// The desktop's sound: playout and device.
    pub audio: Mutex<AudioStats>,
    /// Host capture → reaching the speaker (the device's own delay
    /// included), through the clock map.
    pub audio_latency: Latency,
    /// Microphone packets sent.
    pub mic_sent: AtomicU64,
    /// Microphone packets dropped because the network thread was behind.
    pub mic_dropped: AtomicU64,
    /// Time from the gateway list's arrival to the PoP decision, microseconds.
    pub pop_decision_us: AtomicU64,
    /// Times a background re-probe found another PoP clearly better.
    pub pop_switch_offers: AtomicU64,
    /// Frames rebuilt from parity.
    pub fec_recovered: AtomicU64,
    /// Video fragments lost in the last report interval, per thousand.
    pub loss_permille: AtomicU64,
    /// Frame numbers the host used so far: one past the newest frame
    /// delivered or given up.
    pub frames_sent_by_host: AtomicU64,
    /// Frames earlier hosts of the session sent (before a takeover).
    pub frames_sent_before: AtomicU64,
    /// Freezes, resumes, outages and CPU by phase, from the session's
    /// events and its presented pictures.
    pub timeline: Mutex<Timeline>,
}

/// Sound counters for the stats.
#[derive(Debug, Default, Clone)]
pub struct AudioStats {
    /// The desktop stream's playout.
    pub playout: PlayoutStats,
    /// The output device, as opened.
    pub device: String,
    /// Times the output device was opened (1 when it never failed).
    pub device_opened: u64,
    /// Times the output device failed or went away.
    pub device_failures: u64,
}

/// What the session went through, accumulated from its events (the host's
/// phases, lost and restored connections, takeovers, input given while
/// stopped) and from each presented picture: the longest freeze, resume
/// times, outage gaps, and the process's CPU in each phase.
#[derive(Debug, Default)]
pub struct Timeline {
    /// The phase the host last told.
    phase: Phase,
    /// A reconnect is under way.
    reconnecting: bool,
    /// Input given while stopped: its time, until the next picture.
    resume_started: Option<Instant>,
    /// The last picture before the connection was lost (or the host
    /// failed), until the first after; whether it was a takeover.
    outage_from: Option<(Instant, bool)>,
    /// The last picture presented (none across a pause).
    last_presented: Option<Instant>,
    /// Longest gap between two presented pictures.
    pub max_gap: Duration,
    /// Pauses and suspensions the host told.
    pub pauses: u64,
    /// See `pauses`.
    pub suspends: u64,
    /// Resumes timed (input while stopped → the next picture).
    pub resumes: u64,
    /// The slowest of them.
    pub resume_max: Duration,
    /// The longest picture gap across a reconnect.
    pub outage_max: Duration,
    /// The longest picture gap across a host takeover.
    pub takeover_max: Duration,
    /// Sessions taken over by a backup host.
    pub takeovers: u64,
    /// CPU and wall time of the process by phase.
    pub cpu: CpuByPhase,
}

/// Another process whose CPU time counts as this one's (the service
/// `nephele demo` starts beside the client); 0 for none.
static ALSO_COUNTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Counts process `pid`'s CPU time with this process's in the figures by
/// phase, from the next accounting on.
pub fn count_cpu_of(pid: u32) {
    ALSO_COUNTED.store(pid, Ordering::Relaxed);
}

/// This process's CPU time, and that of the one [`count_cpu_of`] named.
fn cpu_now() -> Option<Duration> {
    let own = nephele_platform::process::cpu_time()?;
    let other = match ALSO_COUNTED.load(Ordering::Relaxed) {
        0 => Duration::ZERO,
        pid => nephele_platform::process::cpu_time_of(pid).unwrap_or_default(),
    };
    Some(own + other)
}

/// The process's CPU time split by the session's phase.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuByPhase {
    last: Option<(Instant, Duration)>,
    /// (wall, CPU) while streaming.
    pub streaming: (Duration, Duration),
    /// (wall, CPU) while paused.
    pub paused: (Duration, Duration),
    /// (wall, CPU) while suspended.
    pub suspended: (Duration, Duration),
}

impl CpuByPhase {
    /// Charges the time since the last call to `phase` (none: nothing).
    fn account(&mut self, phase: Option<Phase>) {
        let now = Instant::now();
        let Some(cpu) = cpu_now() else {
            return;
        };
        if let (Some((then, cpu_then)), Some(phase)) = (self.last, phase) {
            let bucket = match phase {
                Phase::Streaming => &mut self.streaming,
                Phase::Paused => &mut self.paused,
                Phase::Suspended => &mut self.suspended,
                Phase::Warning | Phase::Resuming => return self.last = Some((now, cpu)),
            };
            bucket.0 += now.saturating_duration_since(then);
            bucket.1 += cpu.saturating_sub(cpu_then);
        }
        self.last = Some((now, cpu));
    }

    /// CPU ÷ wall of a bucket, in percent of one core.
    fn pct((wall, cpu): (Duration, Duration)) -> f64 {
        if wall.is_zero() {
            0.0
        } else {
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
        }
    }
}

impl Timeline {
    /// The phase CPU is charged to now (none while reconnecting).
    fn charged(&self) -> Option<Phase> {
        (!self.reconnecting).then_some(self.phase)
    }

    /// Charges CPU time up to now to the current phase.
    pub fn account_cpu(&mut self) {
        let p = self.charged();
        self.cpu.account(p);
    }

    /// The host told a new phase.
    pub fn phase(&mut self, phase: Phase) {
        self.account_cpu();
        if phase != self.phase {
            match phase {
                Phase::Paused => self.pauses += 1,
                Phase::Suspended => self.suspends += 1,
                _ => {}
            }
        }
        if phase.is_stopped() {
            // The gap until the resume is a pause, not a freeze.
            self.last_presented = None;
        }
        self.phase = phase;
    }

    /// The connection was lost at `now`.
    pub fn lost(&mut self, now: Instant) {
        self.account_cpu();
        if !self.reconnecting {
            self.outage_from = Some((self.last_presented.unwrap_or(now), false));
        }
        self.reconnecting = true;
    }

    /// A new path carries the session (it streams until the host says
    /// otherwise).
    pub fn back(&mut self) {
        self.account_cpu();
        self.reconnecting = false;
        self.phase = Phase::Streaming;
    }

    /// A backup host took the session over at `now`.
    pub fn taken_over(&mut self, now: Instant) {
        self.takeovers += 1;
        self.outage_from = Some((self.last_presented.unwrap_or(now), true));
        self.phase(Phase::Streaming);
    }

    /// Input left at `now` while the host had stopped the stream: the
    /// time to the next picture is a resume's.
    pub fn resume_asked(&mut self, now: Instant) {
        if self.phase.is_stopped() && self.resume_started.is_none() {
            self.resume_started = Some(now);
        }
    }

    /// A picture reached the screen at `now`.
    fn presented(&mut self, now: Instant) {
        if let Some(t) = self.resume_started.take() {
            let took = now.saturating_duration_since(t);
            self.resumes += 1;
            self.resume_max = self.resume_max.max(took);
            tracing::info!(ms = took.as_secs_f64() * 1000.0, "resumed: first picture");
        }
        if !self.reconnecting
            && let Some((t, takeover)) = self.outage_from.take()
        {
            let gap = now.saturating_duration_since(t);
            if takeover {
                self.takeover_max = self.takeover_max.max(gap);
            } else {
                self.outage_max = self.outage_max.max(gap);
            }
            tracing::info!(ms = gap.as_secs_f64() * 1000.0, takeover, "streaming again");
        }
        if self.phase.is_stopped() {
            // A frame that crossed the host's pause notice on the way.
            self.last_presented = None;
            return;
        }
        if let Some(last) = self.last_presented {
            self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
        }
        self.last_presented = Some(now);
    }
}

impl Default for Stats {
    fn default() -> Self {
        // Stamps taken from now on are positive.
        let _ = crate::clock::epoch();
        Self {
            frames_decoded: AtomicU64::default(),
            picture_size: AtomicU64::default(),
            picture_size_changes: AtomicU64::default(),
            presented_size: AtomicU64::default(),
            host_capture_us: AtomicU64::default(),
            host_encode_us: AtomicU64::default(),
            frames_presented: AtomicU64::default(),
            frames_dropped: AtomicU64::default(),
            frames_lost: AtomicU64::default(),
            frames_received: AtomicU64::default(),
            keyframes_requested: AtomicU64::default(),
            decode_errors: AtomicU64::default(),
            decoder: std::sync::OnceLock::new(),
            codec: AtomicU8::default(),
            input_sent: AtomicU64::default(),
            input_acked: AtomicU64::default(),
            bytes_received: AtomicU64::default(),
            reconnects: AtomicU64::default(),
            rtt_us: AtomicU64::default(),
            decode: Latency::default(),
            client_latency: Latency::default(),
            end_to_end: Latency::default(),
            queue_delay_us: AtomicU64::default(),
            queue_delay_max_us: AtomicU64::default(),
            input_rtt: Latency::default(),
            input_one_way: Latency::default(),
            pad_rumbles: AtomicU64::default(),
            audio: Mutex::default(),
            audio_latency: Latency::default(),
            mic_sent: AtomicU64::default(),
            mic_dropped: AtomicU64::default(),
            pop_decision_us: AtomicU64::default(),
            pop_switch_offers: AtomicU64::default(),
            fec_recovered: AtomicU64::default(),
            loss_permille: AtomicU64::default(),
            frames_sent_by_host: AtomicU64::default(),
            frames_sent_before: AtomicU64::default(),
            timeline: Mutex::default(),
        }
    }
}

/// The stats JSON of a headless run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// See [`Stats::frames_decoded`].
    pub frames_decoded: u64,
    /// The last picture's width and height.
    pub picture_width: u64,
    /// See `picture_width`.
    pub picture_height: u64,
    /// See [`Stats::picture_size_changes`].
    pub picture_size_changes: u64,
    /// The size the last picture was shown at in a window (0 headless).
    pub presented_width: u64,
    /// See `presented_width`.
    pub presented_height: u64,
    /// Pointer shapes received whole.
    pub cursor_shapes: u64,
    /// The pointer's last reported position (`null` before the first).
    pub cursor_x: Option<u16>,
    /// See `cursor_x`.
    pub cursor_y: Option<u16>,
    /// The desktop's monitors as `[x, y, width, height]` on its picture,
    /// numbered from 1 in this order (empty: the host did not tell).
    pub monitors: Vec<[u16; 4]>,
    /// See [`Stats::frames_presented`].
    pub frames_presented: u64,
    /// See [`Stats::frames_dropped`].
    pub frames_dropped: u64,
    /// See [`Stats::frames_lost`].
    pub frames_lost: u64,
    /// See [`Stats::frames_received`].
    pub frames_received: u64,
    /// Median decode time.
    pub decode_ms_p50: f64,
    /// 99th percentile decode time.
    pub decode_ms_p99: f64,
    /// Median client-added latency.
    pub client_latency_ms_p50: f64,
    /// 99th percentile client-added latency.
    pub client_latency_ms_p99: f64,
    /// Median capture (on the host) → presented, estimated through the
    /// clock map; 0 before the first clock exchange.
    pub e2e_latency_ms_p50: f64,
    /// 99th percentile capture → presented.
    pub e2e_latency_ms_p99: f64,
    /// How far the clock map may be off: half the round trip it rests on.
    pub clock_uncertainty_ms: f64,
    /// Where the end-to-end time went (`null` before the host said).
    pub receipt: Option<crate::receipt::Receipt>,
    /// Queueing delay last reported to the host.
    pub queue_delay_ms: f64,
    /// Highest queueing delay reported.
    pub queue_delay_ms_max: f64,
    /// See [`Stats::input_sent`].
    pub input_sent: u64,
    /// See [`Stats::input_acked`].
    pub input_acked: u64,
    /// Median input round trip.
    pub input_rtt_ms_p50: f64,
    /// 99th percentile input round trip.
    pub input_rtt_ms_p99: f64,
    /// Median input latency one way (sent → applied by the host), through
    /// the clock map (so within `clock_uncertainty_ms`).
    pub input_one_way_ms_p50: f64,
    /// 99th percentile of the same.
    pub input_one_way_ms_p99: f64,
    /// See [`Stats::pad_rumbles`].
    pub pad_rumbles: u64,
    /// Gateway id.
    pub gateway_id: String,
    /// Point of presence.
    pub pop: String,
    /// Smoothed QUIC RTT to the gateway.
    pub rtt_ms: f64,
    /// Reconnections.
    pub reconnects: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Keyframe requests sent.
    pub keyframes_requested: u64,
    /// Decoder errors.
    pub decode_errors: u64,
    /// The H.264 decoder used (`ffmpeg` or `openh264`).
    pub decoder: String,
    /// The codec streamed (`H.264`, `HEVC`, `AV1`).
    pub codec: &'static str,
    /// The video loss the client last reported to the host (filtered: quick
    /// to rise, slow to fall), percent.
    pub loss_reported_pct: f64,
    /// Seconds the session streamed.
    pub duration_s: f64,
    /// From the gateway list's arrival to the PoP decision (0 when connected directly).
    pub pop_decision_ms: f64,
    /// Times a background re-probe found another PoP clearly better.
    pub pop_switch_offers: u64,
    /// Frames rebuilt from parity.
    pub fec_recovered: u64,
    /// Presented ÷ frames the host sent, in percent.
    pub frames_presented_pct: f64,
    /// Longest gap between two presented frames after the first, ms.
    pub max_freeze_ms: f64,
    /// Sound packets from the host played (arrived in time).
    pub audio_packets: u64,
    /// Lost sound packets restored from the next packet's copy.
    pub audio_repaired: u64,
    /// Lost sound packets concealed by the decoder.
    pub audio_concealed: u64,
    /// Sound packets that came too late or twice.
    pub audio_late: u64,
    /// Times the sound ran dry and playout started over.
    pub audio_underruns: u64,
    /// Sound packets skipped to bring the delay back after a burst.
    pub audio_skipped: u64,
    /// The jitter buffer's target now, ms.
    pub audio_buffer_ms: f64,
    /// Interarrival jitter of the sound packets, ms.
    pub audio_jitter_ms: f64,
    /// Playback-rate correction now (clock drift, excess buffering), ppm.
    pub audio_rate_ppm: i32,
    /// Median host capture → speaker, through the clock map.
    pub audio_latency_ms_p50: f64,
    /// 99th percentile of the same.
    pub audio_latency_ms_p99: f64,
    /// The output device, as opened (empty when sound is off).
    pub audio_device: String,
    /// Times the output device was opened: more than 1 after it failed or changed.
    pub audio_device_opened: u64,
    /// Times the output device failed or went away.
    pub audio_device_failures: u64,
    /// See [`Stats::mic_sent`].
    pub mic_sent: u64,
    /// See [`Stats::mic_dropped`].
    pub mic_dropped: u64,
    /// The session's phase at the end: streaming, warning, paused, suspended, resuming.
    pub phase: String,
    /// Times the host paused the session for want of input.
    pub pauses: u64,
    /// Times the host suspended it.
    pub suspends: u64,
    /// Resumes timed: input given while paused or suspended → next picture.
    pub resumes: u64,
    /// The slowest resume, ms.
    pub resume_ms_max: f64,
    /// The longest picture gap across a reconnect, ms: the last picture
    /// before the connection was lost → the first after.
    pub reconnect_ms_max: f64,
    /// The same across a backup host's takeover.
    pub takeover_ms_max: f64,
    /// Times a backup host took the session over.
    pub takeovers: u64,
    /// The process's CPU while streaming, percent of one core.
    pub cpu_streaming_pct: f64,
    /// The same while paused.
    pub cpu_paused_pct: f64,
    /// The same while suspended.
    pub cpu_suspended_pct: f64,
}

impl Stats {
    /// The codec the host agreed to.
    pub fn set_codec(&self, codec: Codec) {
        let at = Codec::ALL.iter().position(|&c| c == codec).unwrap_or(0);
        self.codec.store(at as u8, Ordering::Release);
    }

    /// The codec streamed now.
    pub fn codec(&self) -> Codec {
        Codec::ALL
            .get(usize::from(self.codec.load(Ordering::Acquire)))
            .copied()
            .unwrap_or_default()
    }

    /// The latency receipt so far, given the clock map's uncertainty.
    pub fn receipt(&self, clock_uncertainty_ms: f64) -> Option<crate::receipt::Receipt> {
        let host = (
            self.host_capture_us.load(Ordering::Relaxed),
            self.host_encode_us.load(Ordering::Relaxed),
        );
        crate::receipt::Receipt::from_medians(
            host,
            self.end_to_end.quantile_ms(0.5),
            self.client_latency.quantile_ms(0.5),
            self.decode.quantile_ms(0.5),
            clock_uncertainty_ms,
        )
    }

    /// Notes what the host said its frames take lately (µs, means).
    pub fn host_timing(&self, capture_us: u32, encode_us: u32) {
        self.host_capture_us
            .store(u64::from(capture_us), Ordering::Relaxed);
        self.host_encode_us
            .store(u64::from(encode_us), Ordering::Relaxed);
    }

    /// Notes a decoded picture's size.
    pub fn picture(&self, width: usize, height: usize) {
        let size = (width as u64) << 32 | height as u64;
        let before = self.picture_size.swap(size, Ordering::Relaxed);
        if before == 0 {
            tracing::info!(width, height, "first picture");
        } else if before != size {
            self.picture_size_changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(width, height, "the desktop's size changed");
        }
    }

    /// Counts a picture shown now: client-added latency from its last
    /// fragment's arrival, end-to-end latency from its capture on the host
    /// (`captured_us` on this client's clock, once the host's clock is
    /// mapped), and the gap since the previous one.
    pub fn record_presented(&self, completed_at: Instant, captured_us: Option<i64>) {
        let now = Instant::now();
        self.client_latency
            .record(now.saturating_duration_since(completed_at));
        if let Some(captured) = captured_us {
            let e2e = crate::clock::local_us(now).saturating_sub(captured);
            // A negative figure is inside the map's uncertainty: count it as 0.
            self.end_to_end
                .record(Duration::from_micros(e2e.max(0) as u64));
        }
        self.frames_presented.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.timeline.lock() {
            t.presented(now);
        }
    }

    /// Notes that the host has used frame numbers up to `frame_id`.
    pub fn saw_frame(&self, frame_id: u32) {
        self.frames_sent_by_host
            .fetch_max(u64::from(frame_id) + 1, Ordering::Relaxed);
    }

    /// A new host took the session over: its frame numbers start afresh.
    pub fn new_host(&self) {
        let before = self.frames_sent_by_host.swap(0, Ordering::Relaxed);
        self.frames_sent_before.fetch_add(before, Ordering::Relaxed);
    }

    /// Runs `f` on the timeline.
    pub fn timeline(&self, f: impl FnOnce(&mut Timeline)) {
        if let Ok(mut t) = self.timeline.lock() {
            f(&mut t);
        }
    }

    /// A snapshot for the stats JSON; the session's state from `observed`.
    pub fn report(&self, duration: Duration, observed: &Observed) -> Report {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let status = observed.status();
        let cursor = observed.cursor();
        let clock = observed.clock();
        let audio = self.audio.lock().map(|a| a.clone()).unwrap_or_default();
        let play = audio.playout;
        let t = self
            .timeline
            .lock()
            .map(|mut t| {
                t.account_cpu();
                (
                    t.max_gap,
                    t.pauses,
                    t.suspends,
                    t.resumes,
                    t.resume_max,
                    (t.outage_max, t.takeover_max),
                    t.takeovers,
                    t.cpu,
                )
            })
            .unwrap_or_default();
        let (max_gap, pauses, suspends, resumes, resume_max, outages, takeovers, cpu) = t;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let uncertainty = clock.map_or(0.0, |c| c.uncertainty.as_secs_f64() * 1000.0);
        Report {
            frames_decoded: g(&self.frames_decoded),
            picture_width: g(&self.picture_size) >> 32,
            picture_height: g(&self.picture_size) & 0xffff_ffff,
            picture_size_changes: g(&self.picture_size_changes),
            presented_width: g(&self.presented_size) >> 32,
            presented_height: g(&self.presented_size) & 0xffff_ffff,
            cursor_shapes: cursor.shapes,
            cursor_x: cursor.position.map(|p| p.0),
            cursor_y: cursor.position.map(|p| p.1),
            monitors: observed
                .monitors
                .borrow()
                .as_slice()
                .iter()
                .map(|m| [m.x, m.y, m.width, m.height])
                .collect(),
            frames_presented: g(&self.frames_presented),
            frames_dropped: g(&self.frames_dropped),
            frames_lost: g(&self.frames_lost),
            frames_received: g(&self.frames_received),
            decode_ms_p50: self.decode.quantile_ms(0.5),
            decode_ms_p99: self.decode.quantile_ms(0.99),
            client_latency_ms_p50: self.client_latency.quantile_ms(0.5),
            client_latency_ms_p99: self.client_latency.quantile_ms(0.99),
            e2e_latency_ms_p50: self.end_to_end.quantile_ms(0.5),
            e2e_latency_ms_p99: self.end_to_end.quantile_ms(0.99),
            clock_uncertainty_ms: uncertainty,
            receipt: self.receipt(uncertainty),
            queue_delay_ms: g(&self.queue_delay_us) as f64 / 1000.0,
            queue_delay_ms_max: g(&self.queue_delay_max_us) as f64 / 1000.0,
            input_sent: g(&self.input_sent),
            input_acked: g(&self.input_acked),
            input_rtt_ms_p50: self.input_rtt.quantile_ms(0.5),
            input_rtt_ms_p99: self.input_rtt.quantile_ms(0.99),
            input_one_way_ms_p50: self.input_one_way.quantile_ms(0.5),
            input_one_way_ms_p99: self.input_one_way.quantile_ms(0.99),
            pad_rumbles: g(&self.pad_rumbles),
            gateway_id: status.route.gateway_id,
            pop: status.route.pop,
            rtt_ms: g(&self.rtt_us) as f64 / 1000.0,
            reconnects: g(&self.reconnects),
            bytes_received: g(&self.bytes_received),
            keyframes_requested: g(&self.keyframes_requested),
            decode_errors: g(&self.decode_errors),
            decoder: self.decoder.get().copied().unwrap_or_default().to_string(),
            codec: self.codec().name(),
            loss_reported_pct: g(&self.loss_permille) as f64 / 10.0,
            duration_s: duration.as_secs_f64(),
            pop_decision_ms: g(&self.pop_decision_us) as f64 / 1000.0,
            pop_switch_offers: g(&self.pop_switch_offers),
            fec_recovered: g(&self.fec_recovered),
            frames_presented_pct: {
                let sent = g(&self.frames_sent_by_host) + g(&self.frames_sent_before);
                if sent == 0 {
                    0.0
                } else {
                    100.0 * g(&self.frames_presented).min(sent) as f64 / sent as f64
                }
            },
            max_freeze_ms: ms(max_gap),
            audio_packets: play.received,
            audio_repaired: play.repaired,
            audio_concealed: play.concealed,
            audio_late: play.late,
            audio_underruns: play.underruns,
            audio_skipped: play.skipped,
            audio_buffer_ms: f64::from(play.target_frames) * FRAME_US as f64 / 1000.0,
            audio_jitter_ms: play.jitter_us as f64 / 1000.0,
            audio_rate_ppm: play.rate_ppm,
            audio_latency_ms_p50: self.audio_latency.quantile_ms(0.5),
            audio_latency_ms_p99: self.audio_latency.quantile_ms(0.99),
            audio_device: audio.device,
            audio_device_opened: audio.device_opened,
            audio_device_failures: audio.device_failures,
            mic_sent: g(&self.mic_sent),
            mic_dropped: g(&self.mic_dropped),
            phase: status.phase.name().to_string(),
            pauses,
            suspends,
            resumes,
            resume_ms_max: ms(resume_max),
            reconnect_ms_max: ms(outages.0),
            takeover_ms_max: ms(outages.1),
            takeovers,
            cpu_streaming_pct: CpuByPhase::pct(cpu.streaming),
            cpu_paused_pct: CpuByPhase::pct(cpu.paused),
            cpu_suspended_pct: CpuByPhase::pct(cpu.suspended),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_samples() {
        let l = Latency::default();
        assert_eq!(l.quantile_ms(0.5), 0.0);
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.count(), 100);
        let p50 = l.quantile_ms(0.5);
        let p99 = l.quantile_ms(0.99);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.5).contains(&p99), "{p99}");
    }

    #[test]
    fn the_timeline_times_freezes_resumes_and_outages_but_not_pauses() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timeline::default();
        t.presented(ms(0));
        t.presented(ms(20));
        t.presented(ms(70));
        assert_eq!(t.max_gap, Duration::from_millis(50));
        // Paused for a minute: no freeze; a key at 60 s, a picture 30 ms on.
        t.phase(Phase::Paused);
        t.presented(ms(80));
        t.resume_asked(ms(60_000));
        t.phase(Phase::Resuming);
        t.presented(ms(60_030));
        assert_eq!((t.resumes, t.resume_max), (1, Duration::from_millis(30)));
        assert_eq!(t.max_gap, Duration::from_millis(50), "a pause is no freeze");
        assert_eq!(t.pauses, 1);
        // Lost at 61 s, back at 62 s, a picture at 62.1 s: a 1.07 s outage.
        t.phase(Phase::Streaming);
        t.presented(ms(61_000));
        t.lost(ms(61_500));
        t.back();
        t.presented(ms(62_070));
        assert_eq!(t.outage_max, Duration::from_millis(1070));
        t.taken_over(ms(63_000));
        t.presented(ms(63_300));
        assert_eq!(
            (t.takeovers, t.takeover_max),
            (1, Duration::from_millis(1230))
        );
    }
}
