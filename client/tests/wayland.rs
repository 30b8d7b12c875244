//! The window on Wayland itself, not through XWayland: weston's headless
//! compositor (its GL renderer on Mesa's software rasteriser; `--debug`
//! lets its screenshooter read the output back) with its desktop shell on
//! a black background and no panel. No X server runs, so the window can only be a Wayland one.
//! (Weston 10's kiosk shell never sends the window its frame callbacks, so
//! a client that paces itself by them, as winit does, never draws twice.
//! Its pixman renderer shows the window rightly, but its screenshots take
//! an XRGB surface's unused byte for alpha, and the PNG writer then drops
//! the colour of every pixel whose "alpha" is 0.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::session::{json, scratch};
use common::{Killed, need, teal_share};

const SIZE: (u32, u32) = (1280, 720);

/// A headless weston with its runtime directory (the socket's home).
struct Weston {
    _child: Killed,
    runtime: PathBuf,
    socket: &'static str,
}

impl Weston {
    fn start(dir: &Path) -> Self {
        need("weston");
        let runtime = dir.join("runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        // Wayland refuses a runtime directory others can read.
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let socket = "nephele-test";
        let config = dir.join("weston.ini");
        std::fs::write(
            &config,
            "[shell]\nbackground-color=0xff000000\npanel-position=none\nlocking=false\n",
        )
        .unwrap();
        let child = Command::new("weston")
            .arg(format!("--config={}", config.display()))
            .args([
                "--backend=headless-backend.so",
                "--use-gl",
                "--debug",
                "--idle-time=0",
                &format!("--width={}", SIZE.0),
                &format!("--height={}", SIZE.1),
                &format!("--socket={socket}"),
            ])
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("weston.log")).unwrap())
            .spawn()
            .expect("start weston");
        let child = Killed(child);
        let end = Instant::now() + Duration::from_secs(20);
        while !runtime.join(format!("{socket}.lock")).exists() || !runtime.join(socket).exists() {
            assert!(Instant::now() < end, "weston did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Weston {
            _child: child,
            runtime,
            socket,
        }
    }

    /// `cmd` as a client of this compositor, with no X display to fall
    /// back on.
    fn client<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("XDG_RUNTIME_DIR", &self.runtime)
            .env("WAYLAND_DISPLAY", self.socket)
            .env_remove("DISPLAY")
    }

    /// The whole output as RGB pixels, through weston's screenshooter
    /// (which writes a PNG into its working directory).
    fn screenshot(&self, dir: &Path) -> Vec<[u8; 3]> {
        need("weston-screenshooter");
        let shots = dir.join("shots");
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        let out = self
            .client(&mut Command::new("weston-screenshooter"))
            .current_dir(&shots)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "weston-screenshooter: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let png = std::fs::read_dir(&shots)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "png"))
            .expect("weston-screenshooter wrote no PNG");
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), SIZE, "the output's size");
        let step = info.color_type.samples();
        buf[..info.buffer_size()]
            .chunks_exact(step)
            .map(|p| [p[0], p[1], p[2]])
            .collect()
    }
}

#[test]
fn the_window_opens_on_wayland_itself_and_presents_the_desktop() {
    let dir = scratch("wayland");
    let weston = Weston::start(&dir);
    let before = teal_share(&weston.screenshot(&dir));
    assert!(before < 0.05, "the empty output is already teal: {before}");
    let log = dir.join("client.log");
    let stats = dir.join("s.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nephele"));
    cmd.args(["demo", "--no-audio", "--duration", "8", "--stats-json"])
        .arg(&stats)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut client = Killed(weston.client(&mut cmd).spawn().expect("start nephele demo"));
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let share = teal_share(&weston.screenshot(&dir));
        if share > 0.25 {
            break;
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            Instant::now() < end,
            "the compositor never showed the desktop ({share:.3} teal):\n{log}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = client.0.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("window open") && l.contains("Wayland")),
        "the window was not a Wayland one:\n{log}"
    );
    let s = json(&stats);
    assert!(s["frames_presented"].as_u64().unwrap_or(0) > 30, "{s}");
    let _ = std::fs::remove_dir_all(dir);
}
