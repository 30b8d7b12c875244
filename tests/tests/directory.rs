//! The directory, the gateway registry, tokens and the PoP choice, end to
//! end on loopback: real HTTPS, real UDP probes through delay relays, real
//! QUIC to the gateways.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nephele_api::directory::GatewayInfo;
use nephele_api::{DirClientError, DirectoryClient};
use nephele_client::discovery::{choose, open_session};
use nephele_client::session::SessionError;
use nephele_client::stats::Stats;
use nephele_e2e::{DemoOptions, DemoService};
use nephele_e2e::{Headless, connect_headless, headless_config, wait_until};
use nephele_service::gateway::{Credentials, Gateway, GatewayConfig};
use nephele_service::host::{Host, HostConfig};
use nephele_service::token::{AUD_DIRECTORY, AUD_GATEWAY, ISSUER, SessionClaims, Signer, unix_now};

fn client(svc: &DemoService) -> DirectoryClient {
    DirectoryClient::new(&svc.directory_url(), &[svc.ca()]).unwrap()
}

/// A gateway registration for a PoP that is not a real gateway.
fn fake_gateway(id: &str, address: SocketAddr, probe: SocketAddr) -> GatewayInfo {
    GatewayInfo {
        id: format!("gw-{id}"),
        pop: format!("pop-{id}"),
        region: "test".into(),
        address: address.to_string(),
        probe_address: probe.to_string(),
        server_name: "127.0.0.1".into(),
        load: 0.0,
    }
}

/// The gateways the catalog lists to a signed-in user now.
fn listed(svc: &DemoService) -> Vec<String> {
    let dir = client(svc);
    let (user, pw) = svc.credentials();
    let signed = dir.sign_in(user, pw).unwrap();
    let catalog = dir.catalog(&signed.token).unwrap();
    let mut ids: Vec<String> = catalog.gateways.iter().map(|g| g.id.clone()).collect();
    ids.sort();
    ids
}

#[test]
fn sign_in_catalog_session_and_the_nearest_pop() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let dir = client(&svc);
    let (user, pw) = svc.credentials();
    match dir.sign_in(user, "not the password") {
        Err(DirClientError::Refused {
            status: 401,
            message,
        }) => {
            assert_eq!(message, "wrong user name or password")
        }
        other => panic!("wrong password accepted or misreported: {other:?}"),
    }
    assert!(matches!(
        dir.sign_in("nobody", pw),
        Err(DirClientError::Refused { status: 401, .. })
    ));
    let signed = dir.sign_in(user, pw).unwrap();
    assert_eq!(dir.catalog(&signed.token).unwrap().desktops[0].id, "demo");
    assert!(matches!(
        dir.create_session(&signed.token, "someone-elses", false),
        Err(DirClientError::Refused { status: 403, .. })
    ));
    // A session token is not a user token.
    let opened = open_session(&dir, user, pw, None, false).unwrap();
    assert!(matches!(
        dir.catalog(&opened.grant.token),
        Err(DirClientError::Refused { status: 401, .. })
    ));
    assert_eq!(opened.grant.gateways.len(), 3);
    let claims = svc
        .service()
        .directory
        .verifier()
        .session(opened.grant.token.as_bytes())
        .unwrap();
    assert_eq!(claims.sub, "demo");
    assert_eq!(claims.host, svc.host().unwrap().local_addr().to_string());
    let choice = choose(&opened.grant, opened.listed_at, |_, _| {}).unwrap();
    assert_eq!(
        choice.best().unwrap().pop,
        "pop-near",
        "{:?}",
        choice.ranked
    );
    assert!(
        choice.decision < Duration::from_millis(500),
        "{:?}",
        choice.decision
    );
    assert_eq!(choice.usable().count(), 3);
    // Guessing is slowed down: after five more failures even the right
    // password waits.
    for _ in 0..5 {
        let _ = dir.sign_in(user, "guess");
    }
    match dir.sign_in(user, pw) {
        Err(DirClientError::Refused {
            status: 429,
            message,
        }) => assert!(message.contains("try again in"), "{message}"),
        other => panic!("no throttling after repeated failures: {other:?}"),
    }
}

#[test]
fn a_resume_token_fetches_fresh_tokens_for_the_same_session_and_nothing_else() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let dir = client(&svc);
    let (user, pw) = svc.credentials();
    let opened = open_session(&dir, user, pw, None, false).unwrap();
    let verifier = svc.service().directory.verifier();
    let first = verifier.session(opened.grant.token.as_bytes()).unwrap();
    // Two hosts: the second is the first's backup, named in the token.
    assert_eq!(
        first.backup.as_deref(),
        Some(svc.service().hosts()[1].local_addr().to_string().as_str())
    );
    let resume = opened.grant.resume_token.clone().expect("a resume token");
    let again = dir.resume_session(&resume).unwrap();
    assert_eq!(again.session_id, opened.grant.session_id);
    let second = verifier.session(again.token.as_bytes()).unwrap();
    assert_eq!(
        (&second.sid, &second.host, &second.backup),
        (&first.sid, &first.host, &first.backup)
    );
    assert_eq!(again.gateways.len(), 3);
    // Neither a session token nor a forged or mangled resume token resumes.
    for bad in [
        opened.grant.token.clone(),
        format!("{resume}x"),
        String::new(),
    ] {
        match dir.resume_session(&bad) {
            Err(DirClientError::Refused {
                status: 401,
                message,
            }) => {
                assert!(
                    message.starts_with("the session cannot be resumed"),
                    "{message}"
                )
            }
            other => panic!("resumed with {bad:?}: {other:?}"),
        }
    }
    // Each resume token is good once: the used one is refused, the one
    // its use gave works, once.
    match dir.resume_session(&resume) {
        Err(DirClientError::Refused {
            status: 401,
            message,
        }) => assert!(message.contains("already used"), "{message}"),
        other => panic!("a used resume token resumed: {other:?}"),
    }
    let next = again.resume_token.clone().expect("the next resume token");
    assert_ne!(next, resume);
    let third = dir.resume_session(&next).unwrap();
    assert_eq!(third.session_id, opened.grant.session_id);
    assert_eq!(status_of(dir.resume_session(&next)), 401);
    // Log-off: with the current token the session ends, and nothing
    // resumes it; an old token cannot end it.
    let latest = third.resume_token.clone().unwrap();
    assert_eq!(status_of(dir.end_session(&next)), 401);
    dir.end_session(&latest).unwrap();
    assert_eq!(status_of(dir.resume_session(&latest)), 404);

    // The client's renewer keeps the newest token: it renews again and again.
    let opened = open_session(&dir, user, pw, None, false).unwrap();
    let renew = nephele_client::discovery::renewer(dir.clone(), opened.grant.resume_token.unwrap());
    for _ in 0..3 {
        (renew.renew)().expect("a renewal with the newest resume token");
    }
    // Its log-off ends the session with the newest token too.
    (renew.end)().expect("a log-off with the newest resume token");
    assert!((renew.renew)().is_err(), "an ended session renewed");
}

/// The demo user signed in: the client, the sign-in, the first entry of
/// the catalog.
fn signed_in(svc: &DemoService) -> (DirectoryClient, nephele_api::directory::SignedIn, String) {
    let dir = client(svc);
    let (user, pw) = svc.credentials();
    let signed = dir.sign_in(user, pw).unwrap();
    let desktop = dir.catalog(&signed.token).unwrap().desktops[0].id.clone();
    (dir, signed, desktop)
}

#[test]
fn the_catalog_shows_a_session_left_open_and_reconnecting_goes_back_to_it() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let (dir, signed, desktop) = signed_in(&svc);
    let open_now = || dir.catalog(&signed.token).unwrap().desktops[0].open;
    assert_eq!(open_now(), None, "nothing is open yet");
    let first = dir.create_session(&signed.token, &desktop, false).unwrap();
    let shown = open_now().expect("the session left open");
    let now = unix_now();
    assert!(
        shown.since_unix <= now && shown.until_unix > now,
        "{shown:?}"
    );
    // Reconnecting goes back to that session, and spends the resume token
    // its first client held.
    let back = dir.create_session(&signed.token, &desktop, true).unwrap();
    assert_eq!(back.session_id, first.session_id);
    let spent = first.resume_token.clone().unwrap();
    assert_eq!(status_of(dir.resume_session(&spent)), 401);
    // Without asking to reconnect, another session; reconnecting then
    // goes to the newest.
    let other = dir.create_session(&signed.token, &desktop, false).unwrap();
    assert_ne!(other.session_id, first.session_id);
    let newest = dir.create_session(&signed.token, &desktop, true).unwrap();
    assert_eq!(newest.session_id, other.session_id);
    // Both logged off: nothing is open, and reconnecting opens afresh.
    dir.end_session(&newest.resume_token.unwrap()).unwrap();
    dir.end_session(&back.resume_token.unwrap()).unwrap();
    assert_eq!(open_now(), None);
    let fresh = dir.create_session(&signed.token, &desktop, true).unwrap();
    assert!(![first.session_id, other.session_id].contains(&fresh.session_id));
}

#[test]
fn a_silent_gateway_is_skipped_at_the_timeout() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    // A registered gateway whose probe port swallows everything.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let silent = fake_gateway("silent", sink_addr, sink_addr);
    let key = svc.service().directory.service_key().to_string();
    client(&svc).register(&key, &silent).unwrap();
    let (user, pw) = svc.credentials();
    let opened = open_session(&client(&svc), user, pw, None, false).unwrap();
    assert_eq!(opened.grant.gateways.len(), 4);
    let choice = choose(&opened.grant, opened.listed_at, |_, _| {}).unwrap();
    assert_eq!(choice.best().unwrap().pop, "pop-near");
    let last = choice.ranked.last().unwrap();
    assert_eq!((last.pop.as_str(), last.state), ("pop-silent", "silent"));
    assert!(last.score.is_none());
    assert!(
        choice.decision <= Duration::from_millis(500),
        "{:?}",
        choice.decision
    );
}

#[test]
fn gateways_leave_and_join_the_lists() {
    let mut svc = DemoService::start(DemoOptions::default()).unwrap();
    let all = ["gw-pop-far", "gw-pop-mid", "gw-pop-near"];
    assert_eq!(listed(&svc), all);
    // A gateway that shuts down leaves at once.
    svc.service_mut().pops[2].gateway.close();
    assert_eq!(listed(&svc), ["gw-pop-mid", "gw-pop-near"]);
    // One that stops heartbeating (its node failed) leaves after three
    // missed heartbeats.
    let key = svc.service().directory.service_key().to_string();
    let discard: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ghost = fake_gateway("ghost", discard, discard);
    let own = client(&svc).register(&key, &ghost).unwrap().gateway_key;
    let own = own.expect("a gateway registering with the service key is issued its own key");
    assert!(listed(&svc).contains(&"gw-ghost".to_string()));
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || !listed(&svc)
        .contains(&"gw-ghost".to_string())));
    let gone_after = t.elapsed();
    assert!(gone_after >= Duration::from_secs(2), "{gone_after:?}");
    // Heartbeats bring it back, with its load.
    assert!(client(&svc).heartbeat(&own, "gw-ghost", 0.25).unwrap());
    assert!(listed(&svc).contains(&"gw-ghost".to_string()));
    // Unknown gateways are told to register; a wrong key is refused.
    assert!(!client(&svc).heartbeat(&key, "gw-unknown", 0.0).unwrap());
    assert!(matches!(
        client(&svc).register("wrong", &ghost),
        Err(DirClientError::Refused { status: 401, .. })
    ));
}

#[test]
fn a_gateway_changes_only_its_own_registration() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let service_key = svc.service().directory.service_key().to_string();
    let discard: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mine = fake_gateway("mine", discard, discard);
    let my_key = client(&svc)
        .register(&service_key, &mine)
        .unwrap()
        .gateway_key;
    let my_key = my_key.expect("a key of its own");
    // A running gateway of the service, `gw-pop-near`, as another gateway
    // holding the service key and its own key would try to take it.
    let mut theirs = fake_gateway("pop-near", discard, discard);
    theirs.id = "gw-pop-near".into();
    let refused = |r: Result<_, DirClientError>, status: u16, what: &str| match r {
        Err(DirClientError::Refused { status: s, message }) if s == status => message,
        other => panic!("{what}: expected HTTP {status}, got {other:?}"),
    };
    let why = refused(
        client(&svc).register(&service_key, &theirs).map(|_| ()),
        409,
        "the service key re-registering a running gateway's id",
    );
    assert!(why.contains("another id"), "{why}");
    refused(
        client(&svc).register(&my_key, &theirs).map(|_| ()),
        401,
        "another gateway's key registering its id",
    );
    for key in [&service_key, &my_key] {
        refused(
            client(&svc).heartbeat(key, "gw-pop-near", 1.0).map(|_| ()),
            401,
            "a heartbeat for another gateway",
        );
        refused(
            client(&svc).deregister(key, "gw-pop-near"),
            401,
            "removing another gateway",
        );
    }
    // Still listed, at its own address.
    let (user, pw) = svc.credentials();
    let opened = open_session(&client(&svc), user, pw, None, false).unwrap();
    let near = opened.grant.gateways.iter().find(|g| g.id == "gw-pop-near");
    assert!(
        near.is_some_and(|g| g.address != theirs.address),
        "{:?}",
        opened.grant.gateways
    );
    // Its own registration it may change and remove.
    client(&svc).register(&my_key, &mine).unwrap();
    assert!(client(&svc).heartbeat(&my_key, "gw-mine", 0.5).unwrap());
    client(&svc).deregister(&my_key, "gw-mine").unwrap();
    assert!(!listed(&svc).contains(&"gw-mine".to_string()));
    // The key went with it: registering again takes the service key.
    refused(
        client(&svc).register(&my_key, &mine).map(|_| ()),
        401,
        "a key of a gateway that left",
    );
    assert!(
        client(&svc)
            .register(&service_key, &mine)
            .unwrap()
            .gateway_key
            .is_some_and(|k| k != my_key)
    );
}

fn connect_with(svc: &DemoService, token: Vec<u8>) -> Result<Headless, SessionError> {
    connect_trusting(svc, token, svc.ca())
}

fn connect_trusting(
    svc: &DemoService,
    token: Vec<u8>,
    ca: rustls::pki_types::CertificateDer<'static>,
) -> Result<Headless, SessionError> {
    connect_headless(headless_config(svc.gateway_addr(), ca, token))
}

fn claims(aud: &str, exp: u64, host: SocketAddr) -> SessionClaims {
    SessionClaims {
        sid: "t".into(),
        sub: "mallory".into(),
        tenant: "default".into(),
        desktop: "demo".into(),
        host: host.to_string(),
        backup: None,
        idle: None,
        pixels: None,
        grant: 0,
        app: false,
        aud: aud.into(),
        iss: ISSUER.into(),
        iat: unix_now(),
        exp,
    }
}

#[test]
fn gateways_refuse_forged_expired_and_misdirected_tokens() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let host = svc.host().unwrap().local_addr();
    let dir = &svc.service().directory;
    let (_, stranger) = Signer::generate().unwrap();
    let cases = [
        (Vec::new(), "no session token"),
        (
            stranger
                .sign(&claims(AUD_GATEWAY, unix_now() + 600, host))
                .unwrap()
                .into_bytes(),
            "signature",
        ),
        (
            dir.sign(&claims(AUD_GATEWAY, unix_now() - 3600, host))
                .unwrap()
                .into_bytes(),
            "expired",
        ),
        (
            dir.sign(&claims(AUD_DIRECTORY, unix_now() + 600, host))
                .unwrap()
                .into_bytes(),
            "audience",
        ),
        (b"garbage".to_vec(), "malformed"),
    ];
    for (token, reason) in cases {
        match connect_with(&svc, token) {
            Err(SessionError::Refused(r)) => assert!(r.contains(reason), "{r:?} lacks {reason:?}"),
            Err(e) => panic!("expected a refusal naming {reason:?}, got {e}"),
            Ok(_) => panic!("a bad token ({reason}) was accepted"),
        }
    }
    let refused = svc.service().pops[0]
        .gateway
        .stats()
        .refused_tokens
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 5);
    // The directory's own token works.
    let ok = connect_with(&svc, svc.token()).unwrap();
    ok.close().unwrap();
    // A gateway whose certificate another authority signed is not trusted.
    let other_ca = nephele_service::tls::generate(&["127.0.0.1".into()])
        .unwrap()
        .ca
        .unwrap();
    match connect_trusting(&svc, svc.token(), other_ca) {
        Err(e @ SessionError::Certificate { .. }) => {
            assert!(e.to_string().contains("is --ca the authority"), "{e}")
        }
        Err(e) => panic!("expected a certificate error, got {e}"),
        Ok(_) => panic!("an untrusted gateway was accepted"),
    }
}

#[test]
fn a_host_that_does_not_accept_the_token_refuses_and_the_client_is_told() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    // A host of this deployment (its link key) that checks tokens with
    // another directory's key: the gateway accepts the token, the host not.
    let (_, other) = Signer::generate().unwrap();
    let host = Host::start(HostConfig {
        link: svc.service().link_key().clone(),
        tokens: Some(other.verifier()),
        ..HostConfig::default()
    })
    .unwrap();
    let token = svc
        .service()
        .directory
        .sign(&SessionClaims {
            sid: "refused-by-its-host".into(),
            ..claims(AUD_GATEWAY, unix_now() + 600, host.local_addr())
        })
        .unwrap();
    match connect_with(&svc, token.into_bytes()) {
        Err(SessionError::Refused(r)) => assert!(r.contains("desktop host"), "{r}"),
        Err(e) => panic!("expected the host's refusal, got {e}"),
        Ok(_) => panic!("a host took a token signed by a directory it does not trust"),
    }
    let refused = host.stats().summary()["attaches_refused"].as_u64().unwrap();
    assert!(refused >= 1, "{}", host.stats().summary());
    assert_eq!(host.sessions(), 0);
}

#[test]
fn probes_without_a_valid_token_are_refused_and_never_amplified() {
    use nephele_protocol::probe::{ProbeReply, ProbeRequest, ProbeStatus};
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let probe_addr = svc.service().pops[0].gateway.probe_addr().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let token = svc.token();
    for (tok, want) in [
        (&token[..], ProbeStatus::Ok),
        (&b"forged"[..], ProbeStatus::Unauthorized),
    ] {
        let mut req = Vec::new();
        ProbeRequest {
            seq: 1,
            stamp_us: 42,
            token: tok,
        }
        .encode(&mut req);
        sock.send_to(&req, probe_addr).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert!(n <= req.len());
        let reply = ProbeReply::decode(&buf[..n]).unwrap();
        assert_eq!((reply.status, reply.stamp_us), (want, 42));
    }
    // A flood of forged probes gets only a bounded number of answers.
    let mut req = Vec::new();
    ProbeRequest {
        seq: 1,
        stamp_us: 1,
        token: b"forged",
    }
    .encode(&mut req);
    for _ in 0..500 {
        sock.send_to(&req, probe_addr).unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answers = 0;
    let mut buf = [0u8; 64];
    while sock.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    assert!(answers <= 40, "{answers} answers to 500 forged probes");
    // Short or foreign datagrams get nothing.
    sock.send_to(b"NPRQ", probe_addr).unwrap();
    assert!(sock.recv_from(&mut buf).is_err());
}

#[test]
fn a_chosen_gateway_that_does_not_answer_fails_over_to_the_next_pop() {
    use nephele_client::discovery::{Picture, connect_config};
    use nephele_protocol::probe::{ProbeReply, ProbeRequest, ProbeStatus};
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    // A gateway whose probe port answers at once (so it ranks first) but
    // whose QUIC port is dead: a half-failed node.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_quic = UdpSocket::bind("127.0.0.1:0").unwrap();
    let info = fake_gateway(
        "half-dead",
        dead_quic.local_addr().unwrap(),
        probe.local_addr().unwrap(),
    );
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let responder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = probe.recv_from(&mut buf)
                    && let Ok(req) = ProbeRequest::decode(&buf[..n])
                {
                    let reply = ProbeReply::to(&req, ProbeStatus::Ok, 0).encode();
                    let _ = probe.send_to(&reply, from);
                }
            }
        })
    };
    let key = svc.service().directory.service_key().to_string();
    client(&svc).register(&key, &info).unwrap();
    let (user, pw) = svc.credentials();
    let opened = open_session(&client(&svc), user, pw, None, false).unwrap();
    let choice = choose(&opened.grant, opened.listed_at, |_, _| {}).unwrap();
    assert_eq!(choice.best().unwrap().pop, "pop-half-dead");
    let cfg = connect_config(
        &choice,
        &opened.grant,
        vec![svc.ca()],
        Picture {
            width: 320,
            height: 240,
            fps: 30,
        },
    )
    .unwrap();
    assert_eq!(cfg.fallbacks.len(), 3);
    assert_eq!(cfg.fallbacks[0].route.pop, "pop-near");
    let session = connect_headless(cfg).expect("the next PoP took the session");
    let stats = session.stats.clone();
    assert!(wait_until(Duration::from_secs(5), || stats
        .frames_presented
        .load(std::sync::atomic::Ordering::Relaxed)
        > 5));
    assert_eq!(session.observed.status().route.pop, "pop-near");
    session.close().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    responder.join().unwrap();
}

#[test]
fn background_reprobes_offer_a_clearly_better_pop_and_stay_put_otherwise() {
    use nephele_client::discovery::Reprober;
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let (user, pw) = svc.credentials();
    let opened = open_session(&client(&svc), user, pw, None, false).unwrap();
    let index = |pop: &str| {
        opened
            .grant
            .gateways
            .iter()
            .position(|g| g.pop == pop)
            .unwrap()
    };
    let count = |s: &Stats| {
        s.pop_switch_offers
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Sitting on the nearest PoP: nothing is clearly better, ever.
    let on_near = Arc::new(Stats::default());
    let near = Reprober::start(
        opened.grant.clone(),
        index("pop-near"),
        Duration::from_millis(100),
        on_near.clone(),
    )
    .unwrap();
    // Sitting on the far one (60 ms against 5 ms): a move is offered, once,
    // after three re-probes agree.
    let on_far = Arc::new(Stats::default());
    let far = Reprober::start(
        opened.grant.clone(),
        index("pop-far"),
        Duration::from_millis(100),
        on_far.clone(),
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(10), || count(&on_far) >= 1));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&on_far), 1, "the offer is made once, then it stays");
    assert_eq!(count(&on_near), 0);
    drop((near, far));
}

#[test]
fn when_every_gateway_it_knew_is_gone_the_client_finds_one_that_joined() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let dir = client(&svc);
    let (user, pw) = svc.credentials();
    let opened = open_session(&dir, user, pw, None, false).unwrap();
    let choice = choose(&opened.grant, opened.listed_at, |_, _| {}).unwrap();
    // A gateway that joins later, with a certificate of its own.
    let identity = nephele_service::tls::generate(&["127.0.0.1".into()]).unwrap();
    let mut cfg = nephele_client::discovery::connect_config(
        &choice,
        &opened.grant,
        vec![svc.ca(), identity.ca.clone().unwrap()],
        nephele_client::discovery::Picture {
            width: 320,
            height: 240,
            fps: 30,
        },
    )
    .unwrap();
    cfg.audio = nephele_client::audio::AudioConfig::OFF;
    cfg.renew = Some(nephele_client::discovery::renewer(
        dir.clone(),
        opened.grant.resume_token.clone().unwrap(),
    ));
    let session = connect_headless(cfg).unwrap();
    let stats = session.stats.clone();
    let presented = || {
        stats
            .frames_presented
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(wait_until(Duration::from_secs(10), || presented() >= 10));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut gcfg = GatewayConfig::direct(
        loopback,
        loopback,
        identity,
        svc.service().link_key().clone(),
    );
    gcfg.host = None;
    gcfg.probe_listen = Some(loopback);
    gcfg.tokens = Some(svc.service().directory.verifier());
    let mut joined = Gateway::start(gcfg).unwrap();
    let info = GatewayInfo {
        id: "gw-joined".into(),
        pop: "pop-joined".into(),
        region: "test".into(),
        address: joined.local_addr().to_string(),
        probe_address: joined.probe_addr().unwrap().to_string(),
        server_name: "127.0.0.1".into(),
        load: 0.0,
    };
    let creds = Credentials {
        service_key: svc.service().directory.service_key().into(),
        key_file: None,
    };
    joined.register(dir.clone(), creds, info);
    assert!(wait_until(Duration::from_secs(10), || svc
        .service()
        .directory
        .live_gateways()
        == 4));
    // Every gateway of the session's list dies.
    for pop in &svc.service().pops {
        assert!(svc.service().kill_gateway(&pop.info.id));
    }
    let before = presented();
    assert!(
        wait_until(Duration::from_secs(15), || stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
            && presented() > before + 10),
        "no reconnect through the gateway that joined"
    );
    assert_eq!(session.observed.status().route.gateway_id, "gw-joined");
    session.close().unwrap();
    joined.close();
}

fn status_of<T: std::fmt::Debug>(r: Result<T, DirClientError>) -> u16 {
    match r {
        Err(DirClientError::Refused { status, .. }) => status,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_huge_or_impossible_user_name_costs_nothing() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let dir = client(&svc);
    let (_, pw) = svc.credentials();
    // 1.9 MB of name is not read: 413, or the connection is closed on a
    // sender still writing.
    let huge = "a".repeat(1_900_000);
    match dir.sign_in(&huge, pw) {
        Err(DirClientError::Refused { status: 413, .. } | DirClientError::Unreachable { .. }) => {}
        other => panic!("a 1.9 MB name was taken: {other:?}"),
    }
    // A name no account can have is refused like a wrong password, as
    // often as it is sent, and counted nowhere.
    let odd = "b".repeat(2000);
    for _ in 0..10 {
        assert_eq!(status_of(dir.sign_in(&odd, "guess")), 401);
    }
    assert_eq!(status_of(dir.sign_in("a b\n<script>", "guess")), 401);
    assert_eq!(svc.service().directory.sign_in_counts(), 0);
    // The owner is untouched.
    let (user, pw) = svc.credentials();
    dir.sign_in(user, pw).unwrap();
}

#[test]
fn simultaneous_guesses_are_counted_exactly() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let (user, _) = svc.credentials();
    let user = user.to_string();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..50)
            .map(|_| {
                let dir = client(&svc);
                let user = &user;
                s.spawn(move || {
                    (0..4)
                        .map(|_| status_of(dir.sign_in(user, "a guess")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    let held = statuses.iter().filter(|&&s| s == 429).count();
    // Five guesses were checked against the password; the other 195 were
    // held back without a hash.
    assert_eq!((checked, held), (5, 195), "{statuses:?}");
}

#[test]
fn reconnecting_through_the_directory_takes_the_session_from_the_client_holding_it() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let (dir, signed, desktop) = signed_in(&svc);
    let held = dir.create_session(&signed.token, &desktop, false).unwrap();
    let frames = |h: &Headless| {
        h.stats
            .frames_presented
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let first = connect_with(&svc, held.token.clone().into_bytes()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || frames(&first) >= 5));
    // The same person, from another run or device, goes back to it through
    // the catalog: a later grant, which the host gives the session to at
    // once; the first client is told why it ended.
    let back = dir.create_session(&signed.token, &desktop, true).unwrap();
    assert_eq!(back.session_id, held.session_id);
    let second = connect_with(&svc, back.token.clone().into_bytes()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || frames(&second) >= 5));
    match first.close() {
        Err(SessionError::Replaced) => {}
        other => panic!("the first client was not told it was replaced: {other:?}"),
    }
    // The first grant's token, copied, takes nothing back.
    match connect_with(&svc, held.token.into_bytes()) {
        Err(SessionError::InUse) => {}
        Err(e) => panic!("refused, but not as in use: {e}"),
        Ok(_) => panic!("an earlier grant took the session back"),
    }
    let before = frames(&second);
    assert!(wait_until(Duration::from_secs(5), || frames(&second) >= before + 10));
    second.close().unwrap();
}

#[test]
fn a_second_client_with_the_same_token_is_refused_while_the_first_holds_the_session() {
    let svc = DemoService::start(DemoOptions::default()).unwrap();
    let token = svc.token();
    let first = connect_with(&svc, token.clone()).unwrap();
    let presented = || {
        first
            .stats
            .frames_presented
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(wait_until(Duration::from_secs(10), || presented() >= 5));
    // A copy of the token, on another device: refused in words, and the
    // first client's picture goes on.
    match connect_with(&svc, token.clone()) {
        Err(SessionError::InUse) => {}
        Err(e) => panic!("refused, but not as in use: {e}"),
        Ok(_) => panic!("a second client took the session"),
    }
    let before = presented();
    assert!(wait_until(Duration::from_secs(5), || presented() >= before + 10));
    assert!(SessionError::InUse.to_string().contains("another device"));
    // Once the first has left, the desktop opens on the second.
    first.close().unwrap();
    let second = connect_with(&svc, token).unwrap();
    assert!(wait_until(Duration::from_secs(10), || second
        .stats
        .frames_presented
        .load(std::sync::atomic::Ordering::Relaxed)
        >= 5));
    second.close().unwrap();
}
