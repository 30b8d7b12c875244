//! A token bucket on the caller's clock, for per-session rate limits in
//! the sans-IO cores.

use std::time::Instant;

/// A token bucket on the caller's clock: `rate` a second, `burst` at most.
/// Hand-written (a dozen lines) because the session logic runs on a clock
/// it is given, which rate-limiting crates do not take.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket: `rate` tokens a second, at most `burst` held.
    pub fn new((rate, burst): (u32, u32), now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// When the next token will be there (on the bucket's own clock),
    /// rounded up to the microsecond so that a take then succeeds.
    pub fn ready_at(&self) -> Instant {
        let short = (1.0 - self.tokens).max(0.0);
        let micros = (short / self.rate * 1e6).ceil();
        self.at + std::time::Duration::from_micros(micros as u64)
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        // (Less a rounding error, so that a take at `ready_at` succeeds.)
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new((100, 10), t0);
        assert_eq!((0..50).filter(|_| b.take(t0)).count(), 10);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..50).filter(|_| b.take(t1)).count(), 10);
        // A clock that goes back gives nothing.
        assert!(!b.take(t0));
        // Empty, the next token comes one rate step on.
        assert_eq!(b.ready_at(), t1 + Duration::from_millis(10));
        assert!(!b.take(b.ready_at() - Duration::from_millis(1)));
        assert!(b.take(t1 + Duration::from_millis(10)));
    }
}
