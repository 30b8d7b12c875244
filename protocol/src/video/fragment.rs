//! Cutting an access unit into datagram-sized fragments with Reed–Solomon
//! parity.

use reed_solomon_simd::ReedSolomonEncoder;

use crate::wire::{FRAG_FLAG_KEYFRAME, MAX_PARITY, Message, VIDEO_HEADER_LEN, VideoFragment};

/// Cuts access units into encoded video datagrams.
pub struct Fragmenter {
    payload_size: usize,
    next_frame_id: u32,
    buf: Vec<u8>,
    // The last data shard padded to full size, for the parity encoder.
    padded: Vec<u8>,
    encoder: Option<ReedSolomonEncoder>,
}

impl std::fmt::Debug for Fragmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragmenter")
            .field("payload_size", &self.payload_size)
            .field("next_frame_id", &self.next_frame_id)
            .finish()
    }
}

impl Fragmenter {
    /// A fragmenter producing messages of at most `max_message` bytes
    /// (header included). Values below 64 are raised to 64.
    pub fn new(max_message: usize) -> Self {
        let max_message = max_message.max(64);
        Self {
            // Even, as parity shards must be.
            payload_size: (max_message - VIDEO_HEADER_LEN) & !1,
            next_frame_id: 0,
            buf: Vec::with_capacity(max_message),
            padded: Vec::with_capacity(max_message),
            encoder: None,
        }
    }

    /// Payload bytes per fragment.
    pub fn payload_size(&self) -> usize {
        self.payload_size
    }

    /// Frame id the next call to [`Fragmenter::fragment`] will use.
    pub fn next_frame_id(&self) -> u32 {
        self.next_frame_id
    }

    /// Continues a stream another fragmenter began (an encoder restarted
    /// after a suspension): the next frame gets id `id`.
    pub fn continue_at(&mut self, id: u32) {
        self.next_frame_id = id;
    }

    /// Fragments one access unit, calling `emit` with each encoded message:
    /// the data fragments, then as many parity fragments as a path losing
    /// `fec_loss` (0.0–1.0) of datagrams needs ([`parity_for`]; none at 0).
    /// Returns the frame id used. An empty access unit produces nothing and
    /// consumes no id.
    pub fn fragment(
        &mut self,
        au: &[u8],
        keyframe: bool,
        capture_us: u64,
        fec_loss: f64,
        emit: impl FnMut(&[u8]),
    ) -> Option<u32> {
        let count = u16::try_from(au.len().div_ceil(self.payload_size)).ok()?;
        let parity = parity_for(count, fec_loss);
        self.fragment_with_parity(au, keyframe, capture_us, parity, emit)
    }

    /// [`Fragmenter::fragment`] with an exact number of parity fragments (at
    /// most [`MAX_PARITY`]).
    pub(super) fn fragment_with_parity(
        &mut self,
        au: &[u8],
        keyframe: bool,
        capture_us: u64,
        parity: u16,
        mut emit: impl FnMut(&[u8]),
    ) -> Option<u32> {
        if au.is_empty() {
            return None;
        }
        let frame_len = u32::try_from(au.len()).ok()?;
        let count = u16::try_from(au.len().div_ceil(self.payload_size)).ok()?;
        let parity = parity.min(MAX_PARITY);
        // Parity fragments are full-size even for a small frame: a transport
        // may pack several small datagrams into one packet, and one lost
        // packet would then take a frame's data and its parity together.
        // Without parity, a lone fragment is just the frame.
        let shard = if count == 1 && parity == 0 {
            au.len()
        } else {
            self.payload_size
        };
        let frame_id = self.next_frame_id;
        self.next_frame_id = self.next_frame_id.wrapping_add(1);
        let flags = if keyframe { FRAG_FLAG_KEYFRAME } else { 0 };
        let mut header = VideoFragment {
            frame_id,
            index: 0,
            count,
            parity,
            flags,
            capture_us,
            shard: shard as u16,
            frame_len,
            payload: &[],
        };
        for (index, chunk) in au.chunks(shard).enumerate() {
            self.buf.clear();
            header.index = index as u16;
            Message::Video(VideoFragment {
                payload: chunk,
                ..header.clone()
            })
            .encode(&mut self.buf);
            emit(&self.buf);
        }
        if parity > 0 {
            self.emit_parity(au, &header, shard, &mut emit);
        }
        Some(frame_id)
    }

    fn emit_parity(
        &mut self,
        au: &[u8],
        header: &VideoFragment<'_>,
        shard: usize,
        emit: &mut impl FnMut(&[u8]),
    ) {
        let (count, parity) = (usize::from(header.count), usize::from(header.parity));
        let encoder = match &mut self.encoder {
            Some(e) => e.reset(count, parity, shard).map(|()| e),
            slot @ None => {
                ReedSolomonEncoder::new(count, parity, shard).map(|e| &mut *slot.insert(e))
            }
        };
        let Ok(encoder) = encoder else {
            return;
        };
        for chunk in au.chunks(shard) {
            let added = if chunk.len() == shard {
                encoder.add_original_shard(chunk)
            } else {
                self.padded.clear();
                self.padded.extend_from_slice(chunk);
                self.padded.resize(shard, 0);
                encoder.add_original_shard(&self.padded)
            };
            if added.is_err() {
                return;
            }
        }
        let Ok(result) = encoder.encode() else {
            return;
        };
        for (j, recovery) in result.recovery_iter().enumerate() {
            self.buf.clear();
            Message::Video(VideoFragment {
                index: header.count + j as u16,
                payload: recovery,
                ..header.clone()
            })
            .encode(&mut self.buf);
            emit(&self.buf);
        }
    }
}

/// Parity fragments for a frame of `count` data fragments on a path losing
/// `loss` (0.0–1.0) of datagrams: the expected losses plus four standard
/// deviations, plus one, so a frame survives all but rare bursts. No loss,
/// no parity.
pub fn parity_for(count: u16, loss: f64) -> u16 {
    // Also catches NaN.
    if loss.is_nan() || loss <= 0.0 {
        return 0;
    }
    let loss = loss.min(0.5);
    let n = f64::from(count);
    let expected = n * loss;
    let spread = 4.0 * (n * loss * (1.0 - loss)).sqrt();
    ((expected + spread).ceil() as u16 + 1).min(MAX_PARITY)
}
