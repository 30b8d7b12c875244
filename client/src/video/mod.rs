//! The client's decode path: H.264 access units → FFmpeg's decoder where the
//! system has one ([`ffmpeg`], else openh264) → I420 pictures → the
//! window's pixel format, scaled to fit ([`present`]).
//!
//! The same [`VideoDecoder`] serves the network session and `nephele decode`,
//! so the conformance digests ([`digest`]) check the path frames really
//! take. [`annexb`] cuts a byte stream into NAL and access units.

pub mod annexb;
mod decoder;
pub mod digest;
mod ffmpeg;
pub mod ivf;
pub mod present;
mod scale;

use std::time::Instant;

pub use annexb::{access_units, nal_units};
pub use decoder::{DecoderStats, VideoDecoder, for_each_unit, openh264_has_simd};
pub use digest::{PictureDigest, digest_stream};
pub use ffmpeg::available as ffmpeg_available;
pub use present::{BAND, Presenter, Viewport};

/// A decoded picture, borrowed from the decoder until the callback returns.
#[derive(Debug, Clone, Copy)]
pub struct Picture<'a> {
    /// Cropped width.
    pub width: usize,
    /// Cropped height.
    pub height: usize,
    /// Luma plane and its stride.
    pub y: &'a [u8],
    /// Luma stride.
    pub y_stride: usize,
    /// Cb plane.
    pub u: &'a [u8],
    /// Cr plane.
    pub v: &'a [u8],
    /// Chroma stride.
    pub uv_stride: usize,
}

impl Picture<'_> {
    /// Chroma plane size `(width, height)`, rounding up.
    pub fn chroma_size(&self) -> (usize, usize) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }

    /// Calls `f` with each visible row of each plane, Y then U then V, as the
    /// conformance digest defines.
    pub fn for_each_row(&self, mut f: impl FnMut(&[u8])) {
        let rows = |plane: &[u8], stride: usize, w: usize, h: usize, f: &mut dyn FnMut(&[u8])| {
            for r in 0..h {
                let start = r * stride;
                // Never read past what the decoder handed us, whatever it claims.
                if let Some(row) = plane.get(start..start + w) {
                    f(row);
                }
            }
        };
        let (cw, ch) = self.chroma_size();
        rows(self.y, self.y_stride, self.width, self.height, &mut f);
        rows(self.u, self.uv_stride, cw, ch, &mut f);
        rows(self.v, self.uv_stride, cw, ch, &mut f);
    }
}

/// Error from the decoder.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The decoder failed to start.
    #[error("starting the video decoder: {0}")]
    Init(String),
}

pub use nephele_protocol::codec::Codec;

/// The codec a file's name says (`.265`, `.hevc`, `.h265`: HEVC; `.ivf`,
/// `.av1`, `.obu`: AV1), else H.264.
pub fn codec_of_file(path: &std::path::Path) -> Codec {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("265" | "hevc" | "h265") => Codec::Hevc,
        Some("ivf" | "av1" | "obu") => Codec::Av1,
        _ => Codec::H264,
    }
}

/// The codec a user chooses: automatic or one by name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum CodecChoice {
    /// Streams: the host's first choice among those this client decodes.
    /// Files: from the file's name.
    #[default]
    Auto,
    /// H.264.
    H264,
    /// HEVC.
    Hevc,
    /// AV1.
    Av1,
}

impl CodecChoice {
    /// Every choice, as settings list them.
    pub const ALL: [CodecChoice; 4] = [Self::Auto, Self::H264, Self::Hevc, Self::Av1];

    /// The codec chosen, if one was.
    pub fn codec(self) -> Option<Codec> {
        match self {
            Self::Auto => None,
            Self::H264 => Some(Codec::H264),
            Self::Hevc => Some(Codec::Hevc),
            Self::Av1 => Some(Codec::Av1),
        }
    }

    /// What settings show for it.
    pub fn label(self) -> &'static str {
        self.codec().map_or("Automatic", Codec::name)
    }
}

/// Which H.264 decoder to use.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DecoderChoice {
    /// FFmpeg's (libavcodec) when the system has it, else openh264.
    #[default]
    Auto,
    /// FFmpeg's libavcodec, loaded from the system; an error without it.
    Ffmpeg,
    /// openh264, built into the client.
    Openh264,
}

impl DecoderChoice {
    /// The name the command line and the settings use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Ffmpeg => "ffmpeg",
            Self::Openh264 => "openh264",
        }
    }
}

pub fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}
