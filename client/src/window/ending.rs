//! How the window meets a session's end: the launcher's Lost page and its
//! countdown, a kiosk's next attempt, a window's failure, and a desktop
//! opened on another device.

use std::time::Duration;

use winit::event_loop::ActiveEventLoop;

use super::LAUNCHER_MAX_BACKOFF;
use super::options::Ending;

impl super::App {
    /// The attempt failed or its session ended: a kiosk tries again after
    /// a backoff; a window shows why until it is closed; the launcher
    /// counts down to its next attempt (not when the desktop was opened on
    /// another device: the two would take it from each other in turns; nor
    /// when the service ended it),
    /// or goes back to the catalog when the session ended as asked.
    pub(super) fn lost(&mut self, event_loop: &ActiveEventLoop, ending: Option<Ending>) {
        self.release_held();
        self.conn.end();
        self.banner.stage = None;
        if let Some(l) = &mut self.launcher {
            match ending {
                Some(e) if e.no_retry => {
                    tracing::warn!(error = %e.why, "the session was taken over or ended by the service");
                    l.lost(&e.why);
                }
                Some(e) => {
                    tracing::warn!(error = %e.why, "the session was lost");
                    l.lost(&e.why);
                    let wait = self.conn.retry_later(LAUNCHER_MAX_BACKOFF);
                    tracing::info!(backoff = ?wait, "trying again");
                }
                None => l.ended(),
            }
            self.leave_session();
            return;
        }
        match (&self.opts.kiosk, ending.map(|e| e.why)) {
            (Some(k), why) => {
                let why = why.unwrap_or_else(|| "the session ended".into());
                let max = Duration::from_secs(u64::from(k.max_backoff_secs.max(1)));
                let wait = self.conn.retry_later(max);
                tracing::warn!(error = %why, backoff = ?wait, "kiosk: trying again");
                self.banner.failure = Some(why);
            }
            (None, None) => event_loop.exit(),
            (None, Some(why)) => {
                tracing::error!(error = %why, "no session");
                self.error = Some(why.clone());
                self.banner.failure = Some(why);
            }
        }
        self.refresh_status();
    }
}
