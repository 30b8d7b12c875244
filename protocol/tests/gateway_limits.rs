//! What one client connection may hold of a gateway: a connection that
//! never says `Hello` is closed at the deadline, and a session's input,
//! datagrams and control messages beyond their rates are dropped and
//! counted, while an honest session's pass untouched.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nephele_protocol::activity::IdlePolicy;
use nephele_protocol::framing::{Lane, write_frame};
use nephele_protocol::gateway::{
    DATAGRAM_RATE, Dest, End, GatewayEvent, GatewaySession, HELLO_DEADLINE, INPUT_RATE, Target,
};
use nephele_protocol::wire::{Envelope, InputEvent, Message};

const HOST: &str = "192.0.2.7:7400";

fn framed(lane: Option<Lane>, m: &Message<'_>) -> Vec<u8> {
    let mut b = lane.map(|l| vec![l as u8]).unwrap_or_default();
    write_frame(&mut b, |o| m.encode(o));
    b
}

fn encoded(m: &Message<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b);
    b
}

/// A session past Hello, authorized and welcomed by its host at `t0`.
fn relaying(t0: Instant) -> GatewaySession {
    let mut s = GatewaySession::new(t0);
    let hello = Message::Hello {
        width: 640,
        height: 360,
        fps: 30,
        token: b"t",
        client_session: 1,
        codecs: Default::default(),
    };
    s.handle_control(&framed(Some(Lane::Control), &hello), t0)
        .unwrap();
    assert!(s.said_hello());
    assert!(matches!(
        s.poll_event(),
        Some(GatewayEvent::Authorize { .. })
    ));
    let host: SocketAddr = HOST.parse().unwrap();
    s.authorized(
        Target {
            session: 9,
            host,
            backup: None,
            policy: IdlePolicy::default(),
        },
        t0,
    );
    let mut welcome = Vec::new();
    Envelope {
        session: 9,
        message: Message::Welcome {
            session_id: 9,
            width: 640,
            height: 360,
            fps: 30,
            host_time_us: 0,
            input_delivered: 0,
            codec: Default::default(),
        },
    }
    .encode(&mut welcome);
    s.handle_host_datagram(host, &welcome, t0);
    assert!(s.is_relaying());
    drain(&mut s);
    s
}

/// Datagrams queued for the host since last asked.
fn drain(s: &mut GatewaySession) -> usize {
    let mut out = Vec::new();
    let mut n = 0;
    while let Some(d) = s.poll_transmit(&mut out) {
        if matches!(d, Dest::Host(_)) {
            n += 1;
        }
    }
    n
}

#[test]
fn a_connection_that_never_says_hello_is_closed_at_the_deadline() {
    let t0 = Instant::now();
    let mut s = GatewaySession::new(t0);
    assert_eq!(s.poll_timeout(), Some(t0 + HELLO_DEADLINE));
    s.handle_timeout(t0 + HELLO_DEADLINE - Duration::from_millis(1));
    assert!(s.ended().is_none());
    s.handle_timeout(t0 + HELLO_DEADLINE);
    assert!(
        matches!(s.ended(), Some(End::Protocol(_))),
        "{:?}",
        s.ended()
    );
    assert!(!s.said_hello());
}

#[test]
fn an_input_flood_is_cut_to_the_rate_and_counted() {
    let t0 = Instant::now();
    let mut s = relaying(t0);
    let key = |seq| {
        encoded(&Message::Input {
            seq,
            event: InputEvent::Key {
                usage: 4,
                down: seq % 2 == 0,
            },
        })
    };
    // 5,000 messages at one instant: the burst passes, the rest is dropped.
    for seq in 0..5000 {
        s.handle_lane_message(Lane::Input, &key(seq), t0).unwrap();
    }
    let (rate, burst) = INPUT_RATE;
    assert_eq!(drain(&mut s), burst as usize);
    assert_eq!(s.over_rate().input, 5000 - u64::from(burst));
    // A quarter second later a quarter second's worth passes again.
    let t1 = t0 + Duration::from_millis(250);
    for seq in 0..5000 {
        s.handle_lane_message(Lane::Input, &key(seq), t1).unwrap();
    }
    assert_eq!(drain(&mut s), (rate / 4).min(burst) as usize);
    assert!(
        s.ended().is_none(),
        "a flood is dropped, not a reason to end"
    );

    // An honest typist (100 events a second for 10 s) loses nothing.
    let mut s = relaying(t0);
    for i in 0..1000u32 {
        let t = t0 + Duration::from_millis(u64::from(i) * 10);
        s.handle_lane_message(Lane::Input, &key(i), t).unwrap();
    }
    assert_eq!(drain(&mut s), 1000);
    assert_eq!(s.over_rate().input, 0);
}

#[test]
fn a_datagram_flood_is_cut_to_the_rate_and_counted() {
    let t0 = Instant::now();
    let mut s = relaying(t0);
    let sound = encoded(&Message::Audio {
        seq: 1,
        capture_us: 0,
        payload: &[1, 2, 3],
        previous: &[],
    });
    for _ in 0..2000 {
        s.handle_client_datagram(&sound, t0);
    }
    let (_, burst) = DATAGRAM_RATE;
    assert_eq!(drain(&mut s), burst as usize);
    assert_eq!(s.over_rate().datagrams, 2000 - u64::from(burst));
    // Junk counts against the rate too, and is never relayed.
    let mut s = relaying(t0);
    for _ in 0..2000 {
        assert!(!s.handle_client_datagram(&[0xff; 40], t0));
    }
    assert_eq!(drain(&mut s), 0);
    assert_eq!(s.over_rate().datagrams, 2000 - u64::from(burst));
}
