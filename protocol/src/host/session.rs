//! One session as the host's logic sees it: where it goes, its input, its
//! idle tracker and rate controller, its replication and its timers.

use std::net::SocketAddr;
use std::time::Instant;

use super::{DETACHED_AFTER, NEVER_STREAMED, SESSION_RETAIN, SYNC_INTERVAL};
use crate::activity::{IdlePolicy, IdleTracker};
use crate::input::InputReceiver;
use crate::rate::RateController;

#[derive(Debug)]
pub(super) struct Session {
    /// The gateway the session is attached through.
    pub gateway: SocketAddr,
    /// The client holding it (its own id for the session).
    pub client: u64,
    /// The directory's grant the holder attached with (see
    /// [`super::Grant::grant`]).
    pub grant: u32,
    /// Its cap, pixels a second.
    pub max_pixel_rate: u64,
    pub width: u16,
    pub height: u16,
    pub fps: u8,
    /// The codec agreed with the client.
    pub codec: crate::codec::Codec,
    pub input: InputReceiver,
    pub last_heard: Instant,
    /// No gateway now: held input released, nothing sent.
    pub detached: bool,
    pub idle: IdleTracker,
    pub rate: RateController,
    /// The driver's count of video bytes sent, and the count and time at
    /// the last receiver report.
    pub video_sent: u64,
    pub sent_at_report: (Instant, u64),
    /// Where the session's state is replicated, and how far.
    pub backup: Option<SocketAddr>,
    pub sync_version: u32,
    pub last_sync: Instant,
    /// Input applied and waiting for the replication before its ack.
    pub ack_after_sync: bool,
    /// The media runs (not suspended).
    pub media_running: bool,
    /// The media sleeps (paused or detached).
    pub asleep: bool,
    /// When a resume from suspension began, to learn how long one takes.
    pub resuming_since: Option<Instant>,
    /// When the session opened here.
    pub opened: Instant,
    /// A client was heard (input, activity or a receiver report), not only
    /// its gateway.
    pub streamed: bool,
}

impl Session {
    pub fn new(
        gateway: SocketAddr,
        (width, height, fps): (u16, u16, u8),
        policy: IdlePolicy,
        rate: RateController,
        now: Instant,
    ) -> Self {
        Self {
            gateway,
            client: 0,
            grant: 0,
            max_pixel_rate: u64::MAX,
            width,
            height,
            fps,
            codec: crate::codec::Codec::H264,
            input: InputReceiver::new(),
            last_heard: now,
            detached: false,
            idle: IdleTracker::new(policy, now),
            rate,
            video_sent: 0,
            sent_at_report: (now, 0),
            backup: None,
            sync_version: 0,
            last_sync: now,
            ack_after_sync: false,
            media_running: true,
            asleep: false,
            resuming_since: None,
            opened: now,
            streamed: false,
        }
    }

    /// The session's next timer: detaching or ending on silence, the idle
    /// policy's next step, the next replication.
    pub fn next_timer(&self) -> Option<Instant> {
        let silence = if self.detached {
            self.last_heard + SESSION_RETAIN
        } else {
            self.last_heard + DETACHED_AFTER
        };
        let sync = self.backup.map(|_| self.last_sync + SYNC_INTERVAL);
        let unheard = (!self.streamed).then_some(self.opened + NEVER_STREAMED);
        [Some(silence), self.idle.poll_at(), sync, unheard]
            .into_iter()
            .flatten()
            .min()
    }

    /// The codec agreed with a client that attached: whether the running
    /// media must start again in it (a client that decodes other codecs
    /// than the one before).
    pub fn switch_codec(&mut self, codec: crate::codec::Codec) -> bool {
        if codec == self.codec {
            return false;
        }
        tracing::info!(from = %self.codec, to = %codec, "the codec changes with the client");
        self.codec = codec;
        self.media_running
    }
}
