//! The operating system's edges, behind small interfaces, so the session
//! logic above them stays portable. So far: keyboard mapping from the
//! windowing layer's physical key codes to USB HID usages.

pub mod keyboard;
