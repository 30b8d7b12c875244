//! The host's door: what reaches a host's UDP port without the deployment's
//! link key — an `Attach` with a made-up session id, the same datagram
//! replayed, one sealed with another key — is dropped unanswered, and the
//! same `Attach` sealed with the key opens a session. A host given the
//! directory's token key also wants, inside the seal, a session token
//! signed for it and for that session, and takes the session's backup and
//! picture cap from it. Replicated state counts only from a peer holding
//! the link key.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nephele_protocol::activity::IdlePolicy;
use nephele_protocol::wire::{Envelope, GoodbyeReason, Message};
use nephele_service::host::{Host, HostConfig};
use nephele_service::link::{LinkKey, MAX_SEALED, Opener, Sealer};
use nephele_service::token::{
    AUD_GATEWAY, ISSUER, SessionClaims, Signer, session_number, unix_now,
};

fn attach(session: u64) -> Vec<u8> {
    let mut b = Vec::new();
    Envelope {
        session,
        message: Message::Attach {
            width: 320,
            height: 180,
            fps: 30,
            policy: IdlePolicy::default(),
            backup: None,
            client: 1,
            codecs: Default::default(),
            token: &[],
        },
    }
    .encode(&mut b);
    b
}

/// `value` once it equals `want`, or its last value after two seconds: the
/// host's counters are mirrored just after it answers.
fn soon(want: u64, value: impl Fn() -> u64) -> u64 {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let v = value();
        if v == want || Instant::now() > until {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether anything comes back to `sock` within `wait`.
fn answered(sock: &UdpSocket, wait: Duration) -> bool {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf).is_ok()
}

#[test]
fn only_datagrams_sealed_with_the_link_key_reach_a_host() {
    let key = LinkKey::random();
    let host = Host::start(HostConfig {
        link: key.clone(),
        ..HostConfig::default()
    })
    .unwrap();
    let to = host.local_addr();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();

    // A plain Attach, as the attack in issue 19 sent it: no answer, no session.
    for session in 1..=32u64 {
        attacker.send_to(&attach(session), to).unwrap();
    }
    // Sealed with a key of its own.
    let stranger = Sealer::new(&LinkKey::random());
    let mut out = [0u8; MAX_SEALED];
    attacker
        .send_to(stranger.seal(&attach(99), &mut out).unwrap(), to)
        .unwrap();
    assert!(
        !answered(&attacker, Duration::from_secs(1)),
        "the host answered a stranger"
    );
    assert_eq!(host.sessions(), 0);
    let refused = host.stats().summary()["link_refused"].as_u64().unwrap();
    assert_eq!(refused, 33, "{}", host.stats().summary());

    // The same Attach sealed with the key: the host opens the session and
    // answers (its first picture, status, cursor).
    let gateway = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sealer = Sealer::new(&key);
    let sealed = sealer.seal(&attach(7), &mut out).unwrap().to_vec();
    gateway.send_to(&sealed, to).unwrap();
    assert!(
        answered(&gateway, Duration::from_secs(5)),
        "the host ignored its gateway"
    );
    assert_eq!(soon(1, || host.sessions()), 1);

    // That sealed datagram, seen on the wire and sent again from elsewhere,
    // is a replay: dropped, and nothing goes to the sender it claims.
    attacker.send_to(&sealed, to).unwrap();
    assert!(
        !answered(&attacker, Duration::from_millis(500)),
        "a replay was answered"
    );
    let refused = host.stats().summary()["link_refused"].as_u64().unwrap();
    assert_eq!(refused, 34);
    assert_eq!(host.sessions(), 1);
}

/// Sealed with the link key, as a gateway sends.
struct Gateway {
    sock: UdpSocket,
    sealer: Sealer,
    opener: Opener,
}

impl Gateway {
    fn new(key: &LinkKey) -> Self {
        Self {
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            sealer: Sealer::new(key),
            opener: Opener::new(key),
        }
    }

    fn send(&self, plain: &[u8], to: SocketAddr) {
        let mut out = [0u8; MAX_SEALED];
        let sealed = self.sealer.seal(plain, &mut out).unwrap();
        self.sock.send_to(sealed, to).unwrap();
    }

    /// The first message of the host's for `session` within `wait` that
    /// `pick` picks, as it picked it.
    fn heard<T>(
        &mut self,
        session: u64,
        wait: Duration,
        pick: impl Fn(&Message<'_>) -> Option<T>,
    ) -> Option<T> {
        let until = Instant::now() + wait;
        let mut buf = [0u8; MAX_SEALED];
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(n) = self.sock.recv(&mut buf) else {
                return None;
            };
            let Some(plain) = self.opener.open(&mut buf[..n]) else {
                continue;
            };
            if let Ok(env) = Envelope::decode(&buf[plain])
                && env.session == session
                && let Some(t) = pick(&env.message)
            {
                return Some(t);
            }
        }
        None
    }
}

fn token(signer: &Signer, sid: &str, host: SocketAddr, backup: SocketAddr, exp: u64) -> Vec<u8> {
    let now = unix_now();
    signer
        .sign(&SessionClaims {
            sid: sid.into(),
            sub: "alice".into(),
            tenant: "default".into(),
            desktop: "demo".into(),
            host: host.to_string(),
            backup: Some(backup.to_string()),
            idle: None,
            pixels: Some(640 * 360 * 30),
            grant: 0,
            app: false,
            aud: AUD_GATEWAY.into(),
            iss: ISSUER.into(),
            iat: now,
            exp,
        })
        .unwrap()
        .into_bytes()
}

fn attach_with(session: u64, backup: SocketAddr, client: u64, token: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    Envelope {
        session,
        message: Message::Attach {
            width: 1280,
            height: 720,
            fps: 60,
            policy: IdlePolicy::default(),
            backup: Some(backup),
            client,
            codecs: Default::default(),
            token,
        },
    }
    .encode(&mut b);
    b
}

/// A host with a fresh link key that checks session tokens signed by the
/// returned signer.
fn checking_tokens() -> (LinkKey, Signer, Host) {
    let key = LinkKey::random();
    let (_, signer) = Signer::generate().unwrap();
    let host = Host::start(HostConfig {
        link: key.clone(),
        tokens: Some(signer.verifier()),
        ..HostConfig::default()
    })
    .unwrap();
    (key, signer, host)
}

/// A host's refusal of a session token.
fn unauthorized(m: &Message<'_>) -> Option<()> {
    matches!(
        m,
        Message::Goodbye {
            reason: GoodbyeReason::Unauthorized
        }
    )
    .then_some(())
}

#[test]
fn a_host_attaches_only_sessions_signed_for_it_and_takes_their_backup_from_the_token() {
    let (key, signer, host) = checking_tokens();
    let me = host.local_addr();
    let mut gw = Gateway::new(&key);
    // Where the directory put the session's backup, and where a gateway
    // (holding the link key, or a datagram forged with it) would put it.
    let mut backup = Gateway::new(&key);
    let mut elsewhere = Gateway::new(&key);
    let (bk, evil) = (
        backup.sock.local_addr().unwrap(),
        elsewhere.sock.local_addr().unwrap(),
    );
    let later = unix_now() + 600;
    let sid = "3f1c0e5a9b7d4e2f8a6c1b0d9e8f7a6b";
    let session = session_number(sid);
    let attempts: [(&str, Vec<u8>); 5] = [
        ("no token", Vec::new()),
        ("a token not the directory's", {
            let (_, stranger) = Signer::generate().unwrap();
            token(&stranger, sid, me, bk, later)
        }),
        ("a token naming other hosts", {
            let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
            token(&signer, sid, other, other, later)
        }),
        (
            "a token for another session",
            token(&signer, "another-session", me, bk, later),
        ),
        (
            "an expired token",
            token(&signer, sid, me, bk, unix_now() - 3600),
        ),
    ];
    for (n, (what, t)) in attempts.iter().enumerate() {
        gw.send(&attach_with(session, evil, 1, t), me);
        assert!(
            gw.heard(session, Duration::from_secs(5), unauthorized)
                .is_some(),
            "{what}: not refused"
        );
        let counted = soon(n as u64 + 1, || {
            host.stats().summary()["attaches_refused"].as_u64().unwrap()
        });
        assert_eq!(counted, n as u64 + 1, "{what}");
        assert_eq!(host.sessions(), 0, "{what} opened a session");
    }

    // The directory's token for this host: welcomed, at the picture the
    // token allows (640×360×30 pixels a second) rather than the 1280×720
    // at 60 asked; the state goes to the token's backup, never to the
    // address the datagram named.
    let good = token(&signer, sid, me, bk, later);
    gw.send(&attach_with(session, evil, 1, &good), me);
    let welcomed = gw.heard(session, Duration::from_secs(5), |m| match m {
        Message::Welcome {
            width, height, fps, ..
        } => Some((*width, *height, *fps)),
        _ => None,
    });
    let (w, h, f) = welcomed.expect("the directory's token was not welcomed");
    assert!(
        u64::from(w) * u64::from(h) * u64::from(f) <= 640 * 360 * 30,
        "{w}×{h} at {f}"
    );
    assert_eq!(soon(1, || host.sessions()), 1);
    let synced = |m: &Message<'_>| matches!(m, Message::StateSync { .. }).then_some(());
    assert!(
        backup
            .heard(session, Duration::from_secs(5), synced)
            .is_some(),
        "the token's backup got no state"
    );
    assert!(
        elsewhere
            .heard(session, Duration::from_millis(500), synced)
            .is_none(),
        "the datagram's backup got the session's state"
    );

    // The session outlives its token: re-attached through another gateway
    // with the token its client connected with, now expired, it goes on.
    let old = token(&signer, sid, me, bk, unix_now() - 60);
    let mut gw2 = Gateway::new(&key);
    gw2.send(&attach_with(session, evil, 1, &old), me);
    let welcome = |m: &Message<'_>| matches!(m, Message::Welcome { .. }).then_some(());
    assert!(
        gw2.heard(session, Duration::from_secs(5), welcome)
            .is_some(),
        "a held session was refused its expired token"
    );
    assert_eq!(host.sessions(), 1);
}

fn state_sync(session: u64, typed: &str) -> Vec<u8> {
    // The demo desktop's replicated state: 28 bytes of pointer, wheel and
    // counters, then the typed text.
    let mut state = vec![0u8; 28];
    state.extend_from_slice(typed.as_bytes());
    let mut b = Vec::new();
    Envelope {
        session,
        message: Message::StateSync {
            input_seq: 1,
            version: 1,
            state: &state,
        },
    }
    .encode(&mut b);
    b
}

#[test]
fn replicated_state_is_taken_only_from_peers_holding_the_link_key() {
    let (key, signer, host) = checking_tokens();
    let me = host.local_addr();
    let primary: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // This host is the session's backup; the token its client holds has
    // expired, which a backup holding the session's state accepts (the
    // client connected before the primary failed) and a host without it
    // refuses.
    let sid = "9a8b7c6d5e4f30211203f4e5d6c7b8a9";
    let session = session_number(sid);
    let old = token(&signer, sid, primary, me, unix_now() - 60);
    let mut gw = Gateway::new(&key);

    // "Replicated state" planted in the clear and sealed with another key.
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let planted = state_sync(session, "planted by an attacker");
    attacker.send_to(&planted, me).unwrap();
    let stranger = Sealer::new(&LinkKey::random());
    let mut out = [0u8; MAX_SEALED];
    attacker
        .send_to(stranger.seal(&planted, &mut out).unwrap(), me)
        .unwrap();
    assert_eq!(
        soon(2, || host.stats().summary()["link_refused"]
            .as_u64()
            .unwrap()),
        2
    );
    gw.send(&attach_with(session, primary, 1, &old), me);
    assert!(
        gw.heard(session, Duration::from_secs(5), unauthorized)
            .is_some(),
        "planted state let an expired token in"
    );
    assert_eq!(host.sessions(), 0);
    assert!(host.typed().is_empty(), "{:?}", host.typed());

    // The same state from the session's primary, sealed with the link key:
    // kept, and the client's re-attach takes the session over with it.
    let peer = Gateway::new(&key);
    peer.send(&state_sync(session, "typed before the failure"), me);
    let welcome = |m: &Message<'_>| matches!(m, Message::Welcome { .. }).then_some(());
    let until = Instant::now() + Duration::from_secs(5);
    let taken = loop {
        // The state may still be on its way: the refused attach is retried.
        gw.send(&attach_with(session, primary, 1, &old), me);
        if gw
            .heard(session, Duration::from_millis(500), welcome)
            .is_some()
        {
            break true;
        }
        if Instant::now() > until {
            break false;
        }
    };
    assert!(taken, "the primary's sealed state was not taken over");
    assert_eq!(soon(1, || host.sessions()), 1);
    let typed = host.typed();
    assert!(
        typed.iter().any(|(_, t)| t == "typed before the failure"),
        "{typed:?}"
    );
}
