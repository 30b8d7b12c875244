//! Physical keys from winit to USB HID usages.
//!
//! winit reports keys by physical position (`KeyCode`), named after the W3C
//! `KeyboardEvent.code` values; the protocol carries HID usages so the remote
//! layout decides the character. The mapping goes through the code names in
//! `nephele_protocol::hid`, formatted into a stack buffer so a key press does
//! not allocate.

use std::io::Write;

use nephele_protocol::hid;
use winit::keyboard::{KeyCode, PhysicalKey};

/// The HID usage of a physical key, if the protocol carries it.
pub fn hid_usage(key: PhysicalKey) -> Option<u16> {
    let PhysicalKey::Code(code) = key else {
        return None;
    };
    hid_usage_of_code(code)
}

/// The HID usage of a winit key code.
pub fn hid_usage_of_code(code: KeyCode) -> Option<u16> {
    // KeyCode's Debug output is its variant name, which is the W3C code name.
    let mut buf = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{code:?}").ok()?;
    let len = cursor.position() as usize;
    let name = std::str::from_utf8(&buf[..len]).ok()?;
    hid::usage_from_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_keys_map_to_their_usages() {
        assert_eq!(hid_usage_of_code(KeyCode::KeyA), Some(0x04));
        assert_eq!(hid_usage_of_code(KeyCode::Enter), Some(0x28));
        assert_eq!(hid_usage_of_code(KeyCode::ShiftLeft), Some(0xE1));
        assert_eq!(hid_usage_of_code(KeyCode::SuperLeft), Some(0xE3));
        assert_eq!(hid_usage_of_code(KeyCode::ArrowUp), Some(0x52));
        assert_eq!(hid_usage_of_code(KeyCode::Numpad7), Some(0x5F));
        assert_eq!(hid_usage_of_code(KeyCode::F12), Some(0x45));
        assert_eq!(hid_usage(PhysicalKey::Code(KeyCode::Space)), Some(0x2C));
    }

    #[test]
    fn keys_across_the_keyboard_map() {
        // One key from each region of the keyboard, so a variant renamed in
        // winit (its Debug name is what the mapping reads) shows up here.
        let known = [
            KeyCode::KeyZ,
            KeyCode::Digit0,
            KeyCode::Backquote,
            KeyCode::IntlBackslash,
            KeyCode::ControlRight,
            KeyCode::AltRight,
            KeyCode::PageDown,
            KeyCode::NumpadEnter,
            KeyCode::ContextMenu,
            KeyCode::CapsLock,
        ];
        for k in known {
            assert!(hid_usage_of_code(k).is_some(), "{k:?}");
        }
    }
}
