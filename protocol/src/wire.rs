//! Versioned binary messages.
//!
//! Every message starts with a two-byte header: the protocol version and the
//! message type. Integers are big-endian. Every length is checked against the
//! bytes present and against the protocol's caps before anything is
//! allocated, so arbitrary input yields a [`DecodeError`], never a panic.

use std::net::SocketAddr;

use crate::activity::{ActivityReport, IdlePolicy, KeepActive, Phase, Presence};
use crate::audio::MAX_AUDIO_PAYLOAD;
use crate::pad::{PadAxis, PadButton, PadKind, check_slot};
use crate::{MAX_DIMENSION, PROTOCOL_VERSION};

/// Why a byte string is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the message did.
    #[error("message truncated: needed {needed} more bytes")]
    Truncated {
        /// How many more bytes the field being read needed.
        needed: usize,
    },
    /// The peer speaks a protocol version this build does not.
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u8),
    /// The message type byte is unknown.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A field holds a value outside its range.
    #[error("invalid value for {field}: {value}")]
    InvalidValue {
        /// The field's name.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
    /// Bytes were left over after a complete message.
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
    /// A fragment's geometry is inconsistent (index past count, empty payload, …).
    #[error("malformed fragment: {0}")]
    BadFragment(&'static str),
}

/// Why a stream lane was closed or a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GoodbyeReason {
    /// The user or the program ended the session normally.
    Normal = 0,
    /// The peer misbehaved (malformed messages, protocol violation).
    ProtocolError = 1,
    /// The host has no capacity for another session.
    NoCapacity = 2,
    /// The session was idle or silent for too long.
    Timeout = 3,
    /// The host or gateway is shutting down.
    Shutdown = 4,
    /// The gateway refused the session token (missing, forged, expired or
    /// meant for another audience); the close reason says which.
    Unauthorized = 5,
    /// The session was attached through another gateway; this path is stale.
    Replaced = 6,
}

impl GoodbyeReason {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            0 => Self::Normal,
            1 => Self::ProtocolError,
            2 => Self::NoCapacity,
            3 => Self::Timeout,
            4 => Self::Shutdown,
            5 => Self::Unauthorized,
            6 => Self::Replaced,
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "goodbye reason",
                    value: v.into(),
                });
            }
        })
    }
}

/// A mouse button, numbered as the host's input layer expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MouseButton {
    /// Primary button.
    Left = 1,
    /// Secondary button.
    Right = 2,
    /// Wheel button.
    Middle = 3,
    /// Thumb button "back".
    Back = 4,
    /// Thumb button "forward".
    Forward = 5,
}

impl MouseButton {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => Self::Left,
            2 => Self::Right,
            3 => Self::Middle,
            4 => Self::Back,
            5 => Self::Forward,
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "mouse button",
                    value: v.into(),
                });
            }
        })
    }

    /// The button with this wire code.
    pub fn from_code(v: u8) -> Option<Self> {
        Self::from_u8(v).ok()
    }

    /// Lower-case name used in scripts and recordings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Right => "right",
            Self::Middle => "middle",
            Self::Back => "back",
            Self::Forward => "forward",
        }
    }

    /// Parses the lower-case name used in scripts.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "left" => Self::Left,
            "right" => Self::Right,
            "middle" => Self::Middle,
            "back" => Self::Back,
            "forward" => Self::Forward,
            _ => return None,
        })
    }
}

/// One input event from the client's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEvent {
    /// A key by physical position (USB HID usage on page 7).
    Key {
        /// USB HID keyboard usage.
        usage: u16,
        /// `true` for press, `false` for release.
        down: bool,
    },
    /// A mouse button edge.
    Button {
        /// Which button.
        button: MouseButton,
        /// `true` for press, `false` for release.
        down: bool,
    },
    /// Absolute pointer position in stream (host picture) coordinates.
    Move {
        /// Column, `0..width`.
        x: u16,
        /// Row, `0..height`.
        y: u16,
    },
    /// Relative pointer motion in stream pixels, while the client holds
    /// the pointer captured (games); the host moves its pointer by it.
    MoveBy {
        /// Rightwards.
        dx: i16,
        /// Downwards.
        dy: i16,
    },
    /// Wheel motion in 1/120ths of a notch (high resolution, as Windows' WHEEL_DELTA).
    Wheel {
        /// Horizontal, positive to the right.
        dx: i16,
        /// Vertical, positive away from the user (scroll up).
        dy: i16,
    },
    /// A gamepad took slot `pad` (`0..MAX_PADS`).
    PadConnect {
        /// Slot.
        pad: u8,
        /// Controller type.
        kind: PadKind,
        /// Whether it can rumble.
        rumble: bool,
    },
    /// The gamepad in slot `pad` left; everything it held is released.
    PadDisconnect {
        /// Slot.
        pad: u8,
    },
    /// A gamepad button edge.
    PadButton {
        /// Slot.
        pad: u8,
        /// Which button.
        button: PadButton,
        /// `true` for press, `false` for release.
        down: bool,
    },
    /// A gamepad axis' new value, `-AXIS_MAX..=AXIS_MAX` (see [`crate::pad`]).
    PadAxis {
        /// Slot.
        pad: u8,
        /// Which axis.
        axis: PadAxis,
        /// Position.
        value: i16,
    },
}

impl InputEvent {
    /// The kind's name as used in recordings: `key`, `button`, `move`,
    /// `wheel`, `pad`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Key { .. } => "key",
            Self::Button { .. } => "button",
            Self::Move { .. } => "move",
            Self::MoveBy { .. } => "move-by",
            Self::Wheel { .. } => "wheel",
            Self::PadConnect { .. }
            | Self::PadDisconnect { .. }
            | Self::PadButton { .. }
            | Self::PadAxis { .. } => "pad",
        }
    }

    /// A value that later values of the same thing replace (pointer
    /// position, an axis), as opposed to an edge: what may be coalesced.
    pub fn is_level(&self) -> bool {
        matches!(self, Self::Move { .. } | Self::PadAxis { .. })
    }

    /// Whether `later` replaces this value (same pointer, same pad axis).
    pub fn replaced_by(&self, later: &Self) -> bool {
        match (self, later) {
            (Self::Move { .. }, Self::Move { .. }) => true,
            (
                Self::PadAxis { pad, axis, .. },
                Self::PadAxis {
                    pad: p2, axis: a2, ..
                },
            ) => pad == p2 && axis == a2,
            _ => false,
        }
    }
}

/// Bit set in [`VideoFragment::flags`] when the frame is an IDR (decodable alone).
pub const FRAG_FLAG_KEYFRAME: u8 = 1;

impl VideoFragment<'_> {
    /// Whether the header's numbers agree with each other and with the
    /// payload's size; the reason when they do not.
    pub fn check(&self) -> Result<(), &'static str> {
        let (count, parity, shard) = (self.count, self.parity, self.shard);
        if count == 0 {
            return Err("zero fragment count");
        }
        if parity > MAX_PARITY {
            return Err("too much parity");
        }
        if u32::from(self.index) >= u32::from(count) + u32::from(parity) {
            return Err("index past count");
        }
        if self.payload.is_empty() {
            return Err("empty payload");
        }
        if shard == 0 || (parity > 0 && shard % 2 != 0) {
            return Err("bad shard size");
        }
        let full = u64::from(shard) * u64::from(count);
        let before_last = full - u64::from(shard);
        let len = u64::from(self.frame_len);
        if len <= before_last || len > full {
            return Err("frame length does not match");
        }
        let expected = if self.index + 1 == count {
            (len - before_last) as usize
        } else {
            usize::from(shard)
        };
        if self.payload.len() != expected {
            return Err("payload size does not match");
        }
        Ok(())
    }
}

/// Most parity fragments one frame may carry.
pub const MAX_PARITY: u16 = 1024;

/// Longest session token a `Hello` may carry.
pub const MAX_TOKEN: usize = 2048;

/// One datagram-sized piece of an encoded access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFragment<'a> {
    /// Frame number, increasing by one per encoded frame (wrapping).
    pub frame_id: u32,
    /// Index of this fragment within the frame: `0..count` carry the access
    /// unit, `count..count + parity` carry Reed–Solomon parity.
    pub index: u16,
    /// Number of data fragments in the frame (≥ 1).
    pub count: u16,
    /// Number of parity fragments (≤ [`MAX_PARITY`]).
    pub parity: u16,
    /// [`FRAG_FLAG_KEYFRAME`] and future flags.
    pub flags: u8,
    /// Host clock at capture, in microseconds since the host's session epoch.
    pub capture_us: u64,
    /// Bytes of every data fragment but the last, and of every parity
    /// fragment (even when there is parity).
    pub shard: u16,
    /// Bytes of the whole access unit: `(count - 1) * shard < frame_len <= count * shard`.
    pub frame_len: u32,
    /// The bytes of the access unit this fragment carries.
    pub payload: &'a [u8],
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// Client → host (through the gateway): open a session with this picture.
    Hello {
        /// Requested picture width.
        width: u16,
        /// Requested picture height.
        height: u16,
        /// Requested frames per second.
        fps: u8,
        /// The session token from the directory (empty on direct connections);
        /// at most [`MAX_TOKEN`] bytes. Gateways check it and do not pass it on.
        token: &'a [u8],
        /// The client's own name for the session, the same on every
        /// reconnect, so a direct (token-less) session re-attaches; with a
        /// token the token's session id decides instead.
        client_session: u64,
    },
    /// Gateway → host: attach the session in the envelope to this gateway,
    /// opening it if the host does not have it (or taking it over from the
    /// standby state a primary host replicated here).
    Attach {
        /// Requested picture width.
        width: u16,
        /// Requested picture height.
        height: u16,
        /// Requested frames per second.
        fps: u8,
        /// The directory's idle policy for the session.
        policy: IdlePolicy,
        /// The backup host the session's state is replicated to.
        backup: Option<SocketAddr>,
    },
    /// Gateway → host: the client's connection was lost. The host releases
    /// held input and keeps the session for the client's return.
    Detach,
    /// Client → host, about once a second: the user's activity.
    Activity(ActivityReport),
    /// Host → client: what the session is doing.
    Status {
        /// The phase.
        phase: Phase,
        /// [`Phase::Warning`]: milliseconds until the pause;
        /// [`Phase::Resuming`]: the expected wait; otherwise 0.
        ms: u32,
    },
    /// Primary host → backup host: the session's state, after every change
    /// and once a second, latest wins.
    StateSync {
        /// Input applied up to and including this sequence number.
        input_seq: u32,
        /// Increases with every change.
        version: u32,
        /// The desktop's state, opaque to the protocol, at most [`MAX_STATE`].
        state: &'a [u8],
    },
    /// Either way, when the user allows sharing the clipboard: its text
    /// (UTF-8, at most [`MAX_CLIPBOARD`] bytes; receivers drop anything
    /// else). It crosses the gateway ↔ host link in one datagram.
    Clipboard {
        /// The text.
        text: &'a [u8],
    },
    /// Host → client: the pointer's shape, drawn by the client itself so it
    /// moves without waiting for video. Sent in parts of whole rows (a
    /// shape is up to [`MAX_CURSOR`] pixels square, more than a datagram);
    /// a part of a newer `serial` replaces an unfinished older shape.
    CursorShape {
        /// The host's number for this shape.
        serial: u32,
        /// Pixels, `1..=MAX_CURSOR`.
        width: u16,
        /// Rows, `1..=MAX_CURSOR`.
        height: u16,
        /// The hot spot, inside the shape.
        hot_x: u16,
        /// See `hot_x`.
        hot_y: u16,
        /// The first row this part carries.
        first_row: u16,
        /// Whole rows of straight (not premultiplied) RGBA, 4 bytes a pixel.
        rgba: &'a [u8],
    },
    /// Host → client: where the pointer is on the desktop, in picture
    /// pixels, and whether it shows.
    CursorPosition {
        /// Column.
        x: u16,
        /// Row.
        y: u16,
        /// Hidden (a game or a video player hid it) when false.
        visible: bool,
    },
    /// Host → client: the session is open.
    Welcome {
        /// The host's id for the session.
        session_id: u64,
        /// Picture width the host will send.
        width: u16,
        /// Picture height the host will send.
        height: u16,
        /// Frame rate the host will send.
        fps: u8,
        /// Host clock now, microseconds since the session epoch.
        host_time_us: u64,
    },
    /// Liveness probe; the receiver answers with [`Message::Pong`] carrying the same stamp.
    Ping {
        /// Sender's clock, echoed back.
        stamp_us: u64,
    },
    /// Answer to a [`Message::Ping`].
    Pong {
        /// The echoed stamp.
        stamp_us: u64,
        /// The answering host's clock (microseconds since its epoch, the
        /// clock of [`VideoFragment::capture_us`]), so the client can map
        /// capture times onto its own clock.
        host_us: u64,
    },
    /// The sender ends the session.
    Goodbye {
        /// Why.
        reason: GoodbyeReason,
    },
    /// One input event with its sequence number.
    Input {
        /// Sequence number (wrapping), one per distinct event.
        seq: u32,
        /// The event.
        event: InputEvent,
    },
    /// Host → client: every input up to and including `seq` has been applied.
    InputAck {
        /// Cumulative sequence number.
        seq: u32,
        /// When input `seq` was applied, on the host's clock (µs, as in
        /// `Pong`): with the clock map, the input's one-way latency.
        host_us: u64,
    },
    /// A piece of a video frame.
    Video(VideoFragment<'a>),
    /// Client → host: the picture is broken; send a keyframe.
    KeyframeRequest {
        /// Last frame the client decoded correctly.
        last_good_frame: u32,
    },
    /// Client → host, ten times a second: what the path did to the video
    /// lately, so the host sizes its parity and its bitrate to the path.
    ReceiverReport {
        /// Lost fragments per thousand (0–1000).
        loss_permille: u16,
        /// How much longer than its fastest frames video is taking now, in
        /// milliseconds: the queue building on the path.
        queue_delay_ms: u16,
        /// Bytes received lately, as kilobits per second.
        recv_kbps: u32,
    },
    /// Host → client: run the gamepad's motors (force feedback).
    Rumble {
        /// Slot (`0..MAX_PADS`).
        pad: u8,
        /// Low-frequency (strong) motor, 0–65535.
        strong: u16,
        /// High-frequency (weak) motor, 0–65535.
        weak: u16,
        /// For this long; 0 stops.
        duration_ms: u16,
    },
    /// 10 ms of sound as an Opus packet: the desktop's (host → client) or
    /// the microphone's (client → host), as a datagram.
    Audio {
        /// Sequence number (wrapping), one per 10 ms frame.
        seq: u32,
        /// When the frame was captured, on the sender's clock (µs).
        capture_us: u64,
        /// The encoded frame, at most [`crate::audio::MAX_AUDIO_PAYLOAD`].
        payload: &'a [u8],
        /// A copy of frame `seq - 1` (possibly empty), so one lost packet
        /// costs nothing audible.
        previous: &'a [u8],
    },
}

mod ty {
    pub const HELLO: u8 = 1;
    pub const WELCOME: u8 = 2;
    pub const PING: u8 = 3;
    pub const PONG: u8 = 4;
    pub const GOODBYE: u8 = 5;
    pub const INPUT: u8 = 6;
    pub const INPUT_ACK: u8 = 7;
    pub const VIDEO: u8 = 8;
    pub const KEYFRAME_REQUEST: u8 = 9;
    pub const RECEIVER_REPORT: u8 = 10;
    pub const RUMBLE: u8 = 11;
    pub const AUDIO: u8 = 12;
    pub const ATTACH: u8 = 13;
    pub const DETACH: u8 = 14;
    pub const ACTIVITY: u8 = 15;
    pub const STATUS: u8 = 16;
    pub const STATE_SYNC: u8 = 17;
    pub const CLIPBOARD: u8 = 18;
    pub const CURSOR_SHAPE: u8 = 19;
    pub const CURSOR_POSITION: u8 = 20;
}

/// Largest pointer shape carried, in pixels each way (larger ones are cut).
pub const MAX_CURSOR: u16 = 64;

/// Bytes of a [`Message::CursorShape`] besides its pixels.
pub const CURSOR_SHAPE_HEADER_LEN: usize = 2 + 4 + 2 * 5 + 2;

/// Largest replicated session state.
pub const MAX_STATE: usize = 1100;

/// Largest clipboard text shared, in bytes.
pub const MAX_CLIPBOARD: usize = 1024;

mod input_kind {
    pub const KEY: u8 = 1;
    pub const BUTTON: u8 = 2;
    pub const MOVE: u8 = 3;
    pub const WHEEL: u8 = 4;
    pub const PAD_CONNECT: u8 = 5;
    pub const PAD_DISCONNECT: u8 = 6;
    pub const PAD_BUTTON: u8 = 7;
    pub const PAD_AXIS: u8 = 8;
    pub const MOVE_BY: u8 = 9;
}

/// Size of the video fragment header, including the two-byte message header.
pub const VIDEO_HEADER_LEN: usize = 2 + 4 + 2 + 2 + 2 + 1 + 8 + 2 + 4;

impl<'a> Message<'a> {
    /// Appends the encoded message to `out`. Never fails; callers keep
    /// fragment payloads within [`crate::MAX_DATAGRAM`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(PROTOCOL_VERSION);
        match self {
            Self::Hello {
                width,
                height,
                fps,
                token,
                client_session,
            } => {
                out.push(ty::HELLO);
                out.extend_from_slice(&width.to_be_bytes());
                out.extend_from_slice(&height.to_be_bytes());
                out.push(*fps);
                let token = &token[..token.len().min(MAX_TOKEN)];
                out.extend_from_slice(&(token.len() as u16).to_be_bytes());
                out.extend_from_slice(token);
                out.extend_from_slice(&client_session.to_be_bytes());
            }
            Self::Attach {
                width,
                height,
                fps,
                policy,
                backup,
            } => {
                out.push(ty::ATTACH);
                out.extend_from_slice(&width.to_be_bytes());
                out.extend_from_slice(&height.to_be_bytes());
                out.push(*fps);
                for ms in policy.to_wire() {
                    out.extend_from_slice(&ms.to_be_bytes());
                }
                match backup {
                    None => out.push(0),
                    Some(SocketAddr::V4(a)) => {
                        out.push(4);
                        out.extend_from_slice(&a.ip().octets());
                        out.extend_from_slice(&a.port().to_be_bytes());
                    }
                    Some(SocketAddr::V6(a)) => {
                        out.push(6);
                        out.extend_from_slice(&a.ip().octets());
                        out.extend_from_slice(&a.port().to_be_bytes());
                    }
                }
            }
            Self::Detach => out.push(ty::DETACH),
            Self::Activity(a) => {
                out.push(ty::ACTIVITY);
                out.extend_from_slice(&a.idle_ms.to_be_bytes());
                out.extend_from_slice(&[a.presence as u8, a.keep_active as u8]);
                out.extend_from_slice(&a.expected_idle_s.to_be_bytes());
            }
            Self::Status { phase, ms } => {
                out.extend_from_slice(&[ty::STATUS, *phase as u8]);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Self::StateSync {
                input_seq,
                version,
                state,
            } => {
                let state = &state[..state.len().min(MAX_STATE)];
                out.push(ty::STATE_SYNC);
                out.extend_from_slice(&input_seq.to_be_bytes());
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&(state.len() as u16).to_be_bytes());
                out.extend_from_slice(state);
            }
            Self::Clipboard { text } => {
                let text = &text[..text.len().min(MAX_CLIPBOARD)];
                out.push(ty::CLIPBOARD);
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text);
            }
            Self::CursorShape {
                serial,
                width,
                height,
                hot_x,
                hot_y,
                first_row,
                rgba,
            } => {
                out.push(ty::CURSOR_SHAPE);
                out.extend_from_slice(&serial.to_be_bytes());
                for v in [*width, *height, *hot_x, *hot_y, *first_row] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                let row = usize::from(*width) * 4;
                let rows = (rgba.len() / row.max(1)).min(usize::from(MAX_CURSOR));
                out.extend_from_slice(&(rows as u16).to_be_bytes());
                out.extend_from_slice(&rgba[..rows * row]);
            }
            Self::CursorPosition { x, y, visible } => {
                out.push(ty::CURSOR_POSITION);
                out.extend_from_slice(&x.to_be_bytes());
                out.extend_from_slice(&y.to_be_bytes());
                out.push(u8::from(*visible));
            }
            Self::Welcome {
                session_id,
                width,
                height,
                fps,
                host_time_us,
            } => {
                out.push(ty::WELCOME);
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(&width.to_be_bytes());
                out.extend_from_slice(&height.to_be_bytes());
                out.push(*fps);
                out.extend_from_slice(&host_time_us.to_be_bytes());
            }
            Self::Ping { stamp_us } => {
                out.push(ty::PING);
                out.extend_from_slice(&stamp_us.to_be_bytes());
            }
            Self::Pong { stamp_us, host_us } => {
                out.push(ty::PONG);
                out.extend_from_slice(&stamp_us.to_be_bytes());
                out.extend_from_slice(&host_us.to_be_bytes());
            }
            Self::Goodbye { reason } => {
                out.push(ty::GOODBYE);
                out.push(*reason as u8);
            }
            Self::Input { seq, event } => {
                out.push(ty::INPUT);
                out.extend_from_slice(&seq.to_be_bytes());
                match *event {
                    InputEvent::Key { usage, down } => {
                        out.push(input_kind::KEY);
                        out.extend_from_slice(&usage.to_be_bytes());
                        out.push(down.into());
                    }
                    InputEvent::Button { button, down } => {
                        out.push(input_kind::BUTTON);
                        out.push(button as u8);
                        out.push(down.into());
                    }
                    InputEvent::Move { x, y } => {
                        out.push(input_kind::MOVE);
                        out.extend_from_slice(&x.to_be_bytes());
                        out.extend_from_slice(&y.to_be_bytes());
                    }
                    InputEvent::MoveBy { dx, dy } => {
                        out.push(input_kind::MOVE_BY);
                        out.extend_from_slice(&dx.to_be_bytes());
                        out.extend_from_slice(&dy.to_be_bytes());
                    }
                    InputEvent::Wheel { dx, dy } => {
                        out.push(input_kind::WHEEL);
                        out.extend_from_slice(&dx.to_be_bytes());
                        out.extend_from_slice(&dy.to_be_bytes());
                    }
                    InputEvent::PadConnect { pad, kind, rumble } => {
                        out.extend_from_slice(&[input_kind::PAD_CONNECT, pad, kind as u8]);
                        out.push(rumble.into());
                    }
                    InputEvent::PadDisconnect { pad } => {
                        out.extend_from_slice(&[input_kind::PAD_DISCONNECT, pad]);
                    }
                    InputEvent::PadButton { pad, button, down } => {
                        out.extend_from_slice(&[input_kind::PAD_BUTTON, pad, button as u8]);
                        out.push(down.into());
                    }
                    InputEvent::PadAxis { pad, axis, value } => {
                        out.extend_from_slice(&[input_kind::PAD_AXIS, pad, axis as u8]);
                        out.extend_from_slice(&value.to_be_bytes());
                    }
                }
            }
            Self::InputAck { seq, host_us } => {
                out.push(ty::INPUT_ACK);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&host_us.to_be_bytes());
            }
            Self::Video(f) => {
                out.push(ty::VIDEO);
                out.extend_from_slice(&f.frame_id.to_be_bytes());
                out.extend_from_slice(&f.index.to_be_bytes());
                out.extend_from_slice(&f.count.to_be_bytes());
                out.extend_from_slice(&f.parity.to_be_bytes());
                out.push(f.flags);
                out.extend_from_slice(&f.capture_us.to_be_bytes());
                out.extend_from_slice(&f.shard.to_be_bytes());
                out.extend_from_slice(&f.frame_len.to_be_bytes());
                out.extend_from_slice(f.payload);
            }
            Self::KeyframeRequest { last_good_frame } => {
                out.push(ty::KEYFRAME_REQUEST);
                out.extend_from_slice(&last_good_frame.to_be_bytes());
            }
            Self::ReceiverReport {
                loss_permille,
                queue_delay_ms,
                recv_kbps,
            } => {
                out.push(ty::RECEIVER_REPORT);
                out.extend_from_slice(&loss_permille.to_be_bytes());
                out.extend_from_slice(&queue_delay_ms.to_be_bytes());
                out.extend_from_slice(&recv_kbps.to_be_bytes());
            }
            Self::Rumble {
                pad,
                strong,
                weak,
                duration_ms,
            } => {
                out.extend_from_slice(&[ty::RUMBLE, *pad]);
                out.extend_from_slice(&strong.to_be_bytes());
                out.extend_from_slice(&weak.to_be_bytes());
                out.extend_from_slice(&duration_ms.to_be_bytes());
            }
            Self::Audio {
                seq,
                capture_us,
                payload,
                previous,
            } => {
                let payload = &payload[..payload.len().min(MAX_AUDIO_PAYLOAD)];
                let previous = &previous[..previous.len().min(MAX_AUDIO_PAYLOAD)];
                out.push(ty::AUDIO);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&capture_us.to_be_bytes());
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                out.extend_from_slice(payload);
                out.extend_from_slice(&(previous.len() as u16).to_be_bytes());
                out.extend_from_slice(previous);
            }
        }
    }

    /// Decodes exactly one message occupying all of `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { buf };
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::Version(version));
        }
        let msg = match r.u8()? {
            ty::HELLO => {
                let width = r.dimension("width")?;
                let height = r.dimension("height")?;
                let fps = r.fps()?;
                let len = usize::from(r.u16()?);
                if len > MAX_TOKEN {
                    return Err(DecodeError::InvalidValue {
                        field: "token length",
                        value: len as u64,
                    });
                }
                let token = r.take(len)?;
                Self::Hello {
                    width,
                    height,
                    fps,
                    token,
                    client_session: r.u64()?,
                }
            }
            ty::ATTACH => {
                let width = r.dimension("width")?;
                let height = r.dimension("height")?;
                let fps = r.fps()?;
                let policy =
                    IdlePolicy::from_wire([r.u32()?, r.u32()?, r.u32()?]).map_err(|_| {
                        DecodeError::InvalidValue {
                            field: "idle policy order",
                            value: 0,
                        }
                    })?;
                let backup = match r.u8()? {
                    0 => None,
                    4 => {
                        let ip = std::net::Ipv4Addr::from(r.array::<4>()?);
                        Some(SocketAddr::from((ip, r.u16()?)))
                    }
                    6 => {
                        let ip = std::net::Ipv6Addr::from(r.array::<16>()?);
                        Some(SocketAddr::from((ip, r.u16()?)))
                    }
                    other => {
                        return Err(DecodeError::InvalidValue {
                            field: "address family",
                            value: other.into(),
                        });
                    }
                };
                Self::Attach {
                    width,
                    height,
                    fps,
                    policy,
                    backup,
                }
            }
            ty::DETACH => Self::Detach,
            ty::ACTIVITY => {
                let idle_ms = r.u32()?;
                let presence = r.u8()?;
                let presence = Presence::from_u8(presence).ok_or(DecodeError::InvalidValue {
                    field: "presence",
                    value: presence.into(),
                })?;
                let keep = r.u8()?;
                let keep_active = KeepActive::from_u8(keep).ok_or(DecodeError::InvalidValue {
                    field: "keep-active reason",
                    value: keep.into(),
                })?;
                Self::Activity(ActivityReport {
                    idle_ms,
                    presence,
                    keep_active,
                    expected_idle_s: r.u32()?,
                })
            }
            ty::STATUS => {
                let p = r.u8()?;
                let phase = Phase::from_u8(p).ok_or(DecodeError::InvalidValue {
                    field: "phase",
                    value: p.into(),
                })?;
                Self::Status {
                    phase,
                    ms: r.u32()?,
                }
            }
            ty::STATE_SYNC => {
                let input_seq = r.u32()?;
                let version = r.u32()?;
                let len = usize::from(r.u16()?);
                if len > MAX_STATE {
                    return Err(DecodeError::InvalidValue {
                        field: "state length",
                        value: len as u64,
                    });
                }
                Self::StateSync {
                    input_seq,
                    version,
                    state: r.take(len)?,
                }
            }
            ty::CLIPBOARD => {
                let len = usize::from(r.u16()?);
                if len > MAX_CLIPBOARD {
                    return Err(DecodeError::InvalidValue {
                        field: "clipboard length",
                        value: len as u64,
                    });
                }
                Self::Clipboard { text: r.take(len)? }
            }
            ty::CURSOR_SHAPE => {
                let serial = r.u32()?;
                let mut size = |field| {
                    let v = r.u16()?;
                    if v == 0 || v > MAX_CURSOR {
                        return Err(DecodeError::InvalidValue {
                            field,
                            value: v.into(),
                        });
                    }
                    Ok(v)
                };
                let (width, height) = (size("cursor width")?, size("cursor height")?);
                let (hot_x, hot_y, first_row, rows) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
                for (field, v, limit) in [
                    ("cursor hot x", hot_x, width),
                    ("cursor hot y", hot_y, height),
                    ("cursor rows", first_row.saturating_add(rows), height + 1),
                ] {
                    if v >= limit {
                        return Err(DecodeError::InvalidValue {
                            field,
                            value: v.into(),
                        });
                    }
                }
                let rgba = r.take(usize::from(rows) * usize::from(width) * 4)?;
                Self::CursorShape {
                    serial,
                    width,
                    height,
                    hot_x,
                    hot_y,
                    first_row,
                    rgba,
                }
            }
            ty::CURSOR_POSITION => Self::CursorPosition {
                x: r.u16()?,
                y: r.u16()?,
                visible: match r.u8()? {
                    0 => false,
                    1 => true,
                    v => {
                        return Err(DecodeError::InvalidValue {
                            field: "cursor visible",
                            value: v.into(),
                        });
                    }
                },
            },
            ty::WELCOME => Self::Welcome {
                session_id: r.u64()?,
                width: r.dimension("width")?,
                height: r.dimension("height")?,
                fps: r.fps()?,
                host_time_us: r.u64()?,
            },
            ty::PING => Self::Ping { stamp_us: r.u64()? },
            ty::RECEIVER_REPORT => {
                let loss_permille = r.u16()?;
                if loss_permille > 1000 {
                    return Err(DecodeError::InvalidValue {
                        field: "loss per mille",
                        value: loss_permille.into(),
                    });
                }
                Self::ReceiverReport {
                    loss_permille,
                    queue_delay_ms: r.u16()?,
                    recv_kbps: r.u32()?,
                }
            }
            ty::RUMBLE => Self::Rumble {
                pad: check_slot(r.u8()?)?,
                strong: r.u16()?,
                weak: r.u16()?,
                duration_ms: r.u16()?,
            },
            ty::AUDIO => {
                let seq = r.u32()?;
                let capture_us = r.u64()?;
                let len = usize::from(r.u16()?);
                let payload = r.take(len)?;
                let len = usize::from(r.u16()?);
                let previous = r.take(len)?;
                for (field, p) in [("audio payload", payload), ("audio copy", previous)] {
                    if p.len() > MAX_AUDIO_PAYLOAD {
                        return Err(DecodeError::InvalidValue {
                            field,
                            value: p.len() as u64,
                        });
                    }
                }
                Self::Audio {
                    seq,
                    capture_us,
                    payload,
                    previous,
                }
            }
            ty::PONG => Self::Pong {
                stamp_us: r.u64()?,
                host_us: r.u64()?,
            },
            ty::GOODBYE => Self::Goodbye {
                reason: GoodbyeReason::from_u8(r.u8()?)?,
            },
            ty::INPUT => {
                let seq = r.u32()?;
                let event = match r.u8()? {
                    input_kind::KEY => InputEvent::Key {
                        usage: r.u16()?,
                        down: r.bool("key action")?,
                    },
                    input_kind::BUTTON => InputEvent::Button {
                        button: MouseButton::from_u8(r.u8()?)?,
                        down: r.bool("button action")?,
                    },
                    input_kind::MOVE => InputEvent::Move {
                        x: r.u16()?,
                        y: r.u16()?,
                    },
                    input_kind::MOVE_BY => InputEvent::MoveBy {
                        dx: r.u16()? as i16,
                        dy: r.u16()? as i16,
                    },
                    input_kind::WHEEL => InputEvent::Wheel {
                        dx: r.u16()? as i16,
                        dy: r.u16()? as i16,
                    },
                    input_kind::PAD_CONNECT => InputEvent::PadConnect {
                        pad: check_slot(r.u8()?)?,
                        kind: PadKind::from_u8(r.u8()?)?,
                        rumble: r.bool("pad rumble")?,
                    },
                    input_kind::PAD_DISCONNECT => InputEvent::PadDisconnect {
                        pad: check_slot(r.u8()?)?,
                    },
                    input_kind::PAD_BUTTON => InputEvent::PadButton {
                        pad: check_slot(r.u8()?)?,
                        button: PadButton::from_u8(r.u8()?)?,
                        down: r.bool("pad button action")?,
                    },
                    input_kind::PAD_AXIS => InputEvent::PadAxis {
                        pad: check_slot(r.u8()?)?,
                        axis: PadAxis::from_u8(r.u8()?)?,
                        value: r.u16()? as i16,
                    },
                    other => {
                        return Err(DecodeError::InvalidValue {
                            field: "input kind",
                            value: other.into(),
                        });
                    }
                };
                Self::Input { seq, event }
            }
            ty::INPUT_ACK => Self::InputAck {
                seq: r.u32()?,
                host_us: r.u64()?,
            },
            ty::VIDEO => {
                let frame_id = r.u32()?;
                let index = r.u16()?;
                let count = r.u16()?;
                let parity = r.u16()?;
                let flags = r.u8()?;
                let capture_us = r.u64()?;
                let shard = r.u16()?;
                let frame_len = r.u32()?;
                let payload = r.rest();
                let f = VideoFragment {
                    frame_id,
                    index,
                    count,
                    parity,
                    flags,
                    capture_us,
                    shard,
                    frame_len,
                    payload,
                };
                f.check().map_err(DecodeError::BadFragment)?;
                Self::Video(f)
            }
            ty::KEYFRAME_REQUEST => Self::KeyframeRequest {
                last_good_frame: r.u32()?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        };
        if !r.buf.is_empty() {
            return Err(DecodeError::Trailing(r.buf.len()));
        }
        Ok(msg)
    }

    /// Convenience: the encoded message as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        self.encode(&mut v);
        v
    }
}

/// Whether encoded message bytes are a video fragment, judged from the
/// header alone (a relay forwards video without decoding it).
pub fn is_video(msg: &[u8]) -> bool {
    msg.len() > VIDEO_HEADER_LEN && msg[0] == PROTOCOL_VERSION && msg[1] == ty::VIDEO
}

/// A message addressed to one session, as carried in the stateless datagrams
/// between a gateway and a host: an 8-byte session id, then the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The session the message belongs to; chosen by the gateway on attach.
    pub session: u64,
    /// The message.
    pub message: Message<'a>,
}

/// Length of the session id prefix in an [`Envelope`].
pub const ENVELOPE_PREFIX: usize = 8;

impl<'a> Envelope<'a> {
    /// Appends the encoded envelope to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.session.to_be_bytes());
        self.message.encode(out);
    }

    /// Decodes an envelope occupying all of `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let (session, rest) = split_envelope(buf)?;
        Ok(Self {
            session,
            message: Message::decode(rest)?,
        })
    }
}

/// Splits a datagram into its session id and the message bytes, without
/// decoding the message (a gateway relays video this way, untouched).
pub fn split_envelope(buf: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    if buf.len() < ENVELOPE_PREFIX {
        return Err(DecodeError::Truncated {
            needed: ENVELOPE_PREFIX - buf.len(),
        });
    }
    let (id, rest) = buf.split_at(ENVELOPE_PREFIX);
    let mut b = [0u8; 8];
    b.copy_from_slice(id);
    Ok((u64::from_be_bytes(b), rest))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidValue {
                field,
                value: v.into(),
            }),
        }
    }
    fn dimension(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let v = self.u16()?;
        // Even sizes only: I420 chroma planes are half size in both directions.
        if v == 0 || v > MAX_DIMENSION || v % 2 != 0 {
            return Err(DecodeError::InvalidValue {
                field,
                value: v.into(),
            });
        }
        Ok(v)
    }
    fn fps(&mut self) -> Result<u8, DecodeError> {
        let v = self.u8()?;
        if v == 0 || v > 240 {
            return Err(DecodeError::InvalidValue {
                field: "fps",
                value: v.into(),
            });
        }
        Ok(v)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pad::MAX_PADS;
    use proptest::prelude::*;

    fn arb_button() -> impl Strategy<Value = MouseButton> {
        prop_oneof![
            Just(MouseButton::Left),
            Just(MouseButton::Right),
            Just(MouseButton::Middle),
            Just(MouseButton::Back),
            Just(MouseButton::Forward),
        ]
    }

    fn arb_event() -> impl Strategy<Value = InputEvent> {
        prop_oneof![
            (any::<u16>(), any::<bool>()).prop_map(|(usage, down)| InputEvent::Key { usage, down }),
            (arb_button(), any::<bool>())
                .prop_map(|(button, down)| InputEvent::Button { button, down }),
            (any::<u16>(), any::<u16>()).prop_map(|(x, y)| InputEvent::Move { x, y }),
            (any::<i16>(), any::<i16>()).prop_map(|(dx, dy)| InputEvent::Wheel { dx, dy }),
            (any::<i16>(), any::<i16>()).prop_map(|(dx, dy)| InputEvent::MoveBy { dx, dy }),
            (
                0..MAX_PADS,
                prop::sample::select(PadKind::ALL),
                any::<bool>()
            )
                .prop_map(|(pad, kind, rumble)| InputEvent::PadConnect {
                    pad,
                    kind,
                    rumble
                }),
            (0..MAX_PADS).prop_map(|pad| InputEvent::PadDisconnect { pad }),
            (
                0..MAX_PADS,
                prop::sample::select(PadButton::ALL),
                any::<bool>()
            )
                .prop_map(|(pad, button, down)| InputEvent::PadButton {
                    pad,
                    button,
                    down
                }),
            (
                0..MAX_PADS,
                prop::sample::select(PadAxis::ALL),
                any::<i16>()
            )
                .prop_map(|(pad, axis, value)| InputEvent::PadAxis {
                    pad,
                    axis,
                    value
                }),
        ]
    }

    fn arb_dim() -> impl Strategy<Value = u16> {
        (1u16..=MAX_DIMENSION / 2).prop_map(|v| v * 2)
    }

    fn arb_reason() -> impl Strategy<Value = GoodbyeReason> {
        prop_oneof![
            Just(GoodbyeReason::Normal),
            Just(GoodbyeReason::ProtocolError),
            Just(GoodbyeReason::NoCapacity),
            Just(GoodbyeReason::Timeout),
            Just(GoodbyeReason::Shutdown),
            Just(GoodbyeReason::Unauthorized),
        ]
    }

    /// Owned stand-in for a message, since `Message` borrows its payload.
    fn arb_message() -> impl Strategy<Value = (u8, Vec<u8>, [u64; 3], InputEvent, GoodbyeReason)> {
        (
            0u8..20,
            proptest::collection::vec(any::<u8>(), 1..1100),
            [any::<u64>(), any::<u64>(), any::<u64>()],
            arb_event(),
            arb_reason(),
        )
    }

    fn build<'a>(
        k: u8,
        payload: &'a [u8],
        n: [u64; 3],
        ev: InputEvent,
        reason: GoodbyeReason,
        w: u16,
        h: u16,
    ) -> Message<'a> {
        let fps = (n[2] % 240) as u8 + 1;
        match k {
            0 => Message::Hello {
                width: w,
                height: h,
                fps,
                token: &payload[..payload.len().min(MAX_TOKEN)],
                client_session: n[1],
            },
            1 => Message::Welcome {
                session_id: n[0],
                width: w,
                height: h,
                fps,
                host_time_us: n[1],
            },
            2 => Message::Ping { stamp_us: n[0] },
            3 => Message::Pong {
                stamp_us: n[1],
                host_us: n[2],
            },
            4 => Message::Goodbye { reason },
            5 => Message::Input {
                seq: n[0] as u32,
                event: ev,
            },
            6 => Message::InputAck {
                seq: n[1] as u32,
                host_us: n[2],
            },
            7 => {
                // A parity fragment of an even-sized shard, or a lone data fragment.
                let with_parity = n[0].is_multiple_of(2) && payload.len().is_multiple_of(2);
                let len = payload.len() as u16;
                Message::Video(VideoFragment {
                    frame_id: n[1] as u32,
                    index: u16::from(with_parity),
                    count: 1,
                    parity: u16::from(with_parity),
                    flags: n[2] as u8,
                    capture_us: n[1],
                    shard: len,
                    frame_len: u32::from(len),
                    payload,
                })
            }
            8 => Message::KeyframeRequest {
                last_good_frame: n[2] as u32,
            },
            9 => Message::Rumble {
                pad: (n[0] % u64::from(MAX_PADS)) as u8,
                strong: n[1] as u16,
                weak: n[2] as u16,
                duration_ms: (n[0] >> 16) as u16,
            },
            10 => {
                let split = (n[1] as usize % payload.len()).min(MAX_AUDIO_PAYLOAD);
                let (payload, previous) = payload.split_at(split);
                Message::Audio {
                    seq: n[0] as u32,
                    capture_us: n[2],
                    payload,
                    previous: &previous[..previous.len().min(MAX_AUDIO_PAYLOAD)],
                }
            }
            11 => Message::Attach {
                width: w,
                height: h,
                fps,
                policy: IdlePolicy {
                    warn: Some(std::time::Duration::from_millis(n[0] % 1000 + 1)),
                    pause: Some(std::time::Duration::from_millis(n[0] % 1000 + 1000)),
                    suspend: None,
                },
                backup: match n[1] % 3 {
                    0 => None,
                    1 => Some(SocketAddr::from(([127, 0, 0, 1], n[2] as u16))),
                    _ => Some(SocketAddr::from((
                        [0xfe80, 0, 0, 0, 0, 0, 0, 1],
                        n[2] as u16,
                    ))),
                },
            },
            12 => Message::Detach,
            13 => Message::Activity(ActivityReport {
                idle_ms: n[0] as u32,
                presence: Presence::from_u8((n[1] % 4) as u8).unwrap(),
                keep_active: KeepActive::from_u8((n[2] % 5) as u8).unwrap(),
                expected_idle_s: n[2] as u32,
            }),
            14 => Message::Status {
                phase: Phase::from_u8((n[0] % 5) as u8).unwrap(),
                ms: n[1] as u32,
            },
            16 => Message::Clipboard {
                text: &payload[..payload.len().min(MAX_CLIPBOARD)],
            },
            15 => Message::StateSync {
                input_seq: n[0] as u32,
                version: n[1] as u32,
                state: &payload[..payload.len().min(MAX_STATE)],
            },
            17 => {
                let width = (n[0] % u64::from(MAX_CURSOR)) as u16 + 1;
                let height = (n[1] % u64::from(MAX_CURSOR)) as u16 + 1;
                let first_row = (n[2] % u64::from(height)) as u16;
                let row = usize::from(width) * 4;
                let rows = (payload.len() / row).min(usize::from(height - first_row));
                Message::CursorShape {
                    serial: n[0] as u32,
                    width,
                    height,
                    hot_x: width - 1,
                    hot_y: (n[2] % u64::from(height)) as u16,
                    first_row,
                    rgba: &payload[..rows * row],
                }
            }
            18 => Message::CursorPosition {
                x: n[0] as u16,
                y: n[1] as u16,
                visible: n[2].is_multiple_of(2),
            },
            _ => Message::ReceiverReport {
                loss_permille: (n[0] % 1001) as u16,
                queue_delay_ms: n[1] as u16,
                recv_kbps: n[2] as u32,
            },
        }
    }

    #[test]
    fn cursor_shapes_outside_their_limits_are_refused() {
        let shape = |width, height, hot_x, first_row, rgba: &'static [u8]| Message::CursorShape {
            serial: 9,
            width,
            height,
            hot_x,
            hot_y: 0,
            first_row,
            rgba,
        };
        static PIXELS: [u8; 65 * 4 * 2] = [7; 65 * 4 * 2];
        let good = shape(2, 2, 1, 1, &PIXELS[..8]);
        assert_eq!(Message::decode(&good.to_vec()), Ok(good.clone()));
        for bad in [
            shape(MAX_CURSOR + 1, 1, 0, 0, &PIXELS[..65 * 4]),
            shape(2, 2, 2, 0, &PIXELS[..8]),
            shape(2, 2, 0, 1, &PIXELS[..16]),
            shape(0, 2, 0, 0, &[]),
        ] {
            assert!(Message::decode(&bad.to_vec()).is_err(), "{bad:?}");
        }
        // A part cut short is an error too.
        let bytes = good.to_vec();
        assert!(Message::decode(&bytes[..bytes.len() - 1]).is_err());
        // Visibility is 0 or 1, nothing else (one encoding per message).
        let mut seen = Message::CursorPosition {
            x: 5,
            y: 10,
            visible: true,
        }
        .to_vec();
        *seen.last_mut().unwrap() = 48;
        assert!(Message::decode(&seen).is_err());
    }

    proptest! {
        #[test]
        fn messages_round_trip((k, payload, n, ev, reason) in arb_message(), w in arb_dim(), h in arb_dim()) {
            let msg = build(k, &payload, n, ev, reason, w, h);
            let bytes = msg.to_vec();
            prop_assert_eq!(Message::decode(&bytes), Ok(msg.clone()));
            let env = Envelope { session: n[0] ^ n[1], message: msg };
            let mut buf = Vec::new();
            env.encode(&mut buf);
            prop_assert_eq!(Envelope::decode(&buf), Ok(env));
        }

        #[test]
        fn truncated_messages_are_errors((k, payload, n, ev, reason) in arb_message(), w in arb_dim(), h in arb_dim(), cut in any::<prop::sample::Index>()) {
            let msg = build(k, &payload, n, ev, reason, w, h);
            let bytes = msg.to_vec();
            // Any strict prefix is an error (a video fragment's payload size
            // is fixed by its header).
            let cut = cut.index(bytes.len());
            prop_assert!(Message::decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Message::decode(&bytes);
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn versioned_arbitrary_bodies_never_panic(t in 0u8..20, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![PROTOCOL_VERSION, t];
            bytes.extend_from_slice(&body);
            let _ = Message::decode(&bytes);
        }
    }

    #[test]
    fn rejects_wrong_version_and_bad_fields() {
        let mut hello = Message::Hello {
            width: 1280,
            height: 720,
            fps: 60,
            token: b"",
            client_session: 7,
        }
        .to_vec();
        hello[0] = 9;
        assert_eq!(Message::decode(&hello), Err(DecodeError::Version(9)));

        let odd = [
            PROTOCOL_VERSION,
            ty::HELLO,
            0x05,
            0x01,
            0x02,
            0xD0,
            60,
            0,
            0,
        ];
        assert!(matches!(
            Message::decode(&odd),
            Err(DecodeError::InvalidValue { field: "width", .. })
        ));

        // Found by fuzzing: an out-of-range loss report must be refused, not
        // clamped (what decodes must re-encode to the same bytes).
        assert!(matches!(
            Message::decode(&[
                PROTOCOL_VERSION,
                ty::RECEIVER_REPORT,
                0x09,
                0x09,
                0,
                0,
                0,
                0,
                0,
                0
            ]),
            Err(DecodeError::InvalidValue {
                field: "loss per mille",
                ..
            })
        ));

        let long_token = [
            PROTOCOL_VERSION,
            ty::HELLO,
            0x05,
            0x00,
            0x02,
            0xD0,
            60,
            0x08,
            0x01,
        ];
        assert!(matches!(
            Message::decode(&long_token),
            Err(DecodeError::InvalidValue {
                field: "token length",
                ..
            })
        ));

        let huge = [PROTOCOL_VERSION, ty::HELLO, 0x40, 0x02, 0x02, 0xD0, 60];
        assert!(matches!(
            Message::decode(&huge),
            Err(DecodeError::InvalidValue { field: "width", .. })
        ));

        let mut ping = Message::Ping { stamp_us: 1 }.to_vec();
        ping.push(0);
        assert_eq!(Message::decode(&ping), Err(DecodeError::Trailing(1)));

        let bad_frag = Message::Video(VideoFragment {
            frame_id: 1,
            index: 0,
            count: 1,
            parity: 0,
            flags: 0,
            capture_us: 0,
            shard: 1,
            frame_len: 1,
            payload: &[1],
        })
        .to_vec();
        let mut past = bad_frag.clone();
        past[7] = 5; // index low byte past count
        assert_eq!(
            Message::decode(&past),
            Err(DecodeError::BadFragment("index past count"))
        );
        let mut longer = bad_frag.clone();
        longer.push(2);
        assert_eq!(
            Message::decode(&longer),
            Err(DecodeError::BadFragment("payload size does not match"))
        );
        assert_eq!(
            Message::decode(&bad_frag[..VIDEO_HEADER_LEN]),
            Err(DecodeError::BadFragment("empty payload"))
        );
    }
}
