//! Splitting encoded access units into datagrams, and putting them back
//! together on the client.
//!
//! The [`Fragmenter`] cuts an access unit into fragments of equal size (the
//! last may be shorter). The [`Reassembler`] accepts fragments in any order,
//! keeps a fixed number of frame slots with reused buffers, hands out complete
//! frames strictly in frame order, gives up on a frame at its deadline, and
//! after any loss withholds frames until the next keyframe (a decoder fed a
//! frame whose reference is missing shows garbage). It asks, through
//! [`Reassembler::poll_keyframe_request`], for that keyframe at a bounded rate.

use std::time::{Duration, Instant};

use crate::wire::{FRAG_FLAG_KEYFRAME, Message, VIDEO_HEADER_LEN, VideoFragment};

/// `a` comes before `b` in wrapping frame-number order.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Cuts access units into encoded video datagrams.
#[derive(Debug)]
pub struct Fragmenter {
    payload_size: usize,
    next_frame_id: u32,
    buf: Vec<u8>,
}

impl Fragmenter {
    /// A fragmenter producing messages of at most `max_message` bytes
    /// (header included). Values below 64 are raised to 64.
    pub fn new(max_message: usize) -> Self {
        let max_message = max_message.max(64);
        Self {
            payload_size: max_message - VIDEO_HEADER_LEN,
            next_frame_id: 0,
            buf: Vec::with_capacity(max_message),
        }
    }

    /// Payload bytes per fragment.
    pub fn payload_size(&self) -> usize {
        self.payload_size
    }

    /// Frame id the next call to [`Fragmenter::fragment`] will use.
    pub fn next_frame_id(&self) -> u32 {
        self.next_frame_id
    }

    /// Fragments one access unit, calling `emit` with each encoded message.
    /// Returns the frame id used. An empty access unit produces nothing but
    /// still consumes no id.
    pub fn fragment(
        &mut self,
        au: &[u8],
        keyframe: bool,
        capture_us: u64,
        mut emit: impl FnMut(&[u8]),
    ) -> Option<u32> {
        if au.is_empty() {
            return None;
        }
        let count = au.len().div_ceil(self.payload_size);
        let count = u16::try_from(count).ok()?;
        let frame_id = self.next_frame_id;
        self.next_frame_id = self.next_frame_id.wrapping_add(1);
        for (index, chunk) in au.chunks(self.payload_size).enumerate() {
            self.buf.clear();
            Message::Video(VideoFragment {
                frame_id,
                index: index as u16,
                count,
                flags: if keyframe { FRAG_FLAG_KEYFRAME } else { 0 },
                capture_us,
                payload: chunk,
            })
            .encode(&mut self.buf);
            emit(&self.buf);
        }
        Some(frame_id)
    }
}

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
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        Self {
            slots: 8,
            max_frame_bytes: 4 << 20,
            deadline: Duration::from_millis(150),
            reorder_grace: Duration::from_millis(4),
            keyframe_request_interval: Duration::from_millis(100),
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
    keyframe: bool,
    capture_us: u64,
    /// Size of every fragment but the last; 0 until a non-last fragment arrived.
    frag_size: usize,
    /// The last fragment, parked here if it arrives before `frag_size` is known.
    tail: Vec<u8>,
    tail_len: Option<usize>,
    received: Vec<u64>,
    n_received: u16,
    first_arrival: Instant,
    completed_at: Option<Instant>,
    data: Vec<u8>,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Self {
            active: false,
            frame_id: 0,
            count: 0,
            keyframe: false,
            capture_us: 0,
            frag_size: 0,
            tail: Vec::new(),
            tail_len: None,
            received: Vec::new(),
            n_received: 0,
            first_arrival: now,
            completed_at: None,
            data: Vec::new(),
        }
    }

    fn reset(&mut self, f: &VideoFragment<'_>, now: Instant) {
        self.active = true;
        self.frame_id = f.frame_id;
        self.count = f.count;
        self.keyframe = f.flags & FRAG_FLAG_KEYFRAME != 0;
        self.capture_us = f.capture_us;
        self.frag_size = 0;
        self.tail.clear();
        self.tail_len = None;
        self.received.clear();
        self.received.resize(usize::from(f.count).div_ceil(64), 0);
        self.n_received = 0;
        self.first_arrival = now;
        self.completed_at = None;
        self.data.clear();
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
}

/// Reassembles fragments into access units; see the module documentation.
#[derive(Debug)]
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
}

impl Reassembler {
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
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
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
        if let Some(next) = self.next
            && before(id, next)
        {
            return Err(FragmentError::Late(id));
        }
        let max_frags = self.cfg.max_frame_bytes.div_ceil(f.payload.len().max(1));
        if usize::from(f.count) > max_frags.max(1) && f.index + 1 != f.count {
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
        let max_frame_bytes = self.cfg.max_frame_bytes;
        let slot = &mut self.slots[idx];
        if slot.count != f.count || slot.capture_us != f.capture_us {
            return Err(FragmentError::Inconsistent(id));
        }
        if slot.complete() {
            return Err(FragmentError::Duplicate(id));
        }
        let word = usize::from(f.index) / 64;
        let bit = 1u64 << (f.index % 64);
        if slot.received[word] & bit != 0 {
            return Err(FragmentError::Duplicate(id));
        }
        let last = f.index + 1 == f.count;
        if last && f.count > 1 && slot.frag_size == 0 {
            // Offset unknown until a full-size fragment arrives: park it.
            slot.tail.clear();
            slot.tail.extend_from_slice(f.payload);
            slot.tail_len = Some(f.payload.len());
        } else {
            let size = if last {
                slot.frag_size.max(f.payload.len())
            } else {
                f.payload.len()
            };
            if !last {
                if slot.frag_size == 0 {
                    slot.frag_size = size;
                    if slot.frag_size * usize::from(slot.count) > max_frame_bytes + slot.frag_size {
                        slot.active = false;
                        return Err(FragmentError::TooLarge(id));
                    }
                } else if slot.frag_size != size {
                    return Err(FragmentError::Inconsistent(id));
                }
            } else if f.payload.len() > slot.frag_size && f.count > 1 {
                return Err(FragmentError::Inconsistent(id));
            }
            let off = usize::from(f.index) * if f.count == 1 { 0 } else { slot.frag_size };
            let end = off + f.payload.len();
            if end > max_frame_bytes {
                slot.active = false;
                return Err(FragmentError::TooLarge(id));
            }
            if slot.data.len() < end {
                slot.data.resize(end, 0);
            }
            slot.data[off..end].copy_from_slice(f.payload);
            if last {
                slot.tail_len = Some(f.payload.len());
            }
            // Now that the offset is known, place a parked last fragment.
            if slot.frag_size != 0
                && let Some(tlen) = slot.tail_len
                && !slot.tail.is_empty()
            {
                if tlen > slot.frag_size {
                    slot.active = false;
                    return Err(FragmentError::Inconsistent(id));
                }
                let toff = usize::from(slot.count - 1) * slot.frag_size;
                if slot.data.len() < toff + tlen {
                    slot.data.resize(toff + tlen, 0);
                }
                slot.data[toff..toff + tlen].copy_from_slice(&slot.tail[..tlen]);
                slot.tail.clear();
            }
        }
        slot.received[word] |= bit;
        slot.n_received += 1;
        if slot.n_received == slot.count {
            let total = usize::from(slot.count - 1) * slot.frag_size + slot.tail_len.unwrap_or(0);
            slot.data.truncate(total);
            slot.completed_at = Some(now);
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
                if now >= self.slots[i].first_arrival + self.cfg.deadline {
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

    /// The next instant at which [`Reassembler::poll`] may have something new
    /// without a new fragment arriving.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        for s in self.slots.iter().filter(|s| s.active) {
            let d = match s.completed_at {
                Some(c) => c + self.cfg.reorder_grace,
                None => s.first_arrival + self.cfg.deadline,
            };
            t = Some(t.map_or(d, |t| t.min(d)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames_of(sizes: &[usize], key_every: usize) -> Vec<(Vec<u8>, bool)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (
                    (0..n).map(|b| (b * 7 + i * 13) as u8).collect(),
                    i % key_every == 0,
                )
            })
            .collect()
    }

    fn fragment_all(frames: &[(Vec<u8>, bool)], max_message: usize) -> Vec<Vec<u8>> {
        let mut f = Fragmenter::new(max_message);
        let mut out = Vec::new();
        for (i, (au, key)) in frames.iter().enumerate() {
            f.fragment(au, *key, i as u64 * 1000, |d| out.push(d.to_vec()));
        }
        out
    }

    fn feed(r: &mut Reassembler, dgram: &[u8], now: Instant) -> Result<(), FragmentError> {
        match Message::decode(dgram).unwrap() {
            Message::Video(f) => r.handle_fragment(&f, now),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn drain(
        r: &mut Reassembler,
        now: Instant,
        got: &mut Vec<(u32, Vec<u8>)>,
        lost: &mut Vec<u32>,
    ) {
        while let Some(ev) = r.poll(now) {
            match ev {
                ReassemblyEvent::Frame(f) => got.push((f.frame_id, f.data)),
                ReassemblyEvent::Lost { frame_id, count } => {
                    lost.extend((0..count).map(|i| frame_id.wrapping_add(i)))
                }
            }
        }
    }

    proptest! {
        /// Any permutation of the fragments of a window of frames yields all
        /// frames, in order, byte for byte.
        #[test]
        fn reorder_within_window(sizes in proptest::collection::vec(1usize..5000, 1..6), seed in any::<u64>()) {
            let frames = frames_of(&sizes, 1);
            let mut dgrams = fragment_all(&frames, 300);
            // Deterministic shuffle.
            let mut s = seed | 1;
            for i in (1..dgrams.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                dgrams.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let t0 = Instant::now();
            let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
            for d in &dgrams {
                feed(&mut r, d, t0).unwrap();
            }
            let (mut got, mut lost) = (Vec::new(), Vec::new());
            drain(&mut r, t0 + Duration::from_millis(10), &mut got, &mut lost);
            prop_assert!(lost.is_empty(), "lost {:?}", lost);
            prop_assert_eq!(got.len(), frames.len());
            for (i, (id, data)) in got.iter().enumerate() {
                prop_assert_eq!(*id as usize, i);
                prop_assert_eq!(data, &frames[i].0);
            }
        }

        /// Random garbage fragments never panic and never grow memory past the slot bound.
        #[test]
        fn hostile_fragments_are_bounded(frags in proptest::collection::vec((any::<u32>(), 1u16..2000, any::<u16>(), proptest::collection::vec(any::<u8>(), 1..1100)), 1..200)) {
            let t0 = Instant::now();
            let cfg = ReassemblerConfig { max_frame_bytes: 1 << 20, ..Default::default() };
            let mut r = Reassembler::new(cfg.clone(), t0);
            for (i, (id, count, index, payload)) in frags.iter().enumerate() {
                let f = VideoFragment { frame_id: id % 16, index: index % count, count: *count, flags: (i % 2) as u8, capture_us: 0, payload };
                let _ = r.handle_fragment(&f, t0 + Duration::from_millis(i as u64));
                while r.poll(t0 + Duration::from_millis(i as u64)).is_some() {}
                let held: usize = r.slots.iter().map(|s| s.data.capacity() + s.tail.capacity()).sum();
                // Vec growth may double a buffer once; never more than that per slot.
                prop_assert!(held <= cfg.slots * (2 * cfg.max_frame_bytes + 2 * 1100));
            }
        }
    }

    #[test]
    fn lost_fragment_drops_frame_at_deadline_and_withholds_until_keyframe() {
        let frames = frames_of(&[3000, 3000, 3000, 3000], 3); // keyframes: 0 and 3
        let mut f = Fragmenter::new(1000);
        let mut per_frame: Vec<Vec<Vec<u8>>> = Vec::new();
        for (i, (au, key)) in frames.iter().enumerate() {
            let mut v = Vec::new();
            f.fragment(au, *key, i as u64, |d| v.push(d.to_vec()));
            per_frame.push(v);
        }
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
        let (mut got, mut lost) = (Vec::new(), Vec::new());
        for d in &per_frame[0] {
            feed(&mut r, d, t0).unwrap();
        }
        // Frame 1 loses its second fragment.
        for (i, d) in per_frame[1].iter().enumerate() {
            if i != 1 {
                feed(&mut r, d, t0).unwrap();
            }
        }
        for d in &per_frame[2] {
            feed(&mut r, d, t0).unwrap();
        }
        drain(&mut r, t0, &mut got, &mut lost);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0]);
        assert!(
            r.poll_keyframe_request(t0).is_none(),
            "no loss declared yet"
        );
        let late = t0 + Duration::from_millis(200);
        drain(&mut r, late, &mut got, &mut lost);
        // Frame 1 timed out, frame 2 depends on it and is withheld.
        assert_eq!(lost, vec![1, 2]);
        assert_eq!(r.poll_keyframe_request(late), Some(0));
        assert_eq!(r.poll_keyframe_request(late), None, "rate limited");
        for d in &per_frame[3] {
            feed(&mut r, d, late).unwrap();
        }
        drain(&mut r, late, &mut got, &mut lost);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 3]);
        assert!(!r.awaiting_keyframe());
        assert_eq!(r.poll_keyframe_request(late + Duration::from_secs(1)), None);
        // A fragment of an old frame is late.
        assert_eq!(
            feed(&mut r, &per_frame[1][1], late),
            Err(FragmentError::Late(1))
        );
    }

    /// Found by fuzzing: a fragment far ahead used to make `poll` walk the
    /// gap one frame at a time (billions of steps).
    #[test]
    fn a_huge_gap_in_frame_numbers_is_skipped_at_once() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
        let key = VideoFragment {
            frame_id: 0,
            index: 0,
            count: 1,
            flags: FRAG_FLAG_KEYFRAME,
            capture_us: 0,
            payload: &[1],
        };
        r.handle_fragment(&key, t0).unwrap();
        let far = VideoFragment {
            frame_id: 0x7FFF_FFF0,
            ..key.clone()
        };
        r.handle_fragment(&far, t0).unwrap();
        let (mut got, mut events) = (0, 0);
        while let Some(ev) = r.poll(t0 + Duration::from_millis(10)) {
            events += 1;
            if let ReassemblyEvent::Frame(_) = ev {
                got += 1;
            }
        }
        assert_eq!(got, 2);
        assert!(events <= 3, "{events} events");
        assert_eq!(r.stats().lost, 0x7FFF_FFEF);
    }

    #[test]
    fn first_keyframe_is_awaited_before_asking() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
        assert_eq!(
            r.poll_keyframe_request(t0 + Duration::from_millis(10)),
            None
        );
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + ReassemblerConfig::default().deadline)
        );
        assert_eq!(
            r.poll_keyframe_request(t0 + Duration::from_millis(200)),
            Some(0)
        );
    }

    #[test]
    fn wholly_lost_frame_is_skipped_after_grace() {
        let frames = frames_of(&[100, 100, 100], 1);
        let d = fragment_all(&frames, 1200);
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
        feed(&mut r, &d[0], t0).unwrap();
        feed(&mut r, &d[2], t0).unwrap();
        let (mut got, mut lost) = (Vec::new(), Vec::new());
        drain(&mut r, t0, &mut got, &mut lost);
        assert_eq!(got.len(), 1);
        assert!(lost.is_empty(), "within grace, frame 1 may still come");
        drain(&mut r, t0 + Duration::from_millis(5), &mut got, &mut lost);
        assert_eq!(lost, vec![1]);
        // Frame 2 is a keyframe here, so it is delivered.
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn duplicates_and_buffers_are_reused() {
        let frames = frames_of(&[2500; 20], 1);
        let mut f = Fragmenter::new(1000);
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
        let mut caps = Vec::new();
        for (i, (au, key)) in frames.iter().enumerate() {
            let mut v = Vec::new();
            f.fragment(au, *key, i as u64, |d| v.push(d.to_vec()));
            feed(&mut r, &v[0], t0).unwrap();
            assert_eq!(
                feed(&mut r, &v[0], t0),
                Err(FragmentError::Duplicate(i as u32))
            );
            for d in &v[1..] {
                feed(&mut r, d, t0).unwrap();
            }
            while let Some(ev) = r.poll(t0) {
                if let ReassemblyEvent::Frame(fr) = ev {
                    assert_eq!(fr.data, *au);
                    caps.push(fr.data.as_ptr() as usize);
                    r.recycle(fr.data);
                }
            }
        }
        assert_eq!(caps.len(), 20);
        let distinct: std::collections::HashSet<_> = caps.iter().collect();
        assert!(
            distinct.len() <= 3,
            "buffers are recycled, saw {} distinct",
            distinct.len()
        );
    }
}
