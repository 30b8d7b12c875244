//! Programs the tasks start and stop: an X server of their own, and what
//! a started program says first.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// The first line `child` prints on standard output (what it chose: an
/// address, a display number), trimmed.
pub fn first_line(child: &mut std::process::Child) -> Result<String> {
    let mut line = String::new();
    if let Some(out) = child.stdout.as_mut() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    }
    Ok(line.trim().to_string())
}

/// An X server of its own; stopped when dropped.
pub struct Xvfb {
    child: std::process::Child,
    /// Its `DISPLAY`.
    pub display: String,
}

impl Xvfb {
    /// Starts one with a screen of `size` (`WIDTHxHEIGHT`).
    pub fn start(size: &str) -> Result<Self> {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", &format!("{size}x24")])
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Xvfb (cargo xtask setup installs it)")?;
        let n = first_line(&mut child)?;
        Ok(Self {
            child,
            display: format!(":{n}"),
        })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child killed (and reaped) when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
