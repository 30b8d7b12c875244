//! No X display on this system: every opening fails with the reason.

use nephele_protocol::wire::InputEvent;

use super::{Changes, CursorImage, Frame};

/// Why there is no X display.
#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    /// X11 desktops are served on Linux and the BSDs only.
    #[error("X11 desktops are served on Linux and the BSDs only")]
    Unsupported,
}

/// An X display's pixels (none here).
#[derive(Debug)]
pub struct X11Capture(());

impl X11Capture {
    /// Fails: no X here.
    pub fn open(_display: &str) -> Result<Self, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn size(&self) -> (u16, u16) {
        (0, 0)
    }
    /// Never reached.
    pub fn poll(&mut self) -> Result<Changes, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn capture(&mut self) -> Result<Frame<'_>, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn pointer(&self) -> Result<Option<(i16, i16)>, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn cursor(&self) -> Result<CursorImage, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn monitors(&self) -> Result<nephele_protocol::monitors::Monitors, X11Error> {
        Err(X11Error::Unsupported)
    }
}

/// An X display's input (none here).
#[derive(Debug)]
pub struct X11Input(());

impl X11Input {
    /// Fails: no X here.
    pub fn open(_display: &str) -> Result<Self, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn inject(&mut self, _ev: &InputEvent) -> Result<bool, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn resize_screen(&self, _size: (u16, u16)) -> Result<(u16, u16), X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn screen_size(&self) -> Result<(u16, u16), X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn server_keys_down(&self) -> Result<Vec<u8>, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn release_all(&mut self) -> Result<usize, X11Error> {
        Ok(0)
    }
}

/// An X display's clipboard (none here).
#[derive(Debug)]
pub struct X11Clipboard(());

impl X11Clipboard {
    /// Fails: no X here.
    pub fn open(_display: &str, _max: usize) -> Result<Self, X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn offer(&mut self, _text: &str) -> Result<(), X11Error> {
        Err(X11Error::Unsupported)
    }
    /// Never reached.
    pub fn poll(&mut self) -> Result<Option<String>, X11Error> {
        Err(X11Error::Unsupported)
    }
}

/// No X keycodes here.
pub fn x_keycode(_usage: u16) -> Option<u8> {
    None
}

/// Where there is no X, there are no displays to present cookies to.
pub fn use_cookie(_display: &str, _cookie: [u8; 16]) {}

/// Where there is no X, there are no cookies.
pub fn forget_cookie(_display: &str) {}

/// Where there is no X, no display number is taken.
pub fn local_display_taken(_n: u32) -> bool {
    false
}
