//! The window: winit for events, softbuffer for pixels.
//!
//! One event loop on the main thread; the connect, decode and script threads
//! talk to it only through [`UserEvent`]s sent with an `EventLoopProxy`. The
//! decode thread copies each picture into a shared slot (latest wins) and
//! wakes the loop; on redraw the loop converts the picture, scales it into
//! the surface with black bars, and presents ([`present`]). Keys go out by
//! physical position; everything held is released when the window loses
//! focus. The pointer, absolute or captured, is [`pointer`]'s.
//!
//! The connect thread also signs in and probes ([`Connector`], [`connect`]),
//! so the window opens at once and tells each stage as it happens; the
//! title and a banner say what happens ([`banner`]). The client's own
//! shortcuts ([`shortcuts`]) toggle fullscreen, pointer capture, the
//! statistics overlay, the microphone and presentation mode. A kiosk window
//! is fullscreen without decorations, obeys only its exit chord, and
//! starts over with backoff whenever the session fails or ends.
//!
//! Started without a connection ([`Start::Launcher`]), the window opens on
//! the [`crate::launcher`]'s pages, drawn with egui ([`ui`]); a desktop
//! chosen there becomes the window's session, and leaving it (or losing
//! it) returns to the launcher.

mod banner;
mod captions;
mod connect;
mod cursor;
mod ending;
mod layer;
mod options;
mod pages;
mod pointer;
mod present;
mod shortcuts;
mod typing;
mod ui;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nephele_protocol::activity::KeepActive;
use nephele_protocol::wire::InputEvent;
use winit::application::ApplicationHandler;
use winit::dpi::LogicalSize;
use winit::event::{DeviceEvent, DeviceId, ElementState, Ime, KeyEvent, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::keyboard::ModifiersState;
use winit::window::{Fullscreen, Window, WindowId};

use crate::config::{MouseMode, Typing};
use crate::input::HeldInput;
use crate::launcher::{self, Launcher, Page};
pub use crate::login::{Connector, Prepared};
use crate::slot::SlotSink;
use crate::stats::Stats;
use crate::status::Observed;
use banner::Banner;
use connect::Connection;
pub use options::{ConnectorFor, Ending, LauncherSetup, Start, UserEvent, WindowOptions};
use pointer::{Capture, Pointer};
use present::Screen;
use shortcuts::{Held, Shortcut, shortcut_for};

/// How often the title's session status is brought up to date.
const STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// How long the window's size must hold before the desktop follows it
/// (a drag resizes the window many times a second; the host resizes its
/// screen and sends a keyframe only once the drag stops).
const RESIZE_SETTLE: Duration = Duration::from_millis(300);

struct App {
    opts: WindowOptions,
    proxy: EventLoopProxy<UserEvent>,
    stats: Arc<Stats>,
    observed: Arc<Observed>,
    screen: Screen,
    pointer: Pointer,
    banner: Banner,
    conn: Connection,
    held: HeldInput,
    /// Physical keys seen down, to drop duplicate presses.
    keys_down: typing::KeysDown,
    /// Modifier keys held, for the client's own shortcuts.
    modifiers: ModifiersState,
    deadline: Option<Instant>,
    error: Option<String>,
    stop_script: Arc<AtomicBool>,
    fullscreen: bool,
    next_status: Instant,
    /// When the window was asked for (for the time to the first picture).
    opened: Instant,
    /// Reconnects and takeovers seen: each new path releases held input.
    paths_seen: u64,
    /// The launcher's pages, when the window started on them.
    launcher: Option<Launcher>,
    /// Makes the connector for the desktop chosen in the launcher.
    connector_for: Option<ConnectorFor>,
    /// egui, for the launcher's pages and the layer over the picture.
    ui: Option<ui::Ui>,
    /// The session's menu is open; its first control is yet to be focused.
    menu_open: bool,
    menu_focus: bool,
    /// The menu's tab shows at the top of a window (the pointer went to
    /// the top edge's middle).
    menu_tab: bool,
    /// Since when the connection has been lost (the layer says so).
    lost_since: Option<Instant>,
    /// Leave at the next chance (the menu's Quit).
    quit: bool,
    /// When the window's size will have settled, after a resize (the
    /// desktop follows then).
    resize_settles: Option<Instant>,
}

/// The longest wait between a launcher's attempts to reconnect.
const LAUNCHER_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Opens the window, connects, and runs until closed, the duration passes,
/// or the session ends. Returns the session's statistics and how long it
/// streamed.
pub fn run(
    start: Start,
    opts: WindowOptions,
    stats: Arc<Stats>,
    observed: Arc<Observed>,
) -> anyhow::Result<(Arc<Stats>, Duration)> {
    let event_loop = EventLoop::<UserEvent>::with_user_event().build()?;
    let proxy = event_loop.create_proxy();
    let now = Instant::now();
    let (connector, launcher, connector_for) = match start {
        Start::Connect(c) => (Some(c), None, None),
        Start::Launcher(setup) => {
            let p = proxy.clone();
            let notify = Arc::new(move |o| {
                let _ = p.send_event(UserEvent::Launcher(o));
            });
            let setup = *setup;
            let mut l = Launcher::new(setup.services_file, setup.roots, notify)
                .with_settings(setup.settings, setup.settings_file);
            l.problem = setup.notice;
            (None, Some(l), Some(setup.connector_for))
        }
    };
    let mut app = App {
        fullscreen: opts.fullscreen || opts.kiosk.is_some(),
        pointer: Pointer::new(opts.mouse == MouseMode::Relative),
        banner: Banner::new(opts.stats_overlay, now),
        opts,
        proxy,
        stats: stats.clone(),
        observed,
        screen: Screen::new(),
        conn: Connection::new(connector),
        held: HeldInput::default(),
        keys_down: typing::KeysDown::default(),
        modifiers: ModifiersState::empty(),
        deadline: None,
        error: None,
        stop_script: Arc::new(AtomicBool::new(false)),
        next_status: now,
        opened: now,
        paths_seen: 0,
        launcher,
        connector_for,
        ui: None,
        menu_open: false,
        menu_focus: false,
        menu_tab: false,
        lost_since: None,
        quit: false,
        resize_settles: None,
    };
    // Key presses and presentation start on this thread.
    nephele_platform::sched::latency_critical();
    event_loop.run_app(&mut app)?;
    app.stop_script.store(true, Ordering::Relaxed);
    let streamed = app
        .conn
        .session
        .as_ref()
        .map(|s| s.started().elapsed())
        .unwrap_or_default();
    if let Some(s) = app.conn.session.take() {
        s.close()?;
    }
    if let Some(e) = app.error {
        anyhow::bail!(e);
    }
    Ok((stats, streamed))
}

impl App {
    /// Handles the client's own shortcuts; true when the key was one (and
    /// is therefore not sent to the desktop).
    fn shortcut(&mut self, event: &KeyEvent) -> bool {
        let Some(usage) = nephele_platform::keyboard::hid_usage(event.physical_key) else {
            return false;
        };
        let m = self.modifiers;
        let held = Held {
            ctrl: m.control_key(),
            alt: m.alt_key(),
            shift: m.shift_key(),
            meta: m.super_key(),
        };
        let kiosk = self.opts.kiosk.as_ref();
        let Some(action) = shortcut_for(&self.opts.shortcuts, kiosk, held, usage) else {
            return false;
        };
        if event.state == ElementState::Pressed && !event.repeat {
            if kiosk.is_some() {
                tracing::info!("kiosk exit by the administrator's key combination");
            }
            self.act(action);
        }
        true
    }

    fn act(&mut self, action: Shortcut) {
        match action {
            // Started from the launcher, the quit keys leave the session
            // for the catalog.
            Shortcut::Quit
                if self
                    .launcher
                    .as_ref()
                    .is_some_and(|l| l.page == Page::Session) =>
            {
                self.launcher_act(launcher::Action::BackToCatalog);
            }
            // The loop ends once this event is handled.
            Shortcut::Quit => {
                self.quit = true;
                self.screen.request_redraw();
            }
            Shortcut::Menu => self.toggle_menu(),
            Shortcut::Fullscreen => {
                self.fullscreen = !self.fullscreen;
                self.apply_fullscreen();
                let leave = self.opts.shortcuts.fullscreen;
                self.notify(if self.fullscreen {
                    format!("fullscreen — {leave} leaves")
                } else {
                    "windowed".into()
                });
            }
            Shortcut::Capture => {
                self.pointer.want_capture = !self.pointer.want_capture;
                self.apply_capture();
            }
            Shortcut::Stats => {
                self.banner.show_stats = !self.banner.show_stats;
                self.banner.stats_now();
                self.refresh_status();
                self.screen.request_redraw();
            }
            Shortcut::Microphone => {
                if let Some(s) = &self.conn.session {
                    let muted = !s.mic_muted();
                    s.set_mic_muted(muted);
                    tracing::info!(muted, "microphone");
                    self.notify(
                        if muted {
                            "microphone muted"
                        } else {
                            "microphone on"
                        }
                        .into(),
                    );
                }
            }
            Shortcut::Presentation => {
                // Presentation mode keeps the session active without input
                // (a talk, a film).
                if let Some(s) = &self.conn.session {
                    let a = s.activity();
                    let on = a.keep_active() == KeepActive::No;
                    a.set_keep_active(if on {
                        KeepActive::Presentation
                    } else {
                        KeepActive::No
                    });
                    tracing::info!(on, "presentation mode");
                    self.notify(
                        if on {
                            "presentation mode: the session stays active"
                        } else {
                            "presentation mode off"
                        }
                        .into(),
                    );
                }
            }
        }
    }

    /// Shows `text` on the banner for a few seconds.
    fn notify(&mut self, text: String) {
        self.banner.notify(text);
        self.refresh_status();
    }

    fn apply_fullscreen(&self) {
        if let Some(w) = &self.screen.window {
            w.set_fullscreen(self.fullscreen.then_some(Fullscreen::Borderless(None)));
        }
    }

    fn apply_capture(&mut self) {
        let Some(w) = self.screen.window.clone() else {
            return;
        };
        if self.in_launcher() {
            return;
        }
        match self.pointer.apply_capture(&w) {
            Capture::Same | Capture::Suspended => {}
            Capture::Captured => {
                let key = self.opts.shortcuts.capture;
                self.notify(format!("pointer captured — {key} releases it"));
            }
            Capture::Released => self.notify("pointer released".into()),
            Capture::Failed(why) => self.notify(why),
        }
    }

    /// The title and the banner tell what the session is doing. A new
    /// path to the host (reconnect, takeover) releases held input.
    fn refresh_status(&mut self) {
        let status = self.conn.session.as_ref().map(|_| self.observed.status());
        let (mic_muted, presentation) = self.conn.session.as_ref().map_or((false, false), |s| {
            (s.mic_muted(), s.activity().keep_active() != KeepActive::No)
        });
        let lost = status.as_ref().is_some_and(|s| s.reconnecting);
        if lost != self.lost_since.is_some() {
            self.lost_since = lost.then(Instant::now);
            self.screen.request_redraw();
        } else if lost {
            // The layer counts the seconds.
            self.screen.request_redraw();
        }
        if self.conn.session.is_some() {
            let takeovers = self.stats.timeline.lock().map_or(0, |t| t.takeovers);
            let paths = takeovers + self.stats.reconnects.load(Ordering::Relaxed);
            if paths != self.paths_seen {
                self.paths_seen = paths;
                self.release_held();
            }
        }
        let uncertainty_ms = self
            .observed
            .clock()
            .map_or(0.0, |c| c.uncertainty.as_secs_f64() * 1000.0);
        let session = banner::Session {
            status: status.as_ref(),
            mic_muted,
            presentation,
            uncertainty_ms,
        };
        let (title, redraw) = self.banner.refresh(
            &self.opts.title,
            &session,
            self.conn.retry_at,
            &self.stats,
            self.screen.picture_size(),
        );
        // No picture may come (paused, failed): redraw for the text.
        if redraw {
            self.screen.request_redraw();
        }
        if let (Some(t), Some(w)) = (title, &self.screen.window) {
            w.set_title(&t);
        }
    }

    fn start_connect(&mut self) {
        if self.conn.connecting {
            return;
        }
        self.screen.have_picture = false;
        self.banner.stage = Some("starting…".into());
        let proxy = self.proxy.clone();
        let sink = SlotSink::new(
            self.screen.slot.clone(),
            self.stats.clone(),
            self.screen.pending.clone(),
            Box::new(move || {
                let _ = proxy.send_event(UserEvent::Frame);
            }),
        );
        if let Err(e) = self.conn.start(
            &self.proxy,
            self.stats.clone(),
            self.observed.clone(),
            Box::new(sink),
        ) {
            self.error = Some(e);
        }
    }

    /// Tells the session the window's drawable size in physical pixels
    /// and the monitor's refresh rate, when the desktop follows the window.
    fn follow_window(&mut self) {
        let (Some(s), Some(w)) = (&self.conn.session, &self.screen.window) else {
            return;
        };
        if !self.opts.follow_window {
            return;
        }
        let size = w.inner_size();
        let clamp = |v: u32| v.clamp(2, u32::from(nephele_protocol::MAX_DIMENSION)) as u16;
        let hz = self.screen.refresh.map_or(60, |r| {
            (1.0 / r.as_secs_f64()).round().clamp(1.0, 240.0) as u8
        });
        tracing::info!(
            width = size.width,
            height = size.height,
            hz,
            "the desktop follows the window"
        );
        s.set_display_size(clamp(size.width), clamp(size.height), hz);
    }

    fn send(&mut self, ev: InputEvent) {
        let Some(s) = &self.conn.session else { return };
        if !self.held.track(&ev) {
            return;
        }
        if let Err(e) = s.input().push(ev) {
            tracing::warn!(error = %e, "input not sent");
        }
    }

    fn release_held(&mut self) {
        let releases = self.held.release_all();
        if let Some(s) = &self.conn.session {
            for ev in releases {
                let _ = s.input().push(ev);
            }
        }
    }

    fn redraw(&mut self) {
        if self.in_launcher() {
            self.redraw_launcher();
            return;
        }
        let (drawn, action) = self.redraw_session();
        if let Some(a) = action {
            self.layer_act(a);
        }
        if drawn && self.banner.stage.take().is_some() {
            // The first picture: the stages are over, and a kiosk's next
            // failure starts its backoff afresh.
            self.conn.backoff = Duration::from_secs(1);
            self.next_status = Instant::now();
            let since_open = self.opened.elapsed().as_secs_f64() * 1000.0;
            tracing::info!(since_open_ms = format!("{since_open:.0}"), "first picture");
        }
    }

    fn start_script(&mut self) {
        let (Some(script), Some(session)) = (self.opts.script.take(), self.conn.session.as_ref())
        else {
            return;
        };
        let (input, pads) = (session.input(), session.pad_script());
        let start = Instant::now();
        let stop = self.stop_script.clone();
        let _ = std::thread::Builder::new()
            .name("nephele-script".into())
            .spawn(move || {
                let stopped = || stop.load(Ordering::Relaxed);
                crate::headless::play_script(&script, &input, &pads, start, stopped);
            });
    }
}

impl ApplicationHandler<UserEvent> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.screen.window.is_some() {
            return;
        }
        let attrs = Window::default_attributes()
            .with_title(self.opts.title.clone())
            .with_inner_size(LogicalSize::new(1280.0, 720.0))
            .with_decorations(self.opts.kiosk.is_none())
            .with_fullscreen(self.fullscreen.then_some(Fullscreen::Borderless(None)));
        let attrs = nephele_platform::windowing::with_app_id(attrs, "nephele");
        let opened = event_loop
            .create_window(attrs)
            .map_err(|e| format!("cannot open a window: {e}"))
            .and_then(|w| self.screen.open(Arc::new(w)));
        if let Err(e) = opened {
            self.error = Some(e);
            event_loop.exit();
            return;
        }
        self.screen.refresh = self.screen.refresh_interval(self.opts.display_hz);
        tracing::info!(
            system = nephele_platform::windowing::system(event_loop),
            refresh = ?self.screen.refresh,
            "window open"
        );
        self.deadline = self.opts.duration.map(|d| Instant::now() + d);
        if let (Some(_), Some(w)) = (&self.launcher, &self.screen.window) {
            self.ui = Some(ui::Ui::new(w));
            w.request_redraw();
        }
        self.start_connect();
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: UserEvent) {
        let current = self.conn.attempt;
        match event {
            UserEvent::Stage(a, s) if a == current => {
                if let Some(l) = &mut self.launcher {
                    l.stage(&s);
                }
                self.banner.stage = Some(s);
                self.refresh_status();
            }
            UserEvent::Connected(a, s, keep) if a == current => {
                tracing::info!(info = ?s.info(), "connected");
                s.activity().set_keep_active(self.opts.keep_active);
                self.conn.session = Some(*s);
                self.conn.keep = keep;
                self.conn.awake = nephele_platform::screensaver::Inhibitor::start(
                    nephele_platform::screensaver::RESET_EVERY,
                );
                self.banner.failure = None;
                self.conn.retry_at = None;
                self.banner.stage = Some("waiting for the first picture…".into());
                if let Some(l) = &mut self.launcher {
                    l.connected();
                }
                self.refresh_status();
                self.start_script();
                self.apply_capture();
                self.follow_window();
                if let Some(w) = &self.screen.window {
                    // Composed text (an input method's) comes as `Ime`
                    // events only while IME is allowed.
                    w.set_ime_allowed(self.opts.typing == Typing::Text);
                }
                self.screen.request_redraw();
            }
            UserEvent::Failed(a, why) if a == current => {
                let no_retry = false;
                self.lost(event_loop, Some(Ending { why, no_retry }));
            }
            UserEvent::Ended(a, e) if a == current => {
                let ending = e.map(|e| Ending {
                    why: format!("the session ended: {}", e.why),
                    ..e
                });
                self.lost(event_loop, ending);
            }
            UserEvent::Stage(..) | UserEvent::Failed(..) | UserEvent::Ended(..) => {}
            UserEvent::Connected(_, s, _) => {
                // A stale attempt's session: nobody wants it.
                let _ = s.close();
            }
            UserEvent::Frame => {
                self.screen.pending.store(false, Ordering::Release);
                if !self.in_launcher() {
                    self.screen.picture_arrived();
                }
            }
            UserEvent::Launcher(o) => {
                if let Some(l) = &mut self.launcher {
                    l.outcome(o);
                }
                self.screen.request_redraw();
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        self.hover_tab(&event);
        // Every key event passes here, whoever takes it, so the record of
        // keys down never misses a release.
        let usage = match &event {
            WindowEvent::KeyboardInput { event: key, .. } => {
                nephele_platform::keyboard::hid_usage(key.physical_key)
            }
            _ => None,
        };
        if let (WindowEvent::KeyboardInput { event: key, .. }, Some(u)) = (&event, usage)
            && !self.keys_down.fresh(u, key.state.is_pressed(), key.repeat)
        {
            tracing::debug!(usage = u, "duplicate key press dropped");
            return;
        }
        if (self.in_launcher() || self.layer_takes(&event)) && self.ui_event(&event) {
            return;
        }
        match event {
            // A kiosk has no way out but its exit chord.
            WindowEvent::CloseRequested if self.opts.kiosk.is_none() => event_loop.exit(),
            WindowEvent::CloseRequested => {
                tracing::info!("kiosk: close request ignored");
            }
            WindowEvent::Moved(_) | WindowEvent::ScaleFactorChanged { .. } => {
                // Perhaps onto another monitor.
                self.screen.refresh = self.screen.refresh_interval(self.opts.display_hz);
            }
            WindowEvent::RedrawRequested => self.redraw(),
            // The next blit sees the new size and refits the picture.
            WindowEvent::Resized(_) => {
                self.screen.request_redraw();
                if self.opts.follow_window {
                    self.resize_settles = Some(Instant::now() + RESIZE_SETTLE);
                }
            }
            WindowEvent::Focused(focused) => {
                if !focused {
                    self.keys_down.clear();
                    self.release_held();
                }
                // A captured pointer is let go while another window has
                // focus, and taken again on return.
                self.apply_capture();
                if let Some(s) = &self.conn.session {
                    s.activity().set_background(!focused);
                }
            }
            WindowEvent::Occluded(hidden) => {
                if let Some(s) = &self.conn.session {
                    s.activity().set_background(hidden);
                }
            }
            WindowEvent::ModifiersChanged(m) => self.modifiers = m.state(),
            WindowEvent::KeyboardInput { event, .. } => {
                if self.shortcut(&event) {
                    return;
                }
                let (mode, mods) = (self.opts.typing, self.modifiers);
                typing::key_event(mode, &event, mods, usage, |ev| self.send(ev));
            }
            WindowEvent::Ime(Ime::Commit(text)) if self.opts.typing == Typing::Text => {
                typing::text(&text, |ev| self.send(ev));
            }
            WindowEvent::CursorMoved { position, .. } => {
                let Some(w) = self.screen.window.clone() else {
                    return;
                };
                if let Some(ev) = self.pointer.moved(&w, position, self.screen.viewport) {
                    self.send(ev);
                }
            }
            WindowEvent::MouseInput { state, button, .. } => {
                if let Some(button) = pointer::button(button) {
                    let down = state == ElementState::Pressed;
                    self.send(InputEvent::Button { button, down });
                }
            }
            WindowEvent::MouseWheel { delta, .. } => self.send(pointer::wheel(delta)),
            _ => {}
        }
    }

    fn device_event(&mut self, _: &ActiveEventLoop, _: DeviceId, event: DeviceEvent) {
        if self.in_launcher() {
            return;
        }
        if let DeviceEvent::MouseMotion { delta } = event
            && let Some(ev) = self.pointer.device_motion(delta)
        {
            self.send(ev);
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let now = Instant::now();
        if let Some(w) = self.screen.window.clone()
            && !self.in_launcher()
        {
            let remote = self.observed.cursor.borrow().clone();
            if self.pointer.wear(&w, event_loop, &remote) {
                w.request_redraw();
            }
        }
        if self.conn.retry_at.is_some_and(|t| now >= t) {
            self.conn.retry_at = None;
            if let Some(l) = &mut self.launcher {
                l.retrying();
            }
            self.start_connect();
        }
        if now >= self.next_status {
            self.next_status = now + STATUS_INTERVAL;
            self.refresh_status();
        }
        if self.screen.redraw_at.is_some_and(|t| now >= t) {
            self.screen.redraw_at = None;
            self.screen.request_redraw();
        }
        if self.resize_settles.is_some_and(|t| now >= t) {
            self.resize_settles = None;
            self.follow_window();
        }
        if self.quit || self.deadline.is_some_and(|d| now >= d) {
            event_loop.exit();
            return;
        }
        // The title and banner change with the stages, the retry countdown
        // and notices too, not only during a session.
        let status = (self.conn.session.is_some()
            || self.conn.connecting
            || self.conn.retry_at.is_some()
            || self.banner.has_notice())
        .then_some(self.next_status);
        match self
            .deadline
            .into_iter()
            .chain(self.screen.redraw_at)
            .chain(self.resize_settles)
            .chain(self.conn.retry_at)
            .chain(status)
            .min()
        {
            Some(t) => event_loop.set_control_flow(ControlFlow::WaitUntil(t)),
            None => event_loop.set_control_flow(ControlFlow::Wait),
        }
    }
}
