//! Sessions as users see them: the catalog (with the sessions left open
//! and the administrators' notices), creating a session on a host the
//! directory places it on, resuming it with its resume token, and ending
//! it at log-off.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use nephele_api::directory::{
    Catalog, CreateSession, GatewayInfo, Notice, OpenSession, ResumeSession, SessionGrant,
};

use super::store::{self, SessionRecord};
use super::{ApiResult, Fail, Inner, user_of};
use crate::token::{ResumeClaims, SessionClaims, TokenError};
use nephele_api::admin::EntryKind;

pub(super) fn disabled() -> Fail {
    Fail(
        StatusCode::FORBIDDEN,
        "this account is disabled; ask your administrator".into(),
    )
}

fn user_record(inner: &Inner, claims: &crate::token::UserClaims) -> ApiResult<store::UserRecord> {
    // The account may have been removed or disabled since the token was
    // issued.
    let (t, u) = (claims.tenant.as_str(), claims.sub.as_str());
    let rec = inner.store.user(t, u)?.ok_or_else(|| {
        Fail(
            StatusCode::UNAUTHORIZED,
            "this account no longer exists".into(),
        )
    })?;
    if rec.disabled {
        return Err(disabled());
    }
    Ok(rec)
}

pub(super) async fn catalog(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
) -> ApiResult<Json<Catalog>> {
    let claims = user_of(&inner, &headers)?;
    let rec = user_record(&inner, &claims)?;
    let mut desktops = inner.store.catalog(&claims.tenant, &rec.desktops)?;
    let open = inner
        .store
        .open_sessions(&claims.tenant, &claims.sub, crate::token::unix_now())?;
    for d in &mut desktops {
        d.open = open
            .iter()
            .find(|s| s.desktop == d.id)
            .map(|s| OpenSession {
                since_unix: s.created,
                until_unix: s.expires,
            });
    }
    let notices = inner
        .store
        .notices_for(&claims.tenant, &claims.sub, crate::token::unix_now())?
        .into_iter()
        .map(|n| Notice {
            id: n.id,
            message: n.message,
            since_unix: n.since,
        })
        .collect();
    Ok(Json(Catalog {
        desktops,
        notices,
        gateways: inner.live_gateways()?,
    }))
}

pub(super) async fn create_session(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(req): Json<CreateSession>,
) -> ApiResult<Json<SessionGrant>> {
    let claims = user_of(&inner, &headers)?;
    let rec = user_record(&inner, &claims)?;
    if !rec.desktops.contains(&req.desktop) {
        return Err(Fail(
            StatusCode::FORBIDDEN,
            format!("you may not open `{}`", req.desktop),
        ));
    }
    let gateways = inner.live_gateways()?;
    if gateways.is_empty() {
        return Err(Fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "no gateway is available right now; try again shortly".into(),
        ));
    }
    // Back to the session the user left open on this desktop, when asked:
    // the same session on its host (which keeps a session whose client
    // went away for a while), and the resume token held before is spent.
    if req.reconnect {
        let now = crate::token::unix_now();
        let open = inner
            .store
            .open_sessions(&claims.tenant, &claims.sub, now)?;
        if let Some(s) = open.into_iter().find(|s| s.desktop == req.desktop)
            && let Some(s) = inner.store.use_resume(&s.id, s.resume_generation)?
        {
            tracing::info!(session = %s.id, user = %claims.sub, host = %s.host, "session reconnected from the catalog");
            return Ok(Json(issue(&inner, &s, gateways)?));
        }
    }
    at_cap(&inner, &claims.tenant, &req.desktop)?;
    // A host of the nearest site with room, and a backup on another host,
    // allocated at session start so the primary can replicate the
    // session's state to it.
    let id = session_id();
    let Some(placed) = super::hosts::place(&inner, &id, &req.near)? else {
        return Err(Fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "no desktop host has room right now; try again in a few minutes".into(),
        ));
    };
    let (host, backup) = (
        placed.host.address.clone(),
        placed.backup.map(|b| b.address),
    );
    let now = crate::token::unix_now();
    let session = SessionRecord {
        id: id.clone(),
        tenant: claims.tenant.clone(),
        user: claims.sub.clone(),
        desktop: req.desktop.clone(),
        host: host.clone(),
        backup,
        created: now,
        created_ms: crate::token::unix_ms(),
        // The session outlives its first token: its resume token may
        // fetch fresh ones until then.
        expires: now + inner.resume_ttl.as_secs(),
        resume_generation: 0,
    };
    inner.store.put_session(&session)?;
    tracing::info!(session = %id, user = %claims.sub, %host, site = %placed.host.site, gateways = gateways.len(), "session created");
    Ok(Json(issue(&inner, &session, gateways)?))
}

/// Refuses a new session of an entry whose administrators capped how many
/// run at once, when that many are open.
fn at_cap(inner: &Inner, tenant: &str, entry: &str) -> ApiResult<()> {
    let Some(spec) = inner.store.entry(tenant, entry)? else {
        return Ok(());
    };
    let Some(cap) = spec.max_sessions else {
        return Ok(());
    };
    let open = inner
        .store
        .all_open_sessions(crate::token::unix_now())?
        .iter()
        .filter(|s| s.tenant == tenant && s.desktop == entry)
        .count();
    if open >= cap as usize {
        tracing::info!(%tenant, %entry, cap, "session refused: the entry is at its cap");
        return Err(Fail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "all {cap} sessions of “{}” are in use; try again later",
                spec.name
            ),
        ));
    }
    Ok(())
}

/// A session token (and a resume token) for a recorded session.
fn issue(inner: &Inner, s: &SessionRecord, gateways: Vec<GatewayInfo>) -> ApiResult<SessionGrant> {
    let now = crate::token::unix_now();
    let fail = |e: TokenError| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let app = inner
        .store
        .entry(&s.tenant, &s.desktop)?
        .is_some_and(|e| e.kind == EntryKind::App);
    let token = inner
        .signer
        .sign(&SessionClaims {
            sid: s.id.clone(),
            sub: s.user.clone(),
            tenant: s.tenant.clone(),
            desktop: s.desktop.clone(),
            host: s.host.clone(),
            backup: s.backup.clone(),
            idle: Some(inner.idle_policy.to_wire()),
            pixels: inner.session_pixel_rate,
            grant: s.resume_generation,
            app,
            aud: crate::token::AUD_GATEWAY.into(),
            iss: crate::token::ISSUER.into(),
            iat: now,
            exp: (now + inner.session_ttl.as_secs()).min(s.expires),
        })
        .map_err(fail)?;
    let resume_token = inner
        .signer
        .sign(&ResumeClaims {
            sid: s.id.clone(),
            sub: s.user.clone(),
            tenant: s.tenant.clone(),
            aud: crate::token::AUD_RESUME.into(),
            iss: crate::token::ISSUER.into(),
            iat: now,
            exp: s.expires,
            generation: s.resume_generation,
        })
        .map_err(fail)?;
    Ok(SessionGrant {
        session_id: s.id.clone(),
        token,
        expires_in_s: inner.session_ttl.as_secs(),
        desktop: s.desktop.clone(),
        gateways,
        idle_policy: Some(inner.idle_policy.into()),
        resume_token: Some(resume_token),
    })
}

/// Fresh tokens for a session the client holds a resume token of: after a
/// disconnect longer than its session token lived, the same desktop again
/// without signing in. The session ends only when its resume token expires.
pub(super) async fn resume_session(
    State(inner): State<Arc<Inner>>,
    Json(req): Json<ResumeSession>,
) -> ApiResult<Json<SessionGrant>> {
    let claims = inner.verifier.resume(&req.resume_token).map_err(|e| {
        Fail(
            StatusCode::UNAUTHORIZED,
            format!("the session cannot be resumed: {e}"),
        )
    })?;
    let Some(rec) = inner.store.session(&claims.sid)? else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "the session has ended; open a new one".into(),
        ));
    };
    if rec.user != claims.sub || rec.tenant != claims.tenant {
        tracing::warn!(session = %rec.id, "a resume token for another user's session");
        return Err(Fail(
            StatusCode::UNAUTHORIZED,
            "the session cannot be resumed: it is not this user's".into(),
        ));
    }
    let gateways = inner.live_gateways()?;
    if gateways.is_empty() {
        return Err(Fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "no gateway is available right now; try again shortly".into(),
        ));
    }
    // Each resume token is good once: its use records the next one's
    // generation, so a copied token is worth nothing once either copy is
    // used.
    let Some(rec) = inner.store.use_resume(&rec.id, claims.generation)? else {
        tracing::warn!(session = %claims.sid, user = %claims.sub, "a resume token used twice");
        return Err(Fail(
            StatusCode::UNAUTHORIZED,
            "the session cannot be resumed with a token already used; sign in again".into(),
        ));
    };
    tracing::info!(session = %rec.id, user = %rec.user, "session resumed");
    Ok(Json(issue(&inner, &rec, gateways)?))
}

/// Log-off: the holder of a session's current resume token ends the
/// session at the directory, so no token of it opens the desktop again.
pub(super) async fn end_session(
    State(inner): State<Arc<Inner>>,
    Json(req): Json<ResumeSession>,
) -> ApiResult<StatusCode> {
    let claims = inner.verifier.resume(&req.resume_token).map_err(|e| {
        Fail(
            StatusCode::UNAUTHORIZED,
            format!("the session cannot be ended: {e}"),
        )
    })?;
    match inner.store.session(&claims.sid)? {
        Some(rec)
            if rec.user == claims.sub
                && rec.tenant == claims.tenant
                && rec.resume_generation == claims.generation =>
        {
            inner.store.remove_session(&rec.id)?;
            tracing::info!(session = %rec.id, user = %rec.user, "session ended by its user");
            Ok(StatusCode::NO_CONTENT)
        }
        Some(_) => Err(Fail(
            StatusCode::UNAUTHORIZED,
            "the session cannot be ended with a token already used".into(),
        )),
        None => Ok(StatusCode::NO_CONTENT),
    }
}

/// A random session id (128 bits, hex).
fn session_id() -> String {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
