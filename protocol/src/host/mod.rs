//! The desktop host's session logic, sans-IO: what a host does with the
//! datagrams its gateways send and with the passing of time, for every
//! session it runs. The host's driver (the service's UDP loop) feeds it
//! datagrams and an [`Instant`], and carries out what it asks: transmits
//! to gateways and backup hosts ([`HostCore::poll_transmit`]), and
//! [`HostEvent`]s for the parts it owns — the desktop (input to apply,
//! state to replicate, held input to release) and the media threads
//! (start, sleep, wake, stop; the keyframe and the rate to encode at).
//!
//! The decisions made here:
//!
//! * **Sessions and paths.** A gateway attaches a session with `Attach`;
//!   the session id is the directory's, the same through every gateway,
//!   so a client back through another gateway re-attaches: the new gateway
//!   replaces the old one, held input is released and the picture restarts
//!   from a keyframe. A gateway silent for [`DETACHED_AFTER`] detaches the
//!   session (held input released, nothing sent); one silent for
//!   [`SESSION_RETAIN`] ends it. At most [`MAX_SESSIONS`] run at once.
//! * **Input, exactly once.** Input is delivered once and in order
//!   ([`crate::input::InputReceiver`]); with a backup host the desktop's
//!   state is replicated after every input, before it is acknowledged, so
//!   what the client counts as delivered survives this host.
//! * **Idle sessions** follow the directory's policy
//!   ([`crate::activity::IdleTracker`]): warned, paused (media asleep),
//!   suspended (media stopped, state kept), resumed with an ETA and a
//!   keyframe.
//! * **Congestion.** Receiver reports drive the session's target bitrate
//!   ([`crate::rate::RateController`]) and the loss its parity is sized for.
//! * **Takeover.** States other hosts replicate here are kept on standby
//!   ([`standby`]); a session attached here that has one is taken over from
//!   it, continuing the primary's input numbering.

mod events;
mod picture;
mod session;
pub mod standby;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::activity::{IdlePolicy, Phase, Transition};
use crate::codec::{Codec, CodecAsk, Codecs, agree};
use crate::input::InputReceiver;
use crate::outq::OutQueue;
use crate::rate::{RateConfig, RateController, Report, default_bitrate};
use crate::wire::{Envelope, GoodbyeReason, InputEvent, Message};

pub use events::{Accept, Admission, Grant, HostCounters, HostEvent, Passed, Restore};
pub use picture::{MIN_FOLLOWED, capped_picture, capped_size};
use session::Session;
use standby::Standby;

/// A session whose gateway is silent this long is detached: held input is
/// released and nothing more is sent until a gateway attaches it again.
pub const DETACHED_AFTER: Duration = Duration::from_secs(3);

/// A session that hears nothing for this long ends.
pub const SESSION_RETAIN: Duration = Duration::from_secs(600);

/// A session that has heard nothing from a client (no input, activity or
/// receiver report: only its gateway's attach) ends this long after it
/// opened, so attaches alone cannot hold the host's slots.
pub const NEVER_STREAMED: Duration = Duration::from_secs(30);

/// Picture pixels a second one session may ask for, unless the host is
/// configured otherwise: 1920×1080 at 120 fps, 2560×1440 at 60, 3840×2160
/// at 30. Asked for more, the session gets a lower frame rate (down to
/// [`MIN_CAPPED_FPS`]), then a smaller picture of the same shape.
pub const DEFAULT_MAX_PIXEL_RATE: u64 = 1920 * 1080 * 120;

/// The frame rate a capped session keeps before its picture shrinks.
pub const MIN_CAPPED_FPS: u8 = 30;

/// Most sessions one host runs at once.
pub const MAX_SESSIONS: usize = 16;

/// The primary re-sends a session's state this often without changes, so
/// a lost replication datagram is repaired.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Host settings the session logic needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostCoreConfig {
    /// Most bits per second a session sends; 0 picks a figure from the
    /// picture size ([`default_bitrate`]).
    pub bitrate: u32,
    /// Most picture pixels a second per session; 0 for
    /// [`DEFAULT_MAX_PIXEL_RATE`].
    pub max_pixel_rate: u64,
    /// The codecs this host's encoders make, best first.
    pub codecs: Codecs,
}

/// How long resuming from suspension takes here: a moving average of the
/// last ones, told to clients as the ETA.
#[derive(Debug, Clone, Copy)]
struct ResumeEta {
    ms: f64,
}

impl Default for ResumeEta {
    fn default() -> Self {
        Self { ms: 150.0 }
    }
}

impl ResumeEta {
    fn learn(&mut self, took: Duration) {
        self.ms = 0.7 * self.ms + 0.3 * took.as_secs_f64() * 1000.0;
    }
}

/// What a gateway's `Attach` asks for.
struct Attaching<'a> {
    picture: (u16, u16, u8),
    policy: IdlePolicy,
    backup: Option<SocketAddr>,
    client: u64,
    token: &'a [u8],
    codecs: CodecAsk,
}

/// An `Open` waiting for the driver's answer.
#[derive(Debug)]
struct Opening {
    gateway: SocketAddr,
    client: u64,
    fps: u8,
    policy: IdlePolicy,
    backup: Option<SocketAddr>,
    restore_seq: Option<u32>,
    /// The directory's grant it attached with.
    grant: u32,
    /// Its cap, pixels a second.
    max_pixel_rate: u64,
    /// The codec agreed with the client.
    codec: Codec,
}

/// Every session of one host; see the module documentation.
#[derive(Debug)]
pub struct HostCore {
    cfg: HostCoreConfig,
    /// The host's clock's zero: stamps are microseconds since.
    epoch: Instant,
    sessions: HashMap<u64, Session>,
    opening: HashMap<u64, Opening>,
    standby: Standby,
    out: OutQueue<SocketAddr>,
    events: VecDeque<HostEvent>,
    counters: HostCounters,
    resume_eta: ResumeEta,
    /// Who may attach; `None`: every attach the link let through (direct
    /// sessions, without a directory).
    admission: Option<Box<dyn Admission>>,
}

impl HostCore {
    /// A host with no sessions, whose clock starts at `now`.
    pub fn new(cfg: HostCoreConfig, now: Instant) -> Self {
        Self {
            cfg,
            epoch: now,
            sessions: HashMap::new(),
            opening: HashMap::new(),
            standby: Standby::default(),
            out: OutQueue::default(),
            events: VecDeque::new(),
            counters: HostCounters::default(),
            resume_eta: ResumeEta::default(),
            admission: None,
        }
    }

    /// From now on an `Attach` opens or attaches a session only when
    /// `admission` admits its token, and takes the session's backup (and
    /// idle policy and picture cap, where granted) from that grant rather
    /// than from the datagram.
    pub fn set_admission(&mut self, admission: Box<dyn Admission>) {
        self.admission = Some(admission);
    }

    /// Microseconds of the host's clock at `now` (the clock of capture
    /// stamps, pongs and acknowledgements).
    pub fn host_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// The clock's zero.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// What was counted so far.
    pub fn counters(&self) -> HostCounters {
        self.counters
    }

    /// Sessions running now (streaming, paused or suspended).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The session's idle phase, if it runs here.
    pub fn phase(&self, session: u64) -> Option<Phase> {
        self.sessions.get(&session).map(|s| s.idle.phase())
    }

    /// The session's gateway now, if it runs here.
    pub fn gateway_of(&self, session: u64) -> Option<SocketAddr> {
        self.sessions.get(&session).map(|s| s.gateway)
    }

    /// The next thing to send and where, its bytes in `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<SocketAddr> {
        self.out.pop(out)
    }

    /// The next thing for the driver to do.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// When [`HostCore::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions.values().filter_map(Session::next_timer).min()
    }

    fn send(&mut self, to: SocketAddr, session: u64, message: Message<'_>) {
        self.out
            .push(to, |b| Envelope { session, message }.encode(b));
    }

    /// Queues `message` for the session's client, through its gateway
    /// (the desktop's own messages: rumble, its clipboard).
    pub fn send_to_client(&mut self, session: u64, message: Message<'_>) {
        if let Some(to) = self.gateway_of(session) {
            self.send(to, session, message);
        }
    }

    /// The driver's count of video bytes sent for `session` so far: what
    /// congestion control compares with what the client receives.
    pub fn video_sent(&mut self, session: u64, total_bytes: u64) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.video_sent = total_bytes;
        }
    }

    /// A datagram from `from`. Messages for the driver's own parts come
    /// back borrowed.
    pub fn handle_datagram<'a>(
        &mut self,
        from: SocketAddr,
        datagram: &'a [u8],
        now: Instant,
    ) -> Option<Passed<'a>> {
        let Ok(env) = Envelope::decode(datagram) else {
            self.counters.bad_datagrams += 1;
            return None;
        };
        let id = env.session;
        match env.message {
            Message::Attach {
                width,
                height,
                fps,
                policy,
                backup,
                client,
                token,
                codecs,
            } => {
                let ask = Attaching {
                    picture: (width, height, fps),
                    policy,
                    backup,
                    client,
                    token,
                    codecs,
                };
                self.attach(id, from, ask, now);
                return None;
            }
            Message::StateSync {
                input_seq,
                version,
                state,
            } => {
                // Taken over already: the old primary is stale.
                if !self.sessions.contains_key(&id) {
                    self.standby.keep(id, input_seq, version, state, now);
                }
                return None;
            }
            _ => {}
        }
        let quiet = matches!(env.message, Message::Goodbye { .. } | Message::Detach);
        let Some(s) = self.sessions.get_mut(&id) else {
            // Unknown session (ended, or never opened): tell the gateway.
            if !quiet {
                let reason = GoodbyeReason::Timeout;
                self.send(from, id, Message::Goodbye { reason });
            }
            return None;
        };
        if s.gateway != from {
            // A gateway the session has left (the client re-attached
            // elsewhere): it is told so and closes its side.
            if !quiet {
                let reason = GoodbyeReason::Replaced;
                self.send(from, id, Message::Goodbye { reason });
            }
            return None;
        }
        s.last_heard = now;
        s.streamed |= matches!(
            env.message,
            Message::Input { .. } | Message::Activity(_) | Message::ReceiverReport { .. }
        );
        if s.detached {
            // Heard from again (a gap longer than DETACHED_AFTER).
            s.detached = false;
            self.events.push_back(HostEvent::Keyframe { session: id });
            self.refresh_sleep(id);
        }
        match env.message {
            Message::Input { seq, event } => self.input(id, seq, event, now),
            Message::KeyframeRequest { .. } => {
                self.events.push_back(HostEvent::Keyframe { session: id });
            }
            Message::DisplaySize { width, height, .. } => self.resize(id, width, height),
            Message::Activity(report) => {
                let t = self
                    .sessions
                    .get_mut(&id)
                    .and_then(|s| s.idle.on_report(now, report));
                self.transition(id, t, now);
            }
            Message::ReceiverReport {
                loss_permille,
                queue_delay_ms,
                recv_kbps,
            } => self.report(id, loss_permille, queue_delay_ms, recv_kbps, now),
            Message::Ping { stamp_us } => {
                let host_us = self.host_us(now);
                self.send(from, id, Message::Pong { stamp_us, host_us });
            }
            Message::Goodbye { .. } => self.end(id, GoodbyeReason::Normal),
            Message::Detach => {
                tracing::info!(session = id, "client lost; session detached");
                self.detach(id);
            }
            Message::Clipboard { text } => {
                return Some(Passed::Clipboard { session: id, text });
            }
            Message::Audio {
                seq,
                capture_us,
                payload,
                previous,
            } => {
                return Some(Passed::Audio {
                    session: id,
                    seq,
                    capture_us,
                    payload,
                    previous,
                });
            }
            _ => {}
        }
        None
    }

    /// The client's picture area is `width × height` now: the session's
    /// picture follows, within its cap.
    fn resize(&mut self, id: u64, width: u16, height: u16) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        // A window dragged very small is shown scaled up from a desktop
        // still big enough to use.
        let (width, height) = (width.max(MIN_FOLLOWED.0), height.max(MIN_FOLLOWED.1));
        let (w, h) = capped_size(width, height, s.fps, s.max_pixel_rate);
        if (w, h) != (width, height) {
            tracing::info!(session = id, asked = ?(width, height), given = ?(w, h), "picture capped");
        }
        if (w, h) == (s.width, s.height) {
            return;
        }
        (s.width, s.height) = (w, h);
        self.events.push_back(HostEvent::Resize {
            session: id,
            width: w,
            height: h,
        });
    }

    fn input(&mut self, id: u64, seq: u32, event: InputEvent, now: Instant) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let mut applied = 0u64;
        let events = &mut self.events;
        s.input.handle(seq, event, |seq, event| {
            applied += 1;
            events.push_back(HostEvent::Input {
                session: id,
                seq,
                event,
            });
        });
        self.counters.inputs_applied += applied;
        if applied > 0 {
            let t = s.idle.on_input(now);
            // Replicated before acknowledged: what the client counts as
            // delivered survives this host.
            if s.backup.is_some() {
                s.ack_after_sync = true;
                self.events.push_back(HostEvent::Replicate { session: id });
            }
            self.transition(id, t, now);
        }
        // A duplicate is acknowledged again (its first ack was lost),
        // unless an acknowledgement already waits for the replication.
        if self.sessions.get(&id).is_some_and(|s| !s.ack_after_sync) {
            self.ack(id, now);
        }
    }

    fn ack(&mut self, id: u64, now: Instant) {
        let host_us = self.host_us(now);
        if let Some(s) = self.sessions.get(&id) {
            let (to, seq) = (s.gateway, s.input.ack());
            self.send(to, id, Message::InputAck { seq, host_us });
        }
    }

    fn report(&mut self, id: u64, loss: u16, queue_delay_ms: u16, recv_kbps: u32, now: Instant) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let (then, sent_then) = std::mem::replace(&mut s.sent_at_report, (now, s.video_sent));
        let secs = now.saturating_duration_since(then).as_secs_f64().max(1e-3);
        let sent_kbps =
            (s.video_sent.saturating_sub(sent_then) as f64 * 8.0 / 1000.0 / secs) as u32;
        let before = s.rate.decreases();
        let (target, _) = s.rate.on_report(
            now,
            Report {
                loss_permille: loss,
                queue_delay_ms,
                recv_kbps,
                sent_kbps,
            },
        );
        if s.rate.decreases() > before {
            self.counters.rate_decreases += 1;
        }
        self.events.push_back(HostEvent::Rate {
            session: id,
            target_bps: target,
            loss_permille: Some(loss),
        });
    }

    /// The driver's answer to [`HostEvent::Replicate`]: the session's
    /// state, sent to its backup, then the acknowledgement of the input
    /// it holds.
    pub fn replicate(&mut self, session: u64, state: &[u8], now: Instant) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if let Some(backup) = s.backup {
            s.sync_version = s.sync_version.wrapping_add(1);
            s.last_sync = now;
            let msg = Message::StateSync {
                input_seq: s.input.ack(),
                version: s.sync_version,
                state,
            };
            self.send(backup, session, msg);
        }
        let s = self.sessions.get_mut(&session);
        if s.is_some_and(|s| std::mem::take(&mut s.ack_after_sync)) {
            self.ack(session, now);
        }
    }

    /// Attaches a session to the gateway `from`: opens it (asking the
    /// driver), re-attaches it, or answers a repeated attach.
    fn attach(&mut self, id: u64, from: SocketAddr, ask: Attaching<'_>, now: Instant) {
        let Attaching {
            picture: (width, height, fps),
            mut policy,
            mut backup,
            client,
            token,
            codecs,
        } = ask;
        let codec = agree(self.cfg.codecs, codecs);
        let mut max = match self.cfg.max_pixel_rate {
            0 => DEFAULT_MAX_PIXEL_RATE,
            m => m,
        };
        let mut granted = 0;
        if let Some(check) = &self.admission {
            let known = self.sessions.contains_key(&id)
                || self.opening.contains_key(&id)
                || self.standby.holds(id);
            match check.admit(id, token, known) {
                Ok(grant) => {
                    backup = grant.backup;
                    policy = grant.policy.unwrap_or(policy);
                    max = grant.max_pixel_rate.map_or(max, |m| m.min(max));
                    granted = grant.grant;
                }
                Err(why) => {
                    self.counters.attaches_refused += 1;
                    tracing::warn!(session = id, gateway = %from, %why, "attach refused");
                    let reason = GoodbyeReason::Unauthorized;
                    self.send(from, id, Message::Goodbye { reason });
                    return;
                }
            }
        }
        if let Some(s) = self.sessions.get(&id)
            && s.gateway != from
            && !s.detached
            && s.client != client
        {
            // Another client while the one holding the session is
            // connected (its gateway not silent, no detach). With the same
            // grant (a copied token) it is refused: it does not take a
            // desktop from its user. With a later one (the user came back
            // from another run or device, through the directory) it takes
            // the session, and the holder is told.
            if granted <= s.grant {
                tracing::warn!(session = id, gateway = %from, "a second client refused: the session is in use");
                let reason = GoodbyeReason::InUse;
                self.send(from, id, Message::Goodbye { reason });
                return;
            }
            let old = s.gateway;
            tracing::info!(session = id, %old, new = %from, grant = granted, "the session taken over by a later grant");
            let reason = GoodbyeReason::Replaced;
            self.send(old, id, Message::Goodbye { reason });
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            let moved = s.gateway != from;
            s.grant = s.grant.max(granted);
            s.last_heard = now;
            s.client = client;
            if s.switch_codec(codec) {
                let session = id;
                self.events.extend([
                    HostEvent::MediaStop { session },
                    HostEvent::MediaStart { session, codec },
                ]);
            }
            if moved || s.detached {
                if moved {
                    self.counters.reattached += 1;
                    tracing::info!(session = id, old = %s.gateway, new = %from, "session re-attached through another gateway");
                }
                s.gateway = from;
                s.detached = false;
                s.backup = backup.or(s.backup);
                let session = id;
                self.events.extend([
                    HostEvent::Route {
                        session,
                        gateway: from,
                    },
                    HostEvent::Keyframe { session },
                    HostEvent::Release { session },
                ]);
                self.refresh_sleep(id);
            }
            // Otherwise a repeated attach: the welcome was lost. Answer again.
            self.welcome(id, now);
            return;
        }
        if let Some(o) = self.opening.get_mut(&id) {
            if o.client != client {
                let reason = GoodbyeReason::InUse;
                self.send(from, id, Message::Goodbye { reason });
                return;
            }
            // The driver has not answered yet; the welcome goes here.
            o.gateway = from;
            return;
        }
        if self.sessions.len() + self.opening.len() >= MAX_SESSIONS {
            let reason = GoodbyeReason::NoCapacity;
            self.send(from, id, Message::Goodbye { reason });
            return;
        }
        let (w, h, f) = capped_picture(width, height, fps, max);
        if (w, h, f) != (width, height, fps) {
            tracing::info!(session = id, asked = ?(width, height, fps), given = ?(w, h, f), "picture capped");
        }
        let (width, height, fps) = (w, h, f);
        let restore = self.standby.take(id);
        self.opening.insert(
            id,
            Opening {
                gateway: from,
                client,
                fps,
                policy,
                backup,
                restore_seq: restore.as_ref().map(|r| r.input_seq),
                grant: granted,
                max_pixel_rate: max,
                codec,
            },
        );
        self.events.push_back(HostEvent::Open {
            session: id,
            width,
            height,
            fps,
            restore,
        });
    }

    /// The driver opened the session [`HostEvent::Open`] asked for.
    pub fn accept(&mut self, session: u64, a: Accept, now: Instant) {
        let Some(o) = self.opening.remove(&session) else {
            return;
        };
        let input = match o.restore_seq {
            Some(seq) if a.restored => {
                self.counters.takeovers += 1;
                InputReceiver::resuming_after(seq)
            }
            _ => InputReceiver::new(),
        };
        let bitrate = match self.cfg.bitrate {
            0 => default_bitrate(a.width, a.height, o.fps),
            b => b,
        };
        let rate = RateController::new(RateConfig::new(bitrate));
        let target_bps = rate.target_bps();
        let mut s = Session::new(o.gateway, (a.width, a.height, o.fps), o.policy, rate, now);
        s.client = o.client;
        s.grant = o.grant;
        s.max_pixel_rate = o.max_pixel_rate;
        s.codec = o.codec;
        s.input = input;
        s.backup = o.backup;
        // A film or game playing on the desktop keeps it active by itself.
        s.idle.set_host_keep_active(a.keep_active, now);
        let replicate = s.backup.is_some();
        self.sessions.insert(session, s);
        self.counters.sessions_opened += 1;
        self.events.extend([
            HostEvent::Route {
                session,
                gateway: o.gateway,
            },
            HostEvent::Rate {
                session,
                target_bps,
                loss_permille: None,
            },
            HostEvent::MediaStart {
                session,
                codec: o.codec,
            },
        ]);
        if replicate {
            self.events.push_back(HostEvent::Replicate { session });
        }
        self.welcome(session, now);
    }

    /// The driver could not open the session (its desktop is unreachable).
    pub fn refuse(&mut self, session: u64) {
        if let Some(o) = self.opening.remove(&session) {
            let reason = GoodbyeReason::NoCapacity;
            self.send(o.gateway, session, Message::Goodbye { reason });
        }
    }

    fn welcome(&mut self, id: u64, now: Instant) {
        let host_time_us = self.host_us(now);
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let (to, phase) = (s.gateway, s.idle.phase());
        let welcome = Message::Welcome {
            session_id: id,
            width: s.width,
            height: s.height,
            fps: s.fps,
            host_time_us,
            input_delivered: s.input.ack(),
            codec: s.codec,
        };
        self.send(to, id, welcome);
        if phase != Phase::Streaming {
            // A client back while the session is paused learns so at once.
            self.send(to, id, Message::Status { phase, ms: 0 });
        }
    }

    fn detach(&mut self, id: u64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.detached = true;
        self.events.push_back(HostEvent::Release { session: id });
        self.refresh_sleep(id);
    }

    /// Media sleeps while the session is paused or has no gateway, and
    /// wakes (keyframe first) when neither holds.
    fn refresh_sleep(&mut self, id: u64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let asleep = s.detached || s.idle.phase().is_stopped();
        if asleep == s.asleep {
            return;
        }
        s.asleep = asleep;
        self.events.push_back(HostEvent::MediaSleep {
            session: id,
            asleep,
        });
        if !asleep {
            self.events.push_back(HostEvent::Keyframe { session: id });
        }
    }

    /// Carries out an idle transition and tells the client.
    fn transition(&mut self, id: u64, t: Option<Transition>, now: Instant) {
        let Some(t) = t else { return };
        let eta = self.resume_eta.ms.round() as u32;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let session = id;
        let (phase, ms) = match t {
            Transition::Warn(d) => (
                Phase::Warning,
                d.as_millis().min(u128::from(u32::MAX)) as u32,
            ),
            Transition::Clear => (Phase::Streaming, 0),
            Transition::Pause => {
                self.counters.pauses += 1;
                tracing::info!(session, "idle: paused");
                (Phase::Paused, 0)
            }
            Transition::Suspend => {
                self.counters.suspends += 1;
                tracing::info!(session, "idle: suspended, encoder released");
                s.media_running = false;
                self.events.push_back(HostEvent::MediaStop { session });
                (Phase::Suspended, 0)
            }
            Transition::Resume(from) => {
                self.counters.resumes += 1;
                self.events.extend([
                    HostEvent::Announce { session },
                    HostEvent::Keyframe { session },
                ]);
                let eta = if from == Phase::Suspended {
                    s.resuming_since = Some(now);
                    eta
                } else {
                    // One frame away.
                    (1000 / u32::from(s.fps.max(1))).max(1)
                };
                tracing::info!(session, from = from.name(), eta_ms = eta, "resuming");
                if !s.media_running {
                    s.media_running = true;
                    let codec = s.codec;
                    self.events
                        .push_back(HostEvent::MediaStart { session, codec });
                }
                (Phase::Resuming, eta)
            }
        };
        self.refresh_sleep(id);
        if let Some(s) = self.sessions.get(&id)
            && !s.detached
        {
            let to = s.gateway;
            self.send(to, id, Message::Status { phase, ms });
        }
    }

    /// The driver's media announced the resume with its first picture:
    /// how long a resume from suspension took is learned for the next ETA.
    pub fn resumed(&mut self, session: u64, now: Instant) {
        if let Some(since) = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.resuming_since.take())
        {
            self.resume_eta.learn(now.saturating_duration_since(since));
        }
    }

    /// Moves every session on with time: silence detaches and ends, the
    /// idle policy warns, pauses and suspends, states are re-replicated.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            let silent = now.saturating_duration_since(s.last_heard);
            if !s.streamed && now.saturating_duration_since(s.opened) > NEVER_STREAMED {
                tracing::info!(session = id, "no client was ever heard; session ended");
                self.end(id, GoodbyeReason::Timeout);
                continue;
            }
            if silent > SESSION_RETAIN {
                tracing::info!(session = id, "session timed out");
                self.end(id, GoodbyeReason::Timeout);
                continue;
            }
            if silent > DETACHED_AFTER && !s.detached {
                tracing::info!(session = id, "gateway silent; session detached");
                self.detach(id);
            }
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            let t = s.idle.poll(now);
            let due_sync =
                s.backup.is_some() && now.saturating_duration_since(s.last_sync) >= SYNC_INTERVAL;
            if due_sync {
                // Marked now so the timer moves on even before the driver answers.
                s.last_sync = now;
            }
            self.transition(id, t, now);
            if due_sync {
                self.events.push_back(HostEvent::Replicate { session: id });
            }
        }
        self.standby.expire(now);
    }

    /// Gives a running session a new backup host (its first, or one in
    /// place of a backup that failed, as the directory decides): its state
    /// goes there at once, then as with any backup. Unknown sessions are
    /// left alone.
    pub fn set_backup(&mut self, session: u64, backup: SocketAddr, now: Instant) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.backup == Some(backup) {
            return;
        }
        tracing::info!(session, %backup, "a new backup for the session");
        s.backup = Some(backup);
        s.last_sync = now;
        self.events.push_back(HostEvent::Replicate { session });
    }

    /// Ends a session: held input released, media stopped, the gateway
    /// told why unless the client ended it or is gone.
    pub fn end(&mut self, id: u64, reason: GoodbyeReason) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        self.events.extend([
            HostEvent::Release { session: id },
            HostEvent::MediaStop { session: id },
            HostEvent::Ended {
                session: id,
                reason,
            },
        ]);
        if reason != GoodbyeReason::Normal && !s.detached {
            self.send(s.gateway, id, Message::Goodbye { reason });
        }
    }

    /// Ends every session, telling their gateways the host shuts down.
    pub fn shutdown(&mut self) {
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            self.end(id, GoodbyeReason::Shutdown);
        }
    }
}
