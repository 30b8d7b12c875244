//! The pointer's shape as it travels: larger than a datagram, so cut into
//! [`Message::CursorShape`] parts of whole rows, and put back together by
//! serial on the other side.

use crate::wire::{CURSOR_SHAPE_HEADER_LEN, MAX_CURSOR, Message};

/// A whole pointer shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The host's number for it; a new shape has a new serial.
    pub serial: u32,
    /// Pixels, `1..=MAX_CURSOR`.
    pub width: u16,
    /// Rows, `1..=MAX_CURSOR`.
    pub height: u16,
    /// The hot spot, inside the shape.
    pub hot_x: u16,
    /// See `hot_x`.
    pub hot_y: u16,
    /// Straight (not premultiplied) RGBA, `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl Shape {
    /// The messages that carry the shape, each at most `room` bytes
    /// encoded (at least one row each, however small `room` is).
    pub fn parts(&self, room: usize) -> impl Iterator<Item = Message<'_>> {
        let row = usize::from(self.width.max(1)) * 4;
        let rows = (room.saturating_sub(CURSOR_SHAPE_HEADER_LEN) / row).max(1);
        self.rgba
            .chunks(rows * row)
            .enumerate()
            .map(move |(i, part)| Message::CursorShape {
                serial: self.serial,
                width: self.width,
                height: self.height,
                hot_x: self.hot_x,
                hot_y: self.hot_y,
                first_row: (i * rows) as u16,
                rgba: part,
            })
    }
}

/// Puts shapes back together from their parts, in any order; a part of a
/// newer shape drops an unfinished older one.
#[derive(Debug, Default)]
pub struct Assembler {
    building: Option<Shape>,
    /// Bit `r` set: row `r` of `building` arrived.
    rows: u64,
    /// The serial of the last shape completed (its repeats are ignored).
    done: Option<u32>,
}

impl Assembler {
    /// Takes one message; returns the shape it completes, if it does.
    /// Other messages are ignored.
    pub fn take(&mut self, msg: &Message<'_>) -> Option<Shape> {
        let Message::CursorShape {
            serial,
            width,
            height,
            hot_x,
            hot_y,
            first_row,
            rgba,
        } = *msg
        else {
            return None;
        };
        if self.done == Some(serial) {
            return None; // sent again (with a keyframe): already whole
        }
        let row = usize::from(width) * 4;
        let same = self
            .building
            .as_ref()
            .is_some_and(|b| (b.serial, b.width, b.height) == (serial, width, height));
        if !same {
            self.building = Some(Shape {
                serial,
                width,
                height,
                hot_x,
                hot_y,
                rgba: vec![0; row * usize::from(height)],
            });
            self.rows = 0;
        }
        let b = self.building.as_mut()?;
        // The decoder checked sizes and rows; a hand-made message that
        // does not fit is ignored rather than trusted.
        let start = usize::from(first_row) * row;
        let end = start + rgba.len();
        if row == 0 || end > b.rgba.len() || rgba.len() % row != 0 {
            return None;
        }
        b.rgba[start..end].copy_from_slice(rgba);
        for r in 0..rgba.len() / row {
            self.rows |= 1u64 << (usize::from(first_row) + r);
        }
        let all = if height >= MAX_CURSOR {
            u64::MAX
        } else {
            (1u64 << height) - 1
        };
        if self.rows & all != all {
            return None;
        }
        self.done = Some(serial);
        self.building.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(serial: u32, width: u16, height: u16) -> Shape {
        Shape {
            serial,
            width,
            height,
            hot_x: width / 2,
            hot_y: height / 2,
            rgba: (0..usize::from(width) * usize::from(height) * 4)
                .map(|i| (i % 251) as u8)
                .collect(),
        }
    }

    #[test]
    fn a_shape_crosses_in_datagram_sized_parts_in_any_order() {
        let big = shape(7, MAX_CURSOR, MAX_CURSOR);
        let room = crate::MAX_DATAGRAM - 8;
        let parts: Vec<Vec<u8>> = big.parts(room).map(|m| m.to_vec()).collect();
        assert!(parts.len() > 1, "64x64 takes several datagrams");
        assert!(parts.iter().all(|p| p.len() <= room));
        let mut a = Assembler::default();
        let (last, rest) = parts.split_last().unwrap();
        for p in rest.iter().rev() {
            assert_eq!(a.take(&Message::decode(p).unwrap()), None, "not whole yet");
        }
        assert_eq!(a.take(&Message::decode(last).unwrap()), Some(big.clone()));
        // Sent again (a keyframe): not a new shape.
        for p in &parts {
            assert_eq!(a.take(&Message::decode(p).unwrap()), None);
        }
        // A newer shape replaces an unfinished one.
        let older = shape(8, 2, 4);
        let newer = shape(9, 3, 1);
        let first = older.parts(CURSOR_SHAPE_HEADER_LEN + 8).next().unwrap();
        assert_eq!(a.take(&first), None);
        let whole: Vec<_> = newer.parts(room).collect();
        assert_eq!(a.take(&whole[0]), Some(newer));
        // Other messages are not its business.
        assert_eq!(a.take(&Message::Detach), None);
    }
}
