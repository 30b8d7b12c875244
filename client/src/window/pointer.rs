//! The pointer: absolute moves mapped into the stream's picture, or
//! captured (relative mouse for games: locked where the platform can,
//! confined and measured from the window's centre on X11), and the remote
//! pointer's shape worn as the window's own cursor.

use winit::event::MouseScrollDelta;
use winit::event_loop::ActiveEventLoop;
use winit::window::{CursorGrabMode, Window};

use nephele_protocol::wire::{InputEvent, MouseButton};

use crate::status::RemoteCursor;
use crate::video::Viewport;

/// The pointer's state.
#[derive(Debug, Default)]
pub(super) struct Pointer {
    /// The remote pointer shape the window wears (its count), and whether
    /// the remote pointer is hidden.
    worn: (u64, bool),
    /// Where the remote pointer was last drawn into the picture (while
    /// captured).
    drawn_at: Option<(u16, u16, bool)>,
    /// The user wants the pointer captured (relative mouse).
    pub want_capture: bool,
    /// The pointer is captured now (the window has focus).
    pub captured: bool,
    /// Sub-pixel relative motion not yet sent.
    rest: (f64, f64),
    /// How the pointer is held while captured: locked (motion comes as
    /// raw device events) or confined (the window measures each move from
    /// its centre and puts the pointer back there).
    pub grab: Option<CursorGrabMode>,
}

/// What a change of capture means for the banner.
pub(super) enum Capture {
    /// Nothing changed.
    Same,
    /// Captured now; the shortcut that releases it goes on the banner.
    Captured,
    /// Released at the user's wish.
    Released,
    /// Released because the window lost focus (nothing to say).
    Suspended,
    /// Capture failed: why.
    Failed(String),
}

/// The middle of the window's inside, where a confined pointer is kept.
fn centre(w: &Window) -> winit::dpi::PhysicalPosition<f64> {
    let s = w.inner_size();
    winit::dpi::PhysicalPosition::new(f64::from(s.width / 2), f64::from(s.height / 2))
}

impl Pointer {
    /// A pointer to be captured from the start when `capture`.
    pub fn new(capture: bool) -> Self {
        Self {
            want_capture: capture,
            ..Self::default()
        }
    }

    /// Grabs or lets go of the pointer as wanted. Locked where the
    /// platform can (the pointer stays put), else confined to the window
    /// (X11); hidden either way, and motion goes as relative steps.
    pub fn apply_capture(&mut self, w: &Window) -> Capture {
        let focused = w.has_focus();
        if self.want_capture && focused && !self.captured {
            let grabbed = w
                .set_cursor_grab(CursorGrabMode::Locked)
                .map(|()| CursorGrabMode::Locked)
                .or_else(|_| {
                    w.set_cursor_grab(CursorGrabMode::Confined)
                        .map(|()| CursorGrabMode::Confined)
                });
            match grabbed {
                Ok(mode) => {
                    w.set_cursor_visible(false);
                    self.captured = true;
                    self.grab = Some(mode);
                    self.rest = (0.0, 0.0);
                    if mode == CursorGrabMode::Confined {
                        let _ = w.set_cursor_position(centre(w));
                    }
                    Capture::Captured
                }
                Err(e) => {
                    self.want_capture = false;
                    Capture::Failed(format!("cannot capture the pointer here: {e}"))
                }
            }
        } else if self.captured && !(self.want_capture && focused) {
            let _ = w.set_cursor_grab(CursorGrabMode::None);
            w.set_cursor_visible(true);
            self.captured = false;
            self.grab = None;
            if self.want_capture {
                Capture::Suspended
            } else {
                Capture::Released
            }
        } else {
            Capture::Same
        }
    }

    /// Leaving the session for the launcher: the pointer is let go and
    /// wears the window's ordinary cursor again (the capture wanted stays
    /// for the next session).
    pub fn let_go(&mut self, w: &Window) {
        if self.captured {
            let _ = w.set_cursor_grab(CursorGrabMode::None);
            self.captured = false;
            self.grab = None;
        }
        w.set_cursor(winit::window::CursorIcon::Default);
        w.set_cursor_visible(true);
        self.worn = (0, false);
        self.drawn_at = None;
    }

    /// Wears the remote pointer's shape as the window's cursor (a real
    /// desktop reports it beside the video), and hides it while the
    /// remote pointer is hidden: the pointer then moves at the local
    /// pointer's speed, in the remote shape. Returns whether a redraw is
    /// due (the captured pointer, drawn into the picture, moved).
    pub fn wear(
        &mut self,
        w: &Window,
        event_loop: &ActiveEventLoop,
        remote: &RemoteCursor,
    ) -> bool {
        let mut redraw = false;
        if self.captured && remote.position != self.drawn_at {
            self.drawn_at = remote.position;
            redraw = true;
        }
        let hidden = remote.position.is_some_and(|(_, _, visible)| !visible);
        if (remote.shapes, hidden) == self.worn {
            return redraw;
        }
        if remote.shapes != self.worn.0
            && let Some(s) = &remote.shape
        {
            match winit::window::CustomCursor::from_rgba(
                s.rgba.clone(),
                s.width,
                s.height,
                s.hot_x,
                s.hot_y,
            ) {
                Ok(source) => w.set_cursor(event_loop.create_custom_cursor(source)),
                Err(e) => tracing::debug!(error = %e, "the remote pointer shape"),
            }
        }
        if hidden != self.worn.1 && !self.captured {
            w.set_cursor_visible(!hidden);
        }
        self.worn = (remote.shapes, hidden);
        redraw
    }

    /// Relative motion of `delta` pixels, carrying sub-pixel remainders.
    pub fn relative(&mut self, delta: (f64, f64)) -> Option<InputEvent> {
        let (rx, ry) = self.rest;
        let (x, y) = (rx + delta.0, ry + delta.1);
        let clamp = |v: f64| v.trunc().clamp(f64::from(i16::MIN), f64::from(i16::MAX));
        let (dx, dy) = (clamp(x), clamp(y));
        self.rest = (x - dx, y - dy);
        (dx != 0.0 || dy != 0.0).then_some(InputEvent::MoveBy {
            dx: dx as i16,
            dy: dy as i16,
        })
    }

    /// The pointer moved to `position` in the window: an absolute move in
    /// the stream's picture, or (confined) a relative step measured from
    /// the centre, after which it goes back there (the warp's own event
    /// measures nothing). A locked pointer's motion comes as device events.
    pub fn moved(
        &mut self,
        w: &Window,
        position: winit::dpi::PhysicalPosition<f64>,
        viewport: Option<Viewport>,
    ) -> Option<InputEvent> {
        if self.captured {
            if self.grab != Some(CursorGrabMode::Confined) {
                return None;
            }
            let c = centre(w);
            let delta = (position.x - c.x, position.y - c.y);
            if delta.0.abs() < 0.5 && delta.1.abs() < 0.5 {
                return None;
            }
            let ev = self.relative(delta);
            let _ = w.set_cursor_position(c);
            return ev;
        }
        viewport.map(|vp| {
            let (x, y) = vp.to_stream(position.x, position.y);
            InputEvent::Move { x, y }
        })
    }

    /// Raw mouse motion: the relative steps of a locked pointer, sent as
    /// counted (as games expect), whatever the window's scale. X11 reports
    /// a confined pointer's raw motion twice (winit issue 3773): only a
    /// locked pointer's counts.
    pub fn device_motion(&mut self, delta: (f64, f64)) -> Option<InputEvent> {
        if self.captured && self.grab == Some(CursorGrabMode::Locked) {
            self.relative(delta)
        } else {
            None
        }
    }
}

/// A mouse button of winit's as the protocol names it.
pub(super) fn button(b: winit::event::MouseButton) -> Option<MouseButton> {
    Some(match b {
        winit::event::MouseButton::Left => MouseButton::Left,
        winit::event::MouseButton::Right => MouseButton::Right,
        winit::event::MouseButton::Middle => MouseButton::Middle,
        winit::event::MouseButton::Back => MouseButton::Back,
        winit::event::MouseButton::Forward => MouseButton::Forward,
        winit::event::MouseButton::Other(_) => return None,
    })
}

/// Wheel motion in 1/120ths of a notch: lines are notches; pixel deltas
/// (touchpads) count about 50 px per notch.
pub(super) fn wheel(delta: MouseScrollDelta) -> InputEvent {
    let (dx, dy) = match delta {
        MouseScrollDelta::LineDelta(x, y) => (f64::from(x) * 120.0, f64::from(y) * 120.0),
        MouseScrollDelta::PixelDelta(p) => (p.x * 120.0 / 50.0, p.y * 120.0 / 50.0),
    };
    let clamp = |v: f64| v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
    InputEvent::Wheel {
        dx: clamp(dx),
        dy: clamp(dy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_motion_carries_fractions_and_wheel_counts_notches() {
        let mut p = Pointer::default();
        assert_eq!(p.relative((0.4, -0.4)), None);
        assert_eq!(
            p.relative((0.7, -0.7)),
            Some(InputEvent::MoveBy { dx: 1, dy: -1 }),
            "0.4 + 0.7 is a whole pixel"
        );
        assert_eq!(
            wheel(MouseScrollDelta::LineDelta(0.0, -1.0)),
            InputEvent::Wheel { dx: 0, dy: -120 }
        );
        assert_eq!(button(winit::event::MouseButton::Other(9)), None);
    }
}
