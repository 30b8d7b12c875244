//! Filtered scaling of the converted picture into the window's picture
//! area, redoing only the rows that changed.
//!
//! The filtering is `fast_image_resize`'s SIMD convolution with a bilinear
//! (triangle) kernel, widened to each output pixel's footprint when
//! shrinking, so every source pixel under it is averaged in (as libswscale's
//! bilinear does): text stays legible both ways instead of the stair-steps
//! and dropped strokes of nearest-neighbour.

use std::ops::Range;

use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// The scaled picture, kept between frames: only output rows whose filter
/// footprint covers a changed source row are computed again.
#[derive(Default)]
pub struct Scaler {
    resizer: Resizer,
    out: Vec<u8>,
    /// Source and output sizes the kept picture was made for.
    made_for: Option<((u32, u32), (u32, u32))>,
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
    /// Scales the BGRA picture `src` (`from`, tightly packed) to `to`,
    /// recomputing only what source rows `dirty` affect (all of it when the
    /// sizes changed). Returns the output, BGRA, tightly packed, or `None`
    /// when the buffers do not match the sizes (nothing is drawn then).
    pub fn scale(
        &mut self,
        src: &[u8],
        from: (u32, u32),
        to: (u32, u32),
        dirty: Range<usize>,
    ) -> Option<&[u8]> {
        let ((sw, sh), (dw, dh)) = (from, to);
        if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
            return None;
        }
        let rows = if self.made_for != Some((from, to)) {
            self.out.resize(dw as usize * dh as usize * 4, 0);
            self.made_for = Some((from, to));
            0..dh
        } else {
            affected(dirty, sh, dh)
        };
        if rows.is_empty() {
            return Some(&self.out);
        }
        // The source rows that map onto `rows`, fractionally: the filter
        // then places every output row exactly where a full-picture scale
        // would, and reads beyond the crop where its footprint reaches.
        let ratio = f64::from(sh) / f64::from(dh);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .use_alpha(false)
            .crop(
                0.0,
                f64::from(rows.start) * ratio,
                f64::from(sw),
                f64::from(rows.end - rows.start) * ratio,
            );
        let src = ImageRef::new(sw, sh, src, PixelType::U8x4).ok()?;
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
