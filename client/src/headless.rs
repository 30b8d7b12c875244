//! Running a session without a window: the same network and decode path,
//! and a presenter thread standing in for the window — it takes pictures
//! from the same kind of slot and converts them to the window's pixel
//! format as presenting would, so pictures it could not keep up with are
//! dropped and counted as the window's would be — and an input script
//! played on time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::handle::InputHandle;
use crate::input::Script;
use crate::slot::{Slot, SlotSink};
use crate::stats::Stats;
use crate::video::Presenter;

/// The headless presenter: a thread converting the slot's pictures.
pub struct HeadlessPresenter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HeadlessPresenter {
    /// Starts `nephele-present`; the sink it returns feeds it.
    pub fn start(stats: Arc<Stats>) -> std::io::Result<(Self, SlotSink)> {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let pending = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (slot, pending, stop, stats) =
                (slot.clone(), pending.clone(), stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("nephele-present".into())
                .spawn(move || present(&slot, &pending, &stop, &stats))?
        };
        let t = thread.thread().clone();
        let sink = SlotSink::new(slot, stats, pending, Box::new(move || t.unpark()));
        Ok((
            Self {
                stop,
                thread: Some(thread),
            },
            sink,
        ))
    }
}

impl Drop for HeadlessPresenter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn present(slot: &Mutex<Slot>, pending: &AtomicBool, stop: &AtomicBool, stats: &Stats) {
    // It stands in for the window's thread, which runs as soon as it wakes.
    nephele_platform::sched::latency_critical();
    let mut presenter = Presenter::default();
    let mut taken = Slot::default();
    while !stop.load(Ordering::Relaxed) {
        if !pending.swap(false, Ordering::AcqRel) {
            // Woken by the decoder; the timeout only bounds a missed wake.
            std::thread::park_timeout(Duration::from_millis(50));
            continue;
        }
        let meta = slot.lock().ok().and_then(|mut s| s.take(&mut taken));
        let Some(meta) = meta else { continue };
        if let Err(e) = presenter.convert(&taken.picture()) {
            tracing::warn!(error = ?e, "colour conversion failed");
            stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.record_presented(meta.completed_at, meta.captured_us);
    }
}

/// Plays `script` into `input`, timed from `start`, until done or `stop()`
/// says so; its gamepad lines go to `pads` as a scripted gamepad's device
/// events, to take the path real gamepads take.
pub fn play_script(
    script: &Script,
    input: &InputHandle,
    pads: &std::sync::mpsc::Sender<nephele_platform::gamepad::PadEvent>,
    start: Instant,
    stop: impl Fn() -> bool,
) {
    // Scripted keys stand for a person's: they go out as promptly.
    nephele_platform::sched::latency_critical();
    for (at, ev) in &script.events {
        loop {
            if stop() {
                return;
            }
            let now = Instant::now();
            let due = start + *at;
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(20)));
        }
        match crate::gamepad::scripted(ev) {
            Some(pad) => {
                // The session's gamepad threads outlive this script.
                let _ = pads.send(pad);
            }
            // A stalled link refuses input until the host catches up: the
            // script waits, as a person would, rather than skip keys.
            None => {
                while input.push(*ev).is_err() {
                    if stop() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}
