//! Reliable, ordered, exactly-once input from client to host.
//!
//! The gateway–host hop is plain UDP, so reliability is end to end: the
//! [`InputSender`] on the client numbers events, coalesces pointer motion that
//! has not left yet (latest wins, never merging across a button or key
//! edge), retransmits what the host has not acknowledged, and measures the
//! round trip of each event. It keeps no more in flight than the host's
//! window takes and paces what it sends below the rate a gateway relays, so
//! a burst of input (a script, a macro, a stuck key repeating) arrives late
//! rather than dropped and resent over and over. The [`InputReceiver`] on the host delivers each
//! sequence number once, in order, buffering a bounded window of early
//! arrivals, and acknowledges cumulatively.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bucket::Bucket;
use crate::gateway::INPUT_RATE;
use crate::wire::InputEvent;

/// Events in flight (sent or queued, not yet acknowledged) at most.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Input messages a sender puts on the wire a second, and in one burst
/// (retransmissions included): nine tenths of what a gateway relays, so an
/// honest client is never the one a gateway drops. Pointer motion waiting
/// meanwhile coalesces.
pub const SEND_RATE: (u32, u32) = (INPUT_RATE.0 / 10 * 9, INPUT_RATE.1 / 10 * 9);

/// Error from [`InputSender::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The host has not acknowledged [`MAX_IN_FLIGHT`] events; the link is
    /// stalled and the session should be treated as broken.
    #[error("{MAX_IN_FLIGHT} input events unacknowledged: the connection is stalled")]
    Stalled,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u32,
    event: InputEvent,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
}

/// Statistics of an [`InputSender`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputSenderStats {
    /// Distinct events sent (a coalesced run of moves counts once).
    pub sent: u64,
    /// Events acknowledged by the host.
    pub acked: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Pointer moves absorbed into a later move before leaving.
    pub coalesced: u64,
}

/// Client side; see the module documentation.
#[derive(Debug)]
pub struct InputSender {
    next_seq: u32,
    /// The last sequence number the receiver acknowledged (0: none).
    acked: u32,
    queue: VecDeque<Pending>,
    /// Index in `queue` of the first event never sent.
    unsent: usize,
    /// Index in `queue` of the next event a retransmission round looks
    /// at; at or past `unsent` when no round is under way.
    round: usize,
    /// Paces sends to [`SEND_RATE`] (made at the first send).
    pace: Option<Bucket>,
    /// The last send was held back for want of a token.
    paced: bool,
    rto: Duration,
    stats: InputSenderStats,
}

impl Default for InputSender {
    fn default() -> Self {
        Self::new()
    }
}

impl InputSender {
    /// An empty sender starting at sequence number 1 (0 acknowledges nothing).
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            acked: 0,
            queue: VecDeque::with_capacity(256),
            unsent: 0,
            round: 0,
            pace: None,
            paced: false,
            rto: Duration::from_millis(200),
            stats: InputSenderStats::default(),
        }
    }

    /// Sets the retransmission timeout (callers derive it from the RTT).
    pub fn set_rto(&mut self, rto: Duration) {
        self.rto = rto.max(Duration::from_millis(20));
    }

    /// Counters so far.
    pub fn stats(&self) -> InputSenderStats {
        self.stats
    }

    /// Events not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Queues an event. A pointer position or pad axis replaces the same
    /// one still waiting to leave (see below).
    pub fn push(&mut self, event: InputEvent) -> Result<(), InputError> {
        // A level (pointer position, a pad axis) replaces the same level
        // still waiting to leave, unless an edge was queued after it: the
        // host must see that edge at the position it happened.
        if event.is_level() {
            let waiting = self.queue.range_mut(self.unsent..).rev();
            for p in waiting.take_while(|p| p.event.is_level()) {
                if p.event.replaced_by(&event) {
                    p.event = event;
                    self.stats.coalesced += 1;
                    return Ok(());
                }
            }
        }
        // Relative motion adds up into relative motion still waiting
        // right behind it: the host ends where the sum takes it.
        if let InputEvent::MoveBy { dx, dy } = event
            && self.unsent < self.queue.len()
            && let Some(last) = self.queue.back_mut()
            && let InputEvent::MoveBy { dx: x0, dy: y0 } = &mut last.event
        {
            *x0 = x0.saturating_add(dx);
            *y0 = y0.saturating_add(dy);
            self.stats.coalesced += 1;
            return Ok(());
        }
        if self.queue.len() >= MAX_IN_FLIGHT {
            return Err(InputError::Stalled);
        }
        let seq = self.next_seq;
        self.next_seq = after(seq);
        self.queue.push_back(Pending {
            seq,
            event,
            first_sent: None,
            last_sent: None,
        });
        Ok(())
    }

    /// The next `(seq, event)` to put on the wire now: retransmissions
    /// first, lowest sequence number first (the host delivers in order, so
    /// the oldest missing event holds up the rest), then new events in
    /// order while they fit the host's [`RECEIVE_WINDOW`] (events beyond it
    /// would be thrown away there).
    ///
    /// Retransmission goes in rounds: when the oldest unacknowledged event
    /// has waited an RTO, one pass over the events in flight resends each
    /// that has; events sent since wait for the next round. So a turn costs
    /// constant time unless a round is due, a round costs one pass, and
    /// over a link that drops what exceeds a rate (a gateway's limit) the
    /// oldest event is resent first each round rather than lost among the
    /// others.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(u32, InputEvent)> {
        let rto = self.rto;
        let due = |p: &Pending| p.last_sent.is_some_and(|t| now >= t + rto);
        if self.round >= self.unsent && self.unsent > 0 && due(&self.queue[0]) {
            self.round = 0;
        }
        while self.round < self.unsent && !due(&self.queue[self.round]) {
            self.round += 1;
        }
        let retransmit = self.round < self.unsent;
        if !retransmit
            && (self.unsent == self.queue.len() || self.unsent >= RECEIVE_WINDOW as usize)
        {
            self.paced = false;
            return None;
        }
        let pace = self.pace.get_or_insert_with(|| Bucket::new(SEND_RATE, now));
        self.paced = !pace.take(now);
        if self.paced {
            return None;
        }
        let p = if retransmit {
            self.round += 1;
            self.stats.retransmits += 1;
            &mut self.queue[self.round - 1]
        } else {
            self.unsent += 1;
            self.round = self.unsent;
            self.stats.sent += 1;
            let p = &mut self.queue[self.unsent - 1];
            p.first_sent = Some(now);
            p
        };
        p.last_sent = Some(now);
        Some((p.seq, p.event))
    }

    /// The path changed (a reconnect through another gateway, a new host):
    /// everything sent and not acknowledged goes again at once, in order.
    /// The host delivers each sequence number once, so events it already
    /// had are not applied twice.
    pub fn resend_unacked(&mut self, now: Instant) {
        let due = now.checked_sub(self.rto).unwrap_or(now);
        for p in self.queue.iter_mut().take(self.unsent) {
            p.last_sent = Some(due);
        }
        self.round = 0;
    }

    /// The receiver says it delivered up to `delivered` (a host's
    /// welcome). Behind what it acknowledged before, it is a new receiver
    /// (the host lost the session and opened it afresh): what it had is
    /// gone with that desktop, and the events still unacknowledged are
    /// numbered on from `delivered` so that it delivers them rather than
    /// wait for numbers it will never see. Returns whether it renumbered.
    pub fn rebase(&mut self, delivered: u32) -> bool {
        if (self.acked.wrapping_sub(delivered) as i32) <= 0 {
            return false;
        }
        let mut seq = delivered;
        for p in &mut self.queue {
            seq = after(seq);
            p.seq = seq;
        }
        self.next_seq = after(seq);
        self.acked = delivered;
        true
    }

    /// When to call [`InputSender::poll_transmit`] again: when the pace
    /// allows the send it held back (or new events acknowledgements made
    /// room for), or when a retransmission round will be due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let waiting = self.unsent < self.queue.len() && self.unsent < RECEIVE_WINDOW as usize;
        let paced = self
            .pace
            .filter(|_| self.paced || waiting)
            .map(|b| b.ready_at());
        let front = self.queue.front().filter(|_| self.unsent > 0);
        let round = front.and_then(|p| p.last_sent).map(|t| t + self.rto);
        paced.into_iter().chain(round).min()
    }

    /// Handles a cumulative acknowledgement; calls `acked` with each newly
    /// acknowledged event's sequence number and when it was first sent.
    pub fn handle_ack(&mut self, seq: u32, mut acked: impl FnMut(u32, Instant)) {
        while let Some(front) = self.queue.front() {
            if self.unsent == 0 {
                break; // never acknowledge what was not sent
            }
            if (front.seq.wrapping_sub(seq) as i32) > 0 {
                break;
            }
            if let Some(t) = front.first_sent {
                acked(front.seq, t);
            }
            self.acked = front.seq;
            self.queue.pop_front();
            self.unsent -= 1;
            self.round = self.round.saturating_sub(1);
            self.stats.acked += 1;
        }
    }
}

/// The sequence number after `seq` (0 is never used: it means "none").
fn after(seq: u32) -> u32 {
    match seq.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// Window of early arrivals the receiver buffers.
pub const RECEIVE_WINDOW: u32 = 1024;

/// Host side; see the module documentation.
#[derive(Debug)]
pub struct InputReceiver {
    /// Highest sequence number delivered (0: none).
    delivered: u32,
    early: VecDeque<Option<InputEvent>>,
}

impl Default for InputReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl InputReceiver {
    /// A receiver expecting sequence number 1.
    pub fn new() -> Self {
        Self {
            delivered: 0,
            early: VecDeque::with_capacity(64),
        }
    }

    /// A receiver that has delivered everything up to and including `seq`
    /// (a backup host taking over from its primary's replicated state).
    pub fn resuming_after(seq: u32) -> Self {
        Self {
            delivered: seq,
            early: VecDeque::with_capacity(64),
        }
    }

    /// Cumulative acknowledgement to send back.
    pub fn ack(&self) -> u32 {
        self.delivered
    }

    /// Accepts an event and calls `deliver` for each event that is now next
    /// in order. Duplicates and events outside the window are ignored.
    pub fn handle(
        &mut self,
        seq: u32,
        event: InputEvent,
        mut deliver: impl FnMut(u32, InputEvent),
    ) {
        let offset = seq.wrapping_sub(self.delivered);
        // offset 0 or "negative": already delivered.
        if offset == 0 || offset > RECEIVE_WINDOW {
            return;
        }
        let slot = (offset - 1) as usize;
        if self.early.len() <= slot {
            self.early.resize(slot + 1, None);
        }
        if self.early[slot].is_none() {
            self.early[slot] = Some(event);
        }
        while let Some(Some(ev)) = self.early.front().copied() {
            self.early.pop_front();
            self.delivered = self.delivered.wrapping_add(1);
            if self.delivered == 0 {
                // Sequence 0 is never used; step over it on wrap.
                self.delivered = 1;
            }
            deliver(self.delivered, ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(usage: u16, down: bool) -> InputEvent {
        InputEvent::Key { usage, down }
    }

    #[test]
    fn a_new_path_gets_every_unacknowledged_event_once_more_in_order() {
        let mut s = InputSender::new();
        let t = Instant::now();
        for u in 4..8 {
            s.push(key(u, true)).unwrap();
        }
        let mut first = Vec::new();
        while let Some((seq, _)) = s.poll_transmit(t) {
            first.push(seq);
        }
        assert_eq!(first, [1, 2, 3, 4]);
        s.handle_ack(2, |_, _| {});
        // Not due for an RTO yet: nothing goes.
        assert_eq!(s.poll_transmit(t + Duration::from_millis(1)), None);
        s.resend_unacked(t + Duration::from_millis(1));
        let mut again = Vec::new();
        while let Some((seq, _)) = s.poll_transmit(t + Duration::from_millis(1)) {
            again.push(seq);
        }
        assert_eq!(again, [3, 4]);
        // The receiver that took over after 2 delivers 3 and 4 once.
        let mut r = InputReceiver::resuming_after(2);
        let mut got = Vec::new();
        for seq in [3, 4, 3, 4, 2] {
            r.handle(seq, key(9, true), |s, _| got.push(s));
        }
        assert_eq!(got, [3, 4]);
        assert_eq!(r.ack(), 4);
    }

    #[test]
    fn a_host_that_opened_the_session_afresh_gets_what_was_unacknowledged() {
        let mut s = InputSender::new();
        let t = Instant::now();
        let mut old = InputReceiver::new();
        for u in 4..10 {
            s.push(key(u, true)).unwrap();
        }
        // 1–4 reach the old host and are acknowledged; 5 and 6 are lost
        // with it.
        for _ in 0..6 {
            let (seq, ev) = s.poll_transmit(t).unwrap();
            if seq <= 4 {
                old.handle(seq, ev, |_, _| {});
            }
        }
        s.handle_ack(old.ack(), |_, _| {});
        // A host as far as or ahead of the acknowledgements is the same
        // receiver (a repeated welcome, a backup with the replicated
        // state): nothing changes.
        assert!(!s.rebase(4) && !s.rebase(5));
        // A new host welcomes at 0: 5 and 6 become 1 and 2, typed after
        // them 3; the new receiver delivers all three, in order, once.
        assert!(s.rebase(0));
        s.push(key(10, true)).unwrap();
        s.resend_unacked(t);
        let mut fresh = InputReceiver::new();
        let mut got = Vec::new();
        let later = t + Duration::from_secs(1);
        while let Some((seq, ev)) = s.poll_transmit(later) {
            fresh.handle(seq, ev, |_, e| got.push(e));
        }
        assert_eq!(got, [key(8, true), key(9, true), key(10, true)]);
        s.handle_ack(fresh.ack(), |_, _| {});
        assert_eq!((s.in_flight(), fresh.ack()), (0, 3));
        // With nothing in flight the numbering goes on from the host's.
        assert!(!s.rebase(3));
        s.push(key(11, true)).unwrap();
        assert_eq!(s.poll_transmit(later).map(|(seq, _)| seq), Some(4));
    }

    #[test]
    fn moves_coalesce_but_never_across_edges() {
        let mut s = InputSender::new();
        s.push(InputEvent::Move { x: 1, y: 1 }).unwrap();
        s.push(InputEvent::Move { x: 2, y: 2 }).unwrap();
        s.push(key(4, true)).unwrap();
        s.push(InputEvent::Move { x: 3, y: 3 }).unwrap();
        s.push(InputEvent::Move { x: 4, y: 4 }).unwrap();
        let t = Instant::now();
        let mut sent = Vec::new();
        while let Some(x) = s.poll_transmit(t) {
            sent.push(x);
        }
        assert_eq!(
            sent,
            vec![
                (1, InputEvent::Move { x: 2, y: 2 }),
                (2, key(4, true)),
                (3, InputEvent::Move { x: 4, y: 4 })
            ]
        );
        // A move after the last one left starts a new event.
        s.push(InputEvent::Move { x: 5, y: 5 }).unwrap();
        assert_eq!(
            s.poll_transmit(t),
            Some((4, InputEvent::Move { x: 5, y: 5 }))
        );
        assert_eq!(s.stats().coalesced, 2);
    }

    #[test]
    fn relative_motion_adds_up_while_waiting_and_never_across_an_edge() {
        let by = |dx, dy| InputEvent::MoveBy { dx, dy };
        let mut s = InputSender::new();
        s.push(by(3, -2)).unwrap();
        s.push(by(4, -5)).unwrap();
        s.push(key(4, true)).unwrap();
        s.push(by(i16::MAX, 1)).unwrap();
        s.push(by(10, 1)).unwrap();
        let t = Instant::now();
        let mut sent = Vec::new();
        while let Some(x) = s.poll_transmit(t) {
            sent.push(x);
        }
        // Sums saturate rather than wrap around.
        assert_eq!(
            sent,
            vec![(1, by(7, -7)), (2, key(4, true)), (3, by(i16::MAX, 2))]
        );
        // Motion after the last step left is a new event.
        s.push(by(1, 1)).unwrap();
        assert_eq!(s.poll_transmit(t), Some((4, by(1, 1))));
        assert_eq!(s.stats().coalesced, 2);
    }

    #[test]
    fn pad_axes_coalesce_per_axis_but_never_across_a_button_edge() {
        use crate::pad::{PadAxis, PadButton};
        let axis = |pad, axis, value| InputEvent::PadAxis { pad, axis, value };
        let south = |down| InputEvent::PadButton {
            pad: 0,
            button: PadButton::South,
            down,
        };
        let mut s = InputSender::new();
        // Both sticks of pad 0 and one of pad 1 moving together.
        for v in 1..=5 {
            s.push(axis(0, PadAxis::LeftStickX, v)).unwrap();
            s.push(axis(0, PadAxis::LeftStickY, -v)).unwrap();
            s.push(axis(1, PadAxis::LeftStickX, 10 * v)).unwrap();
        }
        s.push(south(true)).unwrap();
        s.push(axis(0, PadAxis::LeftStickX, 6)).unwrap();
        s.push(south(false)).unwrap();
        s.push(axis(0, PadAxis::LeftStickX, 7)).unwrap();
        let t = Instant::now();
        let sent: Vec<_> = std::iter::from_fn(|| s.poll_transmit(t).map(|x| x.1)).collect();
        assert_eq!(
            sent,
            vec![
                axis(0, PadAxis::LeftStickX, 5),
                axis(0, PadAxis::LeftStickY, -5),
                axis(1, PadAxis::LeftStickX, 50),
                south(true),
                axis(0, PadAxis::LeftStickX, 6),
                south(false),
                axis(0, PadAxis::LeftStickX, 7),
            ]
        );
        assert_eq!(s.stats().coalesced, 12);
    }

    #[test]
    fn retransmits_after_rto_until_acked() {
        let mut s = InputSender::new();
        s.set_rto(Duration::from_millis(50));
        let t0 = Instant::now();
        s.push(key(4, true)).unwrap();
        s.push(key(4, false)).unwrap();
        assert_eq!(s.poll_transmit(t0).map(|x| x.0), Some(1));
        assert_eq!(s.poll_transmit(t0).map(|x| x.0), Some(2));
        assert_eq!(s.poll_transmit(t0 + Duration::from_millis(10)), None);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(50)));
        let t1 = t0 + Duration::from_millis(60);
        let mut rtts = Vec::new();
        s.handle_ack(1, |seq, sent| rtts.push((seq, t1 - sent)));
        assert_eq!(rtts, vec![(1, Duration::from_millis(60))]);
        assert_eq!(s.poll_transmit(t1), Some((2, key(4, false))));
        s.handle_ack(2, |_, _| {});
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(
            s.stats(),
            InputSenderStats {
                sent: 2,
                acked: 2,
                retransmits: 1,
                coalesced: 0
            }
        );
    }

    #[test]
    fn a_burst_leaves_at_the_pace_a_gateway_relays_and_none_is_dropped() {
        let mut s = InputSender::new();
        let mut r = InputReceiver::new();
        let t0 = Instant::now();
        // What a gateway lets through: over its rate, input is dropped.
        let mut gateway = Bucket::new(INPUT_RATE, t0);
        let n = 4000;
        for i in 0..n {
            s.push(key(i as u16, i % 2 == 0)).unwrap();
        }
        let (mut delivered, mut dropped, mut now) = (0, 0, t0);
        while s.in_flight() > 0 && now < t0 + Duration::from_secs(10) {
            while let Some((seq, ev)) = s.poll_transmit(now) {
                if gateway.take(now) {
                    r.handle(seq, ev, |_, _| delivered += 1);
                } else {
                    dropped += 1;
                }
            }
            s.handle_ack(r.ack(), |_, _| {});
            if s.in_flight() == 0 {
                break;
            }
            // The sender says when it can go on: the pace, not a busy loop.
            let next = s.poll_timeout().expect("events left, so a time to go on");
            assert!(next > now, "woken for nothing at {now:?}");
            now = next.max(now + Duration::from_micros(100));
        }
        assert_eq!((delivered, dropped), (n, 0));
        // A burst of 900 at once, then 3,600 a second.
        let took = now - t0;
        let paced =
            Duration::from_secs_f64(f64::from(n as u32 - SEND_RATE.1) / f64::from(SEND_RATE.0));
        assert!(
            took >= paced && took < paced + Duration::from_millis(50),
            "{took:?}"
        );
        assert_eq!(s.stats().retransmits, 0);
    }

    #[test]
    fn stalls_at_bound() {
        let mut s = InputSender::new();
        for i in 0..MAX_IN_FLIGHT {
            s.push(key(i as u16, true)).unwrap();
        }
        assert_eq!(s.push(key(1, false)), Err(InputError::Stalled));
    }

    proptest! {
        /// Over a link that drops, duplicates and reorders, every event is
        /// delivered exactly once and in order, and all end acknowledged.
        #[test]
        fn exactly_once_in_order(n in 1usize..3000, seed in any::<u64>(), loss in 0u64..50) {
            let mut s = InputSender::new();
            s.set_rto(Duration::from_millis(30));
            let mut r = InputReceiver::new();
            let events: Vec<InputEvent> = (0..n).map(|i| key(i as u16, i % 2 == 0)).collect();
            for e in &events { s.push(*e).unwrap(); }
            let mut rng = seed | 1;
            let mut next = || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
            let t0 = Instant::now();
            let mut delivered = Vec::new();
            let mut in_transit: Vec<(u32, InputEvent)> = Vec::new();
            for step in 0..20_000u64 {
                let now = t0 + Duration::from_millis(step * 5);
                while let Some(x) = s.poll_transmit(now) {
                    if next() % 100 >= loss { in_transit.push(x); }
                    if next() % 10 == 0 { in_transit.push(x); } // duplicate
                }
                // Reorder: deliver a random subset this step.
                let mut keep = Vec::new();
                for x in in_transit.drain(..) {
                    if next() % 3 == 0 { keep.push(x); } else { r.handle(x.0, x.1, |_, e| delivered.push(e)); }
                }
                in_transit = keep;
                if next() % 100 >= loss { s.handle_ack(r.ack(), |_, _| {}); }
                if next() % 200 == 0 { s.resend_unacked(now); } // a new path
                // Never more in flight than the host's window takes, and
                // unless the pace holds sends back, no event waits more than
                // two RTOs for its next send.
                prop_assert!(s.unsent <= RECEIVE_WINDOW as usize);
                if !s.paced {
                    let step = Duration::from_millis(5);
                    let waited = s.queue.iter().take(s.unsent).filter_map(|p| p.last_sent).map(|t| now - t).max();
                    prop_assert!(waited.is_none_or(|w| w < 2 * s.rto + step), "waited {:?}", waited);
                }
                if s.in_flight() == 0 { break; }
            }
            prop_assert_eq!(&delivered, &events);
            prop_assert_eq!(s.in_flight(), 0);
        }

        #[test]
        fn receiver_ignores_hostile_sequence_numbers(seqs in proptest::collection::vec(any::<u32>(), 0..500)) {
            let mut r = InputReceiver::new();
            for q in seqs { r.handle(q, key(1, true), |_, _| {}); }
            prop_assert!(r.early.len() <= RECEIVE_WINDOW as usize);
        }
    }
}
