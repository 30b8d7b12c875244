//! What a host serves: its built-in demo desktop, or a running X display
//! (`x11:DISPLAY`), whose screen is captured, converted to I420 and
//! encoded only when something on it changed, and into which the
//! session's input is injected. The X display itself is the platform
//! crate's ([`nephele_platform::x11desktop`]); where there is no X, opening
//! one fails with the reason.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use nephele_platform::x11desktop::{X11Capture, X11Clipboard, X11Error, X11Input};

use nephele_protocol::cursor::Shape;
use nephele_protocol::monitors::Monitors;
use nephele_protocol::wire::InputEvent;

use crate::demo::I420;

/// The desktop a host serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DesktopSource {
    /// The built-in demo desktop, drawn per session.
    #[default]
    Demo,
    /// A running X display (Xorg or Xvfb), shared by every session.
    X11 {
        /// The display's name, as in `$DISPLAY` (`:1`, `host:0`).
        display: String,
    },
}

impl FromStr for DesktopSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            _ if s == "demo" => Ok(Self::Demo),
            Some(("x11", display)) if !display.is_empty() => Ok(Self::X11 {
                display: display.to_string(),
            }),
            _ => Err(format!(
                "`{s}` is not a desktop: expected `demo` or `x11:DISPLAY` (for example `x11::1`)"
            )),
        }
    }
}

impl fmt::Display for DesktopSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Demo => f.write_str("demo"),
            Self::X11 { display } => write!(f, "x11:{display}"),
        }
    }
}

/// What [`Grabber::grab`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grab {
    /// Nothing changed and no picture was asked for: nothing captured.
    Unchanged,
    /// A new picture is in the buffer.
    Captured,
    /// A new picture is in the buffer, at a new size.
    Resized,
}

/// What the pointer did since the last [`Grabber::cursor`].
#[derive(Debug, Default)]
pub struct CursorUpdate {
    /// A new shape (or the current one again, when asked for).
    pub shape: Option<Shape>,
    /// Where it is now and whether it is on the screen, when that changed.
    pub position: Option<(u16, u16, bool)>,
}

/// Errors of an X display.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScreenError(String);

/// How often the clipboard thread answers the display and looks for
/// text from the client: a paste waits at most this long.
const CLIPBOARD_TICK: Duration = Duration::from_millis(50);

/// A session's clipboard on an X display: text from the client goes
/// onto the display's CLIPBOARD selection; text another program copies
/// there goes to the client. Stops when dropped.
#[derive(Debug)]
pub struct ClipboardBridge {
    to_display: SyncSender<String>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClipboardBridge {
    /// Starts the bridge's thread (`name`); `to_client` gets what
    /// programs on the display copy.
    pub fn start(
        display: &str,
        name: String,
        max: usize,
        mut to_client: impl FnMut(&str) + Send + 'static,
    ) -> Result<Self, ScreenError> {
        let mut clipboard = X11Clipboard::open(display, max)?;
        let (to_display, from_client): (SyncSender<String>, Receiver<String>) =
            std::sync::mpsc::sync_channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let mut step = || -> Result<(), X11Error> {
                        while let Ok(text) = from_client.try_recv() {
                            clipboard.offer(&text)?;
                        }
                        if let Some(text) = clipboard.poll()? {
                            to_client(&text);
                        }
                        Ok(())
                    };
                    if let Err(e) = step() {
                        tracing::warn!(error = %e, "the X clipboard stopped");
                        return;
                    }
                    std::thread::park_timeout(CLIPBOARD_TICK);
                }
            })
            .map_err(|e| ScreenError(format!("starting the clipboard thread: {e}")))?;
        Ok(Self {
            to_display,
            stop,
            thread: Some(thread),
        })
    }

    /// Puts the client's `text` on the display's clipboard (dropped if
    /// three are already waiting).
    pub fn offer(&self, text: String) {
        let _ = self.to_display.try_send(text);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for ClipboardBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl From<X11Error> for ScreenError {
    fn from(e: X11Error) -> Self {
        Self(e.to_string())
    }
}

/// Captures an X display into I420 pictures.
#[derive(Debug)]
pub struct Grabber {
    capture: X11Capture,
    /// The shape changed and was not yet read.
    cursor_changed: bool,
    shape: Option<Shape>,
    position: Option<(u16, u16, bool)>,
    /// The monitors last read, and when.
    monitors: Monitors,
    monitors_read: Option<Instant>,
}

/// How often the screen's monitors are read again (a layout changes
/// rarely, and reading costs a round trip to the X server).
const MONITORS_EVERY: Duration = Duration::from_secs(1);

impl Grabber {
    /// Opens `display` for capture.
    pub fn open(display: &str) -> Result<Self, ScreenError> {
        Ok(Self {
            capture: X11Capture::open(display)?,
            cursor_changed: true,
            shape: None,
            position: None,
            monitors: Monitors::default(),
            monitors_read: None,
        })
    }

    /// The screen's monitors when they changed since the last call, or
    /// when `again` (a client that needs them anew); read at most once a
    /// second otherwise.
    pub fn monitors(&mut self, again: bool) -> Result<Option<Monitors>, ScreenError> {
        let due = self
            .monitors_read
            .is_none_or(|t| t.elapsed() >= MONITORS_EVERY);
        if !due {
            // Asked again within the second: what was read, without
            // another round trip to the X server.
            return Ok(again.then_some(self.monitors));
        }
        self.monitors_read = Some(Instant::now());
        let now = self.capture.monitors()?;
        let changed = now != self.monitors;
        if changed {
            tracing::info!(monitors = now.len(), "the X screen's monitors");
        }
        self.monitors = now;
        Ok((changed || again).then_some(now))
    }

    /// The pointer's news since the last call: its shape when that
    /// changed (or when `again`, for a client that needs it anew),
    /// and its position when that changed (or when `again`).
    pub fn cursor(&mut self, again: bool) -> Result<CursorUpdate, ScreenError> {
        let mut update = CursorUpdate::default();
        if std::mem::take(&mut self.cursor_changed) {
            let image = self.capture.cursor()?;
            if self.shape.as_ref().is_none_or(|s| s.serial != image.serial) {
                self.shape = Some(straight_rgba(&image));
                update.shape = self.shape.clone();
            }
        }
        if again && update.shape.is_none() {
            update.shape = self.shape.clone();
        }
        let (w, h) = self.size();
        let now = match self.capture.pointer()? {
            Some((x, y)) if x >= 0 && y >= 0 && (x as u16) < w && (y as u16) < h => {
                (x as u16, y as u16, true)
            }
            _ => (0, 0, false),
        };
        if again || self.position != Some(now) {
            self.position = Some(now);
            update.position = Some(now);
        }
        Ok(update)
    }

    /// The screen's size now, cut to even numbers (I420 needs them).
    pub fn size(&self) -> (u16, u16) {
        let (w, h) = self.capture.size();
        (w & !1, h & !1)
    }

    /// Captures the screen into `picture` if it changed since the last
    /// grab, or if `force` (a keyframe is due); resizes `picture` to
    /// the screen's size when that changed.
    pub fn grab(&mut self, force: bool, picture: &mut I420) -> Result<Grab, ScreenError> {
        let changes = self.capture.poll()?;
        self.cursor_changed |= changes.cursor;
        if !changes.pixels && !force {
            return Ok(Grab::Unchanged);
        }
        let (w, h) = self.size();
        let resized = (picture.width, picture.height) != (usize::from(w), usize::from(h));
        if resized {
            *picture = I420::new(usize::from(w), usize::from(h));
        }
        let frame = self.capture.capture()?;
        to_i420(frame.data, frame.stride, picture)?;
        Ok(if resized {
            Grab::Resized
        } else {
            Grab::Captured
        })
    }
}

/// Injects a session's input into an X display; everything it holds is
/// released when it is dropped.
#[derive(Debug)]
pub struct Injector {
    input: X11Input,
}

impl Injector {
    /// Opens `display` for input.
    pub fn open(display: &str) -> Result<Self, ScreenError> {
        Ok(Self {
            input: X11Input::open(display)?,
        })
    }

    /// Sizes the screen to `size` where the X server can; the size it has
    /// afterwards, cut to even numbers.
    pub fn resize_screen(&self, size: (u16, u16)) -> Result<(u16, u16), ScreenError> {
        let (w, h) = self.input.resize_screen(size)?;
        Ok((w & !1, h & !1))
    }

    /// The screen's size now, cut to even numbers (I420 needs them).
    pub fn screen_size(&self) -> Result<(u16, u16), ScreenError> {
        let (w, h) = self.input.screen_size()?;
        Ok((w & !1, h & !1))
    }

    /// Injects one event; gamepad events are not taken (an X display
    /// has no gamepads to give them to).
    pub fn inject(&mut self, ev: &InputEvent) -> Result<bool, ScreenError> {
        Ok(self.input.inject(ev)?)
    }

    /// Releases every key and button held; returns how many.
    pub fn release_all(&mut self) -> Result<usize, ScreenError> {
        Ok(self.input.release_all()?)
    }
}

/// The size of `display`'s screen (opens a connection; for session
/// set-up, not per frame).
pub fn screen_size(display: &str) -> Result<(u16, u16), ScreenError> {
    Ok(Grabber::open(display)?.size())
}

/// XFIXES' premultiplied ARGB words as straight RGBA bytes, cut to
/// the largest shape the protocol carries.
fn straight_rgba(image: &nephele_platform::x11desktop::CursorImage) -> Shape {
    use nephele_protocol::wire::MAX_CURSOR;
    let (w, h) = (
        image.width.clamp(1, MAX_CURSOR),
        image.height.clamp(1, MAX_CURSOR),
    );
    let mut rgba = Vec::with_capacity(usize::from(w) * usize::from(h) * 4);
    for y in 0..usize::from(h) {
        for x in 0..usize::from(w) {
            let p = image
                .argb
                .get(y * usize::from(image.width) + x)
                .copied()
                .unwrap_or(0);
            let [a, r, g, b] = p.to_be_bytes();
            let un = |c: u8| {
                if a == 0 {
                    0
                } else {
                    (u16::from(c) * 255 / u16::from(a)).min(255) as u8
                }
            };
            rgba.extend_from_slice(&[un(r), un(g), un(b), a]);
        }
    }
    Shape {
        serial: image.serial,
        width: w,
        height: h,
        hot_x: image.hot_x.min(w - 1),
        hot_y: image.hot_y.min(h - 1),
        rgba,
    }
}

/// Converts 32-bit blue-first pixels (`stride` bytes a row) into `picture`,
/// BT.601 limited range as the client's decoder path expects; the extra
/// column or row of an odd-sized screen is left out.
pub fn to_i420(bgrx: &[u8], stride: usize, picture: &mut I420) -> Result<(), ScreenError> {
    let (w, h) = (picture.width, picture.height);
    let cw = w / 2;
    let mut planar = yuv::YuvPlanarImageMut {
        y_plane: yuv::BufferStoreMut::Borrowed(&mut picture.y),
        y_stride: w as u32,
        u_plane: yuv::BufferStoreMut::Borrowed(&mut picture.u),
        u_stride: cw as u32,
        v_plane: yuv::BufferStoreMut::Borrowed(&mut picture.v),
        v_stride: cw as u32,
        width: w as u32,
        height: h as u32,
    };
    let need = stride * h.saturating_sub(1) + w * 4;
    if bgrx.len() < need {
        return Err(ScreenError(format!(
            "captured {} bytes, a {w}x{h} picture needs {need}",
            bgrx.len()
        )));
    }
    yuv::bgra_to_yuv420(
        &mut planar,
        bgrx,
        stride as u32,
        yuv::YuvRange::Limited,
        yuv::YuvStandardMatrix::Bt601,
        yuv::YuvConversionMode::Balanced,
    )
    .map_err(|e| ScreenError(format!("converting the capture: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktops_parse_and_print_back() {
        assert_eq!("demo".parse::<DesktopSource>(), Ok(DesktopSource::Demo));
        let x = "x11::1".parse::<DesktopSource>().unwrap();
        assert_eq!(
            x,
            DesktopSource::X11 {
                display: ":1".into()
            }
        );
        assert_eq!(x.to_string(), "x11::1");
        for bad in ["", "x11:", "x11", "wayland:0", "demo:1"] {
            let e = bad.parse::<DesktopSource>().unwrap_err();
            assert!(e.contains("x11:DISPLAY"), "{bad}: {e}");
        }
    }

    #[test]
    fn captured_colours_become_the_same_yuv_the_demo_draws() {
        use crate::demo::Yuv;
        // A 4x2 picture from a 5-pixel-wide capture (an odd screen):
        // white, black, then the demo's own colours.
        let (w, h, stride) = (4usize, 2usize, 5 * 4);
        let mut bgrx = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                let px = if x < 2 {
                    [255, 255, 255, 0]
                } else {
                    [0, 0, 0, 0]
                };
                bgrx[y * stride + x * 4..][..4].copy_from_slice(&px);
            }
        }
        let mut p = I420::new(w, h);
        to_i420(&bgrx, stride, &mut p).unwrap();
        let white = Yuv::rgb(255, 255, 255);
        let black = Yuv::rgb(0, 0, 0);
        let near = |a: u8, b: u8| a.abs_diff(b) <= 2;
        assert!(near(p.y[0], white.0) && near(p.y[3], black.0), "{:?}", p.y);
        assert!(
            near(p.u[0], 128) && near(p.v[1], 128),
            "{:?} {:?}",
            p.u,
            p.v
        );
        // A short capture is an error, not a panic.
        assert!(to_i420(&bgrx[..10], stride, &mut p).is_err());
    }
}
