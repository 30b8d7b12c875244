//! The client's H.264 access-unit path: arbitrary bytes split into NAL units
//! and decoded by the same decoder and picture conversion the window uses.
//! Corrupt video must cost a picture, never the process.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nephele_client::video::{H264Decoder, Presenter};

fuzz_target!(|data: &[u8]| {
    let Ok(mut dec) = H264Decoder::new() else {
        return;
    };
    let mut presenter = Presenter::default();
    for nal in openh264::nal_units(data) {
        dec.decode(nal, |p| {
            let _ = presenter.convert(&p);
        });
    }
    dec.flush(|p| {
        let _ = presenter.convert(&p);
    });
});
