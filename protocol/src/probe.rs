//! Latency probes: how the client measures each point of presence and picks
//! the one that carries the stream.
//!
//! The probe protocol is a single UDP exchange that every gateway answers
//! without keeping state:
//!
//! ```text
//! request  "NPRQ" version seq:u16 stamp_us:u64 token_len:u16 token padding…   (≥ 64 bytes)
//! reply    "NPRP" version status:u8 seq:u16 stamp_us:u64 load:u16 reserved:u16 (20 bytes)
//! ```
//!
//! A reply is never larger than the request that caused it (requests are
//! padded to [`MIN_REQUEST_LEN`], replies are [`REPLY_LEN`]), and requests
//! carry the session token, so a gateway cannot be used to amplify or reflect
//! traffic toward a third party; gateways rate-limit what they answer to
//! requests without a valid token.
//!
//! [`Prober`] is the client side: it sends a few probes to every candidate at
//! a fixed interval, times the replies against its own send times, skips a
//! candidate that stays silent, and decides as soon as waiting longer cannot
//! change the choice. [`score`] and [`rank`] turn the measurements into an
//! order; [`Switcher`] applies hysteresis to background re-probes so the
//! session only moves when another PoP is clearly and lastingly better.

use std::time::{Duration, Instant};

use crate::PROTOCOL_VERSION;

/// First bytes of a probe request.
pub const REQUEST_MAGIC: [u8; 4] = *b"NPRQ";
/// First bytes of a probe reply.
pub const REPLY_MAGIC: [u8; 4] = *b"NPRP";
/// Size of every reply.
pub const REPLY_LEN: usize = 20;
/// Requests are padded to at least this size; anything shorter is ignored.
pub const MIN_REQUEST_LEN: usize = 64;
/// Largest request accepted.
pub const MAX_REQUEST_LEN: usize = crate::MAX_DATAGRAM;
/// Header bytes before the token in a request.
const REQUEST_HEADER: usize = 4 + 1 + 2 + 8 + 2;
/// Longest token a request can carry.
pub const MAX_TOKEN_LEN: usize = MAX_REQUEST_LEN - REQUEST_HEADER;
/// Most probes per candidate a [`Prober`] sends.
pub const MAX_PROBES: usize = 16;

// The anti-amplification guarantee, checked at compile time.
const _: () = assert!(REPLY_LEN <= MIN_REQUEST_LEN);

/// Why a probe datagram was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Wrong size or magic: not a probe at all.
    #[error("not a probe datagram")]
    NotProbe,
    /// A probe of another protocol version.
    #[error("probe version {0} is not supported")]
    Version(u8),
    /// The token length runs past the datagram.
    #[error("probe token length {0} exceeds the datagram")]
    TokenLength(usize),
    /// A reply with an unknown status byte.
    #[error("unknown probe status {0}")]
    Status(u8),
}

/// A probe request as seen by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRequest<'a> {
    /// Which probe of the series (the prober's round).
    pub seq: u16,
    /// The prober's timestamp, echoed back untouched.
    pub stamp_us: u64,
    /// The session token authorising the probe (may be empty).
    pub token: &'a [u8],
}

impl<'a> ProbeRequest<'a> {
    /// Appends the request, padded to [`MIN_REQUEST_LEN`]. Tokens longer than
    /// [`MAX_TOKEN_LEN`] are truncated (and will then fail verification).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let token = &self.token[..self.token.len().min(MAX_TOKEN_LEN)];
        out.extend_from_slice(&REQUEST_MAGIC);
        out.push(PROTOCOL_VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.stamp_us.to_be_bytes());
        out.extend_from_slice(&(token.len() as u16).to_be_bytes());
        out.extend_from_slice(token);
        let len = out.len() - start;
        if len < MIN_REQUEST_LEN {
            out.resize(start + MIN_REQUEST_LEN, 0);
        }
    }

    /// Parses a request; short, oversized or foreign datagrams are errors.
    pub fn decode(buf: &'a [u8]) -> Result<Self, ProbeError> {
        if buf.len() < MIN_REQUEST_LEN || buf.len() > MAX_REQUEST_LEN || buf[..4] != REQUEST_MAGIC {
            return Err(ProbeError::NotProbe);
        }
        if buf[4] != PROTOCOL_VERSION {
            return Err(ProbeError::Version(buf[4]));
        }
        let seq = u16::from_be_bytes([buf[5], buf[6]]);
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&buf[7..15]);
        let token_len = u16::from_be_bytes([buf[15], buf[16]]) as usize;
        let token = buf
            .get(REQUEST_HEADER..REQUEST_HEADER + token_len)
            .ok_or(ProbeError::TokenLength(token_len))?;
        Ok(Self {
            seq,
            stamp_us: u64::from_be_bytes(stamp),
            token,
        })
    }
}

wire_enum! {
    /// How a gateway answered a probe.
    pub enum ProbeStatus {
        /// Accepting sessions.
        Ok = 0 => "ok",
        /// The token was missing, forged or expired.
        Unauthorized = 1 => "unauthorized",
        /// Shutting down: answer, but do not connect here.
        Draining = 2 => "draining",
    }
}

/// A gateway's answer to one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReply {
    /// The request's `seq`.
    pub seq: u16,
    /// The request's `stamp_us`.
    pub stamp_us: u64,
    /// Whether the gateway takes sessions.
    pub status: ProbeStatus,
    /// The gateway's load, 0 (idle) to 1000 (full).
    pub load_permille: u16,
}

impl ProbeReply {
    /// The reply to `req`.
    pub fn to(req: &ProbeRequest<'_>, status: ProbeStatus, load_permille: u16) -> Self {
        Self {
            seq: req.seq,
            stamp_us: req.stamp_us,
            status,
            load_permille: load_permille.min(1000),
        }
    }

    /// The reply's bytes.
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let mut b = [0u8; REPLY_LEN];
        b[..4].copy_from_slice(&REPLY_MAGIC);
        b[4] = PROTOCOL_VERSION;
        b[5] = self.status as u8;
        b[6..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..16].copy_from_slice(&self.stamp_us.to_be_bytes());
        b[16..18].copy_from_slice(&self.load_permille.to_be_bytes());
        b
    }

    /// Parses a reply.
    pub fn decode(buf: &[u8]) -> Result<Self, ProbeError> {
        if buf.len() != REPLY_LEN || buf[..4] != REPLY_MAGIC {
            return Err(ProbeError::NotProbe);
        }
        if buf[4] != PROTOCOL_VERSION {
            return Err(ProbeError::Version(buf[4]));
        }
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&buf[8..16]);
        Ok(Self {
            status: ProbeStatus::from_u8(buf[5]).ok_or(ProbeError::Status(buf[5]))?,
            seq: u16::from_be_bytes([buf[6], buf[7]]),
            stamp_us: u64::from_be_bytes(stamp),
            load_permille: u16::from_be_bytes([buf[16], buf[17]]).min(1000),
        })
    }
}

/// A token bucket: `rate` events per second, bursts up to `burst`. Gateways
/// use it to bound the work and the replies unauthenticated probes can cause.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(rate_per_s: f64, burst: u32) -> Self {
        Self {
            rate: rate_per_s.max(0.0),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How many probes, how often, and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbePlan {
    /// Probes per candidate (at most [`MAX_PROBES`]).
    pub probes: u8,
    /// Time between rounds.
    pub interval: Duration,
    /// Whether the first probe's time is left out (it pays for cold caches,
    /// ARP and NAT set-up on the way, not for the path).
    pub discard_first: bool,
    /// When the measurement normally ends; candidates still silent then are skipped.
    pub timeout: Duration,
    /// On a path slower than `timeout` (satellite, a congested tether) no
    /// one has answered by then: wait for the first answers up to this long.
    pub give_up: Duration,
}

impl Default for ProbePlan {
    fn default() -> Self {
        Self {
            probes: 5,
            interval: Duration::from_millis(20),
            discard_first: true,
            timeout: Duration::from_millis(400),
            give_up: Duration::from_secs(3),
        }
    }
}

/// What probing found out about one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    /// Whether it answered, refused or stayed silent.
    pub state: CandidateState,
    /// Counted probes that were answered.
    pub answered: u8,
    /// Counted probes that were answered or given up on.
    pub settled: u8,
    /// Shortest round trip.
    pub rtt_min: Duration,
    /// Median round trip.
    pub rtt_median: Duration,
    /// Mean absolute difference between consecutive round trips (RFC 3550's
    /// interarrival jitter, without its smoothing: there are only a few samples).
    pub jitter: Duration,
    /// Fraction of settled probes that went unanswered.
    pub loss: f64,
    /// Advertised load, 0.0 (idle) to 1.0 (full).
    pub load: f64,
}

/// Whether a candidate can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateState {
    /// Answered with status Ok.
    Usable,
    /// Answered but refused the token or is draining.
    Refused,
    /// No reply at all.
    Silent,
}

#[derive(Debug, Clone, Default)]
struct Target {
    sent: [Option<Instant>; MAX_PROBES],
    rtt: [Option<Duration>; MAX_PROBES],
    status: Option<ProbeStatus>,
    load_permille: u16,
}

/// The client side of probing, for any number of candidates at once.
///
/// Drive it with [`Prober::poll_transmit`] (datagrams to send, each tagged
/// with its candidate), [`Prober::handle_reply`] (datagrams received from a
/// candidate's probe address), [`Prober::poll_timeout`] and
/// [`Prober::is_done`]; then read [`Prober::results`].
#[derive(Debug)]
pub struct Prober {
    plan: ProbePlan,
    token: Vec<u8>,
    start: Instant,
    targets: Vec<Target>,
    round: u8,
    cursor: usize,
    next_round_at: Instant,
    first_reply_at: Option<Instant>,
}

impl Prober {
    /// Starts probing `candidates` targets at `now`.
    pub fn new(candidates: usize, token: &[u8], mut plan: ProbePlan, now: Instant) -> Self {
        plan.probes = plan.probes.clamp(1, MAX_PROBES as u8);
        if plan.probes == 1 {
            plan.discard_first = false;
        }
        Self {
            plan,
            token: token.to_vec(),
            start: now,
            targets: vec![Target::default(); candidates],
            round: 0,
            cursor: 0,
            next_round_at: now,
            first_reply_at: None,
        }
    }

    /// The next probe to send, if one is due: writes it to `out` (cleared
    /// first) and returns the candidate it is for.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<usize> {
        if self.targets.is_empty() || self.round >= self.plan.probes || now < self.next_round_at {
            return None;
        }
        let idx = self.cursor;
        let round = usize::from(self.round);
        self.targets[idx].sent[round] = Some(now);
        out.clear();
        ProbeRequest {
            seq: u16::from(self.round),
            stamp_us: self.stamp(now),
            token: &self.token,
        }
        .encode(out);
        self.cursor += 1;
        if self.cursor == self.targets.len() {
            self.cursor = 0;
            self.round += 1;
            self.next_round_at += self.plan.interval;
        }
        Some(idx)
    }

    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_micros() as u64
    }

    /// Takes a datagram that came from candidate `idx`'s probe address.
    /// Replies that do not match a probe sent to that candidate (wrong
    /// sequence, wrong echo, duplicates) are ignored.
    pub fn handle_reply(&mut self, idx: usize, datagram: &[u8], now: Instant) {
        let Ok(reply) = ProbeReply::decode(datagram) else {
            return;
        };
        let seq = usize::from(reply.seq);
        let Some(sent) = self
            .targets
            .get(idx)
            .and_then(|t| t.sent.get(seq).copied().flatten())
        else {
            return;
        };
        if reply.stamp_us != self.stamp(sent) {
            return;
        }
        self.first_reply_at.get_or_insert(now);
        let t = &mut self.targets[idx];
        if t.rtt[seq].is_none() {
            t.rtt[seq] = Some(now.saturating_duration_since(sent));
        }
        t.status = Some(reply.status);
        t.load_permille = reply.load_permille;
    }

    fn counted(&self) -> std::ops::Range<usize> {
        usize::from(self.plan.discard_first)..usize::from(self.plan.probes)
    }

    fn complete(&self, t: &Target) -> bool {
        self.round >= self.plan.probes && self.counted().all(|i| t.rtt[i].is_some())
    }

    /// When the measurement ends even if replies are still missing: at the
    /// timeout, or earlier once every remaining reply would come too late to
    /// beat the nearest candidate that answered (three times its median
    /// after the last round, at least 30 ms). When nothing has answered by the timeout,
    /// a quarter of the timeout after the first reply, or at `give_up`.
    pub fn deadline(&self) -> Instant {
        let normal = self.start + self.plan.timeout;
        let hard = match self.first_reply_at {
            Some(first) if first > normal => first + self.plan.timeout / 4,
            Some(_) => normal,
            None => self.start + self.plan.give_up.max(self.plan.timeout),
        };
        if self.round < self.plan.probes {
            return hard;
        }
        let last_round = self.next_round_at - self.plan.interval;
        // The nearest candidate that answered at all: a lost probe must not
        // hold the decision to the timeout.
        let best = self
            .targets
            .iter()
            .filter(|t| t.status == Some(ProbeStatus::Ok))
            .map(|t| self.result_of(t, last_round))
            .filter(|r| r.answered > 0)
            .map(|r| r.rtt_median)
            .min();
        match best {
            Some(b) => hard.min(last_round + (b * 3).max(Duration::from_millis(30))),
            None => hard,
        }
    }

    /// Whether the measurement is over: every reply is in, or the deadline
    /// passed (nothing pending at the normal timeout ends it too: later
    /// replies could only come from slower paths).
    pub fn is_done(&self, now: Instant) -> bool {
        (self.round >= self.plan.probes && self.targets.iter().all(|t| self.complete(t)))
            || now >= self.deadline()
    }

    /// When to call back: the next round, or the deadline.
    pub fn poll_timeout(&self) -> Instant {
        if self.round < self.plan.probes {
            self.next_round_at
        } else {
            self.deadline()
        }
    }

    /// Measurements so far, one per candidate, in candidate order.
    pub fn results(&self, now: Instant) -> Vec<ProbeResult> {
        self.targets
            .iter()
            .map(|t| self.result_of(t, now))
            .collect()
    }

    fn result_of(&self, t: &Target, now: Instant) -> ProbeResult {
        let mut samples = [Duration::ZERO; MAX_PROBES];
        let mut n = 0;
        let mut jitter_sum = Duration::ZERO;
        let mut prev: Option<Duration> = None;
        for i in self.counted() {
            if let Some(r) = t.rtt[i] {
                samples[n] = r;
                n += 1;
                if let Some(p) = prev {
                    jitter_sum += r.abs_diff(p);
                }
                prev = Some(r);
            }
        }
        // Only the discarded first probe answered: better than nothing.
        if n == 0
            && let Some(r) = t.rtt[0]
        {
            samples[0] = r;
            n = 1;
        }
        let answered = n as u8;
        let sorted = &mut samples[..n];
        sorted.sort_unstable();
        let (rtt_min, rtt_median) = if n == 0 {
            (Duration::ZERO, Duration::ZERO)
        } else {
            (sorted[0], sorted[n / 2])
        };
        // A probe is only counted lost once its reply is clearly overdue.
        let overdue = (rtt_min * 3).max(Duration::from_millis(50));
        let mut settled = 0u8;
        let mut lost = 0u8;
        for i in self.counted() {
            match (t.sent[i], t.rtt[i]) {
                (_, Some(_)) => settled += 1,
                (Some(s), None) if now.saturating_duration_since(s) > overdue => {
                    settled += 1;
                    lost += 1;
                }
                _ => {}
            }
        }
        let state = match t.status {
            None => CandidateState::Silent,
            Some(ProbeStatus::Ok) => CandidateState::Usable,
            Some(_) => CandidateState::Refused,
        };
        ProbeResult {
            state,
            answered,
            settled,
            rtt_min,
            rtt_median,
            jitter: if n > 1 {
                jitter_sum / (n as u32 - 1)
            } else {
                Duration::ZERO
            },
            loss: if settled == 0 {
                0.0
            } else {
                f64::from(lost) / f64::from(settled)
            },
            load: f64::from(t.load_permille) / 1000.0,
        }
    }
}

/// How measurements become a score (lower is better), in milliseconds.
///
/// `score = min RTT + jitter × jitter_weight + loss × loss_ms + load × load_ms`,
/// where `loss` is what the probes prove at least ([`loss_evidence`]).
///
/// * The minimum RTT is the path's distance: queueing on the way and
///   scheduling at either end only ever add to a sample, so the smallest of
///   a few is the steadiest estimate (the median moves with every busy moment
///   of the measuring machine).
/// * Jitter is charged once: it is what the client's pacing must absorb on
///   top of the distance.
/// * Each lost packet costs a repair (parity or a keyframe) and risks a
///   visible stall; 5 % proven loss is valued like 20 ms of extra delay,
///   25 % like 100 ms.
/// * A full gateway (load 1.0) is valued like 20 ms of extra delay: enough to
///   prefer an idle PoP of similar distance, not enough to send the user far away.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankWeights {
    /// Multiplier on jitter.
    pub jitter_weight: f64,
    /// Milliseconds added per unit of loss (1.0 = every probe lost).
    pub loss_ms: f64,
    /// Milliseconds added at full load.
    pub load_ms: f64,
}

impl Default for RankWeights {
    fn default() -> Self {
        Self {
            jitter_weight: 1.0,
            loss_ms: 400.0,
            load_ms: 20.0,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The loss a candidate can be charged with: the lower end of the 95 %
/// Wilson interval of what its probes showed. One lost probe in four is
/// weak evidence (a lossy access network loses probes to every PoP alike)
/// and costs about 4.5 %; two in four cost 15 %; none costs nothing.
pub fn loss_evidence(r: &ProbeResult) -> f64 {
    let n = f64::from(r.settled);
    if n == 0.0 || r.loss <= 0.0 {
        return 0.0;
    }
    let (p, z2) = (r.loss, 1.96f64 * 1.96);
    let centre = p + z2 / (2.0 * n);
    let spread = (z2 * (p * (1.0 - p) / n + z2 / (4.0 * n * n))).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// The score of a usable candidate in milliseconds; `None` for silent or refusing ones.
pub fn score(r: &ProbeResult, w: &RankWeights) -> Option<f64> {
    (r.state == CandidateState::Usable && r.answered > 0).then(|| {
        ms(r.rtt_min)
            + w.jitter_weight * ms(r.jitter)
            + w.loss_ms * loss_evidence(r)
            + w.load_ms * r.load
    })
}

/// Candidate indices from best to worst: usable ones by score, then the
/// rest (kept so a caller can still list them, never to connect to).
pub fn rank(results: &[ProbeResult], w: &RankWeights) -> Vec<usize> {
    let mut order: Vec<(usize, Option<f64>)> = results
        .iter()
        .enumerate()
        .map(|(i, r)| (i, score(r, w)))
        .collect();
    order.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.total_cmp(&y).then(a.0.cmp(&b.0)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
    order.into_iter().map(|(i, _)| i).collect()
}

/// When a background re-probe may move the session to another PoP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwitchPolicy {
    /// The other PoP's score must be at most this fraction of the current one…
    pub ratio: f64,
    /// …and better by at least this many milliseconds…
    pub min_gain_ms: f64,
    /// …in this many consecutive re-probes.
    pub rounds: u8,
}

impl Default for SwitchPolicy {
    fn default() -> Self {
        Self {
            ratio: 0.75,
            min_gain_ms: 5.0,
            rounds: 3,
        }
    }
}

/// Hysteresis over re-probes: recommends a move only when another candidate
/// has been clearly better several times in a row (the same one each time),
/// or at once when the current one stops answering.
#[derive(Debug, Clone)]
pub struct Switcher {
    policy: SwitchPolicy,
    current: usize,
    challenger: Option<(usize, u8)>,
}

impl Switcher {
    /// Starts on candidate `current`.
    pub fn new(current: usize, policy: SwitchPolicy) -> Self {
        Self {
            policy,
            current,
            challenger: None,
        }
    }

    /// The candidate in use.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Takes one re-probe's scores (by candidate index; `None` = unusable).
    /// Returns the candidate to move to, when it is time to move.
    pub fn observe(&mut self, scores: &[Option<f64>]) -> Option<usize> {
        let best = scores
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((best_idx, best_score)) = best else {
            self.challenger = None;
            return None;
        };
        let Some(cur) = scores.get(self.current).copied().flatten() else {
            // The current PoP stopped answering: fail over now.
            self.challenger = None;
            if best_idx != self.current {
                self.current = best_idx;
                return Some(best_idx);
            }
            return None;
        };
        let clearly_better = best_idx != self.current
            && best_score <= cur * self.policy.ratio
            && cur - best_score >= self.policy.min_gain_ms;
        if !clearly_better {
            self.challenger = None;
            return None;
        }
        let streak = match self.challenger {
            Some((i, n)) if i == best_idx => n.saturating_add(1),
            _ => 1,
        };
        if streak >= self.policy.rounds {
            self.challenger = None;
            self.current = best_idx;
            Some(best_idx)
        } else {
            self.challenger = Some((best_idx, streak));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip_and_reply_is_never_larger() {
        for token_len in [0usize, 10, 300, MAX_TOKEN_LEN] {
            let token = vec![7u8; token_len];
            let mut buf = Vec::new();
            ProbeRequest {
                seq: 3,
                stamp_us: 123_456,
                token: &token,
            }
            .encode(&mut buf);
            assert!(buf.len() >= MIN_REQUEST_LEN && buf.len() <= MAX_REQUEST_LEN);
            let req = ProbeRequest::decode(&buf).unwrap();
            assert_eq!(req.token, &token[..]);
            let reply = ProbeReply::to(&req, ProbeStatus::Ok, 250).encode();
            assert!(reply.len() <= buf.len());
            let back = ProbeReply::decode(&reply).unwrap();
            assert_eq!(
                (back.seq, back.stamp_us, back.load_permille),
                (3, 123_456, 250)
            );
        }
    }

    #[test]
    fn malformed_requests_are_errors() {
        assert_eq!(ProbeRequest::decode(&[0; 10]), Err(ProbeError::NotProbe));
        let mut buf = Vec::new();
        ProbeRequest {
            seq: 0,
            stamp_us: 0,
            token: b"abc",
        }
        .encode(&mut buf);
        let mut bad = buf.clone();
        bad[15..17].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(
            ProbeRequest::decode(&bad),
            Err(ProbeError::TokenLength(2000))
        );
        bad = buf.clone();
        bad[4] = 9;
        assert_eq!(ProbeRequest::decode(&bad), Err(ProbeError::Version(9)));
        assert_eq!(
            ProbeRequest::decode(&vec![0u8; MAX_REQUEST_LEN + 1]),
            Err(ProbeError::NotProbe)
        );
    }

    #[test]
    fn rate_limiter_refills_over_time() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10.0, 2);
        assert!(rl.allow(t0));
        assert!(rl.allow(t0));
        assert!(!rl.allow(t0));
        assert!(rl.allow(t0 + Duration::from_millis(100)));
        assert!(!rl.allow(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn replies_with_a_wrong_echo_or_sequence_are_ignored() {
        let t0 = Instant::now();
        let mut p = Prober::new(1, b"t", ProbePlan::default(), t0);
        let mut out = Vec::new();
        assert_eq!(p.poll_transmit(t0, &mut out), Some(0));
        let req = ProbeRequest::decode(&out).unwrap();
        let mut forged = ProbeReply::to(&req, ProbeStatus::Ok, 0);
        forged.stamp_us += 1;
        p.handle_reply(0, &forged.encode(), t0 + Duration::from_millis(5));
        forged = ProbeReply::to(&req, ProbeStatus::Ok, 0);
        forged.seq = 4;
        p.handle_reply(0, &forged.encode(), t0 + Duration::from_millis(5));
        assert_eq!(p.results(t0)[0].state, CandidateState::Silent);
        p.handle_reply(
            0,
            &ProbeReply::to(&req, ProbeStatus::Ok, 0).encode(),
            t0 + Duration::from_millis(5),
        );
        assert_eq!(p.results(t0)[0].state, CandidateState::Usable);
    }

    fn result(median_ms: u64, jitter_ms: u64, loss: f64, load: f64) -> ProbeResult {
        ProbeResult {
            state: CandidateState::Usable,
            answered: 4,
            settled: 4,
            rtt_min: Duration::from_millis(median_ms),
            rtt_median: Duration::from_millis(median_ms),
            jitter: Duration::from_millis(jitter_ms),
            loss,
            load,
        }
    }

    #[test]
    fn ranking_penalises_loss_jitter_and_load() {
        let w = RankWeights::default();
        // 20 ms with half its probes lost loses to a clean 40 ms…
        assert_eq!(
            rank(&[result(20, 0, 0.5, 0.0), result(40, 0, 0.0, 0.0)], &w),
            [1, 0]
        );
        // …but one lost probe in four is weak evidence: a clean 40 ms does
        // not win on it (common loss on the access network hits every PoP).
        assert_eq!(
            rank(&[result(20, 0, 0.25, 0.0), result(40, 0, 0.0, 0.0)], &w),
            [0, 1]
        );
        assert!((loss_evidence(&result(20, 0, 0.25, 0.0)) - 0.046).abs() < 0.005);
        assert_eq!(loss_evidence(&result(20, 0, 0.0, 0.0)), 0.0);
        // 20 ms with 15 ms of jitter loses to a steady 30 ms.
        assert_eq!(
            rank(&[result(20, 15, 0.0, 0.0), result(30, 1, 0.0, 0.0)], &w),
            [1, 0]
        );
        // A full gateway loses to an idle one 10 ms further…
        assert_eq!(
            rank(&[result(20, 0, 0.0, 1.0), result(30, 0, 0.0, 0.0)], &w),
            [1, 0]
        );
        // …but not to one 50 ms further.
        assert_eq!(
            rank(&[result(20, 0, 0.0, 1.0), result(70, 0, 0.0, 0.0)], &w),
            [0, 1]
        );
        // Distance is the minimum: one slow sample does not make a PoP far.
        let mut wobbly = result(30, 1, 0.0, 0.0);
        wobbly.rtt_min = Duration::from_millis(20);
        assert_eq!(rank(&[result(23, 1, 0.0, 0.0), wobbly], &w), [1, 0]);
        // Silent candidates go last.
        let mut silent = result(1, 0, 0.0, 0.0);
        silent.state = CandidateState::Silent;
        assert_eq!(rank(&[silent, result(50, 0, 0.0, 0.0)], &w), [1, 0]);
    }

    #[test]
    fn switcher_needs_a_lasting_clear_gain_and_fails_over_at_once() {
        let mut s = Switcher::new(0, SwitchPolicy::default());
        // Noise around equal scores never moves.
        for i in 0..50 {
            let a = 20.0 + f64::from(i % 3);
            let b = 20.0 + f64::from((i + 1) % 3);
            assert_eq!(s.observe(&[Some(a), Some(b)]), None);
        }
        // A clearly better PoP that flickers does not move either.
        for _ in 0..10 {
            assert_eq!(s.observe(&[Some(40.0), Some(10.0)]), None);
            assert_eq!(s.observe(&[Some(40.0), Some(10.0)]), None);
            assert_eq!(s.observe(&[Some(40.0), Some(39.0)]), None);
        }
        // Three rounds in a row do.
        assert_eq!(s.observe(&[Some(40.0), Some(10.0)]), None);
        assert_eq!(s.observe(&[Some(40.0), Some(10.0)]), None);
        assert_eq!(s.observe(&[Some(40.0), Some(10.0)]), Some(1));
        assert_eq!(s.current(), 1);
        // The current one going silent moves at once.
        assert_eq!(s.observe(&[Some(40.0), None]), Some(0));
    }
}
