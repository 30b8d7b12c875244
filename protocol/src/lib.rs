//! The sans-IO wire protocol shared by Nephele's client, gateway and host.
//!
//! Nothing in this crate opens a socket, starts a thread or reads a clock:
//! callers hand in bytes and an [`std::time::Instant`], and get back messages,
//! datagrams to send and deadlines. That keeps every behaviour testable with a
//! simulated link and a virtual clock.
//!
//! Data flow:
//!
//! * [`wire`] encodes and decodes the versioned binary [`wire::Message`]s.
//!   Datagrams between a gateway and a host carry a session id in an
//!   [`wire::Envelope`]; streams between client and gateway carry
//!   length-prefixed messages, cut apart by [`framing::FrameReader`].
//! * [`video`] splits an encoded access unit into datagram-sized fragments and
//!   reassembles them on the client with bounded buffers and a deadline per
//!   frame.
//! * [`input`] gives every input event a sequence number, coalesces pointer
//!   motion, retransmits until acknowledged and delivers exactly once, in
//!   order, at the host.
//! * [`impair`] models what a network does to datagrams (delay, jitter,
//!   random and burst loss, bandwidth cap, blackouts); [`sim`] is a simulated
//!   link built on it, on a virtual clock, for deterministic tests of the above.
//! * [`probe`] is the stateless UDP latency probe and the client's PoP
//!   choice: measurement, ranking and hysteresis.
//! * [`rate`] is congestion control: the client's queueing-delay and clock
//!   estimates, the host's target bitrate from the client's reports.
//! * [`audio`] is the receiving end of a sound stream: a jitter buffer with
//!   loss repair and concealment, and drift-following playout.
//! * [`activity`] is the idle state machine: the client's activity
//!   reports, the directory's idle policy, and the phases (warned, paused,
//!   suspended) a host moves a session through.
//! * [`codec`] names the video codecs and how client and host agree on one.
//! * [`hid`] names keys by USB HID usage (physical position), so the remote
//!   keyboard layout decides the character.
//!
//! On these parts stand the three session cores, one per role, each a
//! state machine its IO loop drives (`handle_*` with bytes and an
//! `Instant`, `poll_*` for transmits, timers and events), as quinn-proto
//! is to quinn:
//!
//! * [`client`]: a client's paths to its gateways, video, reports, pings
//!   and activity; [`client::reconnect`] picks the gateway to try next;
//! * [`gateway`]: one client connection at a gateway, relayed to its host,
//!   with failover to the backup host;
//! * [`host`]: every session of a desktop host: attach, input exactly
//!   once, replication, idle phases, congestion control, takeover.
//!
//! [`outq`] is the transmit queue they share.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[macro_use]
mod codes;

pub mod activity;
pub mod audio;
pub mod bucket;
pub mod client;
pub mod codec;
pub mod cursor;
pub mod framing;
pub mod gateway;
pub mod hid;
pub mod host;
pub mod impair;
pub mod input;
pub mod monitors;
pub mod outq;
pub mod pad;
pub mod probe;
pub mod rate;
pub mod sim;
pub mod video;
pub mod wire;

pub use wire::{DecodeError, Envelope, InputEvent, Message};

/// Version of the wire format carried in every message header.
pub const PROTOCOL_VERSION: u8 = 5;

/// ALPN protocol name negotiated on the QUIC connection between client and gateway.
pub const ALPN: &[u8] = b"nephele/1";

/// Largest UDP payload any Nephele datagram may have. Fragments are sized so a
/// relayed fragment still fits a QUIC datagram on a 1280-byte path MTU.
pub const MAX_DATAGRAM: usize = 1200;

/// Largest message on a stream lane (control, input, recovery).
pub const MAX_STREAM_MESSAGE: usize = 16 * 1024;

/// Largest picture dimension accepted anywhere in the protocol.
pub const MAX_DIMENSION: u16 = 8192;
