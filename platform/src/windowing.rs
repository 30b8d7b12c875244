//! Which window system the client's window is on, and the application id
//! that ties its windows to the desktop entry (`nephele.desktop`): X11's
//! `WM_CLASS` and Wayland's `app_id`, by which docks and task switchers
//! show the right name and icon.

use winit::event_loop::ActiveEventLoop;
use winit::window::WindowAttributes;

/// The window system `event_loop` runs on, for the log.
pub fn system(event_loop: &ActiveEventLoop) -> &'static str {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        use winit::platform::wayland::ActiveEventLoopExtWayland;
        if event_loop.is_wayland() {
            "Wayland"
        } else {
            "X11"
        }
    }
    #[cfg(windows)]
    {
        let _ = event_loop;
        "Windows"
    }
    #[cfg(target_os = "macos")]
    {
        let _ = event_loop;
        "macOS"
    }
}

/// `attrs` naming the application `id` where the window system asks (the
/// desktop entry's file name, without `.desktop`).
pub fn with_app_id(attrs: WindowAttributes, id: &str) -> WindowAttributes {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        use winit::platform::wayland::WindowAttributesExtWayland;
        use winit::platform::x11::WindowAttributesExtX11;
        // Both traits name their method `with_name`; each sets its own
        // system's field (X11's WM_CLASS instance and class, Wayland's
        // app_id).
        let attrs = WindowAttributesExtX11::with_name(attrs, id, id);
        WindowAttributesExtWayland::with_name(attrs, id, id)
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        let _ = id;
        attrs
    }
}
