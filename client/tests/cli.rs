//! The command line as scripts use it: `nephele demo --headless`, `nephele
//! connect` and `nephele probe` against a separately started
//! `nephele-server all`, and the errors a person sees for bad input.

use std::time::{Duration, Instant};

mod common;
use common::session::{Reap, exclusive, headless_demo, json, nephele, scratch};
use common::start_all;

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
# a gamepad, one still held down when the session ends
1100 pad 0 connect Xbox rumble
1120 pad 0 button South down
1130 pad 0 axis LeftStickX 0.5
1140 pad 0 axis LeftStickX -0.75
1150 pad 0 button South up
1200 pad 1 connect
1300 pad 0 button DPadUp down
";

#[test]
fn demo_headless_streams_and_acknowledges_every_input() {
    let _turn = exclusive();
    let dir = scratch("demo");
    let (script, rec) = (dir.join("script.txt"), dir.join("rec.jsonl"));
    std::fs::write(&script, SCRIPT).unwrap();
    let s = headless_demo(
        &dir,
        &[
            "--duration",
            "6",
            "--input-script",
            script.to_str().unwrap(),
            "--record-input",
            rec.to_str().unwrap(),
        ],
    );
    for field in [
        "frames_decoded",
        "frames_presented",
        "frames_dropped",
        "frames_lost",
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
    // Three PoPs at 5, 25 and 60 ms: the demo must end up on the nearest.
    assert_eq!(s["pop"], "pop-near", "{s}");
    assert_eq!(s["gateway_id"], "gw-pop-near", "{s}");
    let rtt = s["rtt_ms"].as_f64().unwrap();
    assert!(
        (5.0..25.0).contains(&rtt),
        "QUIC RTT {rtt} ms is not pop-near's: {s}"
    );
    // Pictures streamed, reached the presenter, and every one is accounted
    // for: presented or dropped (the last one or two may still wait).
    let count = |k: &str| s[k].as_u64().unwrap();
    assert!(count("frames_presented") > 0, "{s}");
    let (decoded, accounted) = (
        count("frames_decoded"),
        count("frames_presented") + count("frames_dropped"),
    );
    assert!(
        accounted <= decoded + 1 && accounted + 2 >= decoded,
        "{accounted} of {decoded} pictures accounted for: {s}"
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
    // The gamepad's events in order, by gilrs' names; the held d-pad
    // button and both pads let go when the session ended.
    let pad: Vec<String> = lines
        .iter()
        .filter(|v| v["kind"] == "pad")
        .map(|v| {
            let mut words = vec![v["pad"].to_string(), v["action"].to_string()];
            for x in [&v["type"], &v["button"], &v["axis"], &v["value"]] {
                if !x.is_null() {
                    words.push(x.to_string());
                }
            }
            if v.get("released_on_disconnect").is_some() {
                words.push("(released)".into());
            }
            words.join(" ").replace('"', "").to_string()
        })
        .collect();
    let expected = [
        "0 connect Xbox",
        "0 down South",
        "0 axis LeftStickX 0.5",
        "0 axis LeftStickX -0.75",
        "0 up South",
        "1 connect Generic",
        "0 down DPadUp",
        "0 up DPadUp (released)",
        "0 disconnect (released)",
        "1 disconnect (released)",
    ];
    assert_eq!(pad, expected, "{recorded}");
    // The host buzzed the rumble-capable pad once, for its South press, and
    // the client handed that to the pad's source.
    assert_eq!(s["pad_rumbles"], 1, "{s}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connect_through_the_directory_of_a_separately_started_server() {
    let _turn = exclusive();
    let dir = scratch("connect");
    let (server, url) = start_all(
        &dir,
        &[
            "--pop",
            "pop-a:30",
            "--pop",
            "pop-b:2",
            "--record-input",
            dir.join("rec.jsonl").to_str().unwrap(),
        ],
    );
    let _server = Reap(server);
    std::fs::write(dir.join("script.txt"), "100 type hi\n").unwrap();
    let out = nephele()
        .args([
            "connect",
            "--directory",
            &url,
            "--user",
            "alice",
            "--headless",
            "--duration",
            "2",
            "--width",
            "640",
            "--height",
            "360",
        ])
        .env("NEPHELE_PASSWORD", "wonderland")
        // No --ca: this computer's trust store holds the service's CA
        // (rustls-native-certs reads SSL_CERT_FILE as the store on Linux),
        // and the directory and the gateway are both checked against it.
        .env("SSL_CERT_FILE", dir.join("state/ca.pem"))
        .env_remove("SSL_CERT_DIR")
        .arg("--stats-json")
        .arg(dir.join("s.json"))
        .arg("--input-script")
        .arg(dir.join("script.txt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("signing in to") && err.contains("probing 2 PoPs"),
        "{err}"
    );
    let s = json(&dir.join("s.json"));
    assert!(s["frames_presented"].as_u64().unwrap() >= 30, "{s}");
    assert_eq!(s["input_sent"], 4);
    assert_eq!(s["input_acked"], 4);
    assert_eq!(s["pop"], "pop-b");
    assert_eq!(s["gateway_id"], "gw-pop-b");
    assert!(s["pop_decision_ms"].as_f64().unwrap() > 0.0, "{s}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn probe_picks_the_nearest_of_twenty_pops() {
    let _turn = exclusive();
    let dir = scratch("probe20");
    // The nearest (pop-13, 20 ms) is a third nearer than the next (30 ms);
    // the rest are spread up to 87 ms, listed in no particular order. (How
    // fine a difference the choice resolves is the `pop` bench's to
    // measure: a stall of this machine adds milliseconds of jitter to a
    // probe, and with a 3 ms gap CI once saw the 23 ms PoP chosen.)
    let mut rtts: Vec<u32> = (0..20).map(|i| 30 + (i * 37 % 20) * 3).collect();
    rtts[13] = 20;
    let specs: Vec<String> = rtts
        .iter()
        .enumerate()
        .map(|(i, ms)| format!("pop-{i:02}:{ms}"))
        .collect();
    let mut args: Vec<&str> = Vec::new();
    for s in &specs {
        args.extend(["--pop", s]);
    }
    let (server, url) = start_all(&dir, &args);
    let _server = Reap(server);
    let ca = dir.join("state/ca.pem");
    for _ in 0..3 {
        let out = nephele()
            .args(["probe", "--directory", &url, "--user", "alice", "--json"])
            .arg("--ca")
            .arg(&ca)
            .env("NEPHELE_PASSWORD", "wonderland")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("probing 20 PoPs"), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["chosen"], "pop-13", "{v}");
        let pops = v["pops"].as_array().unwrap();
        assert_eq!(pops.len(), 20);
        for p in pops {
            for k in [
                "pop",
                "region",
                "rtt_min_ms",
                "rtt_median_ms",
                "jitter_ms",
                "loss",
                "load",
                "score",
            ] {
                assert!(p.get(k).is_some(), "{k} missing in {p}");
            }
        }
        // How fast is `cargo xtask bench`'s (pop_choice_20); here, that
        // the time is told.
        assert!(v["decision_ms"].as_f64().unwrap() > 0.0, "{v}");
    }
    // The table form names the choice too.
    let out = nephele()
        .args(["probe", "--directory", &url, "--user", "alice"])
        .arg("--ca")
        .arg(&ca)
        .env("NEPHELE_PASSWORD", "wonderland")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("chose pop-13"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("pop-")).count(),
        20,
        "{table}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn directory_errors_are_clear() {
    let dir = scratch("direrr");
    let (server, url) = start_all(&dir, &[]);
    let _server = Reap(server);
    let ca = dir.join("state/ca.pem");
    let ca_s = ca.to_str().unwrap();
    let run = |args: &[&str], password: &str| {
        let out = nephele()
            .args(args)
            .env("NEPHELE_PASSWORD", password)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let err = run(
        &[
            "probe",
            "--directory",
            &url,
            "--ca",
            ca_s,
            "--user",
            "alice",
        ],
        "guess",
    );
    assert!(err.contains("wrong user name or password"), "{err}");
    let err = run(
        &[
            "probe",
            "--directory",
            "https://127.0.0.1:1",
            "--ca",
            ca_s,
            "--user",
            "alice",
        ],
        "wonderland",
    );
    assert!(
        err.contains("cannot reach the directory at https://127.0.0.1:1")
            && err.contains("refused"),
        "{err}"
    );
    // This computer's trust store does not vouch for the demo CA.
    let err = run(
        &["probe", "--directory", &url, "--user", "alice"],
        "wonderland",
    );
    assert!(err.contains("TLS"), "{err}");
    let err = run(
        &[
            "connect",
            "--directory",
            &url,
            "--ca",
            ca_s,
            "--user",
            "alice",
            "--desktop",
            "cad",
            "--headless",
        ],
        "wonderland",
    );
    assert!(
        err.contains("`cad` is not among your desktops (demo)"),
        "{err}"
    );
    let err = run(&["probe", "--directory", "http://127.0.0.1:1"], "x");
    assert!(err.contains("must start with https://"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_demo_streams_through_five_percent_loss() {
    let _turn = exclusive();
    let dir = scratch("lossy");
    let s = headless_demo(
        &dir,
        &[
            "--duration",
            "6",
            "--network",
            "rtt=40ms,loss=5%",
            "--no-audio",
        ],
    );
    // No sound was asked for: none played, no device opened.
    assert_eq!(s["audio_packets"], 0, "{s}");
    assert_eq!(s["audio_device"], "", "{s}");
    assert_eq!(s["mic_sent"], 0, "{s}");
    // Parity rebuilds what the 5 % loss takes (how well is the bench's
    // line at 5 % loss; the decisions are the protocol's core tests').
    assert!(s["fec_recovered"].as_u64().unwrap() > 0, "{s}");
    assert!(s["frames_presented"].as_u64().unwrap() > 0, "{s}");
    let rtt = s["rtt_ms"].as_f64().unwrap();
    assert!(rtt >= 40.0, "the network's 40 ms is in the path: {s}");
    // Capture → presented through the clock map: never less than the one
    // way the network adds.
    assert!(s["e2e_latency_ms_p50"].as_f64().unwrap() >= 20.0, "{s}");
    // The receipt: the host's part as it told it, the network's 20 ms one
    // way in the network's share, and the parts adding up.
    let r = &s["receipt"];
    let part = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    assert!(part("capture_ms") + part("encode_ms") > 0.0, "{s}");
    assert!(
        part("network_ms") >= 20.0 - part("clock_uncertainty_ms"),
        "{s}"
    );
    let sum: f64 = [
        "capture_ms",
        "encode_ms",
        "network_ms",
        "decode_ms",
        "present_ms",
    ]
    .iter()
    .map(|k| part(k))
    .sum();
    assert!((sum - part("end_to_end_ms")).abs() < 0.5, "{s}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The codecs agreed through the whole stack (client, gateway, host, and
/// FFmpeg's encoders and decoders): what the user chose where both sides
/// can, else the host's first choice the client decodes.
#[test]
fn the_stream_comes_in_the_codec_agreed() {
    let _turn = exclusive();
    let dir = scratch("codecs");
    let saved = dir.join("stream.265");
    let saved_s = saved.to_str().unwrap();
    for (args, codec) in [
        (&["--codec", "hevc", "--save-stream", saved_s][..], "HEVC"),
        (&["--codec", "av1"][..], "AV1"),
        // The host's first choice.
        (&[][..], "H.264"),
        // openh264 decodes H.264 alone: the client does not offer HEVC.
        (&["--codec", "hevc", "--decoder", "openh264"][..], "H.264"),
    ] {
        let mut all = vec!["--duration", "3", "--no-audio"];
        all.extend_from_slice(args);
        let s = headless_demo(&dir, &all);
        assert_eq!(s["codec"], codec, "{args:?}: {s}");
        let n = |k: &str| s[k].as_u64().unwrap();
        assert!(n("frames_decoded") > 60, "{args:?}: {s}");
        assert_eq!(n("decode_errors"), 0, "{args:?}: {s}");
    }
    // What came is HEVC: Annex B, a VPS (NAL type 32) first.
    let data = std::fs::read(&saved).unwrap();
    assert_eq!(data[..6], [0, 0, 0, 1, 0x40, 0x01], "{:02x?}", &data[..6]);
    let _ = std::fs::remove_dir_all(dir);
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
    fails_with(
        &["demo", "--headless", "--network", "rtt=40ms,loss=5"],
        "network spec `loss=5`: expected a percentage such as 5%",
    );
    fails_with(&["decode", "/nonexistent.264"], "reading /nonexistent.264");
    // A settings file with a bad value stops a command with its key and
    // line, but never hides the example of a good one.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[video]\nwidth = \"wide\"\n").unwrap();
    let bad_s = bad.to_str().unwrap();
    fails_with(&["--config", bad_s, "config"], "width");
    let out = nephele()
        .args(["--config", bad_s, "config", "--example"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[shortcuts]"));
    // The demo's server missing, or dying before it is ready.
    let demo = |server: &str| {
        let out = nephele()
            .args(["demo", "--headless", "--duration", "1"])
            .env("NEPHELE_SERVER", server)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{server}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = demo("/nonexistent/nephele-server");
    assert!(
        err.contains("$NEPHELE_SERVER names /nonexistent/nephele-server, which does not exist"),
        "{err}"
    );
    let err = demo("/bin/false");
    assert!(
        err.contains("the demo service (nephele-server) did not start"),
        "{err}"
    );
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
