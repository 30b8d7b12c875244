//! `nephele demo`: the reference service started beside the client as its
//! own process (`nephele-server all` on loopback: a directory with a demo
//! account, three gateways posing as three PoPs at different distances,
//! and two desktop hosts), so the client signs in, probes and connects
//! exactly as against a real service, and links none of it.
//!
//! The server is looked for beside this executable, then on the PATH
//! (`$NEPHELE_SERVER` names it outright). It gets a pipe as its standard
//! input and stops when that closes, so it never outlives the client, and
//! its log lines pass through to this process's standard error.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;

/// The PoPs of the demo: name and round trip.
pub const DEMO_POPS: [(&str, u64); 3] = [("pop-near", 5), ("pop-mid", 25), ("pop-far", 60)];

/// The demo account's name.
pub const DEMO_USER: &str = "demo";

/// How long the server may take to start before the demo gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Server log lines kept to explain a failed start.
const KEPT_LINES: usize = 8;

/// Errors starting the demo service.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// No `nephele-server` to run.
    #[error(
        "`nephele demo` runs the reference service, nephele-server, which is neither beside this program ({beside}) nor on the PATH: build it (`cargo build -p nephele-service`) or install it, or name it with $NEPHELE_SERVER"
    )]
    NoServer {
        /// Where it was looked for first.
        beside: String,
    },
    /// `$NEPHELE_SERVER` names no file.
    #[error(
        "$NEPHELE_SERVER names {path}, which does not exist: point it at nephele-server, or unset it to use the one beside this program"
    )]
    BadServerVar {
        /// What it names.
        path: String,
    },
    /// The server could not be started, or its state directory made.
    /// (The reason is in the message, not a source, so a chain prints it
    /// once.)
    #[error("starting {what}: {why}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        why: std::io::Error,
    },
    /// The server stopped, or said nothing in time, before it was ready.
    #[error("the demo service (nephele-server) did not start: {0}")]
    NotReady(String),
    /// The CA the server wrote cannot be read.
    #[error(transparent)]
    Trust(#[from] nephele_api::trust::TrustError),
}

/// What the demo service is started with: `nephele-server all` flags,
/// each already checked by the client's command line where it can be.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Passed to the hosts' `--record-input`.
    pub record_input: Option<PathBuf>,
    /// `--network`: the network between the client and the PoPs.
    pub network: String,
    /// `--bitrate`: the hosts' most bits per second per session (0: from
    /// the picture size).
    pub bitrate: u32,
    /// `--motion`: a video panel that changes every frame.
    pub motion: bool,
    /// `--tone`: a steady tone of this many hertz.
    pub tone: Option<String>,
    /// `--record-mic`: where the host records the microphone (WAV).
    pub record_mic: Option<PathBuf>,
    /// `--idle-policy`: the directory's idle policy.
    pub idle_policy: String,
    /// `--chaos`: parts of the service killed mid-session.
    pub chaos: String,
}

/// The running demo service; stops when dropped.
#[derive(Debug)]
pub struct DemoServer {
    child: Child,
    /// Closed to tell the server to stop.
    stdin: Option<ChildStdin>,
    url: String,
    ca: CertificateDer<'static>,
    password: String,
    state_dir: PathBuf,
}

/// A password for the demo account, fresh per run.
fn random_password() -> String {
    format!("{:016x}", nephele_platform::process::random_id())
}

/// `$NEPHELE_SERVER` when set, else `nephele-server` beside this
/// executable, else on the PATH.
fn server_program() -> Result<PathBuf, DemoError> {
    let name = format!("nephele-server{}", std::env::consts::EXE_SUFFIX);
    if let Some(p) = std::env::var_os("NEPHELE_SERVER") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(DemoError::BadServerVar {
                path: p.display().to_string(),
            });
        }
        return Ok(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name(&name))
        .unwrap_or_else(|| PathBuf::from(&name));
    if beside.is_file() {
        return Ok(beside);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(&name))
                .find(|c| c.is_file())
        })
        .ok_or_else(|| DemoError::NoServer {
            beside: beside.display().to_string(),
        })
}

impl DemoServer {
    /// Starts `nephele-server all` on 127.0.0.1 with ephemeral ports and a
    /// temporary state directory, and waits until it prints its
    /// directory's URL.
    pub fn start(opts: &DemoOptions) -> Result<Self, DemoError> {
        let program = server_program()?;
        let state_dir = std::env::temp_dir().join(format!(
            "nephele-demo-{}-{}",
            std::process::id(),
            random_password()
        ));
        let io = |what: &str| {
            let what = what.to_string();
            move |why| DemoError::Io { what, why }
        };
        std::fs::create_dir_all(&state_dir).map_err(io("the demo's state directory"))?;
        let password = random_password();
        let mut cmd = Command::new(&program);
        cmd.args([
            "all",
            "--quit-on-eof",
            "--listen",
            "127.0.0.1:0",
            "--directory-listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(&state_dir);
        for (name, ms) in DEMO_POPS {
            cmd.arg("--pop").arg(format!("{name}:{ms}"));
        }
        let flag = |cmd: &mut Command, name: &str, value: Option<&std::ffi::OsStr>| {
            if let Some(v) = value {
                cmd.arg(name).arg(v);
            }
        };
        let nonempty = |s: &str| (!s.is_empty()).then(|| std::ffi::OsStr::new(s).to_owned());
        flag(&mut cmd, "--network", nonempty(&opts.network).as_deref());
        flag(
            &mut cmd,
            "--idle-policy",
            nonempty(&opts.idle_policy).as_deref(),
        );
        flag(&mut cmd, "--chaos", nonempty(&opts.chaos).as_deref());
        flag(
            &mut cmd,
            "--tone",
            opts.tone.as_deref().map(std::ffi::OsStr::new),
        );
        flag(
            &mut cmd,
            "--record-input",
            opts.record_input.as_deref().map(Path::as_os_str),
        );
        flag(
            &mut cmd,
            "--record-mic",
            opts.record_mic.as_deref().map(Path::as_os_str),
        );
        if opts.bitrate > 0 {
            cmd.arg("--bitrate").arg(opts.bitrate.to_string());
        }
        if opts.motion {
            cmd.arg("--motion");
        }
        // The account travels in the environment, which other users cannot
        // read, rather than on the command line, which they can.
        cmd.env("NEPHELE_DEMO_USER", format!("{DEMO_USER}:{password}"));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(&program.display().to_string()))?;
        let kept = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        pass_stderr(stderr, kept.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(out) = stdout {
            let spawned = std::thread::Builder::new()
                .name("nephele-demo-out".into())
                .spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        let _ = tx.send(line);
                    }
                });
            if let Err(e) = spawned {
                let _ = child.kill();
                return Err(io("a thread")(e));
            }
        }
        let server = Self {
            stdin: child.stdin.take(),
            child,
            url: String::new(),
            ca: CertificateDer::from(Vec::new()),
            password,
            state_dir,
        };
        server.ready(rx, &kept)
    }

    /// Waits for the directory's URL (the server's one line on stdout), then
    /// reads the CA it wrote.
    fn ready(
        mut self,
        lines: std::sync::mpsc::Receiver<String>,
        kept: &Mutex<VecDeque<String>>,
    ) -> Result<Self, DemoError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let why = |status: String| {
            let said = kept
                .lock()
                .map(|k| k.iter().cloned().collect::<Vec<_>>().join(" / "))
                .unwrap_or_default();
            if said.is_empty() {
                status
            } else {
                format!("{status}: {said}")
            }
        };
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(url) if url.starts_with("https://") => {
                    self.url = url;
                    break;
                }
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Its stderr may still be arriving.
                    let status = self.child.wait().map_err(|why| DemoError::Io {
                        what: "waiting for nephele-server".into(),
                        why,
                    })?;
                    std::thread::sleep(Duration::from_millis(50));
                    return Err(DemoError::NotReady(why(format!("it stopped ({status})"))));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() > deadline {
                        return Err(DemoError::NotReady(why(format!(
                            "no answer within {} s",
                            START_TIMEOUT.as_secs()
                        ))));
                    }
                }
            }
        }
        let ca = nephele_api::trust::read_cert_pem(&self.state_dir.join("ca.pem"))?;
        // (The reader refuses a file without a certificate.)
        if let Some(ca) = ca.into_iter().next() {
            self.ca = ca;
        }
        Ok(self)
    }

    /// The directory's URL.
    pub fn directory_url(&self) -> &str {
        &self.url
    }

    /// The demo account: user name and password.
    pub fn credentials(&self) -> (&str, &str) {
        (DEMO_USER, &self.password)
    }

    /// The CA the directory's and gateways' certificates are signed by.
    pub fn ca(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// The server's process id (its CPU time counts as the demo's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Passes the server's log lines to this process's stderr, keeping the
/// last few to explain a failed start.
fn pass_stderr(stderr: Option<std::process::ChildStderr>, kept: Arc<Mutex<VecDeque<String>>>) {
    let Some(err) = stderr else { return };
    let spawned = std::thread::Builder::new()
        .name("nephele-demo-log".into())
        .spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if let Ok(mut k) = kept.lock() {
                    if k.len() == KEPT_LINES {
                        k.pop_front();
                    }
                    k.push_back(line);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "the demo service's log is not shown");
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        // Closing its input stops the server, which says goodbye to its
        // sessions and leaves; a server that does not is killed.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}
