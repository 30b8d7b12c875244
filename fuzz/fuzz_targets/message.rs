//! Any datagram or stream message: decoding returns a value or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nephele_protocol::wire::{Envelope, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        // What decodes re-encodes to the same bytes.
        assert_eq!(m.to_vec(), data);
    }
    let _ = Envelope::decode(data);
});
