//! Application sessions, as their hosts ask about them: what an entry
//! runs and the user's profile, at the session's start; the profile kept
//! again at its log-off.
//!
//! A host shows its own key (it is enrolled) and the session's token: the
//! token, signed by this directory, names the user and the entry, and must
//! name the asking host as the session's primary or backup, so a host
//! reads and writes the profiles of the sessions it serves and no others.
//! The token may have expired (a session outlives its token).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use nephele_api::admin::EntryKind;
use nephele_api::directory::{AppLaunch, AppLaunchRequest, MAX_PROFILE_BYTES, ProfileSave};

use super::registry::owner;
use super::store::Roster;
use super::{ApiResult, Fail, Inner};
use crate::token::SessionClaims;

/// Largest request: a profile at its largest, base64, and a token.
pub(super) const MAX_BODY: usize = MAX_PROFILE_BYTES / 3 * 4 + 16 * 1024;

/// The claims of an application session served by host `id`.
fn served(inner: &Inner, headers: &HeaderMap, id: &str, token: &str) -> ApiResult<SessionClaims> {
    owner(inner, headers, Roster::Hosts, id)?;
    let claims = inner
        .verifier
        .session_any_age(token.as_bytes())
        .map_err(|e| Fail(StatusCode::FORBIDDEN, format!("session token: {e}")))?;
    let Some(host) = inner.store.hosts()?.into_iter().find(|h| h.id == id) else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "unknown host; enrol again".into(),
        ));
    };
    let mine = claims.host == host.address || claims.backup.as_deref() == Some(&host.address);
    if !mine {
        return Err(Fail(
            StatusCode::FORBIDDEN,
            format!("session `{}` is not served by host `{id}`", claims.sid),
        ));
    }
    if !claims.app {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            format!("session `{}` is a desktop, not an application", claims.sid),
        ));
    }
    Ok(claims)
}

/// `POST /v1/hosts/{id}/apps/launch`.
pub(super) async fn launch(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(req): Json<AppLaunchRequest>,
) -> ApiResult<Json<AppLaunch>> {
    let c = served(&inner, &headers, &id, &req.token)?;
    let entry = inner
        .store
        .entry(&c.tenant, &c.desktop)?
        .filter(|e| e.kind == EntryKind::App && !e.command.is_empty())
        .ok_or_else(|| {
            Fail(
                StatusCode::NOT_FOUND,
                format!("`{}` is no longer an application in the catalog", c.desktop),
            )
        })?;
    let profile = inner.store.profile(&c.tenant, &c.sub)?;
    let bytes = profile.as_ref().map_or(0, Vec::len);
    tracing::info!(session = %c.sid, user = %c.sub, entry = %c.desktop, host = %id, profile_bytes = bytes, "application session starting");
    let profile = profile.map(|p| B64.encode(p));
    Ok(Json(AppLaunch {
        user: c.sub,
        command: entry.command,
        profile,
    }))
}

/// `POST /v1/hosts/{id}/apps/profile`.
pub(super) async fn save(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(save): Json<ProfileSave>,
) -> ApiResult<StatusCode> {
    let c = served(&inner, &headers, &id, &save.token)?;
    let tar = B64
        .decode(save.profile.as_bytes())
        .map_err(|_| Fail(StatusCode::BAD_REQUEST, "the profile is not base64".into()))?;
    if tar.len() > MAX_PROFILE_BYTES {
        return Err(Fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a profile may hold {} MiB at most; this one is {} bytes",
                MAX_PROFILE_BYTES >> 20,
                tar.len()
            ),
        ));
    }
    if inner.store.user(&c.tenant, &c.sub)?.is_none() {
        return Err(Fail(
            StatusCode::GONE,
            format!("user `{}` was removed", c.sub),
        ));
    }
    inner.store.put_profile(&c.tenant, &c.sub, &tar)?;
    tracing::info!(session = %c.sid, user = %c.sub, host = %id, bytes = tar.len(), "application profile kept");
    Ok(StatusCode::NO_CONTENT)
}
