//! Load for `cargo xtask bench security`: a flood of QUIC Initial packets at
//! a gateway, RATE a second for SECONDS, from eight loopback addresses
//! (127.0.0.2 to 127.0.0.9), never answering what comes back — as a
//! flooder with spoofed sources would.
//!
//! `nephele-initials URL CA_PEM USER PASSWORD RATE SECONDS [TARGET]` signs
//! in to the directory at URL to learn a gateway's address (or floods
//! TARGET, a gateway's own socket behind the demo's delay relay), makes real Initials with
//! quinn's protocol state machine (each a new connection's ClientHello,
//! padded to 1200 bytes), prints `flooding` as it starts sending them and
//! then one JSON object: Initials sent, bytes sent, and bytes the gateway
//! sent back.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nephele_api::DirectoryClient;

/// Distinct Initials made up front and sent in turn.
const DISTINCT: usize = 20_000;
const SOURCES: u8 = 8;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (args, target) = match args.as_slice() {
        [head @ .., target] if args.len() == 7 => (head, Some(target)),
        all => (all, None),
    };
    let [url, ca, user, password, rate, seconds] = args else {
        bail!("usage: nephele-initials URL CA_PEM USER PASSWORD RATE SECONDS [TARGET]");
    };
    let rate: u64 = rate.parse().context("RATE")?;
    let run_for = Duration::from_secs_f64(seconds.parse().context("SECONDS")?);
    let roots = nephele_api::trust::read_cert_pem(std::path::Path::new(ca))?;
    let dir = DirectoryClient::new(url, &roots)?;
    let opened = nephele_client::discovery::open_session(&dir, user, password, None, false)?;
    let listed = &opened
        .grant
        .gateways
        .first()
        .context("the directory lists no gateway")?
        .address;
    let gateway: SocketAddr = target
        .unwrap_or(listed)
        .parse()
        .context("the gateway's address")?;
    let initials = nephele_e2e::quic_initials(gateway, &roots, DISTINCT)?;

    let socks: Vec<UdpSocket> = (2..2 + SOURCES)
        .map(|i| UdpSocket::bind(SocketAddr::from(([127, 0, 0, i], 0))))
        .collect::<Result<_, _>>()
        .context("binding the flood's sockets")?;
    let stop = Arc::new(AtomicBool::new(false));
    let back = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = socks
        .iter()
        .map(|s| {
            let s = s.try_clone()?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            let (stop, back) = (stop.clone(), back.clone());
            Ok(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = s.recv(&mut buf) {
                        back.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }))
        })
        .collect::<Result<_, std::io::Error>>()?;

    // The one line before the JSON: the flood is on from here.
    println!("flooding");
    let start = Instant::now();
    let (mut sent, mut bytes) = (0u64, 0u64);
    while start.elapsed() < run_for {
        // As many as are due by now, in 1 ms steps.
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let i = sent as usize;
            let d = &initials[i % initials.len()];
            if socks[i % socks.len()].send_to(d, gateway).is_ok() {
                bytes += d.len() as u64;
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // What the last Initials draw comes back within a moment.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    let back = back.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "initials": sent,
            "bytes_sent": bytes,
            "bytes_back": back,
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
