//! Sizing an X screen to a client's window through RandR 1.2: the mode is
//! made when the output lacks it (as virtual displays do), then the CRTC
//! and the screen are set in the order that keeps the CRTC inside the
//! screen at every step. A server that cannot make modes (Xvfb) still
//! takes a new screen size within the one it started with: its CRTC is
//! switched off (nothing scans out of a virtual framebuffer) and the
//! screen, which is what is captured, takes the size.

use x11rb::connection::Connection;
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _};

use nephele_protocol::monitors::{Monitor, Monitors};

use super::imp::X11Error;

/// The refresh rate made modes claim (the X server of a virtual display
/// does not scan out; the client paces itself).
const MODE_HZ: u32 = 60;

fn refused(why: &str) -> X11Error {
    X11Error::Resize(why.to_string())
}

/// Sizes `root`'s screen to `(w, h)`, within what the server allows: by a
/// mode on its primary output (or the first one showing a picture), else
/// by the screen's size alone. Returns the size it has afterwards.
pub(super) fn resize_screen(
    conn: &impl Connection,
    root: xproto::Window,
    (w, h): (u16, u16),
) -> Result<(u16, u16), X11Error> {
    let version = conn.randr_query_version(1, 5)?.reply()?;
    if (version.major_version, version.minor_version) < (1, 2) {
        return Err(refused("the X server's RandR is older than 1.2"));
    }
    // One window cannot follow two monitors: their layout stays, and the
    // client scales the desktop (or shows one monitor of it).
    let n = monitors_of(conn, root, &version)?.len();
    if n > 1 {
        return Err(refused(&format!(
            "the X screen spans {n} monitors: it keeps their layout"
        )));
    }
    let range = conn.randr_get_screen_size_range(root)?.reply()?;
    let size = (
        w.clamp(range.min_width, range.max_width) & !1,
        h.clamp(range.min_height, range.max_height) & !1,
    );
    match by_mode(conn, root, size) {
        Ok(now) => Ok(now),
        Err(e) => {
            tracing::debug!(error = %e, "no mode of that size; sizing the screen alone");
            by_screen_size(conn, root, size)
        }
    }
}

/// The screen's monitors (RandR 1.5's: each active output, or a monitor
/// set up over part of the screen), none where the server's RandR is older
/// or missing.
pub(super) fn monitors(conn: &impl Connection, root: xproto::Window) -> Result<Monitors, X11Error> {
    if conn
        .extension_information(randr::X11_EXTENSION_NAME)?
        .is_none()
    {
        return Ok(Monitors::default());
    }
    let version = conn.randr_query_version(1, 5)?.reply()?;
    monitors_of(conn, root, &version)
}

/// The active monitors where the server's RandR `version` has them (1.5),
/// else none.
fn monitors_of(
    conn: &impl Connection,
    root: xproto::Window,
    version: &randr::QueryVersionReply,
) -> Result<Monitors, X11Error> {
    if (version.major_version, version.minor_version) < (1, 5) {
        return Ok(Monitors::default());
    }
    let reply = conn.randr_get_monitors(root, true)?.reply()?;
    Ok(Monitors::new(reply.monitors.iter().map(|m| {
        // A monitor reaching past the screen's top or left edge is cut there.
        let cut = |at: i16, len: u16| {
            (
                at.max(0) as u16,
                len.saturating_sub(at.min(0).unsigned_abs()),
            )
        };
        let (x, width) = cut(m.x, m.width);
        let (y, height) = cut(m.y, m.height);
        Monitor {
            x,
            y,
            width,
            height,
        }
    })))
}

/// The screen's size in millimetres at 96 dots an inch.
fn mm(px: u16) -> u32 {
    (u32::from(px) * 254 / 960).max(1)
}

/// Through a mode of `(w, h)` on the output showing a picture.
fn by_mode(
    conn: &impl Connection,
    root: xproto::Window,
    (w, h): (u16, u16),
) -> Result<(u16, u16), X11Error> {
    let res = conn.randr_get_screen_resources_current(root)?.reply()?;
    let stamp = res.config_timestamp;
    let primary = conn.randr_get_output_primary(root)?.reply()?.output;
    let mut chosen = None;
    for &output in std::iter::once(&primary).chain(&res.outputs) {
        if output == 0 {
            continue;
        }
        let info = conn.randr_get_output_info(output, stamp)?.reply()?;
        if info.crtc != 0 {
            chosen = Some((output, info));
            break;
        }
    }
    let Some((output, info)) = chosen else {
        return Err(refused("no output of the X screen shows a picture"));
    };
    let crtc = conn.randr_get_crtc_info(info.crtc, stamp)?.reply()?;
    let geometry = conn.get_geometry(root)?.reply()?;
    let now = (geometry.width, geometry.height);
    if (crtc.width, crtc.height, crtc.x, crtc.y) == (w, h, 0, 0) && now == (w, h) {
        return Ok(now);
    }
    let mode = match res
        .modes
        .iter()
        .find(|m| (m.width, m.height) == (w, h) && info.modes.contains(&m.id))
    {
        Some(m) => m.id,
        None => {
            let made = res.modes.iter().find(|m| (m.width, m.height) == (w, h));
            let id = match made {
                Some(m) => m.id,
                None => {
                    let name = format!("{w}x{h}");
                    conn.randr_create_mode(root, mode_info(w, h, name.len()), name.as_bytes())?
                        .reply()?
                        .mode
                }
            };
            conn.randr_add_output_mode(output, id)?.check()?;
            id
        }
    };
    // The CRTC must fit the screen before and after each step: grow the
    // screen first, set the CRTC, then shrink the screen to the picture.
    let (gw, gh) = (w.max(now.0), h.max(now.1));
    if (gw, gh) != now {
        conn.randr_set_screen_size(root, gw, gh, mm(gw), mm(gh))?
            .check()?;
    }
    let set = conn
        .randr_set_crtc_config(
            info.crtc,
            x11rb::CURRENT_TIME,
            stamp,
            0,
            0,
            mode,
            crtc.rotation,
            &[output],
        )?
        .reply()?;
    if set.status != randr::SetConfig::SUCCESS {
        return Err(refused("the X server refused the new mode"));
    }
    if (gw, gh) != (w, h) {
        conn.randr_set_screen_size(root, w, h, mm(w), mm(h))?
            .check()?;
    }
    let g = conn.get_geometry(root)?.reply()?;
    Ok((g.width, g.height))
}

/// Through the screen's size alone: CRTCs that would not fit are
/// switched off first.
fn by_screen_size(
    conn: &impl Connection,
    root: xproto::Window,
    (w, h): (u16, u16),
) -> Result<(u16, u16), X11Error> {
    let res = conn.randr_get_screen_resources_current(root)?.reply()?;
    for &crtc in &res.crtcs {
        let info = conn
            .randr_get_crtc_info(crtc, res.config_timestamp)?
            .reply()?;
        let right = i32::from(info.x) + i32::from(info.width);
        let bottom = i32::from(info.y) + i32::from(info.height);
        if info.mode != 0 && (right > i32::from(w) || bottom > i32::from(h)) {
            conn.randr_set_crtc_config(
                crtc,
                x11rb::CURRENT_TIME,
                res.config_timestamp,
                0,
                0,
                0,
                randr::Rotation::ROTATE0,
                &[],
            )?
            .reply()?;
        }
    }
    conn.randr_set_screen_size(root, w, h, mm(w), mm(h))?
        .check()?;
    let g = conn.get_geometry(root)?.reply()?;
    Ok((g.width, g.height))
}

/// A mode of `w × h` at [`MODE_HZ`] with small blanking intervals (CVT's
/// reduced blanking: 160 pixels, and at least 460 µs of lines).
fn mode_info(w: u16, h: u16, name_len: usize) -> randr::ModeInfo {
    let htotal = w.saturating_add(160);
    let vblank = (460 * MODE_HZ * u32::from(h)).div_ceil(1_000_000).max(3) as u16;
    let vtotal = h.saturating_add(vblank);
    randr::ModeInfo {
        id: 0,
        width: w,
        height: h,
        dot_clock: u32::from(htotal) * u32::from(vtotal) * MODE_HZ,
        hsync_start: w.saturating_add(48),
        hsync_end: w.saturating_add(80),
        htotal,
        hskew: 0,
        vsync_start: h.saturating_add(3),
        vsync_end: h.saturating_add(vblank.min(10)),
        vtotal,
        name_len: name_len as u16,
        mode_flags: randr::ModeFlag::HSYNC_POSITIVE | randr::ModeFlag::VSYNC_NEGATIVE,
    }
}
