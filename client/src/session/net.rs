//! The network thread: the QUIC side of a session, driving the sans-IO
//! [`ClientCore`] and its [`Reconnect`] policy. Every wake-up (a datagram,
//! control stream bytes, a microphone packet, input, a timer) feeds the
//! core, then takes its events (frames to the decoder, counters to
//! [`Stats`], states to [`Observed`]) and writes its transmits on their
//! lanes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nephele_protocol::client::reconnect::{Failure, Reconnect, Step};
use nephele_protocol::client::{ClientCore, ClientEvent, StreamInfo};
use nephele_protocol::framing::{Lane, write_frame};
use nephele_protocol::input::MAX_IN_FLIGHT;
use nephele_protocol::video::CompleteFrame;
use nephele_protocol::wire::{GoodbyeReason, Message};
use tokio::sync::{Notify, watch};

use super::quic::{self, lost_link, read_error};
use super::{
    ConnectConfig, Fallback, HANDSHAKE_TIMEOUT, RECONNECT_HANDSHAKE, Renewed, SessionError,
};
use crate::audio::{MicPacket, Speaker};
use crate::gamepad::Gamepads;
use crate::handle::{InputHandle, InputQueue};
use crate::stats::Stats;
use crate::status::{HostClock, Observed};

/// The gateway is noted as heard in the status at most this often.
const HEARD_EVERY: Duration = Duration::from_millis(50);

/// Runs the session's [`super::Renew`] off the network thread's runtime.
async fn renew(cfg: &ConnectConfig) -> Option<Result<Renewed, String>> {
    let r = cfg.renew.clone()?;
    tokio::task::spawn_blocking(move || (r.renew)()).await.ok()
}

/// Ends the session at the directory after the person closed it, off the
/// network thread's runtime; a failure is logged (the session then ends
/// when its resume token expires).
async fn log_off(cfg: &ConnectConfig) {
    let Some(r) = cfg.renew.clone() else {
        return;
    };
    match tokio::task::spawn_blocking(move || (r.end)()).await {
        Ok(Ok(())) => tracing::info!("the session ended at the directory"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the directory did not hear the session end"),
        Err(e) => tracing::warn!(error = %e, "ending the session at the directory"),
    }
}

/// How the reconnect policy sees an attempt's failure.
fn failure(e: &SessionError) -> Failure {
    match e {
        SessionError::Refused(_) => Failure::Refused,
        SessionError::NoAnswer { .. } | SessionError::Connection(_) => Failure::Unreachable,
        e if lost_link(e) => Failure::Unreachable,
        _ => Failure::Fatal,
    }
}

/// One connection's streams.
struct PathIo {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    ctl_send: quinn::SendStream,
    ctl_recv: quinn::RecvStream,
    input: Option<quinn::SendStream>,
    recovery: Option<quinn::SendStream>,
}

/// What the network thread owns.
pub(super) struct Net {
    pub core: ClientCore,
    pub stats: Arc<Stats>,
    pub observed: Arc<Observed>,
    pub input: InputQueue,
    pub wake: Arc<Notify>,
    pub frame_tx: SyncSender<CompleteFrame>,
    pub recycle_rx: Receiver<Vec<u8>>,
    pub want_keyframe: Arc<AtomicBool>,
    /// The window's picture area, for the host.
    pub display: Arc<super::DisplaySize>,
    pub stop: watch::Receiver<bool>,
    pub pads: Arc<Gamepads>,
    /// For announcing the gamepads again on a new path.
    pub handle: InputHandle,
    pub speaker: Option<Arc<Mutex<Speaker>>>,
    pub mic: tokio::sync::mpsc::Receiver<MicPacket>,
    /// Clipboard text from the desktop, for the clipboard thread (when the
    /// user shares the clipboard).
    pub clipboard_in: Option<SyncSender<String>>,
    /// Clipboard text for the desktop.
    pub clipboard_out: Arc<crate::clipboard::Outbox>,
    /// The gateway in use.
    pub current: Option<Fallback>,
}

/// Per-turn scratch the network thread reuses.
struct Scratch {
    out: Vec<u8>,
    mic: bytes::BytesMut,
    mic_msg: Vec<u8>,
    heard_noted: Option<Instant>,
    decoder_gone: bool,
}

impl Net {
    pub async fn run(
        mut self,
        cfg: ConnectConfig,
        ready: SyncSender<Result<StreamInfo, SessionError>>,
    ) -> Result<(), SessionError> {
        let mut s = Scratch {
            out: Vec::with_capacity(4096),
            mic: bytes::BytesMut::new(),
            mic_msg: Vec::with_capacity(nephele_protocol::MAX_DATAGRAM),
            heard_noted: None,
            decoder_gone: false,
        };
        let mut plan = Reconnect::first(cfg.candidates());
        let mut path = match self
            .connect(&mut plan, &cfg, HANDSHAKE_TIMEOUT, &mut s)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                let e = SessionError::Protocol("closed before the session started".into());
                let msg = e.to_string();
                let _ = ready.send(Err(e));
                return Err(SessionError::Protocol(msg));
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = ready.send(Err(e));
                return Err(SessionError::Protocol(msg));
            }
        };
        let mut candidates = plan.candidates().to_vec();
        let Some(info) = self.core.stream() else {
            return Err(SessionError::Protocol("no welcome".into()));
        };
        let _ = ready.send(Ok(info));
        tracing::info!(gateway = %path.conn.remote_address(), width = info.width, height = info.height, fps = info.fps, "streaming");
        self.stats.timeline(|t| t.account_cpu());
        let res = loop {
            let res = self.stream(&mut path, &mut s).await;
            let lost = match &res {
                Err(e) if lost_link(e) && !*self.stop.borrow() => e.to_string(),
                _ => break res.map_err(quic::named),
            };
            // The link is gone, the session is not: reconnect to it through
            // the next gateway in the ranking.
            tracing::warn!(error = %lost, "connection to the gateway lost; reconnecting");
            let now = Instant::now();
            self.stats.timeline(|t| t.lost(now));
            self.observed
                .status
                .send_modify(|st| st.reconnecting = true);
            path.conn.close(
                quinn::VarInt::from_u32(GoodbyeReason::Normal as u32),
                b"lost",
            );
            self.core.lose_path();
            let current = self
                .current
                .as_ref()
                .and_then(|c| {
                    candidates
                        .iter()
                        .position(|f| f.route.gateway_id == c.route.gateway_id)
                })
                .unwrap_or(0);
            let mut plan =
                Reconnect::after_loss(candidates.clone(), current, cfg.renew.is_some(), now);
            match self
                .connect(&mut plan, &cfg, RECONNECT_HANDSHAKE, &mut s)
                .await
            {
                Ok(Some(p)) => {
                    path = p;
                    candidates = plan.candidates().to_vec();
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.stats.timeline(|t| t.back());
                    self.observed.status.send_modify(|st| {
                        st.reconnecting = false;
                        st.phase = Default::default();
                    });
                    // The host released the gamepads with the old path.
                    self.pads.announce_again(&self.handle);
                }
                // Closed while reconnecting.
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        if res.is_err() {
            let mut out = Vec::new();
            write_frame(&mut out, |o| {
                Message::Goodbye {
                    reason: GoodbyeReason::ProtocolError,
                }
                .encode(o)
            });
            let _ = path.ctl_send.write_all(&out).await;
        }
        let reason = if res.is_ok() {
            GoodbyeReason::Normal
        } else {
            GoodbyeReason::ProtocolError
        };
        let _ = path.ctl_send.finish();
        path.conn
            .close(quinn::VarInt::from_u32(reason as u32), b"client closed");
        let _ = tokio::time::timeout(Duration::from_millis(500), path.endpoint.wait_idle()).await;
        if res.is_ok() {
            log_off(&cfg).await;
        }
        res
    }

    /// Tries gateways as `plan` says until one welcomes the session;
    /// `None` when the session was closed meanwhile.
    async fn connect(
        &mut self,
        plan: &mut Reconnect<Fallback>,
        cfg: &ConnectConfig,
        handshake: Duration,
        s: &mut Scratch,
    ) -> Result<Option<PathIo>, SessionError> {
        let mut last_err: Option<SessionError> = None;
        loop {
            if *self.stop.borrow() {
                return Ok(None);
            }
            match plan.next(Instant::now()) {
                Step::Try(i) => {
                    let Some(c) = plan.candidate(i).cloned() else {
                        plan.failed(Failure::Fatal, Instant::now());
                        continue;
                    };
                    match self.open(&c, cfg, handshake, s).await {
                        Ok(p) => {
                            tracing::info!(pop = %c.route.pop, gateway = %c.route.gateway_id, "connected");
                            self.observed
                                .status
                                .send_modify(|st| st.route = c.route.clone());
                            self.current = Some(c);
                            return Ok(Some(p));
                        }
                        Err(e) => {
                            tracing::warn!(pop = %c.route.pop, error = %e, "gateway unavailable");
                            plan.failed(failure(&e), Instant::now());
                            last_err = Some(e);
                        }
                    }
                }
                Step::Renew { refresh } => match renew(cfg).await {
                    Some(Ok(r)) => {
                        tracing::info!(
                            gateways = r.gateways.len(),
                            "the directory renewed the session"
                        );
                        self.core.set_token(r.token);
                        plan.renewed(refresh.then_some(r.gateways), Instant::now());
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "the directory did not renew the session");
                        if !refresh {
                            last_err = Some(SessionError::Refused(e));
                        }
                        plan.renew_failed(Instant::now());
                    }
                    None => plan.renew_failed(Instant::now()),
                },
                Step::Wait(t) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(t.into()) => {}
                        _ = self.stop.changed() => {}
                    }
                }
                Step::GiveUp => {
                    return Err(last_err.unwrap_or_else(|| {
                        SessionError::Protocol("no gateway to connect to".into())
                    }));
                }
            }
        }
    }

    /// Opens a path through `c`: QUIC, the control stream, `Hello`, and the
    /// host's welcome.
    async fn open(
        &mut self,
        c: &Fallback,
        cfg: &ConnectConfig,
        handshake: Duration,
        s: &mut Scratch,
    ) -> Result<PathIo, SessionError> {
        let quic::Connected { conn, endpoint } =
            quic::connect(c.gateway, &c.server_name, &cfg.roots, handshake).await?;
        let (ctl_send, ctl_recv) = conn.open_bi().await?;
        let mut path = PathIo {
            conn,
            endpoint,
            ctl_send,
            ctl_recv,
            input: None,
            recovery: None,
        };
        self.core.start_path(Instant::now());
        self.flush(&mut path, s).await?;
        let mut buf = [0u8; 2048];
        while self.core.stream().is_none() {
            match path.ctl_recv.read(&mut buf).await {
                Ok(Some(n)) => self.core.handle_control(&buf[..n], Instant::now())?,
                Ok(None) => {
                    return Err(SessionError::Protocol(
                        "gateway closed the control stream before welcome".into(),
                    ));
                }
                Err(e) => return Err(read_error(e)),
            }
        }
        Ok(path)
    }

    /// Streams on `path` until it breaks or the session closes.
    async fn stream(&mut self, path: &mut PathIo, s: &mut Scratch) -> Result<(), SessionError> {
        let mut ctl_buf = vec![0u8; 2048];
        let mut closing = false;
        loop {
            let now = Instant::now();
            let deadline = self
                .core
                .poll_timeout(now)
                .unwrap_or(now + Duration::from_secs(1))
                .max(now);
            tokio::select! {
                biased;
                changed = self.stop.changed(), if !closing => {
                    if changed.is_err() || *self.stop.borrow() {
                        closing = true;
                        self.core.close(Instant::now());
                    }
                }
                d = path.conn.read_datagram() => {
                    let d = d?;
                    let now = Instant::now();
                    self.heard(now, s);
                    if let Some(Message::Audio { seq, capture_us, payload, previous }) =
                        self.core.handle_datagram(&d, now)
                        && let Some(sp) = &self.speaker
                        && let Ok(mut sp) = sp.lock()
                    {
                        sp.push(seq, capture_us, payload, previous);
                    }
                }
                Some(p) = self.mic.recv() => send_mic(&path.conn, &p, s),
                () = self.wake.notified() => {}
                r = path.ctl_recv.read(&mut ctl_buf) => match r {
                    Ok(Some(n)) => {
                        let now = Instant::now();
                        self.heard(now, s);
                        self.core.handle_control(&ctl_buf[..n], now)?;
                    }
                    Ok(None) => {
                        return Err(SessionError::Protocol("gateway closed the control stream".into()));
                    }
                    Err(e) => return Err(read_error(e)),
                },
                () = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.turn(path, s).await?;
            if self.core.is_closed() {
                let left = self.core.in_flight();
                if left > 0 {
                    tracing::warn!(in_flight = left, "closing with unacknowledged input");
                }
                return Ok(());
            }
        }
    }

    /// What follows every wake-up: input in, the core moved on, its events
    /// out, its transmits written.
    async fn turn(&mut self, path: &mut PathIo, s: &mut Scratch) -> Result<(), SessionError> {
        let now = Instant::now();
        let core = &mut self.core;
        // Events beyond what the sender may hold unacknowledged wait in
        // the queue (and pushes are refused once it is full).
        let room = MAX_IN_FLIGHT.saturating_sub(core.in_flight());
        let taken = self.input.drain(room, |ev| {
            if let Err(e) = core.push_input(ev) {
                tracing::warn!(error = %e, "input not sent");
            }
        });
        while let Ok(buf) = self.recycle_rx.try_recv() {
            self.core.recycle(buf);
        }
        if self.want_keyframe.swap(false, Ordering::AcqRel) {
            self.core.request_keyframe();
        }
        if let Some((w, h, refresh)) = self.display.get() {
            // Sent only when it differs from what the host was told.
            self.core.set_display_size(w, h, refresh);
        }
        self.core.set_rtt(path.conn.rtt());
        let activity = self.input.activity().clone();
        self.core
            .activity(activity.take_fresh(), || activity.report(now), now);
        // (Only a shared clipboard has an outbox worth a lock per turn.)
        if self.clipboard_in.is_some()
            && let Some(text) = self.clipboard_out.take()
        {
            self.core.send_clipboard(&text);
        }
        self.core.handle_timeout(now);
        while let Some(ev) = self.core.poll_event() {
            self.on_event(ev, now, s);
        }
        if s.decoder_gone {
            return Err(SessionError::Protocol("decoder stopped".into()));
        }
        self.publish(path);
        self.flush(path, s).await?;
        self.input.settle(taken, self.core.in_flight());
        Ok(())
    }

    fn on_event(&mut self, ev: ClientEvent, now: Instant, s: &mut Scratch) {
        match ev {
            ClientEvent::Welcome(info) => {
                tracing::debug!(?info, "welcomed");
                self.stats.set_codec(info.codec);
            }
            ClientEvent::HostTiming {
                capture_us,
                encode_us,
            } => self.stats.host_timing(capture_us, encode_us),
            ClientEvent::TakenOver(info) => {
                self.stats.set_codec(info.codec);
                // A backup host took the session over (the gateway moved
                // it): its frames numbered afresh, the gamepads announced.
                tracing::warn!(
                    session_id = info.session_id,
                    "the session moved to a backup host"
                );
                self.stats.new_host();
                self.stats.timeline(|t| t.taken_over(now));
                self.observed.status.send_modify(|st| {
                    st.phase = Default::default();
                    st.phase_ms = 0;
                });
                self.pads.announce_again(&self.handle);
            }
            ClientEvent::Frame(f) => {
                self.stats.saw_frame(f.frame_id);
                match self.frame_tx.try_send(f) {
                    Ok(()) => {}
                    Err(TrySendError::Full(f)) => {
                        // The decoder is behind: drop rather than queue,
                        // and restart from a keyframe.
                        self.stats.frames_lost.fetch_add(1, Ordering::Relaxed);
                        self.core.recycle(f.data);
                        self.core.request_keyframe();
                    }
                    Err(TrySendError::Disconnected(_)) => s.decoder_gone = true,
                }
            }
            ClientEvent::Lost { frame_id, count } => {
                tracing::debug!(frame_id, count, "frames lost");
                self.stats
                    .saw_frame(frame_id.wrapping_add(count.saturating_sub(1)));
                self.stats
                    .frames_lost
                    .fetch_add(u64::from(count), Ordering::Relaxed);
            }
            ClientEvent::Phase { phase, ms } => {
                tracing::info!(phase = phase.name(), ms, "session phase");
                self.stats.timeline(|t| t.phase(phase));
                self.observed.status.send_modify(|st| {
                    st.phase = phase;
                    st.phase_ms = ms;
                    st.phase_at = Some(now);
                });
            }
            ClientEvent::Clock {
                offset_us,
                uncertainty,
            } => {
                self.observed.clock.send_replace(Some(HostClock {
                    offset_us,
                    uncertainty,
                }));
            }
            ClientEvent::InputAcked { rtt, one_way } => {
                self.stats.input_rtt.record(rtt);
                if let Some(o) = one_way {
                    self.stats.input_one_way.record(o);
                }
            }
            ClientEvent::Rumble {
                pad,
                strong,
                weak,
                duration_ms,
            } => self.pads.rumble(pad, strong, weak, duration_ms),
            ClientEvent::CursorShape(shape) => self.observed.cursor.send_modify(|c| {
                c.shapes += 1;
                c.shape = Some(Arc::new(shape));
            }),
            ClientEvent::CursorPosition { x, y, visible } => self
                .observed
                .cursor
                .send_modify(|c| c.position = Some((x, y, visible))),
            ClientEvent::Clipboard(text) => {
                if let Some(tx) = &self.clipboard_in {
                    let _ = tx.try_send(text);
                }
            }
            ClientEvent::Monitors(list) => {
                if *self.observed.monitors.borrow() != list {
                    tracing::info!(monitors = list.len(), "the desktop's monitors");
                }
                self.observed.monitors.send_replace(list);
            }
            ClientEvent::Resuming => self.stats.timeline(|t| t.resume_asked(now)),
        }
    }

    /// The core's counters into the statistics.
    fn publish(&self, path: &PathIo) {
        let c = self.core.counters();
        let st = &self.stats;
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&st.frames_received, c.frames_received);
        set(&st.keyframes_requested, c.keyframes_requested);
        set(&st.fec_recovered, c.fec_recovered);
        set(&st.loss_permille, c.loss_permille);
        set(&st.queue_delay_us, c.queue_delay_us);
        set(&st.queue_delay_max_us, c.queue_delay_max_us);
        set(&st.input_sent, c.input_sent);
        set(&st.input_acked, c.input_acked);
        set(&st.bytes_received, c.bytes_received);
        set(&st.rtt_us, path.conn.rtt().as_micros() as u64);
    }

    /// Something arrived from the gateway now (noted at most every
    /// [`HEARD_EVERY`]: this runs per datagram).
    fn heard(&self, now: Instant, s: &mut Scratch) {
        if s.heard_noted
            .is_none_or(|t| now.saturating_duration_since(t) >= HEARD_EVERY)
        {
            s.heard_noted = Some(now);
            self.observed
                .status
                .send_modify(|st| st.heard_at = Some(now));
        }
    }

    /// Writes what the core queued, each on its lane (the input and
    /// recovery lanes open at their first write).
    async fn flush(&mut self, path: &mut PathIo, s: &mut Scratch) -> Result<(), SessionError> {
        while let Some(lane) = self.core.poll_transmit(&mut s.out) {
            let stream = match lane {
                Lane::Control => &mut path.ctl_send,
                Lane::Input => match &mut path.input {
                    Some(st) => st,
                    none => none.insert(path.conn.open_uni().await?),
                },
                Lane::Recovery => match &mut path.recovery {
                    Some(st) => st,
                    none => none.insert(path.conn.open_uni().await?),
                },
            };
            stream.write_all(&s.out).await?;
        }
        Ok(())
    }
}

/// Sends a microphone packet as a datagram. Datagrams leave as slices of
/// one buffer, refilled when used up, so sending allocates once per 64 KiB.
fn send_mic(conn: &quinn::Connection, p: &MicPacket, s: &mut Scratch) {
    if s.mic.capacity() < 2 * nephele_protocol::MAX_DATAGRAM {
        s.mic.reserve(64 * 1024);
    }
    s.mic_msg.clear();
    Message::Audio {
        seq: p.seq,
        capture_us: p.capture_us,
        payload: p.payload(),
        previous: p.previous(),
    }
    .encode(&mut s.mic_msg);
    s.mic.extend_from_slice(&s.mic_msg);
    if let Err(e) = conn.send_datagram(s.mic.split().freeze()) {
        tracing::debug!(error = %e, "microphone datagram not sent");
    }
}
