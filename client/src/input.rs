//! Input from the user or a script, as protocol events.
//!
//! * [`Script`] parses `--input-script` files: one timed event per line.
//! * [`HeldInput`] remembers which keys and buttons are down, so that focus
//!   loss and disconnects release every one of them (no stuck keys).

use std::collections::BTreeSet;
use std::time::Duration;

use nephele_protocol::hid;
use nephele_protocol::pad::{MAX_PADS, PadAxis, PadButton, PadKind, axis_from_f32};
use nephele_protocol::wire::{InputEvent, MouseButton};

/// A parse error with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input script line {line}: {reason}")]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A timed list of input events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// `(offset from session start, event)`, sorted by offset (stable).
    pub events: Vec<(Duration, InputEvent)>,
}

impl Script {
    /// Parses the script format:
    ///
    /// ```text
    /// # comment
    /// 500 type hello world      press and release each character's key (US layout)
    /// 900 key Enter down        a key by W3C code name (KeyA, Enter, ShiftLeft, …)
    /// 950 key Enter up
    /// 1000 move 640 360         absolute pointer position in stream coordinates
    /// 1100 button left down     left | right | middle | back | forward
    /// 1150 button left up
    /// 1200 wheel 0 -1           wheel notches (fractions allowed), x then y
    /// 1300 pad 0 connect        gamepad slot 0..15 arrives [Generic|Xbox|PlayStation|Nintendo] [rumble]
    /// 1400 pad 0 button South down   gilrs button names (South, DPadUp, LeftTrigger2, …)
    /// 1500 pad 0 axis LeftStickX 0.5 gilrs axis names, -1.0 to 1.0
    /// 1600 pad 0 disconnect
    /// ```
    pub fn parse(text: &str) -> Result<Self, ScriptError> {
        let mut events = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason: String| ScriptError { line, reason };
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (ms, rest) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            let ms: u64 = ms
                .parse()
                .map_err(|_| err(format!("`{ms}` is not a time in milliseconds")))?;
            let at = Duration::from_millis(ms);
            let rest = rest.trim_start();
            let (verb, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match verb {
                "type" => {
                    // Everything after one separating space is text, spaces included.
                    for c in args.chars() {
                        let (usage, shift) = hid::us_key_for_char(c)
                            .ok_or_else(|| err(format!("cannot type {c:?} on a US keyboard")))?;
                        if shift {
                            events.push((
                                at,
                                InputEvent::Key {
                                    usage: hid::LEFT_SHIFT,
                                    down: true,
                                },
                            ));
                        }
                        events.push((at, InputEvent::Key { usage, down: true }));
                        events.push((at, InputEvent::Key { usage, down: false }));
                        if shift {
                            events.push((
                                at,
                                InputEvent::Key {
                                    usage: hid::LEFT_SHIFT,
                                    down: false,
                                },
                            ));
                        }
                    }
                }
                "key" => {
                    let mut it = args.split_whitespace();
                    let name = it
                        .next()
                        .ok_or_else(|| err("`key` needs a key name".into()))?;
                    let usage = hid::usage_from_name(name).ok_or_else(|| err(format!("unknown key `{name}` (use W3C code names such as KeyA, Enter, ShiftLeft)")))?;
                    let down = parse_action(it.next(), &err)?;
                    no_more(it, &err)?;
                    events.push((at, InputEvent::Key { usage, down }));
                }
                "move" => {
                    let mut it = args.split_whitespace();
                    let x = parse_num::<u16>(it.next(), "x", &err)?;
                    let y = parse_num::<u16>(it.next(), "y", &err)?;
                    no_more(it, &err)?;
                    events.push((at, InputEvent::Move { x, y }));
                }
                "move-by" => {
                    let mut it = args.split_whitespace();
                    let dx = parse_num::<i16>(it.next(), "dx", &err)?;
                    let dy = parse_num::<i16>(it.next(), "dy", &err)?;
                    no_more(it, &err)?;
                    events.push((at, InputEvent::MoveBy { dx, dy }));
                }
                "button" => {
                    let mut it = args.split_whitespace();
                    let name = it
                        .next()
                        .ok_or_else(|| err("`button` needs left, right or middle".into()))?;
                    let button = MouseButton::from_name(name)
                        .ok_or_else(|| err(format!("unknown button `{name}`")))?;
                    let down = parse_action(it.next(), &err)?;
                    no_more(it, &err)?;
                    events.push((at, InputEvent::Button { button, down }));
                }
                "wheel" => {
                    let mut it = args.split_whitespace();
                    let dx = parse_num::<f64>(it.next(), "dx", &err)?;
                    let dy = parse_num::<f64>(it.next(), "dy", &err)?;
                    no_more(it, &err)?;
                    let notch = |v: f64| {
                        (v * 120.0)
                            .round()
                            .clamp(f64::from(i16::MIN), f64::from(i16::MAX))
                            as i16
                    };
                    events.push((
                        at,
                        InputEvent::Wheel {
                            dx: notch(dx),
                            dy: notch(dy),
                        },
                    ));
                }
                "pad" => events.push((at, parse_pad(args, &err)?)),
                "" => return Err(err("missing event after the time".into())),
                other => {
                    return Err(err(format!(
                        "unknown event `{other}` (expected type, key, move, move-by, button, wheel or pad)"
                    )));
                }
            }
        }
        events.sort_by_key(|(t, _)| *t);
        Ok(Self { events })
    }
}

/// `N connect [KIND] [rumble]`, `N disconnect`, `N button NAME down|up`,
/// `N axis NAME VALUE`.
fn parse_pad(args: &str, err: &dyn Fn(String) -> ScriptError) -> Result<InputEvent, ScriptError> {
    let mut it = args.split_whitespace();
    let pad = parse_num::<u8>(it.next(), "pad slot", err)?;
    if pad >= MAX_PADS {
        return Err(err(format!("pad slot {pad} is not 0 to {}", MAX_PADS - 1)));
    }
    let ev = match it.next() {
        Some("connect") => {
            let (mut kind, mut rumble) = (PadKind::Generic, false);
            for word in it.by_ref() {
                match (word, PadKind::from_name(word)) {
                    ("rumble", _) => rumble = true,
                    (_, Some(k)) => kind = k,
                    _ => {
                        return Err(err(format!(
                            "unknown pad type `{word}` (Generic, Xbox, PlayStation, Nintendo)"
                        )));
                    }
                }
            }
            InputEvent::PadConnect { pad, kind, rumble }
        }
        Some("disconnect") => InputEvent::PadDisconnect { pad },
        Some("button") => {
            let name = it.next().unwrap_or_default();
            let button = PadButton::from_name(name).ok_or_else(|| {
                err(format!(
                    "unknown pad button `{name}` (gilrs names: South, East, DPadUp, LeftTrigger2, …)"
                ))
            })?;
            InputEvent::PadButton {
                pad,
                button,
                down: parse_action(it.next(), err)?,
            }
        }
        Some("axis") => {
            let name = it.next().unwrap_or_default();
            let axis = PadAxis::from_name(name).ok_or_else(|| {
                err(format!(
                    "unknown pad axis `{name}` (gilrs names: LeftStickX, RightZ, …)"
                ))
            })?;
            let v = parse_num::<f32>(it.next(), "axis value", err)?;
            if !(-1.0..=1.0).contains(&v) {
                return Err(err(format!("axis value {v} is not between -1 and 1")));
            }
            InputEvent::PadAxis {
                pad,
                axis,
                value: axis_from_f32(v),
            }
        }
        other => {
            return Err(err(format!(
                "expected connect, disconnect, button or axis after the pad slot, found `{}`",
                other.unwrap_or_default()
            )));
        }
    };
    no_more(it, err)?;
    Ok(ev)
}

fn parse_action(s: Option<&str>, err: &dyn Fn(String) -> ScriptError) -> Result<bool, ScriptError> {
    match s {
        Some("down") => Ok(true),
        Some("up") => Ok(false),
        Some(o) => Err(err(format!("expected down or up, found `{o}`"))),
        None => Err(err("expected down or up".into())),
    }
}

fn parse_num<T: std::str::FromStr>(
    s: Option<&str>,
    what: &str,
    err: &dyn Fn(String) -> ScriptError,
) -> Result<T, ScriptError> {
    let s = s.ok_or_else(|| err(format!("missing {what}")))?;
    s.parse()
        .map_err(|_| err(format!("`{s}` is not a valid {what}")))
}

fn no_more<'a>(
    mut it: impl Iterator<Item = &'a str>,
    err: &dyn Fn(String) -> ScriptError,
) -> Result<(), ScriptError> {
    match it.next() {
        Some(extra) => Err(err(format!("unexpected `{extra}`"))),
        None => Ok(()),
    }
}

/// Keys and buttons currently held down.
#[derive(Debug, Default, Clone)]
pub struct HeldInput {
    keys: BTreeSet<u16>,
    buttons: BTreeSet<u8>,
}

impl HeldInput {
    /// Notes an event on its way out; returns `false` for a release of
    /// something not held (a stray up, e.g. for a key pressed before the
    /// window had focus), which callers drop.
    pub fn track(&mut self, ev: &InputEvent) -> bool {
        match *ev {
            InputEvent::Key { usage, down: true } => {
                self.keys.insert(usage);
                true
            }
            InputEvent::Key { usage, down: false } => self.keys.remove(&usage),
            InputEvent::Button { button, down: true } => {
                self.buttons.insert(button as u8);
                true
            }
            InputEvent::Button {
                button,
                down: false,
            } => self.buttons.remove(&(button as u8)),
            _ => true,
        }
    }

    /// Release events for everything held, and forgets it.
    pub fn release_all(&mut self) -> Vec<InputEvent> {
        let mut out: Vec<InputEvent> = std::mem::take(&mut self.keys)
            .into_iter()
            .map(|usage| InputEvent::Key { usage, down: false })
            .collect();
        for b in std::mem::take(&mut self.buttons) {
            if let Some(button) = [
                MouseButton::Left,
                MouseButton::Right,
                MouseButton::Middle,
                MouseButton::Back,
                MouseButton::Forward,
            ]
            .into_iter()
            .find(|m| *m as u8 == b)
            {
                out.push(InputEvent::Button {
                    button,
                    down: false,
                });
            }
        }
        out
    }

    /// Whether anything is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.buttons.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_verb() {
        let s = Script::parse(
            "# hello\n\n100 type Hi\n200 key Enter down\n210 key Enter up\n50 move 10 20\n300 button left down\n310 button left up\n400 wheel 0 -1.5\n",
        )
        .unwrap();
        let k = |usage, down| InputEvent::Key { usage, down };
        assert_eq!(
            s.events,
            vec![
                (Duration::from_millis(50), InputEvent::Move { x: 10, y: 20 }),
                (Duration::from_millis(100), k(hid::LEFT_SHIFT, true)),
                (Duration::from_millis(100), k(0x0B, true)),
                (Duration::from_millis(100), k(0x0B, false)),
                (Duration::from_millis(100), k(hid::LEFT_SHIFT, false)),
                (Duration::from_millis(100), k(0x0C, true)),
                (Duration::from_millis(100), k(0x0C, false)),
                (Duration::from_millis(200), k(hid::ENTER, true)),
                (Duration::from_millis(210), k(hid::ENTER, false)),
                (
                    Duration::from_millis(300),
                    InputEvent::Button {
                        button: MouseButton::Left,
                        down: true
                    }
                ),
                (
                    Duration::from_millis(310),
                    InputEvent::Button {
                        button: MouseButton::Left,
                        down: false
                    }
                ),
                (
                    Duration::from_millis(400),
                    InputEvent::Wheel { dx: 0, dy: -180 }
                ),
            ]
        );
        assert_eq!(
            Script::parse("0 type a b").unwrap().events.len(),
            6,
            "spaces are typed"
        );
    }

    #[test]
    fn parses_pad_lines_with_gilrs_names() {
        let s = Script::parse(
            "10 pad 3 connect PlayStation rumble\n20 pad 3 button DPadUp down\n30 pad 3 axis RightZ -0.5\n40 pad 3 disconnect\n50 pad 0 connect\n",
        )
        .unwrap();
        let evs: Vec<InputEvent> = s.events.into_iter().map(|(_, e)| e).collect();
        assert_eq!(
            evs,
            vec![
                InputEvent::PadConnect {
                    pad: 3,
                    kind: PadKind::PlayStation,
                    rumble: true
                },
                InputEvent::PadButton {
                    pad: 3,
                    button: PadButton::DPadUp,
                    down: true
                },
                InputEvent::PadAxis {
                    pad: 3,
                    axis: PadAxis::RightZ,
                    value: -16384
                },
                InputEvent::PadDisconnect { pad: 3 },
                InputEvent::PadConnect {
                    pad: 0,
                    kind: PadKind::Generic,
                    rumble: false
                },
            ]
        );
        for (bad, says) in [
            ("1 pad 16 connect", "16"),
            ("1 pad 0 button Jump down", "Jump"),
            ("1 pad 0 axis LeftStickX 2", "between"),
            ("1 pad 0 axis Tilt 0.1", "Tilt"),
            ("1 pad 0 connect Sega", "Sega"),
            ("1 pad 0 wiggle", "wiggle"),
            ("1 pad 0 button South down now", "now"),
        ] {
            let e = Script::parse(bad).unwrap_err();
            assert!(e.reason.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let e = Script::parse("100 type ok\nabc key A down").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            Script::parse("1 key NoSuch down")
                .unwrap_err()
                .reason
                .contains("NoSuch")
        );
        assert!(Script::parse("1 key KeyA sideways").is_err());
        assert!(Script::parse("1 move 1").is_err());
        assert!(Script::parse("1 move 1 2 3").is_err());
        assert!(Script::parse("1 jump").is_err());
        assert!(Script::parse("1 type é").is_err());
    }

    #[test]
    fn held_input_releases_everything_once() {
        let mut h = HeldInput::default();
        assert!(h.track(&InputEvent::Key {
            usage: 4,
            down: true
        }));
        assert!(h.track(&InputEvent::Button {
            button: MouseButton::Right,
            down: true
        }));
        assert!(
            !h.track(&InputEvent::Key {
                usage: 5,
                down: false
            }),
            "stray release"
        );
        let r = h.release_all();
        assert_eq!(
            r,
            vec![
                InputEvent::Key {
                    usage: 4,
                    down: false
                },
                InputEvent::Button {
                    button: MouseButton::Right,
                    down: false
                }
            ]
        );
        assert!(h.is_empty());
        assert!(h.release_all().is_empty());
    }
}
