//! The window's picture area, handed from the window to the network
//! thread, which tells the host (the desktop follows the window).

use std::sync::atomic::{AtomicU64, Ordering};

/// The latest picture-area size the window settled on, if any: width,
/// height and the display's refresh rate packed in one word, so the
/// window never waits for the network thread.
#[derive(Debug, Default)]
pub struct DisplaySize(AtomicU64);

impl DisplaySize {
    /// The window settled at `width × height` physical pixels on a display
    /// refreshing `refresh` times a second.
    pub fn set(&self, width: u16, height: u16, refresh: u8) {
        let v =
            (1 << 40) | (u64::from(width) << 24) | (u64::from(height) << 8) | u64::from(refresh);
        self.0.store(v, Ordering::Release);
    }

    /// What [`Self::set`] last said.
    pub fn get(&self) -> Option<(u16, u16, u8)> {
        let v = self.0.load(Ordering::Acquire);
        (v != 0).then_some(((v >> 24) as u16, (v >> 8) as u16, v as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_and_start_unset() {
        let d = DisplaySize::default();
        assert_eq!(d.get(), None);
        d.set(8192, 4320, 144);
        assert_eq!(d.get(), Some((8192, 4320, 144)));
        d.set(1000, 700, 60);
        assert_eq!(d.get(), Some((1000, 700, 60)));
    }
}
