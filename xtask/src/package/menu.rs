//! The installed client started as an application menu starts it: the
//! desktop entry's command, with no terminal, no arguments of ours, a new
//! home and a display; then a person's keys, sent by xdotool, from the
//! service's address to typing on their desktop.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::procs::{Killed, Xvfb, first_line};

/// Runs the entry's `exec` from the scratch root's `/usr/bin` against the
/// installed service, and walks the launcher to a typed key on the host.
pub fn from_the_menu(scratch: &Path, exec: &str) -> Result<()> {
    let bin = scratch.join("usr/bin");
    let work = scratch.join("menu");
    let home = work.join("home");
    let settings = home.join(".config/nephele");
    std::fs::create_dir_all(&settings)?;
    // Sound stays out of it (the machine may have no sound server).
    std::fs::write(
        settings.join("config.toml"),
        "[audio]\nspeaker = false\nmicrophone = false\n",
    )?;
    let record = work.join("record.jsonl");
    let mut server = Command::new(bin.join("nephele-server"));
    server
        .args(["all", "--listen", "127.0.0.1:0"])
        .args(["--directory-listen", "127.0.0.1:0"])
        .args(["--demo-user", "alice:wonderland", "--state-dir"])
        .arg(work.join("state"))
        .arg("--record-input")
        .arg(&record)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(work.join("server.log"))?);
    let mut server = Killed(
        server
            .spawn()
            .context("starting the installed nephele-server")?,
    );
    let url = first_line(&mut server.0)?;
    let address = url
        .strip_prefix("https://")
        .with_context(|| format!("nephele-server printed `{url}`, not its address"))?;
    let x = Xvfb::start("1280x800")?;
    let mut words = exec.split_whitespace();
    let program = words.next().context("the entry's Exec is empty")?;
    let log = work.join("client.log");
    let _client = Killed(
        Command::new(bin.join(program))
            .args(words)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DISPLAY", &x.display)
            .env_remove("WAYLAND_DISPLAY")
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting the entry's `{exec}`"))?,
    );
    let xdo = |args: &[&str]| -> Result<String> {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &x.display)
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .context("xdotool (cargo xtask setup installs it)")?;
        if !out.status.success() {
            bail!("xdotool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let said = |file: &Path, what: &str| wait_for_text(file, what, Duration::from_secs(30));
    said(&log, "launcher opens page=AddService")?;
    let wid = xdo(&["search", "--sync", "--name", "^Nephele"])?;
    let wid = wid.lines().next().context("no Nephele window")?.to_string();
    xdo(&["windowfocus", "--sync", &wid])?;
    let typed = |text: &str| xdo(&["type", "--delay", "40", text]).map(drop);
    let key = |k: &str| xdo(&["key", "--delay", "60", k]).map(drop);
    typed(address)?;
    key("Return")?;
    said(&log, "to=Trust")?;
    key("Return")?;
    said(&log, "to=SignIn")?;
    typed("alice")?;
    key("Tab")?;
    typed("wonderland")?;
    key("Return")?;
    said(&log, "to=Catalog")?;
    key("Return")?;
    said(&log, "first picture")?;
    typed("ok")?;
    // Typed as text, the default.
    said(&record, "\"text\":\"k\"").context("the keys typed did not reach the desktop")?;
    eprintln!(
        "xtask: from the menu's entry (`{exec}`) to typing on the desktop, without a terminal"
    );
    Ok(())
}

/// Waits until `file` holds `what`.
fn wait_for_text(file: &Path, what: &str, limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if std::fs::read_to_string(file).is_ok_and(|t| t.contains(what)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "waited {} s for `{what}` in {}",
        limit.as_secs(),
        file.display()
    )
}
