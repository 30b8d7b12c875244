//! Sign-in under attack: names are checked before they key a table or
//! reach the log, password guessing is slowed per account, per source and
//! per account-and-source with an atomic check-and-count, and Argon2 runs
//! behind a gate as wide as the machine with a short queue that sheds load.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The largest sign-in request body read (a name of 64, a password of a
/// few hundred bytes and JSON around them fit many times over).
pub const MAX_BODY: usize = 4096;

/// Entries kept at most; beyond, the oldest settled ones are dropped.
const MAX_TRACKED: usize = 10_000;

/// One kind of key the guesses are counted under.
#[derive(Debug, Clone, Copy)]
struct Rule {
    /// Failures allowed before the key is held back.
    free: u32,
    /// How long after the first failure over `free`; doubles with each
    /// further one up to `most`.
    first: Duration,
    most: Duration,
}

/// One account from one address: the owner's own mistakes and a single
/// guesser alike. Five tries, then 30 s doubling to 15 min.
const PAIR: Rule = Rule {
    free: 5,
    first: Duration::from_secs(30),
    most: Duration::from_secs(900),
};
/// One address across accounts: a guesser spraying one password over many
/// names.
const SOURCE: Rule = Rule {
    free: 20,
    first: Duration::from_secs(30),
    most: Duration::from_secs(900),
};
/// One account from every address: guessing spread over many addresses is
/// slowed, but never holds the owner out for more than a minute.
const ACCOUNT: Rule = Rule {
    free: 50,
    first: Duration::from_secs(5),
    most: Duration::from_secs(60),
};

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    /// Attempts checked and not yet settled: counted against the limit so
    /// simultaneous guesses cannot all pass the check before any fails.
    pending: u32,
    last: Instant,
}

impl Count {
    fn held_for(&self, rule: Rule, now: Instant) -> Duration {
        if self.failures + self.pending < rule.free {
            return Duration::ZERO;
        }
        if self.failures < rule.free {
            // The last free tries are in flight: wait for their outcome.
            return Duration::from_secs(1);
        }
        let doublings = (self.failures - rule.free).min(8);
        let hold = rule.first.saturating_mul(1 << doublings).min(rule.most);
        let left = hold.saturating_sub(now.saturating_duration_since(self.last));
        if left.is_zero() && self.pending > 0 {
            // Held back again: one try at a time once the wait is over.
            return Duration::from_secs(1);
        }
        left
    }
}

/// Why a sign-in is not tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures lately: try again after this long.
    Throttled(Duration),
    /// Every password check is busy and the queue is full.
    Busy,
}

/// Counts failed sign-ins and gates the password hashing.
#[derive(Debug)]
pub struct Guard {
    counts: Mutex<HashMap<String, Count>>,
    hashing: Semaphore,
    queued: AtomicUsize,
    queue: usize,
    /// The lane of sign-ins from devices that signed in to the account
    /// before: guessers crowding the shared one do not hold them up.
    known: Semaphore,
    known_queued: AtomicUsize,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The password was right.
    Right,
    /// The password was wrong (or the account unknown).
    Wrong,
    /// The password was never checked (busy, or an internal failure):
    /// neither a failure nor a success.
    Unchecked,
}

/// An attempt that passed the throttle, pending until settled; one
/// dropped unsettled (the request was abandoned) counts for nothing.
#[derive(Debug)]
pub struct Attempt<'a> {
    guard: &'a Guard,
    keys: [String; 3],
    settled: bool,
}

impl Attempt<'_> {
    /// Records how the attempt ended. A success clears the account's
    /// count from that address; the address's and the account's totals
    /// stay.
    pub fn settle(mut self, outcome: Outcome, now: Instant) {
        self.settled = true;
        self.guard.record(&self.keys, outcome, now);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.guard
                .record(&self.keys, Outcome::Unchecked, Instant::now());
        }
    }
}

impl Guard {
    /// `width` password checks at once (about the core count), and up to
    /// `queue` more waiting for one.
    pub fn new(width: usize, queue: usize) -> Self {
        Self {
            counts: Mutex::new(HashMap::new()),
            hashing: Semaphore::new(width.max(1)),
            queued: AtomicUsize::new(0),
            queue,
            known: Semaphore::new(1),
            known_queued: AtomicUsize::new(0),
        }
    }

    fn keys(account: &str, source: IpAddr) -> [String; 3] {
        [
            format!("p {source} {account}"),
            format!("s {source}"),
            format!("a {account}"),
        ]
    }

    /// Checks `account` from `source` against every limit and, in the same
    /// step, counts the attempt as pending.
    pub fn begin(
        &self,
        account: &str,
        source: IpAddr,
        now: Instant,
    ) -> Result<Attempt<'_>, Refusal> {
        self.begin_keys(Self::keys(account, source), now)
    }

    /// As [`Guard::begin`] for a sign-in from a device that signed in to
    /// `account` before (`device` names it): counted per device and
    /// account, per device, and per account among such devices, apart from
    /// the guesses of everyone else, so those cannot hold the owner out.
    pub fn begin_known(
        &self,
        account: &str,
        device: &str,
        now: Instant,
    ) -> Result<Attempt<'_>, Refusal> {
        let keys = [
            format!("kp {device} {account}"),
            format!("ks {device}"),
            format!("ka {account}"),
        ];
        self.begin_keys(keys, now)
    }

    fn begin_keys(&self, keys: [String; 3], now: Instant) -> Result<Attempt<'_>, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys
            .iter()
            .zip([PAIR, SOURCE, ACCOUNT])
            .filter_map(|(k, rule)| counts.get(k).map(|c| c.held_for(rule, now)))
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            return Err(Refusal::Throttled(wait));
        }
        if counts.len() + keys.len() > MAX_TRACKED {
            counts
                .retain(|_, c| c.pending > 0 || now.saturating_duration_since(c.last) < PAIR.most);
            if counts.len() + keys.len() > MAX_TRACKED {
                // Full of live entries: refuse rather than forget a guesser.
                return Err(Refusal::Busy);
            }
        }
        for k in &keys {
            let c = counts.entry(k.clone()).or_insert(Count {
                failures: 0,
                pending: 0,
                last: now,
            });
            c.pending += 1;
        }
        Ok(Attempt {
            guard: self,
            keys,
            settled: false,
        })
    }

    fn record(&self, keys: &[String; 3], outcome: Outcome, now: Instant) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for (i, k) in keys.iter().enumerate() {
            let Some(c) = counts.get_mut(k) else { continue };
            c.pending = c.pending.saturating_sub(1);
            match outcome {
                Outcome::Wrong => {
                    c.failures += 1;
                    c.last = now;
                }
                Outcome::Right if i == 0 => c.failures = 0,
                Outcome::Right | Outcome::Unchecked => {}
            }
            if c.failures == 0 && c.pending == 0 {
                counts.remove(k);
            }
        }
    }

    /// Accounts, addresses and pairs with failures or attempts in flight.
    pub fn tracked(&self) -> usize {
        self.counts.lock().map_or(0, |c| c.len())
    }

    /// A turn at the password hash: waits in a short queue, or is refused
    /// when that is full. A device known to the account (`known`) waits in
    /// its own lane.
    pub async fn hash_turn(&self, known: bool) -> Result<SemaphorePermit<'_>, Refusal> {
        let (gate, queued) = if known {
            (&self.known, &self.known_queued)
        } else {
            (&self.hashing, &self.queued)
        };
        if let Ok(p) = gate.try_acquire() {
            return Ok(p);
        }
        if queued.fetch_add(1, Ordering::AcqRel) >= self.queue {
            queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Busy);
        }
        let permit = gate.acquire().await;
        queued.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| Refusal::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn simultaneous_guesses_are_counted_before_any_settles() {
        let g = Guard::new(2, 8);
        let now = Instant::now();
        let attempts: Vec<_> = (0..200)
            .map(|_| g.begin("default/alice", AWAY, now))
            .collect();
        let passed = attempts.iter().filter(|a| a.is_ok()).count();
        assert_eq!(passed, PAIR.free as usize);
        for a in attempts.into_iter().flatten() {
            a.settle(Outcome::Wrong, now);
        }
        // Held 30 s; the owner from another address is not.
        assert_eq!(
            g.begin("default/alice", AWAY, now + Duration::from_secs(29))
                .err(),
            Some(Refusal::Throttled(Duration::from_secs(1)))
        );
        let own = g.begin("default/alice", HOME, now).unwrap();
        own.settle(Outcome::Right, now);
        // After the wait, one more guess, then 60 s.
        let later = now + Duration::from_secs(30);
        let a = g.begin("default/alice", AWAY, later).unwrap();
        assert!(g.begin("default/alice", AWAY, later).is_err());
        a.settle(Outcome::Wrong, later);
        assert_eq!(
            g.begin("default/alice", AWAY, later).err(),
            Some(Refusal::Throttled(Duration::from_secs(60)))
        );
    }

    #[test]
    fn one_address_spraying_many_accounts_is_held_back() {
        let g = Guard::new(2, 8);
        let now = Instant::now();
        for i in 0..SOURCE.free {
            let a = g.begin(&format!("default/user{i}"), AWAY, now).unwrap();
            a.settle(Outcome::Wrong, now);
        }
        assert!(matches!(
            g.begin("default/someone-else", AWAY, now),
            Err(Refusal::Throttled(_))
        ));
        assert!(g.begin("default/someone-else", HOME, now).is_ok());
    }

    #[test]
    fn guesses_from_everywhere_hold_the_owner_back_a_minute_at_most() {
        let g = Guard::new(2, 8);
        let now = Instant::now();
        for i in 0..200u32 {
            let from = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            if let Ok(a) = g.begin("default/alice", from, now) {
                a.settle(Outcome::Wrong, now);
            }
        }
        let wait = match g.begin("default/alice", HOME, now) {
            Err(Refusal::Throttled(w)) => w,
            other => panic!("not held back: {other:?}"),
        };
        assert!(wait <= ACCOUNT.most, "{wait:?}");
        let after = now + ACCOUNT.most;
        assert!(g.begin("default/alice", HOME, after).is_ok());
    }

    #[test]
    fn success_clears_the_pair_and_settled_entries_go() {
        let g = Guard::new(2, 8);
        let now = Instant::now();
        let a = g.begin("default/alice", HOME, now).unwrap();
        a.settle(Outcome::Right, now);
        assert_eq!(g.tracked(), 0);
        // A try the directory was too busy to judge counts for nothing,
        // nor does one abandoned on the way.
        let a = g.begin("default/alice", HOME, now).unwrap();
        a.settle(Outcome::Unchecked, now);
        assert_eq!(g.tracked(), 0);
        let a = g.begin("default/alice", HOME, now).unwrap();
        assert_eq!(g.tracked(), 3);
        drop(a);
        assert_eq!(g.tracked(), 0);
        let a = g.begin("default/alice", HOME, now).unwrap();
        a.settle(Outcome::Wrong, now);
        assert_eq!(g.tracked(), 3);
        let a = g.begin("default/alice", HOME, now).unwrap();
        a.settle(Outcome::Right, now);
        // The address's and the account's failures stay counted.
        assert_eq!(g.tracked(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_hash_gate_queues_a_few_and_turns_the_rest_away() {
        let g = Guard::new(1, 1);
        let first = g.hash_turn(false).await.unwrap();
        let waiting = {
            let g = &g;
            async move { g.hash_turn(false).await.map(|_| ()) }
        };
        let mut waiting = Box::pin(waiting);
        // The second waits in the queue...
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut waiting)
                .await
                .is_err()
        );
        // ...so a third is turned away at once.
        assert_eq!(g.hash_turn(false).await.err(), Some(Refusal::Busy));
        drop(first);
        waiting.await.unwrap();
        assert!(g.hash_turn(false).await.is_ok());
    }

    #[test]
    fn a_known_device_signs_in_while_guessers_hold_the_account() {
        let g = Guard::new(1, 4);
        let now = Instant::now();
        // Guessing spread over many addresses holds the account back...
        for i in 0..ACCOUNT.free {
            let from = IpAddr::V4(std::net::Ipv4Addr::new(
                10,
                1,
                (i / 250) as u8,
                (i % 250) as u8,
            ));
            g.begin("default/alice", from, now)
                .unwrap()
                .settle(Outcome::Wrong, now);
        }
        assert!(matches!(
            g.begin("default/alice", HOME, now),
            Err(Refusal::Throttled(_))
        ));
        // ...but not the owner's device, which has limits of its own.
        let a = g.begin_known("default/alice", "dev-1", now).unwrap();
        a.settle(Outcome::Right, now);
        for _ in 0..PAIR.free {
            g.begin_known("default/alice", "dev-2", now)
                .unwrap()
                .settle(Outcome::Wrong, now);
        }
        assert!(
            g.begin_known("default/alice", "dev-2", now).is_err(),
            "a device guessing is held back too"
        );
        assert!(g.begin_known("default/alice", "dev-1", now).is_ok());
    }
}
