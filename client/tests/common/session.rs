//! Running the client and the service from the command line, as the CLI
//! and continuity tests do: scratch directories, `nephele demo
//! --headless`, servers whose logs are kept, typing scripts and the
//! exactly-once check of what hosts recorded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::server_binary;

pub fn nephele() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nephele"))
}

pub fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nephele-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Tests that stream or measure latency take turns: on a 2-core machine a
/// streaming session next to a probe run would measure the scheduler, not
/// the paths.
static EXCLUSIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    EXCLUSIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs `nephele demo --headless` with `args`, writing its stats into
/// `dir`; returns them.
pub fn headless_demo(dir: &Path, args: &[&str]) -> serde_json::Value {
    let stats = dir.join("s.json");
    let out = nephele()
        .args(["demo", "--headless"])
        .args(args)
        .arg("--stats-json")
        .arg(&stats)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&stats)
}

/// Kills the server even when an assertion fails.
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `count` letters typed one every 50 ms from `from_ms`, each pressed for
/// 20 ms: a script line per edge, and the letters in order.
pub fn typing(from_ms: u64, count: usize) -> (String, String) {
    let mut script = String::new();
    let mut letters = String::new();
    for i in 0..count {
        let c = (b'a' + (i % 26) as u8) as char;
        let t = from_ms + 50 * i as u64;
        let key = c.to_ascii_uppercase();
        script.push_str(&format!(
            "{t} key Key{key} down\n{} key Key{key} up\n",
            t + 20
        ));
        letters.push(c);
    }
    (script, letters)
}

/// The key events hosts recorded (across all their recording files, in
/// order): each must be there exactly once, with sequence numbers rising
/// by one, and spell `letters`. Returns the recordings' lines.
pub fn assert_exactly_once(files: &[PathBuf], letters: &str) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut keys: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["kind"] == "key" && v.get("seq").is_some())
        .collect();
    keys.sort_by_key(|v| v["seq"].as_u64());
    let seqs: Vec<u64> = keys.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (1..=2 * letters.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "every key event once, none twice, none lost"
    );
    let typed: String = keys
        .iter()
        .filter(|v| v["action"] == "down")
        .map(|v| {
            v["code"]
                .as_str()
                .unwrap()
                .trim_start_matches("Key")
                .to_ascii_lowercase()
        })
        .collect();
    assert_eq!(typed, letters);
    lines
}

/// Lines a child process writes, collected as they come; `true` once the
/// stream closed.
#[derive(Clone, Default)]
pub struct Heard(std::sync::Arc<std::sync::Mutex<(Vec<String>, bool)>>);

impl Heard {
    /// Collects `from`'s lines on a thread until it closes.
    pub fn listen(from: impl std::io::Read + Send + 'static) -> Self {
        let heard = Self::default();
        let sink = heard.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                sink.lock().unwrap().0.push(line);
            }
            sink.lock().unwrap().1 = true;
        });
        heard
    }

    pub fn said(&self, what: &str) -> bool {
        self.line(what).is_some()
    }

    /// The first line saying `what`.
    pub fn line(&self, what: &str) -> Option<String> {
        let heard = self.0.lock().unwrap();
        heard.0.iter().find(|l| l.contains(what)).cloned()
    }

    /// Everything the process wrote, once it closed the stream (or what
    /// came within 5 s).
    pub fn all(&self) -> String {
        let until = Instant::now() + Duration::from_secs(5);
        while !self.0.lock().unwrap().1 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.0.lock().unwrap().0.join("\n")
    }
}

/// A server process whose stderr lines are collected as they come.
pub struct Logged {
    /// Killed (SIGKILL) when dropped.
    pub child: Reap,
    heard: Heard,
}

impl Logged {
    pub fn start(args: &[&str]) -> (Self, std::process::ChildStdout) {
        let mut child = Command::new(server_binary())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let heard = Heard::listen(child.stderr.take().unwrap());
        (
            Self {
                child: Reap(child),
                heard,
            },
            stdout,
        )
    }

    pub fn said(&self, what: &str) -> bool {
        self.heard.said(what)
    }

    /// The first line it logged saying `what`.
    pub fn line(&self, what: &str) -> Option<String> {
        self.heard.line(what)
    }
}

/// Starts a directory listening on `listen`, its state in `state`, with
/// alice as its user; returns it and the URL it prints.
pub fn start_directory(listen: &str, state: &Path) -> (Logged, String) {
    let state = state.to_str().unwrap();
    let args = [
        "directory",
        "--listen",
        listen,
        "--state-dir",
        state,
        "--demo-user",
        "alice:wonderland",
    ];
    let (d, stdout) = Logged::start(&args);
    let url = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .next()
        .unwrap()
        .unwrap();
    assert!(url.starts_with("https://"), "{url}");
    (d, url)
}

/// The deployment's link key for the standalone roles of a test in `dir`
/// (`dir/link.key`), made with `nephele-server new-link-key` the first time.
pub fn link_key(dir: &Path) -> PathBuf {
    let key = dir.join("link.key");
    if !key.exists() {
        let out = Command::new(server_binary())
            .arg("new-link-key")
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "new-link-key: {out:?}");
    }
    key
}

/// The arguments that join member `id` of a standalone role to the
/// directory at `url` (its state in `state`), with the link key of `dir`
/// and its own key kept in `dir/ID.key`.
fn joining(url: &str, state: &Path, dir: &Path, id: &str) -> Vec<String> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    vec![
        "--directory".into(),
        url.into(),
        "--directory-ca".into(),
        s(&state.join("ca.pem")),
        "--service-key-file".into(),
        s(&state.join("service.key")),
        "--link-key-file".into(),
        s(&link_key(dir)),
        "--id".into(),
        id.into(),
        "--key-file".into(),
        s(&dir.join(format!("{id}.key"))),
    ]
}

/// Starts `role` with `args` and the arguments [`joining`] gives.
fn start_joined(role: &str, args: &[&str], joined: Vec<String>) -> Logged {
    let mut all: Vec<&str> = vec![role];
    all.extend(args);
    all.extend(joined.iter().map(String::as_str));
    Logged::start(&all).0
}

/// A standalone host `host-NAME` listening on `listen`, recording input
/// to `rec`, enrolled with the directory at `url` (its state in `state`).
pub fn start_host(
    url: &str,
    state: &Path,
    dir: &Path,
    name: &str,
    listen: &str,
    rec: &Path,
) -> Logged {
    let rec = rec.to_str().unwrap();
    let args = [
        "--listen",
        listen,
        "--record-input",
        rec,
        "--bitrate",
        "4000000",
    ];
    start_joined(
        "host",
        &args,
        joining(url, state, dir, &format!("host-{name}")),
    )
}

/// Starts gateway `gw-NAME` at PoP `pop-NAME`, registering with the
/// directory at `url` (its state in `state`), its CA written to
/// `dir/ca-NAME.pem`.
pub fn start_gateway(
    url: &str,
    state: &Path,
    dir: &Path,
    name: &str,
    listen: &str,
    probe: &str,
) -> Logged {
    let pop = format!("pop-{name}");
    let ca = dir.join(format!("ca-{name}.pem"));
    let ca = ca.to_str().unwrap();
    let args = [
        "--listen",
        listen,
        "--probe-listen",
        probe,
        "--pop",
        &pop,
        "--ca-out",
        ca,
    ];
    start_joined(
        "gateway",
        &args,
        joining(url, state, dir, &format!("gw-{name}")),
    )
}

/// `nephele connect --headless` as alice through the directory at `url`,
/// trusting its CA and the named gateways' (`dir/ca-NAME.pem`), playing
/// `dir/script.txt` for `secs` seconds at 640×360, stats to `dir/s.json`;
/// what it logs is heard as it comes.
pub fn headless_connect(
    url: &str,
    state: &Path,
    dir: &Path,
    gateways: &[&str],
    secs: &str,
) -> (std::process::Child, Heard) {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nephele"));
    cmd.args(["connect", "--directory", url, "--user", "alice"])
        .args(["--headless", "--no-audio", "--duration", secs])
        .args(["--width", "640", "--height", "360"])
        .env("NEPHELE_PASSWORD", "wonderland")
        .args(["--ca", &s(&state.join("ca.pem"))]);
    for g in gateways {
        cmd.args(["--ca", &s(&dir.join(format!("ca-{g}.pem")))]);
    }
    let mut child = cmd
        .args(["--stats-json", &s(&dir.join("s.json"))])
        .args(["--input-script", &s(&dir.join("script.txt"))])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let heard = Heard::listen(child.stderr.take().unwrap());
    (child, heard)
}

/// A UDP port free now (for a host whose address the directory must know
/// before it starts).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The UDP ports a process has open (its sockets' inodes, found in
/// /proc/net/udp).
pub fn udp_ports_of(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().to_string();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let inode = cols.get(9)?;
            let port = cols.get(1)?.rsplit(':').next()?;
            inodes
                .iter()
                .any(|i| i == inode)
                .then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// A small deterministic generator for junk (xorshift64*).
pub struct Junk(pub u64);

impl Junk {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// Random bytes, or a well-formed datagram of the kind the target
    /// reads cut short at a random point, or left whole.
    pub fn datagram(&mut self, valid: &[u8]) -> Vec<u8> {
        match self.below(3) {
            0 => (0..self.below(1400)).map(|_| self.next() as u8).collect(),
            1 => valid[..self.below(valid.len())].to_vec(),
            _ => valid.to_vec(),
        }
    }
}
