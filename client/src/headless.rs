//! Running a session without a window: the same network and decode path,
//! with pictures converted to the window's pixel format as presenting would,
//! and an input script played on time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::input::Script;
use crate::session::{FrameMeta, FrameSink, InputHandle};
use crate::stats::Stats;
use crate::video::{Picture, Presenter};

/// Converts every picture to BGRA and counts it as presented.
pub struct HeadlessSink {
    stats: Arc<Stats>,
    presenter: Presenter,
}

impl HeadlessSink {
    /// A sink recording into `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            stats,
            presenter: Presenter::default(),
        }
    }
}

impl FrameSink for HeadlessSink {
    fn present(&mut self, pic: &Picture<'_>, meta: FrameMeta) {
        if let Err(e) = self.presenter.convert(pic) {
            tracing::warn!(error = ?e, "colour conversion failed");
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats
            .record_presented(meta.completed_at, meta.capture_us);
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
) -> Result<(), crate::session::SessionError> {
    // Scripted keys stand for a person's: they go out as promptly.
    nephele_platform::sched::latency_critical();
    for (at, ev) in &script.events {
        loop {
            if stop() {
                return Ok(());
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
            None => input.push(*ev)?,
        }
    }
    Ok(())
}
