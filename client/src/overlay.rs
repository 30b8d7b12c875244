//! Banners drawn over the picture in the window: what the session is doing
//! (a pause coming, paused, resuming, reconnecting), so nobody mistakes a
//! paused or reconnecting session for a frozen one.

/// Colour of the banner's text (0RGB, as the surface holds pixels).
const TEXT: u32 = 0x00ff_ffff;

/// The ASCII bytes a character is drawn as: "…" as "...", dashes as "-",
/// anything else outside ASCII as "?". No allocation: this runs per redraw.
fn ascii(c: char) -> impl Iterator<Item = u8> {
    let (bytes, n) = match c {
        '…' => ([b'.'; 3], 3),
        '—' | '–' => ([b'-', 0, 0], 1),
        '·' => ([b'|', 0, 0], 1),
        c if c.is_ascii() => ([c as u8, 0, 0], 1),
        _ => ([b'?', 0, 0], 1),
    };
    bytes.into_iter().take(n)
}

/// Darkens rows `top..bottom`, columns `left..right` to a quarter: the
/// picture shows through, text over it reads.
fn darken(
    surface: &mut [u32],
    width: usize,
    (left, top, right, bottom): (usize, usize, usize, usize),
) {
    for row in surface.chunks_exact_mut(width).take(bottom).skip(top) {
        for p in row.iter_mut().take(right).skip(left) {
            *p = (*p >> 2) & 0x003f_3f3f;
        }
    }
}

/// Draws one line of text from `(x0, y0)`, glyphs 8·`scale` px square,
/// clipped to the surface and to `max_chars`.
fn text_line(
    surface: &mut [u32],
    width: usize,
    (x0, y0): (usize, usize),
    scale: usize,
    max_chars: usize,
    text: &str,
) {
    let glyph = 8 * scale;
    let height = surface.len() / width.max(1);
    let bytes = text.chars().flat_map(ascii).take(max_chars);
    for (i, b) in bytes.enumerate() {
        let bitmap = font8x8::legacy::BASIC_LEGACY[usize::from(b & 0x7f)];
        for (gy, bits) in bitmap.iter().enumerate() {
            for gx in (0..8).filter(|gx| bits & (1 << gx) != 0) {
                for sy in 0..scale {
                    let y = y0 + gy * scale + sy;
                    let x = x0 + i * glyph + gx * scale;
                    if y >= height || x >= width {
                        continue;
                    }
                    let row = &mut surface[y * width..(y + 1) * width];
                    for px in row.iter_mut().skip(x).take(scale) {
                        *px = TEXT;
                    }
                }
            }
        }
    }
}

/// Glyph scale for a surface this wide: readable on large windows.
fn scale_for(width: usize) -> usize {
    if width >= 1600 { 3 } else { 2 }
}

/// The most lines a banner wraps onto.
const BANNER_LINES: usize = 4;

/// Splits `text` at spaces into at most [`BANNER_LINES`] lines of at most
/// `fits` drawn characters: byte ranges into `text`, and how many.
fn wrap(text: &str, fits: usize) -> ([(usize, usize); BANNER_LINES], usize) {
    let mut lines = [(0, 0); BANNER_LINES];
    let mut n = 0;
    let (mut start, mut width, mut end) = (0, 0, 0);
    let mut at = 0;
    for word in text.split(' ') {
        let w = word.chars().flat_map(ascii).count();
        if width > 0 && width + 1 + w > fits {
            if n + 1 == BANNER_LINES {
                break;
            }
            lines[n] = (start, end);
            n += 1;
            (start, width) = (at, 0);
        }
        width += usize::from(width > 0) + w;
        end = at + word.len();
        at = end + 1;
    }
    lines[n] = (start, end.max(start));
    (lines, n + 1)
}

/// Draws `text` on a darkened strip across the top of a `width × height`
/// surface (0RGB pixels, row-major), centred and wrapped at spaces onto up
/// to four lines; returns the strip's height.
pub fn banner(surface: &mut [u32], width: usize, height: usize, text: &str) -> usize {
    if width == 0 || height == 0 || surface.len() < width * height {
        return 0;
    }
    let surface = &mut surface[..width * height];
    let scale = scale_for(width);
    let glyph = 8 * scale;
    let pad = glyph / 2;
    let fits = (width.saturating_sub(2 * pad) / glyph).max(1);
    let (lines, n) = wrap(text, fits);
    let leading = glyph + pad;
    let rows = (n * leading + pad).min(height);
    darken(surface, width, (0, 0, width, rows));
    for (i, &(a, b)) in lines.iter().take(n).enumerate() {
        let line = text.get(a..b).unwrap_or_default();
        let len = line.chars().flat_map(ascii).count().min(fits);
        let x0 = width.saturating_sub(len * glyph) / 2;
        let y = pad + i * leading;
        text_line(
            &mut surface[..rows * width],
            width,
            (x0, y),
            scale,
            fits,
            line,
        );
    }
    rows
}

/// Draws `lines` in a darkened box at the top left, from row `top` (below
/// a banner): the statistics overlay.
pub fn panel(surface: &mut [u32], width: usize, height: usize, top: usize, lines: &[String]) {
    if width == 0 || height == 0 || surface.len() < width * height || lines.is_empty() {
        return;
    }
    let surface = &mut surface[..width * height];
    let scale = scale_for(width) - 1;
    let glyph = 8 * scale;
    let (pad, leading) = (glyph, glyph + glyph / 2);
    let longest = lines
        .iter()
        .map(|l| l.chars().flat_map(ascii).count())
        .max()
        .unwrap_or(0);
    let right = (2 * pad + longest * glyph).min(width);
    let bottom = (top + 2 * pad + lines.len() * leading).min(height);
    darken(surface, width, (0, top, right, bottom));
    let fits = right.saturating_sub(2 * pad) / glyph;
    for (i, line) in lines.iter().enumerate() {
        let y = top + pad + i * leading;
        if y + glyph > bottom {
            break;
        }
        text_line(surface, width, (pad, y), scale, fits, line);
    }
}

/// Draws a pointer shape (straight RGBA) with its top left at `at`
/// (window pixels; parts outside the surface are left out), blended over
/// what is there.
pub fn pointer(
    surface: &mut [u32],
    width: usize,
    height: usize,
    at: (i64, i64),
    shape: &nephele_protocol::cursor::Shape,
) {
    let (sw, sh) = (usize::from(shape.width), usize::from(shape.height));
    for sy in 0..sh {
        let Ok(y) = usize::try_from(at.1 + sy as i64) else {
            continue;
        };
        if y >= height {
            break;
        }
        for sx in 0..sw {
            let Ok(x) = usize::try_from(at.0 + sx as i64) else {
                continue;
            };
            if x >= width {
                break;
            }
            let Some(&[r, g, b, a]) = shape.rgba.get((sy * sw + sx) * 4..(sy * sw + sx) * 4 + 4)
            else {
                return;
            };
            if a == 0 {
                continue;
            }
            let Some(d) = surface.get_mut(y * width + x) else {
                return;
            };
            let blend = |over: u8, under: u32| {
                let (o, u, a) = (u32::from(over), under & 0xff, u32::from(a));
                (o * a + u * (255 - a)) / 255
            };
            *d = blend(r, *d >> 16) << 16 | blend(g, *d >> 8) << 8 | blend(b, *d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_blends_over_the_picture_and_is_cut_at_the_edges() {
        // 2x2: opaque red, transparent, half-white, opaque blue.
        let shape = nephele_protocol::cursor::Shape {
            serial: 1,
            width: 2,
            height: 2,
            hot_x: 0,
            hot_y: 0,
            rgba: vec![
                255, 0, 0, 255, 9, 9, 9, 0, 255, 255, 255, 128, 0, 0, 255, 255,
            ],
        };
        let mut s = vec![0x0000_0000u32; 3 * 3];
        pointer(&mut s, 3, 3, (1, 1), &shape);
        assert_eq!(s[4], 0x00ff_0000, "opaque red");
        assert_eq!(s[5], 0, "transparent leaves the picture");
        assert_eq!(s[7], 0x0080_8080, "half white over black");
        assert_eq!(s[8], 0x0000_00ff, "opaque blue");
        // Hanging off the top left and bottom right: no panic, cut.
        let mut s = vec![0u32; 4];
        pointer(&mut s, 2, 2, (-1, -1), &shape);
        assert_eq!(s[0], 0x0000_00ff);
        pointer(&mut s, 2, 2, (1, 1), &shape);
        assert_eq!(s[3], 0x00ff_0000);
    }

    #[test]
    fn the_banner_darkens_the_top_and_writes_the_text_there_only() {
        let (w, h) = (640, 360);
        let mut s = vec![0x0080_8080u32; w * h];
        assert_eq!(banner(&mut s, w, h, "paused — press a key…"), 32);
        let white = s.iter().filter(|&&p| p == TEXT).count();
        assert!(white > 200, "{white} text pixels");
        // The strip is 32 rows at scale 2: text and darkened picture there,
        // the picture untouched below.
        assert!(s[..32 * w].iter().all(|&p| p == TEXT || p == 0x0020_2020));
        assert!(s[32 * w..].iter().all(|&p| p == 0x0080_8080));
        // Long texts wrap at spaces onto at most four lines, cut beyond;
        // a word longer than a line is cut, not drawn past the edge.
        let mut t = vec![0x0080_8080u32; w * h];
        let rows = banner(&mut t, w, h, &"word ".repeat(200));
        assert_eq!(rows, 4 * 24 + 8);
        assert!(t[rows * w..].iter().all(|&p| p == 0x0080_8080));
        banner(&mut s, w, h, &"x".repeat(500));
        let text = "ab cd ef";
        let (lines, n) = wrap(text, 5);
        assert_eq!(n, 2);
        assert_eq!(
            (&text[lines[0].0..lines[0].1], &text[lines[1].0..lines[1].1]),
            ("ab cd", "ef")
        );
        banner(&mut [0u32; 4], 2, 2, "hello");
    }

    #[test]
    fn the_panel_stays_in_its_box_below_the_banner() {
        let (w, h) = (640, 360);
        let mut s = vec![0x0080_8080u32; w * h];
        let lines = vec!["fps 60.0".to_string(), "rtt 5.1 ms — loss 0.0%".to_string()];
        panel(&mut s, w, h, 32, &lines);
        let white = s.iter().filter(|&&p| p == TEXT).count();
        assert!(white > 100, "{white} text pixels");
        // Above the box and right of it, the picture is untouched.
        assert!(s[..32 * w].iter().all(|&p| p == 0x0080_8080));
        let right_of_box = (32..h).all(|y| {
            s[y * w + 400..(y + 1) * w]
                .iter()
                .all(|&p| p == 0x0080_8080)
        });
        assert!(right_of_box);
        // Nothing to draw, or too small a surface, is fine.
        panel(&mut s, w, h, 0, &[]);
        panel(&mut [0u32; 4], 2, 2, 1, &lines);
    }
}
