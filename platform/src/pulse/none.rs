//! No sound server on this system: every opening fails with the reason.

/// Why there is no sound server.
#[derive(Debug, thiserror::Error)]
pub enum PulseError {
    /// Desktop sound is recorded through PulseAudio, which this system lacks.
    #[error("desktop sound is recorded through PulseAudio, which this system lacks")]
    Unsupported,
}

/// A sink's monitor, recorded (none here).
#[derive(Debug)]
pub struct MonitorRecorder(());

impl MonitorRecorder {
    /// Fails: no sound server here.
    pub fn open(
        _app: &str,
        _source: &str,
        _rate: u32,
        _channels: u8,
        _fragment: usize,
    ) -> Result<Self, PulseError> {
        Err(PulseError::Unsupported)
    }
    /// Never reached.
    pub fn read(&mut self, _pcm: &mut [f32]) -> Result<(), PulseError> {
        Err(PulseError::Unsupported)
    }
    /// Never reached.
    pub fn discard(&self) -> Result<(), PulseError> {
        Ok(())
    }
}

/// A source the desktop's programs record from (none here).
#[derive(Debug)]
pub struct VirtualMicrophone(());

impl VirtualMicrophone {
    /// Fails: no sound server here.
    pub fn create(_name: &str, _rate: u32) -> Result<Self, PulseError> {
        Err(PulseError::Unsupported)
    }
    /// Never reached.
    pub fn play(&mut self, _pcm: &[f32]) -> Result<(), PulseError> {
        Err(PulseError::Unsupported)
    }
}
