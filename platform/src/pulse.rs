//! A desktop session's sound through its PulseAudio server (or PipeWire's
//! PulseAudio service): what the session plays, recorded from a sink's
//! monitor, for a host serving a real desktop.
//!
//! libpulse-simple's blocking streams suit a thread that encodes one 10 ms
//! packet per read; the server is found as every PulseAudio client finds
//! it (`$PULSE_SERVER`, the runtime directory, the X root window).

use libpulse_binding::def::BufferAttr;
use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::Direction;
use libpulse_simple_binding::Simple;

/// The monitor of whatever sink is the server's default.
pub const DEFAULT_MONITOR: &str = "@DEFAULT_MONITOR@";

/// Errors of the sound server.
#[derive(Debug, thiserror::Error)]
pub enum PulseError {
    /// No server answered, or it refused the stream.
    #[error("PulseAudio: recording `{source_name}`: {reason}")]
    Open {
        /// The source asked for.
        source_name: String,
        /// The server's words.
        reason: String,
    },
    /// The stream broke (the server went away).
    #[error("PulseAudio: {0}")]
    Stream(String),
}

/// Records what a sink plays, as interleaved 32-bit float frames.
pub struct MonitorRecorder {
    stream: Simple,
    channels: usize,
    /// One read's bytes, reused.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for MonitorRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorRecorder")
            .field("channels", &self.channels)
            .finish()
    }
}

impl MonitorRecorder {
    /// Opens `source` (a monitor such as `speaker.monitor`, or
    /// [`DEFAULT_MONITOR`]) at `rate` Hz with `channels` channels; the
    /// server delivers `fragment` frames at a time, so a read of that many
    /// returns as soon as they were played.
    pub fn open(
        app: &str,
        source: &str,
        rate: u32,
        channels: u8,
        fragment: usize,
    ) -> Result<Self, PulseError> {
        let open_err = |reason: String| PulseError::Open {
            source_name: source.to_string(),
            reason,
        };
        if source.contains('\0') || app.contains('\0') {
            return Err(open_err("the name holds a NUL character".into()));
        }
        let spec = Spec {
            format: Format::F32le,
            rate,
            channels,
        };
        if !spec.is_valid() {
            return Err(open_err(format!(
                "{rate} Hz with {channels} channels is not a valid format"
            )));
        }
        let bytes = (fragment * usize::from(channels) * 4) as u32;
        let attr = BufferAttr {
            maxlength: u32::MAX,
            tlength: u32::MAX,
            prebuf: u32::MAX,
            minreq: u32::MAX,
            // Small fragments: each read returns one packet's worth as
            // soon as it was played, not a server-sized chunk later.
            fragsize: bytes,
        };
        let stream = Simple::new(
            None,
            app,
            Direction::Record,
            Some(source),
            "desktop sound",
            &spec,
            None,
            Some(&attr),
        )
        .map_err(|e| open_err(format!("{e}")))?;
        Ok(Self {
            stream,
            channels: usize::from(channels),
            bytes: Vec::with_capacity(bytes as usize),
        })
    }

    /// Channels per frame.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Fills `pcm` (interleaved frames), waiting until the sink has played
    /// that much.
    pub fn read(&mut self, pcm: &mut [f32]) -> Result<(), PulseError> {
        self.bytes.resize(pcm.len() * 4, 0);
        self.stream
            .read(&mut self.bytes)
            .map_err(|e| PulseError::Stream(format!("{e}")))?;
        for (s, b) in pcm.iter_mut().zip(self.bytes.chunks_exact(4)) {
            *s = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// Drops what was recorded but not read (after a pause, so the next
    /// read is current).
    pub fn discard(&self) -> Result<(), PulseError> {
        self.stream
            .flush()
            .map_err(|e| PulseError::Stream(format!("{e}")))
    }
}
