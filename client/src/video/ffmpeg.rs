//! FFmpeg's decoders (libavcodec: H.264, HEVC, AV1 through dav1d or
//! libaom), from the FFmpeg the platform layer loads at run time (see
//! `nephele_platform::ffmpeg` for why it is loaded, not linked).

use std::ffi::c_int;

pub use nephele_platform::ffmpeg::available;
use nephele_platform::ffmpeg::{
    AV_CODEC_FLAG_UNALIGNED, AV_PIX_FMT_YUV420P, AV_PIX_FMT_YUVJ420P, AVERROR_EAGAIN, AVERROR_EOF,
    Api, FrameHead, PacketHead, api,
};

use super::{Codec, Picture};

type Ptr = *mut std::ffi::c_void;

/// One libavcodec decoding context, single-threaded, fed one access unit
/// (AV1: temporal unit) per call.
pub struct AvDecoder {
    api: &'static Api,
    ctx: Ptr,
    packet: Ptr,
    frame: Ptr,
}

// SAFETY: a libavcodec context is not tied to the thread that made it; it is
// used by one thread at a time (`&mut self`).
unsafe impl Send for AvDecoder {}

impl std::fmt::Debug for AvDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvDecoder").finish_non_exhaustive()
    }
}

/// What one call gave.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Pictures produced.
    pub pictures: u64,
    /// The decoder refused the data or a picture was unusable.
    pub corrupt: bool,
}

impl AvDecoder {
    /// Opens a decoder of `codec`, or says why FFmpeg cannot be used.
    pub fn new(codec: Codec) -> Result<Self, String> {
        let api = api()?;
        // Software decoders by name (libavcodec's own "av1" decodes only
        // through a hardware accelerator): dav1d first, the fastest.
        let names: &[&std::ffi::CStr] = match codec {
            Codec::H264 => &[c"h264"],
            Codec::Hevc => &[c"hevc"],
            Codec::Av1 => &[c"libdav1d", c"libaom-av1"],
        };
        // SAFETY: the calls follow libavcodec's documented set-up sequence;
        // every pointer is checked before use and freed in `Drop`.
        unsafe {
            let Some(found) = names
                .iter()
                .map(|n| (api.find_decoder)(n.as_ptr()))
                .find(|p| !p.is_null())
            else {
                return Err(format!("this FFmpeg has no {} decoder", codec.name()));
            };
            let mut me = Self {
                api,
                ctx: (api.alloc_context)(found),
                packet: (api.packet_alloc)(),
                frame: (api.frame_alloc)(),
            };
            if me.ctx.is_null() || me.packet.is_null() || me.frame.is_null() {
                return Err("FFmpeg could not allocate a decoder".into());
            }
            // One thread: frame threading would add a frame of latency per
            // thread, and the decode thread already overlaps presentation.
            (api.opt_set_int)(me.ctx, c"threads".as_ptr(), 1, 0);
            // Frame cropping exactly as the stream says: otherwise
            // libavcodec keeps a left crop's planes aligned and hands out
            // wider pictures than the stream's (the converter takes any
            // alignment).
            (api.opt_set_int)(me.ctx, c"flags".as_ptr(), AV_CODEC_FLAG_UNALIGNED, 0);
            let rc = (api.open)(me.ctx, found, std::ptr::null_mut());
            if rc < 0 {
                me.ctx_free();
                return Err(format!("opening FFmpeg's decoder failed ({rc})"));
            }
            Ok(me)
        }
    }

    fn ctx_free(&mut self) {
        // SAFETY: `free_context` accepts a pointer to a context pointer
        // (null or live) and nulls it.
        unsafe { (self.api.free_context)(&mut self.ctx) };
    }

    /// Decodes one access unit (Annex B) and calls `out` with each picture
    /// it completes.
    pub fn decode(&mut self, au: &[u8], out: &mut dyn FnMut(Picture<'_>)) -> Outcome {
        let Ok(size) = c_int::try_from(au.len()) else {
            return Outcome {
                pictures: 0,
                corrupt: true,
            };
        };
        // SAFETY: the packet is ours; it borrows `au` only for the call
        // (without `buf`, libavcodec copies the data it keeps, with its
        // padding) and is emptied again before returning.
        let rc = unsafe {
            let head = self.packet.cast::<PacketHead>();
            (*head).data = au.as_ptr();
            (*head).size = size;
            let rc = (self.api.send_packet)(self.ctx, self.packet);
            (*head).data = std::ptr::null();
            (*head).size = 0;
            rc
        };
        let mut outcome = self.drain(out);
        outcome.corrupt |= rc < 0 && rc != AVERROR_EAGAIN;
        outcome
    }

    /// Signals the end of the stream and outputs the pictures still held;
    /// the decoder is then ready for a new stream.
    pub fn flush(&mut self, out: &mut dyn FnMut(Picture<'_>)) -> Outcome {
        // SAFETY: a null packet is libavcodec's end-of-stream signal.
        unsafe { (self.api.send_packet)(self.ctx, std::ptr::null()) };
        self.drain(out)
    }

    fn drain(&mut self, out: &mut dyn FnMut(Picture<'_>)) -> Outcome {
        let mut outcome = Outcome::default();
        loop {
            // SAFETY: context and frame are live; the frame is unreferenced
            // after each use.
            let rc = unsafe { (self.api.receive_frame)(self.ctx, self.frame) };
            if rc == AVERROR_EAGAIN || rc == AVERROR_EOF {
                break;
            }
            if rc < 0 {
                outcome.corrupt = true;
                break;
            }
            // SAFETY: a frame just received holds planes of `height` rows at
            // its strides (cropping only moves the plane pointers inside
            // the decoder's buffers).
            match unsafe { picture(&*self.frame.cast::<FrameHead>()) } {
                Some(p) => {
                    outcome.pictures += 1;
                    out(p);
                }
                None => outcome.corrupt = true,
            }
            // SAFETY: the frame is live; `out` has returned, so nothing
            // borrows its planes.
            unsafe { (self.api.frame_unref)(self.frame) };
        }
        outcome
    }
}

/// # Safety
/// `f` must be a decoded video frame owned by libavcodec.
unsafe fn picture(f: &FrameHead) -> Option<Picture<'_>> {
    if f.format != AV_PIX_FMT_YUV420P && f.format != AV_PIX_FMT_YUVJ420P {
        return None;
    }
    let width = usize::try_from(f.width).ok()?;
    let height = usize::try_from(f.height).ok()?;
    let y_stride = usize::try_from(f.linesize[0]).ok()?;
    let uv_stride = usize::try_from(f.linesize[1]).ok()?;
    if f.linesize[2] != f.linesize[1] || f.data[..3].iter().any(|p| p.is_null()) {
        return None;
    }
    let ch = height.div_ceil(2);
    // SAFETY: per the caller, each plane holds its rows at its stride.
    unsafe {
        Some(Picture {
            width,
            height,
            y: std::slice::from_raw_parts(f.data[0], y_stride * height),
            y_stride,
            u: std::slice::from_raw_parts(f.data[1], uv_stride * ch),
            v: std::slice::from_raw_parts(f.data[2], uv_stride * ch),
            uv_stride,
        })
    }
}

impl Drop for AvDecoder {
    fn drop(&mut self) {
        // SAFETY: each free function takes a pointer to the pointer it
        // frees (null is allowed) and nulls it.
        unsafe {
            (self.api.frame_free)(&mut self.frame);
            (self.api.packet_free)(&mut self.packet);
        }
        self.ctx_free();
    }
}
