//! FFmpeg's or openh264's H.264 decoder behind the one interface the
//! session and `nephele decode` use.

use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use super::annexb::{access_units, nal_units};
use super::ffmpeg::AvDecoder;
use super::{DecoderChoice, Picture, VideoError};

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
    Ffmpeg(AvDecoder),
}

/// Counters of an [`H264Decoder`].
#[derive(Debug, Default, Clone, Copy)]
pub struct DecoderStats {
    /// Pictures produced.
    pub pictures: u64,
    /// Calls the decoder reported as corrupt.
    pub errors: u64,
}

/// FFmpeg's or openh264's decoder behind the interface the client needs.
pub struct H264Decoder {
    inner: Backend,
    stats: DecoderStats,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder")
            .field("backend", &self.backend())
            .field("stats", &self.stats)
            .finish()
    }
}

impl H264Decoder {
    /// The default decoder: FFmpeg's where the system has it, else openh264.
    pub fn new() -> Result<Self, VideoError> {
        Self::with(DecoderChoice::Auto)
    }

    /// The decoder chosen.
    pub fn with(choice: DecoderChoice) -> Result<Self, VideoError> {
        let inner = match choice {
            DecoderChoice::Openh264 => Self::openh264()?,
            DecoderChoice::Ffmpeg => Backend::Ffmpeg(
                AvDecoder::new().map_err(|e| VideoError::Init(format!("FFmpeg: {e}")))?,
            ),
            DecoderChoice::Auto => match AvDecoder::new() {
                Ok(d) => Backend::Ffmpeg(d),
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
            Backend::Ffmpeg(_) => DecoderChoice::Ffmpeg,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Decodes a run of Annex-B access units (one from the network, or a
    /// whole file) in stream order and calls `out` with each picture.
    /// Returns whether the decoder reported corruption (the caller then asks
    /// for a keyframe).
    pub fn decode(&mut self, data: &[u8], mut out: impl FnMut(Picture<'_>)) -> bool {
        let dec = match &mut self.inner {
            Backend::OpenH264(d) => d,
            Backend::Ffmpeg(d) => {
                let mut corrupt = false;
                for au in access_units(data) {
                    let got = d.decode(au, &mut out);
                    self.stats.pictures += got.pictures;
                    if got.corrupt {
                        corrupt = true;
                        self.stats.errors += 1;
                    }
                }
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
            Backend::Ffmpeg(d) => {
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
