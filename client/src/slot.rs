//! The latest decoded picture, between the decode thread and whoever
//! presents it: the decoder copies each picture in ([`SlotSink`]) and
//! wakes the presenter; the presenter trades buffers with the slot
//! ([`Slot::take`]) and converts at its own pace. A picture the presenter
//! had not taken before the next one arrived is dropped and counted, so
//! the window and the headless presenter drop and count alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::session::{FrameMeta, FrameSink};
use crate::stats::Stats;
use crate::video::Picture;

/// A picture, tightly packed I420.
#[derive(Debug, Default)]
pub struct Slot {
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    /// Its size.
    pub width: usize,
    /// See `width`.
    pub height: usize,
    meta: Option<FrameMeta>,
    fresh: bool,
}

impl Slot {
    /// The picture held.
    pub fn picture(&self) -> Picture<'_> {
        Picture {
            width: self.width,
            height: self.height,
            y: &self.y,
            y_stride: self.width,
            u: &self.u,
            v: &self.v,
            uv_stride: self.width.div_ceil(2),
        }
    }

    /// Trades buffers with `into` when a picture not yet taken waits;
    /// its facts when one did.
    pub fn take(&mut self, into: &mut Slot) -> Option<FrameMeta> {
        if !self.fresh {
            return None;
        }
        self.fresh = false;
        std::mem::swap(&mut into.y, &mut self.y);
        std::mem::swap(&mut into.u, &mut self.u);
        std::mem::swap(&mut into.v, &mut self.v);
        (into.width, into.height) = (self.width, self.height);
        into.meta = self.meta;
        self.meta
    }
}

/// Copies a plane tightly packed; reuses `dst`'s allocation.
fn copy_plane(dst: &mut Vec<u8>, src: &[u8], stride: usize, w: usize, h: usize) {
    dst.resize(w * h, 0);
    for r in 0..h {
        if let Some(row) = src.get(r * stride..r * stride + w) {
            dst[r * w..(r + 1) * w].copy_from_slice(row);
        }
    }
}

/// The decoder's side of a [`Slot`].
pub struct SlotSink {
    slot: Arc<Mutex<Slot>>,
    stats: Arc<Stats>,
    /// Set while a wake-up is on its way, so a busy presenter gets one.
    pending: Arc<AtomicBool>,
    wake: Box<dyn Fn() + Send>,
}

impl SlotSink {
    /// A sink into `slot`, calling `wake` when a picture arrives and no
    /// wake-up is pending (the presenter clears `pending` when it wakes).
    pub fn new(
        slot: Arc<Mutex<Slot>>,
        stats: Arc<Stats>,
        pending: Arc<AtomicBool>,
        wake: Box<dyn Fn() + Send>,
    ) -> Self {
        Self {
            slot,
            stats,
            pending,
            wake,
        }
    }
}

impl FrameSink for SlotSink {
    fn present(&mut self, pic: &Picture<'_>, meta: FrameMeta) {
        {
            let Ok(mut s) = self.slot.lock() else { return };
            let (cw, ch) = pic.chroma_size();
            copy_plane(&mut s.y, pic.y, pic.y_stride, pic.width, pic.height);
            copy_plane(&mut s.u, pic.u, pic.uv_stride, cw, ch);
            copy_plane(&mut s.v, pic.v, pic.uv_stride, cw, ch);
            s.width = pic.width;
            s.height = pic.height;
            if s.fresh {
                // The presenter had not shown the previous picture yet.
                self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
            s.fresh = true;
            s.meta = Some(meta);
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            (self.wake)();
        }
    }
}
