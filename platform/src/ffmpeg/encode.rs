//! FFmpeg's software encoders (libx265 for HEVC, libaom for AV1), set up
//! for live streaming: no B-frames, no look-ahead, keyframes when asked
//! for and parameter sets in every keyframe, one packet out per picture in.

use std::ffi::{CStr, CString, c_int, c_void};

use nephele_protocol::codec::Codec;

use super::{AV_PIX_FMT_YUV420P, AVERROR_EAGAIN, AVERROR_EOF, Api, FrameHead, PacketHead, Ptr};

/// `AV_OPT_SEARCH_CHILDREN`: an option may be the encoder's own.
const SEARCH_CHILDREN: c_int = 1;
/// `AV_PICTURE_TYPE_I`.
const PICTURE_TYPE_I: c_int = 1;
/// `AV_PKT_FLAG_KEY`.
const PKT_FLAG_KEY: c_int = 1;

/// Why an encoder could not be had or failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// No FFmpeg here, or it lacks an encoder for the codec.
    #[error("no {codec} encoder: {why}")]
    Unavailable {
        /// The codec asked for.
        codec: Codec,
        /// Why.
        why: String,
    },
    /// FFmpeg refused a call.
    #[error("FFmpeg's {encoder} failed at {step} ({rc})")]
    Failed {
        /// The encoder's name.
        encoder: &'static str,
        /// What it was doing.
        step: &'static str,
        /// FFmpeg's error number.
        rc: c_int,
    },
}

/// What an encoder is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSpec {
    /// The codec.
    pub codec: Codec,
    /// Picture width (even).
    pub width: u16,
    /// Picture height (even).
    pub height: u16,
    /// Frames a second.
    pub fps: u8,
    /// Bits a second.
    pub bitrate: u32,
}

/// One I420 picture to encode: full-size luma, half-size chroma, rows at
/// the strides given.
#[derive(Debug, Clone, Copy)]
pub struct Planes<'a> {
    /// Luma.
    pub y: &'a [u8],
    /// Blue difference.
    pub u: &'a [u8],
    /// Red difference.
    pub v: &'a [u8],
    /// Bytes from one luma row to the next.
    pub y_stride: usize,
    /// Bytes from one chroma row to the next.
    pub uv_stride: usize,
}

/// An encoder's settings for live streaming: `(option, value)`, set by name.
type Settings = &'static [(&'static CStr, &'static CStr)];

/// FFmpeg's software encoder for a codec, with its settings; none for
/// H.264, which openh264 makes.
fn encoder(codec: Codec) -> Option<(&'static CStr, Settings)> {
    match codec {
        Codec::H264 => None,
        Codec::Hevc => Some((
            c"libx265",
            &[
                (c"preset", c"ultrafast"),
                (c"tune", c"zerolatency"),
                (c"forced-idr", c"1"),
                // Parameter sets in every keyframe, so a client can start
                // from any; x265's own log off (FFmpeg's is).
                (c"x265-params", c"repeat-headers=1:log-level=none"),
            ],
        )),
        // libaom, not SVT-AV1: through FFmpeg 5.1 SVT-AV1 gave its first
        // picture two pictures late and ignored asked-for keyframes (the
        // tests below caught both).
        Codec::Av1 => Some((
            c"libaom-av1",
            &[
                (c"usage", c"realtime"),
                (c"cpu-used", c"8"),
                (c"lag-in-frames", c"0"),
                (c"row-mt", c"1"),
            ],
        )),
    }
}

/// The loaded FFmpeg, its encoder for `codec`, the encoder's name and
/// settings; or why there is none.
fn find(
    codec: Codec,
) -> Result<(&'static Api, *const c_void, &'static str, Settings), EncodeError> {
    let unavailable = |why: String| EncodeError::Unavailable { codec, why };
    let api = super::api().map_err(unavailable)?;
    let (name, settings) =
        encoder(codec).ok_or_else(|| unavailable("openh264 makes it, not FFmpeg".into()))?;
    // SAFETY: a NUL-terminated name; FFmpeg returns a static description
    // or null.
    let found = unsafe { (api.find_encoder)(name.as_ptr()) };
    if found.is_null() {
        return Err(unavailable(format!(
            "this FFmpeg has no {}",
            name.to_string_lossy()
        )));
    }
    Ok((api, found, name.to_str().unwrap_or("encoder"), settings))
}

/// Whether this system's FFmpeg has an encoder for `codec`, and which.
pub fn encoder_for(codec: Codec) -> Result<&'static str, EncodeError> {
    find(codec).map(|(_, _, name, _)| name)
}

/// One libavcodec encoder.
pub struct AvEncoder {
    api: &'static Api,
    name: &'static str,
    ctx: Ptr,
    frame: Ptr,
    packet: Ptr,
    /// The next picture's time, in frames.
    pts: i64,
    /// Where `AVFrame::pict_type` and `AVFrame::pts` are in this FFmpeg.
    pict_type_at: usize,
    pts_at: usize,
}

// SAFETY: a libavcodec context is not tied to the thread that made it; it is
// used by one thread at a time (`&mut self`).
unsafe impl Send for AvEncoder {}

impl std::fmt::Debug for AvEncoder {
    // Written by hand: the FFmpeg pointers say nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvEncoder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AvEncoder {
    /// Opens FFmpeg's encoder for `spec`.
    pub fn open(spec: EncoderSpec) -> Result<Self, EncodeError> {
        let (api, found, name, options) = find(spec.codec)?;
        if !cfg!(target_pointer_width = "64") {
            let why = "FFmpeg encoders need a 64-bit host".into();
            let codec = spec.codec;
            return Err(EncodeError::Unavailable { codec, why });
        }
        // SAFETY: the calls follow libavcodec's documented set-up sequence;
        // every pointer is checked before use and freed in `Drop`.
        unsafe {
            // `AVFrame` lost `key_frame` (before `pict_type`) in libavutil
            // 60; `pts` stays 8-aligned after `sample_aspect_ratio`.
            let after_format = std::mem::offset_of!(FrameHead, format) + 4;
            let pict_type_at = after_format + if api.util_version >> 16 >= 60 { 0 } else { 4 };
            let pts_at = (pict_type_at + 4 + 8).next_multiple_of(8);
            let me = Self {
                api,
                name,
                ctx: (api.alloc_context)(found),
                frame: (api.frame_alloc)(),
                packet: (api.packet_alloc)(),
                pts: 0,
                pict_type_at,
                pts_at,
            };
            if me.ctx.is_null() || me.frame.is_null() || me.packet.is_null() {
                return Err(me.failed("allocating", -1));
            }
            let fps = spec.fps.max(1);
            let generic = [
                (c"video_size", format!("{}x{}", spec.width, spec.height)),
                (c"pixel_format", "yuv420p".into()),
                (c"time_base", format!("1/{fps}")),
                (c"b", spec.bitrate.to_string()),
                // A cap with a quarter second of buffer: a keyframe may
                // take a few frames' share, the stream stays near the target.
                (c"maxrate", spec.bitrate.to_string()),
                (c"bufsize", (spec.bitrate / 4).to_string()),
                // Keyframes when the client asks, and every ten seconds as
                // a floor.
                (c"g", (u32::from(fps) * 10).to_string()),
                (c"bf", "0".into()),
            ];
            for (key, value) in &generic {
                let value = CString::new(value.as_str()).unwrap_or_default();
                let rc = (api.opt_set)(me.ctx, key.as_ptr(), value.as_ptr(), 0);
                if rc < 0 {
                    return Err(me.failed("setting its picture", rc));
                }
            }
            for (key, value) in options {
                // An option this build lacks is skipped: the defaults are
                // usable, only slower or later.
                let rc = (api.opt_set)(me.ctx, key.as_ptr(), value.as_ptr(), SEARCH_CHILDREN);
                if rc < 0 {
                    tracing::debug!(encoder = name, option = ?key, rc, "option not taken");
                }
            }
            let rc = (api.open)(me.ctx, found, std::ptr::null_mut());
            if rc < 0 {
                return Err(me.failed("opening", rc));
            }
            let head = me.frame.cast::<FrameHead>();
            (*head).width = c_int::from(spec.width);
            (*head).height = c_int::from(spec.height);
            (*head).format = AV_PIX_FMT_YUV420P;
            let rc = (api.frame_get_buffer)(me.frame, 0);
            if rc < 0 {
                return Err(me.failed("allocating a picture", rc));
            }
            Ok(me)
        }
    }

    /// The FFmpeg encoder's name (`libx265`, `libaom-av1`, …).
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn failed(&self, step: &'static str, rc: c_int) -> EncodeError {
        EncodeError::Failed {
            encoder: self.name,
            step,
            rc,
        }
    }

    /// Encodes one picture (a keyframe when `keyframe`), appending what the
    /// encoder gives to `out`; whether that holds a keyframe.
    pub fn encode(
        &mut self,
        planes: Planes<'_>,
        keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, EncodeError> {
        let api = self.api;
        // SAFETY: the frame was given buffers of the opened size and format
        // at open; `make_writable` gives it its own again if the encoder
        // still holds the last one; rows are copied within both sides'
        // strides; the fields written are at this FFmpeg's offsets.
        unsafe {
            let rc = (api.frame_make_writable)(self.frame);
            if rc < 0 {
                return Err(self.failed("making the picture writable", rc));
            }
            let head = &*self.frame.cast::<FrameHead>();
            let (w, h) = (head.width as usize, head.height as usize);
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let sources = [
                (planes.y, planes.y_stride, w, h),
                (planes.u, planes.uv_stride, cw, ch),
                (planes.v, planes.uv_stride, cw, ch),
            ];
            for (i, (src, stride, width, rows)) in sources.into_iter().enumerate() {
                let dst_stride = head.linesize[i] as usize;
                if src.len() < stride * (rows - 1) + width || width > stride.max(dst_stride) {
                    return Err(self.failed("reading the picture", -1));
                }
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr().add(r * stride),
                        head.data[i].add(r * dst_stride),
                        width,
                    );
                }
            }
            let base = self.frame.cast::<u8>();
            let pict_type = if keyframe { PICTURE_TYPE_I } else { 0 };
            base.add(self.pict_type_at).cast::<c_int>().write(pict_type);
            base.add(self.pts_at).cast::<i64>().write(self.pts);
            self.pts += 1;
            let rc = (api.send_frame)(self.ctx, self.frame);
            if rc < 0 {
                return Err(self.failed("encoding", rc));
            }
            let mut key = false;
            loop {
                let rc = (api.receive_packet)(self.ctx, self.packet);
                if rc == AVERROR_EAGAIN || rc == AVERROR_EOF {
                    break;
                }
                if rc < 0 {
                    return Err(self.failed("encoding", rc));
                }
                let p = &*self.packet.cast::<PacketHead>();
                if !p.data.is_null() && p.size > 0 {
                    out.extend_from_slice(std::slice::from_raw_parts(p.data, p.size as usize));
                }
                key |= p.flags & PKT_FLAG_KEY != 0;
                (api.packet_unref)(self.packet);
            }
            Ok(key)
        }
    }
}

impl Drop for AvEncoder {
    fn drop(&mut self) {
        // SAFETY: each free function takes a pointer to the pointer it
        // frees (null is allowed) and nulls it.
        unsafe {
            (self.api.frame_free)(&mut self.frame);
            (self.api.packet_free)(&mut self.packet);
            (self.api.free_context)(&mut self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 320×180 picture that moves with `t`.
    fn picture(t: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let y = (0..320 * 180)
            .map(|i| ((i % 320 + t * 7) % 256) as u8)
            .collect();
        let u = (0..160 * 90).map(|i| ((i / 160 + t) % 256) as u8).collect();
        let v = vec![128; 160 * 90];
        (y, u, v)
    }

    /// Encodes 20 pictures asking for a keyframe at the 12th: the size of
    /// each output and whether it was a keyframe.
    fn encode(codec: Codec) -> Vec<(Vec<u8>, bool)> {
        let spec = EncoderSpec {
            codec,
            width: 320,
            height: 180,
            fps: 30,
            bitrate: 500_000,
        };
        let mut enc = AvEncoder::open(spec).unwrap_or_else(|e| panic!("{e}"));
        (0..20)
            .map(|t| {
                let (y, u, v) = picture(t);
                let planes = Planes {
                    y: &y,
                    u: &u,
                    v: &v,
                    y_stride: 320,
                    uv_stride: 160,
                };
                let mut out = Vec::new();
                let key = enc.encode(planes, t == 12, &mut out).unwrap();
                (out, key)
            })
            .collect()
    }

    /// The pictures given out are one per picture put in, keyframes at the
    /// first and where asked only.
    fn check_timing(frames: &[(Vec<u8>, bool)]) {
        let empty: Vec<_> = (0..frames.len())
            .filter(|&i| frames[i].0.is_empty())
            .collect();
        assert!(
            empty.is_empty(),
            "no output for pictures {empty:?}: a delay"
        );
        let keys: Vec<_> = (0..frames.len()).filter(|&i| frames[i].1).collect();
        assert_eq!(keys, [0, 12]);
    }

    #[test]
    fn hevc_comes_out_at_once_with_parameter_sets_in_every_keyframe() {
        let frames = encode(Codec::Hevc);
        check_timing(&frames);
        // Annex B; NAL type 32 (VPS) is `00 00 01 40 01`.
        let has_vps = |au: &[u8]| au.windows(5).any(|w| w == [0, 0, 1, 0x40, 0x01]);
        for (i, (au, key)) in frames.iter().enumerate() {
            assert_eq!(has_vps(au), *key, "picture {i}");
        }
    }

    /// The OBU types of a temporal unit (low-overhead format).
    fn obu_types(mut tu: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        while let Some(&header) = tu.first() {
            assert!(header & 2 != 0, "an OBU without its size");
            let skip = 1 + usize::from(header & 4 != 0);
            let (mut size, mut shift, mut at) = (0usize, 0, skip);
            loop {
                let b = tu[at];
                size |= usize::from(b & 0x7f) << shift;
                at += 1;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            types.push((header >> 3) & 0xf);
            tu = &tu[at + size..];
        }
        types
    }

    #[test]
    fn av1_comes_out_at_once_with_a_sequence_header_in_every_keyframe() {
        let frames = encode(Codec::Av1);
        check_timing(&frames);
        for (i, (tu, key)) in frames.iter().enumerate() {
            let types = obu_types(tu);
            // OBU type 1 is the sequence header.
            assert_eq!(types.contains(&1), *key, "picture {i}: {types:?}");
        }
    }
}
