//! Sessions that go on: an idle session paused and resumed, a gateway
//! killed by the demo's chaos, gateway and host processes SIGKILLed, a
//! directory and gateway SIGKILLed and restarted as the same service, and
//! junk datagrams at every port; every keystroke arrives exactly once.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::session::{
    Junk, Logged, assert_exactly_once, exclusive, free_udp_port, headless_connect, headless_demo,
    json, scratch, start_directory, start_gateway, start_host, typing, udp_ports_of, wait_for,
};

#[test]
fn an_idle_demo_pauses_suspends_and_a_key_brings_it_back() {
    let _turn = exclusive();
    let dir = scratch("idle");
    let script = dir.join("script.txt");
    // Untouched for 4.5 s (warned at 2, paused at 3), a key; untouched
    // again (paused at 7.5, suspended at 10.5), a key at 11.5.
    std::fs::write(
        &script,
        "4500 key KeyA down\n4550 key KeyA up\n11500 key KeyB down\n11550 key KeyB up\n",
    )
    .unwrap();
    let s = headless_demo(
        &dir,
        &[
            "--no-audio",
            "--duration",
            "13",
            "--idle-policy",
            "warn=2s,pause=3s,suspend=6s",
            "--input-script",
            script.to_str().unwrap(),
        ],
    );
    let f = |k: &str| s[k].as_f64().unwrap();
    eprintln!(
        "idle: resume_ms_max {:.1}, cpu streaming {:.1} % paused {:.1} % suspended {:.1} %",
        f("resume_ms_max"),
        f("cpu_streaming_pct"),
        f("cpu_paused_pct"),
        f("cpu_suspended_pct")
    );
    assert_eq!(s["pauses"], 2, "{s}");
    assert_eq!(s["suspends"], 1, "{s}");
    assert_eq!(s["resumes"], 2, "{s}");
    assert_eq!(s["phase"], "streaming", "{s}");
    // Each resume was timed (how fast is the bench's resume lines'; how
    // much CPU a pause saves, its cpu lines').
    assert!(f("resume_ms_max") > 0.0, "{s}");
    // A pause is no freeze: the presented share counts only what the host
    // sent.
    assert!(f("frames_presented") > 0.0, "{s}");
    for k in ["cpu_streaming_pct", "cpu_paused_pct", "cpu_suspended_pct"] {
        assert!(f(k) > 0.0, "{k} measured: {s}");
    }
    assert_eq!(s["input_acked"], 4);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_demo_survives_its_gateway_being_killed_and_delivers_typing_exactly_once() {
    let _turn = exclusive();
    let dir = scratch("chaos");
    let (script, rec) = (dir.join("script.txt"), dir.join("rec.jsonl"));
    // Typing from 1 s to 5 s after the first picture; the gateway dies at 3 s.
    let (text, letters) = typing(1000, 80);
    std::fs::write(&script, text).unwrap();
    let s = headless_demo(
        &dir,
        &[
            "--no-audio",
            "--duration",
            "7",
            "--chaos",
            "kill-gateway@3s",
            "--input-script",
            script.to_str().unwrap(),
            "--record-input",
            rec.to_str().unwrap(),
        ],
    );
    let f = |k: &str| s[k].as_f64().unwrap();
    eprintln!("chaos: reconnect_ms_max {:.1}", f("reconnect_ms_max"));
    assert_eq!(s["reconnects"], 1, "{s}");
    // The gap was timed (how long it is, is the bench's
    // gateway_killed_to_streaming_again).
    assert!(f("reconnect_ms_max") > 0.0, "{s}");
    assert_ne!(
        s["gateway_id"], "gw-pop-near",
        "moved on from the killed gateway: {s}"
    );
    assert_eq!(s["input_acked"], 160, "{s}");
    assert_exactly_once(&[rec], &letters);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigkilled_gateway_and_host_cost_a_moment_and_no_keystroke() {
    let _turn = exclusive();
    let dir = scratch("sigkill");
    let state = dir.join("state");
    // Three hosts: the session's primary, its backup, and the host the
    // directory makes the backup once the first backup has taken over.
    let hosts =
        [free_udp_port(), free_udp_port(), free_udp_port()].map(|p| format!("127.0.0.1:{p}"));
    let recs = ["a", "b", "c"].map(|h| dir.join(format!("rec-{h}.jsonl")));
    let (directory, url) = start_directory("127.0.0.1:0", &state);
    let mut host_procs: Vec<Logged> = (0..3)
        .map(|i| start_host(&url, &state, &dir, ["a", "b", "c"][i], &hosts[i], &recs[i]))
        .collect();
    wait_for("the hosts to enrol", Duration::from_secs(20), || {
        host_procs
            .iter()
            .all(|h| h.said("registered with the directory"))
    });
    let mut gateways: Vec<Logged> = ["a", "b"]
        .iter()
        .map(|g| start_gateway(&url, &state, &dir, g, "127.0.0.1:0", "127.0.0.1:0"))
        .collect();
    wait_for("the gateways to register", Duration::from_secs(20), || {
        gateways
            .iter()
            .all(|g| g.said("registered with the directory"))
    });
    let (text, letters) = typing(500, 80);
    std::fs::write(dir.join("script.txt"), text).unwrap();
    let (mut client, heard) = headless_connect(&url, &state, &dir, &["a", "b"], "8");
    // The gateway the client chose relays the session: SIGKILL it while
    // typing goes on, then the host the session runs on.
    let mut serving = None;
    wait_for(
        "a gateway to relay the session",
        Duration::from_secs(20),
        || {
            serving = gateways.iter().position(|g| g.said("session relayed"));
            serving.is_some()
        },
    );
    wait_for(
        "the primary to record keys",
        Duration::from_secs(20),
        || keys_down(&recs[0]) >= 10,
    );
    let killed = gateways.remove(serving.unwrap());
    drop(killed); // SIGKILL
    // Keys flow again once the client is back through the other gateway.
    let at_kill = keys_down(&recs[0]);
    wait_for(
        "the picture and typing to resume",
        Duration::from_secs(20),
        || {
            gateways[0].said("session relayed")
                && heard.said("streaming again")
                && keys_down(&recs[0]) >= at_kill + 5
        },
    );
    // The directory hands its first session to the first host.
    assert!(
        host_procs[0].said("session opened"),
        "the primary host has the session"
    );
    let primary = host_procs.remove(0);
    drop(primary); // SIGKILL
    let status = client.wait().unwrap();
    assert!(status.success(), "{}", heard.all());
    let st = json(&dir.join("s.json"));
    let f = |k: &str| st[k].as_f64().unwrap();
    eprintln!(
        "sigkill: reconnect_ms_max {:.1}, takeover_ms_max {:.1}",
        f("reconnect_ms_max"),
        f("takeover_ms_max")
    );
    assert_eq!(st["reconnects"], 1, "{st}");
    assert!(f("reconnect_ms_max") > 0.0, "{st}");
    assert_eq!(st["takeovers"], 1, "{st}");
    assert!(f("takeover_ms_max") > 0.0, "{st}");
    assert!(
        host_procs[0].said("taking the session over"),
        "the backup took over"
    );
    // Its next heartbeat told the directory, which recorded it as the
    // session's primary and gave the session the third host as its new
    // backup; the new primary replicates there.
    wait_for(
        "the directory to record the takeover",
        Duration::from_secs(10),
        || {
            directory.said("session taken over: recorded, with a new backup")
                && host_procs[0].said("a new backup for the session")
        },
    );
    // The record names the backup that took over as the primary, and the
    // third host as the new backup.
    let recorded = plain(
        &directory
            .line("session taken over: recorded")
            .unwrap_or_default(),
    );
    for said in [
        format!("old={}", hosts[0]),
        format!("new={}", hosts[1]),
        format!("backup=Some(\"{}\")", hosts[2]),
    ] {
        assert!(recorded.contains(&said), "{said} in {recorded}");
    }
    assert_eq!(st["input_acked"], 160, "{st}");
    // Every keystroke reached a host once; the backup's takeover began from
    // exactly the text the primary had.
    let lines = assert_exactly_once(&recs, &letters);
    let takeover = lines
        .iter()
        .find(|v| v["kind"] == "takeover")
        .expect("the backup recorded its takeover");
    let before: String = std::fs::read_to_string(&recs[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "key" && v["action"] == "down" && v.get("seq").is_some())
        .map(|v| {
            v["code"]
                .as_str()
                .unwrap()
                .trim_start_matches("Key")
                .to_ascii_lowercase()
        })
        .collect();
    assert!(
        !before.is_empty() && before.len() < letters.len(),
        "{before}"
    );
    assert_eq!(takeover["typed"], before.as_str(), "state intact");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn junk_datagrams_at_client_gateway_and_host_leave_the_session_untouched() {
    use nephele_protocol::probe::ProbeRequest;
    use nephele_protocol::wire::{Envelope, InputEvent, Message};
    let _turn = exclusive();
    let dir = scratch("junk");
    let state = dir.join("state");
    let host = format!("127.0.0.1:{}", free_udp_port());
    let (gw_port, probe_port) = (free_udp_port(), free_udp_port());
    let rec = dir.join("rec.jsonl");
    let (mut directory, url) = start_directory("127.0.0.1:0", &state);
    let mut host_proc = start_host(&url, &state, &dir, "junk", &host, &rec);
    let mut gateway = start_gateway(
        &url,
        &state,
        &dir,
        "junk",
        &format!("127.0.0.1:{gw_port}"),
        &format!("127.0.0.1:{probe_port}"),
    );
    wait_for("the gateway to register", Duration::from_secs(20), || {
        gateway.said("registered with the directory")
    });
    let (text, letters) = typing(1000, 60);
    std::fs::write(dir.join("script.txt"), text).unwrap();
    let (mut client, heard) = headless_connect(&url, &state, &dir, &["junk"], "7");
    wait_for("the session to be relayed", Duration::from_secs(20), || {
        gateway.said("session relayed")
    });
    let client_ports = udp_ports_of(client.id());
    assert!(
        !client_ports.is_empty(),
        "found none of the client's UDP ports"
    );
    // Well-formed datagrams of each target's kind, to cut short or send whole.
    let mut probe = Vec::new();
    ProbeRequest {
        seq: 7,
        stamp_us: 1,
        token: b"not-a-token",
    }
    .encode(&mut probe);
    let envelope = |session: u64, message: Message<'_>| {
        let mut b = Vec::new();
        Envelope { session, message }.encode(&mut b);
        b
    };
    let mut junk = Junk(0x9e37_79b9_7f4a_7c15);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut targets: Vec<String> = vec![
        format!("127.0.0.1:{gw_port}"),
        format!("127.0.0.1:{probe_port}"),
        host.clone(),
    ];
    targets.extend(client_ports.iter().map(|p| format!("127.0.0.1:{p}")));
    let (mut sent, start) = (0u64, Instant::now());
    // Four seconds of junk, ~500 datagrams a second at each target, while
    // the script types.
    while start.elapsed() < Duration::from_secs(4) {
        for t in &targets {
            let valid = if t.ends_with(&format!(":{probe_port}")) {
                probe.clone()
            } else if *t == host {
                // Messages a gateway would send, for sessions that do not
                // exist (input, activity, a detach).
                let session = junk.next();
                match junk.below(3) {
                    0 => envelope(
                        session,
                        Message::Input {
                            seq: junk.next() as u32,
                            event: InputEvent::Key {
                                usage: 4,
                                down: true,
                            },
                        },
                    ),
                    1 => envelope(session, Message::Activity(Default::default())),
                    _ => envelope(session, Message::Detach),
                }
            } else {
                // A QUIC long-header packet's first bytes, then noise.
                let mut q = vec![0xc0, 0, 0, 0, 1, 8];
                q.extend((0..1200).map(|_| junk.next() as u8));
                q
            };
            let d = junk.datagram(&valid);
            if sock.send_to(&d, t.as_str()).is_ok() {
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!("junk: {sent} datagrams at {} targets", targets.len());
    let status = client.wait().unwrap();
    assert!(status.success(), "{}", heard.all());
    // Nobody fell over, and the session did not notice.
    for (name, p) in [
        ("host", &mut host_proc),
        ("directory", &mut directory),
        ("gateway", &mut gateway),
    ] {
        assert!(p.child.0.try_wait().unwrap().is_none(), "the {name} died");
    }
    let st = json(&dir.join("s.json"));
    let f = |k: &str| st[k].as_f64().unwrap();
    assert_eq!(st["input_acked"], 120, "{st}");
    assert_eq!(st["reconnects"], 0, "{st}");
    assert!(f("frames_presented") > 0.0, "{st}");
    assert_exactly_once(&[rec], &letters);
}

#[test]
fn a_sigkilled_directory_and_gateway_restart_as_the_same_service() {
    let _turn = exclusive();
    let dir = scratch("restart");
    let state = dir.join("state");
    let host = format!("127.0.0.1:{}", free_udp_port());
    let (gw, probe) = (
        format!("127.0.0.1:{}", free_udp_port()),
        format!("127.0.0.1:{}", free_udp_port()),
    );
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let rec = dir.join("rec.jsonl");
    let (directory, url) = start_directory(&listen, &state);
    let _host = start_host(&url, &state, &dir, "r", &host, &rec);
    let gateway = start_gateway(&url, &state, &dir, "r", &gw, &probe);
    wait_for("the gateway to register", Duration::from_secs(20), || {
        gateway.said("registered with the directory")
    });
    // What clients and gateways were given to trust, the key gateways
    // register with, and the key hosts check tokens with.
    let held = || {
        [
            "state/ca.pem",
            "ca-r.pem",
            "state/service.key",
            "state/token.pub",
        ]
        .map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    let given = held();
    drop(directory); // SIGKILL
    let (directory, url_again) = start_directory(&listen, &state);
    assert_eq!(url_again, url);
    // The running gateway's heartbeats reach the new process: it still
    // trusts the directory's certificate and holds its service key.
    wait_for(
        "the running gateway to reach the restarted directory",
        Duration::from_secs(20),
        || directory.said("gateway known from an earlier run is back"),
    );
    assert!(
        !gateway.said("BadSignature") && !gateway.said("UnknownIssuer"),
        "the gateway stopped trusting the directory"
    );
    drop(gateway); // SIGKILL
    let gateway = start_gateway(&url, &state, &dir, "r", &gw, &probe);
    wait_for(
        "the gateway to register again",
        Duration::from_secs(20),
        || gateway.said("registered with the directory"),
    );
    // With the key it was issued, kept in its key file: the same gateway
    // to the directory, not a stranger wanting a running gateway's id.
    assert!(
        !gateway.said("belongs to a gateway that is running"),
        "the restarted gateway was refused its own id"
    );
    assert!(
        given == held(),
        "a restart changed what clients or gateways hold"
    );
    #[cfg(unix)]
    for secret in [
        "state/ca.key",
        "state/service.key",
        "state/directory.redb",
        "ca-r.key",
        "gw-r.key",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret} is open to others: {mode:o}");
    }
    // A client given the files before the restarts signs in, is sent to
    // the restarted gateway and types.
    let (text, letters) = typing(300, 20);
    std::fs::write(dir.join("script.txt"), text).unwrap();
    let (mut client, heard) = headless_connect(&url, &state, &dir, &["r"], "3");
    let status = client.wait().unwrap();
    assert!(status.success(), "{}", heard.all());
    let st = json(&dir.join("s.json"));
    assert_eq!(st["input_acked"], 40, "{st}");
    assert_exactly_once(&[rec], &letters);
    drop(gateway);
    drop(directory);
    let _ = std::fs::remove_dir_all(dir);
}

/// How many key presses `rec` holds so far.
fn keys_down(rec: &Path) -> usize {
    std::fs::read_to_string(rec)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "key" && v["action"] == "down")
        .count()
}

/// A log line without its colours (ANSI escape sequences).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // `ESC [ ... m`: skip to the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
