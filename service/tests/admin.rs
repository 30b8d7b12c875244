//! A service built from nothing with `nephele-server admin`, as the
//! README's administrator does it: a directory started with no users, then
//! a tenant, a catalog, a user and a notice through the HTTPS API, checked
//! by signing in as that user.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use nephele_api::{DirClientError, DirectoryClient};

struct Directory {
    child: Child,
    url: String,
    state: PathBuf,
}

impl Drop for Directory {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn start(name: &str) -> Directory {
    let state = std::env::temp_dir().join(format!("nephele-admin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut child = Command::new(env!("CARGO_BIN_EXE_nephele-server"))
        .args(["directory", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("https://"), "{line}");
    Directory {
        child,
        url: line.trim().to_string(),
        state,
    }
}

impl Directory {
    fn admin_with(&self, key: &Path, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nephele-server"))
            .args(["admin", "--directory", &self.url, "--ca"])
            .arg(self.state.join("ca.pem"))
            .arg("--key-file")
            .arg(key)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs an admin command that must succeed; its standard output.
    fn admin(&self, args: &[&str]) -> String {
        self.admin_in(args, "")
    }

    fn admin_in(&self, args: &[&str], stdin: &str) -> String {
        let out = self.admin_with(&self.state.join("admin.key"), args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs an admin command that must fail; its error.
    fn refused(&self, args: &[&str], stdin: &str) -> String {
        let out = self.admin_with(&self.state.join("admin.key"), args, stdin);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    fn client(&self) -> DirectoryClient {
        let ca = nephele_api::trust::read_cert_pem(&self.state.join("ca.pem")).unwrap();
        DirectoryClient::new(&self.url, &ca).unwrap()
    }
}

fn status<T: std::fmt::Debug>(r: Result<T, DirClientError>) -> (u16, String) {
    match r {
        Err(DirClientError::Refused { status, message }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_administrator_builds_a_service_from_nothing() {
    let d = start("nothing");
    let key = std::fs::read_to_string(d.state.join("admin.key")).unwrap();
    assert_eq!(key.trim().len(), 64, "a 256-bit key, hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.state.join("admin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is the owner's alone");
    }
    // Nothing to sign in to yet.
    let dir = d.client();
    assert_eq!(status(dir.sign_in("alice@acme", "correct horse")).0, 401);
    // A user needs a tenant, a grant needs an entry: each refusal says
    // what to do.
    let err = d.refused(
        &["user", "add", "alice@acme", "--password-stdin"],
        "correct horse\n",
    );
    assert!(err.contains("tenant add acme"), "{err}");
    d.admin(&["tenant", "add", "acme", "--name", "Acme Ltd"]);
    let err = d.refused(&["grant", "alice@acme", "cad"], "");
    assert!(err.contains("no user") || err.contains("no entry"), "{err}");
    d.admin(&[
        "entry",
        "add",
        "cad",
        "--tenant",
        "acme",
        "--name",
        "CAD workstation",
        "--max-sessions",
        "3",
    ]);
    d.admin(&[
        "entry", "add", "notes", "--tenant", "acme", "--name", "Notes", "--", "xterm", "-e", "vi",
    ]);
    let err = d.refused(
        &["user", "add", "alice@acme", "--password-stdin"],
        "short\n",
    );
    assert!(err.contains("8 to 256"), "{err}");
    d.admin_in(
        &[
            "user",
            "add",
            "alice@acme",
            "--grant",
            "cad",
            "--password-stdin",
        ],
        "correct horse\n",
    );
    d.admin(&["grant", "alice@acme", "notes"]);
    d.admin(&[
        "notice",
        "add",
        "--tenant",
        "acme",
        "Maintenance at 22:00 UTC",
    ]);
    // The user signs in and sees what was built.
    let signed = dir.sign_in("alice@acme", "correct horse").unwrap();
    let catalog = dir.catalog(&signed.token).unwrap();
    let seen: Vec<(&str, &str, &str)> = catalog
        .desktops
        .iter()
        .map(|e| (e.id.as_str(), e.name.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("cad", "CAD workstation", "desktop"),
            ("notes", "Notes", "app")
        ]
    );
    assert_eq!(catalog.notices.len(), 1);
    assert_eq!(catalog.notices[0].message, "Maintenance at 22:00 UTC");
    let users = d.admin(&["user", "list", "--tenant", "acme"]);
    assert!(
        users.contains("alice") && users.contains("active") && users.contains("cad,notes"),
        "{users}"
    );
    // Disabled: the right password no longer signs in, and the token held
    // opens nothing; the answer says why.
    d.admin(&["user", "disable", "alice@acme"]);
    let (code, why) = status(dir.sign_in("alice@acme", "correct horse"));
    assert_eq!(code, 403);
    assert!(why.contains("disabled"), "{why}");
    assert_eq!(status(dir.catalog(&signed.token)).0, 403);
    d.admin(&["user", "enable", "alice@acme"]);
    // A reset password replaces the old one.
    d.admin_in(
        &["user", "password", "alice@acme", "--password-stdin"],
        "battery staple\n",
    );
    assert_eq!(status(dir.sign_in("alice@acme", "correct horse")).0, 401);
    dir.sign_in("alice@acme", "battery staple").unwrap();
    // Revoked and removed entries leave the catalog.
    d.admin(&["revoke", "alice@acme", "cad"]);
    d.admin(&["entry", "remove", "notes", "--tenant", "acme"]);
    let signed = dir.sign_in("alice@acme", "battery staple").unwrap();
    assert!(dir.catalog(&signed.token).unwrap().desktops.is_empty());
    // Every change is in the audit log, newest first, without passwords;
    // refusals too, with their reason.
    let audit = d.admin(&["audit", "--limit", "100"]);
    for op in [
        "tenant-add",
        "entry-put",
        "user-add",
        "grant",
        "notice-add",
        "user-disable",
        "user-password",
        "revoke",
        "entry-remove",
    ] {
        assert!(
            audit.contains(op),
            "{op} missing from the audit log:\n{audit}"
        );
    }
    assert!(audit.contains("8 to 256"), "{audit}");
    for secret in ["correct horse", "battery staple", "short"] {
        assert!(!audit.contains(secret), "{secret} in the audit log");
    }
    let rows: Vec<&str> = audit.lines().skip(1).collect();
    assert!(rows[0].contains("entry-remove"), "{audit}");
    assert!(rows.last().unwrap().contains("user-add"), "{audit}");
    // Listings as JSON for scripts.
    let json: serde_json::Value =
        serde_json::from_str(&d.admin(&["--json", "tenant", "list"])).unwrap();
    assert_eq!(json["rows"][0][0], "acme");
}

#[test]
fn only_the_administrators_key_administers_and_rotating_it_retires_the_old_one() {
    let d = start("key");
    let wrong = d.state.join("wrong.key");
    std::fs::write(&wrong, "00".repeat(32)).unwrap();
    let out = d.admin_with(&wrong, &["tenant", "add", "evil"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong administrator key"), "{err}");
    let old = d.state.join("old.key");
    std::fs::copy(d.state.join("admin.key"), &old).unwrap();
    d.admin(&["rotate-key"]);
    let new = std::fs::read_to_string(d.state.join("admin.key")).unwrap();
    assert_ne!(new, std::fs::read_to_string(&old).unwrap());
    assert!(!d.admin_with(&old, &["tenant", "list"], "").status.success());
    let listed = d.admin(&["tenant", "list"]);
    assert!(!listed.contains("evil"), "{listed}");
    // A missing key file is named, with where the key comes from.
    let out = d.admin_with(&d.state.join("absent.key"), &["tenant", "list"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("absent.key") && err.contains("admin.key"),
        "{err}"
    );
}
