//! The user's activity as the client sees it: fed by keyboard, mouse,
//! gamepad and microphone input and by the window's state, read by the
//! network thread for its heartbeat to the host (see
//! [`nephele_protocol::activity`], where the host decides what idleness means).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nephele_protocol::activity::{ActivityReport, IDLE_AFTER, KeepActive, Presence};

use crate::clock::local_us;

/// Shared between the threads that see input and the network thread.
#[derive(Debug)]
pub struct Activity {
    /// The last input, on [`local_us`]'s clock.
    last_input_us: AtomicI64,
    /// Input since the network thread last looked.
    fresh: AtomicBool,
    background: AtomicBool,
    away: AtomicBool,
    keep_active: AtomicU8,
    expected_idle_s: AtomicU32,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            last_input_us: AtomicI64::new(local_us(Instant::now())),
            fresh: AtomicBool::new(false),
            background: AtomicBool::new(false),
            away: AtomicBool::new(false),
            keep_active: AtomicU8::new(KeepActive::No as u8),
            expected_idle_s: AtomicU32::new(0),
        }
    }
}

/// Speech louder than this RMS (about −40 dBFS) counts as input.
pub const SPEECH_RMS: f32 = 0.01;

impl Activity {
    /// The user gave input now.
    pub fn touch(&self) {
        self.last_input_us
            .store(local_us(Instant::now()), Ordering::Relaxed);
        self.fresh.store(true, Ordering::Release);
    }

    /// Whether input came since the last call (the network thread then
    /// reports at once instead of at its next heartbeat).
    pub fn take_fresh(&self) -> bool {
        self.fresh.swap(false, Ordering::AcqRel)
    }

    /// The window is minimised, hidden or unfocused.
    pub fn set_background(&self, on: bool) {
        self.background.store(on, Ordering::Relaxed);
    }

    /// The user cannot see the stream (screen locked, display off, asleep).
    pub fn set_away(&self, on: bool) {
        self.away.store(on, Ordering::Relaxed);
    }

    /// Asks the service to keep the session active without input.
    pub fn set_keep_active(&self, why: KeepActive) {
        self.keep_active.store(why as u8, Ordering::Relaxed);
        self.fresh.store(true, Ordering::Release);
    }

    /// The standing keep-active request.
    pub fn keep_active(&self) -> KeepActive {
        KeepActive::from_u8(self.keep_active.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// Announces how long the user expects to be away.
    pub fn set_expected_idle(&self, d: Duration) {
        self.expected_idle_s.store(
            d.as_secs().min(u64::from(u32::MAX)) as u32,
            Ordering::Relaxed,
        );
    }

    /// Time since the last input.
    pub fn idle(&self, now: Instant) -> Duration {
        let last = self.last_input_us.load(Ordering::Relaxed);
        Duration::from_micros((local_us(now) - last).max(0) as u64)
    }

    /// The heartbeat to send now.
    pub fn report(&self, now: Instant) -> ActivityReport {
        let idle = self.idle(now);
        let presence = if self.away.load(Ordering::Relaxed) {
            Presence::Away
        } else if self.background.load(Ordering::Relaxed) {
            Presence::Background
        } else if idle >= IDLE_AFTER {
            Presence::Idle
        } else {
            Presence::Active
        };
        ActivityReport {
            idle_ms: idle.as_millis().min(u128::from(u32::MAX)) as u32,
            presence,
            keep_active: self.keep_active(),
            expected_idle_s: self.expected_idle_s.load(Ordering::Relaxed),
        }
    }

    /// A block of microphone samples: speech counts as input.
    pub fn heard(&self, samples: &[f32]) {
        if samples.is_empty() {
            return;
        }
        let energy = samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32;
        if energy.sqrt() >= SPEECH_RMS {
            self.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_window_state_and_speech_shape_the_report() {
        let a = Activity::default();
        let later = Instant::now() + Duration::from_secs(90);
        let r = a.report(later);
        assert_eq!(r.presence, Presence::Idle);
        assert!(r.idle_ms >= 89_000, "{}", r.idle_ms);
        a.heard(&[0.001; 480]);
        assert!(!a.take_fresh(), "silence is not input");
        a.heard(&[0.2, -0.2].repeat(240));
        assert!(a.take_fresh(), "speech is input");
        assert!(a.report(Instant::now()).idle_ms < 1000);
        a.set_background(true);
        assert_eq!(a.report(Instant::now()).presence, Presence::Background);
        a.set_away(true);
        assert_eq!(a.report(Instant::now()).presence, Presence::Away);
        a.set_keep_active(KeepActive::Presentation);
        assert_eq!(
            a.report(Instant::now()).keep_active,
            KeepActive::Presentation
        );
    }
}
