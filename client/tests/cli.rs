//! The command line as scripts use it: `nephele demo --headless`, `nephele
//! connect` to a separately started `nephele-server all`, and the errors a
//! person sees for bad input.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn nephele() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nephele"))
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nephele-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn server_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_nephele"))
        .with_file_name(format!("nephele-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.exists(),
        "{} not built: run the tests with `cargo xtask test` (or cargo test --workspace)",
        p.display()
    );
    p
}

const SCRIPT: &str = "\
# typed into the demo desktop's notes window
200 move 640 360
400 type echo nephele-ok
600 key Enter down
620 key Enter up
800 button left down
850 button left up
900 wheel 0 -1
1000 type The quick brown fox jumps over the lazy dog.
";

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn demo_headless_streams_and_acknowledges_every_input() {
    let dir = scratch("demo");
    std::fs::write(dir.join("script.txt"), SCRIPT).unwrap();
    let out = nephele()
        .args(["demo", "--headless", "--duration", "6", "--stats-json"])
        .arg(dir.join("s.json"))
        .arg("--input-script")
        .arg(dir.join("script.txt"))
        .arg("--record-input")
        .arg(dir.join("rec.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json(&dir.join("s.json"));
    for field in [
        "frames_decoded",
        "frames_presented",
        "frames_dropped",
        "decode_ms_p50",
        "decode_ms_p99",
        "client_latency_ms_p50",
        "client_latency_ms_p99",
        "input_sent",
        "input_acked",
        "input_rtt_ms_p50",
        "input_rtt_ms_p99",
        "gateway_id",
        "pop",
        "rtt_ms",
        "reconnects",
        "bytes_received",
    ] {
        assert!(s.get(field).is_some(), "stats JSON lacks {field}: {s}");
    }
    let presented = s["frames_presented"].as_u64().unwrap();
    assert!(
        presented >= 250,
        "only {presented} frames presented in 6 s: {s}"
    );
    let sent = s["input_sent"].as_u64().unwrap();
    assert!(sent > 100, "{s}");
    assert_eq!(s["input_acked"], s["input_sent"], "{s}");
    assert!(s["bytes_received"].as_u64().unwrap() > 10_000);
    let recorded = std::fs::read_to_string(dir.join("rec.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = recorded
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .filter(|v| v.get("released_on_disconnect").is_none())
            .count() as u64,
        sent
    );
    for v in &lines {
        assert!(v["t_ms"].is_number() && v["kind"].is_string(), "{v}");
        if v["kind"] == "key" || v["kind"] == "button" {
            assert!(v["action"] == "down" || v["action"] == "up", "{v}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads the server's stderr until it names the gateway's address.
fn gateway_address(child: &mut std::process::Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("gateway listening on ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("nephele-server printed its gateway address")
}

#[test]
fn connect_to_a_separately_started_server() {
    let dir = scratch("connect");
    let mut server = Command::new(server_binary())
        .args([
            "all",
            "--listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--ca-out",
        ])
        .arg(dir.join("ca.pem"))
        .arg("--record-input")
        .arg(dir.join("rec.jsonl"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = gateway_address(&mut server);
    let port = addr.rsplit_once(':').unwrap().1;
    std::fs::write(dir.join("script.txt"), "100 type hi\n").unwrap();
    let out = nephele()
        .args([
            "connect",
            "--gateway",
            &format!("localhost:{port}"),
            "--headless",
            "--duration",
            "2",
            "--width",
            "640",
            "--height",
            "360",
        ])
        .arg("--ca")
        .arg(dir.join("ca.pem"))
        .arg("--stats-json")
        .arg(dir.join("s.json"))
        .arg("--input-script")
        .arg(dir.join("script.txt"))
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json(&dir.join("s.json"));
    assert!(s["frames_presented"].as_u64().unwrap() >= 30, "{s}");
    assert_eq!(s["input_sent"], 4);
    assert_eq!(s["input_acked"], 4);
    assert_eq!(s["pop"], "direct");
    let _ = std::fs::remove_dir_all(dir);
}

fn fails_with(args: &[&str], expect: &str) {
    let t = Instant::now();
    let out = nephele().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(expect),
        "{args:?}: expected {expect:?} in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn bad_input_gets_a_clear_message() {
    let dir = scratch("errors");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "this is not a certificate").unwrap();
    let ca_s = ca.to_str().unwrap();
    fails_with(
        &[
            "connect",
            "--gateway",
            "localhost:1",
            "--ca",
            "/nonexistent/ca.pem",
            "--headless",
        ],
        "loading the CA certificate",
    );
    fails_with(
        &[
            "connect",
            "--gateway",
            "localhost:1",
            "--ca",
            ca_s,
            "--headless",
        ],
        "no certificate",
    );
    fails_with(
        &[
            "connect",
            "--gateway",
            "localhost",
            "--ca",
            ca_s,
            "--headless",
        ],
        "needs a port",
    );
    let script = dir.join("bad.txt");
    std::fs::write(&script, "100 type ok\n200 key NoSuchKey down\n").unwrap();
    fails_with(
        &[
            "demo",
            "--headless",
            "--input-script",
            script.to_str().unwrap(),
        ],
        "line 2",
    );
    fails_with(&["demo", "--headless", "--duration", "0"], "--duration");
    fails_with(&["decode", "/nonexistent.264"], "reading /nonexistent.264");
    let _ = std::fs::remove_dir_all(dir);
}
