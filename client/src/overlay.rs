//! Banners drawn over the picture in the window: what the session is doing
//! (a pause coming, paused, resuming, reconnecting), so nobody mistakes a
//! paused or reconnecting session for a frozen one.

/// Colour of the banner's text (0RGB, as the surface holds pixels).
const TEXT: u32 = 0x00ff_ffff;

/// Draws `text` on a darkened strip across the top of a `width × height`
/// surface (0RGB pixels, row-major). Characters outside ASCII are drawn as
/// their nearest ASCII ("…" as "...", dashes as "-").
pub fn banner(surface: &mut [u32], width: usize, height: usize, text: &str) {
    if width == 0 || height == 0 || surface.len() < width * height {
        return;
    }
    let text: String = text
        .chars()
        .flat_map(|c| match c {
            '…' => "...".chars().collect::<Vec<_>>(),
            '—' | '–' => vec!['-'],
            c if c.is_ascii() => vec![c],
            _ => vec!['?'],
        })
        .collect();
    // Glyphs 8 px square, scaled to stay readable on large windows.
    let scale = if width >= 1600 { 3 } else { 2 };
    let glyph = 8 * scale;
    let pad = glyph / 2;
    let rows = (glyph + 2 * pad).min(height);
    for p in &mut surface[..rows * width] {
        // A quarter of the brightness: the picture shows through, the text reads.
        *p = (*p >> 2) & 0x003f_3f3f;
    }
    let fits = (width.saturating_sub(2 * pad) / glyph).max(1);
    let shown: Vec<char> = text.chars().take(fits).collect();
    let x0 = width.saturating_sub(shown.len() * glyph) / 2;
    for (i, c) in shown.iter().enumerate() {
        let bitmap = font8x8::legacy::BASIC_LEGACY[(*c as usize) & 0x7f];
        for (gy, bits) in bitmap.iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    let y = pad + gy * scale + sy;
                    if y >= rows {
                        continue;
                    }
                    let x = x0 + i * glyph + gx * scale;
                    let row = &mut surface[y * width..(y + 1) * width];
                    for px in row.iter_mut().skip(x).take(scale) {
                        *px = TEXT;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_darkens_the_top_and_writes_the_text_there_only() {
        let (w, h) = (640, 360);
        let mut s = vec![0x0080_8080u32; w * h];
        banner(&mut s, w, h, "paused — press a key…");
        let white = s.iter().filter(|&&p| p == TEXT).count();
        assert!(white > 200, "{white} text pixels");
        // The strip is 32 rows at scale 2: text and darkened picture there,
        // the picture untouched below.
        assert!(s[..32 * w].iter().all(|&p| p == TEXT || p == 0x0020_2020));
        assert!(s[32 * w..].iter().all(|&p| p == 0x0080_8080));
        // Too long a text is cut, not drawn past the edge; a tiny surface is fine.
        banner(&mut s, w, h, &"x".repeat(500));
        banner(&mut [0u32; 4], 2, 2, "hello");
    }
}
