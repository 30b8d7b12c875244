//! The client's decode path: H.264 access units → FFmpeg's decoder where the
//! system has one (else openh264) → I420 pictures → the window's pixel
//! format, scaled to fit.
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
    /// The decoder failed to start.
    #[error("starting the H.264 decoder: {0}")]
    Init(String),
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

enum Backend {
    OpenH264(Box<Decoder>),
    Ffmpeg(crate::avcodec::AvDecoder),
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
                crate::avcodec::AvDecoder::new()
                    .map_err(|e| VideoError::Init(format!("FFmpeg: {e}")))?,
            ),
            DecoderChoice::Auto => match crate::avcodec::AvDecoder::new() {
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

/// Splits an Annex-B stream into access units (H.264 7.4.1.2.3): a new one
/// starts at an access unit delimiter, SEI, SPS, PPS or prefix NAL unit, or
/// at a slice whose `first_mb_in_slice` is 0, once the current one holds a
/// slice. Each unit is a contiguous part of `data`, start codes included.
pub fn access_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut nals = nal_units(data).peekable();
    std::iter::from_fn(move || {
        let first = nals.next()?;
        let start = offset_in(data, first);
        let mut end = start + first.len();
        let mut has_slice = is_slice(first).is_some();
        while let Some(next) = nals.peek() {
            let starts_new = match is_slice(next) {
                Some(first_mb_zero) => has_slice && first_mb_zero,
                None => has_slice && matches!(nal_type(next), Some(6..=9 | 14..=18)),
            };
            if starts_new {
                break;
            }
            has_slice |= is_slice(next).is_some();
            end = offset_in(data, next) + next.len();
            nals.next();
        }
        data.get(start..end)
    })
}

/// The Annex-B NAL units of `data`, each with its start code (a zero byte
/// before `00 00 01` counts as the start code's), found with memchr's SIMD
/// substring search: a file is scanned once, not once per unit.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = memchr::memmem::find_iter(data, &[0, 0, 1])
        .map(move |i| if i > 0 && data[i - 1] == 0 { i - 1 } else { i })
        .peekable();
    std::iter::from_fn(move || {
        let start = starts.next()?;
        let end = starts.peek().copied().unwrap_or(data.len());
        data.get(start..end)
    })
}

fn offset_in(data: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - data.as_ptr() as usize
}

/// The NAL unit's header byte and the byte after it, past the start code.
fn nal_bytes(nal: &[u8]) -> Option<(u8, Option<u8>)> {
    let zeros = nal.iter().take_while(|&&b| b == 0).count();
    if nal.get(zeros) != Some(&1) {
        return None;
    }
    Some((*nal.get(zeros + 1)?, nal.get(zeros + 2).copied()))
}

fn nal_type(nal: &[u8]) -> Option<u8> {
    nal_bytes(nal).map(|(h, _)| h & 0x1f)
}

/// For a slice NAL unit (types 1 and 5), whether its `first_mb_in_slice` is
/// 0 (the Exp-Golomb code `1`); `None` for other units.
fn is_slice(nal: &[u8]) -> Option<bool> {
    match nal_bytes(nal)? {
        (h, Some(b)) if matches!(h & 0x1f, 1 | 5) => Some(b & 0x80 != 0),
        _ => None,
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
pub fn digest_stream(data: &[u8], choice: DecoderChoice) -> Result<PictureDigest, VideoError> {
    let mut dec = H264Decoder::with(choice)?;
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
///
/// Only what changed is converted: a remote desktop mostly stands still, and
/// an H.264 decoder reproduces unchanged areas bit for bit, so each band of
/// [`BAND`] rows is compared with the previous picture (kept as I420, a
/// third of the BGRA bytes) and only the columns that differ are converted.
#[derive(Debug, Default)]
pub struct Presenter {
    bgra: Vec<u8>,
    size: (usize, usize),
    /// The last picture's planes, tightly packed: Y, then U, then V.
    prev: Vec<u8>,
    have_prev: bool,
    converted: usize,
    xmap: Vec<u32>,
    ymap: Vec<u32>,
    viewport: Option<Viewport>,
}

/// Rows compared and converted together (a macroblock row).
pub const BAND: usize = 16;

/// Columns compared together; a multiple of the SIMD width.
const SPAN: usize = 64;

impl Presenter {
    /// Converts `p` to BGRA at its own size (the colour conversion step),
    /// only where it differs from the previous picture.
    pub fn convert(&mut self, p: &Picture<'_>) -> Result<(), yuv::YuvError> {
        let (w, h) = (p.width, p.height);
        let (cw, ch) = p.chroma_size();
        let need = w * h * 4;
        if self.bgra.len() != need {
            self.bgra.resize(need, 0);
        }
        let fresh = !self.have_prev || self.size != (w, h);
        self.size = (w, h);
        self.prev.resize(w * h + 2 * cw * ch, 0);
        self.have_prev = false;
        self.converted = 0;
        let mut y0 = 0;
        while y0 < h {
            let rows = BAND.min(h - y0);
            let mut mask = if fresh {
                u128::MAX
            } else {
                self.changed(p, y0, rows)
            };
            // Each run of changed spans, converted and remembered in one go.
            while mask != 0 {
                let a = mask.trailing_zeros() as usize;
                let run = (!(mask >> a)).trailing_zeros() as usize;
                let (x0, x1) = (a * SPAN, ((a + run) * SPAN).min(w));
                if x0 < x1 {
                    self.convert_rect(p, y0, rows, x0, x1)?;
                    self.remember(p, y0, rows, x0, x1);
                    self.converted += (x1 - x0) * rows;
                }
                mask = if a + run >= 128 {
                    0
                } else {
                    mask & (u128::MAX << (a + run))
                };
            }
            y0 += rows;
        }
        self.have_prev = true;
        Ok(())
    }

    /// Pixels the last [`Self::convert`] converted.
    pub fn converted_pixels(&self) -> usize {
        self.converted
    }

    /// Which [`SPAN`]-wide columns of the band at `y0` differ from the
    /// previous picture, one bit each (8192 pixels, the protocol's widest
    /// picture, is 128 spans).
    fn changed(&self, p: &Picture<'_>, y0: usize, rows: usize) -> u128 {
        let (w, h) = self.size;
        let (cw, ch) = p.chroma_size();
        let (py, rest) = self.prev.split_at(w * h);
        let (pu, pv) = rest.split_at(cw * ch);
        let mut mask = 0u128;
        // One pass, each byte read once.
        for r in y0..y0 + rows {
            match p.y.get(r * p.y_stride..r * p.y_stride + w) {
                Some(cur) => mask |= span_mask::<SPAN>(cur, &py[r * w..(r + 1) * w]),
                None => return u128::MAX,
            }
        }
        for r in y0 / 2..(y0 + rows).div_ceil(2).min(ch) {
            for (plane, old) in [(p.u, pu), (p.v, pv)] {
                match plane.get(r * p.uv_stride..r * p.uv_stride + cw) {
                    Some(cur) => {
                        mask |= span_mask::<{ SPAN / 2 }>(cur, &old[r * cw..(r + 1) * cw]);
                    }
                    None => return u128::MAX,
                }
            }
        }
        mask
    }

    fn convert_rect(
        &mut self,
        p: &Picture<'_>,
        y0: usize,
        rows: usize,
        x0: usize,
        x1: usize,
    ) -> Result<(), yuv::YuvError> {
        let w = self.size.0;
        let img = yuv::YuvPlanarImage {
            y_plane: from(p.y, y0 * p.y_stride + x0),
            y_stride: p.y_stride as u32,
            u_plane: from(p.u, y0 / 2 * p.uv_stride + x0 / 2),
            u_stride: p.uv_stride as u32,
            v_plane: from(p.v, y0 / 2 * p.uv_stride + x0 / 2),
            v_stride: p.uv_stride as u32,
            width: (x1 - x0) as u32,
            height: rows as u32,
        };
        let out = self.bgra.get_mut((y0 * w + x0) * 4..).unwrap_or_default();
        yuv::yuv420_to_bgra(
            &img,
            out,
            (w * 4) as u32,
            yuv::YuvRange::Limited,
            yuv::YuvStandardMatrix::Bt601,
        )
    }

    /// Copies the converted region into the previous-picture planes.
    fn remember(&mut self, p: &Picture<'_>, y0: usize, rows: usize, x0: usize, x1: usize) {
        let (w, h) = self.size;
        let (cw, ch) = p.chroma_size();
        let (py, rest) = self.prev.split_at_mut(w * h);
        let (pu, pv) = rest.split_at_mut(cw * ch);
        let copy = |dst: &mut [u8], src: &[u8], at: usize, len: usize| {
            if let (Some(d), Some(s)) = (dst.get_mut(..len), src.get(at..at + len)) {
                d.copy_from_slice(s);
            }
        };
        for r in y0..y0 + rows {
            copy(&mut py[r * w + x0..], p.y, r * p.y_stride + x0, x1 - x0);
        }
        let (c0, c1) = (x0 / 2, x1.div_ceil(2).min(cw));
        for r in y0 / 2..(y0 + rows).div_ceil(2).min(ch) {
            copy(&mut pu[r * cw + c0..], p.u, r * p.uv_stride + c0, c1 - c0);
            copy(&mut pv[r * cw + c0..], p.v, r * p.uv_stride + c0, c1 - c0);
        }
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
        if (vp.w, vp.h) == (sw, sh) {
            // One to one: a straight copy per row, which the compiler vectorises.
            for (dy, src) in self.bgra.chunks_exact(src_stride).enumerate() {
                let row = &mut surface[(y0 + dy) * w..(y0 + dy + 1) * w];
                row[..x0].fill(0);
                row[x0 + pw..].fill(0);
                for (d, s) in row[x0..x0 + pw].iter_mut().zip(src.chunks_exact(4)) {
                    *d = u32::from_le_bytes([s[0], s[1], s[2], 0]);
                }
            }
            return vp;
        }
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

/// `plane` from `at` on (empty when `at` is past its end: the converter then
/// reports the size mismatch instead of this code panicking).
/// Which `N`-byte spans of two equally long rows differ, one bit each (the
/// last bit also covers a shorter tail). Whole spans compare as XOR-OR over
/// 16-byte words, which the compiler unrolls into a few SIMD instructions
/// (a memcmp call per span cost more than the conversion it saved).
#[inline(always)]
fn span_mask<const N: usize>(cur: &[u8], old: &[u8]) -> u128 {
    const { assert!(N.is_multiple_of(16), "spans are whole 16-byte words") };
    let differs = |a: &[u8; N], b: &[u8; N]| {
        let (aw, _) = a.as_chunks::<16>();
        let (bw, _) = b.as_chunks::<16>();
        aw.iter().zip(bw).fold(0u128, |acc, (x, y)| {
            acc | (u128::from_ne_bytes(*x) ^ u128::from_ne_bytes(*y))
        }) != 0
    };
    let (c, ct) = cur.as_chunks::<N>();
    let (o, ot) = old.as_chunks::<N>();
    let mut mask = 0u128;
    for (i, (a, b)) in c.iter().zip(o).enumerate() {
        if differs(a, b) {
            mask |= 1 << i.min(127);
        }
    }
    if ct != ot {
        mask |= 1 << c.len().min(127);
    }
    mask
}

fn from(plane: &[u8], at: usize) -> &[u8] {
    plane.get(at..).unwrap_or(&[])
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

    /// Planes of a `w`×`h` picture with padded strides, filled from `seed`.
    fn planes(w: usize, h: usize, seed: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>, usize, usize) {
        let (ys, us) = (w + 13, w.div_ceil(2) + 7);
        let mut s = seed | 1;
        let mut fill = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    16 + (s % 220) as u8
                })
                .collect()
        };
        let ch = h.div_ceil(2);
        (fill(ys * h), fill(us * ch), fill(us * ch), ys, us)
    }

    fn picture<'a>(
        w: usize,
        h: usize,
        (y, u, v, ys, us): &'a (Vec<u8>, Vec<u8>, Vec<u8>, usize, usize),
    ) -> Picture<'a> {
        Picture {
            width: w,
            height: h,
            y,
            y_stride: *ys,
            u,
            v,
            uv_stride: *us,
        }
    }

    #[test]
    fn only_what_changed_is_converted_and_the_result_matches_a_full_conversion() {
        let (w, h) = (203, 71);
        let mut seq = Presenter::default();
        let first = planes(w, h, 7);
        seq.convert(&picture(w, h, &first)).unwrap();
        assert_eq!(seq.converted_pixels(), w * h);

        // A few luma pixels in one band and one chroma sample in another.
        let mut second = first.clone();
        let ys = second.3;
        for (x, y) in [(70, 20), (74, 22), (200, 23)] {
            second.0[y * ys + x] ^= 0x55;
        }
        let us = second.4;
        second.2[30 * us + 3] ^= 0x11; // V at chroma row 30 = luma rows 60-61
        seq.convert(&picture(w, h, &second)).unwrap();
        let mut full = Presenter::default();
        full.convert(&picture(w, h, &second)).unwrap();
        assert_eq!(
            seq.bgra().0,
            full.bgra().0,
            "same pixels as a full conversion"
        );
        let converted = seq.converted_pixels();
        assert!(
            converted > 0 && converted <= 3 * BAND * w / 2,
            "{converted} of {}",
            w * h
        );

        // Nothing changed: nothing converted, nothing different.
        seq.convert(&picture(w, h, &second)).unwrap();
        assert_eq!(seq.converted_pixels(), 0);
        assert_eq!(seq.bgra().0, full.bgra().0);

        // Everything changed, then a new size: all converted.
        let third = planes(w, h, 99);
        seq.convert(&picture(w, h, &third)).unwrap();
        let mut full = Presenter::default();
        full.convert(&picture(w, h, &third)).unwrap();
        assert_eq!(seq.bgra().0, full.bgra().0);
        let small = planes(64, 32, 3);
        seq.convert(&picture(64, 32, &small)).unwrap();
        assert_eq!(seq.converted_pixels(), 64 * 32);
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
