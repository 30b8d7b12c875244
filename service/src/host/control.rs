//! The control block a session's media threads share with the receive
//! thread: it sets what the session core decides (sleep, keyframe,
//! announce, rate, where to send) and reads what they sent.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// `loss_permille` before the client's first report.
pub(crate) const NO_REPORT: u32 = u32::MAX;

/// What the receive thread and a session's media threads share.
#[derive(Debug)]
pub(crate) struct MediaControl {
    /// The next picture is to be a keyframe.
    pub keyframe: AtomicBool,
    /// Nothing is captured or sent (paused, or no gateway).
    pub paused: AtomicBool,
    /// Tell the client it streams again, just before the next picture.
    pub announce: AtomicBool,
    /// Congestion control's target for video and parity together.
    pub target_bps: AtomicU32,
    /// The client's latest loss report, per thousand ([`NO_REPORT`] before one).
    pub loss_permille: AtomicU32,
    /// Video bytes sent, as the client counts what arrives.
    pub sent_bytes: AtomicU64,
    /// The next frame's id, kept across encoder restarts so the client's
    /// reassembler sees one stream.
    pub next_frame_id: AtomicU32,
    /// Where the session's gateway is now.
    pub gateway: Mutex<SocketAddr>,
    /// The picture size a drawn desktop is to have (width in the high
    /// half, height in the low), or 0 for the size it started with.
    pub size: AtomicU32,
}

impl MediaControl {
    pub fn new(gateway: SocketAddr, target_bps: u32) -> Self {
        Self {
            keyframe: AtomicBool::new(true),
            paused: AtomicBool::new(false),
            announce: AtomicBool::new(false),
            target_bps: AtomicU32::new(target_bps),
            loss_permille: AtomicU32::new(NO_REPORT),
            sent_bytes: AtomicU64::new(0),
            next_frame_id: AtomicU32::new(0),
            gateway: Mutex::new(gateway),
            size: AtomicU32::new(0),
        }
    }

    /// Asks a drawn desktop's encoder for pictures of `size`.
    pub fn ask_size(&self, (w, h): (u16, u16)) {
        self.size
            .store((u32::from(w) << 16) | u32::from(h), Ordering::Relaxed);
    }

    /// The size [`Self::ask_size`] asked for, if it did.
    pub fn asked_size(&self) -> Option<(u16, u16)> {
        match self.size.load(Ordering::Relaxed) {
            0 => None,
            v => Some(((v >> 16) as u16, v as u16)),
        }
    }

    /// The session's gateway now.
    pub fn gateway(&self) -> SocketAddr {
        self.gateway
            .lock()
            .map(|g| *g)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The loss reported, if any, per thousand.
    pub fn loss(&self) -> Option<u16> {
        match self.loss_permille.load(Ordering::Relaxed) {
            NO_REPORT => None,
            p => Some(p.min(1000) as u16),
        }
    }
}
