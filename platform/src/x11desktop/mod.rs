//! A running X display (Xorg or Xvfb) as a Nephele desktop.
//!
//! * [`X11Capture`]: the root window's pixels through MIT-SHM (a segment
//!   the server allocates and passes as a file descriptor, so nothing is
//!   copied through the socket), or plain `GetImage` where the server
//!   offers no shared memory (a display across a network); what changed
//!   through DAMAGE, so a still desktop is not captured at all; the screen's
//!   size through the root window's `ConfigureNotify` (RandR resizes it);
//!   the pointer's position and shape through XFIXES.
//! * [`X11Input::resize_screen`]: the screen sized to a client's window
//!   through RandR ([`randr`]), where the server can make modes (Xorg's
//!   dummy and modesetting drivers; not Xvfb).
//! * [`X11Input`]: keys, buttons, wheel and motion through XTEST. Keys go
//!   by physical position: a USB HID usage becomes the X keycode of that
//!   position (the evdev code plus 8, which every modern X server uses), so
//!   the display's own keymap decides the character. What is held is
//!   remembered and released by [`X11Input::release_all`] and on drop.
//!   Typed characters ([`InputEvent::Text`](nephele_protocol::wire::InputEvent))
//!   come out as themselves whatever the display's layout ([`typing`]).
//!
//! x11rb speaks the X protocol in Rust over the display's socket; no Xlib
//! is loaded.

//!
//! Where there is no X (Windows, macOS) the same interface exists and every
//! opening fails with the reason, so the service's code has no `cfg` of its
//! own.

#[cfg(all(unix, not(target_os = "macos")))]
#[path = "x11.rs"]
mod imp;

#[cfg(not(all(unix, not(target_os = "macos"))))]
#[path = "none.rs"]
mod imp;

#[cfg(all(unix, not(target_os = "macos")))]
mod displays;
#[cfg(all(unix, not(target_os = "macos")))]
pub use displays::local_display_taken;
#[cfg(not(all(unix, not(target_os = "macos"))))]
pub use imp::local_display_taken;
#[cfg(all(unix, not(target_os = "macos")))]
mod randr;
#[cfg(all(unix, not(target_os = "macos")))]
mod typing;

pub use imp::{X11Capture, X11Clipboard, X11Error, X11Input, forget_cookie, use_cookie, x_keycode};

/// One captured picture: 32-bit pixels, blue first (BGRX; the fourth byte
/// is not alpha and may hold anything).
#[derive(Debug)]
pub struct Frame<'a> {
    /// `stride * height` bytes.
    pub data: &'a [u8],
    /// Pixels.
    pub width: u16,
    /// Rows.
    pub height: u16,
    /// Bytes per row.
    pub stride: usize,
}

/// What changed since the last [`X11Capture::poll`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Some pixels changed (or the size did).
    pub pixels: bool,
    /// The screen's size changed; [`X11Capture::size`] has the new one.
    pub resized: bool,
    /// The pointer's shape changed.
    pub cursor: bool,
}

/// The pointer's picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorImage {
    /// The server's number for this shape; a new shape has a new serial.
    pub serial: u32,
    /// Size in pixels.
    pub width: u16,
    /// See `width`.
    pub height: u16,
    /// The hot spot, from the top left.
    pub hot_x: u16,
    /// See `hot_x`.
    pub hot_y: u16,
    /// Premultiplied ARGB, one `u32` per pixel, row by row.
    pub argb: Vec<u32>,
}
