//! The decode thread: complete frames from a bounded queue into the
//! decoder, each picture to the sink with its capture time on the
//! client's clock; a corrupt frame asks the network thread for a keyframe.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Instant;

use nephele_protocol::video::CompleteFrame;
use tokio::sync::{Notify, watch};

use super::{FrameMeta, FrameSink};
use crate::stats::Stats;
use crate::status::HostClock;
use crate::video::{DecoderChoice, VideoDecoder};

/// What the decode thread runs with.
pub(super) struct Decode {
    pub decoder: VideoDecoder,
    /// The user's choice of decoder, for the codec the host agrees to.
    pub choice: DecoderChoice,
    pub frames: Receiver<CompleteFrame>,
    pub recycle: SyncSender<Vec<u8>>,
    pub sink: Box<dyn FrameSink>,
    pub stats: Arc<Stats>,
    pub clock: watch::Receiver<Option<HostClock>>,
    pub want_keyframe: Arc<AtomicBool>,
    pub wake: Arc<Notify>,
    pub saver: Option<std::io::BufWriter<std::fs::File>>,
}

impl Decode {
    /// Starts `nephele-decode`.
    pub fn start(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("nephele-decode".into())
            .spawn(move || {
                // Bulk work, though the window's thread may have started it.
                nephele_platform::sched::ordinary();
                self.run();
            })
    }

    fn run(mut self) {
        while let Ok(frame) = self.frames.recv() {
            if let Some(w) = self.saver.as_mut()
                && let Err(e) = std::io::Write::write_all(w, &frame.data)
            {
                tracing::warn!(error = %e, "saving the stream failed; no longer saving");
                self.saver = None;
            }
            self.follow_codec();
            let clock = *self.clock.borrow();
            let meta = FrameMeta {
                frame_id: frame.frame_id,
                completed_at: frame.completed_at,
                capture_us: frame.capture_us,
                captured_us: clock.map(|c| c.to_local_us(frame.capture_us)),
            };
            let t0 = Instant::now();
            let mut got = false;
            let (stats, sink) = (&self.stats, &mut self.sink);
            let corrupt = self.decoder.decode(&frame.data, |pic| {
                stats.decode.record(t0.elapsed());
                stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
                stats.picture(pic.width, pic.height);
                got = true;
                sink.present(&pic, meta);
            });
            if corrupt {
                self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                self.want_keyframe.store(true, Ordering::Release);
                self.wake.notify_one();
            }
            if !got {
                tracing::trace!(frame = frame.frame_id, "frame produced no picture");
            }
            let _ = self.recycle.try_send(frame.data);
        }
    }

    /// A decoder for the codec the host agreed to, when that changed (the
    /// first welcome, or a client of other codecs before this one).
    fn follow_codec(&mut self) {
        let codec = self.stats.codec();
        if codec == self.decoder.codec() {
            return;
        }
        match VideoDecoder::for_codec(codec, self.choice) {
            Ok(d) => {
                tracing::info!(%codec, decoder = d.backend().name(), "decoding a new codec");
                self.decoder = d;
            }
            // Only codecs a decoder opened for were offered; the frames
            // count as errors until a codec this client decodes comes.
            Err(e) => {
                tracing::error!(%codec, error = %e, "no decoder for the codec the host chose")
            }
        }
    }
}
