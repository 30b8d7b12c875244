//! The operating system's edges, behind small interfaces, so the session
//! logic above them stays portable: keyboard mapping from the windowing
//! layer's physical key codes to USB HID usages, and scheduling for the
//! threads that carry input.

pub mod gamepad;
#[cfg(feature = "window")]
pub mod keyboard;
pub mod sched;
