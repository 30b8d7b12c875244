//! Pushing input into a session from any thread (the window, the gamepad
//! threads, a script) without blocking: events go through a bounded queue
//! to the network thread, which numbers, coalesces and sends them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use nephele_protocol::input::{InputError, MAX_IN_FLIGHT};
use nephele_protocol::wire::InputEvent;
use tokio::sync::Notify;

use crate::activity::Activity;

/// Events waiting for the network thread, at most: a quarter of what may
/// be unacknowledged, so a stalled network thread shows as a refusal
/// rather than as memory.
pub const INPUT_QUEUE: usize = MAX_IN_FLIGHT / 4;

/// What the handles and the network thread share.
#[derive(Debug)]
struct Shared {
    wake: Arc<Notify>,
    activity: Arc<Activity>,
    /// Events pushed and not yet taken by the network thread.
    queued: AtomicUsize,
    /// Events the network thread holds unacknowledged.
    unacked: AtomicUsize,
}

/// Pushes input into a session from any thread, without blocking.
#[derive(Debug, Clone)]
pub struct InputHandle {
    tx: SyncSender<InputEvent>,
    shared: Arc<Shared>,
}

/// The network thread's end.
#[derive(Debug)]
pub struct InputQueue {
    rx: Receiver<InputEvent>,
    shared: Arc<Shared>,
}

/// A queue and its first handle; `wake` is notified on every push, and
/// input marks `activity`.
pub fn input_queue(wake: Arc<Notify>, activity: Arc<Activity>) -> (InputHandle, InputQueue) {
    let (tx, rx) = std::sync::mpsc::sync_channel(INPUT_QUEUE);
    let shared = Arc::new(Shared {
        wake,
        activity,
        queued: AtomicUsize::new(0),
        unacked: AtomicUsize::new(0),
    });
    (
        InputHandle {
            tx,
            shared: shared.clone(),
        },
        InputQueue { rx, shared },
    )
}

impl InputHandle {
    /// Queues an event for the host. Refused only when the network thread
    /// has stopped taking input (a stalled session); after the session
    /// ended, input goes nowhere without complaint.
    pub fn push(&self, ev: InputEvent) -> Result<(), InputError> {
        self.shared.activity.touch();
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        let r = match self.tx.try_send(ev) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                Err(InputError::Stalled)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        };
        self.shared.wake.notify_one();
        r
    }

    /// Events not yet acknowledged by the host (queued ones included).
    pub fn in_flight(&self) -> usize {
        // Queued first: an event moves to the unacknowledged count before
        // it leaves the queued one, so it is never missed in between.
        let queued = self.shared.queued.load(Ordering::SeqCst);
        queued + self.shared.unacked.load(Ordering::SeqCst)
    }
}

impl InputQueue {
    /// Moves queued events into `take`, at most `room` of them (what the
    /// sender can still hold unacknowledged: the rest wait here, and
    /// pushes are refused once this queue is full too, so nothing is
    /// dropped unseen); returns how many. Settle
    /// them with [`InputQueue::settle`] once they are counted as
    /// unacknowledged.
    pub fn drain(&self, room: usize, mut take: impl FnMut(InputEvent)) -> usize {
        let mut n = 0;
        while n < room
            && let Ok(ev) = self.rx.try_recv()
        {
            take(ev);
            n += 1;
        }
        n
    }

    /// `taken` events left the queue, and the network thread holds
    /// `unacked` unacknowledged now.
    pub fn settle(&self, taken: usize, unacked: usize) {
        self.shared.unacked.store(unacked, Ordering::SeqCst);
        if taken > 0 {
            self.shared.queued.fetch_sub(taken, Ordering::SeqCst);
        }
    }

    /// The user's activity, as input and the window mark it.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.shared.activity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_events_count_as_in_flight_until_drained_and_acknowledged() {
        let (h, q) = input_queue(Arc::new(Notify::new()), Arc::new(Activity::default()));
        let ev = InputEvent::Key {
            usage: 4,
            down: true,
        };
        h.push(ev).unwrap();
        h.push(ev).unwrap();
        assert_eq!(h.in_flight(), 2);
        let mut got = Vec::new();
        assert_eq!(
            q.drain(1, |e| got.push(e)),
            1,
            "only what there is room for"
        );
        let n = 1 + q.drain(MAX_IN_FLIGHT, |e| got.push(e));
        assert_eq!((n, h.in_flight()), (2, 2), "taken, not yet settled");
        q.settle(n, 2);
        assert_eq!(h.in_flight(), 2, "now unacknowledged");
        q.settle(0, 0);
        assert_eq!(h.in_flight(), 0);
        for _ in 0..INPUT_QUEUE {
            h.push(ev).unwrap();
        }
        assert_eq!(h.push(ev), Err(InputError::Stalled));
        drop(q);
        assert_eq!(h.push(ev), Ok(()), "after the session, nowhere");
    }
}
