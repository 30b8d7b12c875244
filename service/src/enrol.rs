//! A gateway's or a host's place in the directory's lists: it registers,
//! then heartbeats on a thread of its own (the directory client blocks),
//! registering again when the directory forgot it, and leaves the lists
//! when it closes (not when it is killed).
//!
//! The first registration presents the deployment's service key and is
//! issued a key of the member's own, which everything after presents
//! (kept in a file when the member was given one, so a restarted member
//! is the same one to the directory at once).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nephele_api::directory::Registered;
use nephele_api::{DirClientError, DirectoryClient};

/// What a gateway or host presents to the directory.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The deployment's service key: registers an id no running member
    /// holds, and is issued that id's own key.
    pub service_key: String,
    /// Where the member's own key is kept between runs (read at start,
    /// written when issued); without it the key lives in memory only and a
    /// restarted member registers anew once its old registration lapsed.
    pub key_file: Option<PathBuf>,
}

/// One kind of member of the directory's lists.
pub trait Member: Send + 'static {
    /// Its id in the lists.
    fn id(&self) -> &str;
    /// Registers with `key`.
    fn register(&mut self, dir: &DirectoryClient, key: &str) -> Result<Registered, DirClientError>;
    /// Reports it alive; `Ok(false)` when the directory forgot it.
    fn heartbeat(&mut self, dir: &DirectoryClient, key: &str) -> Result<bool, DirClientError>;
    /// Leaves the lists.
    fn leave(&self, dir: &DirectoryClient, key: &str) -> Result<(), DirClientError>;
}

/// The key the directory issued a member, shared with what else of the
/// member talks to the directory (a host's application sessions).
pub type OwnKey = Arc<std::sync::Mutex<Option<String>>>;

/// The keys in hand, and registering with the right one.
struct Keys {
    creds: Credentials,
    own: Option<String>,
    shared: OwnKey,
}

impl Keys {
    fn new(creds: Credentials, shared: OwnKey) -> Self {
        let own = creds.key_file.as_ref().and_then(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
        });
        let keys = Self { creds, own, shared };
        keys.share();
        keys
    }

    fn share(&self) {
        if let Ok(mut k) = self.shared.lock() {
            k.clone_from(&self.own);
        }
    }

    /// Registers with the member's own key, or (when it has none, or the
    /// directory no longer knows it) with the service key, keeping the key
    /// issued.
    fn register(
        &mut self,
        dir: &DirectoryClient,
        m: &mut impl Member,
    ) -> Result<Registered, DirClientError> {
        if let Some(k) = &self.own {
            match m.register(dir, k) {
                Err(DirClientError::Refused { status: 401, .. }) => {
                    tracing::warn!(id = %m.id(), "the directory does not know this member's key: registering with the service key");
                    self.own = None;
                }
                other => return other,
            }
        }
        let r = m.register(dir, &self.creds.service_key)?;
        if let Some(k) = &r.gateway_key {
            self.own = Some(k.clone());
            self.share();
            if let Some(p) = &self.creds.key_file
                && let Err(e) = nephele_platform::fs::write_private(p, k.as_bytes())
            {
                tracing::warn!(error = %e, path = %p.display(), "cannot keep the key the directory issued");
            }
        }
        Ok(r)
    }

    fn own(&self) -> &str {
        self.own.as_deref().unwrap_or("")
    }
}

/// The heartbeat thread.
#[derive(Debug)]
pub struct Enrolment {
    key: OwnKey,
    stop: Arc<AtomicBool>,
    deregister: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Enrolment {
    /// Starts registering and heartbeating `member` on a thread named `name`.
    pub fn start(
        dir: DirectoryClient,
        creds: Credentials,
        mut member: impl Member,
        name: &str,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let deregister = Arc::new(AtomicBool::new(true));
        let leave = deregister.clone();
        let key = OwnKey::default();
        let shared = key.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut keys = Keys::new(creds, shared);
                let mut registered = false;
                let mut interval = Duration::from_secs(1);
                while !flag.load(Ordering::Relaxed) {
                    if registered {
                        match member.heartbeat(&dir, keys.own()) {
                            Ok(true) => {}
                            Ok(false) | Err(DirClientError::Refused { status: 401, .. }) => {
                                registered = false;
                            }
                            Err(e) => tracing::warn!(error = %e, "heartbeat to the directory failed"),
                        }
                    }
                    if !registered {
                        match keys.register(&dir, &mut member) {
                            Ok(r) => {
                                registered = true;
                                interval = Duration::from_millis(r.heartbeat_ms.clamp(100, 60_000));
                                tracing::info!(id = %member.id(), directory = dir.url(), "registered with the directory");
                            }
                            Err(e) => tracing::warn!(error = %e, "registering with the directory failed"),
                        }
                    }
                    // Sleep in small steps so closing is prompt.
                    let until = Instant::now() + interval;
                    while Instant::now() < until && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                if registered
                    && leave.load(Ordering::Relaxed)
                    && let Err(e) = member.leave(&dir, keys.own())
                {
                    tracing::debug!(error = %e, "leaving the directory");
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the heartbeat thread"))
            .ok();
        Self {
            key,
            stop,
            deregister,
            thread,
        }
    }

    /// The member's own key, as issued (shared: it follows a new issue).
    pub fn key(&self) -> OwnKey {
        self.key.clone()
    }

    /// Stops heartbeating; with `deregister`, leaves the lists first.
    pub fn stop(mut self, deregister: bool) {
        self.deregister.store(deregister, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
