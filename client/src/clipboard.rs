//! The clipboard's text shared with the session both ways, when the user
//! allows it (`--clipboard`, `[input] clipboard = true`).
//!
//! A thread of its own owns the system clipboard (reading it may wait on
//! another program): it looks for new local text four times a second and
//! hands it to the network thread, and puts what the desktop copied on the
//! local clipboard. Text the desktop sent is not sent back. Only text up to
//! [`MAX_CLIPBOARD`] bytes is shared: it crosses the gateway ↔ host link in
//! one datagram.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nephele_protocol::wire::MAX_CLIPBOARD;

/// How often the local clipboard is looked at.
const POLL: Duration = Duration::from_millis(250);

/// Texts from the desktop waiting for the clipboard thread, at most.
pub const INBOUND: usize = 4;

/// Local clipboard text waiting for the network thread (latest wins).
#[derive(Debug, Default)]
pub struct Outbox(Mutex<Option<String>>);

impl Outbox {
    /// Takes the text waiting, if any.
    pub fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut t| t.take())
    }
}

/// The clipboard thread; stops when dropped.
#[derive(Debug)]
pub struct ClipboardLink {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClipboardLink {
    /// Starts the thread: local text goes into `outbox` (and `wake` wakes
    /// the network thread); texts on `inbound` go onto the clipboard.
    pub fn start(
        outbox: Arc<Outbox>,
        wake: Arc<dyn Fn() + Send + Sync>,
        inbound: Receiver<String>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nephele-clipboard".into())
            .spawn(move || run(&s, &outbox, &*wake, &inbound))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ClipboardLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(stop: &AtomicBool, outbox: &Outbox, wake: &dyn Fn(), inbound: &Receiver<String>) {
    let mut cb = match nephele_platform::clipboard::Clipboard::open() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the clipboard is not shared");
            return;
        }
    };
    // What the clipboard held last, as sent or as received: not sent again.
    let mut last: Option<String> = None;
    let mut complained = false;
    while !stop.load(Ordering::Relaxed) {
        match inbound.recv_timeout(POLL) {
            Ok(text) => {
                if cb.set_text(&text) {
                    last = Some(text);
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let Some(text) = cb.text().filter(|t| !t.is_empty()) else {
            continue;
        };
        if last.as_ref() == Some(&text) {
            continue;
        }
        if text.len() <= MAX_CLIPBOARD {
            if let Ok(mut o) = outbox.0.lock() {
                *o = Some(text.clone());
            }
            wake();
            complained = false;
        } else if !complained {
            tracing::warn!(
                bytes = text.len(),
                limit = MAX_CLIPBOARD,
                "the clipboard's text is too long to share"
            );
            complained = true;
        }
        last = Some(text);
    }
}
