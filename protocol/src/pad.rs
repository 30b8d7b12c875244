//! Gamepads as the protocol carries them: up to [`MAX_PADS`] slots, their
//! buttons and axes named as gilrs names them (so scripts, recordings and
//! the client's gilrs source share one spelling), and the controller's kind.
//!
//! Buttons travel as edges and axes as values on the reliable input
//! channel; the sender coalesces an axis's values that have not left yet
//! (latest wins), never across a button edge, so no press or release is
//! lost and the host always ends on the pad's latest state.

use crate::wire::DecodeError;

/// Gamepad slots: a pad keeps its slot, in arrival order, until it leaves.
pub const MAX_PADS: u8 = 16;

/// Full deflection of an axis on the wire (gilrs' 1.0).
pub const AXIS_MAX: i16 = i16::MAX;

/// Defines a wire-coded enum with gilrs' names and its lookups.
macro_rules! named_codes {
    ($(#[$meta:meta])* $name:ident, $field:literal, { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The name gilrs gives it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)+
                }
            }

            /// Parses gilrs' name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name() == name)
            }

            pub(crate) fn from_u8(v: u8) -> Result<Self, DecodeError> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|x| *x as u8 == v)
                    .ok_or(DecodeError::InvalidValue {
                        field: $field,
                        value: v.into(),
                    })
            }
        }
    };
}

named_codes!(
    /// A gamepad button, by position (gilrs' `Button`).
    PadButton, "pad button", {
        /// Bottom face button (Xbox A, PlayStation cross).
        South = 1,
        /// Right face button (Xbox B, PlayStation circle).
        East = 2,
        /// Top face button (Xbox Y, PlayStation triangle).
        North = 3,
        /// Left face button (Xbox X, PlayStation square).
        West = 4,
        /// Sixth face button of some pads.
        C = 5,
        /// Seventh face button of some pads.
        Z = 6,
        /// Left shoulder.
        LeftTrigger = 7,
        /// Left trigger, as a button.
        LeftTrigger2 = 8,
        /// Right shoulder.
        RightTrigger = 9,
        /// Right trigger, as a button.
        RightTrigger2 = 10,
        /// Select / Back / Share.
        Select = 11,
        /// Start / Menu / Options.
        Start = 12,
        /// The vendor's button (Xbox, PS).
        Mode = 13,
        /// Left stick pressed.
        LeftThumb = 14,
        /// Right stick pressed.
        RightThumb = 15,
        /// D-pad up.
        DPadUp = 16,
        /// D-pad down.
        DPadDown = 17,
        /// D-pad left.
        DPadLeft = 18,
        /// D-pad right.
        DPadRight = 19,
    }
);

named_codes!(
    /// A gamepad axis (gilrs' `Axis`).
    PadAxis, "pad axis", {
        /// Left stick, right positive.
        LeftStickX = 1,
        /// Left stick, up positive.
        LeftStickY = 2,
        /// Left analog trigger.
        LeftZ = 3,
        /// Right stick, right positive.
        RightStickX = 4,
        /// Right stick, up positive.
        RightStickY = 5,
        /// Right analog trigger.
        RightZ = 6,
        /// D-pad as an axis.
        DPadX = 7,
        /// D-pad as an axis.
        DPadY = 8,
    }
);

named_codes!(
    /// What kind of controller arrived, for the host to present the right one.
    PadKind, "pad kind", {
        /// Anything else with a standard layout.
        Generic = 1,
        /// Xbox-style.
        Xbox = 2,
        /// PlayStation-style.
        PlayStation = 3,
        /// Nintendo-style (face buttons swapped by label, not position).
        Nintendo = 4,
    }
);

impl PadButton {
    /// One of the four face buttons (South, East, North, West).
    pub fn is_face(self) -> bool {
        matches!(self, Self::South | Self::East | Self::North | Self::West)
    }
}

/// A gilrs-style axis value (`-1.0..=1.0`) on the wire.
pub fn axis_from_f32(v: f32) -> i16 {
    if v.is_nan() {
        return 0;
    }
    (v.clamp(-1.0, 1.0) * f32::from(AXIS_MAX)).round() as i16
}

/// A wire axis value as gilrs gives it.
pub fn axis_to_f32(v: i16) -> f32 {
    (f32::from(v) / f32::from(AXIS_MAX)).clamp(-1.0, 1.0)
}

pub(crate) fn check_slot(pad: u8) -> Result<u8, DecodeError> {
    if pad < MAX_PADS {
        Ok(pad)
    } else {
        Err(DecodeError::InvalidValue {
            field: "pad slot",
            value: pad.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_codes_are_distinct() {
        for b in PadButton::ALL {
            assert_eq!(PadButton::from_name(b.name()), Some(*b));
            assert_eq!(PadButton::from_u8(*b as u8), Ok(*b));
        }
        for a in PadAxis::ALL {
            assert_eq!(PadAxis::from_name(a.name()), Some(*a));
        }
        assert_eq!(PadButton::from_name("DPadUp"), Some(PadButton::DPadUp));
        assert_eq!(PadButton::from_name("dpadup"), None);
        assert!(PadButton::from_u8(0).is_err() && PadButton::from_u8(20).is_err());
        assert!(check_slot(15).is_ok() && check_slot(16).is_err());
    }

    #[test]
    fn axis_values_keep_their_range_and_sign() {
        assert_eq!(axis_from_f32(1.0), AXIS_MAX);
        assert_eq!(axis_from_f32(-1.0), -AXIS_MAX);
        assert_eq!(axis_from_f32(7.0), AXIS_MAX);
        assert_eq!(axis_from_f32(f32::NAN), 0);
        assert_eq!(axis_from_f32(0.0), 0);
        assert!((axis_to_f32(axis_from_f32(0.25)) - 0.25).abs() < 1e-4);
        assert_eq!(axis_to_f32(i16::MIN), -1.0);
    }
}
