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

/// The physical keys the window has seen go down. winit reports a key
/// held when focus arrives as a (synthetic) press; when X delivers that
/// key's own press too, which happens when the press lands while focus is
/// arriving, the host would type the key twice. A second press of a key
/// already down that is not an auto-repeat is such a duplicate.
#[derive(Debug, Default)]
pub(super) struct KeysDown([u64; 4]);

impl KeysDown {
    /// Notes a key event; `false` when it is a duplicate press to drop.
    /// Usages past the keyboard page's 256 are not tracked.
    pub(super) fn fresh(&mut self, usage: u16, pressed: bool, repeat: bool) -> bool {
        let Some(word) = self.0.get_mut(usize::from(usage / 64)) else {
            return true;
        };
        let bit = 1u64 << (usage % 64);
        if !pressed {
            *word &= !bit;
            return true;
        }
        let already = *word & bit != 0;
        *word |= bit;
        repeat || !already
    }

    /// Forgets every key (focus went elsewhere).
    pub(super) fn clear(&mut self) {
        self.0 = [0; 4];
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

    #[test]
    fn a_second_press_of_a_key_already_down_is_dropped_unless_it_repeats() {
        let mut k = KeysDown::default();
        let h = 0x0b;
        // Focus arrives with H held (synthetic press), then X's own press.
        assert!(k.fresh(h, true, false));
        assert!(!k.fresh(h, true, false), "the duplicate press is dropped");
        // Holding it auto-repeats: those go through.
        assert!(k.fresh(h, true, true));
        assert!(k.fresh(h, false, false));
        // Up again, the next press is a fresh one.
        assert!(k.fresh(h, true, false));
        // Other keys are apart; the modifiers' high usages too.
        assert!(k.fresh(0x04, true, false));
        assert!(k.fresh(0xe1, true, false));
        assert!(!k.fresh(0xe1, true, false));
        // Usages past the keyboard page are not tracked.
        assert!(k.fresh(0x1234, true, false));
        assert!(k.fresh(0x1234, true, false));
        // Focus going elsewhere forgets all of them.
        k.clear();
        assert!(k.fresh(h, true, false));
        assert!(k.fresh(0xe1, true, false));
    }
}
