//! What the host core tells its driver and hears back: the events it asks
//! the driver to carry out, the driver's answer to an `Open`, what passes
//! through to the media, and the counters.

use std::net::SocketAddr;

use crate::activity::IdlePolicy;
use crate::codec::Codec;
use crate::wire::{GoodbyeReason, InputEvent};

/// What the directory granted a session, as the driver read it from an
/// `Attach`'s token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grant {
    /// The host the session's state is replicated to (none when this host
    /// is itself the session's backup, taking it over).
    pub backup: Option<SocketAddr>,
    /// The session's idle policy; `None`: the one the gateway sent.
    pub policy: Option<IdlePolicy>,
    /// Most picture pixels a second for this session, besides the host's
    /// own cap.
    pub max_pixel_rate: Option<u64>,
    /// How many times the directory had handed the session out when it
    /// granted this attach: a later grant takes the session from a client
    /// still holding an earlier one.
    pub grant: u32,
}

/// The driver's check of an `Attach` (its token's signature is the
/// service's business): whether it may attach `session` here, and what the
/// directory granted it. `known`: this host holds the session or the state
/// its primary replicated here, so a token past its expiry (a long session
/// failing over) still names it; a new session needs a fresh one.
pub trait Admission: Send {
    /// The grant, or why not, in words for the log.
    fn admit(&self, session: u64, token: &[u8], known: bool) -> Result<Grant, String>;
}

impl std::fmt::Debug for dyn Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission")
    }
}

/// A state replicated here by a failed primary, handed to the driver to
/// take the session over from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// Input applied up to and including this sequence number.
    pub input_seq: u32,
    /// The desktop's state, as the primary's driver wrote it.
    pub state: Vec<u8>,
}

/// What the driver decided about a session [`HostEvent::Open`] asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    /// The picture it streams (an X display streams its own size,
    /// whatever the client asked).
    pub width: u16,
    /// See `width`.
    pub height: u16,
    /// The desktop keeps itself active (a film playing).
    pub keep_active: bool,
    /// The [`Restore`] offered was used (the state parsed).
    pub restored: bool,
}

/// What the driver is to do; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A gateway asks for a session this host does not have: make its
    /// desktop (from `restore` when taking it over) and answer with
    /// [`HostCore::accept`] or [`HostCore::refuse`].
    Open {
        /// The session.
        session: u64,
        /// The picture the client asked for.
        width: u16,
        /// See `width`.
        height: u16,
        /// Frames a second asked for.
        fps: u8,
        /// The state a failed primary replicated here, if any.
        restore: Option<Restore>,
    },
    /// The session's media goes to this gateway now.
    Route {
        /// The session.
        session: u64,
        /// Its gateway.
        gateway: SocketAddr,
    },
    /// Apply this input to the session's desktop (in order, once each).
    Input {
        /// The session.
        session: u64,
        /// Its sequence number.
        seq: u32,
        /// The event.
        event: InputEvent,
    },
    /// Send the session's state to its backup now: answer with
    /// [`HostCore::replicate`] (input is acknowledged after it).
    Replicate {
        /// The session.
        session: u64,
    },
    /// The client's picture area changed size: size the desktop to it
    /// where it can follow (within the session's pixel-rate cap).
    Resize {
        /// The session.
        session: u64,
        /// The size asked for, capped.
        width: u16,
        /// See `width`.
        height: u16,
    },
    /// The next picture is to be a keyframe.
    Keyframe {
        /// The session.
        session: u64,
    },
    /// Release every key and button held on the session's desktop.
    Release {
        /// The session.
        session: u64,
    },
    /// Start the session's media (encoder and sound), or start it again
    /// in another codec (a client that decodes other codecs took the
    /// session over).
    MediaStart {
        /// The session.
        session: u64,
        /// The codec agreed with its client.
        codec: Codec,
    },
    /// Put the session's media to sleep (`true`: nothing captured or
    /// sent) or wake it (`false`).
    MediaSleep {
        /// The session.
        session: u64,
        /// Asleep or awake.
        asleep: bool,
    },
    /// Stop the session's media, releasing the encoder (suspended or ended).
    MediaStop {
        /// The session.
        session: u64,
    },
    /// Tell the client it streams again just before the next picture
    /// (a resume), then report [`HostCore::resumed`].
    Announce {
        /// The session.
        session: u64,
    },
    /// Encode at this target (video and parity together), with parity
    /// for this loss (`None` before the client's first report).
    Rate {
        /// The session.
        session: u64,
        /// Bits a second.
        target_bps: u32,
        /// The client's loss report, per thousand.
        loss_permille: Option<u16>,
    },
    /// The session ended; its desktop can go.
    Ended {
        /// The session.
        session: u64,
        /// Why.
        reason: GoodbyeReason,
    },
}

/// A message the core does not handle itself, borrowed from the datagram:
/// the driver passes it to the session's media or desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passed<'a> {
    /// Microphone sound for the session.
    Audio {
        /// The session.
        session: u64,
        /// Sequence number.
        seq: u32,
        /// The client's capture stamp.
        capture_us: u64,
        /// The Opus packet.
        payload: &'a [u8],
        /// A copy of the packet before.
        previous: &'a [u8],
    },
    /// The client's clipboard text (UTF-8 unchecked).
    Clipboard {
        /// The session.
        session: u64,
        /// The text's bytes.
        text: &'a [u8],
    },
}

/// What the host counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounters {
    /// Sessions opened (taken over included).
    pub sessions_opened: u64,
    /// Sessions re-attached through a different gateway.
    pub reattached: u64,
    /// Sessions taken over from a failed primary's replicated state.
    pub takeovers: u64,
    /// Input events delivered to desktops.
    pub inputs_applied: u64,
    /// Datagrams that did not decode.
    pub bad_datagrams: u64,
    /// Times congestion control cut a session's rate.
    pub rate_decreases: u64,
    /// Pauses, suspensions and resumptions.
    pub pauses: u64,
    /// See `pauses`.
    pub suspends: u64,
    /// See `pauses`.
    pub resumes: u64,
    /// Attaches refused by the admission check (no token, a forged or
    /// expired one, one for another session or other hosts).
    pub attaches_refused: u64,
}
