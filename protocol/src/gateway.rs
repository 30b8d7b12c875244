//! The gateway's logic for one client connection, sans-IO: what arrives
//! on the client's QUIC streams and datagrams and from the desktop host's
//! UDP datagrams, and what the passing of time does. The gateway's driver
//! (the service's quinn loop) reads bytes, hands them in with an
//! [`Instant`], relays what [`GatewaySession`] says to relay, and sends
//! what it queues ([`GatewaySession::poll_transmit`]).
//!
//! The decisions made here:
//!
//! * **Hello and the token.** The control stream's first message must be
//!   `Hello`; its token goes to the driver ([`GatewayEvent::Authorize`]),
//!   which checks it (the signature is the service's business) and answers
//!   with the session's [`Target`] or a refusal.
//! * **Attach.** `Attach` goes to the host every [`ATTACH_EVERY`] until it
//!   welcomes the session; a primary silent for four tries is given up for
//!   the backup; twelve unanswered tries end the session.
//! * **What may pass.** Each lane carries only its own messages (input on
//!   the input lane, keyframe requests on the recovery lane; pings,
//!   reports, activity, clipboard and goodbye on the control lane);
//!   anything else is a protocol violation that ends the connection. Of
//!   the client's datagrams only sound passes. From the host, video and
//!   sound and input acknowledgements go on as datagrams, everything else
//!   on the control stream, and only from the session's current host.
//! * **Failover.** The host is pinged every [`KEEPALIVE`]; a host silent
//!   for [`HOST_SILENT`] has failed and the session moves to its backup,
//!   which takes it over from the state the primary replicated (its
//!   `Welcome` tells the client); a host silent for [`HOST_GIVE_UP`] with
//!   no backup left ends the session.
//! * **Farewell.** A client that said goodbye (or closed normally) ends
//!   the session on the host; one whose connection was lost only detaches
//!   it, to be resumed through this or another gateway.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::activity::IdlePolicy;
use crate::bucket::Bucket;
use crate::framing::{FrameReader, Lane};
use crate::outq::OutQueue;
use crate::wire::{GoodbyeReason, Message, is_video, split_envelope};

/// Attach is repeated this often until the host welcomes the session.
pub const ATTACH_EVERY: Duration = Duration::from_millis(250);

/// Attach tries before the session is given up; at the fifth the backup
/// host is tried instead of a silent primary.
pub const ATTACH_TRIES: u32 = 12;

/// The gateway keeps the host session alive this often.
pub const KEEPALIVE: Duration = Duration::from_millis(250);

/// A host silent this long (four keepalives unanswered) has failed: the
/// session moves to its backup.
pub const HOST_SILENT: Duration = Duration::from_millis(1000);

/// A host silent this long, with no backup left, ends the session.
pub const HOST_GIVE_UP: Duration = Duration::from_secs(10);

/// During a failover, the backup is asked to attach this often.
pub const FAILOVER_ATTACH_EVERY: Duration = Duration::from_millis(100);

/// A connection whose `Hello` has not come this long after it opened is
/// closed: connections that never say who they are hold nothing for long.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(5);

/// Input messages a session may send a second, and in one burst: far above
/// an 8 kHz mouse coalesced per frame and a keyboard, gamepad and wheel
/// besides, so only a flood is held back. Input over the rate is dropped
/// (an honest client resends what is not acknowledged).
pub const INPUT_RATE: (u32, u32) = (4000, 1000);

/// Datagrams (the microphone: 100 a second) a session may send a second,
/// and in one burst.
pub const DATAGRAM_RATE: (u32, u32) = (400, 100);

/// Control messages (pings, reports, activity, clipboard) a second, and in
/// one burst.
pub const CONTROL_RATE: (u32, u32) = (200, 100);

/// What one session's client sent over its rates, dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OverRate {
    /// Input messages.
    pub input: u64,
    /// Datagrams.
    pub datagrams: u64,
    /// Control messages.
    pub control: u64,
}

/// Set in the stamps of the gateway's own keepalive pings to the host, so
/// their pongs are told apart from the client's (whose stamps are its clock
/// in microseconds, far below 2^63) and not passed on to it.
pub const KEEPALIVE_STAMP: u64 = 1 << 63;

/// Where a session goes, as the driver found from the client's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The session's id between gateways and hosts: the same through every
    /// gateway, so a client that reconnects elsewhere re-attaches.
    pub session: u64,
    /// The host running it.
    pub host: SocketAddr,
    /// The host its state is replicated to.
    pub backup: Option<SocketAddr>,
    /// When it is warned, paused and suspended for want of input.
    pub policy: IdlePolicy,
}

/// Why a relayed session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum End {
    /// The client said goodbye.
    #[error("the client said goodbye")]
    ClientGoodbye,
    /// The client's connection ended without one.
    #[error("the client's connection was lost")]
    ClientLost,
    /// The client broke the protocol.
    #[error("client protocol error: {0}")]
    Protocol(String),
    /// The driver refused the client's token.
    #[error("session refused: {0}")]
    Refused(String),
    /// The host never answered, or fell silent with no backup left.
    #[error("the host did not answer")]
    HostSilent,
    /// The host ended the session.
    #[error("the host ended the session: {0:?}")]
    HostGoodbye(GoodbyeReason),
}

impl End {
    /// The QUIC close code the client is given.
    pub fn close_code(&self) -> u32 {
        match self {
            Self::HostGoodbye(r) => *r as u32,
            Self::Protocol(_) => GoodbyeReason::ProtocolError as u32,
            Self::Refused(_) => GoodbyeReason::Unauthorized as u32,
            _ => GoodbyeReason::Normal as u32,
        }
    }
}

/// What the driver is to know or do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// The client's `Hello` carries this token: check it and answer with
    /// [`GatewaySession::authorized`] or [`GatewaySession::refused`].
    Authorize {
        /// The session token (empty on direct connections).
        token: Vec<u8>,
        /// The client's own name for the session.
        client_session: u64,
    },
    /// The host welcomed the session: relaying has begun.
    Relaying {
        /// The host.
        host: SocketAddr,
    },
    /// The host fell silent: the session moves to its backup.
    Failover {
        /// The silent host.
        from: SocketAddr,
        /// The backup.
        to: SocketAddr,
    },
}

/// Where a queued transmit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// A UDP datagram to this host (an envelope: session id and message).
    Host(SocketAddr),
    /// The control stream to the client (a length-prefixed message).
    ClientControl,
}

/// What to do with a datagram from the host: the message bytes to relay,
/// borrowed from it, untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromHost<'a> {
    /// Nothing (not the session's host, not for the client, or handled here).
    Drop,
    /// A video fragment: a datagram to the client.
    Video(&'a [u8]),
    /// Sound or an input acknowledgement: a datagram to the client.
    Datagram(&'a [u8]),
    /// For the control stream to the client.
    Control(&'a [u8]),
}

/// Splits the lanes of a client's streams: the lane byte, then
/// length-prefixed messages. One per stream.
#[derive(Debug, Default)]
pub struct LaneReader {
    lane: Option<Lane>,
    reader: FrameReader,
}

impl LaneReader {
    /// Appends bytes read from the stream; an unknown lane byte is a
    /// protocol violation.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), End> {
        if self.lane.is_none()
            && let Some((&first, rest)) = bytes.split_first()
        {
            self.lane = Some(
                Lane::from_u8(first)
                    .ok_or_else(|| End::Protocol(format!("unknown lane {first}")))?,
            );
            bytes = rest;
        }
        self.reader.push(bytes);
        Ok(())
    }

    /// The stream's lane, once its first byte arrived.
    pub fn lane(&self) -> Option<Lane> {
        self.lane
    }

    /// The next whole message.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, End> {
        self.reader
            .next_frame()
            .map_err(|e| End::Protocol(e.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the client's `Hello`.
    Hello,
    /// Waiting for the driver's word on the token.
    Authorizing,
    /// Attaching to the host: tries so far, and when the next goes.
    Attaching { tries: u32, next: Instant },
    /// The host welcomed the session.
    Relaying,
    /// Over.
    Ended,
}

/// One client connection's session at the gateway; see the module
/// documentation.
#[derive(Debug)]
pub struct GatewaySession {
    state: State,
    control: LaneReader,
    /// What the client asked for in its `Hello`.
    picture: (u16, u16, u8),
    /// The client's `Hello`'s codecs.
    codecs: crate::codec::CodecAsk,
    target: Option<Target>,
    /// The host relayed to now, and the backup not yet used.
    host: Option<SocketAddr>,
    backup: Option<SocketAddr>,
    heard: Instant,
    start: Instant,
    next_ping: Instant,
    /// A failover under way: the backup is asked to attach until then.
    failover_until: Option<Instant>,
    next_failover_attach: Instant,
    out: OutQueue<Dest>,
    events: VecDeque<GatewayEvent>,
    end: Option<End>,
    input_rate: Bucket,
    datagram_rate: Bucket,
    control_rate: Bucket,
    over_rate: OverRate,
    hello_heard: bool,
    /// The client's own id for the session, from its `Hello`.
    client_session: u64,
    /// The client's session token, passed to the host in `Attach`.
    token: Vec<u8>,
}

impl GatewaySession {
    /// A connection just accepted.
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::Hello,
            control: LaneReader::default(),
            picture: (0, 0, 0),
            codecs: crate::codec::CodecAsk::default(),
            target: None,
            host: None,
            backup: None,
            heard: now,
            start: now,
            next_ping: now,
            failover_until: None,
            next_failover_attach: now,
            out: OutQueue::default(),
            events: VecDeque::new(),
            end: None,
            input_rate: Bucket::new(INPUT_RATE, now),
            datagram_rate: Bucket::new(DATAGRAM_RATE, now),
            control_rate: Bucket::new(CONTROL_RATE, now),
            over_rate: OverRate::default(),
            hello_heard: false,
            client_session: 0,
            token: Vec::new(),
        }
    }

    /// The session's id, once authorized.
    pub fn session(&self) -> Option<u64> {
        self.target.map(|t| t.session)
    }

    /// The host relayed to now.
    pub fn host(&self) -> Option<SocketAddr> {
        self.host
    }

    /// Whether the host has welcomed the session.
    pub fn is_relaying(&self) -> bool {
        self.state == State::Relaying
    }

    /// What the client sent over its rates (dropped) so far.
    pub fn over_rate(&self) -> OverRate {
        self.over_rate
    }

    /// Whether the client has said `Hello` (its connection counts as a
    /// session, and as load, from then on).
    pub fn said_hello(&self) -> bool {
        self.hello_heard
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// The next thing to send and where, its bytes in `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<Dest> {
        self.out.pop(out)
    }

    /// The next thing for the driver to know.
    pub fn poll_event(&mut self) -> Option<GatewayEvent> {
        self.events.pop_front()
    }

    /// When [`GatewaySession::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Hello => Some(self.start + HELLO_DEADLINE),
            State::Attaching { next, .. } => Some(next),
            State::Relaying if self.failover_until.is_some() => {
                Some(self.next_failover_attach.min(self.next_ping))
            }
            State::Relaying => Some(self.next_ping),
            _ => None,
        }
    }

    /// Ends the session for a reason the driver found (a stream it could
    /// not read, a socket it could not open).
    pub fn fail(&mut self, why: End) {
        self.finish(why);
    }

    fn finish(&mut self, why: End) {
        if self.end.is_none() {
            self.end = Some(why);
        }
        self.state = State::Ended;
    }

    /// Relays a client's message (its bytes, already checked) to the host.
    fn relay_to_host(&mut self, msg: &[u8]) {
        let (Some(host), Some(t)) = (self.host, self.target) else {
            return;
        };
        self.out.push(Dest::Host(host), |b| {
            b.extend_from_slice(&t.session.to_be_bytes());
            b.extend_from_slice(msg);
        });
    }

    /// Sends the gateway's own message to the host.
    fn say_to_host(&mut self, msg: &Message<'_>) {
        if let (Some(host), Some(t)) = (self.host, self.target) {
            self.out
                .push(Dest::Host(host), |b| envelope(b, t.session, msg));
        }
    }

    fn attach(&mut self, with_backup: bool) {
        let (width, height, fps) = self.picture;
        let Some(t) = self.target else { return };
        let backup = if with_backup { t.backup } else { None };
        let token = std::mem::take(&mut self.token);
        self.say_to_host(&Message::Attach {
            width,
            height,
            fps,
            policy: t.policy,
            backup,
            client: self.client_session,
            token: &token,
            codecs: self.codecs,
        });
        self.token = token;
    }

    /// Bytes from the client's control stream (the lane byte first).
    pub fn handle_control(&mut self, bytes: &[u8], now: Instant) -> Result<(), End> {
        self.control
            .push(bytes)
            .inspect_err(|e| self.finish(e.clone()))?;
        if self.control.lane().is_some_and(|l| l != Lane::Control) {
            let e = End::Protocol("first stream is not the control lane".into());
            self.finish(e.clone());
            return Err(e);
        }
        self.drain_control(now)
            .inspect_err(|e| self.finish(e.clone()))
    }

    /// Messages of the control stream, as far as the state allows: the
    /// `Hello` alone until the host welcomed the session, then the rest.
    fn drain_control(&mut self, now: Instant) -> Result<(), End> {
        loop {
            match self.state {
                State::Hello | State::Relaying => {}
                _ => return Ok(()),
            }
            let Some(m) = self.control.next_message()? else {
                return Ok(());
            };
            let msg = Message::decode(m).map_err(|e| End::Protocol(e.to_string()))?;
            if self.state == State::Hello {
                let Message::Hello {
                    width,
                    height,
                    fps,
                    token,
                    client_session,
                    codecs,
                } = msg
                else {
                    return Err(End::Protocol("expected hello".into()));
                };
                self.picture = (width, height, fps);
                self.codecs = codecs;
                self.hello_heard = true;
                self.client_session = client_session;
                self.token = token.to_vec();
                self.state = State::Authorizing;
                self.events.push_back(GatewayEvent::Authorize {
                    token: token.to_vec(),
                    client_session,
                });
                continue;
            }
            if !matches!(msg, Message::Goodbye { .. }) && !self.control_rate.take(now) {
                self.over_rate.control += 1;
                continue;
            }
            match msg {
                Message::Ping { .. }
                | Message::ReceiverReport { .. }
                | Message::Clipboard { .. }
                | Message::DisplaySize { .. }
                | Message::Activity(_) => {
                    // Borrowed from the reader: copied into the queue.
                    if let (Some(host), Some(t)) = (self.host, self.target) {
                        self.out
                            .push(Dest::Host(host), |b| envelope(b, t.session, &msg));
                    }
                }
                Message::Goodbye { .. } => return Err(End::ClientGoodbye),
                _ => return Err(End::Protocol("unexpected control message".into())),
            }
        }
    }

    /// A message from one of the client's unidirectional streams, whose
    /// [`LaneReader`] said its lane.
    pub fn handle_lane_message(&mut self, lane: Lane, msg: &[u8], now: Instant) -> Result<(), End> {
        let decoded = Message::decode(msg).map_err(|e| End::Protocol(e.to_string()));
        let allowed = match (&decoded, lane) {
            (Err(e), _) => {
                let e = e.clone();
                self.finish(e.clone());
                return Err(e);
            }
            (Ok(Message::Input { .. }), Lane::Input) => true,
            (Ok(Message::KeyframeRequest { .. }), Lane::Recovery) => true,
            _ => false,
        };
        if !allowed {
            let e = End::Protocol(format!("message not allowed on {lane:?} lane"));
            self.finish(e.clone());
            return Err(e);
        }
        // Before the host welcomed the session the client has no lanes; a
        // message that comes anyway has nowhere to go.
        if self.state == State::Relaying {
            if lane == Lane::Input && !self.input_rate.take(now) {
                self.over_rate.input += 1;
            } else {
                self.relay_to_host(msg);
            }
        }
        Ok(())
    }

    /// A datagram from the client: sound passes to the host; whether it did.
    pub fn handle_client_datagram(&mut self, datagram: &[u8], now: Instant) -> bool {
        // Datagrams may be lost anyway: a bad one (or one over the rate) is
        // dropped, not a reason to end the session.
        if !self.datagram_rate.take(now) {
            self.over_rate.datagrams += 1;
            return false;
        }
        let sound = matches!(Message::decode(datagram), Ok(Message::Audio { .. }));
        if sound && self.state == State::Relaying {
            self.relay_to_host(datagram);
        }
        sound
    }

    /// The driver checked the token: the session goes to `target`.
    pub fn authorized(&mut self, target: Target, now: Instant) {
        if self.state != State::Authorizing {
            return;
        }
        self.target = Some(target);
        self.host = Some(target.host);
        self.backup = target.backup;
        self.state = State::Attaching {
            tries: 0,
            next: now,
        };
        self.handle_timeout(now);
    }

    /// The driver refused the token.
    pub fn refused(&mut self, why: String) {
        self.finish(End::Refused(why));
    }

    /// A datagram from `from`: what of it to relay to the client.
    pub fn handle_host_datagram<'a>(
        &mut self,
        from: SocketAddr,
        datagram: &'a [u8],
        now: Instant,
    ) -> FromHost<'a> {
        // Only the session's host now: not a failed primary coming back.
        let (Some(host), Some(t)) = (self.host, self.target) else {
            return FromHost::Drop;
        };
        if from != host {
            return FromHost::Drop;
        }
        let Ok((session, msg)) = split_envelope(datagram) else {
            return FromHost::Drop;
        };
        if session != t.session || msg.len() < 2 {
            return FromHost::Drop;
        }
        self.heard = now;
        let relaying = self.state == State::Relaying;
        // Video travels untouched; everything else is decoded first.
        if is_video(msg) {
            return if relaying {
                FromHost::Video(msg)
            } else {
                FromHost::Drop
            };
        }
        let Ok(decoded) = Message::decode(msg) else {
            return FromHost::Drop;
        };
        match decoded {
            Message::Welcome { .. } if matches!(self.state, State::Attaching { .. }) => {
                self.state = State::Relaying;
                self.failover_until = None;
                self.next_ping = now + KEEPALIVE;
                self.events.push_back(GatewayEvent::Relaying { host });
                // Control messages the client sent meanwhile wait in the
                // reader; they go now.
                if let Err(e) = self.drain_control(now) {
                    self.finish(e);
                }
                FromHost::Control(msg)
            }
            Message::Goodbye { reason } => {
                let was = relaying;
                self.finish(End::HostGoodbye(reason));
                if was {
                    FromHost::Control(msg)
                } else {
                    FromHost::Drop
                }
            }
            _ if !relaying => FromHost::Drop,
            Message::InputAck { .. } | Message::Audio { .. } => FromHost::Datagram(msg),
            // The answer to the gateway's own keepalive stays here.
            Message::Pong { stamp_us, .. } if stamp_us & KEEPALIVE_STAMP != 0 => FromHost::Drop,
            // Answers to the client's pings, gamepad rumble, the session's
            // phase, the pointer, the monitors and a backup's welcome go on the control
            // stream: reliable, and never behind video.
            Message::Pong { .. }
            | Message::Rumble { .. }
            | Message::Status { .. }
            | Message::Clipboard { .. }
            | Message::CursorShape { .. }
            | Message::CursorPosition { .. }
            | Message::HostTiming { .. }
            | Message::Monitors(_)
            | Message::Welcome { .. } => {
                if matches!(decoded, Message::Welcome { .. }) {
                    // A backup took the session over: the failover is done.
                    self.failover_until = None;
                }
                FromHost::Control(msg)
            }
            _ => FromHost::Drop,
        }
    }

    /// Moves on with time: attach tries, keepalives, failover.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Hello if now >= self.start + HELLO_DEADLINE => {
                self.finish(End::Protocol(format!(
                    "no Hello within {} s",
                    HELLO_DEADLINE.as_secs()
                )));
            }
            State::Attaching { tries, next } if now >= next => {
                let tries = tries + 1;
                if tries > ATTACH_TRIES {
                    self.finish(End::HostSilent);
                    return;
                }
                let mut with_backup = true;
                if tries == 5
                    && let Some(b) = self.backup.take()
                {
                    // A primary that stays silent is given up for the backup.
                    self.host = Some(b);
                    with_backup = false;
                } else if self.backup.is_none() {
                    with_backup = false;
                }
                self.attach(with_backup);
                self.state = State::Attaching {
                    tries,
                    next: now + ATTACH_EVERY,
                };
            }
            State::Relaying => self.keepalive(now),
            _ => {}
        }
    }

    fn keepalive(&mut self, now: Instant) {
        let silent = now.saturating_duration_since(self.heard);
        if let Some(until) = self.failover_until {
            if silent <= HOST_SILENT || now >= until {
                self.failover_until = None;
            } else if now >= self.next_failover_attach {
                self.next_failover_attach = now + FAILOVER_ATTACH_EVERY;
                self.attach(false);
            }
        }
        if now < self.next_ping {
            return;
        }
        self.next_ping = now + KEEPALIVE;
        if silent > HOST_SILENT
            && self.failover_until.is_none()
            && let (Some(from), Some(to)) = (self.host, self.backup.take())
        {
            self.events.push_back(GatewayEvent::Failover { from, to });
            self.host = Some(to);
            self.failover_until = Some(now + HOST_GIVE_UP);
            self.next_failover_attach = now + FAILOVER_ATTACH_EVERY;
            // The backup's welcome reaches the client on the control
            // stream: its sign to restart from a keyframe.
            self.attach(false);
            return;
        }
        if silent > HOST_GIVE_UP {
            self.finish(End::HostSilent);
            return;
        }
        if self.failover_until.is_none() {
            let stamp_us =
                now.saturating_duration_since(self.start).as_micros() as u64 | KEEPALIVE_STAMP;
            self.say_to_host(&Message::Ping { stamp_us });
        }
    }

    /// The client's connection ended (`lost`: without a goodbye): the
    /// host is told — a goodbye ends the session there, a lost client only
    /// detaches it, to be resumed. Nothing is said to a host that ended
    /// the session itself.
    pub fn client_gone(&mut self, lost: bool) {
        let farewell = match &self.end {
            Some(End::HostGoodbye(_)) => None,
            Some(End::ClientGoodbye) => Some(Message::Goodbye {
                reason: GoodbyeReason::Normal,
            }),
            _ if !lost => Some(Message::Goodbye {
                reason: GoodbyeReason::Normal,
            }),
            _ => Some(Message::Detach),
        };
        if lost {
            self.finish(End::ClientLost);
        } else {
            self.finish(End::ClientGoodbye);
        }
        if let Some(m) = farewell {
            self.say_to_host(&m);
        }
    }
}

/// Writes `msg` in an envelope for `session`.
fn envelope(out: &mut Vec<u8>, session: u64, msg: &Message<'_>) {
    out.extend_from_slice(&session.to_be_bytes());
    msg.encode(out);
}
