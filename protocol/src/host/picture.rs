//! The picture a session may have: what its client asks for (at opening,
//! and whenever its window settles at a new size), within the host's
//! pixel-rate cap.

use super::MIN_CAPPED_FPS;

/// The picture a session gets for what it asked: within `max_pixel_rate`
/// pixels a second, lowering the frame rate first (to [`MIN_CAPPED_FPS`]),
/// then the size, keeping its shape and even dimensions.
pub fn capped_picture(width: u16, height: u16, fps: u8, max_pixel_rate: u64) -> (u16, u16, u8) {
    let (w, h, fps) = (width.max(2), height.max(2), fps.max(1));
    let rate = |w: u16, h: u16, f: u8| u64::from(w) * u64::from(h) * u64::from(f);
    if rate(w, h, fps) <= max_pixel_rate {
        return (w, h, fps);
    }
    let per_frame = max_pixel_rate / u64::from(w) / u64::from(h);
    let fps = u8::try_from(per_frame)
        .unwrap_or(u8::MAX)
        .clamp(MIN_CAPPED_FPS.min(fps), fps);
    if rate(w, h, fps) <= max_pixel_rate {
        return (w, h, fps);
    }
    let (w, h) = capped_size(w, h, fps, max_pixel_rate);
    (w, h, fps)
}

/// The smallest desktop a client's window makes: smaller windows show it
/// scaled down.
pub const MIN_FOLLOWED: (u16, u16) = (320, 200);

/// A `width × height` picture at `fps` within `max_pixel_rate` pixels a
/// second by its size alone, keeping its shape and even dimensions.
pub fn capped_size(width: u16, height: u16, fps: u8, max_pixel_rate: u64) -> (u16, u16) {
    let rate = u64::from(width) * u64::from(height) * u64::from(fps.max(1));
    if rate <= max_pixel_rate {
        return (width, height);
    }
    let scale = (max_pixel_rate as f64 / rate as f64).sqrt();
    let even = |v: u16| (((f64::from(v) * scale) as u16) & !1).max(2);
    (even(width), even(height))
}
