//! Threads of the directory's own that the OS runs last, for the password
//! checks of devices an account does not know: a crowd of guessers then
//! spends only the CPU that real users' sign-ins, the directory's other
//! requests and the machine's sessions leave over.
//!
//! A dozen lines on std threads rather than a second runtime or a pool
//! crate: the threads lower their own priority once, for good (an
//! unprivileged thread cannot raise it back), so they must be threads no
//! other work ever lands on, and the gate in front already bounds the jobs.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of background threads taking jobs in turn.
#[derive(Debug)]
pub struct Background {
    jobs: SyncSender<Job>,
}

impl Background {
    /// Starts `threads` threads named `nephele-dir-bgN`; they end when
    /// this is dropped.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("nephele-dir-bg{i}"))
                .spawn(move || {
                    nephele_platform::sched::background();
                    while let Some(job) = next(&rx) {
                        // A job that panics loses its answer, not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a background thread; `None` if every thread and queue
    /// place is taken (the caller's gate lets no more through than there
    /// are threads, so that means a bug, answered as busy) or `f` panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => result.await.ok(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
        }
    }
}

/// The next job, or `None` once the sender is gone.
fn next(rx: &Mutex<Receiver<Job>>) -> Option<Job> {
    rx.lock().ok()?.recv().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value, from field 19 of its stat file.
    fn own_nice() -> Option<i32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let after = stat.rsplit_once(')')?.1;
        after.split_whitespace().nth(16)?.parse().ok()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_on_named_background_threads_and_give_their_result() {
        let bg = Background::start(2).unwrap();
        let (name, nice) = bg
            .run(|| {
                let name = std::thread::current().name().map(str::to_owned);
                (name, own_nice())
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("nephele-dir-bg"));
        if cfg!(target_os = "linux") {
            assert_eq!(nice, Some(19));
        }
        // A job that panics costs its answer, not the thread.
        assert_eq!(bg.run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(bg.run(|| 7).await, Some(7));
        assert_eq!(bg.run(|| 8).await, Some(8));
    }
}
