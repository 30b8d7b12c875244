//! The host desktop's monitors: where each lies on the streamed picture.
//!
//! A desktop of several monitors is one picture (the X screen they share);
//! the host tells the client their rectangles (`Message::Monitors`), so the
//! client can show the whole picture (spanning them) or one monitor alone,
//! mapping its pointer back onto the whole.

/// Most monitors a host tells (more are dropped).
pub const MAX_MONITORS: usize = 8;

/// One monitor: a rectangle of the desktop's picture, in its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Monitor {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width (at least 1).
    pub width: u16,
    /// Height (at least 1).
    pub height: u16,
}

impl Monitor {
    /// The part of this monitor inside a `size` picture, if any.
    pub fn within(self, size: (u32, u32)) -> Option<Monitor> {
        let (w, h) = size;
        let (x, y) = (u32::from(self.x), u32::from(self.y));
        let right = (x + u32::from(self.width)).min(w);
        let bottom = (y + u32::from(self.height)).min(h);
        (right > x && bottom > y).then(|| Monitor {
            x: self.x,
            y: self.y,
            width: (right - x) as u16,
            height: (bottom - y) as u16,
        })
    }
}

/// The desktop's monitors, left to right then top to bottom (the order a
/// person numbers them in), at most [`MAX_MONITORS`]. Fixed-size: it is
/// copied, never allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Monitors {
    list: [Monitor; MAX_MONITORS],
    len: u8,
}

impl Monitors {
    /// From monitors in any order: empty ones go, the rest are sorted, and
    /// what is past [`MAX_MONITORS`] is dropped.
    pub fn new(monitors: impl IntoIterator<Item = Monitor>) -> Self {
        let mut out = Self::default();
        for m in monitors {
            if m.width == 0 || m.height == 0 || usize::from(out.len) == MAX_MONITORS {
                continue;
            }
            out.list[usize::from(out.len)] = m;
            out.len += 1;
        }
        out.list[..usize::from(out.len)].sort_by_key(|m| (m.x, m.y, m.width, m.height));
        out
    }

    /// How many.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none (a host that does not tell).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Monitor `n`, counted from 1 as people do.
    pub fn numbered(&self, n: usize) -> Option<Monitor> {
        self.as_slice().get(n.checked_sub(1)?).copied()
    }

    /// All of them, in order.
    pub fn as_slice(&self) -> &[Monitor] {
        &self.list[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(x: u16, y: u16, width: u16, height: u16) -> Monitor {
        Monitor {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn monitors_are_numbered_left_to_right_without_empty_ones() {
        let list = Monitors::new([m(800, 0, 800, 600), m(0, 0, 0, 600), m(0, 0, 800, 600)]);
        assert_eq!(list.len(), 2);
        assert_eq!(list.numbered(1), Some(m(0, 0, 800, 600)));
        assert_eq!(list.numbered(2), Some(m(800, 0, 800, 600)));
        assert_eq!(list.numbered(0), None);
        assert_eq!(list.numbered(3), None);
        let many = Monitors::new((0..20).map(|i| m(i * 10, 0, 10, 10)));
        assert_eq!(many.len(), MAX_MONITORS);
    }

    #[test]
    fn a_monitor_is_cut_to_the_picture() {
        assert_eq!(
            m(800, 0, 800, 600).within((1200, 500)),
            Some(m(800, 0, 400, 500))
        );
        assert_eq!(m(800, 0, 800, 600).within((800, 600)), None);
    }
}
