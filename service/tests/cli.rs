//! `nephele-server` as operators start it.

use std::process::Command;

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nephele-server"))
}

#[test]
fn every_role_documents_itself() {
    for role in ["host", "gateway", "directory", "all"] {
        let out = server().args([role, "--help"]).output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--listen"), "{role}: {help}");
    }
}

#[test]
fn a_missing_certificate_file_is_named() {
    let out = server()
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            "/nonexistent/chain.pem",
            "--key",
            "/nonexistent/key.pem",
            "--link-key-file",
            "/nonexistent/link.key",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/chain.pem"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_busy_port_is_reported() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let key = link_key("busy");
    let out = server()
        .args(["host", "--direct", "--listen", &addr, "--link-key-file"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("binding the host socket") && err.contains(&addr),
        "{err}"
    );
}

/// A link key made by `new-link-key` in a scratch directory of `name`.
fn link_key(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nephele-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("link.key");
    let out = server().arg("new-link-key").arg(&key).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    key
}

#[test]
fn a_host_needs_the_link_key_and_says_how_to_make_one() {
    let out = server()
        .args(["host", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("new-link-key") && err.contains("--link-key-file"),
        "{err}"
    );
    let key = link_key("made");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
    }
    std::fs::write(&key, "0123").unwrap();
    let out = server()
        .args(["host", "--listen", "127.0.0.1:0", "--link-key-file"])
        .arg(&key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not hold a link key"),
        "{err}"
    );
}

#[test]
fn a_host_needs_the_directorys_token_key_or_to_be_told_it_is_direct() {
    let key = link_key("token");
    let host = |extra: &[&str]| {
        server()
            .args(["host", "--listen", "127.0.0.1:0", "--link-key-file"])
            .arg(&key)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = host(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("--directory")
            && err.contains("--token-key-file")
            && err.contains("--direct"),
        "{err}"
    );
    let bad = key.with_file_name("token.pub");
    std::fs::write(&bad, "not a key").unwrap();
    let out = host(&["--token-key-file", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not hold the directory's token key"),
        "{err}"
    );
}
