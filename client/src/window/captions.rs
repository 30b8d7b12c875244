//! The words drawn over the picture — the banner across the top and the
//! statistics box below it — in the launcher's font (DejaVu Sans through
//! egui) at the window's scale factor, any language's characters included.
//!
//! Text is laid out and rasterised only when it, the window's width or its
//! scale changes, into a coverage mask kept here; each frame then only
//! darkens the box's picture and lays the mask's white over it, which
//! allocates nothing and costs the box's area.

use egui_software_backend::{BufferMutRef, ColorFieldOrder, EguiSoftwareRender};

/// Text size of the banner and of the statistics, in points.
const BANNER_PT: f32 = 17.0;
const STATS_PT: f32 = 13.0;

/// Space around the text, in points.
const PAD_PT: f32 = 8.0;

/// The most lines a banner wraps onto; more is cut with "…".
const BANNER_LINES: usize = 4;

/// The widest the statistics box grows, in points.
const STATS_MAX_PT: f32 = 560.0;

/// A box of words, rasterised: how much white covers each pixel.
#[derive(Default)]
struct Mask {
    /// What was rasterised: the lines, the width it was laid out for and
    /// the scale factor's bits.
    lines: Vec<String>,
    laid_for: (usize, u32),
    /// Coverage, 0–255, row-major, `size.0 × size.1`.
    coverage: Vec<u8>,
    size: (usize, usize),
}

/// The banner's and the statistics' text, ready to lay over pictures.
pub(super) struct Captions {
    ctx: egui::Context,
    render: EguiSoftwareRender,
    /// Where egui draws before the coverage is taken (reused).
    scratch: Vec<u32>,
    banner: Mask,
    stats: Mask,
}

impl Captions {
    pub fn new() -> Self {
        let ctx = egui::Context::default();
        ctx.set_fonts(super::ui::fonts());
        Self {
            ctx,
            render: EguiSoftwareRender::new(ColorFieldOrder::Bgra),
            scratch: Vec::new(),
            banner: Mask::default(),
            stats: Mask::default(),
        }
    }

    /// Draws `text` centred on a darkened strip across the top of a
    /// `width × height` surface (0RGB pixels, row-major), wrapped onto up
    /// to four lines; returns the strip's height.
    pub fn banner(
        &mut self,
        surface: &mut [u32],
        (width, height): (usize, usize),
        scale: f32,
        text: &str,
    ) -> usize {
        if width == 0 || height == 0 || surface.len() < width * height {
            return 0;
        }
        if !self.banner.holds(&[text], width, scale) {
            let cap = lines_height(BANNER_PT, BANNER_LINES, scale);
            self.rasterise((width, cap.min(height)), scale, |ui| {
                let mut job = egui::text::LayoutJob::single_section(
                    text.to_string(),
                    egui::TextFormat::simple(egui::FontId::proportional(BANNER_PT), WHITE),
                );
                job.halign = egui::Align::Center;
                job.wrap.max_rows = BANNER_LINES;
                job.wrap.max_width = ui.available_width();
                ui.vertical_centered(|ui| ui.label(job));
            });
            // The strip spans the surface, whatever the text's width.
            self.banner
                .keep(&[text], (width, scale), &self.scratch, width, true);
        }
        self.banner.lay(surface, (width, height), (0, 0))
    }

    /// Draws `lines` in a darkened box at the top left, from row `top`
    /// (below a banner): the statistics overlay.
    pub fn stats(
        &mut self,
        surface: &mut [u32],
        (width, height): (usize, usize),
        scale: f32,
        top: usize,
        lines: &[String],
    ) {
        if width == 0 || height <= top || surface.len() < width * height || lines.is_empty() {
            return;
        }
        if !self.stats.holds(lines, width, scale) {
            let widest = ((STATS_MAX_PT * scale) as usize).min(width);
            let cap = lines_height(STATS_PT, lines.len(), scale);
            self.rasterise((widest, cap.min(height)), scale, |ui| {
                ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
                for line in lines {
                    ui.label(egui::RichText::new(line).size(STATS_PT).color(WHITE));
                }
            });
            self.stats
                .keep(lines, (width, scale), &self.scratch, widest, false);
        }
        self.stats.lay(surface, (width, height), (0, top));
    }

    /// Runs `build` on a black `size` (pixels) canvas with a margin and
    /// rasterises it into `scratch`.
    fn rasterise(
        &mut self,
        (width, height): (usize, usize),
        scale: f32,
        build: impl FnOnce(&mut egui::Ui),
    ) {
        let (width, height) = (width.max(1), height.max(1));
        let points = egui::vec2(width as f32, height as f32) / scale;
        let mut input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, points)),
            ..Default::default()
        };
        input
            .viewports
            .entry(egui::ViewportId::ROOT)
            .or_default()
            .native_pixels_per_point = Some(scale);
        let mut build = Some(build);
        let out = self.ctx.run_ui(input, |ui| {
            egui::Frame::NONE.inner_margin(PAD_PT).show(ui, |ui| {
                if let Some(b) = build.take() {
                    b(ui);
                }
            });
        });
        self.scratch.clear();
        self.scratch.resize(width * height, 0);
        let shapes = self.ctx.tessellate(out.shapes, out.pixels_per_point);
        let mut target =
            BufferMutRef::new(bytemuck::cast_slice_mut(&mut self.scratch), width, height);
        self.render.render(
            &mut target,
            &shapes,
            &out.textures_delta,
            out.pixels_per_point,
        );
    }
}

/// The text colour; the mask is taken from its coverage on black.
const WHITE: egui::Color32 = egui::Color32::WHITE;

/// Pixels that `lines` lines of `pt`-point text and the margin can take
/// at most (the mask is then cut to what the text covers).
fn lines_height(pt: f32, lines: usize, scale: f32) -> usize {
    // DejaVu Sans's line is about 1.17 of its size, and egui puts 4
    // points between labels: room enough for both and the margins.
    (((pt * 1.5 + 6.0) * lines as f32 + 3.0 * PAD_PT) * scale).ceil() as usize
}

impl Mask {
    /// Whether the mask is of `lines` laid out for `width` at `scale`.
    fn holds<S: AsRef<str>>(&self, lines: &[S], width: usize, scale: f32) -> bool {
        self.laid_for == (width, scale.to_bits())
            && self.lines.len() == lines.len()
            && self.lines.iter().zip(lines).all(|(a, b)| a == b.as_ref())
    }

    /// Takes the coverage of `canvas` (rows `stride` wide) down to the text
    /// and a margin below it, and across to the text and a margin right of
    /// it unless `full_width`: `lines` laid out for a surface `width` wide
    /// at `scale`.
    fn keep<S: AsRef<str>>(
        &mut self,
        lines: &[S],
        (width, scale): (usize, f32),
        canvas: &[u32],
        stride: usize,
        full_width: bool,
    ) {
        self.lines.clear();
        self.lines
            .extend(lines.iter().map(|l| l.as_ref().to_string()));
        self.laid_for = (width, scale.to_bits());
        let stride = stride.max(1);
        let rows = canvas.len() / stride;
        let pad = (PAD_PT * scale).ceil() as usize;
        let (mut right, mut bottom) = (0, 0);
        for (y, row) in canvas.chunks_exact(stride).enumerate() {
            if let Some(x) = row.iter().rposition(|&p| p != 0) {
                right = right.max(x + 1);
                bottom = y + 1;
            }
        }
        let h = if bottom == 0 {
            0
        } else {
            (bottom + pad).min(rows)
        };
        let w = if full_width {
            stride
        } else {
            (right + pad).min(stride)
        };
        self.size = (w, h);
        self.coverage.clear();
        self.coverage.extend(
            canvas
                .chunks_exact(stride.max(1))
                .take(h)
                .flat_map(|row| row.iter().take(w))
                // White on black: any channel is the coverage.
                .map(|p| (p & 0xff) as u8),
        );
    }

    /// Darkens the mask's box at `at` and lays its white over it, clipped
    /// to the surface; returns the box's bottom row.
    fn lay(
        &self,
        surface: &mut [u32],
        (width, height): (usize, usize),
        at: (usize, usize),
    ) -> usize {
        let (w, h) = self.size;
        if w == 0 || at.0 >= width {
            return at.1;
        }
        let w_in = w.min(width - at.0);
        for (row, cover) in self.coverage.chunks_exact(w).enumerate().take(h) {
            let y = at.1 + row;
            if y >= height {
                return height;
            }
            let start = y * width + at.0;
            for (p, &c) in surface[start..start + w_in].iter_mut().zip(cover) {
                let dark = (*p >> 2) & 0x003f_3f3f;
                *p = over(dark, u32::from(c));
            }
        }
        (at.1 + h).min(height)
    }
}

/// White laid over `under` (0RGB) with `cover` (0–255).
fn over(under: u32, cover: u32) -> u32 {
    let ch = |shift: u32| {
        let u = (under >> shift) & 0xff;
        (u + (255 - u) * cover / 255) << shift
    };
    ch(16) | ch(8) | ch(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREY: u32 = 0x0080_8080;
    const DARK: u32 = 0x0020_2020;

    /// Pixels brighter than the darkened picture: the text's.
    fn lit(s: &[u32]) -> usize {
        s.iter().filter(|&&p| p != GREY && p & 0xff > 0x20).count()
    }

    #[test]
    fn the_banner_darkens_the_top_and_writes_the_text_there_only() {
        let (w, h) = (640, 360);
        let mut c = Captions::new();
        let mut s = vec![GREY; w * h];
        let rows = c.banner(&mut s, (w, h), 1.0, "Paused — press a key to resume");
        assert!((20..=60).contains(&rows), "one line: {rows} rows");
        assert!(lit(&s[..rows * w]) > 200, "text in the strip");
        // The strip holds darkened picture and text only; below it the
        // picture is untouched.
        assert!(s[..rows * w].iter().all(|&p| p == DARK || p & 0xff > 0x20));
        assert!(s[rows * w..].iter().all(|&p| p == GREY));
        // Centred: as much text left of the middle as right of it, roughly.
        let half = |range: std::ops::Range<usize>| {
            (0..rows)
                .map(|y| lit(&s[y * w + range.start..y * w + range.end]))
                .sum::<usize>()
        };
        let (l, r) = (half(0..w / 2), half(w / 2..w));
        assert!(l * 2 > r && r * 2 > l, "left {l}, right {r}");
        // A long text wraps, onto four lines at most.
        let mut t = vec![GREY; w * h];
        let long = c.banner(&mut t, (w, h), 1.0, &"word ".repeat(200));
        assert!(
            long > 2 * rows && long <= lines_height(BANNER_PT, 4, 1.0),
            "{rows} {long}"
        );
        assert!(t[long * w..].iter().all(|&p| p == GREY));
        // Too small a surface is fine.
        c.banner(&mut [0u32; 4], (2, 2), 1.0, "hello");
        assert_eq!(c.banner(&mut [0u32; 4], (0, 0), 1.0, "hello"), 0);
    }

    #[test]
    fn any_language_is_drawn_and_twice_the_scale_twice_the_size() {
        let (w, h) = (800, 400);
        let mut c = Captions::new();
        let mut drawn = |text: &str, scale: f32| {
            let mut s = vec![GREY; w * h];
            let rows = c.banner(&mut s, (w, h), scale, text);
            (lit(&s), rows)
        };
        // The umlauts' dots are drawn: more ink than the same letters
        // without them (no "?" stands in for them).
        let (plain, _) = drawn("Gruss aus Koln und Munchen", 1.0);
        let (umlauts, _) = drawn("Gruß aus Köln und München", 1.0);
        let (question, _) = drawn("Gru? aus K?ln und M?nchen", 1.0);
        assert!(
            umlauts > plain && umlauts != question,
            "{plain} {umlauts} {question}"
        );
        // At scale 2 the glyphs are rasterised twice as large, not blown up.
        let (ink1, rows1) = drawn("Reconnecting", 1.0);
        let (ink2, rows2) = drawn("Reconnecting", 2.0);
        assert!(
            rows2 >= 2 * rows1 - 2 && rows2 <= 2 * rows1 + 2,
            "{rows1} {rows2}"
        );
        assert!(ink2 > 3 * ink1, "{ink1} {ink2}");
    }

    #[test]
    fn the_statistics_stay_in_their_box_below_the_banner() {
        let (w, h) = (640, 360);
        let mut c = Captions::new();
        let mut s = vec![GREY; w * h];
        let lines = vec!["fps 60.0".to_string(), "rtt 5.1 ms — loss 0.0%".to_string()];
        c.stats(&mut s, (w, h), 1.0, 32, &lines);
        assert!(lit(&s) > 100, "text drawn");
        // Above the box and right of it, the picture is untouched.
        assert!(s[..32 * w].iter().all(|&p| p == GREY));
        let right_of_box = (32..h).all(|y| s[y * w + 300..(y + 1) * w].iter().all(|&p| p == GREY));
        assert!(right_of_box);
        // New figures are drawn anew; the same figures again change nothing.
        let before = s.clone();
        c.stats(&mut s, (w, h), 1.0, 32, &lines);
        let mut again = before.clone();
        c.stats(&mut again, (w, h), 1.0, 32, &["fps 12.0".to_string()]);
        assert_ne!(again, before);
        // Eight lines at scale 2 fit whole, with a margin below the last.
        let (w, h) = (1280, 720);
        let mut s = vec![GREY; w * h];
        let eight: Vec<String> = (0..8).map(|i| format!("line {i} — jqgy")).collect();
        c.stats(&mut s, (w, h), 2.0, 0, &eight);
        let row = |y: usize| &s[y * w..(y + 1) * w];
        let boxed = (0..h).take_while(|&y| row(y)[0] == DARK).count();
        let last_text = (0..boxed).rev().find(|&y| lit(row(y)) > 0).unwrap();
        assert!(boxed - last_text > 8, "box {boxed}, text to {last_text}");
        // Nothing to draw, or too small a surface, is fine.
        c.stats(&mut s, (w, h), 1.0, 0, &[]);
        c.stats(&mut [0u32; 4], (2, 2), 1.0, 1, &lines);
    }
}
