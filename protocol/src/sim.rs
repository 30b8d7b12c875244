//! A simulated datagram link for deterministic tests: every knob of
//! [`crate::impair`] (delay, jitter that reorders, random and burst loss, a
//! bandwidth cap, blackouts), driven by a virtual clock and a seeded
//! generator, so a run is the same every time.
//!
//! Nothing here reads a clock or sleeps: callers pass `now` in, exactly as
//! they do to the rest of the protocol.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

pub use crate::impair::{Impairment, Shaper};

/// How a [`Link`] treats datagrams.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// One-way delay every datagram gets.
    pub latency: Duration,
    /// Extra delay, uniform in `0..jitter`; datagrams overtake each other.
    pub jitter: Duration,
    /// Probability in `0.0..=1.0` that a datagram is lost.
    pub loss: f64,
    /// Seed of the link's random choices.
    pub seed: u64,
}

impl LinkConfig {
    /// A perfect link with this one-way latency.
    pub fn clean(latency: Duration) -> Self {
        Self {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
            seed: 1,
        }
    }
}

impl From<LinkConfig> for Impairment {
    fn from(c: LinkConfig) -> Self {
        Self {
            delay: c.latency,
            jitter: c.jitter,
            loss: c.loss,
            seed: c.seed,
            ..Self::default()
        }
    }
}

/// One direction of a simulated path: a [`Shaper`] deciding each
/// datagram's fate, and the datagrams in flight.
#[derive(Debug)]
pub struct Link {
    shaper: Shaper,
    order: u64,
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    /// Datagrams handed to the link.
    pub sent: u64,
    /// Datagrams it dropped (loss, full bottleneck queue, blackout).
    pub lost: u64,
}

impl Link {
    /// A link with nothing in flight: a [`LinkConfig`] or a full [`Impairment`].
    pub fn new(cfg: impl Into<Impairment>) -> Self {
        Self {
            shaper: Shaper::new(cfg.into()),
            order: 0,
            queue: BinaryHeap::new(),
            sent: 0,
            lost: 0,
        }
    }

    /// Puts a datagram on the link at `now`.
    pub fn send(&mut self, now: Instant, datagram: &[u8]) {
        self.sent += 1;
        let Some(at) = self.shaper.admit(now, datagram.len()) else {
            self.lost += 1;
            return;
        };
        self.order += 1;
        self.queue
            .push(Reverse((at, self.order, datagram.to_vec())));
    }

    /// The next datagram that has arrived by `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self
            .queue
            .peek()
            .is_some_and(|Reverse((t, _, _))| *t <= now)
        {
            self.queue.pop().map(|Reverse((_, _, d))| d)
        } else {
            None
        }
    }

    /// When the next datagram arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_after_latency_and_loses_about_the_configured_share() {
        let t0 = Instant::now();
        let mut l = Link::new(LinkConfig {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            loss: 0.1,
            seed: 42,
        });
        for i in 0..10_000u32 {
            l.send(t0, &i.to_be_bytes());
        }
        assert!(l.poll(t0 + Duration::from_millis(19)).is_none());
        let mut got = 0;
        while l.poll(t0 + Duration::from_millis(25)).is_some() {
            got += 1;
        }
        assert_eq!(got + l.lost, 10_000);
        assert!((800..1200).contains(&l.lost), "lost {}", l.lost);
    }

    #[test]
    fn same_seed_same_run() {
        let run = |seed| {
            let t0 = Instant::now();
            let mut l = Link::new(LinkConfig {
                latency: Duration::from_millis(1),
                jitter: Duration::from_millis(3),
                loss: 0.2,
                seed,
            });
            for i in 0..100u8 {
                l.send(t0, &[i]);
            }
            let mut out = Vec::new();
            while let Some(d) = l.poll(t0 + Duration::from_secs(1)) {
                out.push(d[0]);
            }
            out
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
