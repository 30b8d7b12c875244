//! A client and a host, made of the protocol's sans-IO parts, talking over
//! simulated links with a virtual clock: input arrives exactly once and in
//! order, video frames arrive intact and in order, and after loss the client
//! asks for a keyframe and the stream recovers.

use std::time::{Duration, Instant};

use nephele_protocol::input::{InputReceiver, InputSender};
use nephele_protocol::sim::{Link, LinkConfig};
use nephele_protocol::video::{Fragmenter, Reassembler, ReassemblerConfig, ReassemblyEvent};
use nephele_protocol::wire::{InputEvent, Message};

/// The bytes of frame `id`: its length varies like a real stream's
/// (a large keyframe, then small and occasionally larger P frames).
fn frame_bytes(id: u32, key: bool) -> Vec<u8> {
    let len = if key {
        60_000
    } else {
        800 + (id as usize * 7919) % 9000
    };
    (0..len)
        .map(|i| (i as u32 ^ id.wrapping_mul(2654435761)) as u8)
        .collect()
}

struct Outcome {
    inputs_sent: usize,
    inputs_delivered: Vec<u16>,
    in_flight_at_end: usize,
    /// Frames sent while the session ran (the host streams on while the
    /// client drains, so losses near the end can still be repaired).
    frames_sent: u32,
    /// Those of them shown, in order of showing.
    frames_delivered: Vec<u32>,
    /// The newest frame shown at all, drain included.
    last_delivered: Option<u32>,
    keyframe_requests: u64,
    /// Share of fragments the client counted lost.
    measured_loss: f64,
    /// Frames rebuilt from parity.
    fec_recovered: u64,
    /// Longest gap between delivered frames after the first, virtual ms.
    max_freeze_ms: u64,
}

/// Streams for `seconds` with parity sized for `fec_loss` (0: none).
fn run(down: LinkConfig, up: LinkConfig, seconds: u64, fec_loss: f64) -> Outcome {
    let t0 = Instant::now();
    let mut downlink = Link::new(down);
    let mut uplink = Link::new(up);

    // Host side.
    let mut fragmenter = Fragmenter::new(1100);
    let mut receiver = InputReceiver::new();
    let mut force_key = true;
    let mut inputs_delivered = Vec::new();
    let mut frames_sent = 0u32;

    // Client side.
    let mut reasm = Reassembler::new(ReassemblerConfig::default(), t0);
    let mut sender = InputSender::new();
    sender.set_rto(Duration::from_millis(
        up.latency.as_millis() as u64 * 2 + down.latency.as_millis() as u64 + 30,
    ));
    let mut frames_delivered = Vec::new();
    let mut last_delivered = None;
    let mut last_frame_at: Option<Instant> = None;
    let mut max_freeze = Duration::ZERO;
    let mut inputs_sent = 0usize;

    let mut buf = Vec::new();
    let end = t0 + Duration::from_secs(seconds);
    let drain_until = end + Duration::from_secs(2);
    let mut now = t0;
    let mut step = 0u64;
    while now < drain_until {
        // Host: a frame every 16 ms, until shortly before the drain ends.
        if now + Duration::from_millis(500) < drain_until && step.is_multiple_of(16) {
            let id = fragmenter.next_frame_id();
            let key = std::mem::take(&mut force_key);
            let au = frame_bytes(id, key);
            fragmenter.fragment(
                &au,
                key,
                now.duration_since(t0).as_micros() as u64,
                fec_loss,
                |d| downlink.send(now, d),
            );
            if now < end {
                frames_sent += 1;
            }
        }
        while let Some(d) = uplink.poll(now) {
            match Message::decode(&d).expect("client sends valid messages") {
                Message::Input { seq, event } => {
                    receiver.handle(seq, event, |_, ev| {
                        if let InputEvent::Key { usage, .. } = ev {
                            inputs_delivered.push(usage);
                        }
                    });
                    buf.clear();
                    Message::InputAck {
                        seq: receiver.ack(),
                        // This simulation measures no one-way latency.
                        host_us: 0,
                    }
                    .encode(&mut buf);
                    downlink.send(now, &buf);
                }
                Message::KeyframeRequest { .. } => force_key = true,
                other => panic!("unexpected {other:?}"),
            }
        }

        // Client: a key press every 10 ms while the session runs.
        if now < end && step.is_multiple_of(10) {
            sender
                .push(InputEvent::Key {
                    usage: inputs_sent as u16,
                    down: true,
                })
                .unwrap();
            inputs_sent += 1;
        }
        while let Some((seq, event)) = sender.poll_transmit(now) {
            buf.clear();
            Message::Input { seq, event }.encode(&mut buf);
            uplink.send(now, &buf);
        }
        while let Some(d) = downlink.poll(now) {
            match Message::decode(&d).expect("host sends valid messages") {
                Message::Video(f) => {
                    let _ = reasm.handle_fragment(&f, now);
                }
                Message::InputAck { seq, .. } => sender.handle_ack(seq, |_, _| {}),
                other => panic!("unexpected {other:?}"),
            }
        }
        while let Some(ev) = reasm.poll(now) {
            if let ReassemblyEvent::Frame(f) = ev {
                assert_eq!(
                    f.data,
                    frame_bytes(f.frame_id, f.keyframe),
                    "frame {} intact",
                    f.frame_id
                );
                if let Some(prev) = last_frame_at {
                    max_freeze = max_freeze.max(now - prev);
                }
                last_frame_at = Some(now);
                frames_delivered.push(f.frame_id);
                last_delivered = Some(f.frame_id);
                reasm.recycle(f.data);
            }
        }
        if let Some(last_good_frame) = reasm.poll_keyframe_request(now) {
            buf.clear();
            Message::KeyframeRequest { last_good_frame }.encode(&mut buf);
            uplink.send(now, &buf);
        }
        step += 1;
        now = t0 + Duration::from_millis(step);
    }
    Outcome {
        inputs_sent,
        inputs_delivered,
        in_flight_at_end: sender.in_flight(),
        frames_delivered: frames_delivered
            .into_iter()
            .filter(|&id| id < frames_sent)
            .collect(),
        frames_sent,
        last_delivered,
        keyframe_requests: reasm.stats().keyframe_requests,
        // Every frame's fragments judged (the last ones a settle time on).
        measured_loss: reasm
            .settle(now + nephele_protocol::video::SETTLE)
            .loss_since(&Default::default()),
        fec_recovered: reasm.stats().fec_recovered,
        max_freeze_ms: max_freeze.as_millis() as u64,
    }
}

fn link(latency_ms: u64, jitter_ms: u64, loss: f64, seed: u64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::from_millis(jitter_ms),
        loss,
        seed,
    }
}

#[test]
fn clean_link_delivers_everything_in_order() {
    let o = run(
        LinkConfig::clean(Duration::from_millis(20)),
        LinkConfig::clean(Duration::from_millis(20)),
        5,
        0.0,
    );
    assert_eq!(
        o.inputs_delivered,
        (0..o.inputs_sent as u16).collect::<Vec<_>>()
    );
    assert_eq!(o.in_flight_at_end, 0);
    assert_eq!(o.frames_delivered, (0..o.frames_sent).collect::<Vec<_>>());
    assert_eq!(o.keyframe_requests, 0);
    assert!(o.max_freeze_ms <= 17, "freeze {} ms", o.max_freeze_ms);
}

#[test]
fn lossy_jittery_link_loses_no_input_and_recovers_video() {
    for seed in [3, 11, 29] {
        // Without parity a 55-fragment keyframe survives 3 % loss only 19 %
        // of the time, so this checks keyframe recovery at 0.5 % loss.
        let o = run(
            link(20, 6, 0.005, seed),
            link(20, 6, 0.03, seed + 100),
            8,
            0.0,
        );
        assert_eq!(
            o.inputs_delivered,
            (0..o.inputs_sent as u16).collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert_eq!(o.in_flight_at_end, 0, "seed {seed}");
        // Frames come out strictly in order; losses are recovered by keyframes.
        assert!(
            o.frames_delivered.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}"
        );
        assert!(o.keyframe_requests > 0, "seed {seed}");
        let share = o.frames_delivered.len() as f64 / f64::from(o.frames_sent);
        assert!(
            share > 0.5,
            "seed {seed}: only {:.0}% of frames shown",
            share * 100.0
        );
        // The stream never stalls for long: a lost frame costs a keyframe round trip.
        assert!(
            o.max_freeze_ms < 1000,
            "seed {seed}: froze for {} ms",
            o.max_freeze_ms
        );
        assert!(
            o.last_delivered >= Some(o.frames_sent),
            "seed {seed}: the stream recovered by the end"
        );
    }
}

#[test]
fn video_blackout_keeps_asking_for_keyframes_and_input_still_flows() {
    // Everything is lost on the way down for the whole run (3 s, then 2 s of
    // draining): nothing is shown, and the client keeps asking for a
    // keyframe at its rate limit (every 100 ms once the first is overdue).
    let o = run(
        link(20, 0, 1.0, 5),
        LinkConfig::clean(Duration::from_millis(20)),
        3,
        0.0,
    );
    assert!(o.frames_delivered.is_empty());
    assert!(
        (40..=50).contains(&o.keyframe_requests),
        "{} requests",
        o.keyframe_requests
    );
    // Input reaches the host even though no acknowledgement comes back.
    assert_eq!(
        o.inputs_delivered,
        (0..o.inputs_sent as u16).collect::<Vec<_>>()
    );
}

#[test]
fn parity_carries_the_stream_through_five_percent_loss() {
    // The brief's bar: 5 % random loss at 40 ms RTT, ≥ 99 % of frames shown
    // and no freeze over 100 ms. Without parity the same link shows few.
    for seed in [3, 11, 29, 41, 53, 67, 71, 83] {
        let bad = || link(20, 0, 0.05, seed);
        let with = run(bad(), link(20, 0, 0.05, seed + 100), 10, 0.05);
        let share = with.frames_delivered.len() as f64 / f64::from(with.frames_sent);
        assert!(
            share >= 0.99,
            "seed {seed}: {:.1}% of frames shown",
            share * 100.0
        );
        assert!(
            with.max_freeze_ms <= 100,
            "seed {seed}: froze for {} ms",
            with.max_freeze_ms
        );
        assert!(
            with.fec_recovered > 20,
            "seed {seed}: {}",
            with.fec_recovered
        );
        // The client's loss estimate, which sizes the host's parity, is right.
        assert!(
            (0.04..0.06).contains(&with.measured_loss),
            "seed {seed}: measured {:.3}",
            with.measured_loss
        );
        let without = run(bad(), link(20, 0, 0.05, seed + 100), 10, 0.0);
        let bare = without.frames_delivered.len() as f64 / f64::from(without.frames_sent);
        assert!(
            bare < 0.9,
            "seed {seed}: {:.1}% without parity",
            bare * 100.0
        );
    }
}
