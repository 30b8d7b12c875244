//! The client's H.264 access-unit path: arbitrary bytes split into access
//! units and decoded by the same decoders (the first byte picks FFmpeg's or
//! openh264) and picture conversion the window uses. Corrupt video must cost
//! a picture, never the process.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nephele_client::video::{self, DecoderChoice, H264Decoder, Presenter};

fuzz_target!(|data: &[u8]| {
    let Some((pick, data)) = data.split_first() else {
        return;
    };
    let choice = if pick & 1 == 0 {
        DecoderChoice::Openh264
    } else {
        DecoderChoice::Ffmpeg
    };
    let Ok(mut dec) = H264Decoder::with(choice) else {
        return;
    };
    let mut presenter = Presenter::default();
    for au in video::access_units(data) {
        dec.decode(au, |p| {
            let _ = presenter.convert(&p);
        });
    }
    dec.flush(|p| {
        let _ = presenter.convert(&p);
    });
});
