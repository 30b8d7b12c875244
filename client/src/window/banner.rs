//! What the window says: its title and the banner over the picture (a
//! failure, a notice, the microphone, presentation mode, a coming pause,
//! a pause, a resume, a reconnect, or the connection stage) and the
//! statistics overlay's lines.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nephele_protocol::activity::Phase;

use crate::stats::Stats;
use crate::status::{Route, Status};

/// How long a notice (fullscreen, capture) stays on the banner.
const NOTICE_FOR: Duration = Duration::from_secs(3);

/// How often the statistics overlay's figures are brought up to date.
const STATS_INTERVAL: Duration = Duration::from_millis(500);

/// Silence from the gateway longer than this (it pings four times a
/// second) is shown as an interrupted connection.
const INTERRUPTED_AFTER: Duration = Duration::from_millis(600);

/// The window's words.
#[derive(Debug)]
pub(super) struct Banner {
    /// The title shown now.
    pub shown_title: String,
    /// The banner drawn over the picture.
    pub text: Option<String>,
    /// The connection stage under way, until the first picture.
    pub stage: Option<String>,
    /// Why the session could not start or ended, shown until closed (or,
    /// in a kiosk, until the next attempt).
    pub failure: Option<String>,
    /// A short-lived notice and when it goes.
    notice: Option<(String, Instant)>,
    pub show_stats: bool,
    pub stats_lines: Vec<String>,
    next_stats: Instant,
    /// Presented frames and received bytes at the last overlay update.
    rates_from: (Instant, u64, u64),
}

/// The session as the title tells it.
pub(super) struct Session<'a> {
    /// Its status, when one is up.
    pub status: Option<&'a Status>,
    pub mic_muted: bool,
    pub presentation: bool,
    /// How far the clock map may be off, ms.
    pub uncertainty_ms: f64,
}

impl Banner {
    pub fn new(show_stats: bool, now: Instant) -> Self {
        Self {
            shown_title: String::new(),
            text: None,
            stage: None,
            failure: None,
            notice: None,
            show_stats,
            stats_lines: Vec::new(),
            next_stats: now,
            rates_from: (now, 0, 0),
        }
    }

    /// Shows `text` on the banner for a few seconds.
    pub fn notify(&mut self, text: String) {
        self.notice = Some((text, Instant::now() + NOTICE_FOR));
    }

    /// Whether a notice shows.
    pub fn has_notice(&self) -> bool {
        self.notice.is_some()
    }

    /// The overlay's figures are due again at once.
    pub fn stats_now(&mut self) {
        self.next_stats = Instant::now();
    }

    /// Works out the title and the banner; returns the title when it
    /// changed, and whether to redraw (the banner or the overlay changed).
    pub fn refresh(
        &mut self,
        base_title: &str,
        session: &Session<'_>,
        retry_at: Option<Instant>,
        stats: &Stats,
        picture: (usize, usize),
    ) -> (Option<String>, bool) {
        let now = Instant::now();
        if self.notice.as_ref().is_some_and(|(_, until)| now >= *until) {
            self.notice = None;
        }
        // After a reconnect the session goes through another gateway.
        let route = session.status.map(|s| s.route.clone()).unwrap_or_default();
        let mut title = if route.pop.is_empty() || route.pop == "direct" || session.status.is_none()
        {
            base_title.to_string()
        } else {
            format!("Nephele — {} via {}", route.pop, route.gateway_id)
        };
        if session.mic_muted {
            title.push_str(" — microphone muted");
        }
        if session.presentation {
            title.push_str(" — presentation mode");
        }
        let status = session.status.and_then(status_text);
        let failure = self.failure.as_ref().map(|f| match retry_at {
            Some(at) => format!(
                "{f} — trying again in {} s",
                at.saturating_duration_since(now).as_secs_f64().ceil()
            ),
            None => f.clone(),
        });
        let banner = failure
            .or_else(|| self.notice.as_ref().map(|(n, _)| n.clone()))
            .or(status)
            .or_else(|| self.stage.clone());
        if let Some(b) = &banner {
            title.push_str(" — ");
            title.push_str(b);
        }
        let mut redraw = banner != self.text;
        self.text = banner;
        if self.show_stats && now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            self.update_stats_lines(now, &route, stats, picture, session.uncertainty_ms);
            redraw = true;
        }
        let changed = (title != self.shown_title).then(|| {
            self.shown_title.clone_from(&title);
            title
        });
        (changed, redraw)
    }

    /// The statistics overlay's lines: rates since the last update,
    /// latencies over the session.
    fn update_stats_lines(
        &mut self,
        now: Instant,
        route: &Route,
        st: &Stats,
        (width, height): (usize, usize),
        uncertainty_ms: f64,
    ) {
        let presented = st.frames_presented.load(Ordering::Relaxed);
        let bytes = st.bytes_received.load(Ordering::Relaxed);
        let (since, p0, b0) = self.rates_from;
        let secs = now.duration_since(since).as_secs_f64().max(1e-3);
        self.rates_from = (now, presented, bytes);
        let fps = presented.saturating_sub(p0) as f64 / secs;
        let mbps = bytes.saturating_sub(b0) as f64 * 8.0 / secs / 1e6;
        let rtt = st.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let loss = st.loss_permille.load(Ordering::Relaxed) as f64 / 10.0;
        let l = &mut self.stats_lines;
        l.clear();
        let pop = if route.pop.is_empty() {
            "—"
        } else {
            route.pop.as_str()
        };
        l.push(format!("{pop} via {} — {width}x{height}", route.gateway_id));
        l.push(format!("{fps:.1} fps — {mbps:.2} Mbit/s — RTT {rtt:.1} ms"));
        l.push(format!(
            "{} — decode {:.2} ms ({}) — client-added {:.2} / {:.2} ms (p50/p99)",
            st.codec(),
            st.decode.quantile_ms(0.5),
            st.decoder.get().copied().unwrap_or("—"),
            st.client_latency.quantile_ms(0.5),
            st.client_latency.quantile_ms(0.99)
        ));
        l.push(format!(
            "end-to-end {:.1} / {:.1} ms (p50/p99, capture to screen)",
            st.end_to_end.quantile_ms(0.5),
            st.end_to_end.quantile_ms(0.99)
        ));
        if let Some(r) = st.receipt(uncertainty_ms) {
            l.push(r.line());
        }
        l.push(format!(
            "loss {loss:.1}% — FEC recovered {} — keyframes asked {} — dropped {}",
            st.fec_recovered.load(Ordering::Relaxed),
            st.keyframes_requested.load(Ordering::Relaxed),
            st.frames_dropped.load(Ordering::Relaxed) + st.frames_lost.load(Ordering::Relaxed)
        ));
        l.push(format!(
            "input RTT {:.2} ms p50 — {} of {} acknowledged",
            st.input_rtt.quantile_ms(0.5),
            st.input_acked.load(Ordering::Relaxed),
            st.input_sent.load(Ordering::Relaxed)
        ));
    }
}

/// What the title and the banner say about the session, if anything.
fn status_text(s: &Status) -> Option<String> {
    if s.reconnecting {
        return Some("connection lost — reconnecting…".into());
    }
    if s.silence() > INTERRUPTED_AFTER {
        return Some("connection interrupted — waiting for the service…".into());
    }
    let since = s.phase_at.map(|t| t.elapsed()).unwrap_or_default();
    let left = |ms: u32| Duration::from_millis(u64::from(ms)).saturating_sub(since);
    Some(match s.phase {
        Phase::Streaming => return None,
        Phase::Warning => format!(
            "idle: pausing in {} s unless you type or move the mouse",
            left(s.phase_ms).as_secs_f64().ceil()
        ),
        Phase::Paused => "paused while you were away — press a key to resume".into(),
        Phase::Suspended => "suspended while you were away — press a key to resume".into(),
        Phase::Resuming => format!("resuming (about {} ms)", left(s.phase_ms).as_millis()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_tells_a_pause_a_reconnect_and_silence() {
        let mut s = Status::default();
        assert_eq!(status_text(&s), None, "streaming: nothing to say");
        s.phase = Phase::Paused;
        assert!(status_text(&s).unwrap().contains("press a key"));
        s.phase = Phase::Warning;
        s.phase_ms = 5000;
        s.phase_at = Some(Instant::now());
        assert!(status_text(&s).unwrap().contains("pausing in 5 s"));
        s.heard_at = Instant::now().checked_sub(Duration::from_secs(2));
        assert!(status_text(&s).unwrap().contains("interrupted"));
        s.reconnecting = true;
        assert!(status_text(&s).unwrap().contains("reconnecting"));
    }
}
