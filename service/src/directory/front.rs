//! The directory's HTTPS front door: TCP accepted, TLS completed off the
//! accept path, HTTP/1.1 served by hyper — with the limits an endpoint on
//! the open network needs, so slow or numerous connections cannot keep
//! real users out:
//!
//! - at most [`Limits::connections`] connections at once, and
//!   [`Limits::per_source`] from one address (further ones are closed at
//!   once, before any TLS work);
//! - the TLS handshake within [`Limits::handshake`];
//! - each request's headers (and, between requests, the next one's) within
//!   [`Limits::header`]: a connection trickling its headers or sitting idle
//!   is closed;
//! - each request, body and answer included, within [`Limits::request`]
//!   (408 after).
//!
//! `axum::serve` has no timers; hyper's own connection builder has them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// What one client, and all of them together, may hold of the directory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, all sources.
    pub connections: usize,
    /// Connections open at once from one address.
    pub per_source: usize,
    /// Time for the TLS handshake.
    pub handshake: Duration,
    /// Time for a request's headers to arrive, counted from when the
    /// connection is ready for the request (so also the idle time allowed
    /// between requests).
    pub header: Duration,
    /// Time for a whole request, body and answer included.
    pub request: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Far below the usual 1024 descriptors of a service's soft limit
            // once the database, logs and sockets of the rest are counted.
            connections: 768,
            // A building behind one NAT, with clients, kiosks and gateways.
            per_source: 64,
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(10),
            // Sign-in waits for Argon2 behind a queue: a few seconds at worst.
            request: Duration::from_secs(30),
        }
    }
}

/// The address a request came from, for per-source limits.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Open connections, all and per address.
#[derive(Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One admitted connection's place; given back when dropped.
struct Place {
    open: Arc<Mutex<Open>>,
    source: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// Takes a place for a connection from `source`, if the limits leave one.
fn admit(open: &Arc<Mutex<Open>>, limits: &Limits, source: IpAddr) -> Option<Place> {
    let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
    let from_source = o.by_source.get(&source).copied().unwrap_or(0);
    if o.total >= limits.connections || from_source >= limits.per_source {
        return None;
    }
    o.total += 1;
    *o.by_source.entry(source).or_insert(0) += 1;
    Some(Place {
        open: open.clone(),
        source,
    })
}

/// Serves `app` on `tcp` over TLS within `limits` until `stop` fires;
/// connections then finish the request they are in.
pub fn serve(
    tcp: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        within(limits.request, req, next)
    }));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let open = Arc::new(Mutex::new(Open::default()));
    let (stopping_tx, stopping) = watch::channel(false);
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut refused = 0u64;
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => break,
                a = tcp.accept() => a,
            };
            let (sock, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "directory accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(place) = admit(&open, &limits, peer.ip()) else {
                refused += 1;
                // Said once, then every thousandth: a flood must not fill the log.
                if refused % 1000 == 1 {
                    tracing::warn!(%peer, refused, "connection refused: too many open");
                }
                continue;
            };
            let _ = sock.set_nodelay(true);
            let (acceptor, app, stopping) = (acceptor.clone(), app.clone(), stopping.clone());
            tokio::spawn(async move {
                let _place = place;
                connection(sock, peer, acceptor, app, limits, stopping).await;
            });
        }
        let _ = stopping_tx.send(true);
    })
}

/// One connection: the handshake, then requests until it closes, times out
/// or the directory stops.
async fn connection(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(sock)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(Peer(peer)));
        let mut app = app.clone();
        async move {
            // A Router is always ready and never fails.
            tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = async {
            // The guard the wait returns must not live across an await.
            let _ = stopping.wait_for(|s| *s).await;
        } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// Runs a request within `limit`; 408 after.
async fn within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long to arrive; send it again",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_limited_per_source_and_in_all_and_given_back() {
        let limits = Limits {
            connections: 3,
            per_source: 2,
            ..Limits::default()
        };
        let open = Arc::new(Mutex::new(Open::default()));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let a1 = admit(&open, &limits, a).unwrap();
        let _a2 = admit(&open, &limits, a).unwrap();
        assert!(
            admit(&open, &limits, a).is_none(),
            "a third from one source"
        );
        let b1 = admit(&open, &limits, b).unwrap();
        assert!(admit(&open, &limits, b).is_none(), "a fourth in all");
        drop(b1);
        let _b1 = admit(&open, &limits, b).unwrap();
        drop(a1);
        assert!(admit(&open, &limits, a).is_some());
        assert!(open.lock().unwrap().by_source.len() <= 2);
    }
}
