//! The launcher as a person meets it: `nephele` alone, under Xvfb, with an
//! empty home and no terminal, driven by `xdotool` from the service's
//! address to typing on the desktop, against `nephele-server all`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::session::wait_for;
use common::{Killed, need, recorded_key_downs, screenshot, start_all, xdotool};
use nephele_api::inspect::fingerprint;
use nephele_api::trust::read_cert_pem;

/// A user's session environment in `home`: the XDG folders, and a
/// private session bus (its address) with a real Secret Service on it,
/// GNOME Keyring's, its login keyring made and unlocked as a desktop
/// session's login would.
fn session(home: &Path) -> (Killed, Vec<(&'static str, std::ffi::OsString)>) {
    need("dbus-daemon");
    need("gnome-keyring-daemon");
    let run = home.join(".run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut env: Vec<(&'static str, std::ffi::OsString)> = vec![
        ("HOME", home.into()),
        ("XDG_CONFIG_HOME", home.join(".config").into()),
        ("XDG_STATE_HOME", home.join(".local/state").into()),
        ("XDG_DATA_HOME", home.join(".local/share").into()),
        ("XDG_CACHE_HOME", home.join(".cache").into()),
        ("XDG_RUNTIME_DIR", run.into()),
    ];
    let mut bus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon");
    let mut address = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(bus.stdout.take().unwrap()),
        &mut address,
    )
    .unwrap();
    env.push(("DBUS_SESSION_BUS_ADDRESS", address.trim().into()));
    let bus = Killed(bus);
    for args in [&["--unlock"][..], &["--start", "--components=secrets"]] {
        let mut k = Command::new("gnome-keyring-daemon")
            .args(args)
            .envs(env.iter().cloned())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gnome-keyring-daemon");
        std::io::Write::write_all(&mut k.stdin.take().unwrap(), b"login password").unwrap();
        assert!(k.wait().unwrap().success(), "gnome-keyring-daemon {args:?}");
    }
    (bus, env)
}

/// `nephele` with nothing but the session's environment (settings and
/// state in its home) and the display: no password in the environment, no
/// terminal; its log to `log`.
fn launcher(display: &str, env: &[(&str, std::ffi::OsString)], log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nephele"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start nephele")
}

/// The launcher's window, focused.
fn window(display: &str) -> String {
    let wid = xdotool(display, &["search", "--sync", "--name", "^Nephele"]);
    let wid = wid.lines().next().unwrap().to_string();
    xdotool(display, &["windowfocus", "--sync", &wid]);
    wid
}

/// Waits until the log holds `what` `times` times.
fn logged(log: &Path, what: &str, times: usize) {
    wait_for(
        &format!("`{what}` in the log"),
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches(what)
                .count()
                >= times
        },
    );
}

/// A page was drawn: text and controls in several shades, not one colour.
fn drawn(display: &str, wid: &str) -> usize {
    let (_, _, px) = screenshot(display, wid);
    let mut shades: Vec<[u8; 3]> = px;
    shades.sort_unstable();
    shades.dedup();
    shades.len()
}

fn typed(display: &str, text: &str) {
    xdotool(display, &["type", "--delay", "40", text]);
}

fn key(display: &str, keys: &str) {
    xdotool(display, &["key", "--delay", "60", keys]);
}

/// The files under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map_while(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[test]
fn from_the_address_to_typing_on_the_desktop_without_a_terminal() {
    need("xdotool");
    let (_xvfb, display) = common::start_xvfb("1280x800x24");
    let dir = std::env::temp_dir().join(format!("nephele-launcher-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("rec.jsonl");
    // Fixed addresses, so that the service restarted below is found where
    // it was.
    let host = format!("127.0.0.1:{}", common::session::free_udp_port());
    let directory = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    let service = [
        "--record-input",
        rec.to_str().unwrap(),
        "--listen",
        &host,
        "--directory-listen",
        &directory,
    ];
    let (server, url) = start_all(&dir, &service);
    let server = Killed(server);
    // A new home. Its settings keep sound out of this test; nothing names
    // the service, its CA, the user or a password.
    let home = dir.join("home");
    let settings = home.join(".config/nephele");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("config.toml"),
        "[audio]\nspeaker = false\nmicrophone = false\n",
    )
    .unwrap();
    let ca = &read_cert_pem(&dir.join("state/ca.pem")).unwrap()[0];
    let (_bus, env) = session(&home);

    let log = dir.join("first.log");
    let client = Killed(launcher(&display, &env, &log));
    let wid = window(&display);
    logged(&log, "launcher opens page=AddService", 1);
    assert!(drawn(&display, &wid) > 8, "the address page was not drawn");
    // The focus starts in the address field; Enter goes on.
    typed(&display, url.trim_start_matches("https://"));
    key(&display, "Return");
    // This computer does not know the service's CA: the Trust page shows
    // its fingerprint, the focus on Trust.
    logged(&log, "from=AddService to=Trust", 1);
    logged(&log, &format!("fingerprint={}", fingerprint(ca)), 1);
    assert!(drawn(&display, &wid) > 8, "the trust page was not drawn");
    key(&display, "Return");
    logged(&log, "from=Trust to=SignIn", 1);
    // A wrong password is told on the page, which keeps the fields.
    typed(&display, "alice");
    key(&display, "Tab");
    typed(&display, "not-the-password");
    key(&display, "Return");
    logged(&log, "is not right", 1);
    // The focus is back in the password: select it all, type the right
    // one; Tab to "keep me signed in", Space ticks it, Tab, Enter signs in.
    key(&display, "ctrl+a");
    typed(&display, "wonderland");
    key(&display, "Tab");
    key(&display, "space");
    key(&display, "Tab");
    key(&display, "Return");
    logged(&log, "password kept in the system keychain", 1);
    logged(&log, "to=Catalog", 1);
    assert!(drawn(&display, &wid) > 8, "the catalog was not drawn");
    // Enter opens the first tile.
    key(&display, "Return");
    logged(&log, "to=Connecting", 1);
    logged(&log, "to=Session", 1);
    // The desktop is up: what is typed reaches the host, in order, the
    // characters as text (the default) and Enter as a key.
    std::thread::sleep(Duration::from_millis(500));
    typed(&display, "hi");
    key(&display, "Return");
    let expected = ["Text(h)", "Text(i)", "Enter"];
    wait_for(
        "the typed keys on the host",
        Duration::from_secs(15),
        || recorded_key_downs(&rec).len() >= expected.len(),
    );
    assert_eq!(recorded_key_downs(&rec), expected);
    // The whole service is killed and started again with its state: the
    // window reconnects by itself, the directory renews the same session,
    // and what is typed reaches the new host.
    drop(server);
    std::thread::sleep(Duration::from_millis(1500));
    let (server, url_again) = start_all(&dir, &service);
    let _server = Killed(server);
    assert_eq!(url_again, url);
    logged(&log, "the directory renewed the session", 1);
    logged(&log, "the host opened the session afresh", 1);
    typed(&display, "ok");
    let expected = ["Text(h)", "Text(i)", "Enter", "Text(o)", "Text(k)"];
    wait_for(
        "the keys typed after the restart on the host",
        Duration::from_secs(15),
        || recorded_key_downs(&rec).len() >= expected.len(),
    );
    assert_eq!(recorded_key_downs(&rec), expected);
    // The session's menu opens on its keys, and Escape closes it.
    key(&display, "ctrl+alt+shift+n");
    logged(&log, "session menu open=true", 1);
    key(&display, "Escape");
    logged(&log, "session menu open=false", 1);
    // Its eighth item opens the settings page over the running session;
    // Escape goes back to the session.
    key(&display, "ctrl+alt+shift+n");
    logged(&log, "session menu open=true", 2);
    for _ in 0..7 {
        key(&display, "Tab");
    }
    key(&display, "Return");
    logged(&log, "from=Session to=Settings", 1);
    key(&display, "Escape");
    logged(&log, "from=Settings to=Session", 1);
    // The pointer at the middle of the window's top edge shows the menu's
    // tab; a click on it opens the menu, with the focus on Disconnect:
    // Enter leaves for the catalog. No key or click of the menu's reached
    // the desktop. There the quit keys quit.
    let geometry = xdotool(&display, &["getwindowgeometry", &wid]);
    let width: u32 = geometry
        .split("Geometry: ")
        .nth(1)
        .and_then(|g| g.split('x').next())
        .and_then(|w| w.trim().parse().ok())
        .unwrap_or_else(|| panic!("{geometry}"));
    let middle = (width / 2).to_string();
    xdotool(&display, &["mousemove", "--window", &wid, &middle, "1"]);
    std::thread::sleep(Duration::from_millis(200));
    xdotool(&display, &["mousemove", "--window", &wid, &middle, "14"]);
    std::thread::sleep(Duration::from_millis(200));
    xdotool(&display, &["click", "1"]);
    logged(&log, "session menu open=true", 3);
    key(&display, "Return");
    logged(&log, "from=Session to=Catalog", 1);
    // The chord's modifiers went down before its N (as with every
    // shortcut) and were let go when the menu opened; N and Enter were the
    // menu's.
    let downs = recorded_key_downs(&rec);
    assert_eq!(downs[..expected.len()], expected);
    let modifiers = ["ControlLeft", "AltLeft", "ShiftLeft"];
    assert!(
        downs[expected.len()..]
            .iter()
            .all(|k| modifiers.contains(&k.as_str())),
        "{downs:?}"
    );
    let ups = std::fs::read_to_string(&rec)
        .unwrap()
        .matches("\"up\"")
        .count();
    let pressed = downs.iter().filter(|d| !d.starts_with("Text(")).count();
    assert_eq!(ups, pressed, "every key pressed went up again");
    let recorded = std::fs::read_to_string(&rec).unwrap();
    assert!(
        !recorded.contains("\"button\""),
        "the click on the menu's tab reached the desktop"
    );
    key(&display, "ctrl+alt+shift+q");
    let mut client = client;
    wait_for("the launcher to quit", Duration::from_secs(10), || {
        client.0.try_wait().unwrap().is_some()
    });
    let kept = std::fs::read_to_string(settings.join("services.toml")).unwrap();
    assert!(kept.contains(&url) && kept.contains("alice"), "{kept}");
    assert!(
        kept.contains("BEGIN CERTIFICATE"),
        "the pin is kept: {kept}"
    );
    assert!(!kept.contains("wonderland"), "{kept}");

    // No file in the home holds the password (the keychain's own file is
    // encrypted).
    assert_eq!(files_holding(&home, b"wonderland"), Vec::<String>::new());
    assert!(
        !files_holding(&home, b"alice").is_empty(),
        "the search reads the files"
    );

    // The next start opens on that service, its user filled in, and signs
    // in with the kept password: nothing to type.
    let log = dir.join("second.log");
    let _client = Killed(launcher(&display, &env, &log));
    let _wid = window(&display);
    logged(&log, "launcher opens page=SignIn", 1);
    logged(&log, "signing in with the kept password", 1);
    logged(&log, "from=SignIn to=Catalog", 1);
    // The session left with Disconnect was logged off: nothing is open.
    logged(&log, "open=0", 1);
    // The device token the first run was given, kept in the keychain,
    // made this sign-in a known device's.
    logged(&log, "signing in as a device known to the account", 1);
    logged(&dir.join("server.log"), "signed in from a known device", 1);
    // Open the desktop, and have the client die in the session.
    key(&display, "Return");
    logged(&log, "to=Session", 1);
    drop(_client);
    // Started again, the catalog shows the session left open, and Enter
    // goes back to it: the same session, reconnected.
    let log = dir.join("second-after-crash.log");
    let _client = Killed(launcher(&display, &env, &log));
    let _wid = window(&display);
    logged(&log, "open=1", 1);
    key(&display, "Return");
    logged(&log, "to=Session", 1);
    logged(
        &dir.join("server.log"),
        "session reconnected from the catalog",
        1,
    );
    drop(_client);

    // The service's certificate changes (here: the pin is another
    // service's CA). The launcher warns with both fingerprints and a
    // stray Enter goes back, never on.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_server, _) = start_all(&other, &[]);
    let _other_server = Killed(other_server);
    let other_pem = std::fs::read_to_string(other.join("state/ca.pem")).unwrap();
    let mut services: toml::Table = toml::from_str(&kept).unwrap();
    services["service"].as_array_mut().unwrap()[0]["trusted-ca"] = other_pem.into();
    std::fs::write(
        settings.join("services.toml"),
        toml::to_string(&services).unwrap(),
    )
    .unwrap();
    let log = dir.join("third.log");
    let _client = Killed(launcher(&display, &env, &log));
    let wid = window(&display);
    logged(&log, "from=SignIn to=Trust", 1);
    logged(&log, "was=Some(", 1);
    assert!(drawn(&display, &wid) > 8, "the warning was not drawn");
    key(&display, "Return");
    logged(&log, "from=Trust to=AddService", 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kiosk_picks_up_a_renewed_ca_file_without_a_restart() {
    let (_xvfb, display) = common::start_xvfb("1280x800x24");
    let dir = std::env::temp_dir().join(format!("nephele-kiosk-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (server, url) = start_all(&dir, &[]);
    let _server = Killed(server);
    let (other_server, _) = start_all(&other, &[]);
    drop(Killed(other_server));
    // The kiosk's CA file holds a CA the service does not use (as after
    // the service's certificate was renewed elsewhere).
    let home = dir.join("home");
    let settings = home.join(".config/nephele");
    std::fs::create_dir_all(&settings).unwrap();
    let ca_file = dir.join("kiosk-ca.pem");
    std::fs::copy(other.join("state/ca.pem"), &ca_file).unwrap();
    std::fs::write(
        settings.join("config.toml"),
        format!(
            "directory = {url:?}\nuser = \"alice\"\nca = [{:?}]\n[audio]\nspeaker = false\nmicrophone = false\n[kiosk]\nenabled = true\nmax-backoff-secs = 1\n",
            ca_file.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.join("kiosk.log");
    let env = [
        ("HOME", home.clone().into_os_string()),
        ("XDG_CONFIG_HOME", home.join(".config").into_os_string()),
        ("XDG_STATE_HOME", home.join(".local/state").into_os_string()),
        ("NEPHELE_PASSWORD", "wonderland".into()),
    ];
    let _client = Killed(launcher(&display, &env, &log));
    logged(&log, "kiosk: trying again", 2);
    // The administrator hands out the service's CA: the next attempt
    // reads it and the kiosk's desktop opens.
    std::fs::copy(dir.join("state/ca.pem"), &ca_file).unwrap();
    logged(&log, "connected info=", 1);
    let _ = std::fs::remove_dir_all(&dir);
}
