//! A session's video encoder: openh264 for H.264 (built in), FFmpeg's
//! libx265 for HEVC and libaom for AV1 where the system has them (loaded
//! at run time, as the client loads its decoders).

use nephele_platform::ffmpeg::encode::{AvEncoder, EncodeError, EncoderSpec, Planes};
use nephele_protocol::codec::{Codec, Codecs};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, RateControlMode, UsageType,
};

use crate::demo::I420;

/// Why an encoder could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub(super) enum EncoderError {
    #[error(transparent)]
    OpenH264(#[from] openh264::Error),
    #[error(transparent)]
    Ffmpeg(#[from] EncodeError),
}

/// The codecs this host can encode of those `wanted`, in that order (H.264
/// always, last when not named): what it offers clients.
pub fn offer(wanted: &[Codec]) -> Codecs {
    let usable: Vec<Codec> = wanted
        .iter()
        .copied()
        .filter(|&c| match c {
            Codec::H264 => true,
            c => match nephele_platform::ffmpeg::encode::encoder_for(c) {
                Ok(name) => {
                    tracing::debug!(codec = %c, encoder = name, "encoder found");
                    true
                }
                Err(e) => {
                    tracing::info!(codec = %c, reason = %e, "not offered");
                    false
                }
            },
        })
        .collect();
    Codecs::new(&usable)
}

/// One session's encoder.
pub(super) enum VideoEncoder {
    OpenH264(Box<Encoder>),
    /// With what it was opened for.
    Ffmpeg(Box<AvEncoder>, EncoderSpec),
}

impl VideoEncoder {
    /// An encoder of `codec` for pictures of `size` at `fps`, at most
    /// `bitrate` bits a second.
    pub fn open(
        codec: Codec,
        size: (u16, u16),
        fps: u8,
        bitrate: u32,
    ) -> Result<Self, EncoderError> {
        if codec != Codec::H264 {
            let spec = EncoderSpec {
                codec,
                width: size.0,
                height: size.1,
                fps,
                bitrate,
            };
            let enc = AvEncoder::open(spec)?;
            tracing::info!(%codec, encoder = enc.name(), ?size, "FFmpeg encoder opened");
            return Ok(Self::Ffmpeg(Box::new(enc), spec));
        }
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate))
            .max_frame_rate(FrameRate::from_hz(f32::from(fps)))
            .usage_type(UsageType::ScreenContentRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            // Neither is supported for screen content; saying so keeps openh264 quiet.
            .adaptive_quantization(false)
            .background_detection(false)
            // openh264 only holds a bitrate when it may skip frames.
            .skip_frames(true);
        let enc = Encoder::with_api_config(OpenH264API::from_source(), config)?;
        Ok(Self::OpenH264(Box::new(enc)))
    }

    /// Encodes `picture` (a keyframe when `keyframe`) into `out` (emptied
    /// first); whether it is a keyframe. Nothing in `out`: skipped.
    pub fn encode(
        &mut self,
        picture: &I420,
        keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, EncoderError> {
        out.clear();
        match self {
            Self::OpenH264(enc) => {
                if keyframe {
                    enc.force_intra_frame();
                }
                let bs = enc.encode(picture)?;
                bs.write_vec(out);
                Ok(matches!(bs.frame_type(), FrameType::IDR | FrameType::I))
            }
            Self::Ffmpeg(enc, spec) => {
                let size = (picture.width as u16, picture.height as u16);
                if size != (spec.width, spec.height) {
                    // The desktop changed size: a new encoder for it,
                    // which starts with a keyframe.
                    (spec.width, spec.height) = size;
                    **enc = AvEncoder::open(*spec)?;
                    tracing::info!(
                        encoder = enc.name(),
                        ?size,
                        "FFmpeg encoder reopened for the new size"
                    );
                }
                let planes = Planes {
                    y: &picture.y,
                    u: &picture.u,
                    v: &picture.v,
                    y_stride: picture.width,
                    uv_stride: picture.width / 2,
                };
                Ok(enc.encode(planes, keyframe, out)?)
            }
        }
    }

    /// Follows congestion control's frame rate. openh264 takes it; FFmpeg's
    /// encoders keep theirs and simply get fewer pictures. Whether taken.
    pub fn set_fps(&mut self, fps: u8) -> bool {
        let Self::OpenH264(enc) = self else {
            return true;
        };
        let mut rate = f32::from(fps);
        // SAFETY: the encoder is initialised (a frame has been encoded, as
        // the caller ensures) and the option takes a pointer to one f32,
        // live for the call.
        let rc = unsafe {
            enc.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_FRAME_RATE,
                std::ptr::addr_of_mut!(rate).cast(),
            )
        };
        rc == 0
    }

    /// Follows congestion control's bitrate where the encoder can change
    /// it while running (openh264). FFmpeg's encoders keep the bitrate they
    /// opened with: fewer pictures a second (`set_fps`) lower what they
    /// send. Whether taken.
    pub fn set_bitrate(&mut self, bps: u32) -> bool {
        let Self::OpenH264(enc) = self else {
            return false;
        };
        let mut info = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: bps.min(i32::MAX as u32) as i32,
        };
        // SAFETY: as in `set_fps`; the option takes a pointer to an
        // SBitrateInfo.
        let rc = unsafe {
            enc.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_BITRATE,
                std::ptr::addr_of_mut!(info).cast(),
            )
        };
        rc == 0
    }
}
