//! Two directory processes on one real PostgreSQL database, as behind one
//! address: a user added through one signs in through the other, a
//! gateway heartbeating to one is listed by the other, a resume token is
//! used once whichever directory sees it, and killing one loses no
//! session.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nephele_api::DirectoryClient;
use nephele_api::admin::{AdminRequest, EntryKind, EntrySpec};
use nephele_api::directory::{GatewayInfo, HostHeartbeat, HostInfo};
use nephele_e2e::postgres::Postgres;
use nephele_e2e::{Scratch, wait_until};
use nephele_service::directory::ADMIN_KEY_FILE;

/// The `nephele-server` built beside this crate's programs.
fn server_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_nephele-load")).with_file_name("nephele-server");
    assert!(
        p.exists(),
        "{} not built: run the tests with `cargo xtask test`",
        p.display()
    );
    p
}

/// A directory process, killed (SIGKILL) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `nephele-server directory` on `database`; its URL.
fn directory(scratch: &Path, name: &str, database: &str) -> (Proc, String) {
    let mut child = Command::new(server_binary())
        .args(["directory", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(scratch.join("state"))
        .args(["--database", database])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(scratch.join(format!("{name}.log"))).unwrap())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{name}: {url:?}");
    (Proc(child), url)
}

#[test]
fn two_directories_on_one_postgres_serve_the_same_users_gateways_and_sessions() {
    let scratch = Scratch::new("shared-directory");
    let pg = Postgres::start(&scratch.path().join("pg")).unwrap();
    // One starts first and makes the keys; the other finds them.
    let (a, url_a) = directory(scratch.path(), "a", pg.url());
    let (b, url_b) = directory(scratch.path(), "b", pg.url());
    let state = scratch.path().join("state");
    let ca = nephele_api::trust::read_cert_pem(&state.join("ca.pem")).unwrap();
    let dir_a = DirectoryClient::new(&url_a, &ca).unwrap();
    let dir_b = DirectoryClient::new(&url_b, &ca).unwrap();
    let read = |f: &str| {
        std::fs::read_to_string(state.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    let (admin_key, service_key) = (read(ADMIN_KEY_FILE), read("service.key"));

    // A user added through A signs in through B; a wrong password is
    // still wrong there.
    for req in [
        AdminRequest::TenantAdd {
            tenant: "acme".into(),
            name: "Acme".into(),
        },
        AdminRequest::EntryPut {
            tenant: "acme".into(),
            entry: EntrySpec {
                id: "desk".into(),
                name: "Desk".into(),
                kind: EntryKind::Desktop,
                icon_png: None,
                command: Vec::new(),
                max_sessions: None,
            },
        },
        AdminRequest::UserAdd {
            tenant: "acme".into(),
            user: "carol".into(),
            password: "shared secret".into(),
            grants: vec!["desk".into()],
        },
    ] {
        dir_a.admin(&admin_key, &req).unwrap();
    }
    assert!(dir_b.sign_in("carol@acme", "not it").is_err());
    let signed = dir_b.sign_in("carol@acme", "shared secret").unwrap();
    // B's user token is good at A: one signing key.
    assert_eq!(dir_a.catalog(&signed.token).unwrap().desktops.len(), 1);

    // A gateway and a host heartbeat to A (to B once A is gone, as a
    // load balancer in front of both would send them).
    let gateway = GatewayInfo {
        id: "gw-1".into(),
        pop: "pop-1".into(),
        region: "Here".into(),
        address: "127.0.0.1:4433".into(),
        probe_address: "127.0.0.1:4434".into(),
        server_name: "localhost".into(),
        load: 0.0,
    };
    let gw_key = dir_a
        .register(&service_key, &gateway)
        .unwrap()
        .gateway_key
        .unwrap();
    let host = HostInfo {
        id: "host-1".into(),
        site: "pop-1".into(),
        address: "127.0.0.1:7400".into(),
        capacity: 4,
    };
    let host_key = dir_a
        .register_host(&service_key, &host)
        .unwrap()
        .gateway_key
        .unwrap();
    let a_alive = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let beats = {
        let (a_alive, stop) = (a_alive.clone(), stop.clone());
        let (dir_a, dir_b) = (
            DirectoryClient::new(&url_a, &ca).unwrap(),
            DirectoryClient::new(&url_b, &ca).unwrap(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let to = if a_alive.load(Ordering::Relaxed) {
                    &dir_a
                } else {
                    &dir_b
                };
                let _ = to.heartbeat(&gw_key, "gw-1", 0.25);
                let beat = HostHeartbeat {
                    sessions: 0,
                    serving: Vec::new(),
                };
                let _ = to.host_heartbeat(&host_key, "host-1", &beat);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let listed_by_b = || {
        dir_b
            .catalog(&signed.token)
            .is_ok_and(|c| c.gateways.iter().any(|g| g.id == "gw-1"))
    };
    assert!(
        wait_until(Duration::from_secs(5), listed_by_b),
        "B lists the gateway heartbeating to A"
    );

    // A session made through A; its resume token used through B; the
    // same token is then spent at A too.
    let grant = dir_a.create_session(&signed.token, "desk", false).unwrap();
    let again = dir_b
        .resume_session(grant.resume_token.as_deref().unwrap())
        .unwrap();
    assert_eq!(again.session_id, grant.session_id);
    assert!(
        dir_a
            .resume_session(grant.resume_token.as_deref().unwrap())
            .is_err(),
        "a resume token opens the session once, whichever directory sees it"
    );

    // A dies at once; B has the session, the gateway and the host.
    drop(a);
    a_alive.store(false, Ordering::Relaxed);
    let last = dir_b
        .resume_session(again.resume_token.as_deref().unwrap())
        .unwrap();
    assert_eq!(last.session_id, grant.session_id);
    let verifier =
        nephele_service::token::Verifier::from_public_b64(&dir_b.public_key().unwrap().public_key)
            .unwrap();
    let claims = verifier.session(last.token.as_bytes()).unwrap();
    assert_eq!(claims.host, host.address);
    assert!(listed_by_b());
    // Past A's last heartbeats' lifetime (three of a second) the members
    // are still listed, heartbeating to B alone now; B places a new session.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(listed_by_b());
    let fresh = dir_b.create_session(&signed.token, "desk", false).unwrap();
    assert_ne!(fresh.session_id, grant.session_id);
    stop.store(true, Ordering::Relaxed);
    beats.join().unwrap();
    drop(b);
}

/// The same operations on both engines give the same answers: prefix
/// scans that do not run into a neighbouring tenant ("acme" and "acme2"),
/// the audit log newest first, removals in one transaction, and a resume
/// token used once by eight threads racing for it.
#[test]
fn the_store_answers_alike_on_redb_and_on_postgres() {
    use nephele_service::directory::store::{AuditRecord, SessionRecord, Store};
    let scratch = Scratch::new("store-engines");
    let pg = Postgres::start(&scratch.path().join("pg")).unwrap();
    let stores = [
        Store::open(&scratch.path().join("redb")).unwrap(),
        Store::open_url(pg.url()).unwrap(),
    ];
    let mut answers = Vec::new();
    for s in &stores {
        for (tenant, user) in [("acme", "alice"), ("acme", "bob"), ("acme2", "carl")] {
            s.add_user(tenant, user, "pw", &[]).unwrap();
        }
        assert!(s.add_user("acme", "bob", "again", &[]).is_err());
        let users: Vec<String> = s
            .users("acme")
            .unwrap()
            .into_iter()
            .map(|u| u.user)
            .collect();
        for i in 0..5u64 {
            s.audit(&AuditRecord {
                at_ms: 1000 + i,
                actor: "admin".into(),
                from: "test".into(),
                op: serde_json::json!({ "n": i }),
                outcome: "ok".into(),
            })
            .unwrap();
        }
        let audit: Vec<u64> = s.audit_log(3).unwrap().iter().map(|a| a.at_ms).collect();
        s.put_profile("acme", "bob", b"tar").unwrap();
        let removed = (
            s.remove_user("acme", "bob").unwrap(),
            s.remove_user("acme", "bob").unwrap(),
            s.profile("acme", "bob").unwrap(),
        );
        s.put_session(&SessionRecord {
            id: "s1".into(),
            tenant: "acme".into(),
            user: "alice".into(),
            desktop: "desk".into(),
            host: "127.0.0.1:7400".into(),
            backup: None,
            created: 1,
            created_ms: 1000,
            expires: u64::MAX / 2,
            resume_generation: 0,
        })
        .unwrap();
        let won = std::thread::scope(|t| {
            let racers: Vec<_> = (0..8)
                .map(|_| t.spawn(|| s.use_resume("s1", 0).unwrap().is_some()))
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().unwrap())
                .filter(|won| *won)
                .count()
        });
        let generation = s.session("s1").unwrap().unwrap().resume_generation;
        let first_key = s.signing_key(|| Ok(vec![7; 8])).unwrap();
        answers.push((users, audit, removed, won, generation, first_key.len()));
    }
    assert_eq!(
        answers[0],
        (
            vec!["alice".to_string(), "bob".to_string()],
            vec![1004, 1003, 1002],
            (true, false, None),
            1,
            1,
            8
        )
    );
    assert_eq!(answers[0], answers[1]);
}
