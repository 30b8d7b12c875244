//! The directory's front door under connections that never finish: too many
//! from one address, TLS never started, headers trickled a byte at a time,
//! keep-alive held open. Each is closed by a limit, and a real user from
//! another address signs in all along.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nephele_api::DirectoryClient;
use nephele_service::directory::{Directory, DirectoryConfig, Limits};
use nephele_service::tls::Ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PER_SOURCE: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(1);
/// A whole request's limit: a real sign-in (Argon2) fits well within.
const REQUEST: Duration = Duration::from_secs(3);
/// Far beyond the one-second limits, for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(8);

/// A connection from 127.0.0.2: another address than the real user's.
async fn from_attacker(addr: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    s.connect(addr).await.unwrap()
}

/// Waits for the server to close `s` (end of stream or reset); how long it took.
async fn closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(PATIENCE.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn connections_that_never_finish_are_closed_and_a_real_user_gets_in() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("nephele-front-door-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, _) = Ca::open(&dir.join("ca.pem")).unwrap();
    let identity = ca.issue(&["127.0.0.1".into()]).unwrap();
    let mut cfg = DirectoryConfig::new("127.0.0.1:0".parse().unwrap(), dir.join("state"), identity);
    cfg.limits = Limits {
        per_source: PER_SOURCE,
        handshake: TIMEOUT,
        header: TIMEOUT,
        request: REQUEST,
        ..Limits::default()
    };
    let directory = rt.block_on(Directory::start(cfg)).unwrap();
    directory.add_demo_user("alice@acme", "wonderland").unwrap();
    let addr = directory.local_addr();
    let user = DirectoryClient::new(&directory.url(), &[ca.cert().clone()]).unwrap();
    let sign_in = || user.sign_in("alice@acme", "wonderland");

    rt.block_on(async {
        // The attacker's address holds all its places with connections that
        // never start TLS; one more is closed at once.
        let mut held = Vec::new();
        for _ in 0..PER_SOURCE {
            held.push(from_attacker(addr).await);
        }
        let opened = Instant::now();
        let mut extra = from_attacker(addr).await;
        let shut = closed(&mut extra).await.expect("a connection past the limit stayed open");
        assert!(shut < TIMEOUT, "the extra connection waited {shut:?}");
        for s in &mut held {
            let mut b = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(10), s.read(&mut b)).await;
            assert!(read.is_err(), "a connection within the limit was closed at once");
        }
        // The real user, from another address, is not held back.
        tokio::task::block_in_place(sign_in).expect("sign-in while an address is at its limit");
        // The held ones are closed once the handshake's time is up.
        for s in &mut held {
            closed(s).await.expect("a connection without TLS stayed open");
            let t = opened.elapsed();
            assert!(t >= TIMEOUT / 2, "closed after {t:?}, before its time");
        }

        // With TLS: headers trickled a byte at a time, and a connection
        // left idle after its request, are both closed.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert().clone()).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut slow = connector
            .connect(name.clone(), from_attacker(addr).await)
            .await
            .unwrap();
        slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let t = Instant::now();
        let mut cut = false;
        while t.elapsed() < PATIENCE {
            // A byte every 200 ms: never a whole header, never silent long.
            if slow.write_all(b"a").await.is_err() || slow.flush().await.is_err() {
                cut = true;
                break;
            }
            let mut b = [0u8; 64];
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), slow.read(&mut b)).await {
                cut = matches!(r, Ok(0) | Err(_)) || cut;
                if cut {
                    break;
                }
                panic!("the server answered a request it never got whole");
            }
        }
        assert!(cut, "headers trickled for {:?} and the connection stayed open", t.elapsed());
        assert!(t.elapsed() >= TIMEOUT / 2, "cut after {:?}", t.elapsed());

        // A body trickled a byte at a time gets 408 once the request's time
        // is up.
        let mut body = connector
            .connect(name.clone(), from_attacker(addr).await)
            .await
            .unwrap();
        body.write_all(
            b"POST /v1/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        )
        .await
        .unwrap();
        let t = Instant::now();
        let mut answer = Vec::new();
        while t.elapsed() < PATIENCE && answer.is_empty() {
            if body.write_all(b" ").await.is_err() {
                break;
            }
            let mut b = [0u8; 64];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), body.read(&mut b)).await {
                answer.extend_from_slice(&b[..n]);
            }
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 408"),
            "a trickled body got {:?} after {:?}",
            String::from_utf8_lossy(&answer),
            t.elapsed()
        );
        assert!(t.elapsed() >= REQUEST / 2, "408 after {:?}", t.elapsed());

        let mut idle = connector.connect(name, from_attacker(addr).await).await.unwrap();
        idle.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 12];
        idle.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        closed(&mut idle).await.expect("an idle keep-alive connection stayed open");
    });
    // And the real user still signs in.
    sign_in().expect("sign-in after the attack");
    drop(directory);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
