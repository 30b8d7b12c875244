//! Administration seen from users' side, on the whole service: caps on
//! concurrent sessions, sessions ended by an administrator, notices to one
//! user, and the service's gateways and hosts as administrators see them.

use nephele_api::DirectoryClient;
use nephele_api::admin::{AdminAnswer, AdminRequest, EntryKind, EntrySpec};
use std::time::Duration;

use nephele_e2e::{DemoOptions, DemoService, connect_headless, headless_config, wait_until};
use nephele_service::directory::{ADMIN_KEY_FILE, DEFAULT_TENANT, DEMO_DESKTOP};

fn admin(svc: &DemoService, dir: &DirectoryClient, req: AdminRequest) -> AdminAnswer {
    let state = svc.service().ca_path().parent().unwrap();
    let key = std::fs::read_to_string(state.join(ADMIN_KEY_FILE)).unwrap();
    dir.admin(key.trim(), &req).unwrap()
}

fn column<'a>(a: &'a AdminAnswer, name: &str) -> Vec<&'a str> {
    let i = a.columns.iter().position(|c| c == name).unwrap();
    a.rows.iter().map(|r| r[i].as_str()).collect()
}

#[test]
fn caps_ended_sessions_and_notices_reach_users() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let dir = DirectoryClient::new(&svc.directory_url(), &[svc.ca()]).unwrap();
    let tenant = DEFAULT_TENANT.to_string();
    admin(
        &svc,
        &dir,
        AdminRequest::EntryPut {
            tenant: tenant.clone(),
            entry: EntrySpec {
                id: DEMO_DESKTOP.into(),
                name: "Demo desktop".into(),
                kind: EntryKind::Desktop,
                icon_png: None,
                command: Vec::new(),
                max_sessions: Some(1),
            },
        },
    );
    let (user, pw) = svc.credentials();
    let signed = dir.sign_in(user, pw).unwrap();
    let first = dir
        .create_session(&signed.token, DEMO_DESKTOP, false)
        .unwrap();
    // The cap is reached: another session is refused, in words.
    match dir.create_session(&signed.token, DEMO_DESKTOP, false) {
        Err(nephele_api::DirClientError::Refused { status, message }) => {
            assert_eq!(status, 503);
            assert!(
                message.contains("all 1 sessions of “Demo desktop” are in use"),
                "{message}"
            );
        }
        other => panic!("a second session past the cap: {other:?}"),
    }
    // Going back to the open one is not a new session: allowed.
    let back = dir
        .create_session(&signed.token, DEMO_DESKTOP, true)
        .unwrap();
    assert_eq!(back.session_id, first.session_id);
    // The administrator sees it, on its host, and ends it.
    let sessions = admin(&svc, &dir, AdminRequest::SessionList { tenant: None });
    assert_eq!(column(&sessions, "session"), [first.session_id.as_str()]);
    let hosts = admin(&svc, &dir, AdminRequest::HostList);
    let host_of = column(&sessions, "host")[0];
    assert!(column(&hosts, "address").contains(&host_of), "{hosts:?}");
    let gateways = admin(&svc, &dir, AdminRequest::GatewayList);
    assert!(
        column(&gateways, "state")
            .iter()
            .all(|s| s.starts_with("answering")),
        "{gateways:?}"
    );
    admin(
        &svc,
        &dir,
        AdminRequest::SessionEnd {
            id: first.session_id.clone(),
        },
    );
    assert!(dir.resume_session(&back.resume_token.unwrap()).is_err());
    let fresh = dir
        .create_session(&signed.token, DEMO_DESKTOP, false)
        .unwrap();
    assert_ne!(fresh.session_id, first.session_id);
    // A notice to another user of the tenant is not this user's; one to
    // the tenant is, until it is removed.
    let to = |user: Option<&str>, message: &str| AdminRequest::NoticeAdd {
        tenant: tenant.clone(),
        user: user.map(str::to_string),
        message: message.into(),
        until_unix: None,
    };
    admin(&svc, &dir, to(Some("someone-else"), "not for you"));
    let posted = admin(&svc, &dir, to(None, "for everyone"));
    let notices = dir.catalog(&signed.token).unwrap().notices;
    let said: Vec<&str> = notices.iter().map(|n| n.message.as_str()).collect();
    assert_eq!(said, ["for everyone"]);
    let id = posted.message.split('`').nth(1).unwrap().to_string();
    assert_eq!(id, notices[0].id);
    admin(&svc, &dir, AdminRequest::NoticeRemove { id });
    assert!(dir.catalog(&signed.token).unwrap().notices.is_empty());
}

#[test]
fn a_session_an_administrator_ends_closes_at_its_client_within_heartbeats() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let dir = DirectoryClient::new(&svc.directory_url(), &[svc.ca()]).unwrap();
    let (user, pw) = svc.credentials();
    let signed = dir.sign_in(user, pw).unwrap();
    let grant = dir
        .create_session(&signed.token, DEMO_DESKTOP, false)
        .unwrap();
    let cfg = headless_config(svc.gateway_addr(), svc.ca(), grant.token.into_bytes());
    let session = connect_headless(cfg).unwrap();
    let frames = || {
        session
            .stats
            .frames_presented
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(wait_until(Duration::from_secs(10), || frames() >= 5));
    admin(
        &svc,
        &dir,
        AdminRequest::SessionEnd {
            id: grant.session_id.clone(),
        },
    );
    // The host hears of it at its next heartbeat (every second here) and
    // ends the session; the client is told why, in words.
    let ending = || session.ending.lock().unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(10), || ending().is_some()),
        "the session went on"
    );
    let why = ending().unwrap();
    assert!(why.contains("administrator ended"), "{why}");
    // Nothing brings it back: its resume token is refused.
    assert!(dir.resume_session(&grant.resume_token.unwrap()).is_err());
}
