//! The host's receive thread: datagrams from gateways (and backup states
//! from other hosts) into the session core, the core's events carried out
//! on the sessions' desktops and media, its transmits sent.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::link::{LinkSocket, Opener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nephele_protocol::codec::Codec;
use nephele_protocol::host::{Accept, HostCore, HostEvent, Passed};
use nephele_protocol::wire::{Envelope, GoodbyeReason, InputEvent, Message, split_envelope};

use super::apps::{Apps, Running};
use super::control::{MediaControl, NO_REPORT};
use super::desktop::{self, Desktop, Replies};
use super::media::{Media, MediaOptions, MediaSpec};
use super::recording::Recorder;
use super::sound::MicPacket;
use super::{Desktops, HostStats};
use crate::screen::DesktopSource;

/// A blocked receive waits at most this long, so stopping is prompt and
/// the core's timers run.
pub(super) const TICK: Duration = Duration::from_millis(50);

/// One session as the receive thread keeps it.
pub(super) struct SessionIo {
    desktop: Box<dyn Desktop>,
    control: Arc<MediaControl>,
    /// `None` while suspended.
    media: Option<Media>,
    size: (u16, u16),
    fps: u8,
    /// The session's number on this host, for thread names.
    index: u64,
    /// A resume was announced and its first picture has not left yet.
    announcing: bool,
    /// An application session's display and program.
    app: Option<Running>,
}

/// A session whose desktop is open, to accept.
struct Opened {
    desktop: Box<dyn Desktop>,
    size: (u16, u16),
    fps: u8,
    index: u64,
    control: Arc<MediaControl>,
    restored: bool,
    app: Option<Running>,
}

/// The receive thread's state.
pub(super) struct Rx {
    pub socket: Arc<LinkSocket>,
    /// Opens what gateways and other hosts send; the rest is dropped
    /// unanswered.
    pub opener: Opener,
    pub core: HostCore,
    pub sessions: HashMap<u64, SessionIo>,
    pub media: MediaOptions,
    pub source: DesktopSource,
    pub recorder: Option<Recorder>,
    pub stop: Arc<AtomicBool>,
    pub crash: Arc<AtomicBool>,
    pub stats: Arc<HostStats>,
    pub desktops: Desktops,
    pub next_index: u64,
    pub out: Vec<u8>,
    /// The state snapshot replicated to backups, reused.
    pub state_buf: Vec<u8>,
    /// What the directory asked of sessions, to hand to the core.
    pub orders: super::Orders,
    /// What the host keeps of the sessions it admitted.
    pub sids: super::Sids,
    /// Starts and ends application sessions, when the host runs them.
    pub apps: Option<Apps>,
    /// Application sessions whose display is being started: their frame
    /// rate, until it is up.
    pub starting: HashMap<u64, u8>,
    /// When the application sessions' programs were last looked at.
    pub apps_checked: Instant,
}

/// How often the host looks whether application sessions' programs ended.
const APP_CHECK: Duration = Duration::from_secs(1);

impl Rx {
    pub fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        while !self.stop.load(Ordering::Relaxed) {
            match self.socket.socket.recv_from(&mut buf) {
                Ok((n, from)) => match self.opener.open(&mut buf[..n]) {
                    Some(plain) => self.datagram(&buf[plain], from),
                    None => {
                        self.stats
                            .link_refused
                            .store(self.opener.refused, Ordering::Relaxed);
                        tracing::trace!(%from, "datagram without the link's seal dropped");
                    }
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    // ICMP port unreachable from a gone gateway surfaces here on Linux.
                    tracing::debug!(error = %e, "host recv");
                }
            }
            self.timers();
        }
        if self.crash.load(Ordering::Relaxed) {
            // A crash says nothing to anyone.
            self.sessions.clear();
            if let Ok(mut d) = self.desktops.lock() {
                d.clear();
            }
            self.stats.sessions.store(0, Ordering::Relaxed);
            return;
        }
        self.core.shutdown();
        self.events(Instant::now());
        self.flush();
    }

    fn datagram(&mut self, d: &[u8], from: SocketAddr) {
        let now = Instant::now();
        // Congestion control compares what the media sent with what the
        // client received: the count goes in before the report does.
        if let Ok((id, _)) = split_envelope(d)
            && let Some(s) = self.sessions.get(&id)
        {
            let sent = s.control.sent_bytes.load(Ordering::Relaxed);
            self.core.video_sent(id, sent);
        }
        match self.core.handle_datagram(from, d, now) {
            Some(Passed::Audio {
                session,
                seq,
                capture_us,
                payload,
                previous,
            }) => {
                let arrived_us = self.core.host_us(now);
                if let Some(m) = self.sessions.get(&session).and_then(|s| s.media.as_ref()) {
                    m.mic(MicPacket::new(
                        seq, capture_us, arrived_us, payload, previous,
                    ));
                }
            }
            Some(Passed::Clipboard { session, text }) => {
                if let (Ok(text), Some(s)) =
                    (std::str::from_utf8(text), self.sessions.get_mut(&session))
                {
                    s.desktop.paste(text);
                    let epoch = self.media.epoch;
                    if let Some(r) = self.recorder.as_mut() {
                        r.note(epoch, session, "clipboard-in", text.len());
                    }
                }
            }
            None => {}
        }
        self.events(now);
        self.flush();
    }

    /// The core's timers, and resumes whose first picture has left.
    fn timers(&mut self) {
        let now = Instant::now();
        let announced: Vec<u64> = self
            .sessions
            .iter_mut()
            .filter(|(_, s)| s.announcing && !s.control.announce.load(Ordering::Relaxed))
            .map(|(id, s)| {
                s.announcing = false;
                *id
            })
            .collect();
        for id in announced {
            self.core.resumed(id, now);
        }
        self.apps_started(now);
        if now.duration_since(self.apps_checked) >= APP_CHECK {
            self.apps_checked = now;
            self.apps_ended();
        }
        // Taken without waiting: the enrolment thread holds it only to push.
        let ordered = self
            .orders
            .try_lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        if !ordered.backups.is_empty() || !ordered.ends.is_empty() {
            for (session, backup) in ordered.backups {
                self.core.set_backup(session, backup, now);
            }
            for session in ordered.ends {
                tracing::info!(session, "the service ended the session");
                self.core.end(session, GoodbyeReason::Ended);
            }
            self.events(now);
            self.flush();
        }
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
            self.events(now);
            self.flush();
        }
    }

    fn flush(&mut self) {
        while let Some(to) = self.core.poll_transmit(&mut self.out) {
            super::send_to(&self.socket, to, &self.out);
        }
        self.stats.mirror(&self.core);
    }

    /// Carries out what the core asks.
    fn events(&mut self, now: Instant) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                HostEvent::Open {
                    session,
                    width,
                    height,
                    fps,
                    restore,
                } => self.open(session, (width, height), fps, restore, now),
                HostEvent::Route { session, gateway } => {
                    if let Some(s) = self.sessions.get(&session)
                        && let Ok(mut g) = s.control.gateway.lock()
                    {
                        *g = gateway;
                    }
                }
                HostEvent::Input {
                    session,
                    seq,
                    event,
                } => self.input(session, seq, &event),
                HostEvent::Replicate { session } => {
                    if let Some(s) = self.sessions.get(&session) {
                        s.desktop.snapshot(&mut self.state_buf);
                        self.core.replicate(session, &self.state_buf, now);
                    }
                }
                HostEvent::Resize {
                    session,
                    width,
                    height,
                } => {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        let size = s.desktop.resize((width, height));
                        tracing::info!(session, asked = ?(width, height), ?size, "the client's window resized");
                        s.size = size;
                        s.control.ask_size(size);
                    }
                }
                HostEvent::Keyframe { session } => {
                    if let Some(s) = self.sessions.get(&session) {
                        s.control.keyframe.store(true, Ordering::Relaxed);
                    }
                }
                HostEvent::Release { session } => {
                    let Some(s) = self.sessions.get_mut(&session) else {
                        continue;
                    };
                    let released = s.desktop.release_all();
                    let epoch = self.media.epoch;
                    if let Some(r) = self.recorder.as_mut() {
                        for ev in &released {
                            r.input(epoch, session, None, ev, true);
                        }
                    }
                }
                HostEvent::MediaStart { session, codec } => self.start_media(session, codec),
                HostEvent::MediaStop { session } => {
                    // Joins the threads: the encoder and its buffers are freed.
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.media = None;
                    }
                }
                HostEvent::MediaSleep { session, asleep } => {
                    if let Some(s) = self.sessions.get(&session) {
                        s.control.paused.store(asleep, Ordering::Relaxed);
                        if let (false, Some(m)) = (asleep, &s.media) {
                            m.wake();
                        }
                    }
                }
                HostEvent::Announce { session } => {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.control.announce.store(true, Ordering::Relaxed);
                        s.announcing = true;
                    }
                }
                HostEvent::Rate {
                    session,
                    target_bps,
                    loss_permille,
                } => {
                    if let Some(s) = self.sessions.get(&session) {
                        let c = &s.control;
                        c.target_bps.store(target_bps, Ordering::Relaxed);
                        let loss = loss_permille.map_or(NO_REPORT, u32::from);
                        c.loss_permille.store(loss, Ordering::Relaxed);
                    }
                }
                HostEvent::Ended { session, reason } => {
                    tracing::info!(session, ?reason, "session ended");
                    if let Some(s) = self.sessions.remove(&session)
                        && let (Some(run), Some(apps)) = (s.app, &self.apps)
                    {
                        // Log-off: the program ends and its profile is kept.
                        apps.finish(run);
                    }
                    if let Ok(mut d) = self.desktops.lock() {
                        d.remove(&session);
                    }
                }
            }
        }
    }

    /// Makes the desktop of a session a gateway asked for: the demo's (from
    /// a failed primary's state when there is one), or the X display's at
    /// its own size.
    fn open(
        &mut self,
        session: u64,
        asked: (u16, u16),
        fps: u8,
        restore: Option<nephele_protocol::host::Restore>,
        now: Instant,
    ) {
        if let Some(token) = self.app_token(session) {
            return self.launch(session, token, asked, fps);
        }
        let (index, control) = self.media_slot();
        let (desktop, size, restored): (Box<dyn Desktop>, _, _) = match &self.source {
            DesktopSource::Demo => {
                let state = restore.as_ref().map(|r| r.state.as_slice());
                let (d, restored) = desktop::Demo::new(asked, state);
                (Box::new(d), asked, restored)
            }
            DesktopSource::X11 { display } => match desktop::X11::open(display) {
                Ok((mut d, size)) => {
                    self.bridge(&mut d, session, index, &control);
                    (Box::new(d), size, false)
                }
                Err(e) => {
                    tracing::error!(session, desktop = %self.source, error = %e, "cannot reach the X display; session refused");
                    self.core.refuse(session);
                    return;
                }
            },
        };
        if let (true, Some(r)) = (restored, &restore) {
            self.took_over(session, r.input_seq, desktop.as_ref());
        }
        let opened = Opened {
            desktop,
            size,
            fps,
            index,
            control,
            restored,
            app: None,
        };
        self.opened(session, opened, now);
    }

    /// A new session's media slot: its number (for thread names) and the
    /// control block its media share with this thread (the core names
    /// its gateway next).
    fn media_slot(&mut self) -> (u64, Arc<MediaControl>) {
        self.next_index += 1;
        let control = Arc::new(MediaControl::new(SocketAddr::from(([0, 0, 0, 0], 0)), 0));
        (self.next_index, control)
    }

    /// Bridges an X display's clipboard to the session's client.
    fn bridge(&self, d: &mut desktop::X11, session: u64, index: u64, control: &Arc<MediaControl>) {
        let (socket, control) = (self.socket.clone(), control.clone());
        d.bridge_clipboard(format!("nephele-host-clip-{index}"), move |text| {
            // Cut to a whole character; the client drops it unless its
            // user shares the clipboard.
            let message = Message::Clipboard {
                text: desktop::clip(text).as_bytes(),
            };
            let mut out = Vec::with_capacity(64);
            Envelope { session, message }.encode(&mut out);
            super::send_to(&socket, control.gateway(), &out);
        });
    }

    /// Notes a takeover from a failed primary.
    fn took_over(&mut self, session: u64, input_seq: u32, desktop: &dyn Desktop) {
        let state = desktop.state();
        let typed = state.lock().map(|d| d.typed.clone()).unwrap_or_default();
        tracing::warn!(
            session,
            input_seq,
            typed = typed.len(),
            "taking the session over from its failed primary"
        );
        let epoch = self.media.epoch;
        if let Some(w) = self.recorder.as_mut() {
            w.takeover(epoch, session, input_seq, &typed);
        }
    }

    /// Accepts a session whose desktop is open.
    fn opened(&mut self, session: u64, o: Opened, now: Instant) {
        let accept = Accept {
            width: o.size.0,
            height: o.size.1,
            // A film or game playing on the desktop keeps it active by itself.
            keep_active: self.media.motion,
            restored: o.restored,
        };
        if let Ok(mut d) = self.desktops.lock() {
            d.insert(session, o.desktop.state());
        }
        tracing::info!(
            session,
            width = o.size.0,
            height = o.size.1,
            fps = o.fps,
            app = o.app.as_ref().map(|a| a.display()),
            "session opened"
        );
        self.sessions.insert(
            session,
            SessionIo {
                desktop: o.desktop,
                control: o.control,
                media: None,
                size: o.size,
                fps: o.fps,
                index: o.index,
                announcing: false,
                app: o.app,
            },
        );
        self.core.accept(session, accept, now);
    }

    /// The token of an application session (`None` for a desktop).
    fn app_token(&self, session: u64) -> Option<String> {
        let sids = self.sids.lock().ok()?;
        sids.get(&session)?.app_token.clone()
    }

    /// Starts an application session's display and program on the
    /// worker; the session is accepted once they are up.
    fn launch(&mut self, session: u64, token: String, asked: (u16, u16), fps: u8) {
        let Some(apps) = &self.apps else {
            tracing::error!(
                session,
                "an application session, but this host runs no applications (it is not enrolled with a directory); refused"
            );
            return self.core.refuse(session);
        };
        match apps.launch(session, token, asked) {
            Ok(()) => {
                self.starting.insert(session, fps);
            }
            Err(e) => {
                tracing::error!(session, error = %e, "cannot start the application session; refused");
                self.core.refuse(session);
            }
        }
    }

    /// Application sessions whose display came up (or failed to).
    fn apps_started(&mut self, now: Instant) {
        let Some(apps) = &self.apps else { return };
        let started: Vec<_> = apps.done.try_iter().collect();
        if started.is_empty() {
            return;
        }
        for (session, result) in started {
            let Some(fps) = self.starting.remove(&session) else {
                continue;
            };
            let run = match result {
                Ok(run) => run,
                Err(e) => {
                    tracing::error!(session, error = %e, "cannot start the application session; refused");
                    self.core.refuse(session);
                    continue;
                }
            };
            match desktop::X11::open(run.display()) {
                Ok((mut d, size)) => {
                    let (index, control) = self.media_slot();
                    d.mute();
                    self.bridge(&mut d, session, index, &control);
                    let opened = Opened {
                        desktop: Box::new(d),
                        size,
                        fps,
                        index,
                        control,
                        restored: false,
                        app: Some(run),
                    };
                    self.opened(session, opened, now);
                }
                Err(e) => {
                    tracing::error!(session, error = %e, "cannot reach the application's display; refused");
                    self.core.refuse(session);
                }
            }
        }
        self.events(now);
        self.flush();
    }

    /// Ends the sessions whose program ended (the user closed it): a
    /// log-off.
    fn apps_ended(&mut self) {
        let ended: Vec<u64> = self
            .sessions
            .iter_mut()
            .filter_map(|(id, s)| s.app.as_mut().is_some_and(Running::exited).then_some(*id))
            .collect();
        if ended.is_empty() {
            return;
        }
        for session in ended {
            tracing::info!(session, "the application ended: logging the session off");
            self.core.end(session, GoodbyeReason::Normal);
        }
        self.events(Instant::now());
        self.flush();
    }

    fn start_media(&mut self, session: u64, codec: Codec) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let spec = MediaSpec {
            session,
            index: s.index,
            size: s.size,
            fps: s.fps,
            codec,
            pictures: s.desktop.pictures(),
            control: &s.control,
        };
        match Media::start(&spec, &self.media, &self.socket, &self.stats) {
            Ok(m) => s.media = Some(m),
            Err(e) => {
                tracing::error!(session, error = %e, "cannot start the encoder thread");
                self.core.end(session, GoodbyeReason::NoCapacity);
            }
        }
    }

    /// Applies input to the session's desktop, records it, and passes on
    /// what the desktop said back (rumble, copied text).
    fn input(&mut self, session: u64, seq: u32, event: &InputEvent) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let mut replies = Replies::default();
        s.desktop.apply(event, &mut replies);
        let epoch = self.media.epoch;
        if let Some(r) = self.recorder.as_mut() {
            r.input(epoch, session, Some(seq), event, false);
        }
        if let Some(text) = replies.copied {
            // To the client's clipboard (it drops it unless its user
            // allows sharing), cut to a whole character.
            let text = desktop::clip(&text);
            self.core.send_to_client(
                session,
                Message::Clipboard {
                    text: text.as_bytes(),
                },
            );
            if let Some(r) = self.recorder.as_mut() {
                r.note(epoch, session, "clipboard-out", text.len());
            }
        }
        for (pad, _) in (0u8..).zip(replies.buzz).filter(|(_, b)| *b) {
            let rumble = Message::Rumble {
                pad,
                strong: u16::MAX / 2,
                weak: u16::MAX / 2,
                duration_ms: 150,
            };
            self.core.send_to_client(session, rumble);
        }
    }
}
