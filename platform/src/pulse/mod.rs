//! A desktop session's sound through its PulseAudio server (or PipeWire's
//! PulseAudio service): what the session plays, recorded from a sink's
//! monitor, for a host serving a real desktop.
//!
//! libpulse-simple's blocking streams suit a thread that encodes one 10 ms
//! packet per read; the server is found as every PulseAudio client finds
//! it (`$PULSE_SERVER`, the runtime directory, the X root window).

//!
//! Where there is no PulseAudio (Windows, macOS) the same interface exists
//! and every opening fails with the reason.

#[cfg(all(unix, not(target_os = "macos")))]
#[path = "pa.rs"]
mod imp;

#[cfg(not(all(unix, not(target_os = "macos"))))]
#[path = "none.rs"]
mod imp;

pub use imp::{MonitorRecorder, PulseError, VirtualMicrophone};

/// The monitor of whatever sink is the server's default.
pub const DEFAULT_MONITOR: &str = "@DEFAULT_MONITOR@";
