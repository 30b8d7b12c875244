//! The window's picture: the latest decoded picture taken from the slot,
//! converted and scaled into the softbuffer surface with black bars, at
//! most once per display refresh, with the banner, the statistics overlay
//! and (while the pointer is captured) the remote pointer drawn over it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nephele_protocol::monitors::Monitor;
use winit::window::Window;

use crate::session::FrameMeta;
use crate::slot::Slot;
use crate::stats::Stats;
use crate::status::RemoteCursor;
use crate::video::{Presenter, Viewport};

/// Behind the launcher's pages: egui's dark panel colour.
const LAUNCHER_BACKGROUND: u32 = 0x001b_1b1b;

/// Draws over everything else: the window, its 0RGB pixels, their width
/// and height.
pub(super) type Layer<'a> = dyn FnMut(&Window, &mut [u32], (usize, usize)) + 'a;

/// What goes over the picture.
pub(super) struct Overlays<'a> {
    /// The banner's text, if any.
    pub banner: Option<&'a str>,
    /// The statistics overlay's lines, when it shows.
    pub stats: Option<&'a [String]>,
    /// The remote pointer, when the local one is hidden (captured).
    pub pointer: Option<&'a RemoteCursor>,
}

/// The window and what is drawn into it.
pub(super) struct Screen {
    pub window: Option<Arc<Window>>,
    surface: Option<softbuffer::Surface<Arc<Window>, Arc<Window>>>,
    presenter: Presenter,
    /// The banner's and the statistics' words.
    captions: super::captions::Captions,
    /// Where the decoder leaves pictures.
    pub slot: Arc<Mutex<Slot>>,
    /// A wake-up for a new picture is on its way.
    pub pending: Arc<AtomicBool>,
    /// The picture taken from the slot for this redraw.
    taken: Slot,
    pub have_picture: bool,
    pub viewport: Option<Viewport>,
    /// The part of the picture shown: one of the desktop's monitors, or
    /// (`None`) all of it.
    pub part: Option<Monitor>,
    /// The display's refresh interval, where the platform tells it.
    pub refresh: Option<Duration>,
    last_present: Option<Instant>,
    /// A picture waits for the display's next refresh until then.
    pub redraw_at: Option<Instant>,
}

impl Screen {
    pub fn new() -> Self {
        Self {
            window: None,
            surface: None,
            presenter: Presenter::default(),
            captions: super::captions::Captions::new(),
            slot: Arc::new(Mutex::new(Slot::default())),
            pending: Arc::new(AtomicBool::new(false)),
            taken: Slot::default(),
            have_picture: false,
            viewport: None,
            part: None,
            refresh: None,
            last_present: None,
            redraw_at: None,
        }
    }

    /// Takes the window and makes a surface for it.
    pub fn open(&mut self, window: Arc<Window>) -> Result<(), String> {
        let surface = softbuffer::Context::new(window.clone())
            .and_then(|ctx| softbuffer::Surface::new(&ctx, window.clone()))
            .map_err(|e| format!("cannot draw into the window: {e}"))?;
        self.surface = Some(surface);
        self.window = Some(window);
        Ok(())
    }

    /// The size of the picture shown.
    pub fn picture_size(&self) -> (usize, usize) {
        (self.taken.width, self.taken.height)
    }

    /// Asks for a redraw.
    pub fn request_redraw(&self) {
        if let Some(w) = &self.window {
            w.request_redraw();
        }
    }

    /// A new picture is in the slot: drawn at once, or at the display's
    /// next refresh when one was presented less than a refresh ago (a
    /// newer one replaces it meanwhile), since the display could not show
    /// both.
    pub fn picture_arrived(&mut self) {
        let next = self.last_present.zip(self.refresh).map(|(t, r)| t + r);
        match next {
            Some(at) if Instant::now() < at => {
                self.redraw_at.get_or_insert(at);
            }
            _ => self.request_redraw(),
        }
    }

    /// Draws the latest picture (converting it if new) and the overlays,
    /// and presents. Returns whether a new picture was shown first, and
    /// counts it as presented.
    pub fn redraw(
        &mut self,
        stats: &Stats,
        overlays: &Overlays<'_>,
        layer: Option<&mut Layer<'_>>,
    ) -> bool {
        let (Some(window), Some(surface)) = (self.window.as_ref(), self.surface.as_mut()) else {
            return false;
        };
        let size = window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height)) else {
            return false;
        };
        if let Err(e) = surface.resize(w, h) {
            tracing::warn!(error = %e, "surface resize");
            return false;
        }
        // Trade buffers with the slot and let go of it at once: the decode
        // thread never waits for a conversion.
        let meta: Option<FrameMeta> = self
            .slot
            .lock()
            .ok()
            .and_then(|mut s| s.take(&mut self.taken));
        let mut first = false;
        if meta.is_some() && self.presenter.convert(&self.taken.picture()).is_ok() {
            first = !self.have_picture;
            self.have_picture = true;
        }
        let Ok(mut buffer) = surface.buffer_mut() else {
            return false;
        };
        if self.have_picture {
            let vp = self
                .presenter
                .blit_part(&mut buffer, w.get(), h.get(), self.part);
            let shown = (u64::from(vp.w) << 32) | u64::from(vp.h);
            stats.presented_size.store(shown, Ordering::Relaxed);
            self.viewport = Some(vp);
        } else {
            buffer.fill(0x0020_2228);
        }
        let (bw, bh) = (w.get() as usize, h.get() as usize);
        let scale = window.scale_factor() as f32;
        let top = match overlays.banner {
            Some(text) => self.captions.banner(&mut buffer, (bw, bh), scale, text),
            None => 0,
        };
        if let (Some(vp), Some(cursor)) = (self.viewport, overlays.pointer)
            && let (Some((x, y, true)), Some(shape)) = (cursor.position, &cursor.shape)
            && (vp.origin.0..vp.origin.0 + vp.stream.0).contains(&u32::from(x))
            && (vp.origin.1..vp.origin.1 + vp.stream.1).contains(&u32::from(y))
        {
            // Captured, the local cursor is hidden: the remote pointer is
            // drawn where the desktop has it, over the latest picture (when
            // it is on the part shown).
            let at = |p: u16, part: u32, window: u32, shown: u32, stream: u32, hot: u16| {
                i64::from(window)
                    + (i64::from(p) - i64::from(part)) * i64::from(shown) / i64::from(stream.max(1))
                    - i64::from(hot)
            };
            let wx = at(x, vp.origin.0, vp.x, vp.w, vp.stream.0, shape.hot_x);
            let wy = at(y, vp.origin.1, vp.y, vp.h, vp.stream.1, shape.hot_y);
            super::cursor::pointer(&mut buffer, bw, bh, (wx, wy), shape);
        }
        if let Some(lines) = overlays.stats {
            self.captions
                .stats(&mut buffer, (bw, bh), scale, top, lines);
        }
        if let Some(draw) = layer {
            draw(window, &mut buffer, (bw, bh));
        }
        // Lets platforms that pace redraws to the display schedule the next.
        window.pre_present_notify();
        if let Err(e) = buffer.present() {
            tracing::warn!(error = %e, "present");
            return false;
        }
        self.last_present = Some(Instant::now());
        if let Some(m) = meta {
            stats.record_presented(m.completed_at, m.captured_us);
        }
        first
    }

    /// Fills the surface with the launcher's colour, lets `draw` paint
    /// into it (the window, its 0RGB pixels, their width and height), and
    /// presents.
    pub fn redraw_ui<R>(
        &mut self,
        draw: impl FnOnce(&Window, &mut [u32], (usize, usize)) -> R,
    ) -> Option<R> {
        let (Some(window), Some(surface)) = (self.window.as_ref(), self.surface.as_mut()) else {
            return None;
        };
        let size = window.inner_size();
        let (w, h) = (NonZeroU32::new(size.width)?, NonZeroU32::new(size.height)?);
        if let Err(e) = surface.resize(w, h) {
            tracing::warn!(error = %e, "surface resize");
            return None;
        }
        let mut buffer = surface.buffer_mut().ok()?;
        buffer.fill(LAUNCHER_BACKGROUND);
        let r = draw(window, &mut buffer, (w.get() as usize, h.get() as usize));
        window.pre_present_notify();
        if let Err(e) = buffer.present() {
            tracing::warn!(error = %e, "present");
        }
        Some(r)
    }

    /// The interval between presentations: `display_hz`, else the refresh
    /// of the monitor the window is on if the platform reports one (an X
    /// server without RandR refresh rates, such as Xvfb, does not).
    pub fn refresh_interval(&self, display_hz: Option<u16>) -> Option<Duration> {
        let mhz = match display_hz {
            Some(hz) => u32::from(hz) * 1000,
            // Below 20 Hz is no display a person watches video on.
            None => self
                .window
                .as_ref()?
                .current_monitor()?
                .refresh_rate_millihertz()
                .filter(|&m| m >= 20_000)?,
        };
        Some(Duration::from_secs_f64(1000.0 / f64::from(mhz.max(1))))
    }
}
