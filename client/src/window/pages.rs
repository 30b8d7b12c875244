//! The window on the launcher's pages: their events go to egui (and the
//! client's shortcuts), their drawing to [`super::ui`], and what a person
//! asks for there to the [`Launcher`](crate::launcher::Launcher), whose
//! answer starts, ends or retries the window's connection.

use std::time::Instant;

use winit::event::{ElementState, WindowEvent};

use super::App;
use crate::launcher::{self, Page};

impl App {
    /// A window event for egui (a launcher page, or the layer over the
    /// picture): the client's shortcuts, paste, and egui. True when nothing
    /// else is to see it.
    pub(super) fn ui_event(&mut self, event: &WindowEvent) -> bool {
        let Some(w) = self.screen.window.clone() else {
            return false;
        };
        match event {
            WindowEvent::KeyboardInput { event: key, .. } => {
                if self.shortcut(key) {
                    return true;
                }
                let v = matches!(&key.logical_key, winit::keyboard::Key::Character(c) if c.eq_ignore_ascii_case("v"));
                if v && key.state == ElementState::Pressed && self.modifiers.control_key() {
                    let text = nephele_platform::clipboard::Clipboard::open()
                        .ok()
                        .and_then(|mut c| c.text());
                    if let (Some(t), Some(ui)) = (text, self.ui.as_mut()) {
                        ui.paste(t);
                    }
                }
            }
            WindowEvent::ModifiersChanged(m) => self.modifiers = m.state(),
            _ => {}
        }
        let ui = self.ui.get_or_insert_with(|| super::ui::Ui::new(&w));
        if ui.on_event(&w, event) {
            w.request_redraw();
        }
        !matches!(
            event,
            WindowEvent::CloseRequested
                | WindowEvent::RedrawRequested
                | WindowEvent::Resized(_)
                | WindowEvent::Moved(_)
                | WindowEvent::ScaleFactorChanged { .. }
                | WindowEvent::Focused(_)
                | WindowEvent::Occluded(_)
        )
    }

    /// Back on the launcher's pages: the pointer as the window's own.
    pub(super) fn leave_session(&mut self) {
        if let Some(w) = self.screen.window.clone() {
            self.pointer.let_go(&w);
            w.set_title(&self.opts.title);
        }
        self.screen.request_redraw();
    }

    /// The launcher's pages are showing (not the session's picture).
    pub(super) fn in_launcher(&self) -> bool {
        self.launcher
            .as_ref()
            .is_some_and(|l| l.page != Page::Session)
    }

    /// Does what a person asked for on a launcher page.
    pub(super) fn launcher_act(&mut self, action: launcher::Action) {
        let Some(l) = &mut self.launcher else { return };
        match l.act(action) {
            launcher::Command::None => {}
            launcher::Command::Connect(login) => {
                if let (Some(make), Some(l)) = (&self.connector_for, &self.launcher) {
                    let connector = make(*login, &l.settings);
                    self.opts.follow_window =
                        l.settings.video.resolution == crate::config::Resolution::Window;
                    self.opts.typing = l.settings.input.typing;
                    self.opts.monitor = l.settings.video.monitor;
                    self.conn.abandon();
                    self.conn.connector = Some(connector);
                    self.start_connect();
                }
            }
            launcher::Command::Disconnect => {
                self.release_held();
                self.conn.abandon();
                self.leave_session();
            }
            launcher::Command::Retry => {
                self.conn.abandon();
                self.start_connect();
            }
        }
        self.screen.request_redraw();
    }

    /// Draws the launcher's page; does what was asked on it.
    pub(super) fn redraw_launcher(&mut self) {
        let (Some(l), Some(ui)) = (self.launcher.as_mut(), self.ui.as_mut()) else {
            return;
        };
        let cx = launcher::view::Context {
            retry_in: self
                .conn
                .retry_at
                .map(|t| t.saturating_duration_since(Instant::now())),
        };
        let drawn = self.screen.redraw_ui(|window, pixels, size| {
            let mut action = None;
            let drawn = ui.draw(window, pixels, size, |ui| {
                if let Some(a) = launcher::view::show(ui, l, &cx) {
                    action = Some(a);
                }
            });
            (drawn, action)
        });
        let Some((again_in, action)) = drawn else {
            return;
        };
        if let Some(wait) = again_in {
            let at = Instant::now() + wait;
            self.screen.redraw_at = Some(self.screen.redraw_at.map_or(at, |t| t.min(at)));
        }
        if let Some(a) = action {
            self.launcher_act(a);
        }
    }
}
