//! The operating system's edges, behind small interfaces, so the session
//! logic above them stays portable: keyboard mapping from the windowing
//! layer's physical key codes to USB HID usages, scheduling for the
//! threads that carry input, gamepads, sound devices, and the Opus codec
//! (which some systems provide and this crate builds for the others), and
//! the process's own CPU time.

#[cfg(feature = "audio")]
pub mod audio;
pub mod child;
#[cfg(feature = "clipboard")]
pub mod clipboard;
pub mod dylib;
#[cfg(feature = "ffmpeg")]
pub mod ffmpeg;
pub mod fs;
pub mod gamepad;
#[cfg(feature = "window")]
pub mod keyboard;
#[cfg(feature = "keychain")]
pub mod keychain;
#[cfg(feature = "opus")]
pub mod opus;
pub mod process;
#[cfg(feature = "pulse")]
pub mod pulse;
pub mod sched;
#[cfg(feature = "window")]
pub mod screensaver;
#[cfg(feature = "window")]
pub mod windowing;
#[cfg(feature = "x11-desktop")]
pub mod x11desktop;
