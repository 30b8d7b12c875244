//! Arbitrary sequence numbers and events into the host's input receiver:
//! nothing is delivered twice and nothing out of order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nephele_protocol::input::InputReceiver;
use nephele_protocol::wire::Message;

fuzz_target!(|data: &[u8]| {
    let mut r = InputReceiver::new();
    let mut last = 0u32;
    // Messages are length-prefixed by one byte in the fuzz input.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len % 16).min(tail.len());
        let (chunk, tail) = tail.split_at(n);
        rest = tail;
        if let Ok(Message::Input { seq, event }) = Message::decode(chunk) {
            r.handle(seq, event, |delivered, _| {
                assert_eq!(delivered, last.wrapping_add(1).max(1));
                last = delivered;
            });
        }
    }
});
