//! Keys by physical position: USB HID keyboard usages (page 7), their W3C
//! `KeyboardEvent.code` names (the names winit's `KeyCode` uses), and the US
//! layout, which the input script and the demo desktop use to turn text into
//! key positions and back.
//!
//! Hand-written because no maintained crate maps between all three; the
//! table follows the USB HID Usage Tables (section 10) and the W3C UI Events
//! KeyboardEvent code values.

/// Left Shift's usage.
pub const LEFT_SHIFT: u16 = 0xE1;
/// Left Control.
pub const LEFT_CTRL: u16 = 0xE0;
/// Right Control.
pub const RIGHT_CTRL: u16 = 0xE4;
/// The C key.
pub const KEY_C: u16 = 0x06;
/// The V key.
pub const KEY_V: u16 = 0x19;
/// Right Shift's usage.
pub const RIGHT_SHIFT: u16 = 0xE5;
/// Enter's usage.
pub const ENTER: u16 = 0x28;
/// Backspace's usage.
pub const BACKSPACE: u16 = 0x2A;

/// `(W3C code name, HID usage)` for every key Nephele carries.
pub const KEYS: &[(&str, u16)] = &[
    ("KeyA", 0x04),
    ("KeyB", 0x05),
    ("KeyC", 0x06),
    ("KeyD", 0x07),
    ("KeyE", 0x08),
    ("KeyF", 0x09),
    ("KeyG", 0x0A),
    ("KeyH", 0x0B),
    ("KeyI", 0x0C),
    ("KeyJ", 0x0D),
    ("KeyK", 0x0E),
    ("KeyL", 0x0F),
    ("KeyM", 0x10),
    ("KeyN", 0x11),
    ("KeyO", 0x12),
    ("KeyP", 0x13),
    ("KeyQ", 0x14),
    ("KeyR", 0x15),
    ("KeyS", 0x16),
    ("KeyT", 0x17),
    ("KeyU", 0x18),
    ("KeyV", 0x19),
    ("KeyW", 0x1A),
    ("KeyX", 0x1B),
    ("KeyY", 0x1C),
    ("KeyZ", 0x1D),
    ("Digit1", 0x1E),
    ("Digit2", 0x1F),
    ("Digit3", 0x20),
    ("Digit4", 0x21),
    ("Digit5", 0x22),
    ("Digit6", 0x23),
    ("Digit7", 0x24),
    ("Digit8", 0x25),
    ("Digit9", 0x26),
    ("Digit0", 0x27),
    ("Enter", 0x28),
    ("Escape", 0x29),
    ("Backspace", 0x2A),
    ("Tab", 0x2B),
    ("Space", 0x2C),
    ("Minus", 0x2D),
    ("Equal", 0x2E),
    ("BracketLeft", 0x2F),
    ("BracketRight", 0x30),
    ("Backslash", 0x31),
    ("IntlHash", 0x32),
    ("Semicolon", 0x33),
    ("Quote", 0x34),
    ("Backquote", 0x35),
    ("Comma", 0x36),
    ("Period", 0x37),
    ("Slash", 0x38),
    ("CapsLock", 0x39),
    ("F1", 0x3A),
    ("F2", 0x3B),
    ("F3", 0x3C),
    ("F4", 0x3D),
    ("F5", 0x3E),
    ("F6", 0x3F),
    ("F7", 0x40),
    ("F8", 0x41),
    ("F9", 0x42),
    ("F10", 0x43),
    ("F11", 0x44),
    ("F12", 0x45),
    ("PrintScreen", 0x46),
    ("ScrollLock", 0x47),
    ("Pause", 0x48),
    ("Insert", 0x49),
    ("Home", 0x4A),
    ("PageUp", 0x4B),
    ("Delete", 0x4C),
    ("End", 0x4D),
    ("PageDown", 0x4E),
    ("ArrowRight", 0x4F),
    ("ArrowLeft", 0x50),
    ("ArrowDown", 0x51),
    ("ArrowUp", 0x52),
    ("NumLock", 0x53),
    ("NumpadDivide", 0x54),
    ("NumpadMultiply", 0x55),
    ("NumpadSubtract", 0x56),
    ("NumpadAdd", 0x57),
    ("NumpadEnter", 0x58),
    ("Numpad1", 0x59),
    ("Numpad2", 0x5A),
    ("Numpad3", 0x5B),
    ("Numpad4", 0x5C),
    ("Numpad5", 0x5D),
    ("Numpad6", 0x5E),
    ("Numpad7", 0x5F),
    ("Numpad8", 0x60),
    ("Numpad9", 0x61),
    ("Numpad0", 0x62),
    ("NumpadDecimal", 0x63),
    ("IntlBackslash", 0x64),
    ("ContextMenu", 0x65),
    ("Power", 0x66),
    ("NumpadEqual", 0x67),
    ("F13", 0x68),
    ("F14", 0x69),
    ("F15", 0x6A),
    ("F16", 0x6B),
    ("F17", 0x6C),
    ("F18", 0x6D),
    ("F19", 0x6E),
    ("F20", 0x6F),
    ("F21", 0x70),
    ("F22", 0x71),
    ("F23", 0x72),
    ("F24", 0x73),
    ("Help", 0x75),
    ("Select", 0x77),
    ("Again", 0x79),
    ("Undo", 0x7A),
    ("Cut", 0x7B),
    ("Copy", 0x7C),
    ("Paste", 0x7D),
    ("Find", 0x7E),
    ("AudioVolumeMute", 0x7F),
    ("AudioVolumeUp", 0x80),
    ("AudioVolumeDown", 0x81),
    ("NumpadComma", 0x85),
    ("IntlRo", 0x87),
    ("KanaMode", 0x88),
    ("IntlYen", 0x89),
    ("Convert", 0x8A),
    ("NonConvert", 0x8B),
    ("Lang1", 0x90),
    ("Lang2", 0x91),
    ("ControlLeft", 0xE0),
    ("ShiftLeft", 0xE1),
    ("AltLeft", 0xE2),
    ("SuperLeft", 0xE3),
    ("ControlRight", 0xE4),
    ("ShiftRight", 0xE5),
    ("AltRight", 0xE6),
    ("SuperRight", 0xE7),
];

/// The HID usage of a W3C code name (`"KeyA"`, `"Enter"`, …). `MetaLeft` and
/// `MetaRight`, the W3C spellings of winit's `SuperLeft`/`SuperRight`, are
/// accepted too.
pub fn usage_from_name(name: &str) -> Option<u16> {
    let name = match name {
        "MetaLeft" => "SuperLeft",
        "MetaRight" => "SuperRight",
        n => n,
    };
    KEYS.iter().find(|(n, _)| *n == name).map(|&(_, u)| u)
}

/// The W3C code name of a HID usage.
pub fn name_from_usage(usage: u16) -> Option<&'static str> {
    KEYS.iter().find(|&&(_, u)| u == usage).map(|&(n, _)| n)
}

/// US layout: unshifted and shifted characters of the printable keys.
const US_PRINTABLE: &[(u16, char, char)] = &[
    (0x1E, '1', '!'),
    (0x1F, '2', '@'),
    (0x20, '3', '#'),
    (0x21, '4', '$'),
    (0x22, '5', '%'),
    (0x23, '6', '^'),
    (0x24, '7', '&'),
    (0x25, '8', '*'),
    (0x26, '9', '('),
    (0x27, '0', ')'),
    (0x2C, ' ', ' '),
    (0x2D, '-', '_'),
    (0x2E, '=', '+'),
    (0x2F, '[', '{'),
    (0x30, ']', '}'),
    (0x31, '\\', '|'),
    (0x33, ';', ':'),
    (0x34, '\'', '"'),
    (0x35, '`', '~'),
    (0x36, ',', '<'),
    (0x37, '.', '>'),
    (0x38, '/', '?'),
    (0x2B, '\t', '\t'),
    (0x28, '\n', '\n'),
];

/// The key (and whether Shift is needed) that types `c` on a US keyboard.
pub fn us_key_for_char(c: char) -> Option<(u16, bool)> {
    if c.is_ascii_lowercase() {
        return Some((0x04 + (c as u16 - 'a' as u16), false));
    }
    if c.is_ascii_uppercase() {
        return Some((0x04 + (c as u16 - 'A' as u16), true));
    }
    US_PRINTABLE.iter().find_map(|&(u, lo, hi)| {
        if c == lo {
            Some((u, false))
        } else if c == hi {
            Some((u, true))
        } else {
            None
        }
    })
}

/// The character a key types on a US keyboard, given the Shift state.
pub fn us_char_for_key(usage: u16, shift: bool) -> Option<char> {
    if (0x04..=0x1D).contains(&usage) {
        let c = (b'a' + (usage - 0x04) as u8) as char;
        return Some(if shift { c.to_ascii_uppercase() } else { c });
    }
    US_PRINTABLE
        .iter()
        .find(|&&(u, _, _)| u == usage)
        .map(|&(_, lo, hi)| if shift { hi } else { lo })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_usages_are_one_to_one() {
        for &(name, usage) in KEYS {
            assert_eq!(usage_from_name(name), Some(usage), "{name}");
            assert_eq!(name_from_usage(usage), Some(name), "{usage:#x}");
        }
        assert_eq!(usage_from_name("MetaLeft"), Some(0xE3));
        assert_eq!(usage_from_name("NoSuchKey"), None);
    }

    #[test]
    fn us_layout_round_trips_printable_ascii() {
        for c in (' '..='~').chain(['\n', '\t']) {
            let (usage, shift) = us_key_for_char(c).unwrap_or_else(|| panic!("no key for {c:?}"));
            assert_eq!(us_char_for_key(usage, shift), Some(c), "{c:?}");
        }
        assert_eq!(us_key_for_char('é'), None);
    }
}
