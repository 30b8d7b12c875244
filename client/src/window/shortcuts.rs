//! The client's own key combinations: which chord is which action. A
//! kiosk obeys only its exit chord. Tested without a window.

use crate::config::{Chord, Kiosk, Shortcuts};

/// The client's own actions, each on a key combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shortcut {
    Quit,
    Fullscreen,
    Capture,
    Stats,
    Microphone,
    Presentation,
    Menu,
}

/// The modifiers held with a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Held {
    pub ctrl: bool,
    pub alt: bool,
    pub shift: bool,
    pub meta: bool,
}

/// What a key (by HID usage) with `held` modifiers means to the client:
/// `None` when it is the desktop's. In a kiosk only the exit chord is the
/// client's, and it quits.
pub(super) fn shortcut_for(
    keys: &Shortcuts,
    kiosk: Option<&Kiosk>,
    held: Held,
    usage: u16,
) -> Option<Shortcut> {
    let is = |c: &Chord| c.matches(held.ctrl, held.alt, held.shift, held.meta, usage);
    if let Some(k) = kiosk {
        return is(&k.exit).then_some(Shortcut::Quit);
    }
    [
        (&keys.quit, Shortcut::Quit),
        (&keys.fullscreen, Shortcut::Fullscreen),
        (&keys.capture, Shortcut::Capture),
        (&keys.stats, Shortcut::Stats),
        (&keys.microphone, Shortcut::Microphone),
        (&keys.presentation, Shortcut::Presentation),
        (&keys.menu, Shortcut::Menu),
    ]
    .into_iter()
    .find_map(|(c, s)| is(c).then_some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chords_map_to_actions_and_a_kiosk_knows_only_its_exit() {
        let keys = Shortcuts::default();
        let all = Held {
            ctrl: true,
            alt: true,
            shift: true,
            meta: false,
        };
        let usage = |name| nephele_protocol::hid::usage_from_name(name).unwrap();
        assert_eq!(
            shortcut_for(&keys, None, all, usage("KeyQ")),
            Some(Shortcut::Quit)
        );
        assert_eq!(
            shortcut_for(&keys, None, all, usage("KeyM")),
            Some(Shortcut::Microphone)
        );
        assert_eq!(
            shortcut_for(&keys, None, all, usage("KeyN")),
            Some(Shortcut::Menu)
        );
        // Without every modifier the key is the desktop's.
        let ctrl = Held {
            ctrl: true,
            ..Held::default()
        };
        assert_eq!(shortcut_for(&keys, None, ctrl, usage("KeyQ")), None);
        let kiosk = Kiosk::default();
        assert_eq!(shortcut_for(&keys, Some(&kiosk), all, usage("KeyQ")), None);
        assert_eq!(
            shortcut_for(&keys, Some(&kiosk), all, usage("End")),
            Some(Shortcut::Quit)
        );
    }
}
