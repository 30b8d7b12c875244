//! Gamepads as the protocol carries them: up to [`MAX_PADS`] slots, their
//! buttons and axes named as gilrs names them (so scripts, recordings and
//! the client's gilrs source share one spelling), and the controller's kind.
//!
//! Buttons travel as edges and axes as values on the reliable input
//! channel; the sender coalesces an axis's values that have not left yet
//! (latest wins), never across a button edge, so no press or release is
//! lost and the host always ends on the pad's latest state.

/// Gamepad slots: a pad keeps its slot, in arrival order, until it leaves.
pub const MAX_PADS: u8 = 16;

/// Full deflection of an axis on the wire (gilrs' 1.0).
pub const AXIS_MAX: i16 = i16::MAX;

wire_enum! {
    /// A gamepad button, by position (gilrs' `Button`).
    pub enum PadButton {
        /// Bottom face button (Xbox A, PlayStation cross).
        South = 1 => "South",
        /// Right face button (Xbox B, PlayStation circle).
        East = 2 => "East",
        /// Top face button (Xbox Y, PlayStation triangle).
        North = 3 => "North",
        /// Left face button (Xbox X, PlayStation square).
        West = 4 => "West",
        /// Sixth face button of some pads.
        C = 5 => "C",
        /// Seventh face button of some pads.
        Z = 6 => "Z",
        /// Left shoulder.
        LeftTrigger = 7 => "LeftTrigger",
        /// Left trigger, as a button.
        LeftTrigger2 = 8 => "LeftTrigger2",
        /// Right shoulder.
        RightTrigger = 9 => "RightTrigger",
        /// Right trigger, as a button.
        RightTrigger2 = 10 => "RightTrigger2",
        /// Select / Back / Share.
        Select = 11 => "Select",
        /// Start / Menu / Options.
        Start = 12 => "Start",
        /// The vendor's button (Xbox, PS).
        Mode = 13 => "Mode",
        /// Left stick pressed.
        LeftThumb = 14 => "LeftThumb",
        /// Right stick pressed.
        RightThumb = 15 => "RightThumb",
        /// D-pad up.
        DPadUp = 16 => "DPadUp",
        /// D-pad down.
        DPadDown = 17 => "DPadDown",
        /// D-pad left.
        DPadLeft = 18 => "DPadLeft",
        /// D-pad right.
        DPadRight = 19 => "DPadRight",
    }
}

wire_enum! {
    /// A gamepad axis (gilrs' `Axis`).
    pub enum PadAxis {
        /// Left stick, right positive.
        LeftStickX = 1 => "LeftStickX",
        /// Left stick, up positive.
        LeftStickY = 2 => "LeftStickY",
        /// Left analog trigger.
        LeftZ = 3 => "LeftZ",
        /// Right stick, right positive.
        RightStickX = 4 => "RightStickX",
        /// Right stick, up positive.
        RightStickY = 5 => "RightStickY",
        /// Right analog trigger.
        RightZ = 6 => "RightZ",
        /// D-pad as an axis.
        DPadX = 7 => "DPadX",
        /// D-pad as an axis.
        DPadY = 8 => "DPadY",
    }
}

wire_enum! {
    /// What kind of controller arrived, for the host to present the right one.
    pub enum PadKind {
        /// Anything else with a standard layout.
        Generic = 1 => "Generic",
        /// Xbox-style.
        Xbox = 2 => "Xbox",
        /// PlayStation-style.
        PlayStation = 3 => "PlayStation",
        /// Nintendo-style (face buttons swapped by label, not position).
        Nintendo = 4 => "Nintendo",
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_codes_are_distinct() {
        for b in PadButton::ALL {
            assert_eq!(PadButton::from_name(b.name()), Some(*b));
            assert_eq!(PadButton::from_u8(*b as u8), Some(*b));
        }
        for a in PadAxis::ALL {
            assert_eq!(PadAxis::from_name(a.name()), Some(*a));
        }
        assert_eq!(PadButton::from_name("DPadUp"), Some(PadButton::DPadUp));
        assert_eq!(PadButton::from_name("dpadup"), None);
        assert!(PadButton::from_u8(0).is_none() && PadButton::from_u8(20).is_none());
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
