//! Putting frames back together on the client: slots of reused buffers,
//! rebuilding from parity, frames handed out in order, losses judged and
//! keyframes asked for.

use std::time::{Duration, Instant};

use reed_solomon_simd::ReedSolomonDecoder;

use super::before;
use crate::wire::{FRAG_FLAG_KEYFRAME, VideoFragment};

/// Limits and timing of a [`Reassembler`].
#[derive(Debug, Clone)]
pub struct ReassemblerConfig {
    /// Frames being assembled at once; a fragment of a further frame evicts the oldest.
    pub slots: usize,
    /// Largest access unit accepted.
    pub max_frame_bytes: usize,
    /// How long after its first fragment a frame may take to complete.
    pub deadline: Duration,
    /// How long a frame of which nothing arrived is waited for once a later
    /// frame is complete (tolerates reordering between frames).
    pub reorder_grace: Duration,
    /// Minimum spacing of repeated keyframe requests.
    pub keyframe_request_interval: Duration,
    /// How long a started but incomplete frame is waited for once a later
    /// frame is complete: its missing fragments were sent before the later
    /// frame's, so beyond reordering they are lost (and parity did not
    /// suffice). Giving up then asks for a keyframe without waiting for the
    /// deadline.
    pub incomplete_grace: Duration,
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        Self {
            slots: 8,
            max_frame_bytes: 4 << 20,
            deadline: Duration::from_millis(150),
            reorder_grace: Duration::from_millis(4),
            keyframe_request_interval: Duration::from_millis(100),
            incomplete_grace: Duration::from_millis(10),
        }
    }
}

/// A reassembled access unit. Return `data` with [`Reassembler::recycle`]
/// when done so the buffer is reused.
#[derive(Debug)]
pub struct CompleteFrame {
    /// The frame's number.
    pub frame_id: u32,
    /// Whether it is an IDR frame.
    pub keyframe: bool,
    /// Host capture stamp, microseconds since the host's session epoch.
    pub capture_us: u64,
    /// When the frame's last fragment arrived.
    pub completed_at: Instant,
    /// The access unit.
    pub data: Vec<u8>,
}

/// What the reassembler has to say.
#[derive(Debug)]
pub enum ReassemblyEvent {
    /// The next frame in order, complete and decodable.
    Frame(CompleteFrame),
    /// Frames that will never be delivered (incomplete at their deadline,
    /// evicted, skipped over, or withheld because a reference before them
    /// was lost). A run of frames of which nothing arrived is one event.
    Lost {
        /// The first lost frame's number.
        frame_id: u32,
        /// How many consecutive frames, from `frame_id`, are lost.
        count: u32,
    },
}

/// Why a fragment was not accepted. None of these is fatal to the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The frame was already delivered or given up.
    #[error("fragment of frame {0} arrived after the frame was delivered or dropped")]
    Late(u32),
    /// The frame would exceed [`ReassemblerConfig::max_frame_bytes`].
    #[error("frame {0} larger than the frame size cap")]
    TooLarge(u32),
    /// The fragment contradicts earlier fragments of the same frame.
    #[error("fragment inconsistent with earlier fragments of frame {0}")]
    Inconsistent(u32),
    /// The same fragment arrived twice.
    #[error("duplicate fragment of frame {0}")]
    Duplicate(u32),
}

#[derive(Debug)]
struct Slot {
    active: bool,
    frame_id: u32,
    count: u16,
    parity: u16,
    shard: usize,
    frame_len: usize,
    keyframe: bool,
    capture_us: u64,
    /// Which of the `count + parity` fragments arrived.
    received: Vec<u64>,
    n_data: u16,
    n_parity: u16,
    first_arrival: Instant,
    completed_at: Option<Instant>,
    /// `count × shard` bytes (the last shard zero-padded), cut to
    /// `frame_len` when complete.
    data: Vec<u8>,
    /// `parity × shard` bytes.
    parity_data: Vec<u8>,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Self {
            active: false,
            frame_id: 0,
            count: 0,
            parity: 0,
            shard: 0,
            frame_len: 0,
            keyframe: false,
            capture_us: 0,
            received: Vec::new(),
            n_data: 0,
            n_parity: 0,
            first_arrival: now,
            completed_at: None,
            data: Vec::new(),
            parity_data: Vec::new(),
        }
    }

    fn reset(&mut self, f: &VideoFragment<'_>, now: Instant) {
        self.active = true;
        self.frame_id = f.frame_id;
        self.count = f.count;
        self.parity = f.parity;
        self.shard = usize::from(f.shard);
        self.frame_len = f.frame_len as usize;
        self.keyframe = f.flags & FRAG_FLAG_KEYFRAME != 0;
        self.capture_us = f.capture_us;
        self.received.clear();
        self.received.resize(
            (usize::from(f.count) + usize::from(f.parity)).div_ceil(64),
            0,
        );
        self.n_data = 0;
        self.n_parity = 0;
        self.first_arrival = now;
        self.completed_at = None;
        // Sizes were checked against the frame limit before this reset.
        self.data.clear();
        self.data.resize(usize::from(f.count) * self.shard, 0);
        self.parity_data.clear();
        self.parity_data
            .resize(usize::from(f.parity) * self.shard, 0);
    }

    fn has(&self, index: usize) -> bool {
        self.received[index / 64] & (1u64 << (index % 64)) != 0
    }

    fn complete(&self) -> bool {
        self.completed_at.is_some()
    }
}

/// Counters a client reports in its statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Frames handed out complete.
    pub delivered: u64,
    /// Frames given up.
    pub lost: u64,
    /// Fragments rejected (late, duplicate, inconsistent, too large).
    pub rejected_fragments: u64,
    /// Keyframe requests issued.
    pub keyframe_requests: u64,
    /// Frames rebuilt from parity.
    pub fec_recovered: u64,
    /// Fragments (data and parity) of the frames settled so far (see
    /// [`Reassembler::settle`]).
    pub fragments_expected: u64,
    /// Of those, fragments that arrived, late ones included (at most a
    /// frame's own count per frame, so duplicates cannot hide loss).
    pub fragments_received: u64,
}

impl ReassemblyStats {
    /// Share of fragments lost between `earlier` and these counters (0 when
    /// nothing was expected).
    pub fn loss_since(&self, earlier: &ReassemblyStats) -> f64 {
        // Saturating: counters of a newer reassembler may start below.
        let expected = self
            .fragments_expected
            .saturating_sub(earlier.fragments_expected);
        let received = self
            .fragments_received
            .saturating_sub(earlier.fragments_received);
        if expected == 0 {
            0.0
        } else {
            1.0 - (received.min(expected) as f64 / expected as f64)
        }
    }
}

/// Rebuilds a slot's missing data shards from the parity it holds.
fn recover(slot: &mut Slot, decoder: &mut Option<ReedSolomonDecoder>) -> bool {
    let (count, parity, shard) = (
        usize::from(slot.count),
        usize::from(slot.parity),
        slot.shard,
    );
    let dec = match decoder {
        Some(d) => d.reset(count, parity, shard).map(|()| d),
        none @ None => ReedSolomonDecoder::new(count, parity, shard).map(|d| &mut *none.insert(d)),
    };
    let Ok(dec) = dec else {
        return false;
    };
    for i in 0..count {
        if slot.has(i)
            && dec
                .add_original_shard(i, &slot.data[i * shard..(i + 1) * shard])
                .is_err()
        {
            return false;
        }
    }
    for j in 0..parity {
        if slot.has(count + j)
            && dec
                .add_recovery_shard(j, &slot.parity_data[j * shard..(j + 1) * shard])
                .is_err()
        {
            return false;
        }
    }
    let Ok(result) = dec.decode() else {
        return false;
    };
    for (i, restored) in result.restored_original_iter() {
        slot.data[i * shard..(i + 1) * shard].copy_from_slice(restored);
    }
    true
}

/// Reassembles fragments into access units; see the module documentation.
pub struct Reassembler {
    cfg: ReassemblerConfig,
    slots: Vec<Slot>,
    /// Next frame to hand out; `None` until the first keyframe completes.
    next: Option<u32>,
    awaiting_keyframe: bool,
    last_good: u32,
    last_keyframe_request: Option<Instant>,
    created: Instant,
    pool: Vec<Vec<u8>>,
    events: std::collections::VecDeque<ReassemblyEvent>,
    stats: ReassemblyStats,
    /// Fragment counts per recent frame, until [`Reassembler::settle`].
    ledger: [LedgerEntry; LEDGER],
    decoder: Option<ReedSolomonDecoder>,
}

/// Frames tracked for loss accounting at once (a second at 64 fps; a frame
/// pushed out early is settled then).
const LEDGER: usize = 64;

/// How long after its first fragment a frame's fragments are judged.
pub const SETTLE: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Copy)]
struct LedgerEntry {
    used: bool,
    /// Counted into the stats already; later fragments of the frame are
    /// counted as they come.
    settled: bool,
    id: u32,
    first: Instant,
    expected: u32,
    received: u32,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("next", &self.next)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Reassembler {
    /// Bytes its slots hold (for the tests of its bounds).
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.data.capacity() + s.parity_data.capacity())
            .sum()
    }

    /// A reassembler waiting for its first keyframe.
    pub fn new(cfg: ReassemblerConfig, now: Instant) -> Self {
        let slots = (0..cfg.slots.max(1)).map(|_| Slot::new(now)).collect();
        Self {
            events: std::collections::VecDeque::with_capacity(cfg.slots * 2 + 4),
            pool: Vec::with_capacity(cfg.slots + 4),
            cfg,
            slots,
            next: None,
            awaiting_keyframe: true,
            last_good: 0,
            last_keyframe_request: None,
            created: now,
            stats: ReassemblyStats::default(),
            ledger: [LedgerEntry {
                used: false,
                settled: false,
                id: 0,
                first: now,
                expected: 0,
                received: 0,
            }; LEDGER],
            decoder: None,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Counts the fragments of frames first seen [`SETTLE`] or more before
    /// `now` into [`Self::stats`], and returns them. Each frame is judged as
    /// a whole: when its fragments were counted as "expected" on the first
    /// one's arrival, parity trailing its data across a measuring window
    /// read as loss in one window and as an unseen surplus in the next
    /// (about 2 % of phantom loss on loopback).
    pub fn settle(&mut self, now: Instant) -> ReassemblyStats {
        for i in 0..self.ledger.len() {
            let e = &self.ledger[i];
            if e.used && !e.settled && now >= e.first + SETTLE {
                self.settle_entry(i);
            }
        }
        self.stats
    }

    fn settle_entry(&mut self, i: usize) {
        let e = &mut self.ledger[i];
        self.stats.fragments_expected += u64::from(e.expected);
        self.stats.fragments_received += u64::from(e.received.min(e.expected));
        e.settled = true;
    }

    /// Counts a fragment against its frame's ledger entry.
    fn account(&mut self, f: &VideoFragment<'_>, now: Instant) {
        let i = f.frame_id as usize % LEDGER;
        let e = &mut self.ledger[i];
        if e.used && e.id == f.frame_id && e.settled {
            // Late for a frame already judged: it still crossed the path.
            if e.received < e.expected {
                self.stats.fragments_received += 1;
            }
            e.received = e.received.saturating_add(1);
            return;
        }
        if !(e.used && e.id == f.frame_id) {
            if e.used && before(f.frame_id, e.id) {
                // Its frame was judged long ago (the entry has been
                // reused): it still crossed the path.
                self.stats.fragments_received += 1;
                return;
            }
            if e.used && !e.settled {
                self.settle_entry(i);
            }
            self.ledger[i] = LedgerEntry {
                used: true,
                settled: false,
                id: f.frame_id,
                first: now,
                expected: u32::from(f.count) + u32::from(f.parity),
                received: 0,
            };
        }
        self.ledger[i].received = self.ledger[i].received.saturating_add(1);
    }

    /// Returns a frame's buffer for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < self.cfg.slots + 4 {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// Accepts one decoded fragment.
    pub fn handle_fragment(
        &mut self,
        f: &VideoFragment<'_>,
        now: Instant,
    ) -> Result<(), FragmentError> {
        let res = self.insert(f, now);
        if res.is_err() {
            self.stats.rejected_fragments += 1;
        }
        res
    }

    fn insert(&mut self, f: &VideoFragment<'_>, now: Instant) -> Result<(), FragmentError> {
        let id = f.frame_id;
        f.check().map_err(|_| FragmentError::Inconsistent(id))?;
        // Counted even when late: parity that arrives after its frame was
        // shown (or data after parity rebuilt it) did cross the path.
        self.account(f, now);
        if let Some(next) = self.next
            && before(id, next)
        {
            return Err(FragmentError::Late(id));
        }
        let max = self.cfg.max_frame_bytes;
        let shard = usize::from(f.shard);
        if f.frame_len as usize > max || usize::from(f.parity) * shard > max + shard {
            return Err(FragmentError::TooLarge(id));
        }
        let idx = match self.slots.iter().position(|s| s.active && s.frame_id == id) {
            Some(i) => i,
            None => {
                let i = self.free_slot(now);
                self.slots[i].reset(f, now);
                i
            }
        };
        let slot = &mut self.slots[idx];
        if slot.count != f.count
            || slot.parity != f.parity
            || slot.shard != shard
            || slot.frame_len != f.frame_len as usize
            || slot.capture_us != f.capture_us
        {
            return Err(FragmentError::Inconsistent(id));
        }
        if slot.complete() {
            return Err(FragmentError::Duplicate(id));
        }
        let index = usize::from(f.index);
        if slot.has(index) {
            return Err(FragmentError::Duplicate(id));
        }
        let count = usize::from(slot.count);
        if index < count {
            let off = index * shard;
            slot.data[off..off + f.payload.len()].copy_from_slice(f.payload);
            slot.n_data += 1;
        } else {
            let off = (index - count) * shard;
            slot.parity_data[off..off + shard].copy_from_slice(f.payload);
            slot.n_parity += 1;
        }
        slot.received[index / 64] |= 1u64 << (index % 64);
        if slot.n_data == slot.count {
            slot.data.truncate(slot.frame_len);
            slot.completed_at = Some(now);
        } else if slot.parity > 0
            && slot.n_data + slot.n_parity >= slot.count
            && recover(slot, &mut self.decoder)
        {
            slot.data.truncate(slot.frame_len);
            slot.completed_at = Some(now);
            self.stats.fec_recovered += 1;
        }
        Ok(())
    }

    /// Picks a free slot, evicting the oldest frame if all are busy.
    fn free_slot(&mut self, _now: Instant) -> usize {
        if let Some(i) = self.slots.iter().position(|s| !s.active) {
            return i;
        }
        let oldest = (0..self.slots.len())
            .min_by(|&a, &b| {
                let (fa, fb) = (self.slots[a].frame_id, self.slots[b].frame_id);
                if before(fa, fb) {
                    std::cmp::Ordering::Less
                } else if fa == fb {
                    std::cmp::Ordering::Equal
                } else {
                    std::cmp::Ordering::Greater
                }
            })
            .unwrap_or(0);
        let id = self.slots[oldest].frame_id;
        self.slots[oldest].active = false;
        // Everything up to and including the evicted frame is now behind us.
        match self.next {
            Some(n) if !before(id, n) => {
                self.mark_lost(n, id.wrapping_sub(n).saturating_add(1));
                self.next = Some(id.wrapping_add(1));
            }
            Some(_) => self.mark_lost(id, 1),
            None => {
                self.mark_lost(id, 1);
                self.next = Some(id.wrapping_add(1));
            }
        }
        oldest
    }

    fn mark_lost(&mut self, frame_id: u32, count: u32) {
        self.stats.lost += u64::from(count);
        self.awaiting_keyframe = true;
        self.events
            .push_back(ReassemblyEvent::Lost { frame_id, count });
    }

    /// Advances the delivery order and returns the next event, if any.
    pub fn poll(&mut self, now: Instant) -> Option<ReassemblyEvent> {
        if let Some(ev) = self.events.pop_front() {
            return Some(ev);
        }
        self.advance(now);
        self.events.pop_front()
    }

    fn slot_of(&self, id: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.active && s.frame_id == id)
    }

    fn advance(&mut self, now: Instant) {
        let Some(next) = self.next else {
            // Start (or resynchronise) at the earliest complete keyframe;
            // anything before it is useless to the decoder.
            let start = self
                .slots
                .iter()
                .filter(|s| s.active && s.complete() && s.keyframe)
                .map(|s| s.frame_id)
                .reduce(|a, b| if before(a, b) { a } else { b });
            if let Some(start) = start {
                for i in 0..self.slots.len() {
                    let s = &self.slots[i];
                    if s.active && before(s.frame_id, start) {
                        let id = s.frame_id;
                        self.slots[i].active = false;
                        self.mark_lost(id, 1);
                    }
                }
                self.next = Some(start);
                self.advance(now);
            } else {
                // Nothing decodable yet: let go of frames past their deadline.
                self.expire_unstarted(now);
            }
            return;
        };
        match self.slot_of(next) {
            Some(i) if self.slots[i].complete() => {
                let slot = &mut self.slots[i];
                slot.active = false;
                self.next = Some(next.wrapping_add(1));
                if self.awaiting_keyframe && !slot.keyframe {
                    // A reference is missing: this frame cannot be shown.
                    self.stats.lost += 1;
                    self.events.push_back(ReassemblyEvent::Lost {
                        frame_id: next,
                        count: 1,
                    });
                    return;
                }
                self.awaiting_keyframe = false;
                self.last_good = next;
                self.stats.delivered += 1;
                let spare = self.pool.pop().unwrap_or_default();
                let data = std::mem::replace(&mut slot.data, spare);
                self.events.push_back(ReassemblyEvent::Frame(CompleteFrame {
                    frame_id: next,
                    keyframe: slot.keyframe,
                    capture_us: slot.capture_us,
                    completed_at: slot.completed_at.unwrap_or(now),
                    data,
                }));
            }
            Some(i) => {
                let overtaken = self.slots.iter().any(|s| {
                    s.active
                        && before(next, s.frame_id)
                        && s.completed_at
                            .is_some_and(|c| now >= c + self.cfg.incomplete_grace)
                });
                if overtaken || now >= self.slots[i].first_arrival + self.cfg.deadline {
                    self.slots[i].active = false;
                    self.next = Some(next.wrapping_add(1));
                    self.mark_lost(next, 1);
                }
            }
            None => {
                // Nothing of `next` arrived. Skip to the earliest frame we
                // have once a later frame has been complete for the reorder
                // grace, or a later frame's deadline passed. The whole gap
                // goes in one step, however wide a peer made it.
                let give_up = self.slots.iter().any(|s| {
                    s.active
                        && before(next, s.frame_id)
                        && (s
                            .completed_at
                            .is_some_and(|c| now >= c + self.cfg.reorder_grace)
                            || now >= s.first_arrival + self.cfg.deadline)
                });
                let earliest = self
                    .slots
                    .iter()
                    .filter(|s| s.active && before(next, s.frame_id))
                    .map(|s| s.frame_id)
                    .reduce(|a, b| if before(a, b) { a } else { b });
                if let (true, Some(target)) = (give_up, earliest) {
                    self.next = Some(target);
                    self.mark_lost(next, target.wrapping_sub(next));
                }
            }
        }
    }

    fn expire_unstarted(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.active
                && (now >= s.first_arrival + self.cfg.deadline || (s.complete() && !s.keyframe))
            {
                let id = s.frame_id;
                self.slots[i].active = false;
                self.mark_lost(id, 1);
            }
        }
    }

    /// Withholds further frames until a keyframe, and asks for one: the
    /// decoder lost its references (a dropped frame, a corrupt picture).
    pub fn request_keyframe(&mut self) {
        self.awaiting_keyframe = true;
    }

    /// Whether frames are being withheld until a keyframe arrives.
    pub fn awaiting_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    /// Returns `Some(last_good_frame)` when a keyframe request should be sent now.
    pub fn poll_keyframe_request(&mut self, now: Instant) -> Option<u32> {
        if !self.awaiting_keyframe {
            return None;
        }
        // Before the first frame, give the host's opening keyframe time to
        // arrive (a deadline's worth) before asking for another.
        if self.next.is_none()
            && self.last_keyframe_request.is_none()
            && now < self.created + self.cfg.deadline
        {
            return None;
        }
        if self
            .last_keyframe_request
            .is_some_and(|t| now < t + self.cfg.keyframe_request_interval)
        {
            return None;
        }
        self.last_keyframe_request = Some(now);
        self.stats.keyframe_requests += 1;
        Some(self.last_good)
    }

    /// The next instant after `now` at which [`Reassembler::poll`] may have
    /// something new without a new fragment arriving.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |d: Instant| {
            // Only what is still ahead: a passed deadline has been acted on.
            if d > now {
                t = Some(t.map_or(d, |t: Instant| t.min(d)));
            }
        };
        for s in self.slots.iter().filter(|s| s.active) {
            match s.completed_at {
                Some(c) => {
                    consider(c + self.cfg.reorder_grace);
                    consider(c + self.cfg.incomplete_grace);
                }
                None => consider(s.first_arrival + self.cfg.deadline),
            }
        }
        if self.awaiting_keyframe {
            let d = match self.last_keyframe_request {
                Some(last) => last + self.cfg.keyframe_request_interval,
                None => self.created + self.cfg.deadline,
            };
            t = Some(t.map_or(d, |t| t.min(d)));
        }
        t
    }
}
