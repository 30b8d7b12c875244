//! FFmpeg's decoders (H.264, HEVC, AV1) or openh264's (H.264) behind the
//! one interface the session and `nephele decode` use.

use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use super::annexb::{access_units, hevc_access_units, nal_units};
use super::ffmpeg::AvDecoder;
use super::{Codec, DecoderChoice, Picture, VideoError};
use nephele_protocol::codec::Codecs;

/// A picture openh264 decoded, as the client's [`Picture`].
fn picture_of<'a>(d: &'a DecodedYUV<'a>) -> Picture<'a> {
    let (width, height) = d.dimensions();
    let (ys, us, _vs) = d.strides();
    Picture {
        width,
        height,
        y: d.y(),
        y_stride: ys,
        u: d.u(),
        v: d.v(),
        uv_stride: us,
    }
}

enum Backend {
    OpenH264(Box<Decoder>),
    Ffmpeg(AvDecoder, Codec),
}

/// Counters of an [`VideoDecoder`].
#[derive(Debug, Default, Clone, Copy)]
pub struct DecoderStats {
    /// Pictures produced.
    pub pictures: u64,
    /// Calls the decoder reported as corrupt.
    pub errors: u64,
}

/// FFmpeg's or openh264's decoder behind the interface the client needs.
pub struct VideoDecoder {
    inner: Backend,
    stats: DecoderStats,
}

impl std::fmt::Debug for VideoDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoDecoder")
            .field("backend", &self.backend())
            .field("stats", &self.stats)
            .finish()
    }
}

impl VideoDecoder {
    /// The default decoder: FFmpeg's where the system has it, else openh264.
    pub fn new() -> Result<Self, VideoError> {
        Self::with(DecoderChoice::Auto)
    }

    /// The H.264 decoder chosen.
    pub fn with(choice: DecoderChoice) -> Result<Self, VideoError> {
        Self::for_codec(Codec::H264, choice)
    }

    /// The decoder chosen for `codec`: HEVC and AV1 only through FFmpeg.
    pub fn for_codec(codec: Codec, choice: DecoderChoice) -> Result<Self, VideoError> {
        let ffmpeg = || {
            AvDecoder::new(codec)
                .map(|d| Backend::Ffmpeg(d, codec))
                .map_err(|e| VideoError::Init(format!("FFmpeg: {e}")))
        };
        let inner = match (choice, codec) {
            (DecoderChoice::Openh264, Codec::H264) => Self::openh264()?,
            (DecoderChoice::Openh264, _) => {
                return Err(VideoError::Init(format!(
                    "openh264 decodes H.264 only, not {}",
                    codec.name()
                )));
            }
            (DecoderChoice::Ffmpeg, _) | (DecoderChoice::Auto, Codec::Hevc | Codec::Av1) => {
                ffmpeg()?
            }
            (DecoderChoice::Auto, Codec::H264) => match ffmpeg() {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(reason = %e, "FFmpeg's decoder unavailable; using openh264");
                    Self::openh264()?
                }
            },
        };
        Ok(Self {
            inner,
            stats: DecoderStats::default(),
        })
    }

    /// The codecs `choice` decodes here: H.264 always, HEVC and AV1 where
    /// FFmpeg has their decoders (tried by opening one).
    pub fn decodable(choice: DecoderChoice) -> Codecs {
        let more: Vec<Codec> = [Codec::Av1, Codec::Hevc]
            .into_iter()
            .filter(|&c| Self::for_codec(c, choice).is_ok())
            .collect();
        Codecs::new(&more)
    }

    /// The codec it decodes.
    pub fn codec(&self) -> Codec {
        match self.inner {
            Backend::OpenH264(_) => Codec::H264,
            Backend::Ffmpeg(_, codec) => codec,
        }
    }

    fn openh264() -> Result<Backend, VideoError> {
        let cfg = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let d = Decoder::with_api_config(OpenH264API::from_source(), cfg)
            .map_err(|e| VideoError::Init(e.to_string()))?;
        Ok(Backend::OpenH264(Box::new(d)))
    }

    /// The decoder in use: [`DecoderChoice::Ffmpeg`] or
    /// [`DecoderChoice::Openh264`].
    pub fn backend(&self) -> DecoderChoice {
        match self.inner {
            Backend::OpenH264(_) => DecoderChoice::Openh264,
            Backend::Ffmpeg(..) => DecoderChoice::Ffmpeg,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Decodes a run of access units (one from the network, or a whole
    /// file: Annex B, or IVF for AV1) in stream order and calls `out` with
    /// each picture. Returns whether the decoder reported corruption (the
    /// caller then asks for a keyframe).
    pub fn decode(&mut self, data: &[u8], mut out: impl FnMut(Picture<'_>)) -> bool {
        let dec = match &mut self.inner {
            Backend::OpenH264(d) => d,
            Backend::Ffmpeg(d, codec) => {
                let (mut corrupt, stats) = (false, &mut self.stats);
                let mut each = |au: &[u8]| {
                    let got = d.decode(au, &mut out);
                    stats.pictures += got.pictures;
                    if got.corrupt {
                        corrupt = true;
                        stats.errors += 1;
                    }
                };
                for_each_unit(*codec, data, &mut each);
                return corrupt;
            }
        };
        // openh264 takes one NAL unit per call.
        let mut corrupt = false;
        for nal in nal_units(data) {
            match dec.decode(nal) {
                Ok(Some(pic)) => {
                    self.stats.pictures += 1;
                    out(picture_of(&pic));
                }
                Ok(None) => {}
                Err(e) => {
                    corrupt = true;
                    self.stats.errors += 1;
                    tracing::debug!(error = %e, "decoder reported a corrupt NAL unit");
                }
            }
        }
        corrupt
    }

    /// Outputs the pictures still held in the decoder (end of stream).
    pub fn flush(&mut self, mut out: impl FnMut(Picture<'_>)) {
        let dec = match &mut self.inner {
            Backend::OpenH264(d) => d,
            Backend::Ffmpeg(d, _) => {
                let got = d.flush(&mut out);
                self.stats.pictures += got.pictures;
                self.stats.errors += u64::from(got.corrupt);
                return;
            }
        };
        match dec.flush_remaining() {
            Ok(pics) => {
                for p in &pics {
                    self.stats.pictures += 1;
                    out(picture_of(p));
                }
            }
            Err(e) => {
                self.stats.errors += 1;
                tracing::debug!(error = %e, "flushing the decoder");
            }
        }
    }
}

/// Calls `each` with every access unit of `data` (one from the network, or
/// a whole file: Annex B, or IVF for AV1), as a host sends them.
pub fn for_each_unit(codec: Codec, data: &[u8], mut each: impl FnMut(&[u8])) {
    match codec {
        Codec::H264 => access_units(data).for_each(each),
        Codec::Hevc => hevc_access_units(data).for_each(each),
        Codec::Av1 => match super::ivf::frames(data) {
            Some(frames) => frames.for_each(each),
            None => each(data),
        },
    }
}

/// Whether the openh264 linked into this binary was built with its x86
/// assembly. Without NASM at build time the crate silently compiles plain C,
/// which decodes about a third slower; this checks the build itself.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
pub fn openh264_has_simd() -> bool {
    unsafe extern "C" {
        // openh264's CPU feature probe (codec/common/src/cpu.cpp). Built
        // without X86_ASM it is a stub that reports no features.
        fn WelsCPUFeatureDetect(logical_processors: *mut i32) -> u32;
    }
    let mut n = 0i32;
    // SAFETY: the function only writes the processor count through the
    // pointer, which points to a live i32.
    let flags = unsafe { WelsCPUFeatureDetect(&mut n) };
    flags != 0
}

/// Non-x86 targets use openh264's NEON or C paths; nothing to check.
#[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
pub fn openh264_has_simd() -> bool {
    true
}
