//! Presenting pictures: converted to 32-bit pixels (only what changed)
//! and scaled into a surface with bars, and where a picture lands in a
//! window.

use std::ops::Range;

use nephele_protocol::monitors::Monitor;

use super::Picture;
use super::scale::Scaler;

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
    /// Size of the part of the stream shown (all of it, or one monitor).
    pub stream: (u32, u32),
    /// Where that part begins in the stream (`(0, 0)`: all of it).
    pub origin: (u32, u32),
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
            origin: (0, 0),
        }
    }

    /// Maps a window position to stream coordinates, clamped to the part
    /// shown (a pointer in the black bars sits on the nearest edge).
    pub fn to_stream(&self, px: f64, py: f64) -> (u16, u16) {
        let fx = ((px - f64::from(self.x)) / f64::from(self.w.max(1))).clamp(0.0, 1.0);
        let fy = ((py - f64::from(self.y)) / f64::from(self.h.max(1))).clamp(0.0, 1.0);
        let x = (fx * f64::from(self.stream.0))
            .floor()
            .min(f64::from(self.stream.0.saturating_sub(1)));
        let y = (fy * f64::from(self.stream.1))
            .floor()
            .min(f64::from(self.stream.1.saturating_sub(1)));
        let at = |v: f64, origin: u32| (v as u32 + origin).min(u32::from(u16::MAX)) as u16;
        (at(x, self.origin.0), at(y, self.origin.1))
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
    /// Source rows converted since the last blit (what scaling redoes).
    dirty: Range<usize>,
    scaler: Scaler,
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
                    self.dirty = if self.dirty.is_empty() {
                        y0..y0 + rows
                    } else {
                        self.dirty.start.min(y0)..self.dirty.end.max(y0 + rows)
                    };
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
    /// `width × height`), fitted by [`Viewport::fit`] and scaled with a
    /// filter ([`Scaler`]) when sizes differ. The black bars are painted
    /// every time (a surface may come back with stale contents), but
    /// nothing else outside the picture is touched.
    pub fn blit(&mut self, surface: &mut [u32], width: u32, height: u32) -> Viewport {
        self.blit_part(surface, width, height, None)
    }

    /// As [`Presenter::blit`], of `part` of the picture alone (one monitor
    /// of the desktop) where it lies inside the picture, else of all of it.
    pub fn blit_part(
        &mut self,
        surface: &mut [u32],
        width: u32,
        height: u32,
        part: Option<Monitor>,
    ) -> Viewport {
        let (sw, sh) = (self.size.0 as u32, self.size.1 as u32);
        let part = part
            .and_then(|m| m.within((sw, sh)))
            .map_or((0, 0, sw, sh), |m| {
                (
                    u32::from(m.x),
                    u32::from(m.y),
                    u32::from(m.width),
                    u32::from(m.height),
                )
            });
        let (px, py, pw, ph) = part;
        let mut vp = Viewport::fit((pw, ph), (width, height));
        vp.origin = (px, py);
        let dirty = std::mem::take(&mut self.dirty);
        let (w, h) = (width as usize, height as usize);
        if sw == 0 || sh == 0 || surface.len() < w * h {
            return vp;
        }
        let (x0, y0, vw, vh) = (vp.x as usize, vp.y as usize, vp.w as usize, vp.h as usize);
        surface[..y0 * w].fill(0);
        surface[(y0 + vh) * w..w * h].fill(0);
        // The rows to copy: the picture's own where one to one (a stride
        // of the whole picture, from the part's corner), else the scaler's.
        let src = if (vp.w, vp.h) == (pw, ph) {
            let at = (py as usize * sw as usize + px as usize) * 4;
            Some((&self.bgra[at..], sw as usize * 4))
        } else {
            self.scaler
                .scale_part(&self.bgra, (sw, sh), part, (vp.w, vp.h), dirty)
                .map(|out| (out, vw * 4))
        };
        let Some((src, stride)) = src else {
            surface[y0 * w..(y0 + vh) * w].fill(0);
            return vp;
        };
        // A straight copy per row, which the compiler vectorises.
        for dy in 0..vh {
            let src = &src[dy * stride..][..vw * 4];
            let row = &mut surface[(y0 + dy) * w..(y0 + dy + 1) * w];
            row[..x0].fill(0);
            row[x0 + vw..].fill(0);
            for (d, s) in row[x0..x0 + vw].iter_mut().zip(src.chunks_exact(4)) {
                *d = u32::from_le_bytes([s[0], s[1], s[2], 0]);
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

    /// A presenter that converted a `w`×`h` picture of luma `y` and neutral
    /// chroma (greys).
    fn grey_chroma(w: usize, h: usize, y: &[u8]) -> Presenter {
        let chroma = vec![128u8; w * h / 4];
        let pic = Picture {
            width: w,
            height: h,
            y,
            y_stride: w,
            u: &chroma,
            v: &chroma,
            uv_stride: w / 2,
        };
        let mut p = Presenter::default();
        p.convert(&pic).unwrap();
        p
    }

    /// One monitor of a two-monitor desktop (left black, right white)
    /// shown alone, one to one and scaled: only its pixels show, and the
    /// window's corner maps to the monitor's corner on the desktop.
    #[test]
    fn one_monitor_is_shown_alone_and_maps_the_pointer() {
        let (w, h) = (128usize, 32usize);
        let y: Vec<u8> = (0..w * h)
            .map(|i| if i % w < 64 { 16 } else { 235 })
            .collect();
        let p = &mut grey_chroma(w, h, &y);
        let right = Monitor {
            x: 64,
            y: 0,
            width: 64,
            height: 32,
        };
        for (sw, sh) in [(64u32, 32u32), (160, 80), (32, 16)] {
            let mut surface = vec![0u32; (sw * sh) as usize];
            let vp = p.blit_part(&mut surface, sw, sh, Some(right));
            assert_eq!((vp.x, vp.y, vp.w, vp.h), (0, 0, sw, sh));
            // Enlarged, the first column's filter reaches half a pixel into
            // the neighbouring monitor, as a scale of the whole would.
            let dark = surface
                .chunks_exact(sw as usize)
                .flat_map(|row| &row[1..])
                .filter(|&&px| px & 0xff < 200)
                .count();
            assert_eq!(dark, 0, "{sw}x{sh}: {dark} pixels of the other monitor");
            assert_eq!(vp.to_stream(0.0, 0.0), (64, 0));
            assert_eq!(
                vp.to_stream(f64::from(sw) - 0.1, f64::from(sh) - 0.1),
                (127, 31)
            );
        }
        // A monitor past the picture: all of it, as without one.
        let gone = Monitor { x: 200, ..right };
        let mut surface = vec![0u32; 128 * 32];
        let vp = p.blit_part(&mut surface, 128, 32, Some(gone));
        assert_eq!((vp.stream, vp.origin), ((128, 32), (0, 0)));
    }

    #[test]
    fn presenter_converts_and_blits_with_bars() {
        let (w, h) = (64usize, 32usize);
        // Limited-range white picture.
        let mut p = grey_chroma(w, h, &vec![235u8; w * h]);
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
