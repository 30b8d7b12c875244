//! A session's desktop, as the host's receive thread drives it: where its
//! input goes, what it answers (rumble, copied text), what is released
//! when its client goes, what is replicated to the backup, and where its
//! pictures and sound come from. Two kinds: the demo desktop, drawn per
//! session; and a running X display, into which input is injected.

use std::sync::{Arc, Mutex};

use nephele_protocol::pad::MAX_PADS;
use nephele_protocol::wire::{InputEvent, MAX_CLIPBOARD};

use super::replication;
use crate::demo::DesktopState;
use crate::screen::{ClipboardBridge, Injector};

/// What a desktop said back to an input event.
#[derive(Debug, Default)]
pub(super) struct Replies {
    /// Gamepads to buzz briefly (their face button went down).
    pub buzz: [bool; MAX_PADS as usize],
    /// Text it copied, for the client's clipboard.
    pub copied: Option<String>,
}

/// Where a session's pictures come from.
#[derive(Debug, Clone)]
pub(super) enum Pictures {
    /// The demo desktop, drawn from its state.
    Drawn(Arc<Mutex<DesktopState>>),
    /// An X display, captured; with the host's sound or without.
    Captured {
        /// Its name.
        display: String,
        /// Whether the host's sound server plays for it (not for an
        /// application's private display: that sound is every session's).
        sound: bool,
    },
}

/// A session's desktop; see the module documentation.
pub(super) trait Desktop: Send {
    /// Applies one input event, noting what the desktop says back.
    fn apply(&mut self, ev: &InputEvent, replies: &mut Replies);
    /// Releases every key and button held; the events that did.
    fn release_all(&mut self) -> Vec<InputEvent>;
    /// The state a backup host takes over from, into `out`.
    fn snapshot(&self, out: &mut Vec<u8>);
    /// The client's clipboard text.
    fn paste(&mut self, text: &str);
    /// Where the encoder's pictures come from.
    fn pictures(&self) -> Pictures;
    /// The state the demo draws (and the host's `typed()` reads).
    fn state(&self) -> Arc<Mutex<DesktopState>>;
    /// Sizes the desktop to `size` where it can; the size it has now.
    fn resize(&mut self, size: (u16, u16)) -> (u16, u16);
}

/// The text a client's clipboard may get: cut to a whole character.
pub(super) fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_CLIPBOARD);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The built-in demo desktop.
pub(super) struct Demo {
    state: Arc<Mutex<DesktopState>>,
    size: (u16, u16),
}

impl Demo {
    /// A desktop of `size`, from a replicated state or fresh (the pointer
    /// in the middle).
    pub fn new(size: (u16, u16), restore: Option<&[u8]>) -> (Self, bool) {
        let restored = restore.and_then(replication::restore);
        let took_over = restored.is_some();
        let state = restored.unwrap_or_else(|| DesktopState {
            pointer: (size.0 / 2, size.1 / 2),
            ..Default::default()
        });
        (
            Self {
                state: Arc::new(Mutex::new(state)),
                size,
            },
            took_over,
        )
    }
}

impl Desktop for Demo {
    fn apply(&mut self, ev: &InputEvent, replies: &mut Replies) {
        let Ok(mut d) = self.state.lock() else { return };
        d.apply(ev, self.size.0, self.size.1);
        // The demo's force feedback: a short buzz for the pads whose face
        // button went down, if they can rumble.
        if let InputEvent::PadButton {
            pad,
            button,
            down: true,
        } = *ev
            && button.is_face()
            && d.pad(pad).is_some_and(|p| p.rumble)
            && let Some(b) = replies.buzz.get_mut(usize::from(pad))
        {
            *b = true;
        }
        if let Some(c) = d.copied.take() {
            replies.copied = Some(c);
        }
    }

    fn release_all(&mut self) -> Vec<InputEvent> {
        self.state
            .lock()
            .map(|mut d| d.release_all())
            .unwrap_or_default()
    }

    fn snapshot(&self, out: &mut Vec<u8>) {
        if let Ok(d) = self.state.lock() {
            replication::snapshot(&d, out);
        }
    }

    fn paste(&mut self, text: &str) {
        if let Ok(mut d) = self.state.lock() {
            d.clipboard = text.to_string();
        }
    }

    fn pictures(&self) -> Pictures {
        Pictures::Drawn(self.state.clone())
    }

    fn state(&self) -> Arc<Mutex<DesktopState>> {
        self.state.clone()
    }

    /// Drawn at any size: the encoder draws the next picture at `size`.
    fn resize(&mut self, size: (u16, u16)) -> (u16, u16) {
        self.size = size;
        if let Ok(mut d) = self.state.lock() {
            let (x, y) = d.pointer;
            d.pointer = (x.min(size.0 - 1), y.min(size.1 - 1));
        }
        size
    }
}

/// A running X display: input injected through XTEST, the clipboard
/// bridged. The demo's state is kept for the pointer and the pads (and
/// replicated), but not its note: what is typed on a real desktop is the
/// desktop's own.
pub(super) struct X11 {
    display: String,
    injector: Injector,
    clipboard: Option<ClipboardBridge>,
    state: Arc<Mutex<DesktopState>>,
    size: (u16, u16),
    sound: bool,
}

impl X11 {
    /// Opens `display` for input; its screen's size (an X display streams
    /// at its own size, whatever the client asked).
    pub fn open(display: &str) -> Result<(Self, (u16, u16)), crate::screen::ScreenError> {
        let injector = Injector::open(display)?;
        let size = injector.screen_size()?;
        Ok((
            Self {
                display: display.to_string(),
                injector,
                clipboard: None,
                state: Arc::new(Mutex::new(DesktopState {
                    pointer: (size.0 / 2, size.1 / 2),
                    ..Default::default()
                })),
                size,
                sound: true,
            },
            size,
        ))
    }

    /// Streams no sound (the host's sound server is not this display's).
    pub fn mute(&mut self) {
        self.sound = false;
    }

    /// Bridges the display's clipboard: what programs there copy goes to
    /// `to_client`.
    pub fn bridge_clipboard(&mut self, name: String, to_client: impl FnMut(&str) + Send + 'static) {
        match ClipboardBridge::start(&self.display, name, MAX_CLIPBOARD, to_client) {
            Ok(b) => self.clipboard = Some(b),
            Err(e) => tracing::warn!(error = %e, "no clipboard on the X display"),
        }
    }
}

impl Desktop for X11 {
    fn apply(&mut self, ev: &InputEvent, _replies: &mut Replies) {
        if let Ok(mut d) = self.state.lock() {
            d.apply(ev, self.size.0, self.size.1);
            d.typed.clear();
            d.copied = None;
        }
        if let Err(e) = self.injector.inject(ev) {
            tracing::warn!(error = %e, "injecting input into the X display");
        }
    }

    fn release_all(&mut self) -> Vec<InputEvent> {
        let released = self
            .state
            .lock()
            .map(|mut d| d.release_all())
            .unwrap_or_default();
        for ev in &released {
            let _ = self.injector.inject(ev);
        }
        // Whatever the record missed (an event that failed halfway).
        match self.injector.release_all() {
            Ok(0) => {}
            Ok(n) => tracing::debug!(n, "released on the X display"),
            Err(e) => tracing::warn!(error = %e, "releasing input on the X display"),
        }
        released
    }

    fn snapshot(&self, out: &mut Vec<u8>) {
        if let Ok(d) = self.state.lock() {
            replication::snapshot(&d, out);
        }
    }

    fn paste(&mut self, text: &str) {
        if let Some(b) = &self.clipboard {
            b.offer(text.to_string());
        }
    }

    fn pictures(&self) -> Pictures {
        Pictures::Captured {
            display: self.display.clone(),
            sound: self.sound,
        }
    }

    fn state(&self) -> Arc<Mutex<DesktopState>> {
        self.state.clone()
    }

    /// Through RandR, where the X server can (Xorg's dummy and modesetting
    /// drivers, not Xvfb); otherwise the screen keeps its size and the
    /// client scales.
    fn resize(&mut self, size: (u16, u16)) -> (u16, u16) {
        match self.injector.resize_screen(size) {
            Ok(now) => {
                if now != size {
                    tracing::info!(asked = ?size, given = ?now, "the X display keeps another size");
                }
                self.size = now;
            }
            Err(e) => tracing::warn!(error = %e, asked = ?size, "the X display cannot be resized"),
        }
        self.size
    }
}
