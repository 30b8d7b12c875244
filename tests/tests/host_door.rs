//! The host's door: what reaches a host's UDP port without the deployment's
//! link key — an `Attach` with a made-up session id, the same datagram
//! replayed, one sealed with another key — is dropped unanswered, and the
//! same `Attach` sealed with the key opens a session.

use std::net::UdpSocket;
use std::time::Duration;

use nephele_protocol::activity::IdlePolicy;
use nephele_protocol::wire::{Envelope, Message};
use nephele_service::host::{Host, HostConfig};
use nephele_service::link::{LinkKey, MAX_SEALED, Sealer};

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
        },
    }
    .encode(&mut b);
    b
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
    assert_eq!(host.sessions(), 1);

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
