//! What a key press sends: the physical key (games, shortcuts, keys that
//! type nothing), or, when typing as text, the characters the local layout
//! or a dead key composed, which the host produces whatever its own layout.

use nephele_protocol::wire::InputEvent;
use winit::event::{ElementState, KeyEvent};
use winit::keyboard::{Key, ModifiersState};

use crate::config::Typing;

/// What to do with one key event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Send the key by its position.
    Physical,
    /// Send the text it typed instead.
    Text,
    /// Send nothing (a dead key: the next key brings the composed text).
    Swallow,
}

/// The rule, apart from winit's types: `text` is what the key typed on
/// the local layout, `dead` whether it is a dead key, `chord` whether
/// Ctrl, Alt or the logo key is held (a shortcut, which goes by position).
fn decide(mode: Typing, pressed: bool, text: Option<&str>, dead: bool, chord: bool) -> Decision {
    if mode == Typing::Keys || !pressed || chord {
        return Decision::Physical;
    }
    if dead {
        return Decision::Swallow;
    }
    match text {
        Some(t) if !t.is_empty() && t.chars().all(|c| !c.is_control()) => Decision::Text,
        _ => Decision::Physical,
    }
}

/// Sends what the key event `ev` stands for through `send`. Releases
/// always go as physical keys: one whose press went as text is not held,
/// and the window's record of held keys drops it.
pub(super) fn key_event(
    mode: Typing,
    ev: &KeyEvent,
    mods: ModifiersState,
    usage: Option<u16>,
    mut send: impl FnMut(InputEvent),
) {
    let pressed = ev.state == ElementState::Pressed;
    let chord = mods.control_key() || mods.alt_key() || mods.super_key();
    let dead = matches!(ev.logical_key, Key::Dead(_));
    match decide(mode, pressed, ev.text.as_deref(), dead, chord) {
        Decision::Physical => {
            if let Some(usage) = usage {
                send(InputEvent::Key {
                    usage,
                    down: pressed,
                });
            }
        }
        Decision::Text => text(ev.text.as_deref().unwrap_or_default(), send),
        Decision::Swallow => {}
    }
}

/// Sends each printable character of `s` (an input method's commit, or a
/// key's text) as typed text.
pub(super) fn text(s: &str, mut send: impl FnMut(InputEvent)) {
    for ch in s.chars().filter(|c| !c.is_control()) {
        send(InputEvent::Text { ch });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_mode_sends_characters_and_keeps_keys_for_the_rest() {
        let t = Typing::Text;
        assert_eq!(decide(t, true, Some("ä"), false, false), Decision::Text);
        assert_eq!(decide(t, true, Some("A"), false, false), Decision::Text);
        // A dead key waits for the key that completes it.
        assert_eq!(decide(t, true, None, true, false), Decision::Swallow);
        // Enter, Backspace, Tab, arrows, function keys: by position.
        for text in [Some("\r"), Some("\u{8}"), Some("\t"), None] {
            assert_eq!(decide(t, true, text, false, false), Decision::Physical);
        }
        // Shortcuts and every release: by position.
        assert_eq!(decide(t, true, Some("c"), false, true), Decision::Physical);
        assert_eq!(
            decide(t, false, Some("ä"), false, false),
            Decision::Physical
        );
        // Physical keys throughout (games).
        let k = Typing::Keys;
        assert_eq!(decide(k, true, Some("ä"), false, false), Decision::Physical);
        assert_eq!(decide(k, true, None, true, false), Decision::Physical);
    }

    #[test]
    fn committed_text_goes_character_by_character_without_controls() {
        let mut sent = Vec::new();
        text("né\n€", |e| sent.push(e));
        let chars: Vec<char> = sent
            .iter()
            .map(|e| match e {
                InputEvent::Text { ch } => *ch,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(chars, ['n', 'é', '€']);
    }
}
