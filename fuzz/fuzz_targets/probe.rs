//! Probe datagrams on both sides: the gateway's request decoder and the
//! client's reply handling. A request never draws a reply larger than itself.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use nephele_protocol::probe::{ProbePlan, ProbeReply, ProbeRequest, ProbeStatus, Prober};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ProbeRequest::decode(data) {
        let reply = ProbeReply::to(&req, ProbeStatus::Ok, u16::MAX).encode();
        assert!(reply.len() <= data.len());
    }
    let _ = ProbeReply::decode(data);
    let t0 = Instant::now();
    let mut p = Prober::new(2, b"t", ProbePlan::default(), t0);
    let mut out = Vec::new();
    while p.poll_transmit(t0, &mut out).is_some() {}
    for (i, chunk) in data.chunks(20).enumerate() {
        p.handle_reply(i % 3, chunk, t0 + Duration::from_millis(i as u64));
    }
    let _ = p.results(t0 + Duration::from_secs(1));
});
