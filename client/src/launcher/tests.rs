use std::sync::mpsc;
use std::time::Duration;

use super::*;

fn launcher(file: Option<PathBuf>) -> (Launcher, mpsc::Receiver<Outcome>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let notify = Arc::new(move |o: Outcome| {
        let _ = tx.lock().unwrap().send(o);
    });
    (Launcher::new(file, Vec::new(), notify), rx)
}

fn entry(id: &str) -> CatalogEntry {
    CatalogEntry {
        id: id.into(),
        name: format!("Desktop {id}"),
        kind: "desktop".into(),
        open: None,
    }
}

#[test]
fn a_first_run_asks_for_the_address_and_a_bad_one_is_told_in_place() {
    let (mut l, _rx) = launcher(None);
    assert_eq!(l.page, Page::AddService);
    l.address = "http://plain.example".into();
    assert!(matches!(l.act(Action::Continue), Command::None));
    assert_eq!(l.page, Page::AddService);
    assert!(l.problem.as_deref().unwrap().contains("https://"));
    assert_eq!(l.address, "http://plain.example", "the field is kept");
    l.address = "desktops.example:8443".into();
    l.act(Action::Continue);
    // The service is checked first, on a thread of its own.
    assert!(l.busy);
    assert_eq!(l.page, Page::AddService);
    assert_eq!(l.url(), "https://desktops.example:8443");
    assert_eq!(l.problem, None);
    l.outcome(Outcome::Trusted {
        attempt: l.attempt,
        kept: None,
    });
    assert_eq!(l.page, Page::SignIn);
    assert!(l.focus_first);
}

/// A launcher whose address is a loopback port nothing listens on
/// (refused at once), its check under way; the port.
fn checked_unreachable() -> (Launcher, mpsc::Receiver<Outcome>, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut l, rx) = launcher(None);
    l.address = format!("127.0.0.1:{port}");
    l.act(Action::Continue);
    (l, rx, port)
}

#[test]
fn an_unreachable_service_is_told_on_the_sign_in_page_with_the_fields_kept() {
    let (mut l, rx, port) = checked_unreachable();
    l.outcome(rx.recv_timeout(Duration::from_secs(20)).unwrap());
    assert_eq!(l.page, Page::AddService);
    let said = l.problem.clone().unwrap();
    assert!(said.contains("cannot reach the service"), "{said}");
    assert_eq!(l.address, format!("https://127.0.0.1:{port}"));
    // Had it answered before: signing in says the same, on its page.
    l.go(Page::SignIn);
    l.act(Action::SignIn);
    assert!(!l.busy, "nothing typed: nothing sent");
    assert!(l.problem.as_deref().unwrap().contains("user name"));
    l.user = " ada ".into();
    l.password = "secret".into();
    l.act(Action::SignIn);
    assert!(l.busy);
    let o = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    l.outcome(o);
    assert!(!l.busy);
    assert_eq!(l.page, Page::SignIn);
    let said = l.problem.clone().unwrap();
    assert!(said.contains("cannot reach the service"), "{said}");
    assert!(!said.contains(&port.to_string()), "{said}");
    assert_eq!((l.user.as_str(), l.password.as_str()), ("ada", "secret"));
}

#[test]
fn a_sign_in_keeps_the_service_and_the_catalog_opens_by_keyboard() {
    let dir = std::env::temp_dir().join(format!("nephele-launcher-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("services.toml");
    let (mut l, _rx) = launcher(Some(file.clone()));
    l.address = "https://desktops.example".into();
    l.act(Action::Continue);
    // Its certificate is not trusted here: the Trust page asks.
    let ca = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x2a]);
    let cert = Untrusted {
        ca: ca.clone(),
        fingerprint: inspect::fingerprint(&ca),
        was: None,
    };
    l.outcome(Outcome::Untrusted {
        attempt: l.attempt,
        cert,
    });
    assert_eq!(l.page, Page::Trust);
    l.act(Action::Trust);
    assert_eq!(l.page, Page::SignIn);
    assert_eq!(l.roots_for(l.url()), std::slice::from_ref(&ca));
    l.user = "ada".into();
    l.password = "secret".into();
    // An answer for an attempt given up is ignored.
    l.attempt = 7;
    l.outcome(Outcome::SignedIn {
        attempt: 6,
        catalog: vec![entry("old")],
        notices: Vec::new(),
        note: None,
    });
    assert_eq!(l.page, Page::SignIn);
    l.busy = true;
    l.outcome(Outcome::SignedIn {
        attempt: 7,
        catalog: vec![entry("a"), entry("b"), entry("c")],
        notices: Vec::new(),
        note: None,
    });
    assert_eq!(l.page, Page::Catalog);
    assert!(!l.busy);
    l.select_by(1);
    l.select_by(5);
    assert_eq!(l.selected, 2);
    l.select_by(-1);
    assert_eq!(l.selected, 1);
    let Command::Connect(login) = l.act(Action::Open(l.selected)) else {
        panic!("Enter on a tile connects");
    };
    assert_eq!(login.desktop.as_deref(), Some("b"));
    assert_eq!(
        (login.user.as_str(), login.password.as_str()),
        ("ada", "secret")
    );
    assert_eq!(l.page, Page::Connecting);
    l.stage("probing 3 PoPs…");
    l.stage("probing 3 PoPs: 1 answered…");
    l.stage("probing 3 PoPs: 3 answered…");
    l.stage("connecting to eu-west…");
    assert_eq!(
        l.stages,
        ["probing 3 PoPs: 3 answered…", "connecting to eu-west…"]
    );
    l.connected();
    assert_eq!(l.page, Page::Session);
    l.lost("cannot connect to the gateway at 127.0.0.1:4433: timed out");
    assert_eq!(l.page, Page::Lost);
    assert!(!l.problem.clone().unwrap().contains("127.0.0.1"));
    assert!(!l.ended_by_service);
    l.lost("the session ended: your administrator ended this session");
    assert!(l.ended_by_service, "the page says the session ended");
    l.lost("cannot connect to the gateway at 127.0.0.1:4433: timed out");
    assert!(
        !l.ended_by_service,
        "a later lost link is a lost link again"
    );
    assert!(matches!(l.act(Action::BackToCatalog), Command::Disconnect));
    assert_eq!(l.page, Page::Catalog);

    // The next run opens on this service with its user, never a password.
    let (next, _rx) = launcher(Some(file.clone()));
    assert_eq!(next.page, Page::SignIn);
    assert_eq!(next.url(), "https://desktops.example");
    assert_eq!(next.user, "ada");
    assert!(next.password.is_empty());
    assert_eq!(next.roots_for(next.url()), [ca], "the pin is kept");
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(!kept.contains("secret"), "{kept}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn back_from_a_lost_connection_asks_for_the_catalog_again_and_keeps_it_if_unreachable() {
    let (mut l, rx, _) = checked_unreachable();
    let _ = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    l.busy = false;
    (l.user, l.password) = ("ada".into(), "secret".into());
    l.catalog = vec![entry("a"), entry("b")];
    l.catalog[1].open = Some(nephele_api::directory::OpenSession {
        since_unix: 1,
        until_unix: 2,
    });
    l.selected = 1;
    // Leaving a session with Disconnect logs it off: the catalog as it
    // was, but the session's tile no longer says it is open.
    l.go(Page::Session);
    l.act(Action::BackToCatalog);
    assert_eq!((l.page, l.busy), (Page::Catalog, false));
    assert_eq!(l.catalog[1].open, None);
    // Back from the Lost page: asked again; the service being away is
    // told on the catalog, which stays.
    l.go(Page::Lost);
    l.act(Action::BackToCatalog);
    assert_eq!((l.page, l.busy), (Page::Catalog, true));
    l.outcome(rx.recv_timeout(Duration::from_secs(20)).unwrap());
    assert_eq!((l.page, l.catalog.len()), (Page::Catalog, 2));
    let said = l.problem.clone().unwrap();
    assert!(said.contains("cannot reach the service"), "{said}");
}
