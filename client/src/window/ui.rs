//! The window's UI layer: egui, fed winit's events through `egui-winit`
//! and drawn on the CPU by `egui_software_backend` into the same softbuffer
//! surface the picture goes to, at the window's scale factor, with the
//! fonts shipped in `assets/fonts`.

use std::sync::Arc;
use std::time::Duration;

use egui_software_backend::{BufferMutRef, ColorFieldOrder, EguiSoftwareRender};
use winit::window::Window;

/// DejaVu Sans (assets/fonts/README.md says where it comes from).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// egui's state for one window.
pub(super) struct Ui {
    ctx: egui::Context,
    state: egui_winit::State,
    render: EguiSoftwareRender,
}

impl Ui {
    pub fn new(window: &Window) -> Self {
        let ctx = egui::Context::default();
        ctx.set_fonts(fonts());
        ctx.set_visuals(egui::Visuals::dark());
        ctx.all_styles_mut(|s| {
            s.spacing.button_padding = egui::vec2(14.0, 7.0);
            s.spacing.interact_size.y = 30.0;
            for (style, size) in [
                (egui::TextStyle::Body, 16.0),
                (egui::TextStyle::Button, 16.0),
                (egui::TextStyle::Heading, 24.0),
                (egui::TextStyle::Small, 12.0),
                (egui::TextStyle::Monospace, 15.0),
            ] {
                if let Some(f) = s.text_styles.get_mut(&style) {
                    f.size = size;
                }
            }
        });
        let state = egui_winit::State::new(
            ctx.clone(),
            egui::ViewportId::ROOT,
            window,
            Some(window.scale_factor() as f32),
            None,
            None,
        );
        // softbuffer's pixels are 0RGB words: in memory B, G, R, 0.
        let render = EguiSoftwareRender::new(ColorFieldOrder::Bgra);
        Self { ctx, state, render }
    }

    /// Hands egui a window event; whether it wants a redraw.
    pub fn on_event(&mut self, window: &Window, event: &winit::event::WindowEvent) -> bool {
        self.state.on_window_event(window, event).repaint
    }

    /// Gives egui text to paste (egui-winit is built without a clipboard
    /// of its own: the client's is the platform's).
    pub fn paste(&mut self, text: String) {
        self.state
            .egui_input_mut()
            .events
            .push(egui::Event::Paste(text));
    }

    /// Runs `build` and draws what it made into `pixels` (`width` ×
    /// `height` 0RGB words), over what is there. Returns when to draw
    /// again (a blinking caret, a spinner), if at all.
    pub fn draw(
        &mut self,
        window: &Window,
        pixels: &mut [u32],
        (width, height): (usize, usize),
        build: impl FnMut(&mut egui::Ui),
    ) -> Option<Duration> {
        let input = self.state.take_egui_input(window);
        let out = self.ctx.run_ui(input, build);
        let again_in = out
            .viewport_output
            .get(&egui::ViewportId::ROOT)
            .map(|v| v.repaint_delay)
            .filter(|d| *d < Duration::from_secs(60));
        self.state
            .handle_platform_output(window, out.platform_output);
        let shapes = self.ctx.tessellate(out.shapes, out.pixels_per_point);
        let mut target = BufferMutRef::new(bytemuck::cast_slice_mut(pixels), width, height);
        self.render.render(
            &mut target,
            &shapes,
            &out.textures_delta,
            out.pixels_per_point,
        );
        again_in
    }
}

/// DejaVu Sans for every text style.
pub(super) fn fonts() -> egui::FontDefinitions {
    let mut f = egui::FontDefinitions::empty();
    f.font_data.insert(
        "DejaVuSans".into(),
        Arc::new(egui::FontData::from_static(FONT)),
    );
    for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
        f.families.insert(family, vec!["DejaVuSans".into()]);
    }
    f
}
