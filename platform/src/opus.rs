//! Opus at 48 kHz in 10 ms frames, through libopus (`opusic-c`, built from
//! its bundled sources): the desktop's sound in stereo with the restricted
//! low-delay mode (no voice mode's extra look-ahead), the microphone in mono
//! tuned for speech.

use nephele_protocol::audio::{DESKTOP_CHANNELS, FRAME_SAMPLES, FrameDecoder, MIC_CHANNELS};
use opusic_c::{Application, Bitrate, Channels, SampleRate};

/// An Opus error, by libopus' own message.
#[derive(Debug, thiserror::Error)]
#[error("opus: {0:?}")]
pub struct OpusError(opusic_c::ErrorCode);

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A desktop's sound: stereo, lowest delay.
    Desktop,
    /// A microphone: mono speech.
    Voice,
}

impl Content {
    /// Interleaved channels.
    pub fn channels(self) -> usize {
        match self {
            Self::Desktop => DESKTOP_CHANNELS,
            Self::Voice => MIC_CHANNELS,
        }
    }

    fn opus_channels(self) -> Channels {
        match self {
            Self::Desktop => Channels::Stereo,
            Self::Voice => Channels::Mono,
        }
    }
}

/// Encodes 10 ms frames.
pub struct OpusEncoder {
    inner: opusic_c::Encoder,
    channels: usize,
}

impl OpusEncoder {
    /// An encoder for `content` at `bitrate` bits per second.
    pub fn new(content: Content, bitrate: u32) -> Result<Self, OpusError> {
        let app = match content {
            Content::Desktop => Application::LowDelay,
            Content::Voice => Application::Voip,
        };
        let mut inner = opusic_c::Encoder::new(content.opus_channels(), SampleRate::Hz48000, app)
            .map_err(OpusError)?;
        inner
            .set_bitrate(Bitrate::Value(bitrate))
            .map_err(OpusError)?;
        Ok(Self {
            inner,
            channels: content.channels(),
        })
    }

    /// Encodes one frame ([`FRAME_SAMPLES`] interleaved samples per channel)
    /// into `out`, whose length caps the packet; returns the packet's length.
    pub fn encode(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize, OpusError> {
        let n = (FRAME_SAMPLES * self.channels).min(pcm.len());
        self.inner
            .encode_float_to_slice(&pcm[..n], out)
            .map_err(OpusError)
    }
}

/// Decodes 10 ms frames; a missing packet is concealed by libopus.
pub struct OpusDecoder {
    inner: opusic_c::Decoder,
    channels: usize,
}

impl OpusDecoder {
    /// A decoder for `content`.
    pub fn new(content: Content) -> Result<Self, OpusError> {
        Ok(Self {
            inner: opusic_c::Decoder::new(content.opus_channels(), SampleRate::Hz48000)
                .map_err(OpusError)?,
            channels: content.channels(),
        })
    }
}

impl FrameDecoder for OpusDecoder {
    fn decode(&mut self, packet: Option<&[u8]>, out: &mut [f32]) -> Option<usize> {
        let n = (FRAME_SAMPLES * self.channels).min(out.len());
        // An empty input is libopus' signal for a lost packet.
        let input = packet.unwrap_or(&[]);
        self.inner
            .decode_float_to_slice(input, &mut out[..n], false)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, frame: usize, channels: usize) -> Vec<f32> {
        (0..FRAME_SAMPLES)
            .flat_map(|i| {
                let t = (frame * FRAME_SAMPLES + i) as f32 / 48_000.0;
                std::iter::repeat_n(0.5 * (std::f32::consts::TAU * hz * t).sin(), channels)
            })
            .collect()
    }

    /// Zero crossings per second of one channel.
    fn crossings(pcm: &[f32], channels: usize) -> f32 {
        let ch: Vec<f32> = pcm.iter().step_by(channels).copied().collect();
        let n = ch
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        n as f32 / 2.0 / (ch.len() as f32 / 48_000.0)
    }

    #[test]
    fn a_tone_survives_the_round_trip_and_a_lost_packet_is_concealed() {
        for content in [Content::Desktop, Content::Voice] {
            let ch = content.channels();
            let mut enc = OpusEncoder::new(content, 64_000).unwrap();
            let mut dec = OpusDecoder::new(content).unwrap();
            let mut out = Vec::new();
            let mut packet = [0u8; 500];
            let mut pcm = vec![0.0; FRAME_SAMPLES * ch];
            for f in 0..100 {
                let n = enc.encode(&tone(440.0, f, ch), &mut packet).unwrap();
                assert!(n > 2 && n <= 500);
                let lost = f == 60;
                let got = dec
                    .decode((!lost).then_some(&packet[..n]), &mut pcm)
                    .unwrap();
                assert_eq!(got, FRAME_SAMPLES);
                if f >= 10 {
                    out.extend_from_slice(&pcm);
                }
            }
            let hz = crossings(&out, ch);
            assert!((hz - 440.0).abs() < 5.0, "{content:?}: {hz} Hz");
            let rms = (out.iter().map(|s| s * s).sum::<f32>() / out.len() as f32).sqrt();
            assert!(rms > 0.25, "{content:?}: rms {rms}");
        }
    }
}
