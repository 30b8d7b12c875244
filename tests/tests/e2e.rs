//! In-process end to end: headless client ↔ QUIC gateway ↔ UDP host, on loopback.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nephele_client::audio::AudioConfig;
use nephele_client::headless::play_script;
use nephele_client::input::Script;
use nephele_client::session::{ConnectConfig, SessionError};
use nephele_client::stats::Stats;
use nephele_client::status::Route;
use nephele_e2e::{DemoOptions, DemoService};
use nephele_e2e::{Headless, Scratch, connect_headless, recorded_events, wait_until};
use nephele_protocol::hid;
use nephele_protocol::wire::InputEvent;

fn config(svc: &DemoService, w: u16, h: u16, fps: u8) -> ConnectConfig {
    ConnectConfig {
        gateway: svc.gateway_addr(),
        server_name: "localhost".into(),
        roots: vec![svc.ca()],
        width: w,
        height: h,
        fps,
        token: svc.token(),
        route: Route {
            gateway_id: "test".into(),
            pop: "loopback".into(),
        },
        fallbacks: Vec::new(),
        save_stream: None,
        // Sound has its own tests, under a private sound server.
        audio: AudioConfig::OFF,
        renew: None,
        clipboard: false,
        decoder: Default::default(),
        codec: Default::default(),
    }
}

fn connect(cfg: ConnectConfig) -> Result<(Headless, Arc<Stats>), SessionError> {
    let s = connect_headless(cfg)?;
    let stats = s.stats.clone();
    Ok((s, stats))
}

fn describe(v: &serde_json::Value) -> String {
    match v["kind"].as_str() {
        Some("key") => format!(
            "key {} {}",
            v["code"].as_str().unwrap_or("?"),
            v["action"].as_str().unwrap_or("?")
        ),
        Some("button") => format!(
            "button {} {}",
            v["button"].as_str().unwrap_or("?"),
            v["action"].as_str().unwrap_or("?")
        ),
        Some("move") => format!("move {} {}", v["x"], v["y"]),
        Some("wheel") => format!("wheel {} {}", v["dx"], v["dy"]),
        Some("pad") => {
            let what = [&v["type"], &v["button"], &v["axis"]]
                .into_iter()
                .find_map(|x| x.as_str())
                .unwrap_or_default();
            format!(
                "pad {} {} {what}",
                v["pad"],
                v["action"].as_str().unwrap_or("?")
            )
            .trim_end()
            .to_string()
        }
        other => format!("{other:?}"),
    }
}

fn describe_event(e: &InputEvent) -> String {
    match *e {
        InputEvent::Key { usage, down } => format!(
            "key {} {}",
            hid::name_from_usage(usage).unwrap_or("?"),
            if down { "down" } else { "up" }
        ),
        InputEvent::Button { button, down } => format!(
            "button {} {}",
            button.name(),
            if down { "down" } else { "up" }
        ),
        InputEvent::Move { x, y } => format!("move {x} {y}"),
        InputEvent::Wheel { dx, dy } => format!("wheel {dx} {dy}"),
        InputEvent::MoveBy { dx, dy } => format!("move-by {dx} {dy}"),
        InputEvent::Text { ch } => format!("text {ch}"),
        InputEvent::PadConnect { pad, kind, .. } => format!("pad {pad} connect {}", kind.name()),
        InputEvent::PadDisconnect { pad } => format!("pad {pad} disconnect"),
        InputEvent::PadButton { pad, button, down } => format!(
            "pad {pad} {} {}",
            if down { "down" } else { "up" },
            button.name()
        ),
        InputEvent::PadAxis { pad, axis, .. } => format!("pad {pad} axis {}", axis.name()),
    }
}

#[test]
fn frames_arrive_and_scripted_input_is_applied_in_order_exactly_once() {
    let dir = Scratch::new("e2e");
    let rec = dir.path().join("input.jsonl");
    let svc = DemoService::start(DemoOptions {
        record_input: Some(rec.clone()),
        ..DemoOptions::default()
    })
    .unwrap();
    let (session, stats) = connect(config(&svc, 640, 360, 30)).unwrap();
    let script = Script::parse(
        "0 move 10 20\n20 type Hello, Nephele!\n40 key Enter down\n41 key Enter up\n60 move 300 200\n\
         80 button left down\n90 button left up\n100 wheel 0 -2\n110 button right down\n120 button right up\n\
         130 type 1+1=2\n",
    )
    .unwrap();
    play_script(
        &script,
        &session.input(),
        &session.pad_script(),
        Instant::now(),
        || false,
    );
    let input = session.input();
    assert!(
        wait_until(Duration::from_secs(10), || input.in_flight() == 0
            && stats.frames_presented.load(Ordering::Relaxed) >= 30),
        "in flight {}, presented {}",
        input.in_flight(),
        stats.frames_presented.load(Ordering::Relaxed)
    );
    let observed = session.observed.clone();
    session.close().unwrap();
    let report = stats.report(Duration::from_secs(1), &observed);
    assert_eq!(report.input_sent, script.events.len() as u64);
    assert_eq!(report.input_acked, report.input_sent);
    assert!(
        report.frames_decoded >= 30 && report.frames_presented >= 30,
        "{report:?}"
    );
    assert_eq!(report.decode_errors, 0);
    drop(svc);

    let recorded: Vec<String> = recorded_events(&rec).iter().map(describe).collect();
    let sent: Vec<String> = script
        .events
        .iter()
        .map(|(_, e)| describe_event(e))
        .collect();
    assert_eq!(
        recorded, sent,
        "the host applied exactly the script, in order"
    );
    let seqs: Vec<u64> = recorded_events(&rec)
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=sent.len() as u64).collect::<Vec<_>>());
}

#[test]
fn held_keys_are_released_by_the_host_when_the_client_leaves() {
    let dir = Scratch::new("release");
    let rec = dir.path().join("input.jsonl");
    let svc = DemoService::start(DemoOptions {
        record_input: Some(rec.clone()),
        ..DemoOptions::default()
    })
    .unwrap();
    let (session, _stats) = connect(config(&svc, 320, 240, 30)).unwrap();
    let input = session.input();
    input
        .push(InputEvent::Key {
            usage: hid::LEFT_SHIFT,
            down: true,
        })
        .unwrap();
    input
        .push(InputEvent::Key {
            usage: 0x04,
            down: true,
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || input.in_flight() == 0));
    session.close().unwrap();
    let text = || std::fs::read_to_string(&rec).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(5), || text()
            .lines()
            .filter(|l| l.contains("released_on_disconnect"))
            .count()
            == 2),
        "recording: {}",
        text()
    );
    let released: Vec<serde_json::Value> = text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("released_on_disconnect").is_some())
        .collect();
    let mut codes: Vec<&str> = released
        .iter()
        .map(|v| v["code"].as_str().unwrap())
        .collect();
    codes.sort();
    assert_eq!(codes, vec!["KeyA", "ShiftLeft"]);
    assert!(released.iter().all(|v| v["action"] == "up"));
}

#[test]
fn several_clients_each_get_their_own_session() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let sessions: Vec<_> = (0..3)
        .map(|_| connect(config(&svc, 320, 240, 20)).unwrap())
        .collect();
    let ids: std::collections::HashSet<u64> =
        sessions.iter().map(|(s, _)| s.info().session_id).collect();
    assert_eq!(ids.len(), 3, "distinct sessions");
    for (_, stats) in &sessions {
        assert!(wait_until(Duration::from_secs(10), || stats
            .frames_presented
            .load(Ordering::Relaxed)
            >= 10));
    }
    let opened = svc
        .host()
        .unwrap()
        .stats()
        .sessions_opened
        .load(Ordering::Relaxed);
    assert_eq!(opened, 3);
    for (s, _) in sessions {
        s.close().unwrap();
    }
}

#[test]
fn a_gateway_with_an_untrusted_certificate_is_refused() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let other_ca = nephele_service::tls::generate(&["localhost".into()])
        .unwrap()
        .ca
        .unwrap();
    let mut cfg = config(&svc, 320, 240, 30);
    cfg.roots = vec![other_ca];
    let err = connect(cfg).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let mut cfg = config(&svc, 320, 240, 30);
    cfg.server_name = "gateway.example.com".into();
    let err = connect(cfg).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn an_unreachable_gateway_fails_with_a_clear_error() {
    // A bound but silent UDP socket: QUIC's handshake times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let mut cfg = config(&svc, 320, 240, 30);
    cfg.gateway = silent.local_addr().unwrap();
    let t = Instant::now();
    let err = connect(cfg).unwrap_err().to_string();
    assert!(
        err.contains("did not answer") && err.contains("UDP"),
        "{err}"
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

/// Opens a raw QUIC connection to the gateway, completes the hello, then
/// writes `lane_bytes` on a new unidirectional stream; returns how the
/// gateway closed the connection.
async fn misbehave(svc: &DemoService, lane_bytes: &[u8]) -> quinn::ConnectionError {
    use nephele_protocol::framing::{Lane, write_frame};
    use nephele_protocol::wire::Message;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(nephele_api::trust::quic_client_config(&[svc.ca()]).unwrap());
    let conn = ep
        .connect(svc.gateway_addr(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let token = svc.token();
    let mut out = vec![Lane::Control as u8];
    write_frame(&mut out, |o| {
        Message::Hello {
            width: 320,
            height: 240,
            fps: 10,
            token: &token,
            client_session: 0,
            codecs: Default::default(),
        }
        .encode(o)
    });
    send.write_all(&out).await.unwrap();
    let mut buf = [0u8; 64];
    let _ = recv.read(&mut buf).await.unwrap();
    let mut uni = conn.open_uni().await.unwrap();
    uni.write_all(lane_bytes).await.unwrap();
    let _ = uni.finish();
    tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("gateway closed the connection")
}

#[test]
fn a_client_breaking_the_protocol_is_cut_off_and_others_stream_on() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let (good, stats) = connect(config(&svc, 320, 240, 30)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases: [&[u8]; 4] = [
        &[2, 0x00, 0x03, 1, 99, 0], // input lane, unknown message type
        &[2, 0xFF, 0xFF, 1, 2, 3],  // input lane, length over the cap
        &[3, 0x00, 0x0A, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0], // recovery lane carrying a pong
        &[9],                       // no such lane
    ];
    for bytes in cases {
        let closed = rt.block_on(misbehave(&svc, bytes));
        match closed {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(c.error_code, quinn::VarInt::from_u32(1), "{bytes:?}: {c:?}");
            }
            other => panic!("{bytes:?}: closed as {other:?}"),
        }
    }
    let before = stats.frames_presented.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(5), || stats
        .frames_presented
        .load(Ordering::Relaxed)
        > before + 5));
    assert!(!good.has_ended());
    good.close().unwrap();
}
