//! The gateway's door for new QUIC connections: which get a handshake,
//! which must first prove their address (a QUIC Retry), and how long a
//! handshake may take.
//!
//! A flood of Initials (forged sources never answer) would otherwise cost
//! a TLS handshake each and a half-open connection retransmitting until it
//! falls idle, on the threads that relay the live sessions. So: above
//! [`GatewayConfig::retry_above`](super::GatewayConfig) new connections a
//! second, or with [`MAX_HANDSHAKING`] handshakes under way, an unproven
//! address gets a Retry (one small packet, no state); a proven one beyond
//! twice that many handshakes is refused; and a handshake not done within
//! [`HANDSHAKE_DEADLINE`] is dropped even if its peer keeps it from falling
//! idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::{GatewayStats, relay, routing::Route};

/// Handshakes under way above which unproven addresses get a Retry.
pub const MAX_HANDSHAKING: usize = 32;

/// A handshake not done this long after its first Initial is dropped: far
/// beyond a few round trips of any real client, well short of the idle
/// timeout a half-open connection would otherwise hold.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(4);

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Complete the handshake.
    Handshake,
    /// Ask the client to prove its address first.
    Retry,
    /// Refuse: too many handshakes even from proven addresses.
    Refuse,
}

/// The door's counts: new connections this second, handshakes under way.
#[derive(Debug)]
pub struct Door {
    retry_above: u32,
    second: (Instant, u32),
    handshaking: Arc<AtomicUsize>,
}

impl Door {
    /// A door that asks for Retry above `retry_above` new connections a second.
    pub fn new(retry_above: u32, now: Instant) -> Self {
        Self {
            retry_above,
            second: (now, 0),
            handshaking: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The decision for a new connection at `now`, its address proven or not.
    pub fn decide(&mut self, validated: bool, now: Instant) -> Decision {
        if now.duration_since(self.second.0) >= Duration::from_secs(1) {
            self.second = (now, 0);
        }
        self.second.1 = self.second.1.saturating_add(1);
        let busy = self.handshaking.load(Ordering::Relaxed);
        if validated {
            if busy >= 2 * MAX_HANDSHAKING {
                return Decision::Refuse;
            }
            return Decision::Handshake;
        }
        if self.second.1 > self.retry_above || busy >= MAX_HANDSHAKING {
            return Decision::Retry;
        }
        Decision::Handshake
    }

    /// Counts a handshake under way until the returned guard is dropped.
    pub fn handshaking(&self) -> Handshaking {
        self.handshaking.fetch_add(1, Ordering::Relaxed);
        Handshaking(self.handshaking.clone())
    }
}

/// A handshake under way, counted while it lives.
#[derive(Debug)]
pub struct Handshaking(Arc<AtomicUsize>);

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections from `ep` through `door` and serves each.
pub(super) async fn accept(
    ep: quinn::Endpoint,
    mut door: Door,
    route: Arc<Route>,
    st: Arc<GatewayStats>,
) {
    while let Some(incoming) = ep.accept().await {
        match door.decide(incoming.remote_address_validated(), Instant::now()) {
            Decision::Retry => {
                st.retries.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = incoming.retry() {
                    e.into_incoming().ignore();
                }
                continue;
            }
            Decision::Refuse => {
                incoming.refuse();
                continue;
            }
            Decision::Handshake => {}
        }
        let counted = door.handshaking();
        let st = st.clone();
        let route = route.clone();
        let span = tracing::info_span!("client", remote = %incoming.remote_address());
        tokio::spawn(
            async move {
                let handshake = tokio::time::timeout(HANDSHAKE_DEADLINE, incoming).await;
                drop(counted);
                match handshake {
                    Ok(Ok(conn)) => {
                        st.connections.fetch_add(1, Ordering::Relaxed);
                        // Counted as load once its token is accepted.
                        let res = relay::serve(conn, &route, st.clone()).await;
                        if let Err(e) = res {
                            tracing::info!(error = %e, "client session ended");
                        }
                    }
                    Ok(Err(e)) => {
                        st.handshakes_unfinished.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(error = %e, "handshake failed");
                    }
                    // Dropping the handshake closes the connection.
                    Err(_) => {
                        st.handshakes_unfinished.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("handshake not done within the deadline");
                    }
                }
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_meets_retry_and_proven_clients_get_through_until_far_too_many() {
        let t0 = Instant::now();
        let mut door = Door::new(5, t0);
        let first: Vec<_> = (0..8).map(|_| door.decide(false, t0)).collect();
        assert_eq!(first[..5], [Decision::Handshake; 5]);
        assert_eq!(first[5..], [Decision::Retry; 3]);
        // A proven address is let in while the rate is high.
        assert_eq!(door.decide(true, t0), Decision::Handshake);
        // A new second starts afresh.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(door.decide(false, t1), Decision::Handshake);
        // Handshakes under way hold the door half shut, then shut.
        let mut door = Door::new(u32::MAX, t0);
        let held: Vec<_> = (0..MAX_HANDSHAKING).map(|_| door.handshaking()).collect();
        assert_eq!(door.decide(false, t0), Decision::Retry);
        assert_eq!(door.decide(true, t0), Decision::Handshake);
        let more: Vec<_> = (0..MAX_HANDSHAKING).map(|_| door.handshaking()).collect();
        assert_eq!(door.decide(true, t0), Decision::Refuse);
        drop((held, more));
        assert_eq!(door.decide(false, t0), Decision::Handshake);
    }
}
