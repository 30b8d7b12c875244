//! What a session is doing, for whoever shows or uses it: watch channels
//! the network thread writes and the window, the decoder and the speaker
//! read, each at its own pace. (Counters and distributions are
//! [`crate::stats::Stats`]'; these are states.)
//!
//! * [`Status`]: the route (gateway and PoP), the host's idle phase, a
//!   reconnect under way, when the gateway was last heard;
//! * [`RemoteCursor`]: the pointer's shape and position, as the host
//!   reports them beside the video;
//! * [`HostClock`]: the host's clock mapped onto the client's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nephele_protocol::activity::Phase;
use nephele_protocol::cursor::Shape;
use nephele_protocol::monitors::Monitors;
use serde::Serialize;
use tokio::sync::watch;

/// The gateway a session goes through.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Gateway identifier (its address when connected directly).
    pub gateway_id: String,
    /// Point of presence.
    pub pop: String,
}

/// The session's state.
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// Which gateway carries it.
    pub route: Route,
    /// The phase the host last told.
    pub phase: Phase,
    /// With the phase: milliseconds to the pause (warning) or the
    /// expected wait (resuming).
    pub phase_ms: u32,
    /// When the phase was told.
    pub phase_at: Option<Instant>,
    /// The connection to the gateway is lost and being restored.
    pub reconnecting: bool,
    /// When anything last arrived from the gateway.
    pub heard_at: Option<Instant>,
}

impl Status {
    /// How long nothing has arrived from the gateway (zero before anything did).
    pub fn silence(&self) -> Duration {
        self.heard_at.map(|t| t.elapsed()).unwrap_or_default()
    }
}

/// The remote pointer.
#[derive(Debug, Default, Clone)]
pub struct RemoteCursor {
    /// Whole shapes received so far (a new count is a new shape to wear).
    pub shapes: u64,
    /// The newest whole shape.
    pub shape: Option<Arc<Shape>>,
    /// Where it is, and whether it shows.
    pub position: Option<(u16, u16, bool)>,
}

/// The host's clock on the client's ([`crate::clock::local_us`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostClock {
    /// Host µs − this is client µs.
    pub offset_us: i64,
    /// How far off that may be: half the round trip it rests on.
    pub uncertainty: Duration,
}

impl HostClock {
    /// A host stamp on the client's clock.
    pub fn to_local_us(&self, host_us: u64) -> i64 {
        (host_us as i64).saturating_sub(self.offset_us)
    }
}

/// The watch channels of a session (or of a window's sessions, one after
/// another): written by the network thread, read by anyone.
#[derive(Debug)]
pub struct Observed {
    /// See [`Status`].
    pub status: watch::Sender<Status>,
    /// See [`RemoteCursor`].
    pub cursor: watch::Sender<RemoteCursor>,
    /// See [`HostClock`]; `None` until the first ping exchange.
    pub clock: watch::Sender<Option<HostClock>>,
    /// Where the desktop's monitors lie on its picture (none until the
    /// host tells: one monitor, the whole picture).
    pub monitors: watch::Sender<Monitors>,
}

impl Default for Observed {
    fn default() -> Self {
        Self {
            status: watch::Sender::new(Status::default()),
            cursor: watch::Sender::new(RemoteCursor::default()),
            clock: watch::Sender::new(None),
            monitors: watch::Sender::new(Monitors::default()),
        }
    }
}

impl Observed {
    /// The status now (a copy).
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// The remote pointer now (a copy; the shape is shared).
    pub fn cursor(&self) -> RemoteCursor {
        self.cursor.borrow().clone()
    }

    /// The clock map now.
    pub fn clock(&self) -> Option<HostClock> {
        *self.clock.borrow()
    }
}
