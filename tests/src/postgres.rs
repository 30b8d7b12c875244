//! A real PostgreSQL server of the system's (Debian's `postgresql`
//! package, installed by `cargo xtask setup`), started in a scratch
//! directory on a loopback port for one test or benchmark, and killed with
//! it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A running server, stopped on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    url: String,
}

/// Where the server's programs are: on `PATH`, else the newest of
/// Debian's (`/usr/lib/postgresql/N/bin`) or Fedora's (`/usr/pgsql-N/bin`).
pub fn programs() -> Option<PathBuf> {
    let has = |d: &Path| d.join("postgres").is_file() && d.join("initdb").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(d) = std::env::split_paths(&path).find(|d| has(d))
    {
        return Some(d);
    }
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for (root, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(v) = name.strip_prefix(prefix).and_then(|v| v.parse().ok()) else {
                continue;
            };
            let bin = e.path().join("bin");
            if has(&bin) {
                found.push((v, bin));
            }
        }
    }
    found.into_iter().max().map(|(_, d)| d)
}

/// The account the server runs as: PostgreSQL refuses to run as root.
fn account() -> Result<Option<nephele_platform::child::Account>> {
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let a = nephele_platform::child::account("postgres")
        .or_else(|_| nephele_platform::child::account("nobody"))
        .context(
            "PostgreSQL does not run as root, and there is no `postgres` or `nobody` account",
        )?;
    Ok(Some(a))
}

impl Postgres {
    /// Makes a database cluster in `dir` and starts its server, trusting
    /// connections from loopback as user `nephele`.
    pub fn start(dir: &Path) -> Result<Self> {
        let bin = programs().context(
            "PostgreSQL's server is not installed: run `cargo xtask setup` (Debian's `postgresql` package)",
        )?;
        let account = account()?;
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data)?;
        if let Some(a) = account {
            std::os::unix::fs::chown(dir, Some(a.uid), Some(a.gid))?;
            std::os::unix::fs::chown(&data, Some(a.uid), Some(a.gid))?;
        }
        let mut init = Command::new(bin.join("initdb"));
        init.arg("-D")
            .arg(&data)
            .args(["-U", "nephele", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        nephele_platform::child::bind(&mut init, account);
        let out = init.output().context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.join("postgres.log");
        let mut server = Command::new(bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        nephele_platform::child::bind(&mut server, account);
        let child = server.spawn().context("starting postgres")?;
        let mut pg = Self {
            child,
            url: format!("postgres://nephele@127.0.0.1:{port}/postgres"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&log) {
                let _ = f.read_to_string(&mut text);
            }
            if text.contains("ready to accept connections") {
                return Ok(pg);
            }
            if let Ok(Some(status)) = pg.child.try_wait() {
                bail!("postgres exited ({status}): {text}");
            }
            if std::time::Instant::now() > deadline {
                bail!("postgres did not get ready in 30 s: {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address directories take (`--database`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
