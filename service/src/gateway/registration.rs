//! A gateway's place in the directory's lists: it registers, then
//! heartbeats its load on a thread of its own (the directory client
//! blocks), registering again when the directory forgot it, and leaves
//! the lists when it closes (not when it is killed).
//!
//! The first registration presents the deployment's service key and is
//! issued a key of the gateway's own, which everything after presents
//! (kept in a file when the gateway was given one, so a restarted gateway
//! is the same gateway to the directory at once).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nephele_api::directory::{GatewayInfo, Registered};
use nephele_api::{DirClientError, DirectoryClient};

use super::{GatewayStats, load_of};

/// The heartbeat thread.
#[derive(Debug)]
pub(super) struct Registration {
    stop: Arc<AtomicBool>,
    deregister: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a gateway presents to the directory.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The deployment's service key: registers an id no running gateway
    /// holds, and is issued that id's own key.
    pub service_key: String,
    /// Where the gateway's own key is kept between runs (read at start,
    /// written when issued); without it the key lives in memory only and a
    /// restarted gateway registers anew once its old registration lapsed.
    pub key_file: Option<PathBuf>,
}

/// The keys in hand, and registering with the right one.
struct Keys {
    dir: DirectoryClient,
    creds: Credentials,
    own: Option<String>,
}

impl Keys {
    fn new(dir: DirectoryClient, creds: Credentials) -> Self {
        let own = creds.key_file.as_ref().and_then(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
        });
        Self { dir, creds, own }
    }

    /// Registers with the gateway's own key, or (when it has none, or the
    /// directory no longer knows it) with the service key, keeping the key
    /// issued.
    fn register(&mut self, info: &GatewayInfo) -> Result<Registered, DirClientError> {
        if let Some(k) = &self.own {
            match self.dir.register(k, info) {
                Err(DirClientError::Refused { status: 401, .. }) => {
                    tracing::warn!(id = %info.id, "the directory does not know this gateway's key: registering with the service key");
                    self.own = None;
                }
                other => return other,
            }
        }
        let r = self.dir.register(&self.creds.service_key, info)?;
        if let Some(k) = &r.gateway_key {
            self.own = Some(k.clone());
            if let Some(p) = &self.creds.key_file
                && let Err(e) = nephele_platform::fs::write_private(p, k.as_bytes())
            {
                tracing::warn!(error = %e, path = %p.display(), "cannot keep the gateway's key");
            }
        }
        Ok(r)
    }

    fn own(&self) -> &str {
        self.own.as_deref().unwrap_or("")
    }
}

impl Registration {
    pub fn start(
        dir: DirectoryClient,
        creds: Credentials,
        info: GatewayInfo,
        stats: Arc<GatewayStats>,
        capacity: u32,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let deregister = Arc::new(AtomicBool::new(true));
        let leave = deregister.clone();
        let thread = std::thread::Builder::new()
            .name("nephele-gw-heartbeat".into())
            .spawn(move || {
                let mut keys = Keys::new(dir.clone(), creds);
                let mut registered = false;
                let mut interval = Duration::from_secs(1);
                while !flag.load(Ordering::Relaxed) {
                    let load = load_of(&stats, capacity);
                    if registered {
                        match dir.heartbeat(keys.own(), &info.id, load) {
                            Ok(true) => {}
                            Ok(false) | Err(DirClientError::Refused { status: 401, .. }) => {
                                registered = false;
                            }
                            Err(e) => tracing::warn!(error = %e, "heartbeat to the directory failed"),
                        }
                    }
                    if !registered {
                        let mut me = info.clone();
                        me.load = load;
                        match keys.register(&me) {
                            Ok(r) => {
                                registered = true;
                                interval = Duration::from_millis(r.heartbeat_ms.clamp(100, 60_000));
                                tracing::info!(id = %info.id, directory = dir.url(), "registered with the directory");
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
                    && let Err(e) = dir.deregister(keys.own(), &info.id)
                {
                    tracing::debug!(error = %e, "leaving the directory");
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the heartbeat thread"))
            .ok();
        Self {
            stop,
            deregister,
            thread,
        }
    }

    pub fn stop(mut self, deregister: bool) {
        self.deregister.store(deregister, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
