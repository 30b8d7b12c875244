//! The remote pointer, as the host reports it apart from the video: its
//! shape (put back together from its parts by the protocol's assembler)
//! and its position. The window wears the shape as its own cursor, so the
//! pointer moves at the local pointer's speed rather than the stream's.

use std::sync::{Arc, Mutex};

use nephele_protocol::Message;
use nephele_protocol::cursor::{Assembler, Shape};

#[derive(Debug, Default)]
struct State {
    assembler: Assembler,
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
    /// Takes a pointer message (a shape's part, or a position).
    pub fn take(&self, msg: &Message<'_>) {
        let Ok(mut s) = self.state.lock() else { return };
        if let Message::CursorPosition { x, y, visible } = *msg {
            s.position = Some((x, y, visible));
        } else if let Some(shape) = s.assembler.take(msg) {
            s.shape = Some(Arc::new(shape));
            s.shapes += 1;
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
    fn shapes_are_counted_when_whole_and_positions_kept() {
        let c = RemoteCursor::default();
        let shape = Shape {
            serial: 3,
            width: 2,
            height: 2,
            hot_x: 1,
            hot_y: 1,
            rgba: vec![9; 16],
        };
        let parts: Vec<Message<'_>> = shape.parts(nephele_protocol::MAX_DATAGRAM).collect();
        assert_eq!(c.shape().0, 0);
        for p in &parts {
            c.take(p);
        }
        let (n, got) = c.shape();
        assert_eq!((n, got.as_deref()), (1, Some(&shape)));
        c.take(&Message::CursorPosition {
            x: 5,
            y: 6,
            visible: false,
        });
        assert_eq!(c.position(), Some((5, 6, false)));
    }
}
