//! The window: winit for events, softbuffer for pixels.
//!
//! One event loop on the main thread; the connect, decode and script threads
//! talk to it only through [`UserEvent`]s sent with an `EventLoopProxy`. The
//! decode thread copies each picture into a shared slot (latest wins) and
//! wakes the loop; on redraw the loop converts the picture, scales it into
//! the surface with black bars, and presents. Keys go out by physical
//! position; everything held is released when the window loses focus.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nephele_protocol::activity::{KeepActive, Phase};
use nephele_protocol::wire::{InputEvent, MouseButton};
use winit::application::ApplicationHandler;
use winit::dpi::LogicalSize;
use winit::event::{ElementState, KeyEvent, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::keyboard::{KeyCode, ModifiersState, PhysicalKey};
use winit::window::{Window, WindowId};

use crate::input::{HeldInput, Script};
use crate::session::{ConnectConfig, FrameMeta, FrameSink, Session};
use crate::stats::{Continuity, Stats};
use crate::video::{Picture, Presenter, Viewport};

/// What other threads tell the window.
pub enum UserEvent {
    /// The session is up.
    Connected(Box<Session>),
    /// Connecting failed.
    Failed(String),
    /// A new picture is in the slot.
    Frame,
    /// The session ended.
    Ended(Option<String>),
}

impl std::fmt::Debug for UserEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connected(_) => f.write_str("Connected"),
            Self::Failed(e) => write!(f, "Failed({e})"),
            Self::Frame => f.write_str("Frame"),
            Self::Ended(e) => write!(f, "Ended({e:?})"),
        }
    }
}

/// The latest decoded picture, copied out of the decoder.
#[derive(Default)]
struct Slot {
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    width: usize,
    height: usize,
    meta: Option<FrameMeta>,
    fresh: bool,
}

struct WindowSink {
    slot: Arc<Mutex<Slot>>,
    proxy: EventLoopProxy<UserEvent>,
    pending: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl FrameSink for WindowSink {
    fn present(&mut self, pic: &Picture<'_>, meta: FrameMeta) {
        {
            let Ok(mut s) = self.slot.lock() else { return };
            let (cw, ch) = pic.chroma_size();
            copy_plane(&mut s.y, pic.y, pic.y_stride, pic.width, pic.height);
            copy_plane(&mut s.u, pic.u, pic.uv_stride, cw, ch);
            copy_plane(&mut s.v, pic.v, pic.uv_stride, cw, ch);
            s.width = pic.width;
            s.height = pic.height;
            if s.fresh {
                // The window had not shown the previous picture yet.
                self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
            s.fresh = true;
            s.meta = Some(meta);
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.proxy.send_event(UserEvent::Frame);
        }
    }
}

/// Copies a plane tightly packed; reuses `dst`'s allocation.
fn copy_plane(dst: &mut Vec<u8>, src: &[u8], stride: usize, w: usize, h: usize) {
    dst.resize(w * h, 0);
    for r in 0..h {
        if let Some(row) = src.get(r * stride..r * stride + w) {
            dst[r * w..(r + 1) * w].copy_from_slice(row);
        }
    }
}

/// Window options.
#[derive(Debug, Clone, Default)]
pub struct WindowOptions {
    /// Close after this long.
    pub duration: Option<Duration>,
    /// Input to play once connected.
    pub script: Option<Script>,
    /// Window title.
    pub title: String,
    /// Presentations a second at most, instead of the monitor's refresh rate.
    pub display_hz: Option<u16>,
    /// A keep-active request standing from the start.
    pub keep_active: KeepActive,
}

/// How often the title's session status is brought up to date.
const STATUS_INTERVAL: Duration = Duration::from_millis(250);

struct App {
    cfg: Option<ConnectConfig>,
    opts: WindowOptions,
    proxy: EventLoopProxy<UserEvent>,
    stats: Arc<Stats>,
    slot: Arc<Mutex<Slot>>,
    pending: Arc<AtomicBool>,
    window: Option<Arc<Window>>,
    surface: Option<softbuffer::Surface<Arc<Window>, Arc<Window>>>,
    presenter: Presenter,
    /// The picture taken from the slot for this redraw.
    taken: Slot,
    have_picture: bool,
    viewport: Option<Viewport>,
    session: Option<Session>,
    held: HeldInput,
    deadline: Option<Instant>,
    error: Option<String>,
    stop_script: Arc<AtomicBool>,
    /// The display's refresh interval, where the platform tells it.
    refresh: Option<Duration>,
    last_present: Option<Instant>,
    /// A picture waits for the display's next refresh until then.
    redraw_at: Option<Instant>,
    /// Modifier keys held, for the client's own shortcuts.
    modifiers: ModifiersState,
    /// The title shown now.
    shown_title: String,
    /// The banner drawn over the picture (what the session is doing).
    banner: Option<String>,
    next_status: Instant,
    /// Reconnects and takeovers seen: each new path releases held input.
    paths_seen: u64,
}

/// Opens the window, connects, and runs until closed, the duration passes,
/// or the session ends. Returns the session's statistics and how long it streamed.
pub fn run(
    cfg: ConnectConfig,
    opts: WindowOptions,
    stats: Arc<Stats>,
) -> anyhow::Result<(Arc<Stats>, Duration)> {
    let event_loop = EventLoop::<UserEvent>::with_user_event().build()?;
    let proxy = event_loop.create_proxy();
    let mut app = App {
        cfg: Some(cfg),
        opts,
        proxy,
        stats: stats.clone(),
        slot: Arc::new(Mutex::new(Slot::default())),
        pending: Arc::new(AtomicBool::new(false)),
        window: None,
        surface: None,
        presenter: Presenter::default(),
        taken: Slot::default(),
        have_picture: false,
        viewport: None,
        session: None,
        held: HeldInput::default(),
        deadline: None,
        error: None,
        stop_script: Arc::new(AtomicBool::new(false)),
        refresh: None,
        last_present: None,
        redraw_at: None,
        modifiers: ModifiersState::empty(),
        shown_title: String::new(),
        banner: None,
        next_status: Instant::now(),
        paths_seen: 0,
    };
    // Key presses and presentation start on this thread.
    nephele_platform::sched::latency_critical();
    event_loop.run_app(&mut app)?;
    app.stop_script.store(true, Ordering::Relaxed);
    let streamed = app
        .session
        .as_ref()
        .map(|s| s.started().elapsed())
        .unwrap_or_default();
    if let Some(s) = app.session.take() {
        s.close()?;
    }
    if let Some(e) = app.error {
        anyhow::bail!(e);
    }
    Ok((stats, streamed))
}

/// The client's own shortcuts hold all three of these (Moonlight's
/// habit), so they never collide with what the remote desktop uses.
fn is_shortcut_chord(m: ModifiersState) -> bool {
    m.control_key() && m.alt_key() && m.shift_key()
}

impl App {
    /// Handles the client's own shortcuts; true when the key was one (and
    /// is therefore not sent to the desktop).
    fn shortcut(&mut self, event: &KeyEvent) -> bool {
        if !is_shortcut_chord(self.modifiers) {
            return false;
        }
        match event.physical_key {
            // Ctrl+Alt+Shift+M: microphone on or off.
            PhysicalKey::Code(KeyCode::KeyM) => {
                if event.state == ElementState::Pressed
                    && !event.repeat
                    && let Some(s) = &self.session
                {
                    let muted = !s.mic_muted();
                    s.set_mic_muted(muted);
                    tracing::info!(muted, "microphone");
                    self.refresh_status();
                }
                true
            }
            // Ctrl+Alt+Shift+P: presentation mode keeps the session active
            // without input (a talk, a film).
            PhysicalKey::Code(KeyCode::KeyP) => {
                if event.state == ElementState::Pressed
                    && !event.repeat
                    && let Some(s) = &self.session
                {
                    let a = s.activity();
                    let on = a.keep_active() == KeepActive::No;
                    a.set_keep_active(if on {
                        KeepActive::Presentation
                    } else {
                        KeepActive::No
                    });
                    tracing::info!(on, "presentation mode");
                    self.refresh_status();
                }
                true
            }
            _ => false,
        }
    }

    /// The title tells what the session is doing: a muted microphone,
    /// presentation mode, a coming pause, a pause, a resume, a reconnect.
    /// A new path to the host (reconnect, takeover) releases held input.
    fn refresh_status(&mut self) {
        let Some(s) = &self.session else { return };
        // After a reconnect the session goes through another gateway.
        let route = self
            .stats
            .route
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let mut title = if route.pop.is_empty() || route.pop == "direct" {
            self.opts.title.clone()
        } else {
            format!("Nephele — {} via {}", route.pop, route.gateway_id)
        };
        if s.mic_muted() {
            title.push_str(" — microphone muted");
        }
        if s.activity().keep_active() != KeepActive::No {
            title.push_str(" — presentation mode");
        }
        let (status, paths) = self
            .stats
            .continuity
            .lock()
            .map(|c| (status_text(&c, self.stats.silence()), c.takeovers))
            .unwrap_or_default();
        if let Some(st) = &status {
            title.push_str(" — ");
            title.push_str(st);
        }
        if status != self.banner {
            // No picture may come while paused: redraw for the banner.
            self.banner = status;
            if let Some(w) = &self.window {
                w.request_redraw();
            }
        }
        let paths = paths + self.stats.reconnects.load(Ordering::Relaxed);
        if paths != self.paths_seen {
            self.paths_seen = paths;
            self.release_held();
        }
        if title != self.shown_title
            && let Some(w) = &self.window
        {
            w.set_title(&title);
            self.shown_title = title;
        }
    }
    fn start_connect(&mut self) {
        let Some(cfg) = self.cfg.take() else { return };
        let proxy = self.proxy.clone();
        let stats = self.stats.clone();
        let sink = WindowSink {
            slot: self.slot.clone(),
            proxy: self.proxy.clone(),
            pending: self.pending.clone(),
            stats: self.stats.clone(),
        };
        let end_proxy = self.proxy.clone();
        let spawned = std::thread::Builder::new()
            .name("nephele-connect".into())
            .spawn(move || {
                let on_end = Box::new(move |e: Option<&crate::session::SessionError>| {
                    let _ = end_proxy.send_event(UserEvent::Ended(e.map(|e| e.to_string())));
                });
                let ev = match Session::connect(cfg, stats, Box::new(sink), on_end) {
                    Ok(s) => UserEvent::Connected(Box::new(s)),
                    Err(e) => UserEvent::Failed(e.to_string()),
                };
                let _ = proxy.send_event(ev);
            });
        if let Err(e) = spawned {
            self.error = Some(format!("cannot start the connection thread: {e}"));
        }
    }

    fn send(&mut self, ev: InputEvent) {
        let Some(s) = &self.session else { return };
        if !self.held.track(&ev) {
            return;
        }
        if let Err(e) = s.input().push(ev) {
            tracing::warn!(error = %e, "input not sent");
        }
    }

    fn release_held(&mut self) {
        let releases = self.held.release_all();
        if let Some(s) = &self.session {
            for ev in releases {
                let _ = s.input().push(ev);
            }
        }
    }

    fn redraw(&mut self) {
        let (Some(window), Some(surface)) = (self.window.as_ref(), self.surface.as_mut()) else {
            return;
        };
        let size = window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height)) else {
            return;
        };
        if let Err(e) = surface.resize(w, h) {
            tracing::warn!(error = %e, "surface resize");
            return;
        }
        let mut meta = None;
        if let Ok(mut s) = self.slot.lock()
            && s.fresh
        {
            // Trade buffers with the slot and let go of it at once: the
            // decode thread never waits for a conversion.
            s.fresh = false;
            meta = s.meta;
            let taken = &mut self.taken;
            std::mem::swap(&mut taken.y, &mut s.y);
            std::mem::swap(&mut taken.u, &mut s.u);
            std::mem::swap(&mut taken.v, &mut s.v);
            (taken.width, taken.height) = (s.width, s.height);
        }
        if meta.is_some() {
            let t = &self.taken;
            let pic = Picture {
                width: t.width,
                height: t.height,
                y: &t.y,
                y_stride: t.width,
                u: &t.u,
                v: &t.v,
                uv_stride: t.width.div_ceil(2),
            };
            if self.presenter.convert(&pic).is_ok() {
                self.have_picture = true;
            }
        }
        let Ok(mut buffer) = surface.buffer_mut() else {
            return;
        };
        if self.have_picture {
            self.viewport = Some(self.presenter.blit(&mut buffer, w.get(), h.get()));
        } else {
            buffer.fill(0x0020_2228);
        }
        if let Some(text) = &self.banner {
            crate::overlay::banner(&mut buffer, w.get() as usize, h.get() as usize, text);
        }
        // Lets platforms that pace redraws to the display schedule the next.
        window.pre_present_notify();
        if let Err(e) = buffer.present() {
            tracing::warn!(error = %e, "present");
            return;
        }
        self.last_present = Some(Instant::now());
        if let Some(m) = meta {
            self.stats.record_presented(m.completed_at, m.capture_us);
        }
    }

    /// The interval between presentations: `--display-hz`, else the refresh
    /// of the monitor the window is on if the platform reports one (an X
    /// server without RandR refresh rates, such as Xvfb, does not).
    fn refresh_interval(&self, window: &Window) -> Option<Duration> {
        let mhz = match self.opts.display_hz {
            Some(hz) => u32::from(hz) * 1000,
            // Below 20 Hz is no display a person watches video on.
            None => window
                .current_monitor()?
                .refresh_rate_millihertz()
                .filter(|&m| m >= 20_000)?,
        };
        Some(Duration::from_secs_f64(1000.0 / f64::from(mhz.max(1))))
    }

    fn start_script(&mut self) {
        let (Some(script), Some(session)) = (self.opts.script.take(), self.session.as_ref()) else {
            return;
        };
        let (input, pads) = (session.input(), session.pad_script());
        let start = Instant::now();
        let stop = self.stop_script.clone();
        let _ = std::thread::Builder::new()
            .name("nephele-script".into())
            .spawn(move || {
                let stopped = || stop.load(Ordering::Relaxed);
                if let Err(e) = crate::headless::play_script(&script, &input, &pads, start, stopped)
                {
                    tracing::warn!(error = %e, "input script stopped");
                }
            });
    }
}

impl ApplicationHandler<UserEvent> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        let attrs = Window::default_attributes()
            .with_title(self.opts.title.clone())
            .with_inner_size(LogicalSize::new(1280.0, 720.0));
        let window = match event_loop.create_window(attrs) {
            Ok(w) => Arc::new(w),
            Err(e) => {
                self.error = Some(format!("cannot open a window: {e}"));
                event_loop.exit();
                return;
            }
        };
        let surface = softbuffer::Context::new(window.clone())
            .and_then(|ctx| softbuffer::Surface::new(&ctx, window.clone()));
        match surface {
            Ok(s) => self.surface = Some(s),
            Err(e) => {
                self.error = Some(format!("cannot draw into the window: {e}"));
                event_loop.exit();
                return;
            }
        }
        self.refresh = self.refresh_interval(&window);
        tracing::info!(refresh = ?self.refresh, "window open");
        self.window = Some(window);
        self.deadline = self.opts.duration.map(|d| Instant::now() + d);
        self.start_connect();
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: UserEvent) {
        match event {
            UserEvent::Connected(s) => {
                tracing::info!(info = ?s.info(), "connected");
                s.activity().set_keep_active(self.opts.keep_active);
                self.session = Some(*s);
                self.refresh_status();
                self.start_script();
            }
            UserEvent::Failed(e) => {
                self.error = Some(e);
                event_loop.exit();
            }
            UserEvent::Frame => {
                self.pending.store(false, Ordering::Release);
                // At most one picture per display refresh: one arriving
                // sooner waits for the next (and a newer one replaces it
                // meanwhile), since the display could not show both.
                let next = self.last_present.zip(self.refresh).map(|(t, r)| t + r);
                match next {
                    Some(at) if Instant::now() < at => {
                        self.redraw_at.get_or_insert(at);
                    }
                    _ => {
                        if let Some(w) = &self.window {
                            w.request_redraw();
                        }
                    }
                }
            }
            UserEvent::Ended(e) => {
                if let Some(e) = e {
                    self.error = Some(format!("session ended: {e}"));
                }
                event_loop.exit();
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::Moved(_) | WindowEvent::ScaleFactorChanged { .. } => {
                // Perhaps onto another monitor.
                if let Some(w) = &self.window {
                    self.refresh = self.refresh_interval(w);
                }
            }
            WindowEvent::RedrawRequested => self.redraw(),
            WindowEvent::Resized(_) => {
                // The next blit sees the new size and refits the picture.
                if let Some(w) = &self.window {
                    w.request_redraw();
                }
            }
            WindowEvent::Focused(focused) => {
                if !focused {
                    self.release_held();
                }
                if let Some(s) = &self.session {
                    s.activity().set_background(!focused);
                }
            }
            WindowEvent::Occluded(hidden) => {
                if let Some(s) = &self.session {
                    s.activity().set_background(hidden);
                }
            }
            WindowEvent::ModifiersChanged(m) => self.modifiers = m.state(),
            WindowEvent::KeyboardInput { event, .. } => {
                if self.shortcut(&event) {
                    return;
                }
                if let Some(usage) = nephele_platform::keyboard::hid_usage(event.physical_key) {
                    let down = event.state == ElementState::Pressed;
                    self.send(InputEvent::Key { usage, down });
                }
            }
            WindowEvent::CursorMoved { position, .. } => {
                if let Some(vp) = self.viewport {
                    let (x, y) = vp.to_stream(position.x, position.y);
                    self.send(InputEvent::Move { x, y });
                }
            }
            WindowEvent::MouseInput { state, button, .. } => {
                let button = match button {
                    winit::event::MouseButton::Left => MouseButton::Left,
                    winit::event::MouseButton::Right => MouseButton::Right,
                    winit::event::MouseButton::Middle => MouseButton::Middle,
                    winit::event::MouseButton::Back => MouseButton::Back,
                    winit::event::MouseButton::Forward => MouseButton::Forward,
                    winit::event::MouseButton::Other(_) => return,
                };
                self.send(InputEvent::Button {
                    button,
                    down: state == ElementState::Pressed,
                });
            }
            WindowEvent::MouseWheel { delta, .. } => {
                // Lines are notches; pixel deltas (touchpads) count ~50 px per notch.
                let (dx, dy) = match delta {
                    MouseScrollDelta::LineDelta(x, y) => {
                        (f64::from(x) * 120.0, f64::from(y) * 120.0)
                    }
                    MouseScrollDelta::PixelDelta(p) => (p.x * 120.0 / 50.0, p.y * 120.0 / 50.0),
                };
                let clamp =
                    |v: f64| v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
                self.send(InputEvent::Wheel {
                    dx: clamp(dx),
                    dy: clamp(dy),
                });
            }
            _ => {}
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let now = Instant::now();
        if now >= self.next_status {
            self.next_status = now + STATUS_INTERVAL;
            self.refresh_status();
        }
        if self.redraw_at.is_some_and(|t| now >= t) {
            self.redraw_at = None;
            if let Some(w) = &self.window {
                w.request_redraw();
            }
        }
        if self.deadline.is_some_and(|d| now >= d) {
            event_loop.exit();
            return;
        }
        let status = self.session.is_some().then_some(self.next_status);
        match self
            .deadline
            .into_iter()
            .chain(self.redraw_at)
            .chain(status)
            .min()
        {
            Some(t) => event_loop.set_control_flow(ControlFlow::WaitUntil(t)),
            None => event_loop.set_control_flow(ControlFlow::Wait),
        }
    }
}

/// Silence from the gateway longer than this (it pings four times a
/// second) is shown as an interrupted connection.
const INTERRUPTED_AFTER: Duration = Duration::from_millis(600);

/// What the title and the banner say about the session, if anything.
fn status_text(c: &Continuity, silence: Duration) -> Option<String> {
    if c.reconnecting {
        return Some("connection lost — reconnecting…".into());
    }
    if silence > INTERRUPTED_AFTER {
        return Some("connection interrupted — waiting for the service…".into());
    }
    let since = c.phase_at.map(|t| t.elapsed()).unwrap_or_default();
    let left = |ms: u32| Duration::from_millis(u64::from(ms)).saturating_sub(since);
    Some(match c.phase {
        Phase::Streaming => return None,
        Phase::Warning => format!(
            "idle: pausing in {} s unless you type or move the mouse",
            left(c.phase_ms).as_secs_f64().ceil()
        ),
        Phase::Paused => "paused while you were away — press a key to resume".into(),
        Phase::Suspended => "suspended while you were away — press a key to resume".into(),
        Phase::Resuming => format!("resuming (about {} ms)", left(c.phase_ms).as_millis()),
    })
}
