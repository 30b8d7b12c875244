//! Over the session's picture: the session's menu (on its shortcut, or
//! its tab at the top of a window) and,
//! while the connection is lost, the picture dimmed with what happened and
//! the ways forward. Drawn with egui into the surface after the picture;
//! only while one of them shows, so streaming alone draws no UI.

use std::time::Duration;

use egui::{Align2, Key, RichText, Ui};

use crate::config::Shortcuts;

/// The menu's tab: how far from the top edge (points) the pointer shows
/// it, how tall the area is that keeps it, and half its width.
const TAB_EDGE: f64 = 4.0;
const TAB_HEIGHT: f64 = 40.0;
const TAB_HALF_WIDTH: f64 = 90.0;

/// What a person chose over the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LayerAction {
    /// Leave the session (for the catalog, or quit without a launcher).
    Disconnect,
    Fullscreen,
    Stats,
    Microphone,
    Presentation,
    /// Send Ctrl+Alt+Del to the desktop.
    CtrlAltDel,
    /// Start the connection afresh.
    Reconnect,
    /// Open the menu (its tab was clicked).
    OpenMenu,
    /// The launcher's settings page, the session running behind it.
    Settings,
    /// Close the menu.
    Close,
}

/// What the layer shows.
pub(super) struct LayerState<'a> {
    /// The menu is open.
    pub menu: bool,
    /// The first control takes the focus (the menu just opened).
    pub focus: bool,
    /// The menu's tab shows at the top.
    pub tab: bool,
    /// The connection has been lost this long.
    pub lost_for: Option<Duration>,
    /// Started from the launcher (leaving goes back to the catalog).
    pub launcher: bool,
    pub fullscreen: bool,
    pub stats: bool,
    pub mic_muted: bool,
    pub presentation: bool,
    pub keys: &'a Shortcuts,
}

/// Darkens the picture behind the lost-connection notice.
pub(super) fn dim(pixels: &mut [u32]) {
    for p in pixels {
        *p = (*p >> 2) & 0x003f_3f3f;
    }
}

/// Draws the layer; what was chosen, if anything.
pub(super) fn show(ui: &mut Ui, st: &LayerState<'_>) -> Option<LayerAction> {
    let mut action = None;
    let ctx = ui.ctx().clone();
    if let Some(lost) = st.lost_for {
        egui::Area::new("lost".into())
            .anchor(Align2::CENTER_TOP, [0.0, 80.0])
            .show(&ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.set_max_width(460.0);
                    ui.label(RichText::new("Connection lost").size(20.0));
                    ui.add_space(6.0);
                    ui.label(format!(
                        "Nothing has come from the service for {} s. Nephele is reconnecting; your desktop keeps running.",
                        lost.as_secs()
                    ));
                    ui.add_space(10.0);
                    ui.horizontal(|ui| {
                        if ui.button("Reconnect now").clicked() {
                            action = Some(LayerAction::Reconnect);
                        }
                        let leave = if st.launcher { "Back to catalog" } else { "Quit" };
                        if ui.button(leave).clicked() {
                            action = Some(LayerAction::Disconnect);
                        }
                    });
                    ui.add_space(4.0);
                    ui.label(RichText::new(format!("{} opens the menu", st.keys.menu)).weak());
                });
            });
    }
    if st.tab && !st.menu && st.lost_for.is_none() {
        egui::Area::new("menu tab".into())
            .anchor(Align2::CENTER_TOP, [0.0, 0.0])
            .show(&ctx, |ui| {
                let b = ui.button("Menu \u{25be}");
                if b.on_hover_text(format!("or {}", st.keys.menu)).clicked() {
                    action = Some(LayerAction::OpenMenu);
                }
            });
    }
    if st.menu {
        egui::Window::new("Session")
            .collapsible(false)
            .resizable(false)
            .anchor(Align2::CENTER_CENTER, [0.0, 0.0])
            .show(&ctx, |ui| {
                let on = |b: bool| if b { "on" } else { "off" };
                let leave = if st.launcher { "Disconnect" } else { "Quit" };
                let items = [
                    (
                        leave.to_string(),
                        st.keys.quit.to_string(),
                        LayerAction::Disconnect,
                    ),
                    (
                        format!("Full screen: {}", on(st.fullscreen)),
                        st.keys.fullscreen.to_string(),
                        LayerAction::Fullscreen,
                    ),
                    (
                        format!("Statistics: {}", on(st.stats)),
                        st.keys.stats.to_string(),
                        LayerAction::Stats,
                    ),
                    (
                        format!("Microphone: {}", on(!st.mic_muted)),
                        st.keys.microphone.to_string(),
                        LayerAction::Microphone,
                    ),
                    (
                        format!("Keep active: {}", on(st.presentation)),
                        st.keys.presentation.to_string(),
                        LayerAction::Presentation,
                    ),
                    (
                        "Send Ctrl+Alt+Del".into(),
                        String::new(),
                        LayerAction::CtrlAltDel,
                    ),
                    ("Reconnect".into(), String::new(), LayerAction::Reconnect),
                    ("Settings…".into(), String::new(), LayerAction::Settings),
                    ("Close this menu".into(), "Esc".into(), LayerAction::Close),
                ];
                // Settings are the launcher's page: none without it.
                let items = items
                    .into_iter()
                    .filter(|(_, _, a)| st.launcher || *a != LayerAction::Settings);
                for (i, (label, keys, a)) in items.enumerate() {
                    let b = ui.add(
                        egui::Button::new(label)
                            .shortcut_text(keys)
                            .min_size(egui::vec2(380.0, 0.0)),
                    );
                    if i == 0 && st.focus {
                        b.request_focus();
                    }
                    if b.clicked() {
                        action = Some(a);
                    }
                }
                ui.add_space(4.0);
                ui.label(
                    RichText::new(format!(
                        "{} opens and closes this menu; Tab and Enter work it.",
                        st.keys.menu
                    ))
                    .weak(),
                );
            });
        if ui.input(|i| i.key_pressed(Key::Escape)) {
            action = Some(LayerAction::Close);
        }
    }
    action
}

impl super::App {
    /// Opens or closes the session's menu. Open, it has the keyboard and
    /// the pointer (held keys are released, a captured pointer let go).
    pub(super) fn toggle_menu(&mut self) {
        if self.in_launcher() || self.conn.session.is_none() {
            return;
        }
        self.menu_open = !self.menu_open;
        tracing::info!(open = self.menu_open, "session menu");
        if self.menu_open {
            self.release_held();
            self.menu_focus = true;
            if let Some(w) = self.screen.window.clone() {
                self.pointer.let_go(&w);
            }
        } else {
            self.apply_capture();
        }
        self.screen.request_redraw();
    }

    /// In a window (not full screen, the pointer not captured), the
    /// pointer at the middle of the top edge shows the menu's tab, which
    /// stays while the pointer is over it.
    pub(super) fn hover_tab(&mut self, e: &winit::event::WindowEvent) {
        use winit::event::WindowEvent as E;
        let (E::CursorMoved { .. } | E::CursorLeft { .. }) = e else {
            return;
        };
        let Some(w) = self.screen.window.as_ref() else {
            return;
        };
        let shows = match e {
            E::CursorMoved { position: p, .. }
                if !self.in_launcher()
                    && self.conn.session.is_some()
                    && !self.fullscreen
                    && !self.pointer.captured
                    && !self.menu_open =>
            {
                let scale = w.scale_factor();
                let middle = f64::from(w.inner_size().width) / 2.0;
                let reach = if self.menu_tab { TAB_HEIGHT } else { TAB_EDGE };
                (p.x - middle).abs() <= TAB_HALF_WIDTH * scale && p.y <= reach * scale
            }
            _ => false,
        };
        if shows != self.menu_tab {
            self.menu_tab = shows;
            self.screen.request_redraw();
        }
    }

    /// Whether the layer over the picture takes this event from the
    /// desktop: everything while the menu is open; the pointer while the
    /// lost-connection notice or the menu's tab shows (their buttons).
    pub(super) fn layer_takes(&self, e: &winit::event::WindowEvent) -> bool {
        use winit::event::WindowEvent as E;
        !self.in_launcher()
            && (self.menu_open
                || ((self.lost_since.is_some() || self.menu_tab)
                    && matches!(
                        e,
                        E::CursorMoved { .. } | E::MouseInput { .. } | E::MouseWheel { .. }
                    )))
    }

    /// Draws the picture, its overlays and, when one shows, the layer;
    /// whether a new picture was shown first, and what was chosen.
    pub(super) fn redraw_session(&mut self) -> (bool, Option<LayerAction>) {
        use nephele_protocol::activity::KeepActive;
        self.screen.part = self
            .opts
            .monitor
            .number()
            .and_then(|n| self.observed.monitors.borrow().numbered(n));
        let cursor = self.pointer.captured.then(|| self.observed.cursor());
        let overlays = super::present::Overlays {
            banner: self.banner.text.as_deref(),
            stats: self
                .banner
                .show_stats
                .then_some(self.banner.stats_lines.as_slice()),
            pointer: cursor.as_ref(),
        };
        let window = self.screen.window.clone();
        let layered = self.menu_open || self.lost_since.is_some() || self.menu_tab;
        let (Some(w), true) = (window, layered) else {
            return (self.screen.redraw(&self.stats, &overlays, None), None);
        };
        let (mic_muted, presentation) = self.conn.session.as_ref().map_or((false, false), |s| {
            (s.mic_muted(), s.activity().keep_active() != KeepActive::No)
        });
        let state = LayerState {
            menu: self.menu_open,
            focus: std::mem::take(&mut self.menu_focus),
            tab: self.menu_tab,
            lost_for: self.lost_since.map(|t| t.elapsed()),
            launcher: self.launcher.is_some(),
            fullscreen: self.fullscreen,
            stats: self.banner.show_stats,
            mic_muted,
            presentation,
            keys: &self.opts.shortcuts,
        };
        let ui = self.ui.get_or_insert_with(|| super::ui::Ui::new(&w));
        let (mut action, mut again) = (None, None);
        let mut layer = |win: &winit::window::Window, px: &mut [u32], size: (usize, usize)| {
            if state.lost_for.is_some() {
                dim(px);
            }
            again = ui.draw(win, px, size, |ui| {
                if let Some(a) = show(ui, &state) {
                    action = Some(a);
                }
            });
        };
        let first = self.screen.redraw(&self.stats, &overlays, Some(&mut layer));
        if let Some(wait) = again {
            let at = std::time::Instant::now() + wait;
            self.screen.redraw_at = Some(self.screen.redraw_at.map_or(at, |t| t.min(at)));
        }
        (first, action)
    }

    /// Does what was chosen over the picture.
    pub(super) fn layer_act(&mut self, a: LayerAction) {
        use super::shortcuts::Shortcut;
        match a {
            LayerAction::Disconnect if self.launcher.is_some() => {
                self.menu_open = false;
                self.launcher_act(crate::launcher::Action::BackToCatalog);
            }
            LayerAction::Disconnect => self.quit = true,
            LayerAction::Fullscreen => self.act(Shortcut::Fullscreen),
            LayerAction::Stats => self.act(Shortcut::Stats),
            LayerAction::Microphone => self.act(Shortcut::Microphone),
            LayerAction::Presentation => self.act(Shortcut::Presentation),
            LayerAction::CtrlAltDel => {
                let keys = ["ControlLeft", "AltLeft", "Delete"]
                    .map(|k| nephele_protocol::hid::usage_from_name(k).unwrap_or(0));
                for usage in keys {
                    self.send(nephele_protocol::wire::InputEvent::Key { usage, down: true });
                }
                for usage in keys.into_iter().rev() {
                    self.send(nephele_protocol::wire::InputEvent::Key { usage, down: false });
                }
                tracing::info!("Ctrl+Alt+Del sent from the menu");
                self.toggle_menu();
            }
            LayerAction::Reconnect => {
                self.menu_open = false;
                self.lost_since = None;
                if self.launcher.is_some() {
                    self.launcher_act(crate::launcher::Action::Reconnect);
                } else {
                    self.release_held();
                    self.conn.abandon();
                    self.start_connect();
                }
            }
            LayerAction::Close => self.toggle_menu(),
            LayerAction::Settings => {
                self.menu_open = false;
                self.launcher_act(crate::launcher::Action::OpenSettings);
            }
            LayerAction::OpenMenu => {
                self.menu_tab = false;
                if !self.menu_open {
                    self.toggle_menu();
                }
            }
        }
        self.screen.request_redraw();
    }
}
