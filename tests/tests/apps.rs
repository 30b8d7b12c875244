//! Applications per session, on the whole service: a catalog entry that is
//! an application runs in an instance of its own for each session (on a
//! private Xvfb display of its host), with the user's profile as its home;
//! the profile goes back to the directory at log-off and comes to
//! whichever host serves the user's next session.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use nephele_api::DirectoryClient;
use nephele_api::admin::{AdminRequest, EntryKind, EntrySpec};
use nephele_e2e::{
    DemoOptions, DemoService, Headless, connect_headless, headless_config, wait_until,
};
use nephele_protocol::wire::InputEvent;
use nephele_service::directory::{ADMIN_KEY_FILE, DEFAULT_TENANT};

const ENTRY: &str = "notes";

fn admin(svc: &DemoService, dir: &DirectoryClient, req: AdminRequest) {
    let key = std::fs::read_to_string(state(svc).join(ADMIN_KEY_FILE)).unwrap();
    dir.admin(key.trim(), &req).unwrap();
}

fn state(svc: &DemoService) -> PathBuf {
    svc.service().ca_path().parent().unwrap().to_path_buf()
}

/// The homes of the application sessions running now, on every host.
fn homes(svc: &DemoService) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(hosts) = std::fs::read_dir(state(svc).join("apps")) else {
        return out;
    };
    for host in hosts.flatten() {
        for s in std::fs::read_dir(host.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(s.path().join("home"));
        }
    }
    out
}

/// The home holding file `name`, if one does.
fn home_with(svc: &DemoService, name: &str) -> Option<PathBuf> {
    homes(svc).into_iter().find(|h| h.join(name).exists())
}

/// HID usages of lowercase letters, space and Enter.
fn usage(c: char) -> u16 {
    match c {
        'a'..='z' => 0x04 + (c as u16 - 'a' as u16),
        ' ' => 0x2c,
        '\n' => 0x28,
        _ => unreachable!("not typed here: {c:?}"),
    }
}

/// Types `text` into a session, each key down then up.
fn type_text(s: &Headless, text: &str) {
    let input = s.input();
    for c in text.chars() {
        let usage = usage(c);
        for down in [true, false] {
            input.push(InputEvent::Key { usage, down }).unwrap();
        }
    }
    assert!(wait_until(Duration::from_secs(5), || input.in_flight() == 0));
}

/// Opens the application entry as a signed-in user; waits for its picture.
fn open(svc: &DemoService, dir: &DirectoryClient, user: &str, pw: &str) -> Headless {
    let signed = dir.sign_in(user, pw).unwrap();
    let grant = dir.create_session(&signed.token, ENTRY, false).unwrap();
    let cfg = headless_config(svc.gateway_addr(), svc.ca(), grant.token.into_bytes());
    let s = connect_headless(cfg).unwrap();
    let frames = || s.stats.frames_presented.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(15), || frames() >= 1),
        "no picture from {user}'s application"
    );
    s
}

/// Types `touch NAME` into the session's shell until the file is in a
/// home (the first keys may reach the display before the terminal is up).
fn touch(svc: &DemoService, s: &Headless, name: &str) -> PathBuf {
    for _ in 0..5 {
        type_text(s, &format!("touch {name}\n"));
        if wait_until(Duration::from_secs(3), || home_with(svc, name).is_some()) {
            return home_with(svc, name).unwrap();
        }
    }
    panic!("`touch {name}` made no file in any application home");
}

fn in_home(home: &Path, name: &str) -> bool {
    home.join(name).exists()
}

/// Whether this process may run programs as other accounts.
fn root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The owner of a file.
fn owner(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).unwrap().uid()
}

#[test]
fn two_users_run_their_own_instance_and_the_profile_follows_to_another_host() {
    // Two users named like accounts every Debian system has: a host run
    // as root then runs each one's program as their own account (the
    // `{user}` pattern) without the test adding accounts to the machine.
    let users = [
        ("nobody", "nobody-password-1"),
        ("daemon", "daemon-password-22"),
    ];
    let as_users = root();
    let svc = DemoService::start(DemoOptions {
        app_account: as_users.then(|| "{user}".to_string()),
        ..DemoOptions::default()
    })
    .unwrap();
    let dir = DirectoryClient::new(&svc.directory_url(), &[svc.ca()]).unwrap();
    let tenant = || DEFAULT_TENANT.to_string();
    let command = ["xterm", "-geometry", "200x80+0+0", "-e", "sh"];
    admin(
        &svc,
        &dir,
        AdminRequest::EntryPut {
            tenant: tenant(),
            entry: EntrySpec {
                id: ENTRY.into(),
                name: "Notes".into(),
                kind: EntryKind::App,
                icon_png: None,
                command: command.iter().map(|s| s.to_string()).collect(),
                max_sessions: None,
            },
        },
    );
    for (user, password) in users {
        admin(
            &svc,
            &dir,
            AdminRequest::UserAdd {
                tenant: tenant(),
                user: user.into(),
                password: password.into(),
                grants: vec![ENTRY.into()],
            },
        );
    }
    // Both at once, each typing into their own instance: each file lands
    // in its own user's home, not in the other's.
    let nobody = open(&svc, &dir, users[0].0, users[0].1);
    let daemon = open(&svc, &dir, users[1].0, users[1].1);
    let nobody_home = touch(&svc, &nobody, "nobodyfile");
    let daemon_home = touch(&svc, &daemon, "daemonfile");
    assert_ne!(nobody_home, daemon_home, "the two sessions share a home");
    assert!(!in_home(&nobody_home, "daemonfile") && !in_home(&daemon_home, "nobodyfile"));
    assert_eq!(homes(&svc).len(), 2, "one instance per session");
    if as_users {
        // Made by each user's own account (nobody 65534, daemon 1).
        assert_eq!(owner(&nobody_home.join("nobodyfile")), 65534);
        assert_eq!(owner(&daemon_home.join("daemonfile")), 1);
    }
    // Nobody logs off: their program ends and their home is gone from the host
    // (kept by the directory); daemon's session goes on.
    nobody.close().unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || !nobody_home.exists()),
        "the first user's home outlived their session"
    );
    assert!(daemon_home.exists());
    // The host that served them stops; their next session is on the other.
    let served = nobody_home.ancestors().nth(2).unwrap().file_name().unwrap();
    let index = usize::from(served != "host-a");
    let directory = &svc.service().directory;
    svc.service().hosts()[index].crash();
    assert!(wait_until(Duration::from_secs(15), || directory
        .live_hosts()
        == 1));
    let again = open(&svc, &dir, users[0].0, users[0].1);
    let home = touch(&svc, &again, "laterfile");
    let host = home.ancestors().nth(2).unwrap().file_name().unwrap();
    assert_ne!(host, served, "the next session was on the same host");
    assert!(
        in_home(&home, "nobodyfile"),
        "the file saved in the first session is not in the next: {:?}",
        std::fs::read_dir(&home).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert!(!in_home(&home, "daemonfile"));
    drop(daemon);
    drop(again);
}

#[test]
fn a_host_reads_and_keeps_only_the_profiles_of_the_application_sessions_it_serves() {
    use nephele_api::DirClientError;
    use nephele_api::directory::{AppLaunchRequest, HostInfo, ProfileSave};
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let dir = DirectoryClient::new(&svc.directory_url(), &[svc.ca()]).unwrap();
    let command = vec!["xterm".to_string()];
    admin(
        &svc,
        &dir,
        AdminRequest::EntryPut {
            tenant: DEFAULT_TENANT.into(),
            entry: EntrySpec {
                id: ENTRY.into(),
                name: "Notes".into(),
                kind: EntryKind::App,
                icon_png: None,
                command: command.clone(),
                max_sessions: None,
            },
        },
    );
    let (user, pw) = svc.credentials();
    admin(
        &svc,
        &dir,
        AdminRequest::Grant {
            tenant: DEFAULT_TENANT.into(),
            user: user.into(),
            entry: ENTRY.into(),
        },
    );
    // A host of its own site, enrolled by hand (no sessions run on it).
    let service_key = svc.service().directory.service_key().to_string();
    let info = HostInfo {
        id: "solo".into(),
        site: "pop-solo".into(),
        address: "127.0.0.1:9".into(),
        capacity: 4,
    };
    let key = dir
        .register_host(&service_key, &info)
        .unwrap()
        .gateway_key
        .unwrap();
    let signed = dir.sign_in(user, pw).unwrap();
    let near = |site: &str| vec![site.to_string()];
    let mine = dir
        .create_session_near(&signed.token, ENTRY, false, &near("pop-solo"))
        .unwrap();
    let launch = |token: &str, key: &str| {
        dir.app_launch(
            key,
            "solo",
            &AppLaunchRequest {
                token: token.into(),
            },
        )
    };
    // The session placed on it: its user, the entry's program, no profile yet.
    let l = launch(&mine.token, &key).unwrap();
    assert_eq!(
        (l.user.as_str(), &l.command, &l.profile),
        (user, &command, &None)
    );
    // Kept, then given to its next session.
    let save = |token: &str, profile: &str| {
        let save = ProfileSave {
            token: token.into(),
            profile: profile.into(),
        };
        dir.save_profile(&key, "solo", &save)
    };
    save(&mine.token, "AAAA").unwrap();
    assert_eq!(
        launch(&mine.token, &key).unwrap().profile.as_deref(),
        Some("AAAA")
    );
    let refused = |r: Result<_, DirClientError>| match r {
        Err(DirClientError::Refused { status, .. }) => status,
        Ok(_) => 200,
        Err(e) => panic!("{e}"),
    };
    // A wrong key opens nothing.
    assert_eq!(refused(launch(&mine.token, "not-the-key").map(drop)), 401);
    // A session placed on another host is not this host's to read or write.
    let other = dir
        .create_session_near(&signed.token, ENTRY, false, &near("pop-near"))
        .unwrap();
    assert_eq!(refused(launch(&other.token, &key).map(drop)), 403);
    assert_eq!(refused(save(&other.token, "AAAA")), 403);
    // Nor is a token this directory did not sign, or what is not base64.
    assert_eq!(refused(launch("forged.token.here", &key).map(drop)), 403);
    assert_eq!(refused(save(&mine.token, "not base64!")), 400);
}
