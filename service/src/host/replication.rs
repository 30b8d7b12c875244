//! The demo desktop's state as a backup host keeps it: pointer, wheel,
//! counters and the typed text. Held keys and buttons are not kept: a
//! takeover releases them. Hand-written because it is a few fixed fields
//! and one string, bounded to fit one datagram.

use nephele_protocol::wire::MAX_STATE;

use crate::demo::DesktopState;

/// Writes `d`'s state into `out` (cleared first; reused per input event).
pub(super) fn snapshot(d: &DesktopState, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&d.pointer.0.to_be_bytes());
    out.extend_from_slice(&d.pointer.1.to_be_bytes());
    out.extend_from_slice(&d.wheel.0.to_be_bytes());
    out.extend_from_slice(&d.wheel.1.to_be_bytes());
    out.extend_from_slice(&d.events.to_be_bytes());
    out.extend_from_slice(&d.key_presses.to_be_bytes());
    let room = MAX_STATE - out.len();
    let mut start = d.typed.len().saturating_sub(room);
    while !d.typed.is_char_boundary(start) {
        start += 1;
    }
    out.extend_from_slice(&d.typed.as_bytes()[start..]);
}

/// The state [`snapshot`] wrote, if `bytes` is one.
pub(super) fn restore(bytes: &[u8]) -> Option<DesktopState> {
    let (head, text) = bytes.split_at_checked(28)?;
    let u16_at = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
    let i32_at = |i: usize| i32::from_be_bytes(head[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_be_bytes(head[i..i + 8].try_into().unwrap_or_default());
    Some(DesktopState {
        pointer: (u16_at(0), u16_at(2)),
        wheel: (i32_at(4), i32_at(8)),
        events: u64_at(12),
        key_presses: u64_at(20),
        typed: String::from_utf8_lossy(text).into_owned(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicated_state_round_trips_and_keeps_the_newest_text_when_long() {
        let mut d = DesktopState {
            typed: "héllo wörld".into(),
            pointer: (12, 34),
            wheel: (-240, 120),
            events: 99,
            key_presses: 42,
            ..Default::default()
        };
        d.keys_down.insert(4);
        let mut buf = Vec::new();
        snapshot(&d, &mut buf);
        let back = restore(&buf).unwrap();
        assert_eq!(back.typed, d.typed);
        assert_eq!((back.pointer, back.wheel), (d.pointer, d.wheel));
        assert_eq!((back.events, back.key_presses), (99, 42));
        assert!(back.keys_down.is_empty(), "held keys are not carried over");
        // Text beyond a datagram's room: the newest part, cut on a character.
        d.typed = "ä".repeat(crate::demo::MAX_TYPED);
        snapshot(&d, &mut buf);
        assert!(buf.len() <= MAX_STATE);
        let back = restore(&buf).unwrap();
        assert!(back.typed.chars().all(|c| c == 'ä') && !back.typed.is_empty());
        assert!(restore(&buf[..10]).is_none(), "a short state is refused");
    }
}
