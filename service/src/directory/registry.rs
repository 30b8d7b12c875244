//! The gateway registry's API: gateways register, heartbeat their load and
//! leave, each with a key of its own.
//!
//! A gateway first registers with the deployment's service key; the
//! directory then issues it a key for its id (kept hashed in the store) and
//! from then on that id's registration, heartbeats and departure need that
//! key. The service key registers an id only while no live gateway holds
//! it: one gateway (or anyone holding the service key) cannot overwrite or
//! remove another's registration, only take over an id whose gateway
//! stopped answering.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use nephele_api::directory::{GatewayInfo, Heartbeat, Registered};
use ring::rand::SecureRandom as _;

use super::store::{self, Roster};
use super::{ApiResult, Fail, Inner, bearer};

/// Equal bytes, compared in time that does not depend on where they differ.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn hash(key: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
        .as_ref()
        .to_vec()
}

/// A new gateway key: 256 random bits, hex. A plain hash suffices to keep
/// it (no password stretching): it cannot be guessed from its hash.
pub(super) fn new_key() -> Result<String, Fail> {
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Fail(StatusCode::INTERNAL_SERVER_ERROR, "randomness".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Who presented the request's key.
pub(super) enum Caller {
    /// The gateway the id was issued to.
    Owner,
    /// Someone holding the deployment's service key.
    Service,
}

pub(super) fn caller(
    inner: &Inner,
    headers: &HeaderMap,
    roster: Roster,
    id: &str,
) -> ApiResult<Caller> {
    let given = bearer(headers);
    if let Some(h) = inner.store.key_hash(roster, id)?
        && same(&hash(given), &h)
    {
        return Ok(Caller::Owner);
    }
    if same(given.as_bytes(), inner.service_key.as_bytes()) {
        return Ok(Caller::Service);
    }
    Err(Fail(
        StatusCode::UNAUTHORIZED,
        format!(
            "wrong key for {} `{id}`: register with the service key to be issued one",
            roster.what()
        ),
    ))
}

/// Whether a gateway with this id heartbeat within the registry's ttl.
fn is_live(inner: &Inner, id: &str) -> Result<bool, Fail> {
    Ok(inner
        .store
        .live_gateways(inner.live_since())?
        .iter()
        .any(|g| g.info.id == id))
}

pub(super) async fn register(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(info): Json<GatewayInfo>,
) -> ApiResult<Json<Registered>> {
    store::check_name("gateway id", &info.id)
        .map_err(|e| Fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let issued = match caller(&inner, &headers, Roster::Gateways, &info.id)? {
        Caller::Owner => None,
        Caller::Service if is_live(&inner, &info.id)? => {
            tracing::warn!(id = %info.id, address = %info.address, "registration refused: the id belongs to a live gateway");
            return Err(Fail(
                StatusCode::CONFLICT,
                format!(
                    "gateway id `{}` belongs to a gateway that is running: give this gateway another id, or stop that one",
                    info.id
                ),
            ));
        }
        Caller::Service => Some(issue_key(&inner, Roster::Gateways, &info.id)?),
    };
    inner.store.put_gateway(&info)?;
    tracing::info!(id = %info.id, pop = %info.pop, address = %info.address, new_key = issued.is_some(), "gateway registered");
    inner.store.gateway_seen(&info, crate::token::unix_ms())?;
    Ok(Json(Registered {
        heartbeat_ms: inner.heartbeat.as_millis() as u64,
        ttl_ms: inner.ttl().as_millis() as u64,
        public_key: inner.signer.public_key_b64(),
        gateway_key: issued,
    }))
}

/// A new key for member `id`, its hash recorded.
pub(super) fn issue_key(inner: &Inner, roster: Roster, id: &str) -> ApiResult<String> {
    let key = new_key()?;
    inner.store.put_key_hash(roster, id, &hash(&key))?;
    Ok(key)
}

/// The request's key must be the one issued to member `id`.
pub(super) fn owner(inner: &Inner, headers: &HeaderMap, roster: Roster, id: &str) -> ApiResult<()> {
    match caller(inner, headers, roster, id)? {
        Caller::Owner => Ok(()),
        Caller::Service => Err(not_owner(roster, id)),
    }
}

/// The answer to a key that is not the member's own.
pub(super) fn not_owner(roster: Roster, id: &str) -> Fail {
    Fail(
        StatusCode::UNAUTHORIZED,
        format!(
            "only {} `{id}` itself, with the key it was issued, may do this",
            roster.what()
        ),
    )
}

pub(super) async fn heartbeat(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(hb): Json<Heartbeat>,
) -> ApiResult<StatusCode> {
    // One read of the key: unknown ids are told to register, others must
    // present their own key.
    let Some(issued) = inner.store.key_hash(Roster::Gateways, &id)? else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "unknown gateway; register again".into(),
        ));
    };
    if !same(&hash(bearer(&headers)), &issued) {
        return Err(not_owner(Roster::Gateways, &id));
    }
    let load = if hb.load.is_finite() {
        hb.load.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let now = crate::token::unix_ms();
    if inner.store.gateway_beat(&id, load, now)? {
        return Ok(StatusCode::NO_CONTENT);
    }
    // Known from an earlier run of the directory: alive again.
    if let Some(mut info) = inner.store.gateways()?.into_iter().find(|g| g.id == id) {
        info.load = load;
        tracing::info!(id = %info.id, pop = %info.pop, "gateway known from an earlier run is back");
        inner.store.gateway_seen(&info, now)?;
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(Fail(
        StatusCode::NOT_FOUND,
        "unknown gateway; register again".into(),
    ))
}

pub(super) async fn deregister(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    owner(&inner, &headers, Roster::Gateways, &id)?;
    inner.store.remove_member(Roster::Gateways, &id)?;
    tracing::info!(%id, "gateway left");
    Ok(StatusCode::NO_CONTENT)
}
