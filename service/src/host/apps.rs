//! Application sessions: each on a private X display (Xvfb) of its own,
//! running the catalog entry's program as the host's application account
//! with the user's profile as its home; at log-off the profile goes back
//! to the directory, for whichever host serves the user's next session.
//!
//! Starting one asks the directory (what to run, the profile) and waits
//! for Xvfb; ending one waits for the program and sends the profile back.
//! Both block, so they run on one worker thread (`nephele-host-apps`),
//! never on the receive thread. The worker lives as long as the host, and
//! the displays and programs it starts die with it (a killed host leaves
//! no orphans behind).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use nephele_api::DirectoryClient;
use nephele_api::directory::{AppLaunchRequest, MAX_PROFILE_BYTES, ProfileSave};
use nephele_platform::child::{self, Account};

/// Where a host runs applications, and as whom.
#[derive(Debug, Clone)]
pub struct AppsConfig {
    /// Where running sessions' homes are kept (each in a directory of its
    /// own, removed at log-off).
    pub dir: PathBuf,
    /// The account the programs run as: a name, or a pattern in which
    /// `{user}` stands for the session's user; `None`: the host's own.
    pub account: Option<String>,
}

/// How the host reaches the directory about its application sessions:
/// set once it enrols.
#[derive(Debug, Clone)]
pub(crate) struct AppLink {
    pub dir: DirectoryClient,
    /// The host's id in the directory's lists.
    pub host: String,
    /// The key the directory issued the host (when it has one).
    pub key: crate::enrol::OwnKey,
}

/// [`AppLink`], once there is one.
pub(crate) type SharedLink = Arc<Mutex<Option<AppLink>>>;

/// Smallest and largest display an application gets.
const MIN_SIZE: (u16, u16) = (320, 240);
const MAX_SIZE: (u16, u16) = (3840, 2160);

/// How long a program has to end (and save) after being asked.
const END_GRACE: Duration = Duration::from_secs(3);

/// Jobs queued for the worker at most: a start or an end per session.
const QUEUE: usize = 2 * nephele_protocol::host::MAX_SESSIONS;

/// An application session's display and program.
#[derive(Debug)]
pub(super) struct Running {
    /// Its display (ended after the program).
    x: super::app_display::Display,
    app: Child,
    /// The session's directory (its home is `home/` in it).
    root: PathBuf,
    token: String,
}

impl Running {
    /// The X display's name (`:N`).
    pub fn display(&self) -> &str {
        &self.x.name
    }

    /// Whether the program ended by itself (the user closed it).
    pub fn exited(&mut self) -> bool {
        matches!(self.app.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Reached without `finish` only when the host stops: nothing saved.
        let _ = self.app.kill();
        let _ = self.app.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

enum Job {
    Start {
        session: u64,
        token: String,
        size: (u16, u16),
    },
    Finish(Box<Running>),
}

/// A started session, or why it could not start (in words for the log).
pub(super) type Started = (u64, Result<Running, String>);

/// The worker thread and its queues.
pub(super) struct Apps {
    jobs: Option<SyncSender<Job>>,
    pub done: Receiver<Started>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Apps {
    /// Starts the worker.
    pub fn start(cfg: AppsConfig, link: SharedLink) -> std::io::Result<Self> {
        std::fs::create_dir_all(&cfg.dir)?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let (report, done) = std::sync::mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("nephele-host-apps".into())
            .spawn(move || {
                // Ends when the host drops its sender, after the jobs queued.
                for job in queue {
                    match job {
                        Job::Start {
                            session,
                            token,
                            size,
                        } => {
                            let r = start(&cfg, &link, session, token, size);
                            let _ = report.send((session, r));
                        }
                        Job::Finish(run) => finish(&link, *run),
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Starts session `session`'s application on a display of `size`; the
    /// outcome arrives on [`Apps::done`].
    pub fn launch(&self, session: u64, token: String, size: (u16, u16)) -> Result<(), String> {
        self.send(Job::Start {
            session,
            token,
            size,
        })
    }

    /// Ends a session's application and keeps its profile.
    pub fn finish(&self, run: Running) {
        if let Err(e) = self.send(Job::Finish(Box::new(run))) {
            tracing::error!(error = %e, "application session not saved");
        }
    }

    fn send(&self, job: Job) -> Result<(), String> {
        let Some(jobs) = &self.jobs else {
            return Err("the host is stopping".into());
        };
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => "too many application sessions starting at once".into(),
            TrySendError::Disconnected(_) => "the application worker stopped".into(),
        })
    }
}

impl Drop for Apps {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The directory client and host id, and the host's key, or why there
/// are none.
fn linked(link: &SharedLink) -> Result<(AppLink, String), String> {
    let l = link
        .lock()
        .ok()
        .and_then(|l| l.clone())
        .ok_or("the host is not enrolled with a directory")?;
    let key = l
        .key
        .lock()
        .ok()
        .and_then(|k| k.clone())
        .unwrap_or_default();
    Ok((l, key))
}

fn start(
    cfg: &AppsConfig,
    link: &SharedLink,
    session: u64,
    token: String,
    size: (u16, u16),
) -> Result<Running, String> {
    let (l, key) = linked(link)?;
    let launch = l
        .dir
        .app_launch(
            &key,
            &l.host,
            &AppLaunchRequest {
                token: token.clone(),
            },
        )
        .map_err(|e| format!("asking the directory: {e}"))?;
    let program = launch.command.first().ok_or("the entry runs nothing")?;
    let account = match &cfg.account {
        Some(pattern) => {
            let name = pattern.replace("{user}", &launch.user);
            let a = child::account(&name)
                .map_err(|e| format!("running {}'s application: {e}", launch.user))?;
            Some(a)
        }
        None => None,
    };
    let root = cfg.dir.join(format!(
        "session-{session:016x}-{:x}",
        nephele_platform::process::random_id()
    ));
    let home = root.join("home");
    std::fs::create_dir_all(&home).map_err(|e| format!("creating {}: {e}", home.display()))?;
    let mut cleanup = Cleanup(Some(root.clone()));
    if let Some(p) = &launch.profile {
        let tar = B64
            .decode(p.as_bytes())
            .map_err(|_| "the profile is not base64".to_string())?;
        unpack(&tar, &home).map_err(|e| format!("unpacking the profile: {e}"))?;
    }
    // The display's cookie, for the program: in the session's directory,
    // outside the home (it is not part of the profile).
    let cookie = super::app_display::Cookie::new(root.join("xauthority"))?;
    if let Some(a) = account {
        own(&root, a).map_err(|e| format!("giving the home to the application account: {e}"))?;
    }
    let w = size.0.clamp(MIN_SIZE.0, MAX_SIZE.0);
    let h = size.1.clamp(MIN_SIZE.1, MAX_SIZE.1);
    let x = super::app_display::start((w, h), &cookie)?;
    let screen = x.name.clone();
    let mut cmd = Command::new(program);
    cmd.args(&launch.command[1..])
        .env_clear()
        .env("HOME", &home)
        .env("DISPLAY", &screen)
        .env("XAUTHORITY", &cookie.file)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .current_dir(&home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    child::bind(&mut cmd, account);
    let app = cmd
        .spawn()
        .map_err(|e| format!("starting `{program}`: {e}"))?;
    tracing::info!(session, display = %screen, program = %program, pid = app.id(), "application started");
    cleanup.0 = None;
    Ok(Running {
        x,
        app,
        root,
        token,
    })
}

fn finish(link: &SharedLink, mut run: Running) {
    child::terminate(&mut run.app);
    let until = Instant::now() + END_GRACE;
    while !run.exited() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = run.app.kill();
    let _ = run.app.wait();
    match pack(&run.root.join("home")) {
        Ok(tar) if tar.len() > MAX_PROFILE_BYTES => {
            tracing::error!(
                bytes = tar.len(),
                "the profile is larger than the directory keeps: the one before stays"
            );
        }
        Ok(tar) => save(link, &run.token, &tar),
        Err(e) => tracing::error!(error = %e, "packing the profile: the one before stays"),
    }
    // Drop ends the display and removes the session's directory.
}

fn save(link: &SharedLink, token: &str, tar: &[u8]) {
    let (l, key) = match linked(link) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "profile not kept"),
    };
    let save = ProfileSave {
        token: token.to_string(),
        profile: B64.encode(tar),
    };
    match l.dir.save_profile(&key, &l.host, &save) {
        Ok(()) => tracing::info!(bytes = tar.len(), "profile kept by the directory"),
        Err(e) => tracing::error!(error = %e, "profile not kept"),
    }
}

/// A home as a tar archive (symbolic links kept as links).
fn pack(home: &Path) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", home)?;
    b.into_inner()
}

/// A profile into `home` (entries that would land outside it are refused
/// by the tar crate).
fn unpack(tar: &[u8], home: &Path) -> std::io::Result<()> {
    let mut a = tar::Archive::new(tar);
    a.set_preserve_permissions(false);
    a.set_overwrite(true);
    a.unpack(home)
}

/// Gives `root` and everything under it to `account`.
#[cfg(unix)]
fn own(root: &Path, account: Account) -> std::io::Result<()> {
    std::os::unix::fs::lchown(root, Some(account.uid), Some(account.gid))?;
    if root.is_dir() && !root.is_symlink() {
        for e in std::fs::read_dir(root)? {
            own(&e?.path(), account)?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn own(_root: &Path, _account: Account) -> std::io::Result<()> {
    Ok(())
}

/// Removes a half-made session directory.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_packed_unpacks_to_the_same_files() {
        let t = std::env::temp_dir().join(format!(
            "nephele-profile-{:x}",
            nephele_platform::process::random_id()
        ));
        let (a, b) = (t.join("a"), t.join("b"));
        std::fs::create_dir_all(a.join(".config/app")).unwrap();
        std::fs::write(a.join("note.txt"), "kept").unwrap();
        std::fs::write(a.join(".config/app/settings"), "dark=1").unwrap();
        let tar = pack(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        unpack(&tar, &b).unwrap();
        assert_eq!(std::fs::read_to_string(b.join("note.txt")).unwrap(), "kept");
        let settings = std::fs::read_to_string(b.join(".config/app/settings")).unwrap();
        assert_eq!(settings, "dark=1");
        let _ = std::fs::remove_dir_all(&t);
    }

    #[test]
    fn a_profile_cannot_write_outside_its_home() {
        let t = std::env::temp_dir().join(format!(
            "nephele-profile-{:x}",
            nephele_platform::process::random_id()
        ));
        let home = t.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        let data = b"escaped";
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // `append_data` refuses `..` itself; the raw name goes in as a
        // crafted archive would carry it.
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../escaped.tx");
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let _ = unpack(&tar, &home);
        assert!(
            !t.join("escaped.tx").exists(),
            "the archive wrote outside the home"
        );
        let _ = std::fs::remove_dir_all(&t);
    }
}
