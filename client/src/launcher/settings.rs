//! The launcher's settings page: the picture, sound and input settings
//! a person changes most, edited on a copy and written to the same
//! settings file `nephele config` shows (only what changed, comments
//! kept: [`crate::settings_file`]). They apply from the next session.

use egui::{ComboBox, DragValue, Grid, RichText, Ui};
use nephele_protocol::activity::KeepActive;

use super::Action;
use crate::config::{MonitorChoice, MouseMode, Resolution, Settings, Typing};
use crate::video::{CodecChoice, DecoderChoice};

/// The sound devices offered, read when the page opens.
#[derive(Debug, Default, Clone)]
pub struct Devices {
    /// Outputs' names.
    pub outputs: Vec<String>,
    /// Inputs' names.
    pub inputs: Vec<String>,
}

/// A device choice: the system's default, or a device by name.
fn device(ui: &mut Ui, id: &str, chosen: &mut Option<String>, names: &[String]) {
    let shown = chosen
        .clone()
        .unwrap_or_else(|| "The system's default".into());
    ComboBox::from_id_salt(id)
        .selected_text(shown)
        .width(260.0)
        .show_ui(ui, |ui| {
            ui.selectable_value(chosen, None, "The system's default");
            for n in names {
                ui.selectable_value(chosen, Some(n.clone()), n);
            }
        });
}

/// Draws the page over `draft`; Save or Cancel when chosen.
pub fn page(ui: &mut Ui, draft: &mut Settings, devices: &Devices, focus: bool) -> Option<Action> {
    let mut action = None;
    ui.label(RichText::new("Settings").size(20.0));
    ui.add_space(4.0);
    ui.label(RichText::new("They apply from the next session.").weak());
    ui.add_space(10.0);
    // Two tables side by side, so the page fits a 720-point window.
    ui.horizontal_top(|ui| {
        Grid::new("picture and input")
            .num_columns(2)
            .spacing([18.0, 8.0])
            .show(ui, |ui| {
                ui.label(RichText::new("Picture").strong());
                ui.end_row();
                ui.label("Desktop size");
                ui.horizontal(|ui| {
                    let follow = ComboBox::from_id_salt("resolution")
                        .selected_text(resolution_name(draft.video.resolution))
                        .show_ui(ui, |ui| {
                            for r in [Resolution::Window, Resolution::Fixed] {
                                ui.selectable_value(
                                    &mut draft.video.resolution,
                                    r,
                                    resolution_name(r),
                                );
                            }
                        });
                    if focus {
                        follow.response.request_focus();
                    }
                    // The size asked for when it is fixed.
                    ui.add_enabled_ui(draft.video.resolution == Resolution::Fixed, |ui| {
                        ui.add(
                            DragValue::new(&mut draft.video.width)
                                .range(320..=7680)
                                .suffix(" wide"),
                        );
                        ui.add(
                            DragValue::new(&mut draft.video.height)
                                .range(240..=4320)
                                .suffix(" high"),
                        );
                    });
                });
                ui.end_row();
                ui.label("Frame rate");
                ComboBox::from_id_salt("fps")
                    .selected_text(format!("{} per second", draft.video.fps))
                    .show_ui(ui, |ui| {
                        for fps in [30u8, 60, 90, 120, 144] {
                            ui.selectable_value(
                                &mut draft.video.fps,
                                fps,
                                format!("{fps} per second"),
                            );
                        }
                    });
                ui.end_row();
                ui.label("Decoder");
                ComboBox::from_id_salt("decoder")
                    .selected_text(decoder_name(draft.video.decoder))
                    .show_ui(ui, |ui| {
                        for d in [
                            DecoderChoice::Auto,
                            DecoderChoice::Ffmpeg,
                            DecoderChoice::Openh264,
                        ] {
                            ui.selectable_value(&mut draft.video.decoder, d, decoder_name(d));
                        }
                    });
                ui.end_row();
                ui.label("Codec");
                ComboBox::from_id_salt("codec")
                    .selected_text(draft.video.codec.label())
                    .show_ui(ui, |ui| {
                        for c in CodecChoice::ALL {
                            ui.selectable_value(&mut draft.video.codec, c, c.label());
                        }
                    });
                ui.end_row();
                ui.label("Monitors");
                ComboBox::from_id_salt("monitor")
                    .selected_text(draft.video.monitor.label())
                    .show_ui(ui, |ui| {
                        for m in MonitorChoice::OFFERED {
                            ui.selectable_value(&mut draft.video.monitor, m, m.label());
                        }
                    });
                ui.end_row();
                ui.label("");
                ui.checkbox(&mut draft.video.fullscreen, "Start in full screen");
                ui.end_row();
                ui.label("");
                ui.checkbox(&mut draft.video.stats_overlay, "Show the statistics");
                ui.end_row();
                input(ui, draft);
            });
        ui.add_space(36.0);
        Grid::new("sound")
            .num_columns(2)
            .spacing([18.0, 8.0])
            .show(ui, |ui| {
                ui.label(RichText::new("Sound").strong());
                ui.end_row();
                ui.label("");
                ui.checkbox(&mut draft.audio.speaker, "Play the desktop's sound");
                ui.end_row();
                ui.label("Speaker");
                device(
                    ui,
                    "output",
                    &mut draft.audio.output_device,
                    &devices.outputs,
                );
                ui.end_row();
                ui.label("");
                ui.checkbox(&mut draft.audio.microphone, "Send my microphone");
                ui.end_row();
                ui.label("");
                ui.checkbox(
                    &mut draft.audio.mic_muted,
                    "Start with the microphone muted",
                );
                ui.end_row();
                ui.label("Microphone");
                device(ui, "input", &mut draft.audio.input_device, &devices.inputs);
                ui.end_row();
                ui.label(RichText::new("Keyboard").strong());
                ui.end_row();
                ui.label("Typing");
                ComboBox::from_id_salt("typing")
                    .selected_text(typing_name(draft.input.typing))
                    .show_ui(ui, |ui| {
                        for t in [Typing::Text, Typing::Keys] {
                            ui.selectable_value(&mut draft.input.typing, t, typing_name(t));
                        }
                    });
                ui.end_row();
            });
    });
    ui.add_space(8.0);
    let keys = &draft.shortcuts;
    ui.end_row();

    ui.label(
        RichText::new(format!(
            "Shortcuts: {} menu, {} quit, {} full screen, {} statistics (change them in the settings file).",
            keys.menu, keys.quit, keys.fullscreen, keys.stats
        ))
        .weak(),
    );
    ui.add_space(12.0);
    super::widgets::centred(ui, 160.0, |ui| {
        if ui.button("Save").clicked() {
            action = Some(Action::SaveSettings);
        }
        if ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape)) {
            action = Some(Action::CloseSettings);
        }
    });
    action
}

/// The input rows of the left table.
fn input(ui: &mut Ui, draft: &mut Settings) {
    ui.label(RichText::new("Input").strong());
    ui.end_row();
    ui.label("Mouse");
    ui.horizontal(|ui| {
        ui.radio_value(&mut draft.input.mouse, MouseMode::Absolute, "Desktop");
        ui.radio_value(
            &mut draft.input.mouse,
            MouseMode::Relative,
            "Games (captured)",
        );
    });
    ui.end_row();
    ui.label("");
    ui.checkbox(
        &mut draft.input.clipboard,
        "Share the clipboard's text with the desktop",
    );
    ui.end_row();
    ui.label("Keep active");
    ComboBox::from_id_salt("keep")
        .selected_text(keep_name(draft.input.keep_active))
        .show_ui(ui, |ui| {
            for k in [KeepActive::No, KeepActive::Presentation, KeepActive::Video] {
                ui.selectable_value(&mut draft.input.keep_active, k, keep_name(k));
            }
        });
    ui.end_row();
}

fn decoder_name(d: DecoderChoice) -> &'static str {
    match d {
        DecoderChoice::Auto => "Automatic (FFmpeg where the system has it)",
        DecoderChoice::Ffmpeg => "FFmpeg",
        DecoderChoice::Openh264 => "openh264 (built in)",
    }
}

fn keep_name(k: KeepActive) -> &'static str {
    match k {
        KeepActive::No => "No: pause when I am away",
        KeepActive::Presentation => "Presentation",
        KeepActive::Video => "Watching a video",
        KeepActive::Spectating => "Spectating",
        KeepActive::Recording => "Recording",
    }
}

fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::Window => "Follows the window",
        Resolution::Fixed => "Fixed:",
    }
}

fn typing_name(t: Typing) -> &'static str {
    match t {
        Typing::Text => "As text (any keyboard layout)",
        Typing::Keys => "As keys (games)",
    }
}
