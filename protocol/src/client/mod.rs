//! The client's session logic, sans-IO: what it does with what arrives on
//! the control stream and as datagrams from its gateway, and with the
//! passing of time. The client's driver (its quinn network thread) hands
//! bytes in with an [`Instant`], writes what [`ClientCore::poll_transmit`]
//! gives on the lane it names, and takes [`ClientEvent`]s: frames for the
//! decoder, the host's phase, the clock map, the pointer, rumble.
//!
//! The decisions made here:
//!
//! * **Paths.** Each connection to a gateway is a path: `Hello` on the
//!   control lane, then the host's `Welcome`; the input and recovery lanes
//!   open after it. A new path (a reconnect) and a backup host's `Welcome`
//!   on the same path (a takeover) both start the picture afresh and send
//!   again every input the host has not acknowledged: the host applies
//!   each once.
//! * **Video.** Fragments go to the [`Reassembler`]; it asks for a
//!   keyframe when a frame is lost for good, on the recovery lane.
//! * **Reports.** Every [`REPORT_INTERVAL`] the host hears the loss it
//!   should size its parity for (judged over [`LOSS_WINDOW`], quick to
//!   rise, slow to fall), the queueing delay frames show ([`QueueDelay`])
//!   and the receive rate: its congestion control's input.
//! * **Pings** map the host's clock onto the client's ([`ClockMap`]):
//!   eight quick ones at the start, then every [`PING_INTERVAL`], so a
//!   quiet session still hears from the host.
//! * **Activity** goes out every [`ACTIVITY_INTERVAL`], and at once when
//!   input comes while the host has stopped the stream (which resumes it).
//! * **Closing** waits up to [`DRAIN`] for the host to acknowledge every
//!   input, then says goodbye.

pub mod reconnect;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::activity::{ActivityReport, Phase};
use crate::codec::{Codec, CodecAsk};
use crate::cursor::{Assembler, Shape};
use crate::framing::{FrameReader, Lane, write_frame};
use crate::input::{InputError, InputSender};
use crate::outq::OutQueue;
use crate::rate::{ClockMap, QueueDelay};
use crate::video::{
    CompleteFrame, Reassembler, ReassemblerConfig, ReassemblyEvent, ReassemblyStats,
};
use crate::wire::{GoodbyeReason, InputEvent, Message};

/// How often the client tells the host what the path does to video (loss,
/// queueing delay, receive rate): often enough that the host backs off
/// within a few frames of a queue forming.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// The loss figure is recomputed this often: over shorter windows a few
/// fragments decide it.
pub const LOSS_WINDOW: Duration = Duration::from_millis(500);

/// Pings (which also map the host's clock) this often after the first
/// [`STARTUP_PINGS`]: often enough that a quiet session (paused, or a still
/// desktop without sound) still hears from the host several times a second,
/// so silence means trouble.
pub const PING_INTERVAL: Duration = Duration::from_millis(250);

/// The first pings go at once and then every [`STARTUP_PING_INTERVAL`]: the
/// session's first keyframe can hold the first answers in a queue, and the
/// clock map needs one exchange through an empty queue to be right.
pub const STARTUP_PINGS: u32 = 8;
/// See [`STARTUP_PINGS`].
pub const STARTUP_PING_INTERVAL: Duration = Duration::from_millis(125);

/// The activity heartbeat's period.
pub const ACTIVITY_INTERVAL: Duration = Duration::from_secs(1);

/// Closing waits this long at most for input to be acknowledged.
pub const DRAIN: Duration = Duration::from_secs(1);

/// What a session asks of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Requested picture width.
    pub width: u16,
    /// Requested picture height.
    pub height: u16,
    /// Requested frame rate.
    pub fps: u8,
    /// Session token from the directory (empty for direct connections).
    pub token: Vec<u8>,
    /// The session's name for direct gateways, the same on every reconnect.
    pub client_session: u64,
    /// The codecs it decodes, and the user's choice.
    pub codecs: CodecAsk,
}

/// What the host agreed to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// Host's session id.
    pub session_id: u64,
    /// Picture width.
    pub width: u16,
    /// Picture height.
    pub height: u16,
    /// Frame rate.
    pub fps: u8,
    /// The codec the pictures come in.
    pub codec: Codec,
}

/// What the driver is to know or do.
#[derive(Debug)]
pub enum ClientEvent {
    /// The host welcomed the session on this path.
    Welcome(StreamInfo),
    /// A backup host took the session over (on the same path): the
    /// picture restarts and the stream's counters start afresh.
    TakenOver(StreamInfo),
    /// A whole frame for the decoder; hand its buffer back with
    /// [`ClientCore::recycle`].
    Frame(CompleteFrame),
    /// Frames given up for good.
    Lost {
        /// The first.
        frame_id: u32,
        /// How many in a row.
        count: u32,
    },
    /// The host told the session's phase.
    Phase {
        /// The phase.
        phase: Phase,
        /// Milliseconds to the pause (warning) or the expected wait (resuming).
        ms: u32,
    },
    /// The host's clock, mapped: host µs − `offset_us` is the client's
    /// clock (µs since the core's epoch), within `uncertainty`.
    Clock {
        /// Host clock minus client clock.
        offset_us: i64,
        /// Half the round trip the map rests on.
        uncertainty: Duration,
    },
    /// An input event was acknowledged: its round trip, and (once the
    /// clock is mapped) its one-way time to being applied.
    InputAcked {
        /// Sent → acknowledgement arrived.
        rtt: Duration,
        /// Sent → applied by the host (for the newest acknowledged event).
        one_way: Option<Duration>,
    },
    /// Run a gamepad's motors.
    Rumble {
        /// Slot.
        pad: u8,
        /// Strong motor.
        strong: u16,
        /// Weak motor.
        weak: u16,
        /// For this long.
        duration_ms: u16,
    },
    /// The remote pointer's shape, whole.
    CursorShape(Shape),
    /// Where the remote pointer is, and whether it shows.
    CursorPosition {
        /// Column.
        x: u16,
        /// Row.
        y: u16,
        /// Shown.
        visible: bool,
    },
    /// The desktop's clipboard text.
    Clipboard(String),
    /// How long frames took on the host lately: capture and encoding, in
    /// microseconds (means).
    HostTiming {
        /// Capture and conversion.
        capture_us: u32,
        /// Encoding and sending.
        encode_us: u32,
    },
    /// Where the desktop's monitors lie on its picture.
    Monitors(crate::monitors::Monitors),
    /// Input left while the host had stopped the stream: a resume began
    /// (its end is the next picture).
    Resuming,
}

/// Why the control stream can go on no longer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The service ended the session.
    #[error("the service ended the session ({0:?})")]
    Ended(GoodbyeReason),
}

/// What the client counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Whole frames handed to the decoder.
    pub frames_received: u64,
    /// Keyframe requests sent.
    pub keyframes_requested: u64,
    /// Frames rebuilt from parity (this path).
    pub fec_recovered: u64,
    /// The loss last reported, per thousand.
    pub loss_permille: u64,
    /// The queueing delay last reported, and the highest, µs.
    pub queue_delay_us: u64,
    /// See `queue_delay_us`.
    pub queue_delay_max_us: u64,
    /// Input events sent (a coalesced run counts once), and acknowledged.
    pub input_sent: u64,
    /// See `input_sent`.
    pub input_acked: u64,
    /// Bytes of datagrams and control stream received.
    pub bytes_received: u64,
    /// Paths opened after the first (reconnects).
    pub reconnects: u64,
    /// Backup hosts that took the session over.
    pub takeovers: u64,
}

/// One connection's state.
#[derive(Debug)]
struct Path {
    welcome: Option<StreamInfo>,
    reader: FrameReader,
    reasm: Reassembler,
    queue: QueueDelay,
    clock: ClockMap,
    pings: u32,
    next_ping: Instant,
    next_report: Instant,
    next_loss: Instant,
    reported: ReassemblyStats,
    loss: f64,
    bytes_at_report: u64,
    /// The input and recovery lanes' first bytes went out.
    lanes_open: bool,
}

impl Path {
    fn new(now: Instant) -> Self {
        Self {
            welcome: None,
            reader: FrameReader::new(),
            reasm: Reassembler::new(ReassemblerConfig::default(), now),
            queue: QueueDelay::default(),
            clock: ClockMap::default(),
            pings: 0,
            next_ping: now,
            next_report: now + REPORT_INTERVAL,
            next_loss: now + LOSS_WINDOW,
            reported: ReassemblyStats::default(),
            loss: 0.0,
            bytes_at_report: 0,
            lanes_open: false,
        }
    }

    /// A new host on the same path: its frames, clock and queue anew.
    fn new_host(&mut self, now: Instant) {
        let (welcome, reader, lanes_open) = (
            self.welcome,
            std::mem::take(&mut self.reader),
            self.lanes_open,
        );
        *self = Self::new(now);
        (self.welcome, self.reader, self.lanes_open) = (welcome, reader, lanes_open);
    }
}

/// The client's session; see the module documentation.
#[derive(Debug)]
pub struct ClientCore {
    cfg: ClientConfig,
    /// The client's clock's zero: stamps are microseconds since.
    epoch: Instant,
    path: Option<Path>,
    paths: u64,
    input: InputSender,
    phase: Phase,
    assembler: Assembler,
    next_activity: Instant,
    closing: Option<Instant>,
    closed: bool,
    out: OutQueue<Lane>,
    /// Input messages gathered for one write, reused.
    scratch: Vec<u8>,
    events: VecDeque<ClientEvent>,
    counters: ClientCounters,
    /// The client's picture area, told to the host (again after every
    /// welcome) when the desktop is to follow the window.
    display_size: Option<(u16, u16, u8)>,
}

/// Microseconds from `epoch` to `t` (negative before it).
fn us_since(epoch: Instant, t: Instant) -> i64 {
    if t >= epoch {
        t.duration_since(epoch).as_micros() as i64
    } else {
        -(epoch.duration_since(t).as_micros() as i64)
    }
}

impl ClientCore {
    /// A session asking for `cfg`, its clock counting from `epoch`.
    pub fn new(cfg: ClientConfig, epoch: Instant, now: Instant) -> Self {
        Self {
            cfg,
            epoch,
            path: None,
            paths: 0,
            input: InputSender::new(),
            phase: Phase::Streaming,
            assembler: Assembler::default(),
            display_size: None,
            next_activity: now,
            closing: None,
            closed: false,
            out: OutQueue::default(),
            scratch: Vec::with_capacity(1024),
            events: VecDeque::new(),
            counters: ClientCounters::default(),
        }
    }

    /// Microseconds of the client's clock at `t`.
    pub fn local_us(&self, t: Instant) -> i64 {
        us_since(self.epoch, t)
    }

    /// The session token a path's `Hello` carries (a renewal replaces it).
    pub fn set_token(&mut self, token: Vec<u8>) {
        self.cfg.token = token;
    }

    /// What was counted so far.
    pub fn counters(&self) -> ClientCounters {
        let mut c = self.counters;
        let s = self.input.stats();
        (c.input_sent, c.input_acked) = (s.sent, s.acked);
        if let Some(p) = &self.path {
            c.fec_recovered = p.reasm.stats().fec_recovered;
        }
        c
    }

    /// The phase the host last told.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Input events not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.input.in_flight()
    }

    /// The stream's geometry, once welcomed.
    pub fn stream(&self) -> Option<StreamInfo> {
        self.path.as_ref().and_then(|p| p.welcome)
    }

    /// Whether closing is over: the goodbye is queued.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next thing to write and on which lane, its bytes in `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<Lane> {
        self.out.pop(out)
    }

    /// The next thing for the driver to know.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`ClientCore::handle_timeout`] should run next.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let mut next = self.closing;
        let mut add = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        add(self.input.poll_timeout());
        if let Some(p) = self.path.as_ref().filter(|p| p.welcome.is_some()) {
            add(Some(p.next_ping.min(p.next_report).min(p.next_loss)));
            add(Some(self.next_activity));
            add(p.reasm.poll_timeout(now));
        }
        next
    }

    /// A new connection (the first, or a reconnect): `Hello` goes out on
    /// its control lane.
    pub fn start_path(&mut self, now: Instant) {
        self.path = Some(Path::new(now));
        let cfg = &self.cfg;
        let hello = Message::Hello {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            token: &cfg.token,
            client_session: cfg.client_session,
            codecs: cfg.codecs,
        };
        self.out.push(Lane::Control, |b| {
            b.push(Lane::Control as u8);
            write_frame(b, |o| hello.encode(o));
        });
    }

    /// The connection in use broke; nothing more goes out on it.
    pub fn lose_path(&mut self) {
        self.path = None;
        self.out.clear();
    }

    /// Queues an input event (the driver marks the user active).
    pub fn push_input(&mut self, ev: InputEvent) -> Result<(), InputError> {
        self.input.push(ev)
    }

    /// The decoder failed or fell behind: the next picture must be a keyframe.
    pub fn request_keyframe(&mut self) {
        if let Some(p) = &mut self.path {
            p.reasm.request_keyframe();
        }
    }

    /// A frame's buffer, back from the decoder.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if let Some(p) = &mut self.path {
            p.reasm.recycle(buf);
        }
    }

    /// The path's round trip as the transport measures it: input is
    /// retransmitted after three of them (plus 30 ms).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.input.set_rto(rtt * 3 + Duration::from_millis(30));
    }

    /// Begins closing: input still unacknowledged gets up to [`DRAIN`].
    pub fn close(&mut self, now: Instant) {
        if self.closing.is_none() {
            self.closing = Some(now + DRAIN);
        }
    }

    /// A datagram from the gateway; sound comes back borrowed, for the
    /// driver's speaker.
    pub fn handle_datagram<'a>(&mut self, datagram: &'a [u8], now: Instant) -> Option<Message<'a>> {
        self.counters.bytes_received += datagram.len() as u64;
        let msg = Message::decode(datagram).ok()?;
        match msg {
            Message::Video(f) => {
                if let Some(p) = &mut self.path {
                    // Rejected fragments (late, duplicate) are counted there.
                    let _ = p.reasm.handle_fragment(&f, now);
                }
                None
            }
            Message::InputAck { seq, host_us } => {
                // When the newest acknowledged input was applied, on this clock.
                let applied_us = self.path.as_ref().and_then(|p| p.clock.to_client(host_us));
                let epoch = self.epoch;
                let events = &mut self.events;
                self.input.handle_ack(seq, |acked, sent| {
                    let one_way = applied_us.filter(|_| acked == seq).map(|applied| {
                        Duration::from_micros((applied - us_since(epoch, sent)).max(0) as u64)
                    });
                    events.push_back(ClientEvent::InputAcked {
                        rtt: now.saturating_duration_since(sent),
                        one_way,
                    });
                });
                None
            }
            m @ Message::Audio { .. } => Some(m),
            _ => None,
        }
    }

    /// Bytes from the control stream.
    pub fn handle_control(&mut self, bytes: &[u8], now: Instant) -> Result<(), ClientError> {
        self.counters.bytes_received += bytes.len() as u64;
        let now_us = self.local_us(now);
        let Some(path) = self.path.as_mut() else {
            return Ok(());
        };
        path.reader.push(bytes);
        loop {
            let Some(path) = self.path.as_mut() else {
                return Ok(());
            };
            let frame = path
                .reader
                .next_frame()
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let Some(frame) = frame else { return Ok(()) };
            let msg = Message::decode(frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
            match msg {
                Message::Welcome {
                    session_id,
                    width,
                    height,
                    fps,
                    input_delivered,
                    codec,
                    ..
                } => {
                    // A host that lost the session (restarted, no backup)
                    // opens it afresh: what is still unacknowledged is
                    // numbered on from where it stands.
                    if self.input.rebase(input_delivered) {
                        tracing::warn!(
                            input_delivered,
                            "the host opened the session afresh (its desktop was lost); unacknowledged input is numbered on from there"
                        );
                    }
                    let info = StreamInfo {
                        session_id,
                        width,
                        height,
                        fps,
                        codec,
                    };
                    let first = path.welcome.is_none();
                    if first {
                        path.welcome = Some(info);
                    } else {
                        // A backup host took the session over (the gateway
                        // moved it): a new clock, frames numbered afresh.
                        path.welcome = Some(info);
                        path.new_host(now);
                    }
                    self.welcomed(info, first, now);
                }
                Message::Goodbye { reason } => return Err(ClientError::Ended(reason)),
                Message::Pong { stamp_us, host_us } => {
                    path.clock.on_pong(stamp_us as i64, now_us, host_us);
                    if let (Some(at_zero), Some(uncertainty)) =
                        (path.clock.to_client(0), path.clock.uncertainty())
                    {
                        // to_client(h) = h − offset, so offset = −to_client(0).
                        self.events.push_back(ClientEvent::Clock {
                            offset_us: -at_zero,
                            uncertainty,
                        });
                    }
                }
                Message::Rumble {
                    pad,
                    strong,
                    weak,
                    duration_ms,
                } => self.events.push_back(ClientEvent::Rumble {
                    pad,
                    strong,
                    weak,
                    duration_ms,
                }),
                Message::Status { phase, ms } => {
                    self.phase = phase;
                    self.events.push_back(ClientEvent::Phase { phase, ms });
                }
                Message::CursorPosition { x, y, visible } => {
                    self.events
                        .push_back(ClientEvent::CursorPosition { x, y, visible });
                }
                Message::HostTiming {
                    capture_us,
                    encode_us,
                    frames,
                } if frames > 0 => {
                    self.events.push_back(ClientEvent::HostTiming {
                        capture_us,
                        encode_us,
                    });
                }
                Message::Monitors(list) => self.events.push_back(ClientEvent::Monitors(list)),
                m @ Message::CursorShape { .. } => {
                    if let Some(shape) = self.assembler.take(&m) {
                        self.events.push_back(ClientEvent::CursorShape(shape));
                    }
                }
                Message::Clipboard { text } => {
                    if let Ok(text) = std::str::from_utf8(text) {
                        self.events
                            .push_back(ClientEvent::Clipboard(text.to_string()));
                    }
                }
                _ => {}
            }
        }
    }

    /// The host welcomed the session: on a new path the lanes open and
    /// whatever input it has not acknowledged goes again (it applies each
    /// event once); the phase is streaming until it says otherwise.
    fn welcomed(&mut self, info: StreamInfo, first_on_path: bool, now: Instant) {
        self.phase = Phase::Streaming;
        if first_on_path {
            self.paths += 1;
            if self.paths > 1 {
                self.counters.reconnects += 1;
                self.input.resend_unacked(now);
            }
            self.events.push_back(ClientEvent::Welcome(info));
        } else {
            self.counters.takeovers += 1;
            self.input.resend_unacked(now);
            self.events.push_back(ClientEvent::TakenOver(info));
        }
        if let Some(p) = &mut self.path
            && !p.lanes_open
        {
            p.lanes_open = true;
            self.out.push(Lane::Input, |b| b.push(Lane::Input as u8));
            self.out
                .push(Lane::Recovery, |b| b.push(Lane::Recovery as u8));
        }
        self.send_display_size();
    }

    /// Shares the local clipboard's text with the desktop (the user allowed
    /// it); cut to [`crate::wire::MAX_CLIPBOARD`] bytes.
    pub fn send_clipboard(&mut self, text: &str) {
        if self.stream().is_none() {
            return;
        }
        let msg = Message::Clipboard {
            text: text.as_bytes(),
        };
        self.out
            .push(Lane::Control, |b| write_frame(b, |o| msg.encode(o)));
    }

    /// The client's picture area is `width × height` physical pixels on a
    /// display refreshing `refresh` times a second: the host is told (now
    /// if streaming, else after the welcome), and again after every
    /// welcome, a reconnect's or a backup's. Odd sizes are cut to even.
    pub fn set_display_size(&mut self, width: u16, height: u16, refresh: u8) {
        let even = |v: u16| (v & !1).clamp(2, crate::MAX_DIMENSION);
        let size = (even(width), even(height), refresh.clamp(1, 240));
        if self.display_size == Some(size) {
            return;
        }
        self.display_size = Some(size);
        self.send_display_size();
    }

    fn send_display_size(&mut self) {
        let (Some((width, height, refresh)), Some(_)) = (self.display_size, self.stream()) else {
            return;
        };
        let msg = Message::DisplaySize {
            width,
            height,
            refresh,
        };
        self.out
            .push(Lane::Control, |b| write_frame(b, |o| msg.encode(o)));
    }

    /// The user's activity: `fresh` when input came since the last call,
    /// `report` the heartbeat to send if one is due.
    pub fn activity(&mut self, fresh: bool, report: impl FnOnce() -> ActivityReport, now: Instant) {
        if self.stream().is_none() {
            return;
        }
        // The heartbeat: once a second, and at once when input comes while
        // the host is not simply streaming (speech into the microphone
        // resumes a paused session this way).
        if now >= self.next_activity || (fresh && self.phase != Phase::Streaming) {
            self.next_activity = now + ACTIVITY_INTERVAL;
            if fresh && self.phase.is_stopped() {
                self.events.push_back(ClientEvent::Resuming);
            }
            let r = report();
            self.out.push(Lane::Control, |b| {
                write_frame(b, |o| Message::Activity(r).encode(o));
            });
        }
    }

    /// Moves on with time: input (re)transmits, frames out of the
    /// reassembler, keyframe requests, loss figures, reports, pings, and
    /// the end of closing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_us = self.local_us(now);
        let Some(p) = self.path.as_mut().filter(|p| p.welcome.is_some()) else {
            return;
        };
        // Input out, in order, in one write.
        let sent_before = self.input.stats().sent;
        self.scratch.clear();
        while let Some((seq, event)) = self.input.poll_transmit(now) {
            write_frame(&mut self.scratch, |o| {
                Message::Input { seq, event }.encode(o)
            });
        }
        if !self.scratch.is_empty() {
            let scratch = &self.scratch;
            self.out.push(Lane::Input, |b| b.extend_from_slice(scratch));
        }
        if self.input.stats().sent > sent_before && self.phase.is_stopped() {
            self.events.push_back(ClientEvent::Resuming);
        }
        // Frames to the decoder.
        while let Some(ev) = p.reasm.poll(now) {
            match ev {
                ReassemblyEvent::Frame(f) => {
                    self.counters.frames_received += 1;
                    p.queue
                        .on_frame(us_since(self.epoch, f.completed_at), f.capture_us);
                    self.events.push_back(ClientEvent::Frame(f));
                }
                ReassemblyEvent::Lost { frame_id, count } => {
                    self.events.push_back(ClientEvent::Lost { frame_id, count });
                }
            }
        }
        if let Some(last_good_frame) = p.reasm.poll_keyframe_request(now) {
            self.counters.keyframes_requested += 1;
            self.out.push(Lane::Recovery, |b| {
                write_frame(b, |o| {
                    Message::KeyframeRequest { last_good_frame }.encode(o)
                });
            });
        }
        if now >= p.next_loss {
            p.next_loss = now + LOSS_WINDOW;
            let counters = p.reasm.settle(now);
            // Quick to rise, slow to fall (a tenth per window, so 1 %
            // takes about 14 s of silence to read as none): a few quiet
            // half seconds on a lossy path must not switch parity off.
            p.loss = counters.loss_since(&p.reported).max(p.loss * 0.9);
            p.reported = counters;
            self.counters.loss_permille = (p.loss * 1000.0).round() as u64;
        }
        if now >= p.next_report {
            let bytes = self.counters.bytes_received;
            let elapsed = REPORT_INTERVAL + now.saturating_duration_since(p.next_report);
            p.next_report = now + REPORT_INTERVAL;
            let recv_kbps = (bytes.saturating_sub(p.bytes_at_report) as f64 * 8.0
                / elapsed.as_secs_f64()
                / 1000.0) as u32;
            p.bytes_at_report = bytes;
            // No frame lately: report no queue rather than an old one; the
            // host holds its rate on a quiet path either way.
            let delay = p.queue.current(now_us).unwrap_or_default();
            let delay_us = delay.as_micros() as u64;
            self.counters.queue_delay_us = delay_us;
            self.counters.queue_delay_max_us = self.counters.queue_delay_max_us.max(delay_us);
            let report = Message::ReceiverReport {
                loss_permille: (p.loss * 1000.0).round() as u16,
                queue_delay_ms: delay.as_millis().min(u128::from(u16::MAX)) as u16,
                recv_kbps,
            };
            self.out
                .push(Lane::Control, |b| write_frame(b, |o| report.encode(o)));
        }
        if now >= p.next_ping {
            p.pings += 1;
            p.next_ping = now
                + if p.pings < STARTUP_PINGS {
                    STARTUP_PING_INTERVAL
                } else {
                    PING_INTERVAL
                };
            let ping = Message::Ping {
                stamp_us: now_us as u64,
            };
            self.out
                .push(Lane::Control, |b| write_frame(b, |o| ping.encode(o)));
        }
        if let Some(deadline) = self.closing
            && !self.closed
            && (self.input.in_flight() == 0 || now >= deadline)
        {
            self.closed = true;
            let bye = Message::Goodbye {
                reason: GoodbyeReason::Normal,
            };
            self.out
                .push(Lane::Control, |b| write_frame(b, |o| bye.encode(o)));
        }
    }
}
