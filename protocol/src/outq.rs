//! The queue of what a session core wants sent, drained by its driver with
//! `poll_transmit`: each entry is a destination and the bytes for it.
//!
//! Buffers are reused: the driver hands in its own buffer when it polls
//! and gets the entry's bytes by swapping, so the queue keeps the driver's
//! old buffer for the next entry. In steady state nothing is allocated per
//! message. The queue is bounded; a core that finds it full drops what it
//! was about to queue (its driver is not draining, and the messages that
//! matter are repeated on timers or retransmitted end to end).

use std::collections::VecDeque;

/// Entries held at most.
pub const OUT_QUEUE: usize = 1024;

/// Destinations and bytes, oldest first.
#[derive(Debug)]
pub struct OutQueue<D> {
    queue: VecDeque<(D, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
    dropped: u64,
}

impl<D> Default for OutQueue<D> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            spare: Vec::new(),
            dropped: 0,
        }
    }
}

impl<D> OutQueue<D> {
    /// Queues the bytes `write` appends to an empty buffer, for `to`.
    pub fn push(&mut self, to: D, write: impl FnOnce(&mut Vec<u8>)) {
        if self.queue.len() >= OUT_QUEUE {
            self.dropped += 1;
            return;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        write(&mut buf);
        self.queue.push_back((to, buf));
    }

    /// The oldest entry: its bytes replace `out`'s contents.
    pub fn pop(&mut self, out: &mut Vec<u8>) -> Option<D> {
        let (to, mut buf) = self.queue.pop_front()?;
        std::mem::swap(out, &mut buf);
        if self.spare.len() < 16 {
            self.spare.push(buf);
        }
        Some(to)
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Entries dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets everything waiting.
    pub fn clear(&mut self) {
        while let Some((_, buf)) = self.queue.pop_front() {
            if self.spare.len() < 16 {
                self.spare.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_order_and_buffers_are_reused() {
        let mut q = OutQueue::default();
        q.push(1, |b| b.extend_from_slice(b"one"));
        q.push(2, |b| b.extend_from_slice(b"two"));
        let mut out = Vec::with_capacity(64);
        assert_eq!(q.pop(&mut out), Some(1));
        assert_eq!(out, b"one");
        assert_eq!(q.pop(&mut out), Some(2));
        assert_eq!(out, b"two");
        assert_eq!(q.pop(&mut out), None);
        // The driver's first buffer (capacity 64) came back as a spare.
        q.push(3, |b| assert!(b.is_empty() && b.capacity() >= 3));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut q = OutQueue::default();
        for i in 0..OUT_QUEUE + 5 {
            q.push(i, |b| b.push(0));
        }
        assert_eq!(q.len(), OUT_QUEUE);
        assert_eq!(q.dropped(), 5);
        q.clear();
        assert!(q.is_empty());
    }
}
