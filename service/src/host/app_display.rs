//! An application session's private X display: Xvfb on a free display
//! number, listening on its Unix socket alone, and open only to clients
//! presenting its cookie (MIT-MAGIC-COOKIE-1). The session's program gets
//! the cookie in an authority file of its own (`XAUTHORITY`); the host's
//! capture, input and clipboard present it through the platform layer.
//! Other local users, and other sessions' programs, are refused.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nephele_platform::child;
use nephele_platform::x11desktop;
use ring::rand::SecureRandom as _;

/// Display numbers tried for applications, from the first: well above the
/// ones people's sessions and test runs use.
const DISPLAYS: std::ops::Range<u32> = 200..264;

/// A display's cookie and the authority file that gives it to programs.
pub(super) struct Cookie {
    cookie: [u8; 16],
    /// The authority file (`XAUTHORITY` for the program).
    pub file: PathBuf,
}

impl Cookie {
    /// A new random cookie, written to `file` (readable by its owner only;
    /// give the file to the program's account).
    pub fn new(file: PathBuf) -> Result<Self, String> {
        let mut cookie = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut cookie)
            .map_err(|_| "no randomness for the display's cookie".to_string())?;
        nephele_platform::fs::write_private(&file, &authority(&cookie))
            .map_err(|e| format!("writing {}: {e}", file.display()))?;
        Ok(Self { cookie, file })
    }
}

/// One Xauthority entry for any local display (family "wild", no address,
/// no display number: the file belongs to one display only).
fn authority(cookie: &[u8; 16]) -> Vec<u8> {
    // The format is libXau's: a big-endian family, then each field as a
    // big-endian length and its bytes. Hand-written: five fields, and no
    // crate writes these files.
    let mut out = 0xffff_u16.to_be_bytes().to_vec();
    for field in [&b""[..], b"", b"MIT-MAGIC-COOKIE-1", cookie] {
        out.extend_from_slice(&(field.len() as u16).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// A running display: ended, and its cookie forgotten, when dropped.
#[derive(Debug)]
pub(super) struct Display {
    /// Its name, `:N`.
    pub name: String,
    server: Child,
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        x11desktop::forget_cookie(&self.name);
    }
}

/// Starts Xvfb of `size` demanding `cookie`, on the first free number.
pub(super) fn start(size: (u16, u16), cookie: &Cookie) -> Result<Display, String> {
    for n in DISPLAYS.filter(|n| !x11desktop::local_display_taken(*n)) {
        // Another server may take the number between the check and the
        // start: it then fails, and the next number is tried.
        if let Some(server) = try_start(n, size, &cookie.file) {
            let name = format!(":{n}");
            x11desktop::use_cookie(&name, cookie.cookie);
            return Ok(Display { name, server });
        }
    }
    Err(format!(
        "no free X display for the application (tried :{} to :{})",
        DISPLAYS.start,
        DISPLAYS.end - 1
    ))
}

fn try_start(n: u32, size: (u16, u16), auth: &Path) -> Option<Child> {
    let mut cmd = Command::new("Xvfb");
    cmd.arg(format!(":{n}"))
        .arg("-auth")
        .arg(auth)
        // Its Unix socket alone: no TCP, no abstract socket (which file
        // permissions do not cover).
        .args(["-nolisten", "tcp", "-nolisten", "local"])
        .args(["-displayfd", "1", "-screen", "0"])
        .arg(format!("{}x{}x24", size.0, size.1))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    child::bind(&mut cmd, None);
    let mut x = cmd
        .spawn()
        .map_err(|e| tracing::warn!(error = %e, "starting Xvfb"))
        .ok()?;
    // Xvfb writes the display's number once it takes connections (or
    // closes its output when it fails: the number was taken).
    let mut said = String::new();
    let read = x
        .stdout
        .take()
        .map(|o| o.take(16).read_to_string(&mut said));
    if matches!(read, Some(Ok(_))) && said.trim() == n.to_string() {
        return Some(x);
    }
    let _ = x.kill();
    let _ = x.wait();
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_client_with_the_cookie_opens_the_display() {
        let dir = std::env::temp_dir().join(format!("nephele-app-display-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cookie = Cookie::new(dir.join("xauth")).unwrap();
        let display = start((320, 240), &cookie).unwrap();
        // The host's own connections present the cookie.
        let input = x11desktop::X11Input::open(&display.name).unwrap();
        assert_eq!(input.screen_size().unwrap(), (320, 240));
        // A program given the authority file gets in; without it, or with
        // another display's cookie, it is refused.
        let xdotool = |xauthority: &Path| {
            Command::new("xdotool")
                .arg("getmouselocation")
                .env_clear()
                .env("DISPLAY", &display.name)
                .env("XAUTHORITY", xauthority)
                .env("HOME", &dir)
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(xdotool(&cookie.file));
        assert!(!xdotool(&dir.join("none")));
        let other = Cookie::new(dir.join("other")).unwrap();
        assert!(!xdotool(&other.file));
        // The host's own connections are refused too without it.
        x11desktop::forget_cookie(&display.name);
        assert!(x11desktop::X11Input::open(&display.name).is_err());
        drop(display);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
