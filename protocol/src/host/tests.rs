//! The host core's own limits: what one session may ask for, and how long a
//! session nobody streams holds a slot.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::codec::CodecAsk;
use crate::wire::{Envelope, Message};

fn datagram(session: u64, message: Message<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    Envelope { session, message }.encode(&mut b);
    b
}

fn attach(session: u64, (width, height, fps): (u16, u16, u8)) -> Vec<u8> {
    datagram(
        session,
        Message::Attach {
            width,
            height,
            fps,
            policy: IdlePolicy::default(),
            backup: None,
            client: 1,
            codecs: Default::default(),
            token: &[],
        },
    )
}

/// Attaches `session` from `gw` at `now` and opens it as the driver would;
/// the picture the core asked the driver for.
fn open(
    core: &mut HostCore,
    gw: SocketAddr,
    session: u64,
    picture: (u16, u16, u8),
    now: Instant,
) -> (u16, u16, u8) {
    core.handle_datagram(gw, &attach(session, picture), now);
    let mut asked = None;
    while let Some(e) = core.poll_event() {
        if let HostEvent::Open {
            session: s,
            width,
            height,
            fps,
            ..
        } = e
            && s == session
        {
            asked = Some((width, height, fps));
        }
    }
    let (width, height, fps) = asked.expect("no Open for the attach");
    core.accept(
        session,
        Accept {
            width,
            height,
            keep_active: false,
            restored: false,
        },
        now,
    );
    while core.poll_event().is_some() {}
    (width, height, fps)
}

#[test]
fn pictures_are_capped_frame_rate_first_then_size() {
    let max = DEFAULT_MAX_PIXEL_RATE;
    assert_eq!(capped_picture(1280, 720, 60, max), (1280, 720, 60));
    assert_eq!(capped_picture(1920, 1080, 120, max), (1920, 1080, 120));
    assert_eq!(capped_picture(1920, 1080, 240, max), (1920, 1080, 120));
    assert_eq!(capped_picture(2560, 1440, 144, max), (2560, 1440, 67));
    assert_eq!(capped_picture(3840, 2160, 240, max), (3840, 2160, 30));
    let (w, h, f) = capped_picture(7680, 4320, 240, max);
    assert_eq!(f, 30);
    assert!(u64::from(w) * u64::from(h) * 30 <= max, "{w}×{h}");
    assert!(
        w % 2 == 0 && h % 2 == 0 && (w as f32 / h as f32 - 16.0 / 9.0).abs() < 0.01,
        "{w}×{h}"
    );
    // A small cap and a low asked rate keep the asked rate.
    assert_eq!(capped_picture(640, 360, 10, 1000).2, 10);
    assert!(capped_picture(640, 360, 10, 1000).0 < 640);
    assert_eq!(capped_picture(0, 0, 0, max), (2, 2, 1));
}

#[test]
fn a_session_asking_for_too_much_is_given_what_the_cap_allows() {
    let t0 = Instant::now();
    let mut core = HostCore::new(HostCoreConfig::default(), t0);
    let gw: SocketAddr = "192.0.2.1:9".parse().unwrap();
    assert_eq!(
        open(&mut core, gw, 1, (3840, 2160, 240), t0),
        (3840, 2160, 30)
    );
    let mut core = HostCore::new(
        HostCoreConfig {
            max_pixel_rate: 1280 * 720 * 60,
            ..HostCoreConfig::default()
        },
        t0,
    );
    assert_eq!(
        open(&mut core, gw, 1, (1280, 720, 120), t0),
        (1280, 720, 60)
    );
}

/// The `Resize` events a `DisplaySize` from the client gives.
fn resized(core: &mut HostCore, gw: SocketAddr, session: u64, w: u16, h: u16) -> Vec<(u16, u16)> {
    let size = Message::DisplaySize {
        width: w,
        height: h,
        refresh: 60,
    };
    core.handle_datagram(gw, &datagram(session, size), Instant::now());
    std::iter::from_fn(|| core.poll_event())
        .filter_map(|e| match e {
            HostEvent::Resize {
                session: s,
                width,
                height,
            } if s == session => Some((width, height)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_client_window_resized_resizes_the_picture_within_the_cap() {
    let t0 = Instant::now();
    let mut core = HostCore::new(
        HostCoreConfig {
            max_pixel_rate: 1920 * 1080 * 60,
            ..HostCoreConfig::default()
        },
        t0,
    );
    let gw: SocketAddr = "192.0.2.1:9".parse().unwrap();
    open(&mut core, gw, 1, (1280, 720, 60), t0);
    assert_eq!(resized(&mut core, gw, 1, 1000, 700), [(1000, 700)]);
    // The same size again is nothing new.
    assert_eq!(resized(&mut core, gw, 1, 1000, 700), []);
    // Past the cap: smaller, the same shape, at the session's frame rate.
    let [(w, h)] = resized(&mut core, gw, 1, 3840, 2160)[..] else {
        panic!("no resize")
    };
    assert!(
        u64::from(w) * u64::from(h) * 60 <= 1920 * 1080 * 60 && w > 1800,
        "{w}×{h}"
    );
    assert_eq!((w % 2, h % 2), (0, 0));
    // A tiny window gets the smallest desktop.
    assert_eq!(resized(&mut core, gw, 1, 100, 40), [MIN_FOLLOWED]);
    // An unknown session's size is ignored.
    assert_eq!(resized(&mut core, gw, 7, 800, 600), []);
    // A later client's welcome gives the size now.
    let welcome = core_welcome(&mut core, gw, 1);
    assert_eq!(welcome, MIN_FOLLOWED);
}

/// The picture size in the welcome a repeated attach gets.
fn core_welcome(core: &mut HostCore, gw: SocketAddr, session: u64) -> (u16, u16) {
    let mut out = Vec::new();
    while core.poll_transmit(&mut out).is_some() {}
    core.handle_datagram(gw, &attach(session, (640, 360, 60)), Instant::now());
    let mut size = None;
    while core.poll_transmit(&mut out).is_some() {
        if let Ok(env) = Envelope::decode(&out)
            && let Message::Welcome { width, height, .. } = env.message
        {
            size = Some((width, height));
        }
    }
    size.expect("no welcome")
}

#[test]
fn attaches_alone_hold_a_slot_for_thirty_seconds_and_a_heard_client_keeps_it() {
    let t0 = Instant::now();
    let mut core = HostCore::new(HostCoreConfig::default(), t0);
    let gw: SocketAddr = "192.0.2.1:9".parse().unwrap();
    open(&mut core, gw, 1, (640, 360, 30), t0);
    open(&mut core, gw, 2, (640, 360, 30), t0);
    let report = datagram(
        2,
        Message::ReceiverReport {
            loss_permille: 0,
            queue_delay_ms: 0,
            recv_kbps: 100,
        },
    );
    // The gateway keeps attaching both every second; session 2's client
    // reports once.
    let mut t = t0;
    while t < t0 + NEVER_STREAMED + Duration::from_secs(2) {
        t += Duration::from_secs(1);
        for s in [1, 2] {
            core.handle_datagram(gw, &attach(s, (640, 360, 30)), t);
        }
        if t == t0 + Duration::from_secs(1) {
            core.handle_datagram(gw, &report, t);
        }
        if core.sessions() == 2 {
            // The driver is woken for the unheard session's end.
            let deadline = t0 + NEVER_STREAMED + Duration::from_secs(1);
            assert!(core.poll_timeout().is_some_and(|d| d <= deadline));
        }
        core.handle_timeout(t);
        while core.poll_event().is_some() {}
        let mut out = Vec::new();
        while core.poll_transmit(&mut out).is_some() {}
    }
    assert_eq!(core.sessions(), 1, "the unheard session should have ended");
    assert!(core.phase(2).is_some() && core.phase(1).is_none());
}

/// Admits every token; its first byte is the directory's grant.
struct GrantInToken;

impl Admission for GrantInToken {
    fn admit(&self, _session: u64, token: &[u8], _known: bool) -> Result<Grant, String> {
        Ok(Grant {
            backup: None,
            policy: None,
            max_pixel_rate: None,
            grant: u32::from(token.first().copied().unwrap_or(0)),
        })
    }
}

/// Session 7's attach (640×360 at 30) by `client` with grant `grant` (the
/// token [`GrantInToken`] reads) and `codecs`.
fn granted_attach(client: u64, grant: u8, codecs: CodecAsk) -> Vec<u8> {
    datagram(
        7,
        Message::Attach {
            width: 640,
            height: 360,
            fps: 30,
            policy: IdlePolicy::default(),
            backup: None,
            client,
            codecs,
            token: &[grant],
        },
    )
}

/// What the core sent, by destination: Goodbye reasons and Welcomes.
fn sent(core: &mut HostCore) -> Vec<(SocketAddr, String)> {
    let mut out = Vec::new();
    let mut said = Vec::new();
    while let Some(dest) = core.poll_transmit(&mut out) {
        match Envelope::decode(&out).map(|e| e.message) {
            Ok(Message::Goodbye { reason }) => said.push((dest, format!("{reason:?}"))),
            Ok(Message::Welcome { .. }) => said.push((dest, "welcome".into())),
            _ => {}
        }
        out.clear();
    }
    said
}

#[test]
fn a_held_session_goes_to_a_later_grant_but_never_to_a_copy_of_the_same() {
    let t0 = Instant::now();
    let mut core = HostCore::new(HostCoreConfig::default(), t0);
    core.set_admission(Box::new(GrantInToken));
    let (first, second, third): (SocketAddr, SocketAddr, SocketAddr) = (
        "192.0.2.1:9".parse().unwrap(),
        "192.0.2.2:9".parse().unwrap(),
        "192.0.2.3:9".parse().unwrap(),
    );
    let attach_as = |client: u64, grant: u8| granted_attach(client, grant, CodecAsk::default());
    core.handle_datagram(first, &attach_as(1, 0), t0);
    while core.poll_event().is_some() {}
    core.accept(
        7,
        Accept {
            width: 640,
            height: 360,
            keep_active: false,
            restored: false,
        },
        t0,
    );
    while core.poll_event().is_some() {}
    assert_eq!(sent(&mut core), [(first, "welcome".to_string())]);
    // Another client with the same grant (a copied token) is refused while
    // the holder is connected; the holder hears nothing.
    let t = t0 + Duration::from_millis(100);
    let in_use = |at: SocketAddr| (at, "InUse".to_string());
    core.handle_datagram(second, &attach_as(2, 0), t);
    assert_eq!(sent(&mut core), [in_use(second)]);
    core.handle_datagram(first, &attach_as(1, 0), t);
    assert_eq!(sent(&mut core), [(first, "welcome".to_string())]);
    // A later grant takes the session: the holder is told it was replaced,
    // and what its gateway sends afterwards is not the session's.
    core.handle_datagram(third, &attach_as(3, 1), t);
    assert_eq!(
        sent(&mut core),
        [
            (first, "Replaced".to_string()),
            (third, "welcome".to_string())
        ]
    );
    assert_eq!(core.sessions(), 1);
    core.handle_datagram(first, &datagram(7, Message::Detach), t);
    // The new holder keeps it: the copy of grant 0 is refused again, as is
    // the replaced client coming back with its old grant.
    core.handle_datagram(second, &attach_as(2, 0), t);
    core.handle_datagram(first, &attach_as(1, 0), t);
    assert_eq!(sent(&mut core), [in_use(second), in_use(first)]);
    assert_eq!(core.sessions(), 1);
}

#[test]
fn a_session_given_a_new_backup_replicates_to_it_at_once_and_then_on_time() {
    let now = Instant::now();
    let mut core = HostCore::new(HostCoreConfig::default(), now);
    let gw: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let backup: SocketAddr = "127.0.0.1:4100".parse().unwrap();
    open(&mut core, gw, 7, (640, 360, 30), now);
    // Without a backup, nothing is replicated however long it runs.
    core.handle_timeout(now + SYNC_INTERVAL * 2);
    let replicated = |core: &mut HostCore| {
        let mut n = 0;
        while let Some(e) = core.poll_event() {
            if matches!(e, HostEvent::Replicate { session: 7 }) {
                n += 1;
            }
        }
        n
    };
    assert_eq!(replicated(&mut core), 0);
    core.set_backup(7, backup, now);
    assert_eq!(replicated(&mut core), 1, "at once");
    core.set_backup(7, backup, now);
    assert_eq!(
        replicated(&mut core),
        0,
        "the same backup again changes nothing"
    );
    core.handle_timeout(now + SYNC_INTERVAL * 3);
    assert_eq!(replicated(&mut core), 1, "then on the sync interval");
    core.replicate(7, b"state", now + SYNC_INTERVAL * 3);
    let mut out = Vec::new();
    let mut synced_to = Vec::new();
    while let Some(dest) = core.poll_transmit(&mut out) {
        if let Ok(Message::StateSync { state, .. }) = Envelope::decode(&out).map(|e| e.message) {
            synced_to.push((dest, state.to_vec()));
        }
        out.clear();
    }
    assert_eq!(synced_to, [(backup, b"state".to_vec())]);
    core.set_backup(99, backup, now);
    assert_eq!(replicated(&mut core), 0, "an unknown session");
}

/// The codecs of the Welcomes sent, and of the media (re)started.
fn codecs_told(core: &mut HostCore) -> (Vec<Codec>, Vec<String>) {
    let mut out = Vec::new();
    let mut welcomed = Vec::new();
    while core.poll_transmit(&mut out).is_some() {
        if let Ok(Message::Welcome { codec, .. }) = Envelope::decode(&out).map(|e| e.message) {
            welcomed.push(codec);
        }
        out.clear();
    }
    let mut media = Vec::new();
    while let Some(e) = core.poll_event() {
        match e {
            HostEvent::MediaStart { codec, .. } => media.push(format!("start {codec}")),
            HostEvent::MediaStop { .. } => media.push("stop".into()),
            _ => {}
        }
    }
    (welcomed, media)
}

#[test]
fn the_codec_is_agreed_at_attach_and_again_when_another_client_takes_over() {
    use crate::codec::{Codec::*, Codecs};
    let t0 = Instant::now();
    let cfg = HostCoreConfig {
        codecs: Codecs::new(&[H264, Hevc, Av1]),
        ..HostCoreConfig::default()
    };
    let mut core = HostCore::new(cfg, t0);
    core.set_admission(Box::new(GrantInToken));
    let (first, second): (SocketAddr, SocketAddr) = (
        "192.0.2.1:9".parse().unwrap(),
        "192.0.2.2:9".parse().unwrap(),
    );
    let attach_as = |client: u64, grant: u8, decodes: &[Codec], prefer| {
        let decodes = Codecs::new(decodes);
        granted_attach(client, grant, CodecAsk { decodes, prefer })
    };
    // The user chose AV1 and the client decodes it.
    core.handle_datagram(first, &attach_as(1, 0, &[Hevc, Av1], Some(Av1)), t0);
    while core.poll_event().is_some() {}
    let accept = Accept {
        width: 640,
        height: 360,
        keep_active: false,
        restored: false,
    };
    core.accept(7, accept, t0);
    assert_eq!(
        codecs_told(&mut core),
        (vec![Av1], vec!["start AV1".to_string()])
    );
    // The same client again (a lost welcome): nothing restarts.
    core.handle_datagram(first, &attach_as(1, 0, &[Hevc, Av1], Some(Av1)), t0);
    assert_eq!(codecs_told(&mut core), (vec![Av1], vec![]));
    // A later grant from a client that decodes H.264 alone: the encoder
    // starts again in H.264, and that client is told so.
    let t = t0 + Duration::from_millis(100);
    core.handle_datagram(second, &attach_as(2, 1, &[], None), t);
    assert_eq!(
        codecs_told(&mut core),
        (
            vec![H264],
            vec!["stop".to_string(), "start H.264".to_string()]
        )
    );
}
