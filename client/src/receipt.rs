//! The latency receipt: where a picture's time went, from its capture on
//! the host to the screen, as medians over the session. The host's part
//! (capture, encode) comes from the host once a second; decode and what
//! follows it are the client's own; the network is what is left of the
//! end-to-end time, which rests on the clock map and so carries its
//! uncertainty. The last session's is kept beside the logs for support.

use serde::Serialize;

/// Medians, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Receipt {
    /// Capturing and converting the picture on the host.
    pub capture_ms: f64,
    /// Encoding and sending it.
    pub encode_ms: f64,
    /// The network, gateway included: the end-to-end time less every other
    /// part, so within `clock_uncertainty_ms`.
    pub network_ms: f64,
    /// Decoding it.
    pub decode_ms: f64,
    /// From decoded to on the screen: conversion, scaling, waiting for
    /// the display's refresh.
    pub present_ms: f64,
    /// Capture to screen, through the clock map.
    pub end_to_end_ms: f64,
    /// How far the clock map, and so `network_ms` and `end_to_end_ms`, may
    /// be off.
    pub clock_uncertainty_ms: f64,
}

impl Receipt {
    /// The receipt from the session's figures: the host's mean capture and
    /// encode times (µs, 0 before it said), and the medians of end-to-end
    /// latency, client-added latency (last fragment to screen, decoding
    /// included) and decoding, in ms. `None` until the host has said and a
    /// picture was shown through the clock map.
    pub fn from_medians(
        (capture_us, encode_us): (u64, u64),
        end_to_end_ms: f64,
        client_ms: f64,
        decode_ms: f64,
        clock_uncertainty_ms: f64,
    ) -> Option<Self> {
        let (capture_ms, encode_ms) = (capture_us as f64 / 1000.0, encode_us as f64 / 1000.0);
        if capture_ms + encode_ms <= 0.0 || end_to_end_ms <= 0.0 {
            return None;
        }
        // Microseconds are all the figures hold.
        let us = |v: f64| (v * 1000.0).round() / 1000.0;
        Some(Self {
            capture_ms: us(capture_ms),
            encode_ms: us(encode_ms),
            network_ms: us((end_to_end_ms - client_ms - capture_ms - encode_ms).max(0.0)),
            decode_ms: us(decode_ms),
            present_ms: us((client_ms - decode_ms).max(0.0)),
            end_to_end_ms: us(end_to_end_ms),
            clock_uncertainty_ms: us(clock_uncertainty_ms),
        })
    }

    /// One line for the statistics overlay.
    pub fn line(&self) -> String {
        format!(
            "capture {:.1} + encode {:.1} + network {:.1} (±{:.1}) + decode {:.1} + present {:.1} ms",
            self.capture_ms,
            self.encode_ms,
            self.network_ms,
            self.clock_uncertainty_ms,
            self.decode_ms,
            self.present_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_add_up_to_the_end_to_end_time() {
        assert_eq!(
            Receipt::from_medians((0, 0), 16.0, 4.0, 1.5, 0.3),
            None,
            "nothing from the host yet"
        );
        let r = Receipt::from_medians((2_000, 5_000), 16.0, 4.0, 1.5, 0.3).unwrap();
        let sum = r.capture_ms + r.encode_ms + r.network_ms + r.decode_ms + r.present_ms;
        assert!((sum - r.end_to_end_ms).abs() < 1e-9, "{r:?}");
        assert_eq!((r.network_ms, r.present_ms), (5.0, 2.5));
        assert!(r.line().contains("network 5.0 (±0.3)"), "{}", r.line());
    }
}
