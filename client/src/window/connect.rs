//! The window's connections: each attempt signs in, probes and connects on
//! a connect thread of its own ([`Connector`]), telling its stages as
//! [`UserEvent`]s; a kiosk starts over with backoff whenever the session
//! fails or ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use winit::event_loop::EventLoopProxy;

use super::{Connector, UserEvent};
use crate::session::{FrameSink, Session, SessionError};
use crate::stats::Stats;
use crate::status::Observed;

/// The window's session and the attempts that lead to it.
pub(super) struct Connection {
    /// What each attempt runs; none until the launcher chooses a desktop.
    pub connector: Option<Connector>,
    /// A connect thread is running or its session is up.
    pub connecting: bool,
    /// The number of the latest connection attempt.
    pub attempt: u64,
    pub session: Option<Session>,
    /// Kept alive with the session (background probes).
    pub keep: Option<Box<dyn Send>>,
    /// Holds the local screen saver off while a session is up.
    pub awake: Option<nephele_platform::screensaver::Inhibitor>,
    /// Kiosk: when to try again, and the wait after the next failure.
    pub retry_at: Option<Instant>,
    pub backoff: Duration,
}

impl Connection {
    pub fn new(connector: Option<Connector>) -> Self {
        Self {
            connector,
            connecting: false,
            attempt: 0,
            session: None,
            keep: None,
            awake: None,
            retry_at: None,
            backoff: Duration::from_secs(1),
        }
    }

    /// Starts attempt number `self.attempt + 1` on the connect thread:
    /// sign in, probe, connect, pictures into `sink`. Events from older
    /// attempts are ignored. An error when no thread could be started.
    pub fn start(
        &mut self,
        proxy: &EventLoopProxy<UserEvent>,
        stats: Arc<Stats>,
        observed: Arc<Observed>,
        sink: Box<dyn FrameSink>,
    ) -> Result<(), String> {
        let Some(connector) = self.connector.clone() else {
            return Ok(());
        };
        if self.connecting {
            return Ok(());
        }
        self.attempt += 1;
        let attempt = self.attempt;
        self.connecting = true;
        let proxy = proxy.clone();
        let spawned = std::thread::Builder::new()
            .name("nephele-connect".into())
            .spawn(move || {
                let stage_proxy = proxy.clone();
                let stage = move |s: String| {
                    tracing::info!(stage = %s, "connecting");
                    let _ = stage_proxy.send_event(UserEvent::Stage(attempt, s));
                };
                let prepared = match connector(&stage) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = proxy.send_event(UserEvent::Failed(attempt, format!("{e:#}")));
                        return;
                    }
                };
                let route = &prepared.cfg.route;
                stage(if prepared.cfg.token.is_empty() {
                    format!("connecting to the gateway {}…", route.gateway_id)
                } else {
                    // The gateway's id is the log's (below), not the page's.
                    format!("connecting to {}…", route.pop)
                });
                tracing::info!(pop = %route.pop, gateway = %route.gateway_id, "the gateway chosen");
                let end_proxy = proxy.clone();
                let on_end = Box::new(move |e: Option<&SessionError>| {
                    let _ = end_proxy.send_event(UserEvent::Ended(
                        attempt,
                        e.map(|e| super::options::Ending {
                            why: e.to_string(),
                            no_retry: matches!(
                                e,
                                SessionError::Replaced | SessionError::EndedByService
                            ),
                        }),
                    ));
                });
                let gateway = prepared.cfg.gateway;
                let ev = match Session::connect(prepared.cfg, stats, observed, sink, on_end) {
                    Ok(s) => UserEvent::Connected(attempt, Box::new(s), prepared.keep),
                    Err(e) => UserEvent::Failed(
                        attempt,
                        format!("cannot connect to the gateway at {gateway}: {e}"),
                    ),
                };
                let _ = proxy.send_event(ev);
            });
        spawned.map(|_| ()).map_err(|e| {
            self.connecting = false;
            format!("cannot start the connection thread: {e}")
        })
    }

    /// Leaves the session or gives up the attempt (the launcher's
    /// Cancel, Back or Reconnect): events of the attempt still on their
    /// way are ignored, and no retry is due.
    pub fn abandon(&mut self) {
        self.attempt += 1;
        self.retry_at = None;
        self.backoff = Duration::from_secs(1);
        self.end();
    }

    /// The attempt failed or its session ended: everything of it goes.
    pub fn end(&mut self) {
        self.connecting = false;
        if let Some(s) = self.session.take()
            && let Err(e) = s.close()
        {
            tracing::debug!(error = %e, "closing the ended session");
        }
        self.keep = None;
        self.awake = None;
    }

    /// A kiosk's next try, after the backoff (doubling up to `max`); the
    /// wait.
    pub fn retry_later(&mut self, max: Duration) -> Duration {
        let wait = self.backoff;
        self.retry_at = Some(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(max);
        wait
    }
}
