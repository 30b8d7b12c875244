//! Hosts that enrol with the directory by site and capacity, and where
//! sessions go: the nearest site the client measured that has room, then
//! the next; backups on another host; a host that stops answering gets
//! nothing more.

use std::time::Duration;

use nephele_api::DirectoryClient;
use nephele_api::directory::HostInfo;
use nephele_e2e::{DemoOptions, DemoService, wait_until};
use nephele_service::gateway::Credentials;
use nephele_service::host::{Host, HostConfig};

/// A host of `site` with room for `capacity` sessions, enrolled with the
/// demo service's directory.
fn enrolled(svc: &DemoService, id: &str, site: &str, capacity: u32) -> Host {
    let embedded = svc.service();
    let host = Host::start(HostConfig {
        link: embedded.link_key().clone(),
        tokens: Some(embedded.directory.verifier()),
        ..HostConfig::default()
    })
    .unwrap();
    let dir = DirectoryClient::new(&svc.directory_url(), &[svc.ca()]).unwrap();
    let creds = Credentials {
        service_key: embedded.directory.service_key().to_string(),
        key_file: None,
    };
    let info = HostInfo {
        id: id.into(),
        site: site.into(),
        address: host.local_addr().to_string(),
        capacity,
    };
    host.enrol(dir, creds, info);
    host
}

#[test]
fn sessions_go_to_the_nearest_site_with_room_and_never_to_a_silent_host() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    // The demo's two hosts are in pop-near, room for many; one more host
    // far away with room for one session, one in pop-mid with room for two.
    let far = enrolled(&svc, "far-1", "pop-far", 1);
    let mid = enrolled(&svc, "mid-1", "pop-mid", 2);
    let directory = &svc.service().directory;
    assert!(wait_until(Duration::from_secs(5), || directory
        .live_hosts()
        == 4));
    let dir = DirectoryClient::new(&svc.directory_url(), &[svc.ca()]).unwrap();
    let (user, pw) = svc.credentials();
    let signed = dir.sign_in(user, pw).unwrap();
    let verifier = directory.verifier();
    let open = |near: &[&str]| {
        let near: Vec<String> = near.iter().map(|s| s.to_string()).collect();
        let grant = dir
            .create_session_near(&signed.token, "demo", false, &near)
            .unwrap();
        let c = verifier.session(grant.token.as_bytes()).unwrap();
        (c.host, c.backup)
    };
    let (far_addr, mid_addr) = (far.local_addr().to_string(), mid.local_addr().to_string());
    let near_hosts: Vec<String> = svc
        .service()
        .hosts()
        .iter()
        .map(|h| h.local_addr().to_string())
        .collect();
    // A client nearest pop-far goes there; its backup is another site's
    // host (pop-far has no other), the next nearest: pop-mid.
    let (host, backup) = open(&["pop-far", "pop-mid", "pop-near"]);
    assert_eq!(host, far_addr);
    assert_eq!(backup.as_deref(), Some(mid_addr.as_str()));
    // pop-far is full now: the next nearest site with room.
    let (host, backup) = open(&["pop-far", "pop-mid", "pop-near"]);
    assert_eq!(host, mid_addr);
    let backup = backup.unwrap();
    assert!(backup != mid_addr, "the backup is another host");
    // A client nearest pop-near: one of its hosts, the other its backup.
    let (host, backup) = open(&["pop-near", "pop-mid"]);
    assert!(near_hosts.contains(&host), "{host}");
    let backup = backup.unwrap();
    assert!(near_hosts.contains(&backup) && backup != host, "{backup}");
    // A host that stops answering leaves the lists: its site is skipped.
    mid.crash();
    assert!(wait_until(Duration::from_secs(10), || directory
        .live_hosts()
        == 3));
    let (host, backup) = open(&["pop-mid", "pop-far", "pop-near"]);
    assert!(near_hosts.contains(&host), "{host}");
    assert_ne!(backup.as_deref(), Some(mid_addr.as_str()));
    drop(far);
}
