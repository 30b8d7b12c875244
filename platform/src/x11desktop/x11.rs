//! The X display through x11rb (see the module above).

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;

use nephele_protocol::monitors::Monitors;
use nephele_protocol::wire::{InputEvent, MouseButton};

use super::{Changes, CursorImage, Frame};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::xtest::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// Errors of the X display.
#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    /// The display could not be opened.
    #[error("cannot open X display `{display}`: {source}")]
    Connect {
        /// The display name.
        display: String,
        /// Why.
        source: x11rb::errors::ConnectError,
    },
    /// The server lacks an extension this needs.
    #[error("X display `{display}` has no {extension} extension, which {needed_for} needs")]
    Missing {
        /// The display name.
        display: String,
        /// The extension.
        extension: &'static str,
        /// What needs it.
        needed_for: &'static str,
    },
    /// The screen's pixels are not 32 bits each.
    #[error(
        "X display `{display}` uses {bits} bits per pixel at depth {depth}; only 24- and 32-bit depths with 32-bit pixels can be captured"
    )]
    Format {
        /// The display name.
        display: String,
        /// Bits per pixel.
        bits: u8,
        /// The root window's depth.
        depth: u8,
    },
    /// The connection failed (the server went away).
    #[error("X connection: {0}")]
    Connection(#[from] x11rb::errors::ConnectionError),
    /// A request was refused.
    #[error("X request: {0}")]
    Reply(#[from] x11rb::errors::ReplyError),
    /// A request was refused, or the connection ran out of ids.
    #[error("X request: {0}")]
    ReplyOrId(#[from] x11rb::errors::ReplyOrIdError),
    /// Mapping the shared memory failed.
    #[error("mapping X shared memory: {0}")]
    Map(std::io::Error),
    /// The screen cannot take the size asked for.
    #[error("resizing the X screen: {0}")]
    Resize(String),
    /// A character could not be typed.
    #[error("typing on the X display: {0}")]
    Typing(String),
}

/// Cookies (MIT-MAGIC-COOKIE-1) this process presents to local displays
/// it started with `-auth` (the host's application displays), by name.
static COOKIES: std::sync::Mutex<Vec<(String, [u8; 16])>> = std::sync::Mutex::new(Vec::new());

fn cookies() -> std::sync::MutexGuard<'static, Vec<(String, [u8; 16])>> {
    COOKIES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Connections this process opens to local display `display` (`:N`)
/// present `cookie`, which the display demands (`Xvfb -auth FILE`).
pub fn use_cookie(display: &str, cookie: [u8; 16]) {
    let mut c = cookies();
    c.retain(|(d, _)| d != display);
    c.push((display.to_string(), cookie));
}

/// Forgets the cookie of `display` (the display is gone).
pub fn forget_cookie(display: &str) {
    cookies().retain(|(d, _)| d != display);
}

fn connect(display: &str) -> Result<(RustConnection, xproto::Window), X11Error> {
    let cookie = cookies()
        .iter()
        .find(|(d, _)| d == display)
        .map(|(_, c)| *c);
    let connected = match cookie {
        Some(c) => with_cookie(display, c),
        None => x11rb::connect(Some(display)),
    };
    let (conn, screen) = connected.map_err(|source| X11Error::Connect {
        display: display.to_string(),
        source,
    })?;
    let root = conn.setup().roots[screen].root;
    Ok((conn, root))
}

/// Connects to local display `:N` (screen 0) with `cookie`. x11rb's own
/// `connect` finds cookies only in `$XAUTHORITY`, one file for the whole
/// process; the host holds one cookie per application display.
fn with_cookie(
    display: &str,
    cookie: [u8; 16],
) -> Result<(RustConnection, usize), x11rb::errors::ConnectError> {
    use x11rb::errors::ConnectError;
    let n = display
        .strip_prefix(':')
        .map(|d| d.split('.').next().unwrap_or(d))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ConnectError::IoError(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a display with a cookie is a local one, `:N`",
            ))
        })?;
    let socket = std::os::unix::net::UnixStream::connect(super::displays::local_socket(n))
        .map_err(ConnectError::IoError)?;
    let (stream, _) = x11rb::rust_connection::DefaultStream::from_unix_stream(socket)
        .map_err(ConnectError::IoError)?;
    let conn = RustConnection::connect_to_stream_with_auth_info(
        stream,
        0,
        b"MIT-MAGIC-COOKIE-1".to_vec(),
        cookie.to_vec(),
    )?;
    Ok((conn, 0))
}

fn require(
    conn: &RustConnection,
    display: &str,
    extension: &'static str,
    needed_for: &'static str,
) -> Result<(), X11Error> {
    match conn.extension_information(extension)? {
        Some(_) => Ok(()),
        None => Err(X11Error::Missing {
            display: display.to_string(),
            extension,
            needed_for,
        }),
    }
}

/// A shared-memory segment the server writes captures into.
struct Segment {
    seg: shm::Seg,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and only read through
// `&self`; moving it to another thread moves that ownership.
unsafe impl Send for Segment {}

impl Segment {
    fn create(conn: &RustConnection, len: usize) -> Result<Self, X11Error> {
        let seg = conn.generate_id()?;
        let size = u32::try_from(len)
            .map_err(|_| X11Error::Map(std::io::ErrorKind::InvalidInput.into()))?;
        let reply = conn.shm_create_segment(seg, size, false)?.reply()?;
        // SAFETY: maps `len` bytes of the segment the server just created
        // for us; the descriptor stays valid for the call, and the mapping
        // outlives it (closing the descriptor does not unmap).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                reply.shm_fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            let _ = conn.shm_detach(seg);
            return Err(X11Error::Map(e));
        }
        Ok(Self {
            seg,
            ptr: ptr.cast(),
            len,
        })
    }

    fn bytes(&self, n: usize) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self`
        // lives; the server writes them only during a GetImage we wait for.
        unsafe { std::slice::from_raw_parts(self.ptr, n.min(self.len)) }
    }

    fn release(&mut self, conn: &RustConnection) {
        // SAFETY: unmaps exactly the mapping made in `create`, once (the
        // pointer is nulled after).
        if !self.ptr.is_null() {
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
            self.ptr = std::ptr::null_mut();
        }
        let _ = conn.shm_detach(self.seg);
    }
}

/// Captures an X display's screen.
pub struct X11Capture {
    conn: RustConnection,
    display: String,
    root: xproto::Window,
    size: (u16, u16),
    damage: Option<damage::Damage>,
    segment: Option<Segment>,
    /// Where a `GetImage` reply is kept when there is no shared memory.
    copied: Vec<u8>,
    /// Damage seen but not yet captured.
    pending: Changes,
}

impl std::fmt::Debug for X11Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Capture")
            .field("display", &self.display)
            .field("size", &self.size)
            .field("shm", &self.segment.is_some())
            .field("damage", &self.damage.is_some())
            .finish()
    }
}

impl X11Capture {
    /// Opens `display` (`:1`, `host:0.0`) for capture.
    pub fn open(display: &str) -> Result<Self, X11Error> {
        let (conn, root) = connect(display)?;
        let screen = conn
            .setup()
            .roots
            .iter()
            .find(|s| s.root == root)
            .cloned()
            .ok_or_else(|| X11Error::Missing {
                display: display.to_string(),
                extension: "screen",
                needed_for: "capture",
            })?;
        let depth = screen.root_depth;
        let bits = conn
            .setup()
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .map_or(0, |f| f.bits_per_pixel);
        if bits != 32 || depth < 24 {
            return Err(X11Error::Format {
                display: display.to_string(),
                bits,
                depth,
            });
        }
        // Size changes arrive as the root window's ConfigureNotify.
        conn.change_window_attributes(
            root,
            &xproto::ChangeWindowAttributesAux::new()
                .event_mask(xproto::EventMask::STRUCTURE_NOTIFY),
        )?;
        // XFIXES: the pointer's shape, and DAMAGE's regions need it set up.
        let xfixes = conn
            .extension_information(xfixes::X11_EXTENSION_NAME)?
            .is_some();
        if xfixes {
            conn.xfixes_query_version(5, 0)?.reply()?;
            conn.xfixes_select_cursor_input(root, xfixes::CursorNotifyMask::DISPLAY_CURSOR)?;
        }
        let damage = if xfixes
            && conn
                .extension_information(damage::X11_EXTENSION_NAME)?
                .is_some()
        {
            conn.damage_query_version(1, 1)?.reply()?;
            let id = conn.generate_id()?;
            conn.damage_create(id, root, damage::ReportLevel::NON_EMPTY)?;
            Some(id)
        } else {
            let name = display;
            tracing::warn!(display = %name, "no DAMAGE extension: every frame is captured and encoded");
            None
        };
        let mut me = Self {
            conn,
            display: display.to_string(),
            root,
            size: (screen.width_in_pixels, screen.height_in_pixels),
            damage,
            segment: None,
            copied: Vec::new(),
            // The first frame is always captured.
            pending: Changes {
                pixels: true,
                resized: false,
                cursor: xfixes,
            },
        };
        me.map_segment();
        me.conn.flush()?;
        tracing::info!(display = %me.display, size = ?me.size, shm = me.segment.is_some(), damage = me.damage.is_some(), "capturing the X display");
        Ok(me)
    }

    /// (Re)creates the shared segment for the current size; without
    /// MIT-SHM 1.2 captures go through the socket instead.
    fn map_segment(&mut self) {
        if let Some(mut s) = self.segment.take() {
            s.release(&self.conn);
        }
        let has_shm = matches!(
            self.conn.extension_information(shm::X11_EXTENSION_NAME),
            Ok(Some(_))
        );
        let version = has_shm
            .then(|| self.conn.shm_query_version().ok()?.reply().ok())
            .flatten();
        if version.is_none_or(|v| (v.major_version, v.minor_version) < (1, 2)) {
            tracing::info!(display = %self.display, "no MIT-SHM 1.2: capturing through the socket");
            return;
        }
        let len = usize::from(self.size.0) * usize::from(self.size.1) * 4;
        match Segment::create(&self.conn, len) {
            Ok(s) => self.segment = Some(s),
            Err(e) => {
                tracing::info!(display = %self.display, error = %e, "no shared memory: capturing through the socket");
            }
        }
    }

    /// The screen's size now.
    pub fn size(&self) -> (u16, u16) {
        self.size
    }

    /// Reads what the server reported since the last call, without waiting.
    /// Changed pixels are marked as seen, so what changes from here on is
    /// reported by the next call.
    pub fn poll(&mut self) -> Result<Changes, X11Error> {
        while let Some(ev) = self.conn.poll_for_event()? {
            match ev {
                Event::DamageNotify(_) => self.pending.pixels = true,
                Event::XfixesCursorNotify(_) => self.pending.cursor = true,
                Event::ConfigureNotify(e)
                    if e.window == self.root && (e.width, e.height) != self.size =>
                {
                    tracing::info!(display = %self.display, from = ?self.size, to = ?(e.width, e.height), "the X screen changed size");
                    self.size = (e.width, e.height);
                    self.pending.resized = true;
                    self.pending.pixels = true;
                    self.map_segment();
                }
                _ => {}
            }
        }
        let mut out = std::mem::take(&mut self.pending);
        if self.damage.is_none() {
            out.pixels = true;
        }
        if out.pixels
            && let Some(d) = self.damage
        {
            // Before capturing: whatever is drawn during the capture
            // raises a new notification.
            self.conn.damage_subtract(d, x11rb::NONE, x11rb::NONE)?;
            self.conn.flush()?;
        }
        Ok(out)
    }

    /// Captures the whole screen.
    pub fn capture(&mut self) -> Result<Frame<'_>, X11Error> {
        let (w, h) = self.size;
        let format = u8::from(xproto::ImageFormat::Z_PIXMAP);
        let stride = usize::from(w) * 4;
        let n = stride * usize::from(h);
        let data = match &self.segment {
            Some(seg) => {
                self.conn
                    .shm_get_image(self.root, 0, 0, w, h, !0, format, seg.seg, 0)?
                    .reply()?;
                seg.bytes(n)
            }
            None => {
                let reply = self
                    .conn
                    .get_image(xproto::ImageFormat::Z_PIXMAP, self.root, 0, 0, w, h, !0)?
                    .reply()?;
                self.copied = reply.data;
                &self.copied[..n.min(self.copied.len())]
            }
        };
        Ok(Frame {
            data,
            width: w,
            height: h,
            stride,
        })
    }

    /// The screen's monitors: where each lies on the captured picture
    /// (none where the server cannot tell).
    pub fn monitors(&self) -> Result<Monitors, X11Error> {
        super::randr::monitors(&self.conn, self.root)
    }

    /// Where the pointer is on the screen, if it is on this screen.
    pub fn pointer(&self) -> Result<Option<(i16, i16)>, X11Error> {
        let r = self.conn.query_pointer(self.root)?.reply()?;
        Ok(r.same_screen.then_some((r.root_x, r.root_y)))
    }

    /// The pointer's current shape (needs XFIXES).
    pub fn cursor(&self) -> Result<CursorImage, X11Error> {
        let r = self.conn.xfixes_get_cursor_image()?.reply()?;
        Ok(CursorImage {
            serial: r.cursor_serial,
            width: r.width,
            height: r.height,
            hot_x: r.xhot,
            hot_y: r.yhot,
            argb: r.cursor_image,
        })
    }
}

impl Drop for X11Capture {
    fn drop(&mut self) {
        if let Some(mut s) = self.segment.take() {
            s.release(&self.conn);
        }
        if let Some(d) = self.damage.take() {
            let _ = self.conn.damage_destroy(d);
        }
        let _ = self.conn.flush();
    }
}

/// The X keycode at the physical position of a USB HID keyboard usage
/// (page 7), from Chromium's key table (the `keycode` crate): evdev's
/// code plus 8, the numbering of every X server using evdev or libinput
/// (and Xvfb). Looked up by the key's W3C code name, because the crate's
/// usage numbers drop the usage page and some collide across pages.
pub fn x_keycode(usage: u16) -> Option<u8> {
    let name = match nephele_protocol::hid::name_from_usage(usage)? {
        // Chromium's names for what winit calls SuperLeft/Right.
        "SuperLeft" => "MetaLeft",
        "SuperRight" => "MetaRight",
        // The ISO key beside Enter: evdev reports it as KEY_BACKSLASH.
        "IntlHash" => "Backslash",
        other => other,
    };
    let code = name.parse::<keycode::KeyMappingCode>().ok()?;
    let map = keycode::KeyMap::from_key_mapping(keycode::KeyMapping::Code(Some(code))).ok()?;
    u8::try_from(map.xkb).ok().filter(|&k| k >= 8)
}

/// The X button number of a mouse button.
fn x_button(b: MouseButton) -> u8 {
    match b {
        MouseButton::Left => 1,
        MouseButton::Middle => 2,
        MouseButton::Right => 3,
        MouseButton::Back => 8,
        MouseButton::Forward => 9,
    }
}

/// Wheel units per notch (a click of buttons 4–7).
const NOTCH: i32 = 120;

/// Injects input into an X display.
pub struct X11Input {
    conn: RustConnection,
    root: xproto::Window,
    keycodes: std::ops::RangeInclusive<u8>,
    keys: BTreeSet<u8>,
    buttons: BTreeSet<u8>,
    /// Wheel motion short of a notch, kept for the next event.
    wheel: (i32, i32),
    typist: super::typing::Typist,
}

impl std::fmt::Debug for X11Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Input")
            .field("keys", &self.keys)
            .field("buttons", &self.buttons)
            .finish()
    }
}

impl X11Input {
    /// Opens `display` for input (needs XTEST).
    pub fn open(display: &str) -> Result<Self, X11Error> {
        let (conn, root) = connect(display)?;
        require(&conn, display, xtest::X11_EXTENSION_NAME, "input")?;
        conn.xtest_get_version(2, 2)?.reply()?;
        let keycodes = conn.setup().min_keycode..=conn.setup().max_keycode;
        Ok(Self {
            conn,
            root,
            keycodes,
            keys: BTreeSet::new(),
            buttons: BTreeSet::new(),
            wheel: (0, 0),
            typist: super::typing::Typist::default(),
        })
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), X11Error> {
        self.conn
            .xtest_fake_input(kind, detail, x11rb::CURRENT_TIME, self.root, x, y, 0)?;
        Ok(())
    }

    fn key(&mut self, code: u8, down: bool) -> Result<(), X11Error> {
        let kind = if down {
            self.keys.insert(code);
            xproto::KEY_PRESS_EVENT
        } else {
            if !self.keys.remove(&code) {
                return Ok(()); // never pressed here: nothing to release
            }
            xproto::KEY_RELEASE_EVENT
        };
        self.fake(kind, code, 0, 0)
    }

    fn button(&mut self, button: u8, down: bool) -> Result<(), X11Error> {
        let kind = if down {
            self.buttons.insert(button);
            xproto::BUTTON_PRESS_EVENT
        } else {
            if !self.buttons.remove(&button) {
                return Ok(());
            }
            xproto::BUTTON_RELEASE_EVENT
        };
        self.fake(kind, button, 0, 0)
    }

    fn click(&mut self, button: u8, times: i32) -> Result<(), X11Error> {
        for _ in 0..times.min(32) {
            self.fake(xproto::BUTTON_PRESS_EVENT, button, 0, 0)?;
            self.fake(xproto::BUTTON_RELEASE_EVENT, button, 0, 0)?;
        }
        Ok(())
    }

    /// Injects one event; returns whether the display took it (gamepad
    /// events and keys with no X keycode are not taken). Sent at once.
    pub fn inject(&mut self, ev: &InputEvent) -> Result<bool, X11Error> {
        let taken = match *ev {
            InputEvent::Key { usage, down } => match x_keycode(usage) {
                Some(code) if self.keycodes.contains(&code) => {
                    self.key(code, down)?;
                    true
                }
                _ => false,
            },
            InputEvent::Button { button, down } => {
                self.button(x_button(button), down)?;
                true
            }
            InputEvent::Move { x, y } => {
                let clamp = |v: u16| i16::try_from(v).unwrap_or(i16::MAX);
                self.fake(xproto::MOTION_NOTIFY_EVENT, 0, clamp(x), clamp(y))?;
                true
            }
            InputEvent::MoveBy { dx, dy } => {
                // Detail 1: relative to where the pointer is.
                self.conn.xtest_fake_input(
                    xproto::MOTION_NOTIFY_EVENT,
                    1,
                    x11rb::CURRENT_TIME,
                    x11rb::NONE,
                    dx,
                    dy,
                    0,
                )?;
                true
            }
            InputEvent::Wheel { dx, dy } => {
                self.wheel.0 += i32::from(dx);
                self.wheel.1 += i32::from(dy);
                let (nx, ny) = (self.wheel.0 / NOTCH, self.wheel.1 / NOTCH);
                self.wheel.0 -= nx * NOTCH;
                self.wheel.1 -= ny * NOTCH;
                // X: 4 up, 5 down, 6 left, 7 right.
                self.click(if ny > 0 { 4 } else { 5 }, ny.abs())?;
                self.click(if nx > 0 { 7 } else { 6 }, nx.abs())?;
                true
            }
            InputEvent::Text { ch } => {
                // Left or right Shift held by the session.
                let shift = self.keys.contains(&50) || self.keys.contains(&62);
                self.typist.type_char(&self.conn, ch, shift)?;
                true
            }
            InputEvent::PadConnect { .. }
            | InputEvent::PadDisconnect { .. }
            | InputEvent::PadButton { .. }
            | InputEvent::PadAxis { .. } => false,
        };
        self.conn.flush()?;
        Ok(taken)
    }

    /// Sizes the screen to `size` through RandR (making the mode when the
    /// output lacks it); the size it has afterwards.
    pub fn resize_screen(&self, size: (u16, u16)) -> Result<(u16, u16), X11Error> {
        super::randr::resize_screen(&self.conn, self.root, size)
    }

    /// The screen's size now.
    pub fn screen_size(&self) -> Result<(u16, u16), X11Error> {
        let g = self.conn.get_geometry(self.root)?.reply()?;
        Ok((g.width, g.height))
    }

    /// The keycodes the X server has down now, whoever pressed them.
    pub fn server_keys_down(&self) -> Result<Vec<u8>, X11Error> {
        let map = self.conn.query_keymap()?.reply()?.keys;
        Ok((0..=255u8)
            .filter(|&k| map[usize::from(k / 8)] & (1 << (k % 8)) != 0)
            .collect())
    }

    /// Releases every key and button this has pressed and not released.
    pub fn release_all(&mut self) -> Result<usize, X11Error> {
        let keys = std::mem::take(&mut self.keys);
        let buttons = std::mem::take(&mut self.buttons);
        for &k in &keys {
            self.fake(xproto::KEY_RELEASE_EVENT, k, 0, 0)?;
        }
        for &b in &buttons {
            self.fake(xproto::BUTTON_RELEASE_EVENT, b, 0, 0)?;
        }
        self.conn.flush()?;
        Ok(keys.len() + buttons.len())
    }
}

impl Drop for X11Input {
    fn drop(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::debug!(error = %e, "releasing held input on the X display");
        }
        if let Err(e) = self.typist.unmap(&self.conn) {
            tracing::debug!(error = %e, "clearing the keycodes typing borrowed");
        }
    }
}

/// The display's CLIPBOARD selection, as text: offered on the display's
/// behalf of someone else (owning the selection and answering requests),
/// and read when another program takes it. ICCCM's simple case: no INCR
/// transfers, which text up to `max` bytes never needs.
pub struct X11Clipboard {
    conn: RustConnection,
    window: xproto::Window,
    clipboard: xproto::Atom,
    utf8: xproto::Atom,
    targets: xproto::Atom,
    text: xproto::Atom,
    property: xproto::Atom,
    offered: Option<Vec<u8>>,
    max: usize,
}

impl std::fmt::Debug for X11Clipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Clipboard")
            .field("offering", &self.offered.as_ref().map(Vec::len))
            .finish()
    }
}

impl X11Clipboard {
    /// Opens `display`'s clipboard for text of at most `max` bytes.
    pub fn open(display: &str, max: usize) -> Result<Self, X11Error> {
        let (conn, root) = connect(display)?;
        require(&conn, display, xfixes::X11_EXTENSION_NAME, "the clipboard")?;
        conn.xfixes_query_version(5, 0)?.reply()?;
        let window = conn.generate_id()?;
        conn.create_window(
            0,
            window,
            root,
            0,
            0,
            1,
            1,
            0,
            xproto::WindowClass::INPUT_ONLY,
            0,
            &xproto::CreateWindowAux::new(),
        )?;
        let atom = |name: &[u8]| -> Result<xproto::Atom, X11Error> {
            Ok(conn.intern_atom(false, name)?.reply()?.atom)
        };
        let (clipboard, utf8, targets, text, property) = (
            atom(b"CLIPBOARD")?,
            atom(b"UTF8_STRING")?,
            atom(b"TARGETS")?,
            atom(b"TEXT")?,
            atom(b"NEPHELE_CLIPBOARD")?,
        );
        conn.xfixes_select_selection_input(
            window,
            clipboard,
            xfixes::SelectionEventMask::SET_SELECTION_OWNER,
        )?;
        conn.flush()?;
        Ok(Self {
            conn,
            window,
            clipboard,
            utf8,
            targets,
            text,
            property,
            offered: None,
            max,
        })
    }

    /// Puts `text` on the display's clipboard (cut to `max` bytes).
    pub fn offer(&mut self, text: &str) -> Result<(), X11Error> {
        let mut end = text.len().min(self.max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.offered = Some(text.as_bytes()[..end].to_vec());
        self.conn
            .set_selection_owner(self.window, self.clipboard, x11rb::CURRENT_TIME)?;
        self.conn.flush()?;
        Ok(())
    }

    /// Answers other programs' requests for what is offered, and returns
    /// the text another program put on the clipboard, once it arrived.
    /// Does not wait.
    pub fn poll(&mut self) -> Result<Option<String>, X11Error> {
        let mut got = None;
        while let Some(ev) = self.conn.poll_for_event()? {
            match ev {
                Event::SelectionRequest(e) => self.answer(&e)?,
                Event::SelectionClear(e) if e.selection == self.clipboard => self.offered = None,
                Event::XfixesSelectionNotify(e)
                    if e.selection == self.clipboard
                        && e.owner != self.window
                        && e.owner != x11rb::NONE =>
                {
                    self.conn.convert_selection(
                        self.window,
                        self.clipboard,
                        self.utf8,
                        self.property,
                        e.selection_timestamp,
                    )?;
                }
                Event::SelectionNotify(e)
                    if e.requestor == self.window && e.property != x11rb::NONE =>
                {
                    let words = (self.max as u32).div_ceil(4);
                    let reply = self
                        .conn
                        .get_property(
                            true,
                            self.window,
                            self.property,
                            xproto::AtomEnum::ANY,
                            0,
                            words,
                        )?
                        .reply()?;
                    let mut bytes = reply.value;
                    bytes.truncate(self.max);
                    got = Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                _ => {}
            }
        }
        self.conn.flush()?;
        Ok(got)
    }

    fn answer(&self, e: &xproto::SelectionRequestEvent) -> Result<(), X11Error> {
        let property = if e.property == x11rb::NONE {
            e.target // an obsolete requestor
        } else {
            e.property
        };
        let given = match &self.offered {
            Some(_) if e.target == self.targets => {
                let list = [
                    self.targets,
                    self.utf8,
                    self.text,
                    xproto::AtomEnum::STRING.into(),
                ];
                self.conn.change_property32(
                    xproto::PropMode::REPLACE,
                    e.requestor,
                    property,
                    xproto::AtomEnum::ATOM,
                    &list,
                )?;
                true
            }
            Some(text)
                if e.target == self.utf8
                    || e.target == self.text
                    || e.target == u32::from(xproto::AtomEnum::STRING) =>
            {
                let kind = if e.target == self.text {
                    self.utf8
                } else {
                    e.target
                };
                self.conn.change_property8(
                    xproto::PropMode::REPLACE,
                    e.requestor,
                    property,
                    kind,
                    text,
                )?;
                true
            }
            _ => false,
        };
        let notify = xproto::SelectionNotifyEvent {
            response_type: xproto::SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: e.time,
            requestor: e.requestor,
            selection: e.selection,
            target: e.target,
            property: if given { property } else { x11rb::NONE },
        };
        self.conn
            .send_event(false, e.requestor, xproto::EventMask::NO_EVENT, notify)?;
        Ok(())
    }
}

impl Drop for X11Clipboard {
    fn drop(&mut self) {
        let _ = self.conn.destroy_window(self.window);
        let _ = self.conn.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_the_x_keycodes_of_their_position() {
        // evdev + 8: A is 38, Enter 36, Left Shift 50, Space 65, F1 67.
        assert_eq!(x_keycode(0x04), Some(38));
        assert_eq!(x_keycode(nephele_protocol::hid::ENTER), Some(36));
        assert_eq!(x_keycode(nephele_protocol::hid::LEFT_SHIFT), Some(50));
        assert_eq!(x_keycode(0x2C), Some(65));
        assert_eq!(x_keycode(0x3A), Some(67));
        // Every key the protocol carries has a position on an X keyboard.
        let missing: Vec<&str> = nephele_protocol::hid::KEYS
            .iter()
            .filter(|&&(_, usage)| x_keycode(usage).is_none())
            .map(|&(name, _)| name)
            .collect();
        assert!(missing.is_empty(), "no X keycode for {missing:?}");
        assert_eq!(x_keycode(0x0000), None);
    }
}
