//! Which gateway a client tries next, sans-IO: the driver asks
//! [`Reconnect::next`], tries what it says (or renews the session through
//! the directory, or waits), and reports how that went.
//!
//! The first connection tries the ranked gateways once each, best first,
//! moving on only when one does not answer. After a path breaks, the
//! others are tried in ranking order from the one after the broken path,
//! round after round, for [`RECONNECT_FOR`]: a session token refused
//! during a long outage is renewed once (the directory's resume token),
//! and after every round in which nobody answered the directory is asked
//! for the gateways live now (the set changes with load and failures), at
//! most every [`REFRESH_EVERY`]; between rounds the client waits
//! [`ROUND_PAUSE`].

use std::time::{Duration, Instant};

/// After losing the connection, the client tries to reconnect this long.
pub const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// The directory is asked for the live gateways at most this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// The wait between rounds in which no gateway answered.
pub const ROUND_PAUSE: Duration = Duration::from_millis(250);

/// What the driver is to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Connect to candidate `i` ([`Reconnect::candidate`]); report with
    /// [`Reconnect::failed`] (or stop on success).
    Try(usize),
    /// Ask the directory for a fresh session token and, with `refresh`,
    /// the gateways live now; report with [`Reconnect::renewed`] or
    /// [`Reconnect::renew_failed`].
    Renew {
        /// Whether the gateway list is wanted too.
        refresh: bool,
    },
    /// Nothing until then; ask again.
    Wait(Instant),
    /// No more tries.
    GiveUp,
}

/// How a try failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer, or the connection broke: the next gateway may do.
    Unreachable,
    /// The gateway refused the session token (it may have expired).
    Refused,
    /// Anything else (a certificate, the protocol): trying on is futile.
    Fatal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Ready to pick: the round's `k`th try (from 1 after a loss, from 0
    /// on the first connection).
    Ready,
    Trying(usize),
    Renewing {
        refresh: bool,
    },
    Waiting(Instant),
    Done,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Reconnect<T> {
    candidates: Vec<T>,
    /// The path that broke (rounds start after it).
    current: usize,
    k: usize,
    /// `None` on the first connection: one pass only.
    deadline: Option<Instant>,
    can_renew: bool,
    renewed_after_refusal: bool,
    last_refresh: Option<Instant>,
    state: State,
}

impl<T> Reconnect<T> {
    /// The first connection: each candidate once, best first.
    pub fn first(candidates: Vec<T>) -> Self {
        Self {
            candidates,
            current: 0,
            k: 0,
            deadline: None,
            can_renew: false,
            renewed_after_refusal: false,
            last_refresh: None,
            state: State::Ready,
        }
    }

    /// After the path through `current` broke at `now`: the others in
    /// turn, then round after round; `can_renew` when the session has a
    /// resume token.
    pub fn after_loss(candidates: Vec<T>, current: usize, can_renew: bool, now: Instant) -> Self {
        Self {
            current: current.min(candidates.len().saturating_sub(1)),
            candidates,
            k: 1,
            deadline: Some(now + RECONNECT_FOR),
            can_renew,
            renewed_after_refusal: false,
            last_refresh: None,
            state: State::Ready,
        }
    }

    /// Candidate `i`.
    pub fn candidate(&self, i: usize) -> Option<&T> {
        self.candidates.get(i)
    }

    /// The candidates now (the directory's fresh list replaces them).
    pub fn candidates(&self) -> &[T] {
        &self.candidates
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Instant) -> Step {
        loop {
            match self.state {
                State::Trying(i) => return Step::Try(i),
                State::Renewing { refresh } => return Step::Renew { refresh },
                State::Done => return Step::GiveUp,
                State::Waiting(t) if now < t => return Step::Wait(t),
                State::Waiting(_) => {
                    if self.deadline.is_none_or(|d| now >= d) {
                        self.state = State::Done;
                        continue;
                    }
                    self.k = 1;
                    self.state = State::Ready;
                }
                State::Ready => {
                    let n = self.candidates.len();
                    if n == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    if self.deadline.is_none() {
                        self.state = if self.k < n {
                            State::Trying(self.k)
                        } else {
                            State::Done
                        };
                        continue;
                    }
                    if self.k <= n {
                        self.state = State::Trying((self.current + self.k) % n);
                        continue;
                    }
                    // A round without an answer: the set may have changed.
                    if self.can_renew
                        && self
                            .last_refresh
                            .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH_EVERY)
                    {
                        self.last_refresh = Some(now);
                        self.state = State::Renewing { refresh: true };
                        continue;
                    }
                    self.state = State::Waiting(now + ROUND_PAUSE);
                }
            }
        }
    }

    /// The try [`Step::Try`] asked for failed.
    pub fn failed(&mut self, why: Failure, _now: Instant) {
        if !matches!(self.state, State::Trying(_)) {
            return;
        }
        self.state = match why {
            Failure::Unreachable => {
                self.k += 1;
                State::Ready
            }
            // The session token expired during a long outage: the resume
            // token fetches a fresh one for the same session, once.
            Failure::Refused
                if self.deadline.is_some() && self.can_renew && !self.renewed_after_refusal =>
            {
                self.renewed_after_refusal = true;
                State::Renewing { refresh: false }
            }
            Failure::Refused | Failure::Fatal => State::Done,
        };
    }

    /// The directory renewed the session; with a list of the gateways
    /// live now (best first) when it was asked for one and had any.
    pub fn renewed(&mut self, gateways: Option<Vec<T>>, now: Instant) {
        let State::Renewing { refresh } = self.state else {
            return;
        };
        if !refresh {
            // The refused gateway's turn is over; on with the next.
            self.k += 1;
            self.state = State::Ready;
            return;
        }
        match gateways {
            Some(list) if !list.is_empty() => {
                // The next round starts at the list's head.
                self.current = list.len() - 1;
                self.candidates = list;
                self.k = 1;
                self.state = if self.deadline.is_some_and(|d| now < d) {
                    State::Ready
                } else {
                    State::Done
                };
            }
            _ => self.state = State::Waiting(now + ROUND_PAUSE),
        }
    }

    /// The directory did not renew the session.
    pub fn renew_failed(&mut self, now: Instant) {
        self.state = match self.state {
            // The token stays refused: nothing can attach the session.
            State::Renewing { refresh: false } => State::Done,
            State::Renewing { refresh: true } => State::Waiting(now + ROUND_PAUSE),
            other => other,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_first_connection_tries_each_once_in_order_and_stops_at_a_refusal() {
        let t0 = Instant::now();
        let mut r = Reconnect::first(vec!["a", "b", "c"]);
        assert_eq!(r.next(t0), Step::Try(0));
        r.failed(Failure::Unreachable, t0);
        assert_eq!(r.next(t0), Step::Try(1));
        r.failed(Failure::Unreachable, t0);
        assert_eq!(r.next(t0), Step::Try(2));
        r.failed(Failure::Unreachable, t0);
        assert_eq!(r.next(t0), Step::GiveUp);
        let mut r = Reconnect::first(vec!["a", "b"]);
        assert_eq!(r.next(t0), Step::Try(0));
        r.failed(Failure::Refused, t0);
        assert_eq!(r.next(t0), Step::GiveUp, "a refusal is no reason to try on");
    }

    #[test]
    fn after_a_loss_the_others_go_first_then_rounds_with_refreshes_until_the_deadline() {
        let t0 = Instant::now();
        let mut r = Reconnect::after_loss(vec!["a", "b", "c"], 1, true, t0);
        // From the one after the broken path, the broken one last.
        for want in [2, 0, 1] {
            assert_eq!(r.next(t0), Step::Try(want));
            r.failed(Failure::Unreachable, t0);
        }
        // Nobody answered: the directory is asked for the live gateways.
        assert_eq!(r.next(t0), Step::Renew { refresh: true });
        r.renewed(Some(vec!["d", "e"]), t0);
        assert_eq!(r.candidates(), ["d", "e"]);
        assert_eq!(r.next(t0), Step::Try(0), "the fresh list from its head");
        r.failed(Failure::Unreachable, t0);
        assert_eq!(r.next(t0), Step::Try(1));
        r.failed(Failure::Unreachable, t0);
        // Refreshed less than 2 s ago: a pause instead.
        assert_eq!(r.next(ms(t0, 10)), Step::Wait(ms(t0, 260)));
        assert_eq!(r.next(ms(t0, 100)), Step::Wait(ms(t0, 260)));
        assert_eq!(r.next(ms(t0, 260)), Step::Try(0));
        r.failed(Failure::Unreachable, t0);
        assert_eq!(r.next(ms(t0, 261)), Step::Try(1));
        r.failed(Failure::Unreachable, t0);
        // Past the deadline after a pause: give up.
        let late = t0 + RECONNECT_FOR + Duration::from_secs(1);
        assert_eq!(r.next(late), Step::Renew { refresh: true });
        r.renew_failed(late);
        assert_eq!(r.next(late + ROUND_PAUSE), Step::GiveUp);
    }

    #[test]
    fn a_refused_token_is_renewed_once_and_a_second_refusal_ends_it() {
        let t0 = Instant::now();
        let mut r = Reconnect::after_loss(vec!["a", "b", "c"], 0, true, t0);
        assert_eq!(r.next(t0), Step::Try(1));
        r.failed(Failure::Refused, t0);
        assert_eq!(r.next(t0), Step::Renew { refresh: false });
        r.renewed(None, t0);
        assert_eq!(
            r.next(t0),
            Step::Try(2),
            "on with the next, fresh token in hand"
        );
        r.failed(Failure::Refused, t0);
        assert_eq!(r.next(t0), Step::GiveUp);
        // Without a resume token a refusal ends it at once.
        let mut r = Reconnect::after_loss(vec!["a", "b"], 0, false, t0);
        assert_eq!(r.next(t0), Step::Try(1));
        r.failed(Failure::Refused, t0);
        assert_eq!(r.next(t0), Step::GiveUp);
        // And a renewal that fails too.
        let mut r = Reconnect::after_loss(vec!["a", "b"], 0, true, t0);
        assert_eq!(r.next(t0), Step::Try(1));
        r.failed(Failure::Refused, t0);
        assert_eq!(r.next(t0), Step::Renew { refresh: false });
        r.renew_failed(t0);
        assert_eq!(r.next(t0), Step::GiveUp);
    }
}
