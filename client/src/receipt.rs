//! The latency receipt: where a picture's time went, from its capture on
//! the host to the screen, as medians over the session. The host's part
//! (capture, encode) comes from the host once a second; decode and what
//! follows it are the client's own; the network is what is left of the
//! end-to-end time, which rests on the clock map and so carries its
//! uncertainty. The last session's is kept beside the logs for support.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::stats::Stats;

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
    /// The receipt so far, once the host has told its part and a picture
    /// was shown through the clock map.
    pub fn of(stats: &Stats, clock_uncertainty_ms: f64) -> Option<Self> {
        let host = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
        let (capture_ms, encode_ms) = (host(&stats.host_capture_us), host(&stats.host_encode_us));
        let end_to_end_ms = stats.end_to_end.quantile_ms(0.5);
        if capture_ms + encode_ms <= 0.0 || end_to_end_ms <= 0.0 {
            return None;
        }
        let decode_ms = stats.decode.quantile_ms(0.5);
        // Client-added latency runs from the frame's last fragment to the
        // screen, decoding included.
        let client_ms = stats.client_latency.quantile_ms(0.5);
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

/// Where the last session's statistics and receipt are kept.
pub fn last_session_path() -> Option<PathBuf> {
    crate::config::log_dir().map(|d| d.join("last-session.json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_parts_add_up_to_the_end_to_end_time() {
        let stats = Stats::default();
        assert_eq!(Receipt::of(&stats, 0.3), None, "nothing from the host yet");
        stats.host_timing(2_000, 5_000);
        for _ in 0..10 {
            stats.decode.record(Duration::from_micros(1_500));
            stats.client_latency.record(Duration::from_micros(4_000));
            stats.end_to_end.record(Duration::from_micros(16_000));
        }
        let r = Receipt::of(&stats, 0.3).unwrap();
        let sum = r.capture_ms + r.encode_ms + r.network_ms + r.decode_ms + r.present_ms;
        assert!((sum - r.end_to_end_ms).abs() < 0.1, "{r:?}");
        assert!((r.network_ms - 5.0).abs() < 0.1, "{r:?}");
        assert!((r.present_ms - 2.5).abs() < 0.1, "{r:?}");
        assert!(r.line().contains("network 5.0 (±0.3)"), "{}", r.line());
    }
}
