//! Hostile video datagrams into the client's reassembler: no panic, and the
//! memory it holds stays within its slots.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use nephele_protocol::video::{Reassembler, ReassemblerConfig};
use nephele_protocol::wire::Message;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblerConfig::default(), t0);
    // Datagrams are length-prefixed by one byte in the fuzz input.
    let mut rest = data;
    let mut step = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (d, tail) = tail.split_at(n);
        rest = tail;
        step += 1;
        let now = t0 + Duration::from_millis(step);
        if let Ok(Message::Video(f)) = Message::decode(d) {
            let _ = r.handle_fragment(&f, now);
        }
        while let Some(ev) = r.poll(now) {
            if let nephele_protocol::video::ReassemblyEvent::Frame(f) = ev {
                r.recycle(f.data);
            }
        }
        let _ = r.poll_keyframe_request(now);
    }
});
