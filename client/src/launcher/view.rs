//! The launcher's pages drawn with egui: one centred column, the focus on
//! the page's first field, Enter going on, Tab moving between controls,
//! arrow keys moving over the catalog's tiles. Returns what the person did;
//! [`super::Launcher::act`] does it.

use std::time::Duration;

use egui::{Align, Color32, Key, Layout, RichText, Ui, Vec2};

use super::widgets::centred;
use super::{Action, Launcher, Page};

/// The column's width, in points.
const COLUMN: f32 = 440.0;
/// A catalog tile, in points.
const TILE: Vec2 = Vec2::new(220.0, 140.0);
/// Problems are shown in this colour.
const PROBLEM: Color32 = Color32::from_rgb(0xff, 0x9e, 0x8a);

/// What the window knows that the launcher's state does not.
pub struct Context {
    /// Lost page: how long until the next attempt.
    pub retry_in: Option<Duration>,
}

/// Draws the launcher's page; the action asked for, if any.
pub fn show(ui: &mut Ui, l: &mut Launcher, cx: &Context) -> Option<Action> {
    let mut action = None;
    egui::CentralPanel::default().show_inside(ui, |ui| {
        let top = (ui.available_height() * 0.12).clamp(12.0, 96.0);
        // A page taller than the window scrolls (the focus brings what it
        // moves to into view).
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                ui.add_space(top);
                ui.vertical_centered(|ui| {
                    ui.set_max_width(COLUMN.max(tiles_width(l)));
                    ui.heading(RichText::new("Nephele").size(30.0).strong());
                    ui.add_space(18.0);
                    action = match l.page {
                        Page::AddService => add_service(ui, l),
                        Page::Trust => trust(ui, l),
                        Page::SignIn => sign_in(ui, l),
                        Page::Catalog => catalog(ui, l),
                        Page::Connecting => connecting(ui, l),
                        Page::Lost => lost(ui, l, cx),
                        Page::Settings => {
                            let focus = std::mem::take(&mut l.focus_first);
                            let a = super::settings::page(ui, &mut l.draft, &l.devices, focus);
                            problem(ui, l);
                            a
                        }
                        Page::Session => None,
                    };
                    ui.add_space(24.0);
                });
            });
    });
    action
}

/// A page wider than the column: the catalog's grid (up to four tiles a
/// row), the settings' table.
fn tiles_width(l: &Launcher) -> f32 {
    match l.page {
        Page::Catalog => l.catalog.len().clamp(1, 4) as f32 * (TILE.x + 12.0),
        Page::Settings => 960.0,
        _ => 0.0,
    }
}

/// A page's title and, under it, a line in the weak colour.
fn title(ui: &mut Ui, title: &str, under: &str) {
    ui.label(RichText::new(title).size(20.0));
    ui.add_space(4.0);
    ui.label(RichText::new(under).weak());
}

fn problem(ui: &mut Ui, l: &Launcher) {
    if let Some(p) = &l.problem {
        ui.add_space(8.0);
        ui.label(RichText::new(p).color(PROBLEM));
    }
}

/// A single-line field as wide as the column; whether Enter was pressed in it.
fn field(
    ui: &mut Ui,
    text: &mut String,
    hint: &str,
    password: bool,
    focus: bool,
) -> (egui::Response, bool) {
    let r = ui.add(
        egui::TextEdit::singleline(text)
            .hint_text(hint)
            .password(password)
            .desired_width(COLUMN - 40.0),
    );
    if focus {
        r.request_focus();
    }
    let entered = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
    (r, entered)
}

fn add_service(ui: &mut Ui, l: &mut Launcher) -> Option<Action> {
    let mut action = None;
    ui.label(RichText::new("Add a service").size(20.0));
    ui.add_space(6.0);
    ui.label("Type the address your administrator gave you.");
    ui.add_space(10.0);
    let focus = std::mem::take(&mut l.focus_first);
    let (_, entered) = field(
        ui,
        &mut l.address,
        "https://desktops.example.com",
        false,
        focus,
    );
    if entered {
        action = Some(Action::Continue);
    }
    problem(ui, l);
    ui.add_space(12.0);
    if l.busy {
        centred(ui, 200.0, |ui| {
            ui.add(egui::Spinner::new());
            ui.label("Checking the service…");
        });
    } else if ui.button("Continue").clicked() {
        action = Some(Action::Continue);
    }
    if ui.button("Settings").clicked() {
        action = Some(Action::OpenSettings);
    }
    let kept: Vec<String> = l.services().list.iter().map(|s| s.url.clone()).collect();
    if !kept.is_empty() {
        ui.add_space(24.0);
        ui.label("Services you used before:");
        for url in kept {
            if ui.button(&url).clicked() {
                l.address = url;
                action = Some(Action::Continue);
            }
        }
    }
    action
}

/// The service's host, as the Trust page names it.
fn host(url: &str) -> &str {
    url.trim_start_matches("https://")
}

/// A fingerprint in two lines of monospace, as people compare them.
fn fingerprint(ui: &mut Ui, f: &str) {
    let half = f.len() / 2;
    let cut = f[..half].rfind(':').map_or(half, |i| i + 1);
    ui.label(RichText::new(format!("{}\n{}", &f[..cut], &f[cut..])).monospace());
}

fn trust(ui: &mut Ui, l: &mut Launcher) -> Option<Action> {
    let mut action = None;
    let Some(u) = l.untrusted.clone() else {
        return Some(Action::Back);
    };
    let name = host(l.url()).to_string();
    let focus = std::mem::take(&mut l.focus_first);
    if let Some(was) = &u.was {
        ui.label(
            RichText::new("The service's certificate has changed")
                .size(20.0)
                .color(PROBLEM),
        );
        ui.add_space(8.0);
        ui.label(format!(
            "{name} now presents a certificate other than the one you trusted. If your administrator did not renew it, someone may be intercepting your connection: go back and ask them."
        ));
        ui.add_space(10.0);
        ui.label("Trusted before (SHA-256):");
        fingerprint(ui, was);
        ui.add_space(6.0);
        ui.label("Presented now (SHA-256):");
        fingerprint(ui, &u.fingerprint);
    } else {
        ui.label(RichText::new("Trust this service?").size(20.0));
        ui.add_space(8.0);
        ui.label(format!(
            "This computer does not know the certificate authority of {name}. Trust it only if your administrator confirms this fingerprint:"
        ));
        ui.add_space(10.0);
        fingerprint(ui, &u.fingerprint);
    }
    ui.add_space(14.0);
    let width = if u.was.is_some() { 260.0 } else { 145.0 };
    centred(ui, width, |ui| {
        let label = if u.was.is_some() {
            "Trust the new one"
        } else {
            "Trust"
        };
        let yes = ui.button(label);
        let back = ui.button("Back");
        // A changed certificate is never trusted by a stray Enter.
        if focus {
            if u.was.is_some() {
                back.request_focus()
            } else {
                yes.request_focus()
            }
        }
        if yes.clicked() {
            action = Some(Action::Trust);
        }
        if back.clicked() || ui.input(|i| i.key_pressed(Key::Escape)) {
            action = Some(Action::Back);
        }
    });
    action
}

fn sign_in(ui: &mut Ui, l: &mut Launcher) -> Option<Action> {
    let mut action = None;
    title(ui, "Sign in", l.url());
    ui.add_space(12.0);
    let focus = std::mem::take(&mut l.focus_first);
    let user_first = l.user.is_empty();
    ui.with_layout(Layout::top_down(Align::Min), |ui| {
        ui.set_max_width(COLUMN - 40.0);
        ui.label("User name");
        let (_, user_entered) = field(
            ui,
            &mut l.user,
            "name or name@organisation",
            false,
            focus && user_first,
        );
        ui.add_space(6.0);
        ui.label("Password");
        let (pw, pw_entered) = field(ui, &mut l.password, "", true, focus && !user_first);
        if user_entered {
            pw.request_focus();
        }
        if pw_entered {
            action = Some(Action::SignIn);
        }
        ui.add_space(4.0);
        ui.checkbox(&mut l.keep, "Keep me signed in on this computer");
    });
    problem(ui, l);
    ui.add_space(12.0);
    centred(ui, 240.0, |ui| {
        if l.busy {
            ui.add(egui::Spinner::new());
            ui.label("Signing in…");
        } else if ui.button("Sign in").clicked() {
            action = Some(Action::SignIn);
        }
        if ui.button("Other service").clicked() {
            action = Some(Action::OtherService);
        }
    });
    action
}

/// The administrators' messages, newest first, each in a box as wide as
/// the tiles.
fn notices(ui: &mut Ui, l: &Launcher) {
    let width = ui.available_width().min(tiles_width(l).max(COLUMN));
    for n in &l.notices {
        centred(ui, width, |ui| {
            // Top to bottom within the box, so the message wraps.
            ui.vertical(|ui| {
                ui.set_width(width);
                egui::Frame::group(ui.style())
                    .fill(ui.visuals().extreme_bg_color)
                    .inner_margin(10.0)
                    .show(ui, |ui| {
                        ui.set_width(width - 22.0);
                        ui.label(RichText::new("From your administrator").strong());
                        ui.add(egui::Label::new(RichText::new(&n.message).size(15.0)).wrap());
                    });
            });
        });
        ui.add_space(8.0);
    }
}

fn catalog(ui: &mut Ui, l: &mut Launcher) -> Option<Action> {
    let mut action = None;
    title(ui, "Your desktops", &format!("{} on {}", l.user, l.url()));
    ui.add_space(14.0);
    notices(ui, l);
    // With a control focused (Tab), egui's own keys move and press it;
    // otherwise the arrows and Enter work the tiles.
    let focused = ui.memory(|m| m.focused().is_some());
    let (left, right, up, down, enter) = ui.input(|i| {
        (
            i.key_pressed(Key::ArrowLeft),
            i.key_pressed(Key::ArrowRight),
            i.key_pressed(Key::ArrowUp),
            i.key_pressed(Key::ArrowDown),
            i.key_pressed(Key::Enter),
        )
    });
    let per_row = l.catalog.len().clamp(1, 4);
    if !focused {
        let by = match (left, right, up, down) {
            (true, ..) => -1,
            (_, true, ..) => 1,
            (_, _, true, _) => -(per_row as isize),
            (.., true) => per_row as isize,
            _ => 0,
        };
        l.select_by(by);
        if enter && !l.catalog.is_empty() {
            action = Some(Action::Open(l.selected));
        }
    }
    let grid_width = per_row as f32 * (TILE.x + 12.0) - 12.0;
    centred(ui, grid_width, |ui| {
        egui::Grid::new("catalog")
            .spacing(Vec2::splat(12.0))
            .show(ui, |ui| {
                for (i, e) in l.catalog.iter().enumerate() {
                    let selected = i == l.selected;
                    let text = RichText::new(format!(
                        "{}\n{}\n\n{}",
                        e.name,
                        kind_name(&e.kind),
                        state(e.open.as_ref()),
                    ))
                    .size(16.0);
                    let tile = egui::Button::selectable(selected, text).min_size(TILE);
                    let r = ui.add(tile);
                    if selected {
                        r.scroll_to_me(None);
                    }
                    if r.clicked() {
                        action = Some(Action::Open(i));
                    }
                    if (i + 1) % per_row == 0 {
                        ui.end_row();
                    }
                }
            });
    });
    problem(ui, l);
    ui.add_space(18.0);
    ui.label(RichText::new("Arrow keys choose, Enter opens.").weak());
    ui.add_space(8.0);
    centred(ui, 190.0, |ui| {
        if ui.button("Settings").clicked() {
            action = Some(Action::OpenSettings);
        }
        if ui.button("Sign out").clicked() {
            action = Some(Action::SignOut);
        }
    });
    action
}

/// A tile's state: a session left open (Enter goes back to it) or none.
fn state(open: Option<&nephele_api::directory::OpenSession>) -> String {
    let Some(o) = open else {
        return "New session".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let min = now.saturating_sub(o.since_unix) / 60;
    let ago = match min {
        0 => "a moment ago".to_string(),
        1..=59 => format!("{min} min ago"),
        _ => format!("{} h {} min ago", min / 60, min % 60),
    };
    format!("Open since {ago}\nEnter returns to it")
}

fn kind_name(kind: &str) -> &str {
    match kind {
        "app" => "Application",
        _ => "Desktop",
    }
}

fn connecting(ui: &mut Ui, l: &mut Launcher) -> Option<Action> {
    let mut action = None;
    let name = l
        .catalog
        .get(l.selected)
        .map_or("your desktop", |e| e.name.as_str())
        .to_string();
    ui.label(RichText::new(format!("Opening {name}")).size(20.0));
    ui.add_space(12.0);
    ui.with_layout(Layout::top_down(Align::Min), |ui| {
        ui.set_max_width(COLUMN - 40.0);
        let n = l.stages.len();
        for (i, s) in l.stages.iter().enumerate() {
            ui.horizontal_wrapped(|ui| {
                if i + 1 == n {
                    ui.add(egui::Spinner::new());
                } else {
                    ui.label("✓");
                }
                ui.label(s);
            });
        }
    });
    ui.add_space(14.0);
    let focus = std::mem::take(&mut l.focus_first);
    let cancel = ui.button("Cancel");
    if focus {
        cancel.request_focus();
    }
    if cancel.clicked() || ui.input(|i| i.key_pressed(Key::Escape)) {
        action = Some(Action::Cancel);
    }
    action
}

fn lost(ui: &mut Ui, l: &mut Launcher, cx: &Context) -> Option<Action> {
    let mut action = None;
    let ended = l.ended_by_service;
    let heading = if ended {
        "Session ended"
    } else {
        "Connection lost"
    };
    ui.label(RichText::new(heading).size(20.0));
    ui.add_space(8.0);
    if let Some(p) = &l.problem {
        ui.label(p);
    }
    if let Some(wait) = cx.retry_in {
        ui.add_space(6.0);
        ui.label(format!("Trying again in {} s…", wait.as_secs() + 1));
    }
    ui.add_space(14.0);
    let focus = std::mem::take(&mut l.focus_first);
    // After a lost link, reconnecting is the way forward; after the
    // service ended the session, the catalog is (opening the desktop
    // again is a new session).
    centred(ui, 250.0, |ui| {
        let back = |ui: &mut Ui| ui.button("Back to catalog");
        let catalog = ended.then(|| back(ui));
        let again = ui.button(if ended { "Open again" } else { "Reconnect" });
        let catalog = catalog.unwrap_or_else(|| back(ui));
        if focus {
            if ended { &catalog } else { &again }.request_focus();
        }
        if again.clicked() {
            action = Some(Action::Reconnect);
        }
        if catalog.clicked() || ui.input(|i| i.key_pressed(Key::Escape)) {
            action = Some(Action::BackToCatalog);
        }
    });
    action
}
