//! Network impairment as a pure model: what a path does to each datagram —
//! delay, jitter (which reorders), random and burst loss, a bandwidth cap
//! with a bounded bottleneck queue, and blackouts, any of which may change
//! at scripted times — decided from `now` and the datagram's size, with a
//! seeded generator.
//!
//! The same [`Shaper`] drives the simulated [`crate::sim::Link`] of the
//! protocol tests (virtual clock) and the UDP impairment relay the demo,
//! the end-to-end tests and the benchmarks put in front of gateways (real
//! clock), so both see the same network.

use std::str::FromStr;
use std::time::{Duration, Instant};

/// What a path does to traffic, per direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// One-way delay every datagram gets.
    pub delay: Duration,
    /// Extra delay, uniform in `0..jitter`; datagrams overtake each other.
    pub jitter: Duration,
    /// Share of datagrams lost, `0.0..=1.0`.
    pub loss: f64,
    /// Mean length of a loss burst in datagrams (1 = independent losses).
    /// The long-run loss stays `loss` (a two-state Gilbert–Elliott model).
    pub burst: f64,
    /// Bottleneck rate in bit/s (`None`: unlimited).
    pub bandwidth_bps: Option<u64>,
    /// Most queueing delay the bottleneck holds before dropping (tail drop).
    pub queue: Duration,
    /// Outages: (start, length) from the first datagram; nothing passes.
    pub blackouts: Vec<(Duration, Duration)>,
    /// Seed of the random choices.
    pub seed: u64,
    /// Scripted changes: from each time on (since the first datagram, in
    /// increasing order) the path is this one instead. Their own `phases`,
    /// `blackouts` and `seed` are not used.
    pub phases: Vec<(Duration, Impairment)>,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: 1.0,
            bandwidth_bps: None,
            queue: Duration::from_millis(100),
            blackouts: Vec::new(),
            seed: 1,
            phases: Vec::new(),
        }
    }
}

/// A spec that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network spec `{item}`: {reason}")]
pub struct SpecError {
    /// The offending `key=value`.
    pub item: String,
    /// What is wrong with it.
    pub reason: String,
}

pub(crate) fn duration(v: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    let x: f64 = num.trim().parse().ok()?;
    (x.is_finite() && x >= 0.0 && x * scale <= 3600.0).then(|| Duration::from_secs_f64(x * scale))
}

fn rate(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let (num, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(suffix, scale)| lower.strip_suffix(suffix).map(|n| (n.to_string(), *scale)))?;
    let x: f64 = num.trim().parse().ok()?;
    (x.is_finite() && x > 0.0 && x * scale >= 1000.0).then_some((x * scale) as u64)
}

impl FromStr for Impairment {
    type Err = SpecError;

    /// A path as `key=value` pairs separated by commas, for example
    /// `rtt=40ms,jitter=5ms,loss=5%,burst=3,bw=20mbit,queue=100ms,blackout=3s+500ms,seed=7`.
    /// `rtt` is split evenly between the two directions; `jitter`, `loss`,
    /// `bw` and `blackout` apply to each direction; `blackout` may repeat.
    ///
    /// Changes over time follow as `; @TIME key=value,…` phases, each
    /// starting from the path before it: `bw=20mbit; @5s bw=5mbit; @10s
    /// bw=20mbit,loss=2%` (times from the first datagram, increasing;
    /// `blackout` and `seed` belong to the first part).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(';');
        let mut imp = Self::default();
        imp.apply(parts.next().unwrap_or_default(), true)?;
        let mut last = Duration::ZERO;
        for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |reason: &str| SpecError {
                item: part.to_string(),
                reason: reason.to_string(),
            };
            let (at, items) = part
                .strip_prefix('@')
                .map(|p| p.split_once(char::is_whitespace).unwrap_or((p, "")))
                .ok_or_else(|| bad("a later phase starts with @TIME, such as @5s bw=5mbit"))?;
            let at = duration(at).ok_or_else(|| bad("expected @TIME such as @5s"))?;
            if at <= last {
                return Err(bad("phases must come in increasing time"));
            }
            last = at;
            let mut phase = imp
                .phases
                .last()
                .map_or_else(|| imp.clone(), |(_, p)| p.clone());
            phase.phases.clear();
            phase.apply(items, false)?;
            imp.phases.push((at, phase));
        }
        Ok(imp)
    }
}

impl Impairment {
    /// Applies comma-separated `key=value` items; `blackout` and `seed` only
    /// where `first`.
    fn apply(&mut self, s: &str, first: bool) -> Result<(), SpecError> {
        let imp = self;
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = |reason: &str| SpecError {
                item: item.to_string(),
                reason: reason.to_string(),
            };
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad("expected key=value"))?;
            let value = value.trim();
            match key.trim() {
                "rtt" => {
                    imp.delay =
                        duration(value).ok_or_else(|| bad("expected a time such as 40ms"))? / 2;
                }
                "delay" => {
                    imp.delay =
                        duration(value).ok_or_else(|| bad("expected a time such as 20ms"))?;
                }
                "jitter" => {
                    imp.jitter =
                        duration(value).ok_or_else(|| bad("expected a time such as 5ms"))?;
                }
                "loss" => {
                    let pct: f64 = value
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse().ok())
                        .filter(|p: &f64| (0.0..=100.0).contains(p))
                        .ok_or_else(|| bad("expected a percentage such as 5%"))?;
                    imp.loss = pct / 100.0;
                }
                "burst" => {
                    imp.burst = value
                        .parse()
                        .ok()
                        .filter(|b: &f64| (1.0..=1000.0).contains(b))
                        .ok_or_else(|| {
                            bad("expected a mean burst length of 1 to 1000 datagrams")
                        })?;
                }
                "bw" => {
                    imp.bandwidth_bps =
                        Some(rate(value).ok_or_else(|| bad("expected a rate such as 20mbit"))?);
                }
                "queue" => {
                    imp.queue =
                        duration(value).ok_or_else(|| bad("expected a time such as 100ms"))?;
                }
                "blackout" | "seed" if !first => {
                    return Err(bad("only in the first part of the spec, before any @TIME"));
                }
                "blackout" => {
                    let (at, len) = value
                        .split_once('+')
                        .and_then(|(a, l)| Some((duration(a)?, duration(l)?)))
                        .ok_or_else(|| bad("expected START+LENGTH such as 3s+500ms"))?;
                    imp.blackouts.push((at, len));
                }
                "seed" => {
                    imp.seed = value.parse().map_err(|_| bad("expected a number"))?;
                }
                _ => {
                    return Err(bad(
                        "unknown key (rtt, delay, jitter, loss, burst, bw, queue, blackout, seed)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// No impairment but this one-way delay.
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// The same path with `extra` one-way delay added (a distant PoP behind
    /// an impaired access network).
    pub fn plus_delay(&self, extra: Duration) -> Self {
        Self {
            delay: self.delay + extra,
            phases: self
                .phases
                .iter()
                .map(|(at, p)| (*at, p.plus_delay(extra)))
                .collect(),
            ..self.clone()
        }
    }

    /// The path in force `since` the first datagram.
    fn at(&self, since: Duration) -> &Self {
        self.phases
            .iter()
            .rev()
            .find(|(at, _)| since >= *at)
            .map_or(self, |(_, p)| p)
    }

    /// The same path with another seed (each direction draws its own luck).
    pub fn with_seed(&self, seed: u64) -> Self {
        Self {
            seed,
            ..self.clone()
        }
    }
}

/// Spreads a small seed over all 64 bits (splitmix64's finaliser): xorshift
/// started from a small number draws tiny values first, which made the first
/// datagrams of every flow count as lost.
fn scramble(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

/// Counters of a [`Shaper`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaperStats {
    /// Datagrams offered.
    pub offered: u64,
    /// Lost at random or in a burst.
    pub lost: u64,
    /// Dropped because the bottleneck queue was full.
    pub overflowed: u64,
    /// Dropped in a blackout.
    pub blacked_out: u64,
}

/// Applies an [`Impairment`] to a stream of datagrams.
#[derive(Debug, Clone)]
pub struct Shaper {
    cfg: Impairment,
    rng: u64,
    epoch: Option<Instant>,
    link_free_at: Option<Instant>,
    in_burst: bool,
    /// What happened so far.
    pub stats: ShaperStats,
}

impl Shaper {
    /// A shaper with nothing in flight.
    pub fn new(cfg: Impairment) -> Self {
        Self {
            rng: scramble(cfg.seed),
            cfg,
            epoch: None,
            link_free_at: None,
            in_burst: false,
            stats: ShaperStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Impairment {
        &self.cfg
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: small, fast, and deterministic for a seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn unit(&mut self) -> f64 {
        (self.next_random() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn lose(&mut self, loss: f64, burst: f64) -> bool {
        if loss <= 0.0 {
            return false;
        }
        if burst <= 1.0 || loss >= 1.0 {
            return self.unit() < loss;
        }
        // Gilbert–Elliott with a lossless good state and a fully lossy bad
        // state: leave the bad state with 1/burst, enter it so that the
        // long-run share of bad datagrams is `loss`.
        let leave = 1.0 / burst;
        let enter = loss * leave / (1.0 - loss);
        let flip = self.unit();
        self.in_burst = if self.in_burst {
            flip >= leave
        } else {
            flip < enter
        };
        self.in_burst
    }

    /// Offers a datagram of `len` bytes at `now`: when it arrives at the far
    /// end, or `None` if the path drops it.
    pub fn admit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        self.stats.offered += 1;
        let since = now.saturating_duration_since(*self.epoch.get_or_insert(now));
        if self
            .cfg
            .blackouts
            .iter()
            .any(|&(at, d)| since >= at && since < at + d)
        {
            self.stats.blacked_out += 1;
            return None;
        }
        let path = self.cfg.at(since);
        let (loss, burst, bandwidth, queue) =
            (path.loss, path.burst, path.bandwidth_bps, path.queue);
        let (delay, jitter) = (path.delay, path.jitter);
        if self.lose(loss, burst) {
            self.stats.lost += 1;
            return None;
        }
        let departs = match bandwidth {
            Some(bps) => {
                let start = self.link_free_at.map_or(now, |t| t.max(now));
                if start.saturating_duration_since(now) > queue {
                    self.stats.overflowed += 1;
                    return None;
                }
                let on_wire = Duration::from_secs_f64((len as f64 + 28.0) * 8.0 / bps as f64);
                self.link_free_at = Some(start + on_wire);
                start + on_wire
            }
            None => now,
        };
        let jitter = jitter.mul_f64(self.unit());
        Some(departs + delay + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_which_item() {
        let imp: Impairment =
            "rtt=40ms, jitter=5ms,loss=5%,burst=3,bw=20mbit,blackout=3s+500ms,seed=9"
                .parse()
                .unwrap();
        assert_eq!(imp.delay, Duration::from_millis(20));
        assert_eq!(imp.jitter, Duration::from_millis(5));
        assert!((imp.loss - 0.05).abs() < 1e-12);
        assert_eq!(imp.burst, 3.0);
        assert_eq!(imp.bandwidth_bps, Some(20_000_000));
        assert_eq!(
            imp.blackouts,
            vec![(Duration::from_secs(3), Duration::from_millis(500))]
        );
        assert_eq!(imp.seed, 9);
        assert_eq!("".parse::<Impairment>().unwrap(), Impairment::default());
        for (spec, item) in [
            ("rtt=40", "rtt=40"),
            ("loss=5", "loss=5"),
            ("loss=120%", "loss=120%"),
            ("bw=fast", "bw=fast"),
            ("rtt=40ms,colour=blue", "colour=blue"),
            ("blackout=3s", "blackout=3s"),
        ] {
            let e = spec.parse::<Impairment>().unwrap_err();
            assert_eq!(e.item, item, "{spec}");
        }
    }

    #[test]
    fn later_phases_start_from_the_one_before_and_bad_ones_are_named() {
        let imp: Impairment = "rtt=40ms,bw=20mbit; @5s bw=5mbit ; @10s loss=2%"
            .parse()
            .unwrap();
        assert_eq!(imp.bandwidth_bps, Some(20_000_000));
        let [(t1, p1), (t2, p2)] = &imp.phases[..] else {
            panic!("{imp:?}");
        };
        assert_eq!(
            (*t1, *t2),
            (Duration::from_secs(5), Duration::from_secs(10))
        );
        assert_eq!(p1.bandwidth_bps, Some(5_000_000));
        assert_eq!(p1.delay, Duration::from_millis(20));
        assert_eq!(p2.bandwidth_bps, Some(5_000_000));
        assert!((p2.loss - 0.02).abs() < 1e-12 && p1.loss == 0.0);
        // A PoP's extra delay reaches every phase.
        let far = imp.plus_delay(Duration::from_millis(5));
        assert_eq!(far.phases[1].1.delay, Duration::from_millis(25));
        for (spec, item) in [
            ("rtt=40ms; 5s bw=5mbit", "5s bw=5mbit"),
            ("bw=1mbit; @5s bw=2mbit; @3s bw=3mbit", "@3s bw=3mbit"),
            ("bw=1mbit; @soon bw=2mbit", "@soon bw=2mbit"),
            ("loss=1%; @2s blackout=1s+1s", "blackout=1s+1s"),
            ("loss=1%; @2s loss=lots", "loss=lots"),
        ] {
            let e = spec.parse::<Impairment>().unwrap_err();
            assert_eq!(e.item, item, "{spec}");
        }
    }

    #[test]
    fn a_phase_changes_the_path_at_its_time() {
        // 1000-byte datagrams every 0.5 ms (16 Mbit/s): unlimited for the
        // first second, then a 10 Mbit/s cap, then 50 % loss from 2 s.
        let imp: Impairment = "delay=10ms; @1s bw=10mbit,queue=50ms; @2s loss=50%"
            .parse()
            .unwrap();
        let (s, out) = run(imp, 6000, 1000, Duration::from_micros(500));
        let lost = |r: std::ops::Range<usize>| out[r].iter().filter(|o| o.is_none()).count();
        assert_eq!(lost(0..2000), 0);
        assert!(
            out[..2000]
                .iter()
                .all(|o| *o == Some(Duration::from_millis(10)))
        );
        let capped = lost(2000..4000);
        assert!(
            (500..900).contains(&capped),
            "{capped} of 2000: {:?}",
            s.stats
        );
        // Half of 16 Mbit/s fits under the cap: only the random loss now.
        let late = lost(4000..6000);
        assert!((900..1150).contains(&late), "{late} of 2000: {:?}", s.stats);
        assert!((900..1100).contains(&s.stats.lost), "{:?}", s.stats);
    }

    fn run(
        imp: Impairment,
        n: usize,
        len: usize,
        every: Duration,
    ) -> (Shaper, Vec<Option<Duration>>) {
        let t0 = Instant::now();
        let mut s = Shaper::new(imp);
        let out = (0..n)
            .map(|i| {
                let now = t0 + every * i as u32;
                s.admit(now, len).map(|at| at - now)
            })
            .collect();
        (s, out)
    }

    #[test]
    fn random_and_burst_loss_keep_the_configured_share() {
        for burst in [1.0, 4.0] {
            let imp = Impairment {
                loss: 0.05,
                burst,
                seed: 3,
                ..Impairment::default()
            };
            let (s, out) = run(imp, 100_000, 100, Duration::from_micros(100));
            let share = s.stats.lost as f64 / 100_000.0;
            assert!((0.04..0.06).contains(&share), "burst {burst}: {share}");
            // Mean run of consecutive losses.
            let mut runs = Vec::new();
            let mut cur = 0;
            for o in &out {
                if o.is_none() {
                    cur += 1;
                } else if cur > 0 {
                    runs.push(cur);
                    cur = 0;
                }
            }
            let mean = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
            assert!(
                (mean - burst).abs() < burst * 0.25 + 0.1,
                "burst {burst}: mean run {mean}"
            );
        }
    }

    #[test]
    fn a_bandwidth_cap_queues_then_drops_at_the_queue_limit() {
        // 1000-byte datagrams every 0.5 ms is 16 Mbit/s into a 10 Mbit/s cap.
        let imp = Impairment {
            bandwidth_bps: Some(10_000_000),
            queue: Duration::from_millis(50),
            ..Impairment::default()
        };
        let (s, out) = run(imp, 4000, 1000, Duration::from_micros(500));
        assert!(s.stats.overflowed > 1000, "{:?}", s.stats);
        let worst = out.iter().flatten().max().unwrap();
        assert!(*worst <= Duration::from_millis(52), "{worst:?}");
        // What got through fits the cap: ~10/16 of the offered 2 s.
        let passed = out.iter().flatten().count() as f64;
        let mbit = passed * (1028.0 * 8.0) / 2.0 / 1e6;
        assert!((9.0..10.5).contains(&mbit), "{mbit} Mbit/s");
    }

    #[test]
    fn the_first_datagrams_are_not_doomed_by_a_small_seed() {
        // Over many flows with consecutive small seeds, the first datagram
        // of a flow is lost about as often as any other.
        let t0 = Instant::now();
        let first_lost = (1..=2000u64)
            .filter(|&seed| {
                Shaper::new(Impairment {
                    loss: 0.05,
                    seed,
                    ..Impairment::default()
                })
                .admit(t0, 100)
                .is_none()
            })
            .count();
        assert!((50..150).contains(&first_lost), "{first_lost} of 2000");
    }

    #[test]
    fn blackouts_drop_everything_in_their_window() {
        let imp = Impairment {
            delay: Duration::from_millis(10),
            blackouts: vec![(Duration::from_millis(100), Duration::from_millis(50))],
            ..Impairment::default()
        };
        let (s, out) = run(imp, 300, 100, Duration::from_millis(1));
        assert_eq!(s.stats.blacked_out, 50);
        assert!(
            out[99].is_some() && out[100].is_none() && out[149].is_none() && out[150].is_some()
        );
        assert_eq!(out[0], Some(Duration::from_millis(10)));
    }
}
