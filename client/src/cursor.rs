//! The remote pointer, as the host reports it apart from the video: its
//! shape (assembled from parts of whole rows) and its position. The window
//! wears the shape as its own cursor, so the pointer moves at the local
//! pointer's speed rather than the stream's.

use std::sync::{Arc, Mutex};

use nephele_protocol::wire::MAX_CURSOR;

/// A whole pointer shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The host's number for it.
    pub serial: u32,
    /// Pixels.
    pub width: u16,
    /// Rows.
    pub height: u16,
    /// The hot spot.
    pub hot_x: u16,
    /// See `hot_x`.
    pub hot_y: u16,
    /// Straight RGBA, `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

/// A shape being assembled.
#[derive(Debug)]
struct Building {
    shape: Shape,
    /// Bit `r` set: row `r` arrived.
    rows: u64,
}

#[derive(Debug, Default)]
struct State {
    building: Option<Building>,
    shape: Option<Arc<Shape>>,
    /// Counts whole shapes; the window compares it with what it wears.
    shapes: u64,
    position: Option<(u16, u16, bool)>,
}

/// The remote pointer; shared between the network thread and whoever
/// shows it.
#[derive(Debug, Default)]
pub struct RemoteCursor {
    state: Mutex<State>,
}

impl RemoteCursor {
    /// Takes a part of a shape (already checked by the decoder: sizes
    /// within [`MAX_CURSOR`], rows inside the shape).
    pub fn part(
        &self,
        serial: u32,
        (width, height): (u16, u16),
        (hot_x, hot_y): (u16, u16),
        first_row: u16,
        rgba: &[u8],
    ) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.shape.as_ref().is_some_and(|c| c.serial == serial) {
            return; // sent again (a keyframe): already worn
        }
        let row = usize::from(width) * 4;
        let fresh = s.building.as_ref().is_none_or(|b| {
            (b.shape.serial, b.shape.width, b.shape.height) != (serial, width, height)
        });
        if fresh {
            s.building = Some(Building {
                shape: Shape {
                    serial,
                    width,
                    height,
                    hot_x,
                    hot_y,
                    rgba: vec![0; row * usize::from(height)],
                },
                rows: 0,
            });
        }
        let Some(b) = s.building.as_mut() else { return };
        let start = usize::from(first_row) * row;
        if start > b.shape.rgba.len() {
            return;
        }
        let end = (start + rgba.len()).min(b.shape.rgba.len());
        b.shape.rgba[start..end].copy_from_slice(&rgba[..end - start]);
        for r in 0..rgba.len() / row.max(1) {
            b.rows |= 1u64 << ((usize::from(first_row) + r) % 64);
        }
        let all = if height >= MAX_CURSOR {
            u64::MAX
        } else {
            (1u64 << height) - 1
        };
        if b.rows & all == all {
            let done = s.building.take().map(|b| Arc::new(b.shape));
            s.shape = done;
            s.shapes += 1;
        }
    }

    /// Takes the pointer's position.
    pub fn moved(&self, x: u16, y: u16, visible: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.position = Some((x, y, visible));
        }
    }

    /// The newest whole shape and how many have arrived.
    pub fn shape(&self) -> (u64, Option<Arc<Shape>>) {
        self.state
            .lock()
            .map(|s| (s.shapes, s.shape.clone()))
            .unwrap_or_default()
    }

    /// Where the pointer is, and whether it shows.
    pub fn position(&self) -> Option<(u16, u16, bool)> {
        self.state.lock().ok().and_then(|s| s.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_counts_once_all_its_rows_arrived_in_any_order() {
        let c = RemoteCursor::default();
        let row = |v: u8| vec![v; 3 * 4];
        c.part(7, (3, 3), (1, 1), 2, &row(3));
        c.part(7, (3, 3), (1, 1), 0, &row(1));
        assert_eq!(c.shape().0, 0, "a row is missing");
        c.part(7, (3, 3), (1, 1), 1, &row(2));
        let (n, shape) = c.shape();
        let shape = shape.unwrap();
        assert_eq!((n, shape.serial, shape.hot_x), (1, 7, 1));
        assert_eq!(&shape.rgba[12..24], &row(2)[..]);
        // The same shape again (after a keyframe) is not a new one.
        for r in 0..3 {
            c.part(7, (3, 3), (1, 1), r, &row(9));
        }
        assert_eq!(c.shape().0, 1);
        // A newer shape replaces an unfinished one.
        c.part(8, (2, 2), (0, 0), 0, &[0; 8]);
        c.part(9, (2, 1), (0, 0), 0, &[5; 8]);
        let (n, shape) = c.shape();
        assert_eq!((n, shape.unwrap().serial), (2, 9));
        // A 64-row shape completes too.
        c.part(10, (1, 64), (0, 0), 0, &[1; 64 * 4]);
        assert_eq!(c.shape().0, 3);
        c.moved(5, 6, true);
        assert_eq!(c.position(), Some((5, 6, true)));
    }
}
