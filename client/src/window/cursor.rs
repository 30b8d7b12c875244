//! The remote pointer drawn over the picture while the local one is
//! captured (hidden): the desktop's cursor shape where the desktop has it.

/// Draws a pointer shape (straight RGBA) with its top left at `at`
/// (window pixels; parts outside the surface are left out), blended over
/// what is there.
pub(super) fn pointer(
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
}
