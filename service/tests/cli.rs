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
    let out = server().args(["host", "--listen", &addr]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("binding the host socket") && err.contains(&addr),
        "{err}"
    );
}
