//! A gateway's place in the directory's lists: it registers, then
//! heartbeats its load on a thread of its own (the directory client
//! blocks), registering again when the directory forgot it, and leaves
//! the lists when it closes (not when it is killed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nephele_api::DirectoryClient;
use nephele_api::directory::GatewayInfo;

use super::{GatewayStats, load_of};

/// The heartbeat thread.
#[derive(Debug)]
pub(super) struct Registration {
    stop: Arc<AtomicBool>,
    deregister: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Registration {
    pub fn start(
        dir: DirectoryClient,
        key: String,
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
                let mut registered = false;
                let mut interval = Duration::from_secs(1);
                while !flag.load(Ordering::Relaxed) {
                    let load = load_of(&stats, capacity);
                    if registered {
                        match dir.heartbeat(&key, &info.id, load) {
                            Ok(true) => {}
                            Ok(false) => registered = false,
                            Err(e) => tracing::warn!(error = %e, "heartbeat to the directory failed"),
                        }
                    }
                    if !registered {
                        let mut me = info.clone();
                        me.load = load;
                        match dir.register(&key, &me) {
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
                    && let Err(e) = dir.deregister(&key, &info.id)
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
