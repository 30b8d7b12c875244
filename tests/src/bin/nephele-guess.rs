//! Load for `cargo xtask bench security`: a real user signing in back to
//! back while ATTACKERS tasks guess passwords of made-up accounts, each from
//! its own loopback address (127.0.0.2 and up), for SECONDS.
//!
//! The real user signed in once before (so the device is known to the
//! account); USER `-` leaves the real user out (the bench runs the real user
//! as a process of its own, as a person on another machine would be).
//! `nephele-guess URL CA_PEM USER PASSWORD ATTACKERS SECONDS` prints
//! `ready` once the real user has signed in the first time, then one JSON
//! object: the real user's sign-ins (count, p50 and p99 in ms, the
//! refusals by status), the guesses sent and their answers by status, and
//! the password checks the directory completed a second (the real user's
//! sign-ins plus the guesses it judged wrong).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nephele_api::{DirClientError, DirectoryClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, ca, user, password, attackers, seconds] = args.as_slice() else {
        bail!("usage: nephele-guess URL CA_PEM USER PASSWORD ATTACKERS SECONDS");
    };
    let attackers: usize = attackers.parse().context("ATTACKERS")?;
    let run_for = Duration::from_secs_f64(seconds.parse().context("SECONDS")?);
    let roots = nephele_api::trust::read_cert_pem(std::path::Path::new(ca))?;
    let addr: SocketAddr = url
        .trim_start_matches("https://")
        .parse()
        .context("the URL's address")?;
    // The real user has signed in from this device before (its device
    // token is what a returning user holds).
    let real_user = user != "-";
    let dir = DirectoryClient::new(url, &roots)?;
    if real_user {
        dir.sign_in(user, password)
            .context("the real user's first sign-in")?;
    }
    // The bench starts the guessers once the real user's device is known.
    println!("ready");
    std::io::Write::flush(&mut std::io::stdout())?;
    let rt = tokio::runtime::Runtime::new()?;
    let deadline = Instant::now() + run_for;
    let answers = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
    let mut tasks = Vec::new();
    {
        let _guard = rt.enter();
        let tls = tls(&roots)?;
        for i in 0..attackers {
            let (tls, answers) = (tls.clone(), answers.clone());
            tasks.push(rt.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    // One connection kept alive for as long as it lasts, as
                    // a guesser would: the cost is in the password checks.
                    let Ok(mut conn) = connect(&tls, addr, i).await else {
                        *answers.lock().unwrap().entry(0).or_insert(0) += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    while Instant::now() < deadline {
                        n += 1;
                        let Ok(status) = guess(&mut conn, addr, i, n).await else {
                            break;
                        };
                        *answers.lock().unwrap().entry(status).or_insert(0) += 1;
                    }
                }
            }));
        }
    }
    // The real user, from 127.0.0.1, one sign-in after another.
    let start = Instant::now();
    let (mut took, mut refused) = (Vec::new(), BTreeMap::<String, u64>::new());
    if !real_user {
        std::thread::sleep(deadline.saturating_duration_since(start));
    }
    while real_user && Instant::now() < deadline {
        let t = Instant::now();
        match dir.sign_in(user, password) {
            Ok(_) => took.push(t.elapsed().as_secs_f64() * 1000.0),
            Err(DirClientError::Refused { status, .. }) => {
                *refused.entry(status.to_string()).or_insert(0) += 1;
            }
            Err(e) => *refused.entry(e.to_string()).or_insert(0) += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = rt.block_on(t);
    }
    let answers = answers.lock().unwrap().clone();
    let checked = took.len() as u64 + answers.get(&401).copied().unwrap_or(0);
    took.sort_by(f64::total_cmp);
    let q = |p: f64| {
        took.get(((took.len() as f64 * p) as usize).min(took.len().saturating_sub(1)))
            .copied()
    };
    println!(
        "{}",
        serde_json::json!({
            "real": {"signed_in": took.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "refused": refused},
            "guesses": answers.values().sum::<u64>(),
            "guess_answers": answers.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "checks_per_s": checked as f64 / elapsed,
        })
    );
    Ok(())
}

fn tls(roots: &[rustls::pki_types::CertificateDer<'static>]) -> Result<tokio_rustls::TlsConnector> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone())?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

type Conn = tokio::io::BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A TLS connection from attacker `i`'s own address.
async fn connect(tls: &tokio_rustls::TlsConnector, to: SocketAddr, i: usize) -> Result<Conn> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    let from = std::net::Ipv4Addr::new(127, 0, (2 + i / 250) as u8, (2 + i % 250) as u8);
    sock.bind(SocketAddr::from((from, 0)))?;
    let tcp = sock.connect(to).await?;
    let name = rustls::pki_types::ServerName::try_from(to.ip().to_string())?;
    Ok(tokio::io::BufReader::new(tls.connect(name, tcp).await?))
}

/// One wrong guess on `conn`; the answer's status.
async fn guess(conn: &mut Conn, to: SocketAddr, i: usize, n: u64) -> Result<u16> {
    use tokio::io::AsyncBufReadExt;
    let body = format!(r#"{{"user":"guess{i}x{n}","password":"wrong"}}"#);
    let req = format!(
        "POST /v1/signin HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(req.as_bytes()).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line.get(9..12).context("a status line")?.parse()?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("closed");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse()?;
        }
    }
    let mut skip = vec![0u8; length];
    conn.read_exact(&mut skip).await?;
    Ok(status)
}
