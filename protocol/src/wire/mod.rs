//! Versioned binary messages.
//!
//! Every message starts with a two-byte header: the protocol version and the
//! message type. Integers are big-endian. Every length is checked against the
//! bytes present and against the protocol's caps before anything is
//! allocated, so arbitrary input yields a [`DecodeError`], never a panic.
//!
//! [`Message`] lists every message; each message's encoding and decoding sit
//! together, one small module per message, in [`session`] (opening,
//! attaching, liveness, phases, replication), [`events`] (input events and
//! their acknowledgement) and [`media`] (video fragments and their
//! recovery, sound, rumble, the clipboard, the pointer). [`Reader`] checks
//! every length it is asked for.

mod events;
mod media;
mod reader;
mod session;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use crate::PROTOCOL_VERSION;
use crate::activity::{ActivityReport, IdlePolicy, Phase};
use reader::Reader;

use crate::codec::{Codec, CodecAsk};
use crate::monitors::Monitors;

pub use events::{InputEvent, MouseButton};
pub use media::{FRAG_FLAG_KEYFRAME, MAX_PARITY, VideoFragment};

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

wire_enum! {
    /// Why a stream lane was closed or a session ended.
    pub enum GoodbyeReason {
        /// The user or the program ended the session normally.
        Normal = 0 => "normal",
        /// The peer misbehaved (malformed messages, protocol violation).
        ProtocolError = 1 => "protocol error",
        /// The host has no capacity for another session.
        NoCapacity = 2 => "no capacity",
        /// The session was idle or silent for too long.
        Timeout = 3 => "timeout",
        /// The host or gateway is shutting down.
        Shutdown = 4 => "shutdown",
        /// The gateway refused the session token (missing, forged, expired
        /// or meant for another audience); the close reason says which.
        Unauthorized = 5 => "unauthorized",
        /// The session was attached through another gateway; this path is stale.
        Replaced = 6 => "replaced",
        /// Another client holds the session now (the same account's
        /// desktop, open on another device).
        InUse = 7 => "in use",
        /// The service ended the session (its administrator did, or
        /// disabled the account): reconnecting would not bring it back.
        Ended = 8 => "ended by the service",
    }
}

/// Longest session token a `Hello` may carry.
pub const MAX_TOKEN: usize = 2048;

/// Longest session token an `Attach` may carry: with the rest of the
/// message it fits one datagram between gateway and host.
pub const MAX_ATTACH_TOKEN: usize = 1200;

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
        /// The codecs the client decodes, and its user's choice.
        codecs: CodecAsk,
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
        /// The client's own id for the session (its `Hello`'s
        /// `client_session`): while one client holds the session, a client
        /// with another id is refused.
        client: u64,
        /// The client's session token (empty on direct sessions), at most
        /// [`MAX_ATTACH_TOKEN`] bytes: hosts that know the directory's key
        /// check it themselves and take the session's backup, idle policy
        /// and picture cap from it, not from the datagram.
        token: &'a [u8],
        /// The client's `Hello`'s codecs.
        codecs: CodecAsk,
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
        /// The last input sequence number the host delivered. Behind what
        /// the client had acknowledged, the host lost the session and
        /// opened it afresh: the client numbers what it still holds on
        /// from here.
        input_delivered: u32,
        /// The codec the pictures come in (agreed from the client's
        /// `Hello`).
        codec: Codec,
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
    /// Client → host: the client's picture area is this size now (its
    /// window's drawable area in physical pixels, rounded down to even
    /// numbers), sent once it settles after a resize. A host that can
    /// follow sizes its desktop to it; the new size arrives with the next
    /// keyframe.
    DisplaySize {
        /// Width in pixels (even, `2..=MAX_DIMENSION`).
        width: u16,
        /// Height in pixels (even).
        height: u16,
        /// The client display's refresh rate, frames a second.
        refresh: u8,
    },
    /// Host → client, about once a second while streaming: how long its
    /// last frames took on the host, for the client's latency receipt.
    HostTiming {
        /// Mean microseconds from the frame's moment to its picture being
        /// captured and converted.
        capture_us: u32,
        /// Mean microseconds encoding and sending it.
        encode_us: u32,
        /// Frames the means are over.
        frames: u16,
    },
    /// Host → client: where the desktop's monitors lie on its picture,
    /// sent when the stream starts and whenever they change. A host that
    /// never sends it shows one monitor, the whole picture.
    Monitors(Monitors),
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

pub(crate) mod ty {
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
    pub const DISPLAY_SIZE: u8 = 21;
    pub const HOST_TIMING: u8 = 22;
    pub const MONITORS: u8 = 23;
}

/// Largest pointer shape carried, in pixels each way (larger ones are cut).
pub const MAX_CURSOR: u16 = 64;

/// Bytes of a [`Message::CursorShape`] besides its pixels.
pub const CURSOR_SHAPE_HEADER_LEN: usize = 2 + 4 + 2 * 5 + 2;

/// Largest replicated session state.
pub const MAX_STATE: usize = 1100;

/// Largest clipboard text shared, in bytes.
pub const MAX_CLIPBOARD: usize = 1024;

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
                codecs,
            } => session::hello::put(out, (width, height, fps), token, client_session, codecs),
            Self::Attach {
                width,
                height,
                fps,
                policy,
                backup,
                client,
                token,
                codecs,
            } => session::attach::put(
                out,
                (*width, *height, *fps),
                policy,
                backup,
                client,
                token,
                codecs,
            ),
            Self::Detach => session::detach::put(out),
            Self::Activity(a) => session::activity::put(out, a),
            Self::Status { phase, ms } => session::status::put(out, phase, ms),
            Self::StateSync {
                input_seq,
                version,
                state,
            } => session::state_sync::put(out, input_seq, version, state),
            Self::Clipboard { text } => media::clipboard::put(out, text),
            Self::CursorShape {
                serial,
                width,
                height,
                hot_x,
                hot_y,
                first_row,
                rgba,
            } => {
                media::cursor_shape::put(out, serial, width, height, hot_x, hot_y, first_row, rgba)
            }
            Self::CursorPosition { x, y, visible } => {
                media::cursor_position::put(out, x, y, visible)
            }
            Self::Welcome {
                session_id,
                width,
                height,
                fps,
                host_time_us,
                input_delivered,
                codec,
            } => session::welcome::put(
                out,
                session_id,
                (width, height, fps),
                host_time_us,
                input_delivered,
                *codec,
            ),
            Self::Ping { stamp_us } => session::ping::put(out, stamp_us),
            Self::Pong { stamp_us, host_us } => session::pong::put(out, stamp_us, host_us),
            Self::Goodbye { reason } => session::goodbye::put(out, reason),
            Self::Input { seq, event } => events::input::put(out, seq, event),
            Self::InputAck { seq, host_us } => events::input_ack::put(out, seq, host_us),
            Self::Video(f) => media::video::put(out, f),
            Self::DisplaySize {
                width,
                height,
                refresh,
            } => session::display_size::put(out, width, height, refresh),
            Self::HostTiming {
                capture_us,
                encode_us,
                frames,
            } => session::host_timing::put(out, capture_us, encode_us, frames),
            Self::Monitors(list) => session::monitors::put(out, list),
            Self::KeyframeRequest { last_good_frame } => {
                media::keyframe_request::put(out, last_good_frame)
            }
            Self::ReceiverReport {
                loss_permille,
                queue_delay_ms,
                recv_kbps,
            } => media::receiver_report::put(out, loss_permille, queue_delay_ms, recv_kbps),
            Self::Rumble {
                pad,
                strong,
                weak,
                duration_ms,
            } => media::rumble::put(out, pad, strong, weak, duration_ms),
            Self::Audio {
                seq,
                capture_us,
                payload,
                previous,
            } => media::audio::put(out, seq, capture_us, payload, previous),
        }
    }

    /// Decodes exactly one message occupying all of `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::Version(version));
        }
        let msg = match r.u8()? {
            ty::HELLO => session::hello::get(&mut r)?,
            ty::ATTACH => session::attach::get(&mut r)?,
            ty::DETACH => session::detach::get(&mut r)?,
            ty::ACTIVITY => session::activity::get(&mut r)?,
            ty::STATUS => session::status::get(&mut r)?,
            ty::STATE_SYNC => session::state_sync::get(&mut r)?,
            ty::CLIPBOARD => media::clipboard::get(&mut r)?,
            ty::CURSOR_SHAPE => media::cursor_shape::get(&mut r)?,
            ty::CURSOR_POSITION => media::cursor_position::get(&mut r)?,
            ty::WELCOME => session::welcome::get(&mut r)?,
            ty::PING => session::ping::get(&mut r)?,
            ty::PONG => session::pong::get(&mut r)?,
            ty::GOODBYE => session::goodbye::get(&mut r)?,
            ty::INPUT => events::input::get(&mut r)?,
            ty::INPUT_ACK => events::input_ack::get(&mut r)?,
            ty::VIDEO => media::video::get(&mut r)?,
            ty::DISPLAY_SIZE => session::display_size::get(&mut r)?,
            ty::HOST_TIMING => session::host_timing::get(&mut r)?,
            ty::MONITORS => session::monitors::get(&mut r)?,
            ty::KEYFRAME_REQUEST => media::keyframe_request::get(&mut r)?,
            ty::RECEIVER_REPORT => media::receiver_report::get(&mut r)?,
            ty::RUMBLE => media::rumble::get(&mut r)?,
            ty::AUDIO => media::audio::get(&mut r)?,
            other => return Err(DecodeError::UnknownType(other)),
        };
        if !r.is_empty() {
            return Err(DecodeError::Trailing(r.remaining()));
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
