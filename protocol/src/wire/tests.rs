//! The wire format's round trips and refusals.

use super::*;
use crate::MAX_DIMENSION;
use crate::activity::{KeepActive, Presence};
use crate::audio::MAX_AUDIO_PAYLOAD;
use crate::codec::Codecs;
use crate::monitors::{MAX_MONITORS, Monitor, Monitors};
use crate::pad::MAX_PADS;
use crate::pad::{PadAxis, PadButton, PadKind};
use proptest::prelude::*;

/// A codec ask from a random number: any set, any (or no) choice.
fn codec_ask(n: u64) -> CodecAsk {
    CodecAsk {
        decodes: Codecs::from_mask(n as u8 & 7),
        prefer: match (n >> 8) % 4 {
            3 => None,
            i => Some(Codec::ALL[i as usize]),
        },
    }
}

fn arb_button() -> impl Strategy<Value = MouseButton> {
    prop_oneof![
        Just(MouseButton::Left),
        Just(MouseButton::Right),
        Just(MouseButton::Middle),
        Just(MouseButton::Back),
        Just(MouseButton::Forward),
    ]
}

fn arb_event() -> impl Strategy<Value = InputEvent> {
    prop_oneof![
        (any::<u16>(), any::<bool>()).prop_map(|(usage, down)| InputEvent::Key { usage, down }),
        (arb_button(), any::<bool>())
            .prop_map(|(button, down)| InputEvent::Button { button, down }),
        (any::<u16>(), any::<u16>()).prop_map(|(x, y)| InputEvent::Move { x, y }),
        (any::<i16>(), any::<i16>()).prop_map(|(dx, dy)| InputEvent::Wheel { dx, dy }),
        (any::<i16>(), any::<i16>()).prop_map(|(dx, dy)| InputEvent::MoveBy { dx, dy }),
        any::<char>()
            .prop_filter("printable", |c| !c.is_control())
            .prop_map(|ch| InputEvent::Text { ch }),
        (
            0..MAX_PADS,
            prop::sample::select(PadKind::ALL),
            any::<bool>()
        )
            .prop_map(|(pad, kind, rumble)| InputEvent::PadConnect { pad, kind, rumble }),
        (0..MAX_PADS).prop_map(|pad| InputEvent::PadDisconnect { pad }),
        (
            0..MAX_PADS,
            prop::sample::select(PadButton::ALL),
            any::<bool>()
        )
            .prop_map(|(pad, button, down)| InputEvent::PadButton { pad, button, down }),
        (
            0..MAX_PADS,
            prop::sample::select(PadAxis::ALL),
            any::<i16>()
        )
            .prop_map(|(pad, axis, value)| InputEvent::PadAxis { pad, axis, value }),
    ]
}

fn arb_dim() -> impl Strategy<Value = u16> {
    (1u16..=MAX_DIMENSION / 2).prop_map(|v| v * 2)
}

fn arb_reason() -> impl Strategy<Value = GoodbyeReason> {
    prop_oneof![
        Just(GoodbyeReason::Normal),
        Just(GoodbyeReason::ProtocolError),
        Just(GoodbyeReason::NoCapacity),
        Just(GoodbyeReason::Timeout),
        Just(GoodbyeReason::Shutdown),
        Just(GoodbyeReason::Unauthorized),
    ]
}

/// Owned stand-in for a message, since `Message` borrows its payload.
fn arb_message() -> impl Strategy<Value = (u8, Vec<u8>, [u64; 3], InputEvent, GoodbyeReason)> {
    (
        0u8..23,
        proptest::collection::vec(any::<u8>(), 1..1100),
        [any::<u64>(), any::<u64>(), any::<u64>()],
        arb_event(),
        arb_reason(),
    )
}

fn build<'a>(
    k: u8,
    payload: &'a [u8],
    n: [u64; 3],
    ev: InputEvent,
    reason: GoodbyeReason,
    w: u16,
    h: u16,
) -> Message<'a> {
    let fps = (n[2] % 240) as u8 + 1;
    match k {
        0 => Message::Hello {
            width: w,
            height: h,
            fps,
            token: &payload[..payload.len().min(MAX_TOKEN)],
            client_session: n[1],
            codecs: codec_ask(n[2]),
        },
        1 => Message::Welcome {
            session_id: n[0],
            width: w,
            height: h,
            fps,
            host_time_us: n[1],
            input_delivered: n[2] as u32,
            codec: Codec::ALL[(n[0] % 3) as usize],
        },
        2 => Message::Ping { stamp_us: n[0] },
        3 => Message::Pong {
            stamp_us: n[1],
            host_us: n[2],
        },
        4 => Message::Goodbye { reason },
        5 => Message::Input {
            seq: n[0] as u32,
            event: ev,
        },
        6 => Message::InputAck {
            seq: n[1] as u32,
            host_us: n[2],
        },
        7 => {
            // A parity fragment of an even-sized shard, or a lone data fragment.
            let with_parity = n[0].is_multiple_of(2) && payload.len().is_multiple_of(2);
            let len = payload.len() as u16;
            Message::Video(VideoFragment {
                frame_id: n[1] as u32,
                index: u16::from(with_parity),
                count: 1,
                parity: u16::from(with_parity),
                flags: n[2] as u8,
                capture_us: n[1],
                shard: len,
                frame_len: u32::from(len),
                payload,
            })
        }
        8 => Message::KeyframeRequest {
            last_good_frame: n[2] as u32,
        },
        9 => Message::Rumble {
            pad: (n[0] % u64::from(MAX_PADS)) as u8,
            strong: n[1] as u16,
            weak: n[2] as u16,
            duration_ms: (n[0] >> 16) as u16,
        },
        10 => {
            let split = (n[1] as usize % payload.len()).min(MAX_AUDIO_PAYLOAD);
            let (payload, previous) = payload.split_at(split);
            Message::Audio {
                seq: n[0] as u32,
                capture_us: n[2],
                payload,
                previous: &previous[..previous.len().min(MAX_AUDIO_PAYLOAD)],
            }
        }
        11 => Message::Attach {
            width: w,
            height: h,
            fps,
            policy: IdlePolicy {
                warn: Some(std::time::Duration::from_millis(n[0] % 1000 + 1)),
                pause: Some(std::time::Duration::from_millis(n[0] % 1000 + 1000)),
                suspend: None,
            },
            backup: match n[1] % 3 {
                0 => None,
                1 => Some(SocketAddr::from(([127, 0, 0, 1], n[2] as u16))),
                _ => Some(SocketAddr::from((
                    [0xfe80, 0, 0, 0, 0, 0, 0, 1],
                    n[2] as u16,
                ))),
            },
            client: n[0] ^ n[1],
            token: &payload[..payload.len().min(MAX_ATTACH_TOKEN)],
            codecs: codec_ask(n[1]),
        },
        12 => Message::Detach,
        13 => Message::Activity(ActivityReport {
            idle_ms: n[0] as u32,
            presence: Presence::from_u8((n[1] % 4) as u8).unwrap(),
            keep_active: KeepActive::from_u8((n[2] % 5) as u8).unwrap(),
            expected_idle_s: n[2] as u32,
        }),
        14 => Message::Status {
            phase: Phase::from_u8((n[0] % 5) as u8).unwrap(),
            ms: n[1] as u32,
        },
        16 => Message::Clipboard {
            text: &payload[..payload.len().min(MAX_CLIPBOARD)],
        },
        15 => Message::StateSync {
            input_seq: n[0] as u32,
            version: n[1] as u32,
            state: &payload[..payload.len().min(MAX_STATE)],
        },
        17 => {
            let width = (n[0] % u64::from(MAX_CURSOR)) as u16 + 1;
            let height = (n[1] % u64::from(MAX_CURSOR)) as u16 + 1;
            let first_row = (n[2] % u64::from(height)) as u16;
            let row = usize::from(width) * 4;
            let rows = (payload.len() / row).min(usize::from(height - first_row));
            Message::CursorShape {
                serial: n[0] as u32,
                width,
                height,
                hot_x: width - 1,
                hot_y: (n[2] % u64::from(height)) as u16,
                first_row,
                rgba: &payload[..rows * row],
            }
        }
        20 => Message::HostTiming {
            capture_us: n[0] as u32,
            encode_us: n[1] as u32,
            frames: n[2] as u16,
        },
        19 => Message::DisplaySize {
            width: w,
            height: h,
            refresh: fps,
        },
        18 => Message::CursorPosition {
            x: n[0] as u16,
            y: n[1] as u16,
            visible: n[2].is_multiple_of(2),
        },
        21 => {
            let at = |c: &[u8], i: usize| u16::from_be_bytes([c[i], c[i + 1]]);
            Message::Monitors(Monitors::new(
                payload
                    .chunks_exact(8)
                    .take(usize::from(payload[0]) % (MAX_MONITORS + 1))
                    .map(|c| Monitor {
                        x: at(c, 0),
                        y: at(c, 2),
                        width: at(c, 4).max(1),
                        height: at(c, 6).max(1),
                    }),
            ))
        }
        _ => Message::ReceiverReport {
            loss_permille: (n[0] % 1001) as u16,
            queue_delay_ms: n[1] as u16,
            recv_kbps: n[2] as u32,
        },
    }
}

#[test]
fn typed_text_is_one_printable_character() {
    let text = |ch| Message::Input {
        seq: 3,
        event: InputEvent::Text { ch },
    };
    for ch in ['a', 'ä', '€', '😀'] {
        let m = text(ch);
        assert_eq!(Message::decode(&m.to_vec()), Ok(m.clone()));
    }
    // A control character, a surrogate and a value past Unicode are refused.
    let mut bytes = text('a').to_vec();
    let at = bytes.len() - 4;
    for bad in [0x0au32, 0xd800, 0x11_0000] {
        bytes[at..].copy_from_slice(&bad.to_be_bytes());
        assert!(Message::decode(&bytes).is_err(), "{bad:#x}");
    }
}

#[test]
fn display_sizes_must_be_even_nonzero_and_within_the_cap() {
    let size = |width, height, refresh| Message::DisplaySize {
        width,
        height,
        refresh,
    };
    let good = size(1000, 700, 60);
    assert_eq!(Message::decode(&good.to_vec()), Ok(good.clone()));
    for bad in [size(999, 700, 60), size(0, 700, 60), size(1000, 700, 0)] {
        assert!(Message::decode(&bad.to_vec()).is_err(), "{bad:?}");
    }
}

#[test]
fn cursor_shapes_outside_their_limits_are_refused() {
    let shape = |width, height, hot_x, first_row, rgba: &'static [u8]| Message::CursorShape {
        serial: 9,
        width,
        height,
        hot_x,
        hot_y: 0,
        first_row,
        rgba,
    };
    static PIXELS: [u8; 65 * 4 * 2] = [7; 65 * 4 * 2];
    let good = shape(2, 2, 1, 1, &PIXELS[..8]);
    assert_eq!(Message::decode(&good.to_vec()), Ok(good.clone()));
    for bad in [
        shape(MAX_CURSOR + 1, 1, 0, 0, &PIXELS[..65 * 4]),
        shape(2, 2, 2, 0, &PIXELS[..8]),
        shape(2, 2, 0, 1, &PIXELS[..16]),
        shape(0, 2, 0, 0, &[]),
    ] {
        assert!(Message::decode(&bad.to_vec()).is_err(), "{bad:?}");
    }
    // A part cut short is an error too.
    let bytes = good.to_vec();
    assert!(Message::decode(&bytes[..bytes.len() - 1]).is_err());
    // Visibility is 0 or 1, nothing else (one encoding per message).
    let mut seen = Message::CursorPosition {
        x: 5,
        y: 10,
        visible: true,
    }
    .to_vec();
    *seen.last_mut().unwrap() = 48;
    assert!(Message::decode(&seen).is_err());
}

#[test]
fn monitors_have_one_encoding() {
    let m = |x: u16, width: u16| Monitor {
        x,
        y: 0,
        width,
        height: 600,
    };
    let two = Message::Monitors(Monitors::new([m(800, 800), m(0, 800)]));
    let bytes = two.to_vec();
    assert_eq!(Message::decode(&bytes), Ok(two));
    // The same two the other way round, an empty one, and too many (after
    // the version and the type: the count, then 8 bytes a monitor).
    let mut swapped = bytes.clone();
    swapped[3..11].copy_from_slice(&bytes[11..19]);
    swapped[11..19].copy_from_slice(&bytes[3..11]);
    let mut empty = bytes.clone();
    empty[7..9].copy_from_slice(&[0, 0]);
    let mut many = vec![bytes[0], ty::MONITORS, MAX_MONITORS as u8 + 1];
    for i in 0..=MAX_MONITORS as u16 {
        for v in [i * 10, 0, 10, 10] {
            many.extend_from_slice(&v.to_be_bytes());
        }
    }
    for bad in [swapped, empty, many] {
        assert!(Message::decode(&bad).is_err(), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn messages_round_trip((k, payload, n, ev, reason) in arb_message(), w in arb_dim(), h in arb_dim()) {
        let msg = build(k, &payload, n, ev, reason, w, h);
        let bytes = msg.to_vec();
        prop_assert_eq!(Message::decode(&bytes), Ok(msg.clone()));
        let env = Envelope { session: n[0] ^ n[1], message: msg };
        let mut buf = Vec::new();
        env.encode(&mut buf);
        prop_assert_eq!(Envelope::decode(&buf), Ok(env));
    }

    #[test]
    fn truncated_messages_are_errors((k, payload, n, ev, reason) in arb_message(), w in arb_dim(), h in arb_dim(), cut in any::<prop::sample::Index>()) {
        let msg = build(k, &payload, n, ev, reason, w, h);
        let bytes = msg.to_vec();
        // Any strict prefix is an error (a video fragment's payload size
        // is fixed by its header).
        let cut = cut.index(bytes.len());
        prop_assert!(Message::decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Message::decode(&bytes);
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn versioned_arbitrary_bodies_never_panic(t in 0u8..20, body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = vec![PROTOCOL_VERSION, t];
        bytes.extend_from_slice(&body);
        let _ = Message::decode(&bytes);
    }
}

#[test]
fn rejects_wrong_version_and_bad_fields() {
    let mut hello = Message::Hello {
        width: 1280,
        height: 720,
        fps: 60,
        token: b"",
        client_session: 7,
        codecs: CodecAsk::default(),
    }
    .to_vec();
    hello[0] = 9;
    assert_eq!(Message::decode(&hello), Err(DecodeError::Version(9)));

    let odd = [
        PROTOCOL_VERSION,
        ty::HELLO,
        0x05,
        0x01,
        0x02,
        0xD0,
        60,
        0,
        0,
    ];
    assert!(matches!(
        Message::decode(&odd),
        Err(DecodeError::InvalidValue { field: "width", .. })
    ));

    // Found by fuzzing: an out-of-range loss report must be refused, not
    // clamped (what decodes must re-encode to the same bytes).
    assert!(matches!(
        Message::decode(&[
            PROTOCOL_VERSION,
            ty::RECEIVER_REPORT,
            0x09,
            0x09,
            0,
            0,
            0,
            0,
            0,
            0
        ]),
        Err(DecodeError::InvalidValue {
            field: "loss per mille",
            ..
        })
    ));

    let long_token = [
        PROTOCOL_VERSION,
        ty::HELLO,
        0x05,
        0x00,
        0x02,
        0xD0,
        60,
        0x08,
        0x01,
    ];
    assert!(matches!(
        Message::decode(&long_token),
        Err(DecodeError::InvalidValue {
            field: "token length",
            ..
        })
    ));

    let huge = [PROTOCOL_VERSION, ty::HELLO, 0x40, 0x02, 0x02, 0xD0, 60];
    assert!(matches!(
        Message::decode(&huge),
        Err(DecodeError::InvalidValue { field: "width", .. })
    ));

    let mut ping = Message::Ping { stamp_us: 1 }.to_vec();
    ping.push(0);
    assert_eq!(Message::decode(&ping), Err(DecodeError::Trailing(1)));

    let bad_frag = Message::Video(VideoFragment {
        frame_id: 1,
        index: 0,
        count: 1,
        parity: 0,
        flags: 0,
        capture_us: 0,
        shard: 1,
        frame_len: 1,
        payload: &[1],
    })
    .to_vec();
    let mut past = bad_frag.clone();
    past[7] = 5; // index low byte past count
    assert_eq!(
        Message::decode(&past),
        Err(DecodeError::BadFragment("index past count"))
    );
    let mut longer = bad_frag.clone();
    longer.push(2);
    assert_eq!(
        Message::decode(&longer),
        Err(DecodeError::BadFragment("payload size does not match"))
    );
    assert_eq!(
        Message::decode(&bad_frag[..VIDEO_HEADER_LEN]),
        Err(DecodeError::BadFragment("empty payload"))
    );
}

#[test]
fn a_fragment_numbered_last_of_all_is_checked_without_overflow() {
    // Found by the decode fuzzer: index 65535 of 65535 data fragments
    // (parity makes it a valid index) overflowed `index + 1`.
    let payload = [0u8; 2];
    let frag = VideoFragment {
        frame_id: 1,
        index: u16::MAX,
        count: u16::MAX,
        parity: 2,
        flags: 0,
        capture_us: 0,
        shard: 2,
        frame_len: 2 * u32::from(u16::MAX),
        payload: &payload,
    };
    assert_eq!(frag.check(), Ok(()));
}

#[test]
fn an_unknown_codec_or_a_choice_of_two_is_refused() {
    let hello = Message::Hello {
        width: 1280,
        height: 720,
        fps: 60,
        token: b"",
        client_session: 7,
        codecs: codec_ask(0x0107),
    };
    let mut bytes = hello.to_vec();
    assert_eq!(Message::decode(&bytes), Ok(hello));
    // The choice is one codec's bit: two at once is no choice.
    *bytes.last_mut().unwrap() = 0b11;
    assert!(Message::decode(&bytes).is_err());
    // The set always holds H.264, and only codecs this version knows.
    let at = bytes.len() - 2;
    for mask in [0b110, 0b1001, 0] {
        bytes[at] = mask;
        *bytes.last_mut().unwrap() = 0;
        assert!(Message::decode(&bytes).is_err(), "{mask:#b}");
    }
    bytes[at] = 0b101;
    assert!(Message::decode(&bytes).is_ok());
    // Every pair of bytes that decodes re-encodes to itself.
    for (mask, choice) in (0..=255u8).flat_map(|m| (0..=255u8).map(move |c| (m, c))) {
        bytes[at] = mask;
        *bytes.last_mut().unwrap() = choice;
        if let Ok(m) = Message::decode(&bytes) {
            assert_eq!(m.to_vec(), bytes, "{mask:#b} {choice:#b}");
        }
    }
    let welcome = Message::Welcome {
        session_id: 1,
        width: 640,
        height: 360,
        fps: 30,
        host_time_us: 5,
        input_delivered: 0,
        codec: Codec::Av1,
    };
    let mut bytes = welcome.to_vec();
    assert_eq!(Message::decode(&bytes), Ok(welcome));
    *bytes.last_mut().unwrap() = 3;
    assert!(Message::decode(&bytes).is_err());
}
