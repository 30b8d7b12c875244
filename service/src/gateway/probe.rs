//! The latency probe responder: stateless, never a reply larger than its
//! request, and only in small measure to probes without a valid token (a
//! session token, or the user token a client measures with before it opens
//! a session; signature checks and refusals are what an attacker can make
//! a gateway spend: both are bounded).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::net::UdpSocket;

use super::{GatewayStats, load_of};
use crate::token::Verifier;

/// Verified tokens remembered by the probe responder: a probe series carries
/// the same token, so each is checked once, not per probe.
const TOKEN_CACHE: usize = 4096;

/// Answers latency probes: statelessly, never with more bytes than asked,
/// and only in small measure to probes without a valid session token.
pub(super) async fn answer_probes(
    sock: UdpSocket,
    tokens: Option<Verifier>,
    stats: Arc<GatewayStats>,
    capacity: u32,
) {
    use nephele_protocol::probe::{ProbeReply, ProbeRequest, ProbeStatus, RateLimiter};
    let mut buf = vec![0u8; nephele_protocol::MAX_DATAGRAM + 1];
    let hasher = std::collections::hash_map::RandomState::new();
    let mut verified: HashMap<u64, u64> = HashMap::new();
    // Signature checks of unseen tokens, and refusals, are what an attacker
    // can make us spend: both are bounded.
    let mut verify_budget = RateLimiter::new(500.0, 100);
    let mut refusal_budget = RateLimiter::new(20.0, 20);
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(req) = ProbeRequest::decode(&buf[..n]) else {
            continue;
        };
        let now = Instant::now();
        let status = match &tokens {
            None => ProbeStatus::Ok,
            Some(v) => {
                let key = std::hash::BuildHasher::hash_one(&hasher, req.token);
                let unix = crate::token::unix_now();
                match verified.get(&key) {
                    Some(&exp) if exp > unix => ProbeStatus::Ok,
                    _ if !verify_budget.allow(now) => continue,
                    _ => match probe_token_expiry(v, req.token) {
                        Ok(exp) => {
                            if verified.len() >= TOKEN_CACHE {
                                verified.retain(|_, exp| *exp > unix);
                                if verified.len() >= TOKEN_CACHE {
                                    verified.clear();
                                }
                            }
                            verified.insert(key, exp);
                            ProbeStatus::Ok
                        }
                        Err(_) => ProbeStatus::Unauthorized,
                    },
                }
            }
        };
        if status == ProbeStatus::Unauthorized && !refusal_budget.allow(now) {
            continue;
        }
        let load = (load_of(&stats, capacity) * 1000.0) as u16;
        let reply = ProbeReply::to(&req, status, load).encode();
        debug_assert!(reply.len() <= n);
        if sock.send_to(&reply, from).await.is_ok() && status == ProbeStatus::Ok {
            stats.probes_answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The expiry of a token that may probe: a session token, or a signed-in
/// user's token (a client measures the PoPs before it opens a session).
fn probe_token_expiry(v: &Verifier, token: &[u8]) -> Result<u64, crate::token::TokenError> {
    match v.session(token) {
        Ok(c) => Ok(c.exp),
        Err(e) => match std::str::from_utf8(token) {
            Ok(t) => v.user(t).map(|c| c.exp),
            Err(_) => Err(e),
        },
    }
}
