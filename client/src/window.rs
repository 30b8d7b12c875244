//! The window: winit for events, softbuffer for pixels.
//!
//! One event loop on the main thread; the connect, decode and script threads
//! talk to it only through [`UserEvent`]s sent with an `EventLoopProxy`. The
//! decode thread copies each picture into a shared slot (latest wins) and
//! wakes the loop; on redraw the loop converts the picture, scales it into
//! the surface with black bars, and presents. Keys go out by physical
//! position; everything held is released when the window loses focus.
//!
//! The connect thread also signs in and probes ([`Connector`]), so the
//! window opens at once and tells each stage as it happens; failures show
//! as a banner. The client's own shortcuts ([`crate::config::Shortcuts`])
//! toggle fullscreen, pointer capture (relative mouse for games), the
//! statistics overlay, the microphone and presentation mode. A kiosk
//! window is fullscreen without decorations, obeys only its exit chord,
//! and starts over with backoff whenever the session fails or ends.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nephele_protocol::activity::{KeepActive, Phase};
use nephele_protocol::wire::{InputEvent, MouseButton};
use winit::application::ApplicationHandler;
use winit::dpi::LogicalSize;
use winit::event::{DeviceEvent, DeviceId, ElementState, KeyEvent, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::keyboard::ModifiersState;
use winit::window::{CursorGrabMode, Fullscreen, Window, WindowId};

use crate::config::{Chord, Kiosk, MouseMode, Shortcuts};
use crate::input::{HeldInput, Script};
use crate::session::{ConnectConfig, FrameMeta, FrameSink, Session};
use crate::stats::{Continuity, Stats};
use crate::video::{Picture, Presenter, Viewport};

/// What the connect thread made ready for a session.
pub struct Prepared {
    /// Where and how to connect.
    pub cfg: ConnectConfig,
    /// Kept alive as long as the session (background probes).
    pub keep: Option<Box<dyn Send>>,
}

/// Signs in, probes and chooses, telling each stage as it starts; runs on
/// the connect thread, again for every kiosk retry.
pub type Connector = Arc<dyn Fn(&dyn Fn(String)) -> anyhow::Result<Prepared> + Send + Sync>;

/// What other threads tell the window.
pub enum UserEvent {
    /// A connection stage began (signing in, probing, connecting); each
    /// event but `Frame` carries its connection attempt's number.
    Stage(u64, String),
    /// The session is up.
    Connected(u64, Box<Session>, Option<Box<dyn Send>>),
    /// Connecting failed.
    Failed(u64, String),
    /// A new picture is in the slot.
    Frame,
    /// The session ended.
    Ended(u64, Option<String>),
}

impl std::fmt::Debug for UserEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stage(a, s) => write!(f, "Stage({a}, {s})"),
            Self::Connected(a, ..) => write!(f, "Connected({a})"),
            Self::Failed(a, e) => write!(f, "Failed({a}, {e})"),
            Self::Frame => f.write_str("Frame"),
            Self::Ended(a, e) => write!(f, "Ended({a}, {e:?})"),
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
    /// Start fullscreen.
    pub fullscreen: bool,
    /// Show the statistics overlay from the start.
    pub stats_overlay: bool,
    /// Capture the pointer (relative mouse) from the start.
    pub mouse: MouseMode,
    /// The client's own key combinations.
    pub shortcuts: Shortcuts,
    /// Run as a kiosk: its exit chord and backoff.
    pub kiosk: Option<Kiosk>,
}

/// How long a notice (fullscreen, capture) stays on the banner.
const NOTICE_FOR: Duration = Duration::from_secs(3);

/// How often the statistics overlay's figures are brought up to date.
const STATS_INTERVAL: Duration = Duration::from_millis(500);

/// The client's own actions, each on a key combination.
#[derive(Debug, Clone, Copy)]
enum Shortcut {
    Quit,
    Fullscreen,
    Capture,
    Stats,
    Microphone,
    Presentation,
}

/// How often the title's session status is brought up to date.
const STATUS_INTERVAL: Duration = Duration::from_millis(250);

struct App {
    connector: Connector,
    /// A connect thread is running or its session is up.
    connecting: bool,
    /// The number of the latest connection attempt.
    attempt: u64,
    opts: WindowOptions,
    proxy: EventLoopProxy<UserEvent>,
    stats: Arc<Stats>,
    slot: Arc<Mutex<Slot>>,
    pending: Arc<AtomicBool>,
    /// The remote pointer shape the window wears (its count), and whether
    /// the remote pointer is hidden.
    cursor_worn: (u64, bool),
    /// Where the remote pointer was last drawn into the picture (while
    /// the pointer is captured).
    cursor_drawn_at: Option<(u16, u16, bool)>,
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
    /// The connection stage under way, until the first picture.
    stage: Option<String>,
    /// Why the session could not start or ended, shown until closed (or,
    /// in a kiosk, until the next attempt).
    failure: Option<String>,
    /// A short-lived notice and when it goes.
    notice: Option<(String, Instant)>,
    /// Kept alive with the session (background probes).
    keep: Option<Box<dyn Send>>,
    /// Holds the local screen saver off while a session is up.
    awake: Option<nephele_platform::screensaver::Inhibitor>,
    /// Kiosk: when to try again, and the wait after the next failure.
    retry_at: Option<Instant>,
    backoff: Duration,
    fullscreen: bool,
    /// The user wants the pointer captured (relative mouse).
    want_capture: bool,
    /// The pointer is captured now (the window has focus).
    captured: bool,
    /// Sub-pixel relative motion not yet sent.
    motion_rest: (f64, f64),
    /// How the pointer is held while captured: locked (motion comes as
    /// raw device events) or confined (the window measures each move from
    /// its centre and puts the pointer back there).
    grab: Option<CursorGrabMode>,
    show_stats: bool,
    stats_lines: Vec<String>,
    next_stats: Instant,
    /// Presented frames and received bytes at the last overlay update.
    rates_from: (Instant, u64, u64),
}

/// Opens the window, connects, and runs until closed, the duration passes,
/// or the session ends. Returns the session's statistics and how long it streamed.
pub fn run(
    connector: Connector,
    opts: WindowOptions,
    stats: Arc<Stats>,
) -> anyhow::Result<(Arc<Stats>, Duration)> {
    let event_loop = EventLoop::<UserEvent>::with_user_event().build()?;
    let proxy = event_loop.create_proxy();
    let now = Instant::now();
    let mut app = App {
        connector,
        connecting: false,
        attempt: 0,
        fullscreen: opts.fullscreen || opts.kiosk.is_some(),
        want_capture: opts.mouse == MouseMode::Relative,
        show_stats: opts.stats_overlay,
        opts,
        proxy,
        stats: stats.clone(),
        slot: Arc::new(Mutex::new(Slot::default())),
        pending: Arc::new(AtomicBool::new(false)),
        cursor_worn: (0, false),
        cursor_drawn_at: None,
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
        next_status: now,
        paths_seen: 0,
        stage: None,
        failure: None,
        notice: None,
        keep: None,
        awake: None,
        retry_at: None,
        backoff: Duration::from_secs(1),
        captured: false,
        motion_rest: (0.0, 0.0),
        grab: None,
        stats_lines: Vec::new(),
        next_stats: now,
        rates_from: (now, 0, 0),
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

impl App {
    /// Handles the client's own shortcuts; true when the key was one (and
    /// is therefore not sent to the desktop). A kiosk obeys only its exit.
    fn shortcut(&mut self, event_loop: &ActiveEventLoop, event: &KeyEvent) -> bool {
        let Some(usage) = nephele_platform::keyboard::hid_usage(event.physical_key) else {
            return false;
        };
        let m = self.modifiers;
        let is = |c: &Chord| {
            c.matches(
                m.control_key(),
                m.alt_key(),
                m.shift_key(),
                m.super_key(),
                usage,
            )
        };
        let press = event.state == ElementState::Pressed && !event.repeat;
        if let Some(k) = &self.opts.kiosk {
            if !is(&k.exit) {
                return false;
            }
            if press {
                tracing::info!("kiosk exit by the administrator's key combination");
                event_loop.exit();
            }
            return true;
        }
        let keys = &self.opts.shortcuts;
        let action = if is(&keys.quit) {
            Shortcut::Quit
        } else if is(&keys.fullscreen) {
            Shortcut::Fullscreen
        } else if is(&keys.capture) {
            Shortcut::Capture
        } else if is(&keys.stats) {
            Shortcut::Stats
        } else if is(&keys.microphone) {
            Shortcut::Microphone
        } else if is(&keys.presentation) {
            Shortcut::Presentation
        } else {
            return false;
        };
        if press {
            self.act(event_loop, action);
        }
        true
    }

    fn act(&mut self, event_loop: &ActiveEventLoop, action: Shortcut) {
        match action {
            Shortcut::Quit => event_loop.exit(),
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
                self.want_capture = !self.want_capture;
                self.apply_capture();
            }
            Shortcut::Stats => {
                self.show_stats = !self.show_stats;
                self.next_stats = Instant::now();
                self.refresh_status();
                if let Some(w) = &self.window {
                    w.request_redraw();
                }
            }
            Shortcut::Microphone => {
                if let Some(s) = &self.session {
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
                if let Some(s) = &self.session {
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
        self.notice = Some((text, Instant::now() + NOTICE_FOR));
        self.refresh_status();
    }

    fn apply_fullscreen(&self) {
        if let Some(w) = &self.window {
            w.set_fullscreen(self.fullscreen.then_some(Fullscreen::Borderless(None)));
        }
    }

    /// Wears the remote pointer's shape as the window's cursor (a real
    /// desktop reports it beside the video), and hides it while the
    /// remote pointer is hidden: the pointer then moves at the local
    /// pointer's speed, in the remote shape.
    fn wear_remote_cursor(&mut self, event_loop: &ActiveEventLoop) {
        let Some(w) = &self.window else { return };
        let (count, shape) = self.stats.cursor.shape();
        let position = self.stats.cursor.position();
        if self.captured && position != self.cursor_drawn_at {
            // Drawn into the picture while captured: a move redraws.
            self.cursor_drawn_at = position;
            w.request_redraw();
        }
        let hidden = position.is_some_and(|(_, _, visible)| !visible);
        if (count, hidden) == self.cursor_worn {
            return;
        }
        if count != self.cursor_worn.0
            && let Some(s) = shape
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
        if hidden != self.cursor_worn.1 && !self.captured {
            w.set_cursor_visible(!hidden);
        }
        self.cursor_worn = (count, hidden);
    }

    /// Grabs or lets go of the pointer as wanted. Locked where the
    /// platform can (the pointer stays put), else confined to the window
    /// (X11); hidden either way, and motion goes as relative steps.
    fn apply_capture(&mut self) {
        let Some(w) = &self.window else { return };
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
                    self.motion_rest = (0.0, 0.0);
                    if mode == CursorGrabMode::Confined {
                        let _ = w.set_cursor_position(centre(w));
                    }
                    let key = self.opts.shortcuts.capture;
                    self.notify(format!("pointer captured — {key} releases it"));
                }
                Err(e) => {
                    self.want_capture = false;
                    self.notify(format!("cannot capture the pointer here: {e}"));
                }
            }
        } else if self.captured && !(self.want_capture && focused) {
            let _ = w.set_cursor_grab(CursorGrabMode::None);
            w.set_cursor_visible(true);
            self.captured = false;
            self.grab = None;
            if !self.want_capture {
                self.notify("pointer released".into());
            }
        }
    }

    /// The title and the banner tell what the session is doing: a
    /// failure, a notice, a muted microphone, presentation mode, a coming
    /// pause, a pause, a resume, a reconnect, or the connection stage.
    /// A new path to the host (reconnect, takeover) releases held input.
    fn refresh_status(&mut self) {
        let now = Instant::now();
        if self.notice.as_ref().is_some_and(|(_, until)| now >= *until) {
            self.notice = None;
        }
        // After a reconnect the session goes through another gateway.
        let route = self
            .stats
            .route
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let mut title = if route.pop.is_empty() || route.pop == "direct" || self.session.is_none() {
            self.opts.title.clone()
        } else {
            format!("Nephele — {} via {}", route.pop, route.gateway_id)
        };
        let mut status = None;
        if let Some(s) = &self.session {
            if s.mic_muted() {
                title.push_str(" — microphone muted");
            }
            if s.activity().keep_active() != KeepActive::No {
                title.push_str(" — presentation mode");
            }
            let (st, paths) = self
                .stats
                .continuity
                .lock()
                .map(|c| (status_text(&c, self.stats.silence()), c.takeovers))
                .unwrap_or_default();
            status = st;
            let paths = paths + self.stats.reconnects.load(Ordering::Relaxed);
            if paths != self.paths_seen {
                self.paths_seen = paths;
                self.release_held();
            }
        }
        let failure = self.failure.as_ref().map(|f| match self.retry_at {
            Some(at) => format!(
                "{f} — trying again in {} s",
                at.saturating_duration_since(now).as_secs_f64().ceil()
            ),
            None => f.clone(),
        });
        let banner = failure
            .or_else(|| self.notice.as_ref().map(|(n, _)| n.clone()))
            .or(status)
            .or_else(|| self.stage.clone());
        if let Some(b) = &banner {
            title.push_str(" — ");
            title.push_str(b);
        }
        let mut redraw = banner != self.banner;
        self.banner = banner;
        if self.show_stats && now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            self.update_stats_lines(now, &route);
            redraw = true;
        }
        // No picture may come (paused, failed): redraw for the text.
        if redraw && let Some(w) = &self.window {
            w.request_redraw();
        }
        if title != self.shown_title
            && let Some(w) = &self.window
        {
            w.set_title(&title);
            self.shown_title = title;
        }
    }

    /// The statistics overlay's lines: rates since the last update,
    /// latencies over the session.
    fn update_stats_lines(&mut self, now: Instant, route: &crate::stats::Route) {
        let st = &self.stats;
        let presented = st.frames_presented.load(Ordering::Relaxed);
        let bytes = st.bytes_received.load(Ordering::Relaxed);
        let (since, p0, b0) = self.rates_from;
        let secs = now.duration_since(since).as_secs_f64().max(1e-3);
        self.rates_from = (now, presented, bytes);
        let fps = presented.saturating_sub(p0) as f64 / secs;
        let mbps = bytes.saturating_sub(b0) as f64 * 8.0 / secs / 1e6;
        let rtt = st.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let loss = st.loss_permille.load(Ordering::Relaxed) as f64 / 10.0;
        let l = &mut self.stats_lines;
        l.clear();
        let pop = if route.pop.is_empty() {
            "—"
        } else {
            route.pop.as_str()
        };
        l.push(format!(
            "{pop} via {} — {}x{}",
            route.gateway_id, self.taken.width, self.taken.height
        ));
        l.push(format!("{fps:.1} fps — {mbps:.2} Mbit/s — RTT {rtt:.1} ms"));
        l.push(format!(
            "decode {:.2} ms ({}) — client-added {:.2} / {:.2} ms (p50/p99)",
            st.decode.quantile_ms(0.5),
            st.decoder.get().copied().unwrap_or("—"),
            st.client_latency.quantile_ms(0.5),
            st.client_latency.quantile_ms(0.99)
        ));
        l.push(format!(
            "end-to-end {:.1} / {:.1} ms (p50/p99, capture to screen)",
            st.end_to_end.quantile_ms(0.5),
            st.end_to_end.quantile_ms(0.99)
        ));
        l.push(format!(
            "loss {loss:.1}% — FEC recovered {} — keyframes asked {} — dropped {}",
            st.fec_recovered.load(Ordering::Relaxed),
            st.keyframes_requested.load(Ordering::Relaxed),
            st.frames_dropped.load(Ordering::Relaxed)
        ));
        l.push(format!(
            "input RTT {:.2} ms p50 — {} of {} acknowledged",
            st.input_rtt.quantile_ms(0.5),
            st.input_acked.load(Ordering::Relaxed),
            st.input_sent.load(Ordering::Relaxed)
        ));
    }

    /// Starts attempt number `self.attempt + 1` on the connect thread:
    /// sign in, probe, connect. Events from older attempts are ignored.
    fn start_connect(&mut self) {
        if self.connecting {
            return;
        }
        self.attempt += 1;
        let attempt = self.attempt;
        self.connecting = true;
        self.have_picture = false;
        self.stage = Some("starting…".into());
        let connector = self.connector.clone();
        let proxy = self.proxy.clone();
        let stats = self.stats.clone();
        let sink = WindowSink {
            slot: self.slot.clone(),
            proxy: self.proxy.clone(),
            pending: self.pending.clone(),
            stats: self.stats.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("nephele-connect".into())
            .spawn(move || {
                let stage_proxy = proxy.clone();
                let stage = move |s: String| {
                    tracing::info!(stage = %s, "connecting");
                    let _ = stage_proxy.send_event(UserEvent::Stage(attempt, s));
                };
                let prepared = match connector(&stage) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = proxy.send_event(UserEvent::Failed(attempt, format!("{e:#}")));
                        return;
                    }
                };
                let route = &prepared.cfg.route;
                stage(if prepared.cfg.token.is_empty() {
                    format!("connecting to the gateway {}…", route.gateway_id)
                } else {
                    format!("connecting to {} ({})…", route.pop, route.gateway_id)
                });
                let end_proxy = proxy.clone();
                let on_end = Box::new(move |e: Option<&crate::session::SessionError>| {
                    let _ =
                        end_proxy.send_event(UserEvent::Ended(attempt, e.map(|e| e.to_string())));
                });
                let gateway = prepared.cfg.gateway;
                let ev = match Session::connect(prepared.cfg, stats, Box::new(sink), on_end) {
                    Ok(s) => UserEvent::Connected(attempt, Box::new(s), prepared.keep),
                    Err(e) => UserEvent::Failed(
                        attempt,
                        format!("cannot connect to the gateway at {gateway}: {e}"),
                    ),
                };
                let _ = proxy.send_event(ev);
            });
        if let Err(e) = spawned {
            self.connecting = false;
            self.error = Some(format!("cannot start the connection thread: {e}"));
        }
    }

    /// The attempt failed or its session ended: a kiosk tries again after
    /// a backoff; a window shows why until it is closed.
    fn lost(&mut self, event_loop: &ActiveEventLoop, why: Option<String>) {
        self.connecting = false;
        self.release_held();
        if let Some(s) = self.session.take()
            && let Err(e) = s.close()
        {
            tracing::debug!(error = %e, "closing the ended session");
        }
        self.keep = None;
        self.awake = None;
        self.stage = None;
        match (&self.opts.kiosk, why) {
            (Some(k), why) => {
                let why = why.unwrap_or_else(|| "the session ended".into());
                tracing::warn!(error = %why, backoff = ?self.backoff, "kiosk: trying again");
                self.failure = Some(why);
                self.retry_at = Some(Instant::now() + self.backoff);
                let max = Duration::from_secs(u64::from(k.max_backoff_secs.max(1)));
                self.backoff = (self.backoff * 2).min(max);
            }
            (None, None) => event_loop.exit(),
            (None, Some(why)) => {
                tracing::error!(error = %why, "no session");
                self.error = Some(why.clone());
                self.failure = Some(why);
            }
        }
        self.refresh_status();
    }

    /// Sends relative pointer motion, carrying sub-pixel remainders.
    fn relative(&mut self, delta: (f64, f64)) {
        let (rx, ry) = self.motion_rest;
        let (x, y) = (rx + delta.0, ry + delta.1);
        let clamp = |v: f64| v.trunc().clamp(f64::from(i16::MIN), f64::from(i16::MAX));
        let (dx, dy) = (clamp(x), clamp(y));
        self.motion_rest = (x - dx, y - dy);
        if dx != 0.0 || dy != 0.0 {
            self.send(InputEvent::MoveBy {
                dx: dx as i16,
                dy: dy as i16,
            });
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
                if self.stage.take().is_some() {
                    // The first picture: the stages are over, and a kiosk's
                    // next failure starts its backoff afresh.
                    self.backoff = Duration::from_secs(1);
                    self.next_status = Instant::now();
                }
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
        let (bw, bh) = (w.get() as usize, h.get() as usize);
        let top = match &self.banner {
            Some(text) => crate::overlay::banner(&mut buffer, bw, bh, text),
            None => 0,
        };
        if self.captured
            && let (Some(vp), Some((x, y, true)), (_, Some(shape))) = (
                self.viewport,
                self.stats.cursor.position(),
                self.stats.cursor.shape(),
            )
        {
            // Captured, the local cursor is hidden: the remote pointer is
            // drawn where the desktop has it, over the latest picture.
            let at = |p: u16, origin: u32, shown: u32, stream: u32, hot: u16| {
                i64::from(origin) + i64::from(p) * i64::from(shown) / i64::from(stream.max(1))
                    - i64::from(hot)
            };
            let wx = at(x, vp.x, vp.w, vp.stream.0, shape.hot_x);
            let wy = at(y, vp.y, vp.h, vp.stream.1, shape.hot_y);
            crate::overlay::pointer(&mut buffer, bw, bh, (wx, wy), &shape);
        }
        if self.show_stats {
            crate::overlay::panel(&mut buffer, bw, bh, top, &self.stats_lines);
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
            .with_inner_size(LogicalSize::new(1280.0, 720.0))
            .with_decorations(self.opts.kiosk.is_none())
            .with_fullscreen(self.fullscreen.then_some(Fullscreen::Borderless(None)));
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
            UserEvent::Stage(a, s) if a == self.attempt => {
                self.stage = Some(s);
                self.refresh_status();
            }
            UserEvent::Connected(a, s, keep) if a == self.attempt => {
                tracing::info!(info = ?s.info(), "connected");
                s.activity().set_keep_active(self.opts.keep_active);
                self.session = Some(*s);
                self.keep = keep;
                self.awake = nephele_platform::screensaver::Inhibitor::start(
                    nephele_platform::screensaver::RESET_EVERY,
                );
                self.failure = None;
                self.retry_at = None;
                self.stage = Some("waiting for the first picture…".into());
                self.refresh_status();
                self.start_script();
                self.apply_capture();
            }
            UserEvent::Failed(a, e) if a == self.attempt => self.lost(event_loop, Some(e)),
            UserEvent::Ended(a, e) if a == self.attempt => {
                self.lost(event_loop, e.map(|e| format!("the session ended: {e}")));
            }
            UserEvent::Stage(..) | UserEvent::Failed(..) | UserEvent::Ended(..) => {}
            UserEvent::Connected(_, s, _) => {
                // A stale attempt's session: nobody wants it.
                let _ = s.close();
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
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            // A kiosk has no way out but its exit chord.
            WindowEvent::CloseRequested if self.opts.kiosk.is_none() => event_loop.exit(),
            WindowEvent::CloseRequested => {
                tracing::info!("kiosk: close request ignored");
            }
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
                // A captured pointer is let go while another window has
                // focus, and taken again on return.
                self.apply_capture();
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
                if self.shortcut(event_loop, &event) {
                    return;
                }
                if let Some(usage) = nephele_platform::keyboard::hid_usage(event.physical_key) {
                    let down = event.state == ElementState::Pressed;
                    self.send(InputEvent::Key { usage, down });
                }
            }
            WindowEvent::CursorMoved { position, .. } => {
                if self.captured {
                    // Confined: each move is measured from the centre, and
                    // the pointer goes back there (the warp's own event
                    // measures nothing). Locked: device motion instead.
                    if self.grab == Some(CursorGrabMode::Confined)
                        && let Some(w) = self.window.clone()
                    {
                        let c = centre(&w);
                        let delta = (position.x - c.x, position.y - c.y);
                        if delta.0.abs() >= 0.5 || delta.1.abs() >= 0.5 {
                            self.relative(delta);
                            let _ = w.set_cursor_position(c);
                        }
                    }
                    return;
                }
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

    fn device_event(&mut self, _: &ActiveEventLoop, _: DeviceId, event: DeviceEvent) {
        // Raw mouse motion: the relative steps of a captured pointer, sent
        // as counted (as games expect), whatever the window's scale.
        let DeviceEvent::MouseMotion { delta } = event else {
            return;
        };
        if !self.captured {
            return;
        }
        // Only a locked pointer's motion comes this way: X11 reports a
        // confined pointer's raw motion twice (winit issue 3773).
        if self.grab != Some(CursorGrabMode::Locked) {
            return;
        }
        self.relative(delta);
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let now = Instant::now();
        self.wear_remote_cursor(event_loop);
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.start_connect();
        }
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
        // The title and banner change with the stages, the retry countdown
        // and notices too, not only during a session.
        let status = (self.session.is_some()
            || self.connecting
            || self.retry_at.is_some()
            || self.notice.is_some())
        .then_some(self.next_status);
        match self
            .deadline
            .into_iter()
            .chain(self.redraw_at)
            .chain(self.retry_at)
            .chain(status)
            .min()
        {
            Some(t) => event_loop.set_control_flow(ControlFlow::WaitUntil(t)),
            None => event_loop.set_control_flow(ControlFlow::Wait),
        }
    }
}

/// The middle of the window's inside, where a confined pointer is kept.
fn centre(w: &Window) -> winit::dpi::PhysicalPosition<f64> {
    let s = w.inner_size();
    winit::dpi::PhysicalPosition::new(f64::from(s.width / 2), f64::from(s.height / 2))
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
