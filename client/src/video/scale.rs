//! Filtered scaling of the converted picture into the window's picture
//! area, redoing only the rows that changed.
//!
//! The filtering is `fast_image_resize`'s SIMD convolution with a bilinear
//! (triangle) kernel, widened to each output pixel's footprint when
//! shrinking, so every source pixel under it is averaged in (as libswscale's
//! bilinear does): text stays legible both ways instead of the stair-steps
//! and dropped strokes of nearest-neighbour.

use std::ops::Range;

use fast_image_resize::images::{CroppedImage, CroppedImageMut, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// Source size, part (`x, y, width, height`) and output size.
type Made = ((u32, u32), (u32, u32, u32, u32), (u32, u32));

/// The scaled picture, kept between frames: only output rows whose filter
/// footprint covers a changed source row are computed again.
#[derive(Default)]
pub struct Scaler {
    resizer: Resizer,
    out: Vec<u8>,
    /// The source size, the part of it scaled and the output size the kept
    /// picture was made for.
    made_for: Option<Made>,
}

// By hand: the kept picture (megabytes) stays out of debug output.
impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler")
            .field("made_for", &self.made_for)
            .finish_non_exhaustive()
    }
}

impl Scaler {
    /// Scales the part `(x, y, width, height)` of the BGRA picture `src`
    /// (`from`, tightly packed; the part is all of it, or one monitor of a
    /// desktop) to `to`, recomputing only what source rows `dirty` affect
    /// (all of it when the sizes changed). The part is scaled as if it
    /// were the whole picture: the filter never reads past its edges (a
    /// monitor shown alone takes nothing of its neighbour). Returns the
    /// output, BGRA, tightly packed, or `None` when the
    /// buffers do not match the sizes (nothing is drawn then).
    pub fn scale_part(
        &mut self,
        src: &[u8],
        from: (u32, u32),
        part: (u32, u32, u32, u32),
        to: (u32, u32),
        dirty: Range<usize>,
    ) -> Option<&[u8]> {
        let ((sw, sh), (dw, dh)) = (from, to);
        let (px, py, pw, ph) = part;
        if sw == 0 || sh == 0 || dw == 0 || dh == 0 || pw == 0 || ph == 0 {
            return None;
        }
        if px + pw > sw || py + ph > sh {
            return None;
        }
        let made_for = (from, part, to);
        let rows = if self.made_for != Some(made_for) {
            self.out.resize(dw as usize * dh as usize * 4, 0);
            self.made_for = Some(made_for);
            0..dh
        } else {
            let top = py as usize;
            let dirty = dirty.start.saturating_sub(top).min(ph as usize)
                ..dirty.end.saturating_sub(top).min(ph as usize);
            affected(dirty, ph, dh)
        };
        if rows.is_empty() {
            return Some(&self.out);
        }
        // The source rows of the part that map onto `rows`, fractionally:
        // the filter then places every output row exactly where a scale of
        // the whole part would, and reads beyond the band where its
        // footprint reaches, but never beyond the part.
        let ratio = f64::from(ph) / f64::from(dh);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .use_alpha(false)
            .crop(
                0.0,
                f64::from(rows.start) * ratio,
                f64::from(pw),
                f64::from(rows.end - rows.start) * ratio,
            );
        let whole = ImageRef::new(sw, sh, src, PixelType::U8x4).ok()?;
        let src = CroppedImage::new(&whole, px, py, pw, ph).ok()?;
        let mut dst = Image::from_slice_u8(dw, dh, &mut self.out, PixelType::U8x4).ok()?;
        let mut band =
            CroppedImageMut::new(&mut dst, 0, rows.start, dw, rows.end - rows.start).ok()?;
        self.resizer.resize(&src, &mut band, &options).ok()?;
        Some(&self.out)
    }
}

/// Output rows (of `dh`) whose filter footprint touches source rows `dirty`
/// (of `sh`): the footprint is at most one source pixel past the mapped
/// edge when enlarging, and one output pixel's span when shrinking.
fn affected(dirty: Range<usize>, sh: u32, dh: u32) -> Range<u32> {
    if dirty.is_empty() {
        return 0..0;
    }
    let margin = (f64::from(sh) / f64::from(dh)).ceil().max(1.0) + 1.0;
    let scale = f64::from(dh) / f64::from(sh);
    let lo = ((dirty.start as f64 - margin) * scale).floor().max(0.0) as u32;
    let hi = ((dirty.end as f64 + margin) * scale)
        .ceil()
        .min(f64::from(dh)) as u32;
    lo.min(dh)..hi.max(lo.min(dh))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Scaler {
        /// All of `src`.
        fn scale(
            &mut self,
            src: &[u8],
            from: (u32, u32),
            to: (u32, u32),
            dirty: Range<usize>,
        ) -> Option<&[u8]> {
            self.scale_part(src, from, (0, 0, from.0, from.1), to, dirty)
        }
    }

    fn noise(w: usize, h: usize, seed: u32) -> Vec<u8> {
        let mut s = seed | 1;
        (0..w * h * 4)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as u8
            })
            .collect()
    }

    /// Scaling only the rows a change touches gives the pixels scaling the
    /// whole picture again gives, enlarging and shrinking.
    #[test]
    fn partial_rescale_matches_a_full_one() {
        for (from, to) in [
            ((160, 90), (243, 137)),
            ((192, 108), (128, 72)),
            ((64, 48), (63, 47)),
        ] {
            let (w, h) = (from.0 as usize, from.1 as usize);
            let mut pic = noise(w, h, 7);
            let mut kept = Scaler::default();
            kept.scale(&pic, from, to, 0..h).unwrap();
            // Change rows 40..45 (or the last few on small pictures).
            let rows = (h - 8).min(40)..(h - 3).min(45);
            for r in rows.clone() {
                for b in &mut pic[r * w * 4..(r + 1) * w * 4] {
                    *b = b.wrapping_add(91);
                }
            }
            let partial = kept.scale(&pic, from, to, rows).unwrap().to_vec();
            let full = Scaler::default()
                .scale(&pic, from, to, 0..h)
                .unwrap()
                .to_vec();
            let worst = partial.iter().zip(&full).map(|(a, b)| a.abs_diff(*b)).max();
            // The band's weights come from a fractional crop offset, so
            // their fixed-point rounding can differ by one step from the
            // whole picture's: a level of 1 in 255, never more.
            assert!(worst <= Some(1), "{from:?} -> {to:?}: off by {worst:?}");
        }
    }

    /// One monitor's part of a desktop scales as if it were a picture of
    /// its own (nothing of its neighbour at its edge), and a change
    /// outside the part recomputes nothing in it.
    #[test]
    fn a_part_scales_on_its_own() {
        let (w, h) = (160usize, 60usize);
        // Left half dark, right half noise.
        let mut pic = noise(w, h, 3);
        for r in 0..h {
            pic[r * w * 4..(r * w + w / 2) * 4].fill(0);
        }
        let part = (80, 0, 80, 60);
        let mut kept = Scaler::default();
        let out = kept
            .scale_part(&pic, (160, 60), part, (120, 90), 0..h)
            .unwrap()
            .to_vec();
        // The right half copied out and scaled as a picture of its own.
        let alone: Vec<u8> = pic
            .chunks_exact(w * 4)
            .flat_map(|row| row[w / 2 * 4..].iter().copied())
            .collect();
        let expected = Scaler::default()
            .scale(&alone, (80, 60), (120, 90), 0..h)
            .unwrap()
            .to_vec();
        let worst = out.iter().zip(&expected).map(|(a, b)| a.abs_diff(*b)).max();
        assert_eq!(worst, Some(0), "the part differs from itself alone");
        // Rows changed inside the part: as a fresh scale of the part.
        for r in 20..24 {
            for b in &mut pic[(r * w + 100) * 4..(r * w + 120) * 4] {
                *b = b.wrapping_add(77);
            }
        }
        let partial = kept
            .scale_part(&pic, (160, 60), part, (120, 90), 20..24)
            .unwrap()
            .to_vec();
        let full = Scaler::default()
            .scale_part(&pic, (160, 60), part, (120, 90), 0..h)
            .unwrap()
            .to_vec();
        let worst = partial.iter().zip(&full).map(|(a, b)| a.abs_diff(*b)).max();
        assert!(worst <= Some(1), "off by {worst:?}");
        // A part past the picture is refused.
        assert!(
            kept.scale_part(&pic, (160, 60), (100, 0, 80, 60), (10, 10), 0..h)
                .is_none()
        );
    }

    /// A sharp black/white edge gains intermediate levels (no stair-steps),
    /// and nothing changes when nothing is dirty.
    #[test]
    fn edges_are_filtered_both_ways() {
        let (w, h) = (64usize, 32usize);
        let pic: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let v = if (i % w) * 3 / w == 1 { 255 } else { 0 };
                [v, v, v, 255]
            })
            .collect();
        for to in [(150, 75), (40, 20)] {
            let mut s = Scaler::default();
            let out = s.scale(&pic, (64, 32), to, 0..h).unwrap().to_vec();
            let row = &out[(to.1 as usize / 2) * to.0 as usize * 4..][..to.0 as usize * 4];
            let levels: Vec<u8> = row.chunks_exact(4).map(|p| p[1]).collect();
            assert!(
                levels.iter().any(|&v| v > 20 && v < 235),
                "{to:?}: {levels:?}"
            );
            let again = s.scale(&pic, (64, 32), to, 0..0).unwrap();
            assert_eq!(again, &out[..]);
        }
    }

    #[test]
    fn affected_rows_cover_the_footprint() {
        assert_eq!(affected(0..0, 720, 1080), 0..0);
        let r = affected(100..116, 720, 1080);
        assert!(r.start <= 148 && r.end >= 176 && r.end <= 1080, "{r:?}");
        let r = affected(700..720, 720, 360);
        assert!(r.start <= 349 && r.end == 360, "{r:?}");
    }
}
