//! `--record-input`: every input event a host applies (and every one it
//! releases on its own) as a JSON line, for tests and for people checking
//! what reached the desktop. Lines are flushed whole, so a reader never
//! sees half of one; clipboard traffic is noted by size, never its text.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use nephele_protocol::wire::InputEvent;

/// A line's common fields: when (ms since the host started), which
/// session, what kind.
fn line(epoch: Instant, session: u64, kind: &str) -> serde_json::Value {
    let t_ms = epoch.elapsed().as_secs_f64() * 1000.0;
    serde_json::json!({
        "t_ms": (t_ms * 1000.0).round() / 1000.0,
        "session": session,
        "kind": kind,
    })
}

/// The recording file.
#[derive(Debug)]
pub(super) struct Recorder {
    out: BufWriter<File>,
}

impl Recorder {
    /// Opens `path` for appending (several hosts may share one file; each
    /// writes whole lines).
    pub fn open(path: &Path) -> Result<Self, (String, std::io::Error)> {
        let f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| (path.display().to_string(), e))?;
        Ok(Self {
            out: BufWriter::new(f),
        })
    }

    fn write(&mut self, line: &serde_json::Value) {
        let _ = writeln!(self.out, "{line}").and_then(|()| self.out.flush());
    }

    /// A session taken over from a failed primary, with the state it took.
    pub fn takeover(&mut self, epoch: Instant, session: u64, input_seq: u32, typed: &str) {
        let mut line = line(epoch, session, "takeover");
        line["input_seq"] = input_seq.into();
        line["typed"] = typed.into();
        self.write(&line);
    }

    /// Clipboard text of `bytes` went `kind` (in or out); never the text.
    pub fn note(&mut self, epoch: Instant, session: u64, kind: &str, bytes: usize) {
        let mut line = line(epoch, session, kind);
        line["bytes"] = bytes.into();
        self.write(&line);
    }

    /// An input event: applied (`seq`), or released by the host itself.
    pub fn input(
        &mut self,
        epoch: Instant,
        session: u64,
        seq: Option<u32>,
        ev: &InputEvent,
        released: bool,
    ) {
        let mut line = line(epoch, session, ev.kind());
        if let Some(seq) = seq {
            line["seq"] = seq.into();
        }
        let edge = |down: bool| if down { "down" } else { "up" };
        match *ev {
            InputEvent::Key { usage, down } => {
                line["action"] = edge(down).into();
                line["usage"] = usage.into();
                if let Some(code) = nephele_protocol::hid::name_from_usage(usage) {
                    line["code"] = code.into();
                }
            }
            InputEvent::Button { button, down } => {
                line["action"] = edge(down).into();
                line["button"] = button.name().into();
            }
            InputEvent::Move { x, y } => {
                line["x"] = x.into();
                line["y"] = y.into();
            }
            InputEvent::MoveBy { dx, dy } | InputEvent::Wheel { dx, dy } => {
                line["dx"] = dx.into();
                line["dy"] = dy.into();
            }
            InputEvent::Text { ch } => {
                line["text"] = ch.to_string().into();
            }
            InputEvent::PadConnect { pad, kind, rumble } => {
                line["pad"] = pad.into();
                line["action"] = "connect".into();
                line["type"] = kind.name().into();
                line["rumble"] = rumble.into();
            }
            InputEvent::PadDisconnect { pad } => {
                line["pad"] = pad.into();
                line["action"] = "disconnect".into();
            }
            InputEvent::PadButton { pad, button, down } => {
                line["pad"] = pad.into();
                line["action"] = edge(down).into();
                line["button"] = button.name().into();
            }
            InputEvent::PadAxis { pad, axis, value } => {
                line["pad"] = pad.into();
                line["action"] = "axis".into();
                line["axis"] = axis.name().into();
                // Four decimals: the wire's 1/32767 steps, without the
                // float noise (0.5 reads 0.5, not 0.500015).
                let v = f64::from(nephele_protocol::pad::axis_to_f32(value));
                line["value"] = ((v * 1e4).round() / 1e4).into();
            }
        }
        if released {
            line["released_on_disconnect"] = true.into();
        }
        self.write(&line);
    }
}
