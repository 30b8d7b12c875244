//! Choosing a PoP among many over simulated links on a virtual clock: the
//! same prober and reply code as the real client and gateway, with latency,
//! jitter and loss from `sim::Link`.

use std::time::{Duration, Instant};

use nephele_protocol::probe::{
    CandidateState, ProbePlan, ProbeReply, ProbeRequest, ProbeStatus, Prober, RankWeights, rank,
};
use nephele_protocol::sim::{Link, LinkConfig};

struct Pop {
    up: Link,
    down: Link,
    silent: bool,
    load: u16,
}

fn pop(rtt_ms: f64, jitter_ms: f64, loss: f64, seed: u64) -> Pop {
    let one_way = Duration::from_secs_f64(rtt_ms / 2000.0);
    let cfg = |s| LinkConfig {
        latency: one_way,
        jitter: Duration::from_secs_f64(jitter_ms / 2000.0),
        loss,
        seed: s,
    };
    Pop {
        up: Link::new(cfg(seed * 2 + 1)),
        down: Link::new(cfg(seed * 2 + 2)),
        silent: false,
        load: 0,
    }
}

/// Runs one probing round to its decision; returns the ranking, the time
/// from start to decision, and the results.
fn decide(
    pops: &mut [Pop],
) -> (
    Vec<usize>,
    Duration,
    Vec<nephele_protocol::probe::ProbeResult>,
) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut prober = Prober::new(pops.len(), b"token", ProbePlan::default(), now);
    let mut out = Vec::new();
    let step = Duration::from_micros(250);
    while !prober.is_done(now) {
        while let Some(i) = prober.poll_transmit(now, &mut out) {
            pops[i].up.send(now, &out);
        }
        for (i, p) in pops.iter_mut().enumerate() {
            while let Some(req) = p.up.poll(now) {
                if p.silent {
                    continue;
                }
                let req = ProbeRequest::decode(&req).expect("valid request");
                let reply = ProbeReply::to(&req, ProbeStatus::Ok, p.load).encode();
                assert!(reply.len() <= out.len().max(64));
                p.down.send(now, &reply);
            }
            while let Some(reply) = p.down.poll(now) {
                prober.handle_reply(i, &reply, now);
            }
        }
        now += step;
    }
    let results = prober.results(now);
    (rank(&results, &RankWeights::default()), now - t0, results)
}

#[test]
fn twenty_pops_nearest_wins_whenever_it_is_fifteen_percent_nearer() {
    // Many layouts: the nearest is 15 % nearer than the next, the rest are
    // spread further out, with a little jitter everywhere.
    for layout in 0..40u64 {
        let best_rtt = 8.0 + (layout as f64) * 2.5;
        let mut rtts: Vec<f64> = (0..20)
            .map(|i| best_rtt * 1.15 + (i as f64) * 3.0 + ((layout * 7 + i) % 5) as f64)
            .collect();
        let best = (layout as usize * 7) % 20;
        rtts[best] = best_rtt;
        let mut pops: Vec<Pop> = rtts
            .iter()
            .enumerate()
            .map(|(i, &r)| pop(r, 0.4, 0.0, layout * 100 + i as u64))
            .collect();
        let (order, took, _) = decide(&mut pops);
        assert_eq!(order[0], best, "layout {layout}: rtts {rtts:?}");
        assert!(
            took <= Duration::from_millis(500),
            "layout {layout} took {took:?}"
        );
    }
}

#[test]
fn a_silent_pop_is_skipped_at_the_timeout_not_waited_for() {
    let mut pops: Vec<Pop> = (0..5)
        .map(|i| pop(10.0 + i as f64 * 10.0, 0.0, 0.0, i))
        .collect();
    pops[0].silent = true;
    let (order, took, results) = decide(&mut pops);
    assert_eq!(results[0].state, CandidateState::Silent);
    assert_eq!(order[0], 1);
    assert_eq!(*order.last().unwrap(), 0);
    assert!(took <= Duration::from_millis(400), "{took:?}");
}

#[test]
fn the_decision_does_not_wait_for_far_pops_once_a_near_one_is_measured() {
    let mut pops = vec![pop(5.0, 0.0, 0.0, 1), pop(300.0, 0.0, 0.0, 2)];
    let (order, took, results) = decide(&mut pops);
    assert_eq!(order[0], 0);
    // Last round at 80 ms + 30 ms: far below the 300 ms RTT and the timeout.
    assert!(took < Duration::from_millis(150), "{took:?}");
    assert_eq!(results[1].state, CandidateState::Silent);
}

#[test]
fn a_lossy_near_pop_loses_to_a_clean_one_slightly_further() {
    // 40 % loss at 10 ms against a clean 25 ms, over several seeds.
    let mut lossy_won = 0;
    for seed in 0..20 {
        let mut pops = vec![
            pop(10.0, 0.0, 0.4, seed * 3),
            pop(25.0, 0.0, 0.0, seed * 3 + 1),
        ];
        let (order, _, results) = decide(&mut pops);
        if results[0].loss > 0.0 {
            assert_eq!(order[0], 1, "seed {seed}: {results:?}");
        } else {
            lossy_won += 1;
        }
    }
    // Some seeds lose no probe at all (then the near one rightly wins), but not most.
    assert!(lossy_won < 10, "{lossy_won}");
}

#[test]
fn load_breaks_near_ties() {
    let mut pops = vec![pop(20.0, 0.0, 0.0, 1), pop(22.0, 0.0, 0.0, 2)];
    pops[0].load = 900;
    let (order, _, results) = decide(&mut pops);
    assert!((results[0].load - 0.9).abs() < 1e-9);
    assert_eq!(order[0], 1);
}

#[test]
fn on_a_satellite_path_the_first_answers_are_awaited() {
    // Every PoP is beyond the normal 400 ms timeout: choose among those that
    // answer, instead of declaring them all silent.
    let mut pops = vec![
        pop(620.0, 0.0, 0.0, 1),
        pop(600.0, 0.0, 0.0, 2),
        pop(900.0, 0.0, 0.0, 3),
    ];
    let (order, took, results) = decide(&mut pops);
    assert_eq!(order[0], 1, "{results:?}");
    assert_eq!(results[0].state, CandidateState::Usable);
    assert_eq!(results[2].state, CandidateState::Silent);
    assert!(took < Duration::from_millis(800), "{took:?}");
}

#[test]
fn with_no_answer_at_all_probing_gives_up() {
    let mut pops = vec![pop(10.0, 0.0, 0.0, 1)];
    pops[0].silent = true;
    let (_, took, results) = decide(&mut pops);
    assert_eq!(results[0].state, CandidateState::Silent);
    assert_eq!(took, ProbePlan::default().give_up);
}

#[test]
fn a_lost_probe_does_not_hold_the_decision_to_the_timeout() {
    // Every PoP loses 20 % of probes: the decision still comes long before 400 ms.
    for seed in 0..10 {
        let mut pops: Vec<Pop> = (0..5)
            .map(|i| pop(10.0 + i as f64 * 10.0, 0.0, 0.2, seed * 10 + i))
            .collect();
        let (_, took, _) = decide(&mut pops);
        assert!(took < Duration::from_millis(250), "seed {seed}: {took:?}");
    }
}
