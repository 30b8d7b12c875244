//! Input events on the wire: what the client's user did, numbered and
//! acknowledged; keys by physical position (USB HID usage).

use super::reader::Reader;
use super::{DecodeError, Message, ty};
use crate::pad::{PadAxis, PadButton, PadKind};

wire_enum! {
    /// A mouse button, numbered as the host's input layer expects.
    pub enum MouseButton {
        /// Primary button.
        Left = 1 => "left",
        /// Secondary button.
        Right = 2 => "right",
        /// Wheel button.
        Middle = 3 => "middle",
        /// Thumb button "back".
        Back = 4 => "back",
        /// Thumb button "forward".
        Forward = 5 => "forward",
    }
}

impl MouseButton {
    /// The button with this wire code.
    pub fn from_code(v: u8) -> Option<Self> {
        Self::from_u8(v)
    }
}

/// One input event from the client's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEvent {
    /// A key by physical position (USB HID usage on page 7).
    Key {
        /// USB HID keyboard usage.
        usage: u16,
        /// `true` for press, `false` for release.
        down: bool,
    },
    /// A mouse button edge.
    Button {
        /// Which button.
        button: MouseButton,
        /// `true` for press, `false` for release.
        down: bool,
    },
    /// Absolute pointer position in stream (host picture) coordinates.
    Move {
        /// Column, `0..width`.
        x: u16,
        /// Row, `0..height`.
        y: u16,
    },
    /// Relative pointer motion in stream pixels, while the client holds
    /// the pointer captured (games); the host moves its pointer by it.
    MoveBy {
        /// Rightwards.
        dx: i16,
        /// Downwards.
        dy: i16,
    },
    /// Wheel motion in 1/120ths of a notch (high resolution, as Windows' WHEEL_DELTA).
    Wheel {
        /// Horizontal, positive to the right.
        dx: i16,
        /// Vertical, positive away from the user (scroll up).
        dy: i16,
    },
    /// A character typed (by the local layout, a dead key, compose or an
    /// input method), for the host to produce whatever its own layout:
    /// printable only (keys such as Enter travel as [`InputEvent::Key`]).
    Text {
        /// The character.
        ch: char,
    },
    /// A gamepad took slot `pad` (`0..MAX_PADS`).
    PadConnect {
        /// Slot.
        pad: u8,
        /// Controller type.
        kind: PadKind,
        /// Whether it can rumble.
        rumble: bool,
    },
    /// The gamepad in slot `pad` left; everything it held is released.
    PadDisconnect {
        /// Slot.
        pad: u8,
    },
    /// A gamepad button edge.
    PadButton {
        /// Slot.
        pad: u8,
        /// Which button.
        button: PadButton,
        /// `true` for press, `false` for release.
        down: bool,
    },
    /// A gamepad axis' new value, `-AXIS_MAX..=AXIS_MAX` (see [`crate::pad`]).
    PadAxis {
        /// Slot.
        pad: u8,
        /// Which axis.
        axis: PadAxis,
        /// Position.
        value: i16,
    },
}

impl InputEvent {
    /// The kind's name as used in recordings: `key`, `button`, `move`,
    /// `wheel`, `pad`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Key { .. } => "key",
            Self::Button { .. } => "button",
            Self::Move { .. } => "move",
            Self::MoveBy { .. } => "move-by",
            Self::Wheel { .. } => "wheel",
            Self::Text { .. } => "text",
            Self::PadConnect { .. }
            | Self::PadDisconnect { .. }
            | Self::PadButton { .. }
            | Self::PadAxis { .. } => "pad",
        }
    }

    /// A value that later values of the same thing replace (pointer
    /// position, an axis), as opposed to an edge: what may be coalesced.
    pub fn is_level(&self) -> bool {
        matches!(self, Self::Move { .. } | Self::PadAxis { .. })
    }

    /// Whether `later` replaces this value (same pointer, same pad axis).
    pub fn replaced_by(&self, later: &Self) -> bool {
        match (self, later) {
            (Self::Move { .. }, Self::Move { .. }) => true,
            (
                Self::PadAxis { pad, axis, .. },
                Self::PadAxis {
                    pad: p2, axis: a2, ..
                },
            ) => pad == p2 && axis == a2,
            _ => false,
        }
    }
}

mod input_kind {
    pub const KEY: u8 = 1;
    pub const BUTTON: u8 = 2;
    pub const MOVE: u8 = 3;
    pub const WHEEL: u8 = 4;
    pub const PAD_CONNECT: u8 = 5;
    pub const PAD_DISCONNECT: u8 = 6;
    pub const PAD_BUTTON: u8 = 7;
    pub const PAD_AXIS: u8 = 8;
    pub const MOVE_BY: u8 = 9;
    pub const TEXT: u8 = 10;
}

/// `Message::Input`: its bytes, both ways.
pub(super) mod input {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, seq: &u32, event: &InputEvent) {
        out.push(ty::INPUT);
        out.extend_from_slice(&seq.to_be_bytes());
        match *event {
            InputEvent::Key { usage, down } => {
                out.push(input_kind::KEY);
                out.extend_from_slice(&usage.to_be_bytes());
                out.push(down.into());
            }
            InputEvent::Button { button, down } => {
                out.push(input_kind::BUTTON);
                out.push(button as u8);
                out.push(down.into());
            }
            InputEvent::Move { x, y } => {
                out.push(input_kind::MOVE);
                out.extend_from_slice(&x.to_be_bytes());
                out.extend_from_slice(&y.to_be_bytes());
            }
            InputEvent::MoveBy { dx, dy } => {
                out.push(input_kind::MOVE_BY);
                out.extend_from_slice(&dx.to_be_bytes());
                out.extend_from_slice(&dy.to_be_bytes());
            }
            InputEvent::Wheel { dx, dy } => {
                out.push(input_kind::WHEEL);
                out.extend_from_slice(&dx.to_be_bytes());
                out.extend_from_slice(&dy.to_be_bytes());
            }
            InputEvent::Text { ch } => {
                out.push(input_kind::TEXT);
                out.extend_from_slice(&u32::from(ch).to_be_bytes());
            }
            InputEvent::PadConnect { pad, kind, rumble } => {
                out.extend_from_slice(&[input_kind::PAD_CONNECT, pad, kind as u8]);
                out.push(rumble.into());
            }
            InputEvent::PadDisconnect { pad } => {
                out.extend_from_slice(&[input_kind::PAD_DISCONNECT, pad]);
            }
            InputEvent::PadButton { pad, button, down } => {
                out.extend_from_slice(&[input_kind::PAD_BUTTON, pad, button as u8]);
                out.push(down.into());
            }
            InputEvent::PadAxis { pad, axis, value } => {
                out.extend_from_slice(&[input_kind::PAD_AXIS, pad, axis as u8]);
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let seq = r.u32()?;
        let event = match r.u8()? {
            input_kind::KEY => InputEvent::Key {
                usage: r.u16()?,
                down: r.bool("key action")?,
            },
            input_kind::BUTTON => InputEvent::Button {
                button: r.code("mouse button", MouseButton::from_u8)?,
                down: r.bool("button action")?,
            },
            input_kind::MOVE => InputEvent::Move {
                x: r.u16()?,
                y: r.u16()?,
            },
            input_kind::MOVE_BY => InputEvent::MoveBy {
                dx: r.u16()? as i16,
                dy: r.u16()? as i16,
            },
            input_kind::WHEEL => InputEvent::Wheel {
                dx: r.u16()? as i16,
                dy: r.u16()? as i16,
            },
            input_kind::TEXT => {
                let v = r.u32()?;
                match char::from_u32(v).filter(|c| !c.is_control()) {
                    Some(ch) => InputEvent::Text { ch },
                    None => {
                        return Err(DecodeError::InvalidValue {
                            field: "typed character",
                            value: v.into(),
                        });
                    }
                }
            }
            input_kind::PAD_CONNECT => InputEvent::PadConnect {
                pad: r.slot()?,
                kind: r.code("pad kind", PadKind::from_u8)?,
                rumble: r.bool("pad rumble")?,
            },
            input_kind::PAD_DISCONNECT => InputEvent::PadDisconnect { pad: r.slot()? },
            input_kind::PAD_BUTTON => InputEvent::PadButton {
                pad: r.slot()?,
                button: r.code("pad button", PadButton::from_u8)?,
                down: r.bool("pad button action")?,
            },
            input_kind::PAD_AXIS => InputEvent::PadAxis {
                pad: r.slot()?,
                axis: r.code("pad axis", PadAxis::from_u8)?,
                value: r.u16()? as i16,
            },
            other => {
                return Err(DecodeError::InvalidValue {
                    field: "input kind",
                    value: other.into(),
                });
            }
        };
        Ok(Message::Input { seq, event })
    }
}

/// `Message::InputAck`: its bytes, both ways.
pub(super) mod input_ack {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, seq: &u32, host_us: &u64) {
        out.push(ty::INPUT_ACK);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&host_us.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::InputAck {
            seq: r.u32()?,
            host_us: r.u64()?,
        })
    }
}
