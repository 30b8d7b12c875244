//! Keeping the screen awake while a session streams: nobody watching a
//! film or a presentation on their cloud desktop wants the local screen to
//! blank because the local keyboard is idle.
//!
//! * X11: `XResetScreenSaver` at an interval (what SDL did for years): it
//!   restarts the server's screen-saver and power-saving timers. libX11 is
//!   opened at run time (x11-dl), as winit does, so a Wayland-only or
//!   headless machine needs no X libraries.
//! * Windows: `SetThreadExecutionState` with `ES_DISPLAY_REQUIRED` on a
//!   thread of our own, for as long as the guard lives.
//! * macOS: an IOKit power assertion (`PreventUserIdleDisplaySleep`) held
//!   for as long as the guard lives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the screen saver is pushed back on X11 (screen savers time
/// out after minutes; this keeps well inside the shortest sane setting).
pub const RESET_EVERY: Duration = Duration::from_secs(20);

/// Keeps the screen awake until dropped.
#[derive(Debug)]
pub struct Inhibitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Inhibitor {
    /// Starts keeping the screen awake, pushing back the X11 screen saver
    /// every `every`; `None` where the platform offers no way (the reason
    /// is logged once).
    pub fn start(every: Duration) -> Option<Self> {
        Self::start_on(None, every)
    }

    /// As [`Inhibitor::start`], on the X display `display` (default:
    /// `$DISPLAY`); other platforms ignore it.
    pub fn start_on(display: Option<&str>, every: Duration) -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let display = display.map(str::to_string);
        let thread = std::thread::Builder::new()
            .name("nephele-awake".into())
            .spawn(move || imp::run(&s, display.as_deref(), every))
            .ok()?;
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Inhibitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
mod imp {
    use super::*;

    /// Resets the X screen saver every `every` until `stop`.
    pub(super) fn run(stop: &AtomicBool, name: Option<&str>, every: Duration) {
        if name.is_none() && std::env::var_os("DISPLAY").is_none() {
            return;
        }
        let Ok(name) = name.map(std::ffi::CString::new).transpose() else {
            return;
        };
        let xlib = match x11_dl::xlib::Xlib::open() {
            Ok(x) => x,
            Err(e) => {
                tracing::info!(error = %e, "no libX11: the screen saver is not held off");
                return;
            }
        };
        // SAFETY: a connection of our own, used only on this thread and
        // closed below; a null name means $DISPLAY.
        let display =
            unsafe { (xlib.XOpenDisplay)(name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr())) };
        if display.is_null() {
            tracing::info!("cannot open the X display: the screen saver is not held off");
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `display` is open (checked above) until XCloseDisplay.
            unsafe {
                (xlib.XResetScreenSaver)(display);
                (xlib.XFlush)(display);
            }
            std::thread::park_timeout(every);
        }
        // SAFETY: as above; not used afterwards.
        unsafe { (xlib.XCloseDisplay)(display) };
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use windows_sys::Win32::System::Power::{
        ES_CONTINUOUS, ES_DISPLAY_REQUIRED, ES_SYSTEM_REQUIRED, SetThreadExecutionState,
    };

    /// Holds the display on from this thread until `stop` (the state
    /// belongs to the thread that set it).
    pub(super) fn run(stop: &AtomicBool, _display: Option<&str>, _every: Duration) {
        // SAFETY: plain flags, no pointers.
        unsafe {
            SetThreadExecutionState(ES_CONTINUOUS | ES_DISPLAY_REQUIRED | ES_SYSTEM_REQUIRED)
        };
        while !stop.load(Ordering::Relaxed) {
            std::thread::park_timeout(Duration::from_secs(1));
        }
        // SAFETY: as above.
        unsafe { SetThreadExecutionState(ES_CONTINUOUS) };
    }
}

#[cfg(target_os = "macos")]
mod imp {
    use super::*;
    use objc2_core_foundation::CFString;
    use objc2_io_kit::{
        IOPMAssertionCreateWithName, IOPMAssertionRelease, kIOPMAssertionLevelOn, kIOReturnSuccess,
    };

    pub(super) fn run(stop: &AtomicBool, _display: Option<&str>, _every: Duration) {
        // kIOPMAssertPreventUserIdleDisplaySleep (a CFSTR macro in C).
        let kind = CFString::from_static_str("PreventUserIdleDisplaySleep");
        let name = CFString::from_static_str("Nephele: a remote desktop is on screen");
        let mut id = 0;
        // SAFETY: both strings outlive the call and `id` is a valid place
        // for the assertion's number.
        let rc = unsafe {
            IOPMAssertionCreateWithName(Some(&kind), kIOPMAssertionLevelOn, Some(&name), &mut id)
        };
        if rc != kIOReturnSuccess {
            tracing::warn!(rc, "macOS refused to keep the display awake");
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            std::thread::park_timeout(Duration::from_secs(1));
        }
        IOPMAssertionRelease(id);
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    use super::*;

    pub(super) fn run(_stop: &AtomicBool, _display: Option<&str>, _every: Duration) {
        tracing::info!("keeping the screen awake is not implemented on this platform");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// The X server's idle time (xprintidle), in milliseconds.
    fn idle_ms(display: &str) -> u64 {
        let out = Command::new("xprintidle")
            .env("DISPLAY", display)
            .output()
            .expect("xprintidle is installed by `cargo xtask setup`");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a number")
    }

    #[test]
    fn the_x_screen_saver_is_held_off_while_the_guard_lives() {
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "320x240x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed by `cargo xtask setup`");
        let mut line = String::new();
        let stdout = xvfb.stdout.take().expect("Xvfb's stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let display = format!(":{}", line.trim());
        std::thread::sleep(Duration::from_millis(1500));
        let before = idle_ms(&display);
        let guard = Inhibitor::start_on(Some(&display), Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(1000));
        let held = idle_ms(&display);
        drop(guard);
        std::thread::sleep(Duration::from_millis(1000));
        let after = idle_ms(&display);
        let _ = xvfb.kill();
        let _ = xvfb.wait();
        assert!(before >= 1400, "idle {before} ms before");
        assert!(held < 500, "idle {held} ms while held off");
        assert!(after >= 900, "idle {after} ms after letting go");
    }
}
