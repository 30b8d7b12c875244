//! Fragmenting and reassembling, with and without loss.

use std::time::{Duration, Instant};

use super::*;
use crate::wire::{FRAG_FLAG_KEYFRAME, Message, VideoFragment};
use proptest::prelude::*;

fn frames_of(sizes: &[usize], key_every: usize) -> Vec<(Vec<u8>, bool)> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (
                (0..n).map(|b| (b * 7 + i * 13) as u8).collect(),
                i % key_every == 0,
            )
        })
        .collect()
}

fn fragment_all(frames: &[(Vec<u8>, bool)], max_message: usize) -> Vec<Vec<u8>> {
    let mut f = Fragmenter::new(max_message);
    let mut out = Vec::new();
    for (i, (au, key)) in frames.iter().enumerate() {
        f.fragment(au, *key, i as u64 * 1000, 0.0, |d: &[u8]| {
            out.push(d.to_vec())
        });
    }
    out
}

fn feed(r: &mut Reassembler, dgram: &[u8], now: Instant) -> Result<(), FragmentError> {
    match Message::decode(dgram).unwrap() {
        Message::Video(f) => r.handle_fragment(&f, now),
        other => panic!("unexpected {other:?}"),
    }
}

fn drain(r: &mut Reassembler, now: Instant, got: &mut Vec<(u32, Vec<u8>)>, lost: &mut Vec<u32>) {
    while let Some(ev) = r.poll(now) {
        match ev {
            ReassemblyEvent::Frame(f) => got.push((f.frame_id, f.data)),
            ReassemblyEvent::Lost { frame_id, count } => {
                lost.extend((0..count).map(|i| frame_id.wrapping_add(i)))
            }
        }
    }
}

/// Parity that trails its frame's data across a measuring window is not
/// loss; a fragment that never comes is, once its frame has settled.
#[test]
fn loss_is_judged_per_frame_not_per_window() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
    let mut f = Fragmenter::new(1200);
    let mut window = r.settle(t0);
    let mut losses = Vec::new();
    let mut late = Vec::new();
    for frame in 0..20u64 {
        let at = t0 + Duration::from_millis(frame * 16);
        let mut dgrams = Vec::new();
        f.fragment_with_parity(&[frame as u8; 3000], frame == 0, frame, 2, |d: &[u8]| {
            dgrams.push(d.to_vec())
        });
        assert_eq!(dgrams.len(), 5, "three data and two parity fragments");
        // Frame 15 loses a data fragment on the way (parity repairs it).
        let arrives = |i: usize| !(frame == 15 && i == 1);
        for (i, d) in dgrams.iter().enumerate().take(3) {
            if arrives(i) {
                feed(&mut r, d, at).unwrap();
            }
        }
        // A measuring window ends between each frame's data and parity.
        let now = at + Duration::from_millis(5);
        let (mut got, mut lost) = (Vec::new(), Vec::new());
        drain(&mut r, now, &mut got, &mut lost);
        let counters = r.settle(now);
        losses.push(counters.loss_since(&window));
        window = counters;
        for d in &dgrams[3..] {
            // Late for a frame already shown, or the repair of frame 15.
            let _ = feed(&mut r, d, at + Duration::from_millis(10));
        }
        drain(&mut r, at + Duration::from_millis(10), &mut got, &mut lost);
        assert!(lost.is_empty(), "frame {frame}");
        if frame == 15 {
            late = dgrams[1].clone();
        }
    }
    let end = r.settle(t0 + Duration::from_secs(2));
    // The fragment frame 15 lost arrives after all: it counts as
    // received and does not start a new frame's count.
    let _ = feed(&mut r, &late, t0 + Duration::from_secs(3));
    let after = r.settle(t0 + Duration::from_secs(4));
    assert_eq!(after.fragments_expected, 100);
    assert_eq!(after.fragments_received, 100);
    assert!(
        losses[..15].iter().all(|&l| l == 0.0),
        "no phantom loss: {losses:?}"
    );
    assert_eq!(end.fragments_expected, 100);
    assert_eq!(end.fragments_received, 99);
    assert!((end.loss_since(&Default::default()) - 0.01).abs() < 1e-9);
}

proptest! {
    /// Any permutation of the fragments of a window of frames yields all
    /// frames, in order, byte for byte.
    #[test]
    fn reorder_within_window(sizes in proptest::collection::vec(1usize..5000, 1..6), seed in any::<u64>()) {
        let frames = frames_of(&sizes, 1);
        let mut dgrams = fragment_all(&frames, 300);
        // Deterministic shuffle.
        let mut s = seed | 1;
        for i in (1..dgrams.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            dgrams.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
        for d in &dgrams {
            feed(&mut r, d, t0).unwrap();
        }
        let (mut got, mut lost) = (Vec::new(), Vec::new());
        drain(&mut r, t0 + Duration::from_millis(10), &mut got, &mut lost);
        prop_assert!(lost.is_empty(), "lost {:?}", lost);
        prop_assert_eq!(got.len(), frames.len());
        for (i, (id, data)) in got.iter().enumerate() {
            prop_assert_eq!(*id as usize, i);
            prop_assert_eq!(data, &frames[i].0);
        }
    }

    /// Any `parity` of a frame's fragments may be lost, in any order of
    /// arrival: the frame comes back intact, rebuilt from parity.
    #[test]
    fn parity_rebuilds_any_losses_it_covers(len in 1usize..20_000, parity in 1u16..6, seed in any::<u64>()) {
        let au: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        let mut f = Fragmenter::new(1200);
        let mut dgrams = Vec::new();
        f.fragment_with_parity(&au, true, 7, parity, |d: &[u8]| dgrams.push(d.to_vec()));
        let count = au.len().div_ceil(f.payload_size());
        prop_assert_eq!(dgrams.len(), count + usize::from(parity));
        // Drop `parity` fragments chosen by the seed, shuffle the rest.
        let mut rng = seed | 1;
        let mut next = || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
        for _ in 0..parity {
            let i = (next() % dgrams.len() as u64) as usize;
            dgrams.remove(i);
        }
        for i in (1..dgrams.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            dgrams.swap(i, j);
        }
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
        for d in &dgrams {
            let _ = feed(&mut r, d, t0);
        }
        let (mut got, mut lost) = (Vec::new(), Vec::new());
        drain(&mut r, t0, &mut got, &mut lost);
        prop_assert!(lost.is_empty());
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(&got[0].1, &au);
        prop_assert!(r.stats().fec_recovered <= 1);
    }

    /// Random garbage fragments never panic and never grow memory past the slot bound.
    #[test]
    fn hostile_fragments_are_bounded(frags in proptest::collection::vec((any::<u32>(), 1u16..2000, any::<u16>(), proptest::collection::vec(any::<u8>(), 1..1100)), 1..200)) {
        let t0 = Instant::now();
        let cfg = ReassemblerConfig { max_frame_bytes: 1 << 20, ..Default::default() };
        let mut r = Reassembler::new(cfg.clone(), t0);
        for (i, (id, count, index, payload)) in frags.iter().enumerate() {
            let shard = payload.len() as u16;
            let parity = (index % 3).min(*count);
            let f = VideoFragment { frame_id: id % 16, index: index % (count + parity), count: *count, parity, flags: (i % 2) as u8, capture_us: 0, shard, frame_len: u32::from(*count) * u32::from(shard), payload };
            let _ = r.handle_fragment(&f, t0 + Duration::from_millis(i as u64));
            while r.poll(t0 + Duration::from_millis(i as u64)).is_some() {}
            let held = r.held_bytes();
            // Vec growth may double a buffer once; never more than that per slot.
            prop_assert!(held <= cfg.slots * (2 * cfg.max_frame_bytes + 2 * 1100));
        }
    }
}

#[test]
fn lost_fragment_drops_frame_at_deadline_and_withholds_until_keyframe() {
    let frames = frames_of(&[3000, 3000, 3000, 3000], 3); // keyframes: 0 and 3
    let mut f = Fragmenter::new(1000);
    let mut per_frame: Vec<Vec<Vec<u8>>> = Vec::new();
    for (i, (au, key)) in frames.iter().enumerate() {
        let mut v = Vec::new();
        f.fragment(au, *key, i as u64, 0.0, |d: &[u8]| v.push(d.to_vec()));
        per_frame.push(v);
    }
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
    let (mut got, mut lost) = (Vec::new(), Vec::new());
    for d in &per_frame[0] {
        feed(&mut r, d, t0).unwrap();
    }
    // Frame 1 loses its second fragment.
    for (i, d) in per_frame[1].iter().enumerate() {
        if i != 1 {
            feed(&mut r, d, t0).unwrap();
        }
    }
    for d in &per_frame[2] {
        feed(&mut r, d, t0).unwrap();
    }
    drain(&mut r, t0, &mut got, &mut lost);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0]);
    assert!(
        r.poll_keyframe_request(t0).is_none(),
        "no loss declared yet"
    );
    let late = t0 + Duration::from_millis(200);
    drain(&mut r, late, &mut got, &mut lost);
    // Frame 1 timed out, frame 2 depends on it and is withheld.
    assert_eq!(lost, vec![1, 2]);
    assert_eq!(r.poll_keyframe_request(late), Some(0));
    assert_eq!(r.poll_keyframe_request(late), None, "rate limited");
    for d in &per_frame[3] {
        feed(&mut r, d, late).unwrap();
    }
    drain(&mut r, late, &mut got, &mut lost);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 3]);
    assert!(!r.awaiting_keyframe());
    assert_eq!(r.poll_keyframe_request(late + Duration::from_secs(1)), None);
    // A fragment of an old frame is late.
    assert_eq!(
        feed(&mut r, &per_frame[1][1], late),
        Err(FragmentError::Late(1))
    );
}

/// Found by fuzzing: a fragment far ahead used to make `poll` walk the
/// gap one frame at a time (billions of steps).
#[test]
fn a_huge_gap_in_frame_numbers_is_skipped_at_once() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
    let key = VideoFragment {
        frame_id: 0,
        index: 0,
        count: 1,
        parity: 0,
        flags: FRAG_FLAG_KEYFRAME,
        capture_us: 0,
        shard: 1,
        frame_len: 1,
        payload: &[1],
    };
    r.handle_fragment(&key, t0).unwrap();
    let far = VideoFragment {
        frame_id: 0x7FFF_FFF0,
        ..key.clone()
    };
    r.handle_fragment(&far, t0).unwrap();
    let (mut got, mut events) = (0, 0);
    while let Some(ev) = r.poll(t0 + Duration::from_millis(10)) {
        events += 1;
        if let ReassemblyEvent::Frame(_) = ev {
            got += 1;
        }
    }
    assert_eq!(got, 2);
    assert!(events <= 3, "{events} events");
    assert_eq!(r.stats().lost, 0x7FFF_FFEF);
}

#[test]
fn first_keyframe_is_awaited_before_asking() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
    assert_eq!(
        r.poll_keyframe_request(t0 + Duration::from_millis(10)),
        None
    );
    assert_eq!(
        r.poll_timeout(t0),
        Some(t0 + ReassemblerConfig::default().deadline)
    );
    assert_eq!(
        r.poll_keyframe_request(t0 + Duration::from_millis(200)),
        Some(0)
    );
}

#[test]
fn wholly_lost_frame_is_skipped_after_grace() {
    let frames = frames_of(&[100, 100, 100], 1);
    let d = fragment_all(&frames, 1200);
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
    feed(&mut r, &d[0], t0).unwrap();
    feed(&mut r, &d[2], t0).unwrap();
    let (mut got, mut lost) = (Vec::new(), Vec::new());
    drain(&mut r, t0, &mut got, &mut lost);
    assert_eq!(got.len(), 1);
    assert!(lost.is_empty(), "within grace, frame 1 may still come");
    drain(&mut r, t0 + Duration::from_millis(5), &mut got, &mut lost);
    assert_eq!(lost, vec![1]);
    // Frame 2 is a keyframe here, so it is delivered.
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 2]);
}

#[test]
fn duplicates_and_buffers_are_reused() {
    let frames = frames_of(&[2500; 20], 1);
    let mut f = Fragmenter::new(1000);
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
    let mut caps = Vec::new();
    for (i, (au, key)) in frames.iter().enumerate() {
        let mut v = Vec::new();
        f.fragment(au, *key, i as u64, 0.0, |d: &[u8]| v.push(d.to_vec()));
        feed(&mut r, &v[0], t0).unwrap();
        assert_eq!(
            feed(&mut r, &v[0], t0),
            Err(FragmentError::Duplicate(i as u32))
        );
        for d in &v[1..] {
            feed(&mut r, d, t0).unwrap();
        }
        while let Some(ev) = r.poll(t0) {
            if let ReassemblyEvent::Frame(fr) = ev {
                assert_eq!(fr.data, *au);
                caps.push(fr.data.as_ptr() as usize);
                r.recycle(fr.data);
            }
        }
    }
    assert_eq!(caps.len(), 20);
    let distinct: std::collections::HashSet<_> = caps.iter().collect();
    assert!(
        distinct.len() <= 3,
        "buffers are recycled, saw {} distinct",
        distinct.len()
    );
}
