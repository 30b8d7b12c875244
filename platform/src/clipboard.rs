//! The system clipboard's text (arboard: X11, Windows, macOS).
//!
//! On X11 the clipboard is served by whoever set it: arboard keeps a
//! thread with a hidden window for that while the [`Clipboard`] lives.

/// The clipboard could not be opened (no display, no clipboard service).
#[derive(Debug, thiserror::Error)]
#[error("no clipboard: {0}")]
pub struct ClipboardError(String);

/// A handle on the system clipboard's text.
pub struct Clipboard(arboard::Clipboard);

impl std::fmt::Debug for Clipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clipboard")
    }
}

impl Clipboard {
    /// Opens the clipboard.
    pub fn open() -> Result<Self, ClipboardError> {
        arboard::Clipboard::new()
            .map(Self)
            .map_err(|e| ClipboardError(e.to_string()))
    }

    /// The clipboard's text, if it holds text.
    pub fn text(&mut self) -> Option<String> {
        self.0.get_text().ok()
    }

    /// Puts `text` on the clipboard; false if the system refused.
    pub fn set_text(&mut self, text: &str) -> bool {
        self.0.set_text(text).is_ok()
    }
}
