//! The gateway's door: a QUIC connection that never says `Hello` is closed
//! at the deadline and never counts as load; when new connections come
//! faster than the Retry threshold, clients prove their address first and
//! still get their session; handshakes that never finish are few at a time
//! and end.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nephele_e2e::{connect_headless, headless_config, wait_until};
use nephele_protocol::gateway::HELLO_DEADLINE;
use nephele_service::gateway::{Gateway, GatewayConfig, HANDSHAKE_DEADLINE, MAX_HANDSHAKING};
use nephele_service::host::{Host, HostConfig};
use nephele_service::link::LinkKey;
use nephele_service::tls::Ca;

/// A fresh scratch directory for `name`, a CA kept there and a gateway
/// certificate it issued for `server_name`.
fn scratch_ca(
    name: &str,
    server_name: &str,
) -> (
    std::path::PathBuf,
    Ca,
    nephele_service::tls::GatewayIdentity,
) {
    let dir = std::env::temp_dir().join(format!("nephele-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, _) = Ca::open(&dir.join("ca.pem")).unwrap();
    let identity = ca.issue(&[server_name.into()]).unwrap();
    (dir, ca, identity)
}

#[test]
fn silent_connections_are_closed_and_a_flood_meets_retry_not_a_handshake() {
    let (dir, ca, identity) = scratch_ca("gateway-door", "127.0.0.1");
    let link = LinkKey::random();
    let host = Host::start(HostConfig {
        link: link.clone(),
        ..HostConfig::default()
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut cfg = GatewayConfig::direct(loopback, host.local_addr(), identity, link);
    // Every new connection counts as over the rate: each must answer a Retry.
    cfg.retry_above = 0;
    let gw = Gateway::start(cfg).unwrap();
    let stats = gw.stats();

    // A QUIC connection that opens nothing and says nothing.
    let client_cfg = nephele_api::trust::quic_client_config(&[ca.cert().clone()]).unwrap();
    let silent = rt.block_on(async {
        let mut ep = quinn::Endpoint::client(loopback).unwrap();
        ep.set_default_client_config(client_cfg);
        let conn = ep
            .connect(gw.local_addr(), "127.0.0.1")
            .unwrap()
            .await
            .expect("the handshake, after a Retry");
        (ep, conn)
    });
    assert!(
        stats.retries.load(Ordering::Relaxed) >= 1,
        "no Retry was asked for"
    );
    let opened = Instant::now();
    assert_eq!(
        gw.load(),
        0.0,
        "a connection without a valid Hello counted as load"
    );
    let closed =
        rt.block_on(async { tokio::time::timeout(HELLO_DEADLINE * 3, silent.1.closed()).await });
    assert!(
        closed.is_ok(),
        "a silent connection was held past the deadline"
    );
    assert!(
        opened.elapsed() >= HELLO_DEADLINE / 2,
        "closed after {:?}",
        opened.elapsed()
    );

    // A real client still gets its session through the Retry.
    let session = connect_headless(headless_config(
        gw.local_addr(),
        ca.cert().clone(),
        Vec::new(),
    ))
    .unwrap();
    let presented = || session.stats.frames_presented.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(10), || presented() >= 5));
    assert!(gw.load() > 0.0, "a session with a Hello is load");
    session.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn handshakes_that_never_finish_are_few_at_a_time_and_end() {
    let (dir, ca, identity) = scratch_ca("half-open", "localhost");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let discard = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut cfg = GatewayConfig::direct(loopback, discard, identity, LinkKey::random());
    // No rate threshold: only the handshakes under way close the door.
    cfg.retry_above = u32::MAX;
    let gw = Gateway::start(cfg).unwrap();
    let stats = gw.stats();
    let initials =
        nephele_e2e::quic_initials(gw.local_addr(), &[ca.cert().clone()], MAX_HANDSHAKING + 2)
            .unwrap();
    // Connection attempts that never answer the gateway's handshake, as a
    // flood from forged addresses would send.
    let flood = std::net::UdpSocket::bind(loopback).unwrap();
    for d in &initials[..MAX_HANDSHAKING] {
        flood.send_to(d, gw.local_addr()).unwrap();
    }
    // With that many under way, the next must prove its address first
    // (the door decides in arrival order, counting each handshake at once).
    flood
        .send_to(&initials[MAX_HANDSHAKING], gw.local_addr())
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || stats
            .retries
            .load(Ordering::Relaxed)
            == 1),
        "no Retry with {MAX_HANDSHAKING} handshakes under way"
    );
    // The unfinished handshakes end (their peers silent: the idle timeout,
    // well within the deadline); then a new attempt gets a handshake again.
    assert!(
        wait_until(HANDSHAKE_DEADLINE + Duration::from_secs(2), || stats
            .handshakes_unfinished
            .load(Ordering::Relaxed)
            == MAX_HANDSHAKING as u64),
        "{} of {MAX_HANDSHAKING} half-open handshakes ended",
        stats.handshakes_unfinished.load(Ordering::Relaxed)
    );
    flood
        .send_to(&initials[MAX_HANDSHAKING + 1], gw.local_addr())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stats.retries.load(Ordering::Relaxed),
        1,
        "the door stayed shut"
    );
    let _ = std::fs::remove_dir_all(dir);
}
