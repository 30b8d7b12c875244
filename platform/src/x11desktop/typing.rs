//! Typing characters into an X display whatever its keyboard layout: a
//! character the layout has is typed with its key (and Shift when it sits
//! on the shifted level); one it lacks is given a spare keycode for the
//! time being (XTEST and a keyboard-mapping change, as xdotool does), both
//! levels, so a Shift the user holds does not change it. Spare keycodes are
//! kept mapped until reused (a client may look the key up after the key
//! event arrives) and cleared when the typist goes.

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _, Keycode, Keysym};
use x11rb::protocol::xtest::ConnectionExt as _;

use super::imp::X11Error;

/// Left Shift's X keycode (evdev 42 + 8), the level-2 modifier pressed
/// around a character on a key's shifted level.
const SHIFT: Keycode = 50;

/// Spare keycodes a typist keeps mapped at once, the least recently used
/// given up first.
const SPARES: usize = 8;

/// What a typist remembers between characters.
#[derive(Debug, Default)]
pub(super) struct Typist {
    /// Spare keycodes it mapped, and to what, most recent last.
    mapped: Vec<(Keycode, Keysym)>,
}

/// The keysym X gives `ch`: Latin-1 characters are their own code, every
/// other one 0x0100_0000 plus its code point (X11 keysymdef.h).
pub(super) fn keysym(ch: char) -> Keysym {
    let c = u32::from(ch);
    if (0x20..=0x7e).contains(&c) || (0xa0..=0xff).contains(&c) {
        c
    } else {
        0x0100_0000 | c
    }
}

impl Typist {
    /// Types `ch` on `conn`'s display; `shift_held` when the session holds
    /// a Shift key down there now.
    pub fn type_char(
        &mut self,
        conn: &impl Connection,
        ch: char,
        shift_held: bool,
    ) -> Result<(), X11Error> {
        let ks = keysym(ch);
        let setup = conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let map = conn.get_keyboard_mapping(min, max - min + 1)?.reply()?;
        let per = usize::from(map.keysyms_per_keycode).max(1);
        let level = |code: Keycode, col: usize| {
            map.keysyms
                .get(usize::from(code - min) * per + col)
                .copied()
                .unwrap_or(0)
        };
        let on_layout = (min..=max).find_map(|code| {
            (0..per.min(2))
                .find(|&col| level(code, col) == ks)
                .map(|col| (code, col))
        });
        let code = match on_layout {
            Some((code, 0)) if !shift_held => code,
            Some((code, 1)) if shift_held => code,
            Some((code, _)) if !shift_held => {
                // The shifted level, with Shift around it.
                fake(conn, xproto::KEY_PRESS_EVENT, SHIFT)?;
                tap(conn, code)?;
                return fake(conn, xproto::KEY_RELEASE_EVENT, SHIFT);
            }
            _ => self.spare(conn, ks, (min, max), |code| {
                (0..per).all(|col| level(code, col) == 0)
            })?,
        };
        tap(conn, code)
    }

    /// A spare keycode mapped to `ks` on both levels: one mapped to it
    /// already, else an unmapped one (`free`), else the least recently used.
    fn spare(
        &mut self,
        conn: &impl Connection,
        ks: Keysym,
        (min, max): (Keycode, Keycode),
        free: impl Fn(Keycode) -> bool,
    ) -> Result<Keycode, X11Error> {
        if let Some(i) = self.mapped.iter().position(|&(_, k)| k == ks) {
            let entry = self.mapped.remove(i);
            self.mapped.push(entry);
            return Ok(entry.0);
        }
        let code = (min..=max)
            .rev()
            .find(|&c| free(c) && !self.mapped.iter().any(|&(m, _)| m == c));
        let code = match code {
            Some(c) if self.mapped.len() < SPARES => c,
            _ if !self.mapped.is_empty() => self.mapped.remove(0).0,
            _ => return Err(X11Error::Typing("no spare keycode to type with".into())),
        };
        conn.change_keyboard_mapping(1, code, 2, &[ks, ks])?
            .check()?;
        self.mapped.push((code, ks));
        Ok(code)
    }

    /// Clears the spare keycodes it mapped.
    pub fn unmap(&mut self, conn: &impl Connection) -> Result<(), X11Error> {
        for (code, _) in std::mem::take(&mut self.mapped) {
            conn.change_keyboard_mapping(1, code, 2, &[0, 0])?;
        }
        conn.flush()?;
        Ok(())
    }
}

/// Presses and releases `code`.
fn tap(conn: &impl Connection, code: Keycode) -> Result<(), X11Error> {
    fake(conn, xproto::KEY_PRESS_EVENT, code)?;
    fake(conn, xproto::KEY_RELEASE_EVENT, code)
}

fn fake(conn: &impl Connection, kind: u8, code: Keycode) -> Result<(), X11Error> {
    conn.xtest_fake_input(kind, code, x11rb::CURRENT_TIME, x11rb::NONE, 0, 0, 0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keysyms_are_latin1_codes_or_unicode_plus_the_offset() {
        assert_eq!(keysym('a'), 0x61);
        assert_eq!(keysym('ä'), 0xe4);
        assert_eq!(keysym('é'), 0xe9);
        assert_eq!(keysym('€'), 0x0100_20ac);
        assert_eq!(keysym('ő'), 0x0100_0151);
    }
}
