//! The client's decode path: H.264 access units → openh264 → I420 pictures →
//! the window's pixel format, scaled to fit.
//!
//! The same [`H264Decoder`] serves the network session and `nephele decode`,
//! so the conformance digests check the path frames really take.

use std::time::Instant;

use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

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

impl<'a> Picture<'a> {
    fn from_decoded(d: &'a DecodedYUV<'a>) -> Self {
        let (width, height) = d.dimensions();
        let (ys, us, _vs) = d.strides();
        Self {
            width,
            height,
            y: d.y(),
            y_stride: ys,
            u: d.u(),
            v: d.v(),
            uv_stride: us,
        }
    }

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
    /// openh264 failed to start.
    #[error("starting the H.264 decoder: {0}")]
    Init(String),
}

/// Counters of an [`H264Decoder`].
#[derive(Debug, Default, Clone, Copy)]
pub struct DecoderStats {
    /// Pictures produced.
    pub pictures: u64,
    /// Calls openh264 reported as corrupt.
    pub errors: u64,
}

/// openh264 behind the interface the client needs.
pub struct H264Decoder {
    inner: Decoder,
    stats: DecoderStats,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder")
            .field("stats", &self.stats)
            .finish()
    }
}

impl H264Decoder {
    /// A decoder using the openh264 built into this binary.
    pub fn new() -> Result<Self, VideoError> {
        let cfg = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let inner = Decoder::with_api_config(OpenH264API::from_source(), cfg)
            .map_err(|e| VideoError::Init(e.to_string()))?;
        Ok(Self {
            inner,
            stats: DecoderStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Decodes a run of Annex-B NAL units (one access unit from the network,
    /// or a whole file), one NAL unit per decoder call in stream order, and
    /// calls `out` with each picture. Returns whether any call reported
    /// corruption (the caller then asks for a keyframe).
    pub fn decode(&mut self, data: &[u8], mut out: impl FnMut(Picture<'_>)) -> bool {
        let mut corrupt = false;
        for nal in openh264::nal_units(data) {
            match self.inner.decode(nal) {
                Ok(Some(pic)) => {
                    self.stats.pictures += 1;
                    out(Picture::from_decoded(&pic));
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
        match self.inner.flush_remaining() {
            Ok(pics) => {
                for p in &pics {
                    self.stats.pictures += 1;
                    out(Picture::from_decoded(p));
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

/// SHA-1 of decoded pictures as defined by the conformance suite.
#[derive(Default)]
pub struct PictureDigest {
    hasher: sha1::Sha1,
    /// Pictures hashed.
    pub pictures: u64,
    /// Size of the last picture.
    pub size: (usize, usize),
}

impl PictureDigest {
    /// Adds a picture.
    pub fn add(&mut self, p: &Picture<'_>) {
        use sha1::Digest;
        p.for_each_row(|row| self.hasher.update(row));
        self.pictures += 1;
        self.size = (p.width, p.height);
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        use sha1::Digest;
        self.hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Decodes a whole Annex-B file and returns its digest and picture count.
pub fn digest_stream(data: &[u8]) -> Result<PictureDigest, VideoError> {
    let mut dec = H264Decoder::new()?;
    let mut digest = PictureDigest::default();
    dec.decode(data, |p| digest.add(&p));
    dec.flush(|p| digest.add(&p));
    Ok(digest)
}

/// Where the stream lands in a window: scaled to fit, aspect kept, centred
/// (letterboxed or pillarboxed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    /// Left edge of the picture in the window.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Picture width in the window.
    pub w: u32,
    /// Picture height in the window.
    pub h: u32,
    /// Stream size.
    pub stream: (u32, u32),
}

impl Viewport {
    /// Fits a `stream`-sized picture into a `window`-sized surface.
    pub fn fit(stream: (u32, u32), window: (u32, u32)) -> Self {
        let (sw, sh) = (stream.0.max(1) as u64, stream.1.max(1) as u64);
        let (ww, wh) = (window.0 as u64, window.1 as u64);
        let (w, h) = if ww * sh <= wh * sw {
            (ww, ww * sh / sw)
        } else {
            (wh * sw / sh, wh)
        };
        Self {
            x: ((ww - w) / 2) as u32,
            y: ((wh - h) / 2) as u32,
            w: w as u32,
            h: h as u32,
            stream,
        }
    }

    /// Maps a window position to stream coordinates, clamped to the picture
    /// (a pointer in the black bars sits on the nearest edge).
    pub fn to_stream(&self, px: f64, py: f64) -> (u16, u16) {
        let fx = ((px - f64::from(self.x)) / f64::from(self.w.max(1))).clamp(0.0, 1.0);
        let fy = ((py - f64::from(self.y)) / f64::from(self.h.max(1))).clamp(0.0, 1.0);
        let x = (fx * f64::from(self.stream.0))
            .floor()
            .min(f64::from(self.stream.0.saturating_sub(1)));
        let y = (fy * f64::from(self.stream.1))
            .floor()
            .min(f64::from(self.stream.1.saturating_sub(1)));
        (x as u16, y as u16)
    }
}

/// Converts pictures to 32-bit `0x00RRGGBB` pixels (softbuffer's format, and
/// BGRA bytes in memory) and scales them into a surface. Buffers are kept
/// between frames, so steady-state presentation does not allocate.
#[derive(Debug, Default)]
pub struct Presenter {
    bgra: Vec<u8>,
    size: (usize, usize),
    xmap: Vec<u32>,
    ymap: Vec<u32>,
    viewport: Option<Viewport>,
}

impl Presenter {
    /// Converts `p` to BGRA at its own size (the colour conversion step).
    pub fn convert(&mut self, p: &Picture<'_>) -> Result<(), yuv::YuvError> {
        let need = p.width * p.height * 4;
        if self.bgra.len() != need {
            self.bgra.resize(need, 0);
        }
        self.size = (p.width, p.height);
        let img = yuv::YuvPlanarImage {
            y_plane: p.y,
            y_stride: p.y_stride as u32,
            u_plane: p.u,
            u_stride: p.uv_stride as u32,
            v_plane: p.v,
            v_stride: p.uv_stride as u32,
            width: p.width as u32,
            height: p.height as u32,
        };
        yuv::yuv420_to_bgra(
            &img,
            &mut self.bgra,
            (p.width * 4) as u32,
            yuv::YuvRange::Limited,
            yuv::YuvStandardMatrix::Bt601,
        )
    }

    /// The last converted picture as BGRA bytes.
    pub fn bgra(&self) -> (&[u8], (usize, usize)) {
        (&self.bgra, self.size)
    }

    /// Blits the last converted picture into `surface` (`0x00RRGGBB`,
    /// `width × height`), fitted by [`Viewport::fit`]. The black bars are
    /// painted every time (a surface may come back with stale contents), but
    /// nothing else outside the picture is touched.
    pub fn blit(&mut self, surface: &mut [u32], width: u32, height: u32) -> Viewport {
        let (sw, sh) = (self.size.0 as u32, self.size.1 as u32);
        let vp = Viewport::fit((sw, sh), (width, height));
        if self.viewport != Some(vp) {
            self.xmap.clear();
            self.xmap.extend(
                (0..vp.w).map(|x| (u64::from(x) * u64::from(sw) / u64::from(vp.w.max(1))) as u32),
            );
            self.ymap.clear();
            self.ymap.extend(
                (0..vp.h).map(|y| (u64::from(y) * u64::from(sh) / u64::from(vp.h.max(1))) as u32),
            );
            self.viewport = Some(vp);
        }
        let (w, h) = (width as usize, height as usize);
        if sw == 0 || sh == 0 || surface.len() < w * h {
            return vp;
        }
        let (x0, y0, pw, ph) = (vp.x as usize, vp.y as usize, vp.w as usize, vp.h as usize);
        surface[..y0 * w].fill(0);
        surface[(y0 + ph) * w..w * h].fill(0);
        let src_stride = sw as usize * 4;
        for (dy, &sy) in self.ymap.iter().enumerate() {
            let src = &self.bgra[sy as usize * src_stride..(sy as usize + 1) * src_stride];
            let row = &mut surface[(y0 + dy) * w..(y0 + dy + 1) * w];
            row[..x0].fill(0);
            row[x0 + pw..].fill(0);
            for (d, &sx) in row[x0..x0 + pw].iter_mut().zip(self.xmap.iter()) {
                let i = sx as usize * 4;
                *d = u32::from(src[i])
                    | (u32::from(src[i + 1]) << 8)
                    | (u32::from(src[i + 2]) << 16);
            }
        }
        vp
    }
}

/// Milliseconds between two instants, as a float.
pub fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewport_letterboxes_and_maps_back() {
        let vp = Viewport::fit((1280, 720), (800, 800));
        assert_eq!((vp.x, vp.y, vp.w, vp.h), (0, 175, 800, 450));
        assert_eq!(vp.to_stream(0.0, 175.0), (0, 0));
        assert_eq!(vp.to_stream(400.0, 400.0), (640, 360));
        assert_eq!(vp.to_stream(799.9, 624.9), (1279, 719));
        // In the bars: clamped to the edge.
        assert_eq!(vp.to_stream(10.0, 5.0), (16, 0));
        let pillar = Viewport::fit((1280, 720), (1000, 400));
        assert_eq!((pillar.x, pillar.y, pillar.w, pillar.h), (144, 0, 711, 400));
    }

    #[test]
    fn presenter_converts_and_blits_with_bars() {
        let (w, h) = (64usize, 32usize);
        // Limited-range white picture.
        let y = vec![235u8; w * h];
        let u = vec![128u8; w * h / 4];
        let v = vec![128u8; w * h / 4];
        let pic = Picture {
            width: w,
            height: h,
            y: &y,
            y_stride: w,
            u: &u,
            v: &v,
            uv_stride: w / 2,
        };
        let mut p = Presenter::default();
        p.convert(&pic).unwrap();
        let mut surface = vec![0xDEADBEEFu32; 64 * 64];
        let vp = p.blit(&mut surface, 64, 64);
        assert_eq!((vp.y, vp.h), (16, 32));
        assert_eq!(surface[0], 0, "bar is black");
        // Stale contents in the bars are painted over on the next frame too.
        surface[0] = 0xDEADBEEF;
        surface[63 * 64 + 63] = 0xDEADBEEF;
        p.blit(&mut surface, 64, 64);
        assert_eq!((surface[0], surface[63 * 64 + 63]), (0, 0));
        // Pillarbox: side bars.
        let mut wide = vec![0xDEADBEEFu32; 200 * 32];
        let vp = p.blit(&mut wide, 200, 32);
        assert_eq!((vp.x, vp.w), (68, 64));
        assert!(
            wide.iter()
                .enumerate()
                .all(|(i, &v)| (68..132).contains(&(i % 200)) || v == 0)
        );
        let mid = surface[32 * 64 + 32];
        assert!(
            mid & 0xFF >= 0xF0 && (mid >> 16) & 0xFF >= 0xF0 && mid >> 24 == 0,
            "{mid:#x}"
        );
    }
}
