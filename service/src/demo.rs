//! The demo desktop: what a session shows when no real desktop is attached.
//!
//! It is drawn in software straight into I420 planes (no RGB pass to convert
//! afterwards): a gradient wallpaper, a notes window showing the text typed so
//! far with a blinking caret, a bouncing ball and a frame counter so the frame
//! rate shows, mouse-button indicators, a taskbar with a clock, and a pointer
//! that follows the mouse. Every drawing position is even, so chroma
//! (subsampled 2×2) lines up with luma.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nephele_protocol::hid;
use nephele_protocol::pad::{MAX_PADS, PadAxis, PadButton, PadKind};
use nephele_protocol::wire::{InputEvent, MouseButton};

/// An I420 picture with tightly packed planes.
#[derive(Debug, Clone)]
pub struct I420 {
    /// Width in pixels (even).
    pub width: usize,
    /// Height in pixels (even).
    pub height: usize,
    /// Luma, `width * height`.
    pub y: Vec<u8>,
    /// Cb, `width/2 * height/2`.
    pub u: Vec<u8>,
    /// Cr, `width/2 * height/2`.
    pub v: Vec<u8>,
}

impl I420 {
    /// A black picture.
    pub fn new(width: usize, height: usize) -> Self {
        let c = (width / 2) * (height / 2);
        Self {
            width,
            height,
            y: vec![16; width * height],
            u: vec![128; c],
            v: vec![128; c],
        }
    }
}

impl openh264::formats::YUVSource for I420 {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }
    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }
    fn y(&self) -> &[u8] {
        &self.y
    }
    fn u(&self) -> &[u8] {
        &self.u
    }
    fn v(&self) -> &[u8] {
        &self.v
    }
}

/// A colour in BT.601 limited-range YCbCr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Yuv(pub u8, pub u8, pub u8);

impl Yuv {
    /// Converts 8-bit sRGB-ish RGB (BT.601, limited range, as the client decodes it).
    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        let (r, g, b) = (r as i32, g as i32, b as i32);
        let y = 16 + ((66 * r + 129 * g + 25 * b + 128) >> 8);
        let u = 128 + ((-38 * r - 74 * g + 112 * b + 128) >> 8);
        let v = 128 + ((112 * r - 94 * g - 18 * b + 128) >> 8);
        Self(y as u8, u as u8, v as u8)
    }
}

const WALL_TOP: Yuv = Yuv::rgb(24, 110, 130);
const TASKBAR: Yuv = Yuv::rgb(32, 34, 40);
const TITLE: Yuv = Yuv::rgb(40, 90, 180);
const WINDOW_BG: Yuv = Yuv::rgb(245, 245, 240);
const TEXT: Yuv = Yuv::rgb(20, 20, 24);
const WHITE: Yuv = Yuv::rgb(255, 255, 255);
const BLACK: Yuv = Yuv::rgb(0, 0, 0);
const BALL: Yuv = Yuv::rgb(250, 150, 30);
const LED_OFF: Yuv = Yuv::rgb(70, 72, 80);
const LED_ON: Yuv = Yuv::rgb(90, 220, 90);

/// Most characters the notes window keeps.
pub const MAX_TYPED: usize = 1024;

/// What the desktop shows: the state input changes.
#[derive(Debug, Clone, Default)]
pub struct DesktopState {
    /// Text typed so far (US layout), newest last.
    pub typed: String,
    /// Pointer position in picture coordinates.
    pub pointer: (u16, u16),
    /// Keys held now, by HID usage.
    pub keys_down: BTreeSet<u16>,
    /// Mouse buttons held now.
    pub buttons_down: BTreeSet<u8>,
    /// Accumulated wheel motion, in notches × 120.
    pub wheel: (i32, i32),
    /// Input events applied.
    pub events: u64,
    /// Key presses (downs, auto-repeat included): the demo clicks for each.
    pub key_presses: u64,
    /// Gamepads by slot.
    pub pads: [Option<PadState>; MAX_PADS as usize],
    /// The client's clipboard text, as last shared: Ctrl+V types it.
    pub clipboard: String,
    /// Text Ctrl+C copied (the whole note), for the host to send to the
    /// client's clipboard.
    pub copied: Option<String>,
}

/// One connected gamepad's live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadState {
    /// Controller type it announced.
    pub kind: PadKind,
    /// Whether it can rumble.
    pub rumble: bool,
    /// Buttons held, one bit per [`PadButton`] code.
    pub buttons: u32,
    /// Axis positions by [`PadAxis`] code (index 0 unused).
    pub axes: [i16; 9],
}

impl PadState {
    /// Whether `b` is held.
    pub fn held(&self, b: PadButton) -> bool {
        self.buttons & (1 << b as u8) != 0
    }

    /// Where axis `a` is.
    pub fn axis(&self, a: PadAxis) -> i16 {
        self.axes[a as usize]
    }
}

impl DesktopState {
    /// The pad in `slot`, if one is connected there.
    pub fn pad(&self, slot: u8) -> Option<&PadState> {
        self.pads.get(usize::from(slot))?.as_ref()
    }

    /// Applies one input event.
    pub fn apply(&mut self, ev: &InputEvent, width: u16, height: u16) {
        self.events += 1;
        match *ev {
            InputEvent::Key { usage, down } => {
                if down {
                    // Auto-repeat arrives as repeated downs and types again.
                    self.keys_down.insert(usage);
                    self.key_presses += 1;
                    self.type_key(usage);
                } else {
                    self.keys_down.remove(&usage);
                }
            }
            InputEvent::Button { button, down } => {
                if down {
                    self.buttons_down.insert(button as u8);
                } else {
                    self.buttons_down.remove(&(button as u8));
                }
            }
            InputEvent::Move { x, y } => {
                self.pointer = (
                    x.min(width.saturating_sub(1)),
                    y.min(height.saturating_sub(1)),
                );
            }
            InputEvent::MoveBy { dx, dy } => {
                let step = |p: u16, d: i16, size: u16| {
                    (i32::from(p) + i32::from(d)).clamp(0, i32::from(size.saturating_sub(1))) as u16
                };
                self.pointer = (
                    step(self.pointer.0, dx, width),
                    step(self.pointer.1, dy, height),
                );
            }
            InputEvent::Wheel { dx, dy } => {
                self.wheel.0 = self.wheel.0.saturating_add(dx.into());
                self.wheel.1 = self.wheel.1.saturating_add(dy.into());
            }
            InputEvent::Text { ch } => {
                self.key_presses += 1;
                self.note(ch);
            }
            InputEvent::PadConnect { pad, kind, rumble } => {
                if let Some(slot) = self.pads.get_mut(usize::from(pad)) {
                    *slot = Some(PadState {
                        kind,
                        rumble,
                        buttons: 0,
                        axes: [0; 9],
                    });
                }
            }
            InputEvent::PadDisconnect { pad } => {
                if let Some(slot) = self.pads.get_mut(usize::from(pad)) {
                    *slot = None;
                }
            }
            InputEvent::PadButton { pad, button, down } => {
                if let Some(Some(p)) = self.pads.get_mut(usize::from(pad)) {
                    let bit = 1 << button as u8;
                    if down {
                        p.buttons |= bit;
                    } else {
                        p.buttons &= !bit;
                    }
                }
            }
            InputEvent::PadAxis { pad, axis, value } => {
                if let Some(Some(p)) = self.pads.get_mut(usize::from(pad)) {
                    p.axes[axis as usize] = value;
                }
            }
        }
    }

    fn type_key(&mut self, usage: u16) {
        let shift =
            self.keys_down.contains(&hid::LEFT_SHIFT) || self.keys_down.contains(&hid::RIGHT_SHIFT);
        if self.keys_down.contains(&hid::LEFT_CTRL) || self.keys_down.contains(&hid::RIGHT_CTRL) {
            // The note's clipboard: Ctrl+C copies it all, Ctrl+V pastes
            // what the client shared (its printable ASCII, as typing would).
            match usage {
                hid::KEY_C => self.copied = Some(self.typed.clone()),
                hid::KEY_V => {
                    let text: Vec<char> = self
                        .clipboard
                        .chars()
                        .filter(|c| c.is_ascii() && !c.is_ascii_control())
                        .collect();
                    for c in text {
                        self.note(c);
                    }
                }
                _ => {}
            }
            return;
        }
        if usage == hid::BACKSPACE {
            self.typed.pop();
            return;
        }
        if let Some(c) = hid::us_char_for_key(usage, shift) {
            self.note(c);
        }
    }

    /// Adds `c` to the note, the oldest character going when it is full.
    fn note(&mut self, c: char) {
        if self.typed.chars().count() >= MAX_TYPED {
            self.typed.remove(0);
        }
        self.typed.push(c);
    }

    /// Releases everything held (the client went away); returns what was released.
    pub fn release_all(&mut self) -> Vec<InputEvent> {
        let mut released: Vec<InputEvent> = std::mem::take(&mut self.keys_down)
            .into_iter()
            .map(|usage| InputEvent::Key { usage, down: false })
            .collect();
        released.extend(
            std::mem::take(&mut self.buttons_down)
                .into_iter()
                .filter_map(MouseButton::from_code)
                .map(|button| InputEvent::Button {
                    button,
                    down: false,
                }),
        );
        for (pad, slot) in (0..).zip(&mut self.pads) {
            let Some(p) = slot.take() else { continue };
            released.extend(
                PadButton::ALL
                    .iter()
                    .filter(|b| p.held(**b))
                    .map(|&button| InputEvent::PadButton {
                        pad,
                        button,
                        down: false,
                    }),
            );
            released.push(InputEvent::PadDisconnect { pad });
        }
        released
    }
}

/// Draws the desktop into a picture; keeps the wallpaper cached.
#[derive(Debug)]
pub struct Renderer {
    wallpaper: I420,
    /// Draw the video panel: noise that changes completely every frame,
    /// which no encoder can predict, so a session uses all its bitrate.
    pub motion: bool,
}

impl Renderer {
    /// A renderer for pictures of this size.
    pub fn new(width: usize, height: usize) -> Self {
        let mut wallpaper = I420::new(width, height);
        for row in 0..height {
            // Vertical gradient from teal to deep blue.
            let t = row as f32 / height.max(1) as f32;
            let r = (24.0 * (1.0 - t) + 10.0 * t) as u8;
            let g = (110.0 * (1.0 - t) + 30.0 * t) as u8;
            let b = (130.0 * (1.0 - t) + 90.0 * t) as u8;
            let c = if row == 0 {
                WALL_TOP
            } else {
                Yuv::rgb(r, g, b)
            };
            wallpaper.y[row * width..(row + 1) * width].fill(c.0);
            if row % 2 == 0 {
                let cw = width / 2;
                let cr = row / 2;
                wallpaper.u[cr * cw..(cr + 1) * cw].fill(c.1);
                wallpaper.v[cr * cw..(cr + 1) * cw].fill(c.2);
            }
        }
        Self {
            wallpaper,
            motion: false,
        }
    }

    /// Renders `state` at session time `t` as frame number `frame` into `out`.
    pub fn render(&self, state: &DesktopState, t: Duration, frame: u64, out: &mut I420) {
        let (w, h) = (out.width, out.height);
        out.y.copy_from_slice(&self.wallpaper.y);
        out.u.copy_from_slice(&self.wallpaper.u);
        out.v.copy_from_slice(&self.wallpaper.v);
        let scale = if h >= 600 { 2 } else { 1 };
        let glyph = 8 * scale;

        // Taskbar with a start label, mouse-button indicators and a clock.
        let bar_h = even((h / 18).max(16));
        fill(out, 0, h - bar_h, w, bar_h, TASKBAR);
        let ty = h - bar_h + even((bar_h.saturating_sub(glyph)) / 2);
        text(out, 12, ty, scale, WHITE, "Nephele demo desktop");
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let clock = format!(
            "{:02}:{:02}:{:02} UTC",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60
        );
        let cx = w.saturating_sub(clock.len() * glyph + 12);
        text(out, even(cx), ty, scale, WHITE, &clock);
        let led = glyph;
        for (i, b) in [MouseButton::Left, MouseButton::Middle, MouseButton::Right]
            .iter()
            .enumerate()
        {
            let on = state.buttons_down.contains(&(*b as u8));
            let x = even(w / 2 + i * (led + 6));
            fill(out, x, ty, led, led, if on { LED_ON } else { LED_OFF });
        }

        // Something that moves every frame: a ball bouncing along the top,
        // and the frame counter.
        let span = w.saturating_sub(glyph * 4).max(1);
        let period = 2.0;
        let phase = (t.as_secs_f64() % period) / period;
        let tri = if phase < 0.5 {
            phase * 2.0
        } else {
            2.0 - phase * 2.0
        };
        let bx = even((tri * span as f64) as usize);
        fill(out, bx, even(h / 40), glyph * 3, glyph * 3, BALL);
        let counter = format!("frame {frame}  t={:.1}s", t.as_secs_f64());
        text(
            out,
            even(w * 3 / 4).min(w.saturating_sub(counter.len() * glyph)),
            even(h / 40 + glyph * 4),
            scale,
            WHITE,
            &counter,
        );

        if self.motion {
            video_panel(out, frame);
        }

        // The notes window with the typed text.
        let (wx, wy) = (even(w / 10), even(h / 8));
        let (ww, wh) = (even(w * 6 / 10), even(h * 55 / 100));
        let title_h = glyph + 8;
        fill(out, wx + 6, wy + 6, ww, wh, Yuv::rgb(8, 30, 40)); // shadow
        fill(out, wx, wy, ww, title_h, TITLE);
        text(out, wx + 8, wy + 4, scale, WHITE, "Notes - type here");
        fill(out, wx, wy + title_h, ww, wh - title_h, WINDOW_BG);
        let cols = ((ww - 16) / glyph).max(1);
        let rows = ((wh - title_h - 16) / (glyph + 2 * scale)).max(1);
        let mut lines: Vec<&str> = Vec::new();
        for para in state.typed.split('\n') {
            let mut rest = para;
            loop {
                let cut = rest.char_indices().nth(cols).map_or(rest.len(), |(i, _)| i);
                lines.push(&rest[..cut]);
                rest = &rest[cut..];
                if rest.is_empty() {
                    break;
                }
            }
        }
        let first = lines.len().saturating_sub(rows);
        let mut caret = (wx + 8, wy + title_h + 8);
        for (i, line) in lines[first..].iter().enumerate() {
            let y = wy + title_h + 8 + i * (glyph + 2 * scale);
            text(out, wx + 8, y, scale, TEXT, line);
            caret = (wx + 8 + line.chars().count() * glyph, y);
        }
        if t.as_millis() % 1000 < 600 {
            fill(out, caret.0, caret.1, 2 * scale, glyph, TEXT);
        }

        // A card per connected gamepad, in slot order, under the notes.
        let card = (even(w / 20).max(24), even(h / 8).max(24));
        let mut cx = wx;
        for (slot, pad) in state.pads.iter().enumerate() {
            if let Some(p) = pad {
                pad_card(out, (cx, even(wy + wh + glyph)), card, slot, p);
            }
            cx += card.0 + 4;
        }

        // Pointer on top of everything.
        pointer(
            out,
            usize::from(state.pointer.0),
            usize::from(state.pointer.1),
        );
    }
}

/// One gamepad's live state: its slot number, both sticks (a dot in a
/// box), the analog triggers (bars filling upwards) and every button as a
/// lamp, in code order (faces, shoulders, menu buttons, thumbs, d-pad).
fn pad_card(
    p: &mut I420,
    (x, y): (usize, usize),
    (cw, ch): (usize, usize),
    slot: usize,
    s: &PadState,
) {
    fill(p, x, y, cw, ch, TASKBAR);
    text(p, x + 2, y + 2, 1, WHITE, &format!("{}", slot + 1));
    let stick = even(cw * 2 / 5);
    let sy = y + 12;
    let dot = 4;
    let pos = |v: i16, flip: bool| {
        let f = (f32::from(v) / f32::from(i16::MAX)).clamp(-1.0, 1.0);
        let f = if flip { -f } else { f };
        ((f + 1.0) / 2.0 * (stick - dot) as f32) as usize
    };
    for (i, (ax, ay)) in [
        (PadAxis::LeftStickX, PadAxis::LeftStickY),
        (PadAxis::RightStickX, PadAxis::RightStickY),
    ]
    .into_iter()
    .enumerate()
    {
        let bx = x + 2 + i * (stick + 4);
        fill(p, bx, sy, stick, stick, LED_OFF);
        // Up is positive, as gilrs reports it; rows grow downwards.
        let (dx, dy) = (pos(s.axis(ax), false), pos(s.axis(ay), true));
        fill(p, even(bx + dx), even(sy + dy), dot, dot, LED_ON);
    }
    let bar_h = stick;
    for (i, z) in [PadAxis::LeftZ, PadAxis::RightZ].into_iter().enumerate() {
        let bx = x + 2 + 2 * (stick + 4) + i * 4;
        fill(p, bx, sy, 2, bar_h, LED_OFF);
        let f = (f32::from(s.axis(z).max(0)) / f32::from(i16::MAX)).clamp(0.0, 1.0);
        let filled = even((f * bar_h as f32) as usize);
        fill(p, bx, sy + bar_h - filled, 2, filled, BALL);
    }
    let lamp = 4;
    let per_row = ((cw - 4) / (lamp + 2)).max(1);
    for (i, b) in PadButton::ALL.iter().enumerate() {
        let lx = x + 2 + (i % per_row) * (lamp + 2);
        let ly = sy + stick + 4 + (i / per_row) * (lamp + 2);
        fill(
            p,
            even(lx),
            even(ly),
            lamp,
            lamp,
            if s.held(*b) { LED_ON } else { LED_OFF },
        );
    }
}

/// The motion panel: the right third of the picture, below the ball: a
/// plasma of three waves drifting in different directions at different
/// speeds, so no motion vector predicts it and every frame costs bits, as
/// a game or a film does.
fn video_panel(p: &mut I420, frame: u64) {
    let (w, h) = (p.width, p.height);
    let (x0, y0) = (even(w * 2 / 3), even(h / 6));
    let (pw, ph) = (w - x0, even(h * 2 / 3));
    let t = frame as usize;
    let wave = |i: usize| SINE[i & 255];
    for row in y0..(y0 + ph).min(h) {
        let yr = row - y0;
        let line = &mut p.y[row * w + x0..row * w + x0 + pw];
        for (x, d) in line.iter_mut().enumerate() {
            let v = wave(x * 3 + t * 5) + wave(yr * 2 + t * 3) + wave(x + yr + t * 7);
            // Fine grain whose contrast sweeps across the panel: texture
            // that changes in place, which motion search cannot follow.
            let grain = ((x * 7919 + yr * 104_729) >> 3 & 63) as i32 - 32;
            let v = v / 3 + grain * wave(x / 2 + yr + t * 9) / 100;
            *d = (126 + v).clamp(16, 235) as u8;
        }
        if row % 2 == 0 {
            let cw = w / 2;
            let (cx0, cpw, cr) = (x0 / 2, pw / 2, row / 2);
            for x in 0..cpw {
                let v = wave(x * 4 + yr + t * 2);
                p.u[cr * cw + cx0 + x] = (128 + v / 2) as u8;
                p.v[cr * cw + cx0 + x] = (128 - v / 2) as u8;
            }
        }
    }
}

/// One period of a sine, amplitude 100, in 256 steps.
static SINE: LazyLock<[i32; 256]> = LazyLock::new(|| {
    std::array::from_fn(|i| (100.0 * (i as f64 * std::f64::consts::TAU / 256.0).sin()) as i32)
});

fn even(v: usize) -> usize {
    v & !1
}

/// Fills a rectangle, clipped to the picture.
fn fill(p: &mut I420, x: usize, y: usize, w: usize, h: usize, c: Yuv) {
    let x1 = (x + w).min(p.width);
    let y1 = (y + h).min(p.height);
    if x >= x1 || y >= y1 {
        return;
    }
    for row in y..y1 {
        p.y[row * p.width + x..row * p.width + x1].fill(c.0);
    }
    let cw = p.width / 2;
    for row in y / 2..y1.div_ceil(2).min(p.height / 2) {
        p.u[row * cw + x / 2..row * cw + x1.div_ceil(2).min(cw)].fill(c.1);
        p.v[row * cw + x / 2..row * cw + x1.div_ceil(2).min(cw)].fill(c.2);
    }
}

/// Draws text with the 8×8 bitmap font at `scale`.
fn text(p: &mut I420, x: usize, y: usize, scale: usize, c: Yuv, s: &str) {
    let g = 8 * scale;
    for (i, ch) in s.chars().enumerate() {
        let code = if ch.is_ascii() {
            ch as usize
        } else {
            '?' as usize
        };
        let bitmap = font8x8::legacy::BASIC_LEGACY[code];
        let gx = x + i * g;
        if gx + g > p.width || y + g > p.height {
            return;
        }
        for (r, bits) in bitmap.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    fill(p, gx + col * scale, y + r * scale, scale, scale, c);
                }
            }
        }
    }
}

/// An arrow pointer, 12 wide and 19 tall, as a bitmap: `#` outline, `o` fill.
const ARROW: [&str; 19] = [
    "#           ",
    "##          ",
    "#o#         ",
    "#oo#        ",
    "#ooo#       ",
    "#oooo#      ",
    "#ooooo#     ",
    "#oooooo#    ",
    "#ooooooo#   ",
    "#oooooooo#  ",
    "#ooooooooo# ",
    "#oooooo#####",
    "#ooo#oo#    ",
    "#oo# #oo#   ",
    "#o#  #oo#   ",
    "##    #oo#  ",
    "#     #oo#  ",
    "       #oo# ",
    "        ##  ",
];

fn pointer(p: &mut I420, x: usize, y: usize) {
    // Luma per pixel for a crisp outline; chroma is neutral for both colours.
    for (r, row) in ARROW.iter().enumerate() {
        for (c, ch) in row.bytes().enumerate() {
            let (px, py) = (x + c, y + r);
            if px >= p.width || py >= p.height {
                continue;
            }
            let luma = match ch {
                b'#' => BLACK.0,
                b'o' => WHITE.0,
                _ => continue,
            };
            p.y[py * p.width + px] = luma;
            let ci = (py / 2) * (p.width / 2) + px / 2;
            p.u[ci] = 128;
            p.v[ci] = 128;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_with_shift_and_backspace() {
        let mut s = DesktopState::default();
        let key =
            |s: &mut DesktopState, usage, down| s.apply(&InputEvent::Key { usage, down }, 640, 480);
        key(&mut s, hid::LEFT_SHIFT, true);
        key(&mut s, 0x0B, true); // h
        key(&mut s, 0x0B, false);
        key(&mut s, hid::LEFT_SHIFT, false);
        key(&mut s, 0x0C, true); // i
        key(&mut s, 0x0C, false);
        key(&mut s, 0x1E, true); // 1
        key(&mut s, 0x1E, false);
        key(&mut s, hid::BACKSPACE, true);
        assert_eq!(s.typed, "Hi");
        assert_eq!(
            s.release_all(),
            vec![InputEvent::Key {
                usage: hid::BACKSPACE,
                down: false
            }]
        );
        assert!(s.keys_down.is_empty());
    }

    #[test]
    fn typed_text_goes_into_the_note_and_backspace_takes_a_whole_character() {
        let mut s = DesktopState::default();
        for ch in "Grüße".chars() {
            s.apply(&InputEvent::Text { ch }, 640, 480);
        }
        s.apply(
            &InputEvent::Key {
                usage: hid::BACKSPACE,
                down: true,
            },
            640,
            480,
        );
        assert_eq!(s.typed, "Grüß");
        // Full: the oldest character goes, whole.
        s.typed = "ä".repeat(MAX_TYPED);
        s.apply(&InputEvent::Text { ch: 'x' }, 640, 480);
        assert_eq!(s.typed.chars().count(), MAX_TYPED);
        assert!(s.typed.ends_with('x') && s.typed.starts_with('ä'));
    }

    #[test]
    fn relative_motion_moves_the_pointer_and_stops_at_the_edges() {
        let mut s = DesktopState::default();
        let by = |s: &mut DesktopState, dx, dy| s.apply(&InputEvent::MoveBy { dx, dy }, 640, 480);
        s.apply(&InputEvent::Move { x: 100, y: 100 }, 640, 480);
        by(&mut s, 20, -30);
        assert_eq!(s.pointer, (120, 70));
        by(&mut s, i16::MIN, i16::MAX);
        assert_eq!(s.pointer, (0, 479));
        by(&mut s, 700, -5);
        assert_eq!(s.pointer, (639, 474));
    }

    #[test]
    fn render_shows_text_and_pointer_where_expected() {
        let (w, h) = (640, 360);
        let r = Renderer::new(w, h);
        let mut out = I420::new(w, h);
        let mut s = DesktopState {
            pointer: (600, 20),
            ..Default::default()
        };
        r.render(&s, Duration::ZERO, 0, &mut out);
        let blank = out.y.clone();
        s.typed = "WWWW".into();
        s.pointer = (300, 200);
        r.render(&s, Duration::ZERO, 0, &mut out);
        let changed: Vec<usize> = (0..w * h).filter(|&i| out.y[i] != blank[i]).collect();
        assert!(!changed.is_empty());
        // Changes lie inside the notes window's text area or the pointer.
        let in_text = |i: usize| {
            let (x, y) = (i % w, i / w);
            (w / 10..w * 7 / 10).contains(&x) && (h / 8..h * 7 / 10).contains(&y)
        };
        let in_pointer = |i: usize| {
            let (x, y) = (i % w, i / w);
            ((300..312).contains(&x) && (200..219).contains(&y))
                || ((600..612).contains(&x) && (20..39).contains(&y))
        };
        assert!(changed.iter().all(|&i| in_text(i) || in_pointer(i)));
        assert!(changed.iter().any(|&i| in_pointer(i)));
        assert!(changed.iter().any(|&i| in_text(i) && !in_pointer(i)));
    }

    #[test]
    fn each_connected_pad_shows_its_buttons_and_sticks_live() {
        let (w, h) = (1280, 720);
        let r = Renderer::new(w, h);
        let mut s = DesktopState::default();
        let draw = |s: &DesktopState| {
            let mut out = I420::new(w, h);
            r.render(s, Duration::ZERO, 0, &mut out);
            out.y
        };
        let before = draw(&s);
        for ev in [
            InputEvent::PadConnect {
                pad: 2,
                kind: PadKind::Xbox,
                rumble: true,
            },
            InputEvent::PadButton {
                pad: 2,
                button: PadButton::South,
                down: true,
            },
        ] {
            s.apply(&ev, 1280, 720);
        }
        let pressed = draw(&s);
        let changed = |a: &[u8], b: &[u8]| -> Vec<(usize, usize)> {
            (0..w * h)
                .filter(|&i| a[i] != b[i])
                .map(|i| (i % w, i / w))
                .collect()
        };
        // The card is slot 2's place in the row under the notes.
        let card = changed(&before, &pressed);
        assert!(!card.is_empty());
        let slot_x = w / 10 + 2 * (w / 20 + 4);
        assert!(
            card.iter()
                .all(|&(x, _)| (slot_x..slot_x + w / 20).contains(&x)),
            "{:?}",
            card[0]
        );
        // Releasing the button and moving the left stick change the card again.
        let release = InputEvent::PadButton {
            pad: 2,
            button: PadButton::South,
            down: false,
        };
        s.apply(&release, 1280, 720);
        let released = draw(&s);
        assert!(!changed(&pressed, &released).is_empty());
        s.apply(
            &InputEvent::PadAxis {
                pad: 2,
                axis: PadAxis::LeftStickX,
                value: i16::MAX,
            },
            1280,
            720,
        );
        assert!(!changed(&released, &draw(&s)).is_empty());
        // Gone with its pad; release_all unplugs what is left.
        s.apply(
            &InputEvent::PadConnect {
                pad: 5,
                kind: PadKind::Generic,
                rumble: false,
            },
            1280,
            720,
        );
        s.apply(
            &InputEvent::PadButton {
                pad: 5,
                button: PadButton::Start,
                down: true,
            },
            1280,
            720,
        );
        let released = s.release_all();
        assert_eq!(
            released,
            vec![
                InputEvent::PadDisconnect { pad: 2 },
                InputEvent::PadButton {
                    pad: 5,
                    button: PadButton::Start,
                    down: false
                },
                InputEvent::PadDisconnect { pad: 5 },
            ]
        );
        assert_eq!(draw(&s), before);
    }
}
