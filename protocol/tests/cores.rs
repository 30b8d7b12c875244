//! The session cores together — client ↔ gateway ↔ host — over simulated
//! links on a virtual clock (see `world`): the decisions that used to be
//! tested only through real sockets and the wall clock, each in a few
//! milliseconds of CPU.
//!
//! * the idle ladder: warned, paused, suspended, and a key resumes;
//! * a gateway lost: the client reconnects through the next and every
//!   keystroke arrives exactly once;
//! * a host lost: the backup takes the session over from the replicated
//!   state, and every keystroke arrives exactly once;
//! * loss: the client reports it, the host sizes parity for it, parity
//!   repairs it, and what parity cannot repair costs a keyframe request;
//! * congestion: a queue on a narrow link reaches the host as a report and
//!   brings its bitrate under the link's;
//! * and underneath them all: on a clean link every frame arrives in order
//!   and every key once; on a lossy, jittery, reordering one nothing shown
//!   is stale or damaged and still no key is lost.

mod world;

use std::time::Duration;

use nephele_protocol::activity::Phase;
use nephele_protocol::impair::Impairment;
use world::{PathSpec, Setup, World};

/// The client types letter `i` of a cycle every `every_ms` between
/// `from_ms` and `to_ms`.
fn typist(from_ms: u64, to_ms: u64, every_ms: u64) -> impl FnMut(&mut World) {
    let mut i = 0u16;
    move |w: &mut World| {
        let t = w.ms();
        if (from_ms..to_ms).contains(&t) && (t - from_ms).is_multiple_of(every_ms) {
            w.type_key(4 + i % 26);
            i += 1;
        }
    }
}

fn phase_at(w: &World, phase: Phase) -> Option<u64> {
    w.seen
        .phases
        .iter()
        .find(|(_, p, _)| *p == phase)
        .map(|(t, _, _)| t.duration_since(w.t0).as_millis() as u64)
}

#[test]
fn the_idle_ladder_warns_pauses_suspends_and_a_key_resumes_keyframe_first() {
    let mut w = World::new(Setup {
        policy: "warn=2s,pause=3s,suspend=6s".parse().unwrap(),
        ..Setup::default()
    });
    w.run_until(8000, |_| {});
    // The idle clock starts with the session, a round trip after t0.
    let warned = phase_at(&w, Phase::Warning).expect("warned");
    let paused = phase_at(&w, Phase::Paused).expect("paused");
    let suspended = phase_at(&w, Phase::Suspended).expect("suspended");
    assert!((2000..2100).contains(&warned), "warned at {warned} ms");
    assert!((3000..3100).contains(&paused), "paused at {paused} ms");
    assert!(
        (6000..6100).contains(&suspended),
        "suspended at {suspended} ms"
    );
    let warning_ms = w.seen.phases[0].2;
    assert!(
        (900..=1000).contains(&warning_ms),
        "pause announced in {warning_ms} ms"
    );
    // Streaming until the pause, nothing after it: media asleep, then stopped.
    assert!(w.frames_between(500, 2900) > 140);
    assert_eq!(w.frames_between(paused + 50, 8000), 0);
    let host = &w.hosts[0];
    let log: Vec<&str> = host.media_log.iter().map(|(_, m)| *m).collect();
    assert_eq!(log, ["start", "sleep", "stop"]);
    // A key at 8 s resumes: media restarted and awake, a keyframe first.
    w.type_key(4);
    w.run_until(9000, |_| {});
    let resumed = w.first_frame_after(8000).expect("a picture after the key");
    let took = resumed.duration_since(w.at(8000));
    assert!(
        took <= Duration::from_millis(60),
        "first picture {took:?} after the key"
    );
    let log: Vec<&str> = w.hosts[0].media_log.iter().map(|(_, m)| *m).collect();
    assert_eq!(log, ["start", "sleep", "stop", "start", "wake"]);
    let resuming = phase_at(&w, Phase::Resuming).expect("told it resumes");
    assert!(resuming >= 8000);
    let (_, last, _) = *w.seen.phases.last().unwrap();
    assert_eq!(last, Phase::Streaming, "and then that it streams");
    assert!(w.frames_between(8100, 9000) > 50);
    let c = w.hosts[0].core.counters();
    assert_eq!((c.pauses, c.suspends, c.resumes), (1, 1, 1));
    assert_eq!(w.seen.keys_sent, w.hosts[0].desktops[&42].keys);
}

#[test]
fn a_lost_gateway_costs_one_reconnect_and_every_keystroke_arrives_once() {
    let mut w = World::new(Setup {
        gateways: 2,
        ..Setup::default()
    });
    let mut typing = typist(100, 4000, 20);
    w.run_until(1500, &mut typing);
    w.kill_gateway(0);
    w.run_until(6000, &mut typing);
    assert_eq!(w.seen.lost_paths.len(), 1, "one loss");
    assert_eq!(w.seen.welcomes, 2, "one reconnect");
    // Noticed after QUIC's idle timeout, streaming again at once after.
    let lost = w.seen.lost_paths[0].duration_since(w.t0);
    assert!(
        (Duration::from_millis(2400)..Duration::from_millis(2450)).contains(&lost),
        "{lost:?}"
    );
    let gap = w
        .first_frame_after(1500)
        .unwrap()
        .duration_since(w.at(1500));
    assert!(gap <= Duration::from_millis(1000), "no picture for {gap:?}");
    let host = &w.hosts[0];
    assert_eq!(host.core.counters().reattached, 1);
    let desktop = &host.desktops[&42];
    assert!(desktop.releases >= 1, "held input released on the new path");
    assert_eq!(w.seen.keys_sent.len(), 195);
    assert_eq!(desktop.keys, w.seen.keys_sent, "exactly once, in order");
    // What waited unacknowledged went at once on the new path: the first
    // key after it was applied a one-way trip after the welcome.
    let back = w.seen.paths[1];
    let first = desktop.applied_at.iter().find(|t| **t >= back).unwrap();
    let took = first.duration_since(back);
    assert!(
        took <= Duration::from_millis(15),
        "{took:?} after the welcome"
    );
    assert_eq!(w.client.in_flight(), 0, "all acknowledged");
    assert!(w.frames_between(5000, 6000) > 55);
}

#[test]
fn the_window_size_reaches_the_host_through_the_gateway_once_per_change() {
    let mut w = World::new(Setup {
        gateways: 2,
        ..Setup::default()
    });
    w.run_until(500, |_| {});
    w.client.set_display_size(1001, 700, 60);
    w.run_until(1000, |_| {});
    assert_eq!(w.hosts[0].desktops[&42].sizes, [(1000, 700)]);
    // Told again after a reconnect: the host has that size already.
    w.kill_gateway(0);
    w.run_until(5000, |_| {});
    assert_eq!(w.seen.welcomes, 2, "one reconnect");
    w.client.set_display_size(1600, 900, 60);
    w.run_until(5500, |_| {});
    assert_eq!(w.hosts[0].desktops[&42].sizes, [(1000, 700), (1600, 900)]);
}

#[test]
fn a_lost_host_is_taken_over_by_its_backup_and_every_keystroke_arrives_once() {
    let mut w = World::new(Setup {
        hosts: 2,
        ..Setup::default()
    });
    let mut typing = typist(100, 5000, 30);
    w.run_until(2000, &mut typing);
    w.kill_host(0);
    w.run_until(7000, &mut typing);
    assert_eq!(w.gateways[0].failovers, 1);
    assert_eq!(w.seen.takeovers, 1, "the client saw a new host");
    assert_eq!(w.seen.lost_paths.len(), 0, "on the same path");
    let backup = &w.hosts[1];
    assert_eq!(backup.core.counters().takeovers, 1);
    // The primary applied some keys and replicated them before
    // acknowledging; the backup continued from there.
    let primary = w.hosts[0].desktops[&42].keys.len();
    assert!(primary > 50, "{primary}");
    assert_eq!(w.seen.keys_sent.len(), 164);
    assert_eq!(
        backup.desktops[&42].keys, w.seen.keys_sent,
        "exactly once, in order, across the takeover"
    );
    // What the primary had not acknowledged went again at once: the
    // backup applied it a one-way trip after the client heard of it.
    let first = backup.desktops[&42].applied_at[0];
    let took = first.duration_since(w.seen.taken_over_at[0]);
    assert!(took <= Duration::from_millis(15), "{took:?}");
    assert_eq!(w.client.in_flight(), 0);
    // The host fell silent at 2 s; after a second the session moved.
    let gap = w.longest_gap(1000, 6000);
    assert!(
        (Duration::from_millis(1000)..Duration::from_millis(1400)).contains(&gap),
        "{gap:?}"
    );
    assert!(w.frames_between(5000, 6000) > 55);
}

#[test]
fn a_clean_link_delivers_every_frame_in_order_and_every_keystroke_once() {
    let mut w = World::new(Setup::default());
    w.run_until(5000, typist(100, 4500, 30));
    let ids: Vec<u32> = w.seen.frames.iter().map(|(_, id)| *id).collect();
    let first = ids[0];
    assert_eq!(ids, (first..first + ids.len() as u32).collect::<Vec<_>>());
    assert!(ids.len() > 290, "{} frames in 5 s at 60/s", ids.len());
    assert_eq!((w.seen.lost, w.seen.corrupt), (0, 0));
    assert_eq!(w.client.counters().keyframes_requested, 0);
    let gap = w.longest_gap(200, 5000);
    assert!(gap <= Duration::from_millis(17), "froze {gap:?}");
    assert_eq!(w.seen.keys_sent.len(), 147);
    assert_eq!(w.hosts[0].desktops[&42].keys, w.seen.keys_sent);
    assert_eq!(w.client.in_flight(), 0);
}

#[test]
fn a_lossy_jittery_link_loses_no_keystroke_and_the_picture_recovers() {
    // 15 % loss both ways with jitter that reorders: more than parity
    // sized for it repairs in bursts, so frames are given up and asked
    // again, but nothing shown is stale or damaged, and no key is lost.
    for seed in [5, 17, 23] {
        let mut p = PathSpec::clean(Duration::from_millis(25));
        for imp in [&mut p.down, &mut p.up] {
            imp.loss = 0.15;
            imp.jitter = Duration::from_millis(8);
            imp.seed = seed;
        }
        let mut w = World::new(Setup {
            path: p,
            ..Setup::default()
        });
        w.run_until(8000, typist(100, 7000, 25));
        let ids: Vec<u32> = w.seen.frames.iter().map(|(_, id)| *id).collect();
        assert!(
            ids.windows(2).all(|p| p[0] < p[1]),
            "seed {seed}: a frame shown after a newer one"
        );
        assert_eq!(w.seen.corrupt, 0, "seed {seed}");
        assert_eq!(
            w.hosts[0].desktops[&42].keys, w.seen.keys_sent,
            "seed {seed}: every key once, in order"
        );
        assert_eq!(w.client.in_flight(), 0, "seed {seed}");
        let c = w.client.counters();
        assert!(
            w.seen.lost > 0 && c.keyframes_requested > 0,
            "seed {seed}: {} lost, {} keyframes asked",
            w.seen.lost,
            c.keyframes_requested
        );
        assert!(w.frames_between(7000, 8000) > 40, "seed {seed}");
    }
}

fn lossy(loss: f64, seed: u64) -> PathSpec {
    let mut p = PathSpec::clean(Duration::from_millis(20));
    p.down.loss = loss;
    p.down.seed = seed;
    p
}

#[test]
fn loss_is_reported_parity_is_sized_for_it_and_repairs_it() {
    // At 10 % the first reports' figure (parity for 5 %) would not do:
    // the host must size parity by what the client reports. The brief's
    // bar (99 % of frames at 5 % loss) holds; at 10 %, 98 %.
    for (loss, seed, bar) in [
        (0.05, 3, 99),
        (0.05, 11, 99),
        (0.10, 29, 98),
        (0.10, 41, 98),
    ] {
        let mut w = World::new(Setup {
            path: lossy(loss, seed),
            ..Setup::default()
        });
        w.run_until(10_000, |_| {});
        let c = w.client.counters();
        let want = (loss * 1000.0) as u64;
        // The client reports what it sees (quick to rise, slow to fall) …
        assert!(
            (want * 8 / 10..=want * 17 / 10).contains(&c.loss_permille),
            "{loss} seed {seed}: reported {}",
            c.loss_permille
        );
        // … and the host sizes its parity by it.
        let media = &w.hosts[0].media[&42];
        let sized = u64::from(media.parity_for_permille());
        assert!(
            (want * 8 / 10..=want * 17 / 10).contains(&sized),
            "{loss} seed {seed}: parity for {sized} per mille"
        );
        let sent = media.frames as usize;
        let shown = w.seen.frames.len();
        assert!(
            shown * 100 >= sent * bar,
            "{loss} seed {seed}: {shown} of {sent} frames"
        );
        assert!(
            c.fec_recovered > 20,
            "{loss} seed {seed}: {}",
            c.fec_recovered
        );
        let gap = w.longest_gap(500, 9900);
        assert!(
            gap <= Duration::from_millis(100),
            "{loss} seed {seed}: froze {gap:?}"
        );
        assert_eq!(w.seen.corrupt, 0);
    }
}

#[test]
fn a_blackout_costs_a_keyframe_request_and_the_stream_comes_back() {
    let mut p = PathSpec::clean(Duration::from_millis(20));
    p.down.blackouts = vec![(Duration::from_millis(3000), Duration::from_millis(500))];
    let mut w = World::new(Setup {
        path: p,
        ..Setup::default()
    });
    w.run_until(6000, |_| {});
    let c = w.client.counters();
    assert!(c.keyframes_requested >= 1, "{c:?}");
    assert!(w.seen.lost > 0);
    let gap = w.longest_gap(1000, 6000);
    assert!(
        (Duration::from_millis(500)..Duration::from_millis(700)).contains(&gap),
        "{gap:?}"
    );
    assert!(w.frames_between(4000, 6000) > 110);
    // Without it no keyframe is asked for.
    let mut w = World::new(Setup {
        path: PathSpec::clean(Duration::from_millis(20)),
        ..Setup::default()
    });
    w.run_until(6000, |_| {});
    assert_eq!(w.client.counters().keyframes_requested, 0);
}

#[test]
fn a_queue_on_a_narrow_link_brings_the_bitrate_under_the_link() {
    let mut p = PathSpec::clean(Duration::from_millis(20));
    p.down = Impairment {
        delay: Duration::from_millis(20),
        bandwidth_bps: Some(10_000_000),
        queue: Duration::from_millis(200),
        ..Impairment::default()
    };
    let mut w = World::new(Setup {
        path: p,
        bitrate: 20_000_000,
        ..Setup::default()
    });
    w.run_until(15_000, |_| {});
    let host = &w.hosts[0];
    assert!(host.core.counters().rate_decreases > 0);
    let media = &host.media[&42];
    let late: Vec<u32> = media
        .targets
        .iter()
        .filter(|(t, _)| *t >= w.at(8000))
        .map(|(_, b)| *b)
        .collect();
    let mean = late.iter().map(|&b| f64::from(b)).sum::<f64>() / late.len() as f64;
    assert!(
        (5_000_000.0..10_500_000.0).contains(&mean),
        "target {mean:.0} bit/s behind a 10 Mbit/s link"
    );
    let c = w.client.counters();
    assert!(
        c.queue_delay_max_us < 150_000,
        "the queue peaked at {} µs",
        c.queue_delay_max_us
    );
    assert!(w.frames_between(10_000, 15_000) > 250);
}

#[test]
fn a_link_that_narrows_mid_session_costs_a_moment_not_the_stream() {
    // 20 Mbit/s, then 5 from 4 s to 8 s: the host must fall to what
    // arrives in a step or two, not slide down while the queue overflows,
    // and climb back once the link widens.
    // (A phase is the whole path from then on.)
    let narrow = |bw: u64| Impairment {
        delay: Duration::from_millis(20),
        bandwidth_bps: Some(bw),
        queue: Duration::from_millis(200),
        ..Impairment::default()
    };
    let mut p = PathSpec::clean(Duration::from_millis(20));
    p.down = Impairment {
        delay: Duration::from_millis(20),
        bandwidth_bps: Some(20_000_000),
        queue: Duration::from_millis(200),
        phases: vec![
            (Duration::from_secs(4), narrow(5_000_000)),
            (Duration::from_secs(8), narrow(20_000_000)),
        ],
        ..Impairment::default()
    };
    let mut w = World::new(Setup {
        path: p,
        bitrate: 20_000_000,
        ..Setup::default()
    });
    w.run_until(14_000, |_| {});
    let mean_target = |w: &World, from: u64, to: u64| {
        let t: Vec<f64> = w.hosts[0].media[&42]
            .targets
            .iter()
            .filter(|(t, _)| *t >= w.at(from) && *t < w.at(to))
            .map(|(_, b)| f64::from(*b))
            .collect();
        t.iter().sum::<f64>() / t.len().max(1) as f64
    };
    let narrowed = mean_target(&w, 5000, 8000);
    assert!(
        narrowed < 5_000_000.0,
        "{narrowed:.0} bit/s through 5 Mbit/s"
    );
    // The climb back is cautious (a tenth a second, once congestion was
    // seen), but it climbs.
    let widened = mean_target(&w, 12_000, 14_000);
    assert!(
        widened > narrowed * 1.3,
        "{widened:.0} bit/s back at 20 Mbit/s, from {narrowed:.0}"
    );
    // A moment, not the stream: no long freeze, and frames throughout.
    let gap = w.longest_gap(1000, 14_000);
    assert!(gap < Duration::from_millis(1500), "froze {gap:?}");
    for second in 1..14 {
        assert!(
            w.frames_between(second * 1000, second * 1000 + 1000) > 0,
            "no frame in second {second}"
        );
    }
}
