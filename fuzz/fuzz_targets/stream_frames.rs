//! A byte stream pushed in arbitrary pieces into the frame reader, as the
//! gateway does with client streams.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nephele_protocol::framing::FrameReader;
use nephele_protocol::wire::Message;

fuzz_target!(|data: &[u8]| {
    let mut r = FrameReader::new();
    let cut = data.first().map_or(1, |&b| usize::from(b).max(1));
    for chunk in data.chunks(cut) {
        r.push(chunk);
        loop {
            match r.next_frame() {
                Ok(Some(f)) => {
                    let _ = Message::decode(f);
                }
                Ok(None) | Err(_) => break,
            }
        }
        assert!(r.buffered() <= nephele_protocol::MAX_STREAM_MESSAGE + 2 + cut);
    }
});
