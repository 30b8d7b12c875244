//! Congestion control for video, sans-IO: the client measures how long
//! frames take to arrive compared with the fastest lately ([`QueueDelay`])
//! and maps the host's clock onto its own ([`ClockMap`]); the host turns the
//! client's reports into a target bitrate ([`RateController`]).
//!
//! The controller is delay-based, in the manner of WebRTC's Google
//! Congestion Control: a queue building on the path shows as frames arriving
//! later than the fastest ones did, long before a router drops anything. On
//! a persistent queue the target falls to a little under what the client
//! actually receives; while the path is quiet it climbs back by a tenth a
//! second. Random loss alone does not cut the rate: parity repairs it, and
//! sending less would not make a lossy radio link less lossy.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A receiver report as the controller sees it, with the sender's own rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Lost fragments per thousand.
    pub loss_permille: u16,
    /// Queueing delay on the path, milliseconds.
    pub queue_delay_ms: u16,
    /// What the client received lately, kilobits per second.
    pub recv_kbps: u32,
    /// What the host sent lately, kilobits per second (the host's own
    /// count, not part of the client's report).
    pub sent_kbps: u32,
}

/// The controller's settings.
#[derive(Debug, Clone, Copy)]
pub struct RateConfig {
    /// The most the host sends (and where it starts), bits per second.
    pub max_bps: u32,
    /// The least it sends however bad the path looks.
    pub min_bps: u32,
    /// Queueing delay at or above this is congestion.
    pub overuse: Duration,
    /// Queueing delay at or below this lets the rate climb.
    pub underuse: Duration,
    /// Loss at or above this, and higher than the last report's, is
    /// congestion even without delay (a path whose queue is too short to
    /// show any). Reported loss falls slowly (it sizes parity), so only a
    /// rise is news.
    pub congestion_loss_permille: u16,
    /// Where the rate starts: an unknown path is not assumed to carry the
    /// maximum at once.
    pub start_bps: u32,
    /// Relative increase per second until the first congestion, like TCP's
    /// slow start.
    pub startup_climb_per_s: f64,
    /// After a decrease, no other decrease for this long (the report that
    /// shows its effect needs a round trip) and no increase for twice as long.
    pub hold: Duration,
    /// A decrease sets the rate to this share of what the client received.
    pub backoff: f64,
    /// Relative increase per second on a quiet path, while the sender uses
    /// at least 70 % of its target (otherwise it holds).
    pub climb_per_s: f64,
}

impl RateConfig {
    /// Defaults for a session sending at most `max_bps`.
    pub fn new(max_bps: u32) -> Self {
        Self {
            max_bps,
            min_bps: (max_bps / 20).clamp(250_000, 1_000_000).min(max_bps),
            overuse: Duration::from_millis(30),
            underuse: Duration::from_millis(10),
            congestion_loss_permille: 200,
            hold: Duration::from_millis(250),
            backoff: 0.85,
            climb_per_s: 0.10,
            start_bps: max_bps.min(8_000_000),
            startup_climb_per_s: 0.5,
        }
    }
}

/// What the last report made of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A queue is building or loss is heavy: the rate fell (or would have,
    /// but a decrease is already in effect).
    Congested,
    /// Neither: hold.
    Steady,
    /// The path is quiet: the rate climbs.
    Quiet,
}

/// Turns receiver reports into a target bitrate.
#[derive(Debug, Clone)]
pub struct RateController {
    cfg: RateConfig,
    target: f64,
    last_report: Option<Instant>,
    last_decrease: Option<Instant>,
    last_loss: u16,
    decreases: u64,
}

impl RateController {
    /// Starts at [`RateConfig::start_bps`] and climbs quickly towards the
    /// maximum until the path first shows a queue.
    pub fn new(cfg: RateConfig) -> Self {
        Self {
            target: f64::from(cfg.start_bps.clamp(cfg.min_bps, cfg.max_bps)),
            cfg,
            last_report: None,
            last_decrease: None,
            last_loss: 0,
            decreases: 0,
        }
    }

    /// The target bitrate, bits per second (video and parity together).
    pub fn target_bps(&self) -> u32 {
        self.target as u32
    }

    /// Times the rate was cut.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// Takes a report that arrived at `now`; returns the new target.
    pub fn on_report(&mut self, now: Instant, r: Report) -> (u32, Verdict) {
        let dt = self
            .last_report
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_millis(500));
        self.last_report = Some(now);
        let delay = Duration::from_millis(u64::from(r.queue_delay_ms));
        let since_decrease = self
            .last_decrease
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let (min, max) = (f64::from(self.cfg.min_bps), f64::from(self.cfg.max_bps));
        let fresh_loss = r.loss_permille >= self.cfg.congestion_loss_permille
            && r.loss_permille > self.last_loss;
        self.last_loss = r.loss_permille;
        let verdict = if delay >= self.cfg.overuse || fresh_loss {
            if since_decrease >= self.cfg.hold {
                let recv = f64::from(r.recv_kbps) * 1000.0;
                // A sender well below its target (a still desktop) is not
                // what fills the queue: back off from the target instead.
                // A sender using its target gets what the path delivers,
                // however far below that is (the link narrowed).
                let app_limited = f64::from(r.sent_kbps) * 1000.0 < self.target * 0.5;
                let basis = if app_limited {
                    self.target
                } else {
                    recv.min(self.target)
                };
                self.target = (basis * self.cfg.backoff).clamp(min, max);
                self.last_decrease = Some(now);
                self.decreases += 1;
            }
            Verdict::Congested
        } else if delay <= self.cfg.underuse
            && since_decrease >= self.cfg.hold * 2
            // Only a sender that uses its rate learns anything by raising
            // it: a still desktop sending a trickle holds its target.
            && f64::from(r.recv_kbps) * 1000.0 >= self.target * 0.7
        {
            let climb = if self.decreases == 0 {
                self.cfg.startup_climb_per_s
            } else {
                self.cfg.climb_per_s
            };
            self.target = (self.target * (1.0 + climb * dt.as_secs_f64())).clamp(min, max);
            Verdict::Quiet
        } else {
            Verdict::Steady
        };
        (self.target_bps(), verdict)
    }
}

/// How much later than the fastest frames lately frames are arriving: the
/// one-way delay of each frame (arrival on the client's clock minus capture
/// on the host's; the clocks' offset cancels) less the smallest seen in the
/// last [`QueueDelay::BASE_WINDOW`], taking the smallest excess of the last
/// [`QueueDelay::SAMPLE_WINDOW`] so one frame slow to encode does not read
/// as a queue.
#[derive(Debug, Clone, Default)]
pub struct QueueDelay {
    /// (arrival µs, one-way delay µs) of recent frames, oldest first.
    recent: VecDeque<(i64, i64)>,
    /// Minimum one-way delay per base bucket, oldest first.
    base: VecDeque<(i64, i64)>,
}

impl QueueDelay {
    /// How far back the fastest frame counts. Long enough to span a
    /// congestion episode, short enough to follow a route change or drift
    /// between the two clocks.
    pub const BASE_WINDOW: Duration = Duration::from_secs(10);
    /// Frames whose excess delay is considered for the current figure.
    pub const SAMPLE_WINDOW: Duration = Duration::from_millis(200);
    const BUCKET_US: i64 = 1_000_000;
    const MAX_RECENT: usize = 256;

    /// Notes a frame whose last fragment arrived at `arrival_us` (client
    /// clock) and that was captured at `capture_us` (host clock).
    pub fn on_frame(&mut self, arrival_us: i64, capture_us: u64) {
        let owd = arrival_us.saturating_sub(capture_us as i64);
        let bucket = arrival_us.div_euclid(Self::BUCKET_US);
        match self.base.back_mut() {
            Some((b, m)) if *b == bucket => *m = (*m).min(owd),
            _ => self.base.push_back((bucket, owd)),
        }
        let oldest = bucket - Self::BASE_WINDOW.as_micros() as i64 / Self::BUCKET_US;
        while self.base.front().is_some_and(|(b, _)| *b < oldest) {
            self.base.pop_front();
        }
        if self.recent.len() == Self::MAX_RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((arrival_us, owd));
    }

    /// The queueing delay at `now_us`, or `None` when no frame arrived in the
    /// sample window.
    pub fn current(&mut self, now_us: i64) -> Option<Duration> {
        let from = now_us - Self::SAMPLE_WINDOW.as_micros() as i64;
        while self.recent.front().is_some_and(|(t, _)| *t < from) {
            self.recent.pop_front();
        }
        let base = self.base.iter().map(|(_, m)| *m).min()?;
        let excess = self.recent.iter().map(|(_, d)| d - base).min()?;
        Some(Duration::from_micros(excess.max(0) as u64))
    }
}

/// Maps the host's clock onto the client's from ping exchanges, NTP style:
/// the host's stamp is taken to be from the middle of the round trip, and
/// the exchange with the shortest round trip wins (its midpoint is the least
/// uncertain, by half that round trip).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClockMap {
    /// (round trip µs, host µs − client µs) of the best exchange.
    best: Option<(i64, i64)>,
}

impl ClockMap {
    /// A ping sent at `sent_us` came back at `received_us` (client clock)
    /// carrying the host's clock `host_us`.
    pub fn on_pong(&mut self, sent_us: i64, received_us: i64, host_us: u64) {
        let rtt = received_us - sent_us;
        if rtt < 0 {
            return;
        }
        let offset = host_us as i64 - (sent_us + rtt / 2);
        if self.best.is_none_or(|(best, _)| rtt <= best) {
            self.best = Some((rtt, offset));
        }
    }

    /// A host time on the client's clock, once an exchange has completed.
    pub fn to_client(&self, host_us: u64) -> Option<i64> {
        self.best.map(|(_, off)| host_us as i64 - off)
    }

    /// The uncertainty of [`Self::to_client`]: half the best round trip.
    pub fn uncertainty(&self) -> Option<Duration> {
        self.best
            .map(|(rtt, _)| Duration::from_micros(rtt as u64 / 2))
    }
}

/// A bitrate that gives the demo desktop crisp text: about 0.1 bit per
/// pixel per frame, between 1 and 40 Mbit/s.
pub fn default_bitrate(width: u16, height: u16, fps: u8) -> u32 {
    let px = u64::from(width) * u64::from(height) * u64::from(fps);
    (px / 10).clamp(1_000_000, 40_000_000) as u32
}

/// Until the client's first loss report (half a second in), parity is sized
/// for this much loss, so the session's first keyframe survives a lossy
/// path. After that the reports decide.
pub const FEC_LOSS_BEFORE_REPORTS: f64 = 0.05;

/// Parity is never sized for less: the first loss on a path that looked
/// clean is repaired too, instead of costing a keyframe round trip. A small
/// frame then carries two full-size parity datagrams, about 1.2 Mbit/s at
/// 60 frames a second.
pub const FEC_LOSS_FLOOR: f64 = 0.005;

/// The loss a frame's parity is sized for, from the client's last report
/// (per thousand; `None` before the first).
pub fn parity_loss(reported_permille: Option<u16>) -> f64 {
    match reported_permille {
        None => FEC_LOSS_BEFORE_REPORTS,
        Some(p) => (f64::from(p) / 1000.0).max(FEC_LOSS_FLOOR),
    }
}

/// Below this many bits per pixel per frame at the full frame rate, the
/// frame rate halves: 1.7 Mbit/s at 720p60, 3.7 Mbit/s at 1080p60.
pub const LOW_BITS_PER_PIXEL: f64 = 0.03;

/// How an encoder follows congestion control's target: its bitrate is the
/// target less the parity's share, and when that leaves fewer than
/// [`LOW_BITS_PER_PIXEL`] per pixel per frame the frame rate halves, so each
/// frame keeps enough bits to stay legible (text on a remote desktop
/// matters more than motion). Full rate returns above 1.5 times that.
#[derive(Debug, Clone, Copy)]
pub struct EncoderPlan {
    /// The most the encoder is given, bits per second.
    pub max_bps: u32,
    /// Pixels per second at the full frame rate.
    pub pixel_rate: f64,
    /// The session's frame rate.
    pub full_fps: u8,
    /// The frame rate now.
    pub fps: u8,
    /// Payload bytes per video datagram.
    pub payload: usize,
}

impl EncoderPlan {
    /// A plan for `width`×`height` at `fps`, given at most `max_bps`, sent
    /// in datagrams carrying `payload` bytes.
    pub fn new(max_bps: u32, (width, height): (u16, u16), fps: u8, payload: usize) -> Self {
        Self {
            max_bps,
            pixel_rate: f64::from(width) * f64::from(height) * f64::from(fps),
            full_fps: fps,
            fps,
            payload,
        }
    }

    /// The time between frames now.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.fps.max(1)))
    }

    /// Bytes sent per byte encoded for a frame that uses its share of
    /// `target` on a path losing `loss`: headers and parity. Computed for a
    /// frame of the budgeted size rather than measured, because a still
    /// desktop's tiny frames carry far more parity per byte (one full-size
    /// parity datagram each) without being what uses the bitrate.
    pub fn overhead(&self, target: u32, loss: f64) -> f64 {
        let frame = (f64::from(target) / 8.0 / f64::from(self.fps.max(1))).max(1.0);
        let count = (frame / self.payload.max(1) as f64).ceil().max(1.0);
        let parity = f64::from(crate::video::parity_for(count as u16, loss));
        let header = crate::wire::VIDEO_HEADER_LEN as f64;
        let sent = frame + count * header + parity * (self.payload as f64 + header);
        sent / frame
    }

    /// The encoder's bitrate and frame rate for a `target` (video and
    /// parity together) on a path losing `loss`.
    pub fn plan(&self, target: u32, loss: f64) -> (u32, u8) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report from a path delivering all the host sent.
    fn report(delay: u16, kbps: u32) -> Report {
        Report {
            loss_permille: 0,
            queue_delay_ms: delay,
            recv_kbps: kbps,
            sent_kbps: kbps,
        }
    }

    #[test]
    fn a_queue_cuts_to_below_what_arrives_then_the_rate_climbs_back() {
        let t0 = Instant::now();
        let mut c = RateController::new(RateConfig {
            start_bps: 20_000_000,
            ..RateConfig::new(20_000_000)
        });
        assert_eq!(c.target_bps(), 20_000_000);
        // The path carries 10 Mbit/s and a queue builds.
        let (t, v) = c.on_report(
            t0,
            Report {
                sent_kbps: 20_000,
                ..report(80, 10_000)
            },
        );
        assert_eq!(v, Verdict::Congested);
        assert_eq!(t, 8_500_000);
        // Still queued 100 ms later: no second cut until the first could act.
        let (t, _) = c.on_report(t0 + Duration::from_millis(100), report(60, 9_000));
        assert_eq!(t, 8_500_000);
        let (t, _) = c.on_report(t0 + Duration::from_millis(500), report(60, 9_000));
        assert_eq!(t, 7_225_000);
        // Quiet afterwards: it holds for a while, then climbs about 10 %/s.
        let mut now = t0 + Duration::from_millis(600);
        let (t, v) = c.on_report(now, report(2, 7_000));
        assert_eq!((t, v), (7_225_000, Verdict::Steady));
        for _ in 0..30 {
            now += Duration::from_millis(100);
            c.on_report(now, report(2, (c.target_bps() / 1000) * 9 / 10));
        }
        let t = c.target_bps();
        assert!((9_000_000..10_500_000).contains(&t), "{t}");
        // A sender using half its target learns nothing by raising it.
        for _ in 0..30 {
            now += Duration::from_millis(100);
            c.on_report(now, report(0, t / 2000));
        }
        assert_eq!(c.target_bps(), t);
        for _ in 0..300 {
            now += Duration::from_millis(100);
            c.on_report(now, report(0, c.target_bps() / 1000));
        }
        assert_eq!(c.target_bps(), 20_000_000, "never above the maximum");
        assert_eq!(c.decreases(), 2);
    }

    #[test]
    fn random_loss_alone_does_not_cut_but_heavy_loss_does_and_the_floor_holds() {
        let t0 = Instant::now();
        let mut c = RateController::new(RateConfig::new(10_000_000));
        assert_eq!(c.target_bps(), 8_000_000, "starts below a high maximum");
        let lossy = Report {
            loss_permille: 50,
            queue_delay_ms: 3,
            recv_kbps: 9_000,
            sent_kbps: 9_500,
        };
        for i in 0..50 {
            c.on_report(t0 + Duration::from_millis(100 * i), lossy);
        }
        assert_eq!(c.decreases(), 0);
        assert_eq!(c.target_bps(), 10_000_000);
        assert_eq!(
            c.target_bps(),
            10_000_000,
            "and climbs to it on a quiet path"
        );
        let mut now = t0 + Duration::from_secs(6);
        let mut heavy = |now, loss_permille| {
            c.on_report(
                now,
                Report {
                    loss_permille,
                    queue_delay_ms: 0,
                    recv_kbps: 9_000,
                    sent_kbps: 10_000,
                },
            )
        };
        now += Duration::from_millis(500);
        assert_eq!(heavy(now, 400), (7_650_000, Verdict::Congested));
        // The same (slowly falling) figure again is no news.
        now += Duration::from_millis(300);
        assert_eq!(heavy(now, 390), (7_650_000, Verdict::Steady));
        for i in 0..100 {
            now += Duration::from_millis(500);
            heavy(now, 400 + i);
        }
        assert_eq!(
            c.target_bps(),
            500_000,
            "the floor: a twentieth of the maximum"
        );
    }

    #[test]
    fn a_still_sender_backs_off_from_its_target_not_from_its_trickle() {
        let mut c = RateController::new(RateConfig::new(10_000_000));
        let (t, _) = c.on_report(Instant::now(), report(50, 300));
        assert_eq!(t, 6_800_000);
    }

    #[test]
    fn a_full_sender_on_a_narrowed_link_falls_to_what_arrives_at_once() {
        let t0 = Instant::now();
        let mut c = RateController::new(RateConfig {
            start_bps: 20_000_000,
            ..RateConfig::new(20_000_000)
        });
        // 20 Mbit/s sent, the link now carries 5: one cut, not a slow
        // slide of 15 % steps while the queue overflows.
        let narrowed = Report {
            sent_kbps: 20_000,
            ..report(60, 5_000)
        };
        assert_eq!(c.on_report(t0, narrowed).0, 4_250_000);
    }

    #[test]
    fn queue_delay_is_the_excess_over_the_fastest_frame_and_ignores_one_slow_frame() {
        let mut q = QueueDelay::default();
        assert_eq!(q.current(0), None);
        // Host clock 5 s ahead of the client's; 20 ms one way; a frame every 16 ms.
        let offset = 5_000_000i64;
        let mut t = 1_000_000i64;
        for _ in 0..100 {
            q.on_frame(t, (t - 20_000 + offset) as u64);
            t += 16_000;
        }
        assert_eq!(q.current(t), Some(Duration::ZERO));
        // One frame slow to encode (+25 ms): the window's minimum ignores it.
        q.on_frame(t, (t - 45_000 + offset) as u64);
        t += 16_000;
        q.on_frame(t, (t - 20_000 + offset) as u64);
        assert_eq!(q.current(t), Some(Duration::ZERO));
        // A queue: every frame 40 ms later than the fastest.
        for _ in 0..20 {
            t += 16_000;
            q.on_frame(t, (t - 60_000 + offset) as u64);
        }
        assert_eq!(q.current(t), Some(Duration::from_millis(40)));
        // Nothing arrives for a while: no figure rather than a stale one.
        assert_eq!(q.current(t + 1_000_000), None);
        // Eleven seconds at the new delay: it becomes the base.
        for _ in 0..700 {
            t += 16_000;
            q.on_frame(t, (t - 60_000 + offset) as u64);
        }
        assert_eq!(q.current(t), Some(Duration::ZERO));
    }

    #[test]
    fn the_clock_map_keeps_the_tightest_exchange() {
        let mut m = ClockMap::default();
        assert_eq!(m.to_client(123), None);
        // Host clock = client clock + 1 s; a symmetric 10 ms round trip.
        m.on_pong(0, 10_000, 1_005_000);
        assert_eq!(m.to_client(1_005_000), Some(5_000));
        // A slower, lopsided exchange does not displace it.
        m.on_pong(100_000, 160_000, 1_150_000);
        assert_eq!(m.to_client(1_005_000), Some(5_000));
        assert_eq!(m.uncertainty(), Some(Duration::from_millis(5)));
        // A tighter one does.
        m.on_pong(200_000, 202_000, 1_201_500);
        assert_eq!(m.to_client(1_201_500), Some(201_000));
        m.on_pong(5, 1, 0);
        assert_eq!(m.uncertainty(), Some(Duration::from_millis(1)));
    }

    #[test]
    fn the_frame_rate_halves_only_when_bits_per_frame_run_short() {
        let payload = crate::video::Fragmenter::new(crate::MAX_DATAGRAM - 64).payload_size();
        let a = EncoderPlan::new(default_bitrate(1280, 720, 60), (1280, 720), 60, payload);
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
        let halved = EncoderPlan { fps: 30, ..a };
        assert_eq!(halved.plan(mid, FEC_LOSS_FLOOR).1, 30);
    }

    #[test]
    fn parity_is_sized_for_five_percent_until_the_first_report_then_never_below_the_floor() {
        assert_eq!(parity_loss(None), FEC_LOSS_BEFORE_REPORTS);
        assert_eq!(parity_loss(Some(0)), FEC_LOSS_FLOOR);
        assert_eq!(parity_loss(Some(50)), 0.05);
        assert_eq!(default_bitrate(1280, 720, 60), 5_529_600);
        assert_eq!(default_bitrate(64, 64, 1), 1_000_000);
    }
}
