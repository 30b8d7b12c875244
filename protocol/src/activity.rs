//! Activity and the idle policy.
//!
//! The client reports, about once a second, how long ago its user last gave
//! input (keyboard, mouse, gamepad, or speech into the microphone), where
//! the user is ([`Presence`]), whether something should keep the session
//! active without input ([`KeepActive`]: a presentation, a video, spectating,
//! recording) and how long it expects to stay idle. The host's
//! [`IdleTracker`] turns that, its own view of the input, and the
//! directory's [`IdlePolicy`] into a [`Phase`]: streaming, warned, paused
//! (no capture, no encoding) or suspended (the session's resources released,
//! its state kept). New input, or a new keep-active request, resumes.
//! Silence (no reports, a dropped connection) counts as idle: the idle clock
//! only moves back on input.

use std::str::FromStr;
use std::time::{Duration, Instant};

wire_enum! {
    /// Where the user is, as the client sees it.
    #[derive(Default)]
    pub enum Presence {
        /// Input lately, window in front.
        #[default]
        Active = 0 => "active",
        /// No input for [`IDLE_AFTER`].
        Idle = 1 => "idle",
        /// The window is minimised, hidden or not focused.
        Background = 2 => "background",
        /// The user cannot see the stream: screen locked, display off,
        /// system asleep (where the platform tells).
        Away = 3 => "away",
    }
}

/// Without input for this long a client counts as [`Presence::Idle`].
pub const IDLE_AFTER: Duration = Duration::from_secs(60);

wire_enum! {
    /// Why the session should stay active without input (named as
    /// `--keep-active` takes it).
    #[derive(Default)]
    pub enum KeepActive {
        /// Nothing: idle time counts.
        #[default]
        No = 0 => "none",
        /// The user turned on presentation mode.
        Presentation = 1 => "presentation",
        /// Watching a video.
        Video = 2 => "video",
        /// Spectating a game.
        Spectating = 3 => "spectating",
        /// Recording the session.
        Recording = 4 => "recording",
    }
}

impl FromStr for KeepActive {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| {
            format!("`{s}` is not a reason: none, presentation, video, spectating or recording")
        })
    }
}

/// The client's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActivityReport {
    /// Milliseconds since the user's last input (saturating).
    pub idle_ms: u32,
    /// Where the user is.
    pub presence: Presence,
    /// A standing request to stay active.
    pub keep_active: KeepActive,
    /// How long the user expects to be away, in seconds (0: no idea).
    pub expected_idle_s: u32,
}

wire_enum! {
    /// What the session is doing, as the host tells the client.
    #[derive(Default)]
    pub enum Phase {
        /// Capturing, encoding and sending.
        #[default]
        Streaming = 0 => "streaming",
        /// Streaming, but idle long enough that a pause is coming.
        Warning = 1 => "warning",
        /// Neither capturing nor encoding; input resumes at once.
        Paused = 2 => "paused",
        /// The session's resources are released; its state is kept.
        Suspended = 3 => "suspended",
        /// Coming back; the first frame is a keyframe.
        Resuming = 4 => "resuming",
    }
}

impl Phase {
    /// Whether the host sends no video in this phase.
    pub fn is_stopped(self) -> bool {
        matches!(self, Self::Paused | Self::Suspended)
    }
}

/// Thresholds of idle time: warn, then pause, then suspend. `None` never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Warn the user a pause is coming.
    pub warn: Option<Duration>,
    /// Stop capturing and encoding.
    pub pause: Option<Duration>,
    /// Release the session's resources, keeping its state.
    pub suspend: Option<Duration>,
}

impl Default for IdlePolicy {
    /// A working day's default: warn after 14 minutes without input, pause
    /// at 15, suspend after an hour.
    fn default() -> Self {
        Self {
            warn: Some(Duration::from_secs(14 * 60)),
            pause: Some(Duration::from_secs(15 * 60)),
            suspend: Some(Duration::from_secs(60 * 60)),
        }
    }
}

impl IdlePolicy {
    /// A policy that never pauses.
    pub const NEVER: Self = Self {
        warn: None,
        pause: None,
        suspend: None,
    };

    /// Milliseconds on the wire (0: never), saturating.
    pub fn to_wire(self) -> [u32; 3] {
        [self.warn, self.pause, self.suspend]
            .map(|d| d.map_or(0, |d| d.as_millis().clamp(1, u128::from(u32::MAX)) as u32))
    }

    /// From milliseconds on the wire (0: never).
    pub fn from_wire(ms: [u32; 3]) -> Result<Self, String> {
        let [warn, pause, suspend] =
            ms.map(|m| (m > 0).then(|| Duration::from_millis(u64::from(m))));
        let p = Self {
            warn,
            pause,
            suspend,
        };
        p.check()?;
        Ok(p)
    }

    /// Each threshold no earlier than the one before it.
    pub fn check(&self) -> Result<(), String> {
        let mut last: Option<(&str, Duration)> = None;
        for (name, d) in [
            ("warn", self.warn),
            ("pause", self.pause),
            ("suspend", self.suspend),
        ] {
            let Some(d) = d else { continue };
            if let Some((prev, at)) = last
                && d < at
            {
                return Err(format!("{name} ({d:?}) comes before {prev} ({at:?})"));
            }
            last = Some((name, d));
        }
        Ok(())
    }
}

impl FromStr for IdlePolicy {
    type Err = String;

    /// `warn=2s,pause=3s,suspend=6s`; a threshold left out or `never` does
    /// not happen; `never` alone turns pausing off.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = Self::NEVER;
        let s = s.trim();
        if s == "never" {
            return Ok(p);
        }
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` should be KEY=DURATION, as in pause=15m"))?;
            let d = if value == "never" {
                None
            } else {
                let v = value.strip_suffix('m').filter(|v| !v.ends_with('m'));
                let parsed = match v {
                    Some(mins) => mins
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|m| m.is_finite() && *m > 0.0 && *m <= 7.0 * 24.0 * 60.0)
                        .map(|m| Duration::from_secs_f64(m * 60.0)),
                    None => crate::impair::duration(value).filter(|d| !d.is_zero()),
                };
                Some(parsed.ok_or_else(|| {
                    format!("`{value}` in `{item}` is not a duration such as 500ms, 3s or 15m")
                })?)
            };
            match key {
                "warn" => p.warn = d,
                "pause" => p.pause = d,
                "suspend" => p.suspend = d,
                other => {
                    return Err(format!(
                        "unknown threshold `{other}`: use warn, pause and suspend"
                    ));
                }
            }
        }
        p.check()?;
        Ok(p)
    }
}

/// What an [`IdleTracker`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A pause comes in this long unless input arrives.
    Warn(Duration),
    /// The warning is over without a pause (keep-active, or input).
    Clear,
    /// Stop capturing and encoding.
    Pause,
    /// Release the session's resources.
    Suspend,
    /// Resume from this phase ([`Phase::Paused`] or [`Phase::Suspended`]).
    Resume(Phase),
}

/// The host's idle state machine for one session; see the module
/// documentation. Time is passed in.
#[derive(Debug, Clone)]
pub struct IdleTracker {
    policy: IdlePolicy,
    last_input: Instant,
    report: ActivityReport,
    host_keep_active: bool,
    phase: Phase,
}

impl IdleTracker {
    /// A tracker for a session that starts now, streaming.
    pub fn new(policy: IdlePolicy, now: Instant) -> Self {
        Self {
            policy,
            last_input: now,
            report: ActivityReport::default(),
            host_keep_active: false,
            phase: Phase::Streaming,
        }
    }

    /// The phase now ([`Phase::Streaming`], `Warning`, `Paused` or `Suspended`).
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The policy.
    pub fn policy(&self) -> IdlePolicy {
        self.policy
    }

    /// How long the user has given no input.
    pub fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_input)
    }

    /// Input arrived now: the idle clock restarts, and a stopped session resumes.
    pub fn on_input(&mut self, now: Instant) -> Option<Transition> {
        self.last_input = self.last_input.max(now);
        self.wake()
    }

    /// The host's own content asks to stay active (a video playing).
    pub fn set_host_keep_active(&mut self, keep: bool, now: Instant) -> Option<Transition> {
        self.host_keep_active = keep;
        if keep {
            return self.wake();
        }
        self.poll(now)
    }

    /// A heartbeat from the client, received now.
    pub fn on_report(&mut self, now: Instant, report: ActivityReport) -> Option<Transition> {
        let was_keep = self.report.keep_active != KeepActive::No;
        self.report = report;
        let input_at = now
            .checked_sub(Duration::from_millis(u64::from(report.idle_ms)))
            .unwrap_or(now);
        // Input the host did not see itself (speech into the microphone),
        // or a new keep-active request, resumes.
        let newer_input = input_at > self.last_input + Duration::from_millis(5);
        let new_request = report.keep_active != KeepActive::No && !was_keep;
        if newer_input {
            self.last_input = input_at;
        }
        if newer_input || new_request {
            return self.wake();
        }
        self.poll(now)
    }

    fn kept_active(&self) -> bool {
        self.host_keep_active || self.report.keep_active != KeepActive::No
    }

    fn wake(&mut self) -> Option<Transition> {
        let from = std::mem::replace(&mut self.phase, Phase::Streaming);
        match from {
            Phase::Paused | Phase::Suspended => Some(Transition::Resume(from)),
            Phase::Warning => Some(Transition::Clear),
            Phase::Streaming | Phase::Resuming => None,
        }
    }

    /// The phase the idle time calls for now.
    fn due(&self, now: Instant) -> Phase {
        if self.kept_active() {
            return Phase::Streaming;
        }
        let idle = self.idle(now);
        let passed = |t: Option<Duration>| t.is_some_and(|t| idle >= t);
        // Someone who cannot see the stream needs no warning.
        let away = self.report.presence == Presence::Away && self.policy.pause.is_some();
        // The expected-idle hint picks the tier: a long absence skips
        // straight from streaming to suspended when the pause comes.
        let long_absence = self
            .policy
            .suspend
            .is_some_and(|s| Duration::from_secs(u64::from(self.report.expected_idle_s)) >= s);
        if passed(self.policy.suspend) {
            Phase::Suspended
        } else if passed(self.policy.pause) || away {
            if long_absence {
                Phase::Suspended
            } else {
                Phase::Paused
            }
        } else if passed(self.policy.warn) {
            Phase::Warning
        } else {
            Phase::Streaming
        }
    }

    /// Moves on with time; returns the transition, if one is due. Phases
    /// only advance with time; going back takes input.
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        let due = self.due(now);
        let order = |p: Phase| p as u8;
        match (self.phase, due) {
            (Phase::Warning, Phase::Streaming) => {
                self.phase = Phase::Streaming;
                Some(Transition::Clear)
            }
            (from, to) if order(to) > order(from) => {
                self.phase = to;
                Some(match to {
                    Phase::Warning => Transition::Warn(self.until_pause(now).unwrap_or_default()),
                    Phase::Paused => Transition::Pause,
                    _ => Transition::Suspend,
                })
            }
            _ => None,
        }
    }

    /// How long until the pause, if one is coming.
    pub fn until_pause(&self, now: Instant) -> Option<Duration> {
        let pause = self.policy.pause?;
        (!self.kept_active()).then(|| pause.saturating_sub(self.idle(now)))
    }

    /// When [`IdleTracker::poll`] should run next.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.kept_active() {
            return None;
        }
        let next = match self.phase {
            Phase::Streaming | Phase::Resuming => self.policy.warn.or(self.policy.pause),
            Phase::Warning => self.policy.pause,
            Phase::Paused => self.policy.suspend,
            Phase::Suspended => None,
        }
        .or(self.policy.suspend.filter(|_| !self.phase.is_stopped()))?;
        Some(self.last_input + next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IdlePolicy {
        "warn=2s,pause=3s,suspend=6s".parse().unwrap()
    }

    fn run_until(t: &mut IdleTracker, from: Instant, to: Instant) -> Vec<(u128, Transition)> {
        let mut out = Vec::new();
        let mut now = from;
        while now <= to {
            if let Some(tr) = t.poll(now) {
                out.push(((now - from).as_millis(), tr));
            }
            now += Duration::from_millis(100);
        }
        out
    }

    #[test]
    fn parses_policies_and_refuses_bad_ones() {
        let p = policy();
        assert_eq!(p.warn, Some(Duration::from_secs(2)));
        assert_eq!(p.suspend, Some(Duration::from_secs(6)));
        assert_eq!(
            "pause=15m".parse::<IdlePolicy>().unwrap().pause,
            Some(Duration::from_secs(900))
        );
        assert_eq!("never".parse::<IdlePolicy>().unwrap(), IdlePolicy::NEVER);
        assert_eq!(IdlePolicy::from_wire(p.to_wire()).unwrap(), p);
        assert!("pause=3s,warn=5s".parse::<IdlePolicy>().is_err());
        assert!("pause=soon".parse::<IdlePolicy>().is_err());
        assert!("nap=3s".parse::<IdlePolicy>().is_err());
        assert!(IdlePolicy::from_wire([5000, 3000, 0]).is_err());
    }

    #[test]
    fn untouched_session_walks_the_ladder_and_input_resumes() {
        let t0 = Instant::now();
        let mut t = IdleTracker::new(policy(), t0);
        let seen = run_until(&mut t, t0, t0 + Duration::from_secs(7));
        assert_eq!(
            seen,
            vec![
                (2000, Transition::Warn(Duration::from_secs(1))),
                (3000, Transition::Pause),
                (6000, Transition::Suspend),
            ]
        );
        assert_eq!(t.poll_at(), None);
        let now = t0 + Duration::from_secs(8);
        assert_eq!(t.on_input(now), Some(Transition::Resume(Phase::Suspended)));
        assert_eq!(t.phase(), Phase::Streaming);
        assert_eq!(t.poll(now + Duration::from_millis(1900)), None);
        assert_eq!(t.poll_at(), Some(now + Duration::from_secs(2)));
        // Input during the warning clears it.
        assert!(matches!(
            t.poll(now + Duration::from_millis(2100)),
            Some(Transition::Warn(_))
        ));
        assert_eq!(
            t.on_input(now + Duration::from_millis(2500)),
            Some(Transition::Clear)
        );
    }

    #[test]
    fn keep_active_holds_off_the_pause_and_a_new_request_resumes() {
        let t0 = Instant::now();
        let mut t = IdleTracker::new(policy(), t0);
        let keep = ActivityReport {
            idle_ms: 0,
            keep_active: KeepActive::Presentation,
            ..Default::default()
        };
        t.on_report(t0, keep);
        // Reports keep coming with the idle time growing; no transition.
        for s in 1..20 {
            let now = t0 + Duration::from_secs(s);
            let r = ActivityReport {
                idle_ms: s as u32 * 1000,
                ..keep
            };
            assert_eq!(t.on_report(now, r), None, "at {s}s");
        }
        // The request ends: the idle time already passed every threshold.
        let now = t0 + Duration::from_secs(20);
        let plain = ActivityReport {
            idle_ms: 20_000,
            ..Default::default()
        };
        assert_eq!(t.on_report(now, plain), Some(Transition::Suspend));
        // A new request (a video starts) resumes without input.
        let video = ActivityReport {
            keep_active: KeepActive::Video,
            ..plain
        };
        assert_eq!(
            t.on_report(now + Duration::from_secs(1), video),
            Some(Transition::Resume(Phase::Suspended))
        );
        // The host's own keep-active does the same.
        let mut h = IdleTracker::new(policy(), t0);
        h.set_host_keep_active(true, t0);
        assert!(run_until(&mut h, t0, t0 + Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn away_pauses_at_once_and_the_hint_picks_suspend() {
        let t0 = Instant::now();
        let mut t = IdleTracker::new(policy(), t0);
        let away = ActivityReport {
            idle_ms: 500,
            presence: Presence::Away,
            ..Default::default()
        };
        assert_eq!(
            t.on_report(t0 + Duration::from_millis(500), away),
            Some(Transition::Pause)
        );
        let mut t = IdleTracker::new(policy(), t0);
        let leaving = ActivityReport {
            idle_ms: 0,
            expected_idle_s: 3600,
            ..Default::default()
        };
        t.on_report(t0, leaving);
        let seen = run_until(&mut t, t0, t0 + Duration::from_secs(4));
        assert_eq!(
            seen,
            vec![
                (2000, Transition::Warn(Duration::from_secs(1))),
                (3000, Transition::Suspend)
            ]
        );
    }

    #[test]
    fn silence_counts_as_idle_and_reported_input_resumes() {
        let t0 = Instant::now();
        let mut t = IdleTracker::new(policy(), t0);
        // No reports at all: the ladder runs on the host's clock alone.
        assert_eq!(t.poll(t0 + Duration::from_secs(3)), Some(Transition::Pause));
        // The client reports speech 100 ms ago.
        let spoke = ActivityReport {
            idle_ms: 100,
            ..Default::default()
        };
        assert_eq!(
            t.on_report(t0 + Duration::from_secs(4), spoke),
            Some(Transition::Resume(Phase::Paused))
        );
        // The same report again is no new input.
        let later = ActivityReport {
            idle_ms: 1100,
            ..Default::default()
        };
        assert_eq!(t.on_report(t0 + Duration::from_secs(5), later), None);
    }
}
