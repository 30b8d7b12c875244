//! `POST /v1/admin`: the administrator's operations, each change recorded
//! in the audit log with who made it, from where, and how it ended.
//!
//! The administrator's credential is a 256-bit key. The directory makes
//! one on its first start, keeps only its SHA-256 in the database (shared
//! by every directory on it) and writes the key itself to
//! `STATE_DIR/admin.key`, readable by its owner only; `key-rotate` replaces
//! it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use nephele_api::admin::{AdminAnswer, AdminRequest, EntryKind, EntrySpec, MAX_ICON_BYTES};

use super::front::Peer;
use super::registry::{hash, new_key, same};
use super::store::{AuditRecord, NoticeRecord, StoreError};
use super::{ApiResult, Fail, Inner, bearer};
use crate::token::unix_now;

/// The file in the state directory holding the administrator's key.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// Makes the administrator's key on the first start of a directory on
/// this database, writing it to `state_dir`; later starts keep it.
pub(super) fn ensure_key(
    store: &super::store::Store,
    state_dir: &std::path::Path,
) -> Result<(), StoreError> {
    if store.admin_key_hash()?.is_some() {
        return Ok(());
    }
    let key = new_key().map_err(|f| StoreError::Invalid(f.1))?;
    let path = state_dir.join(ADMIN_KEY_FILE);
    nephele_platform::fs::write_private(&path, key.as_bytes())
        .map_err(|e| StoreError::Invalid(format!("writing {}: {e}", path.display())))?;
    store.put_admin_key_hash(&hash(&key))?;
    tracing::info!(path = %path.display(), "the administrator's key was made; `nephele-server admin --key-file` takes it");
    Ok(())
}

/// A short public name for a key: the first 8 hex digits of its hash.
fn fingerprint(h: &[u8]) -> String {
    h.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

pub(super) async fn admin(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Json(req): Json<AdminRequest>,
) -> ApiResult<Json<AdminAnswer>> {
    let given = hash(bearer(&headers));
    let ok = inner
        .store
        .admin_key_hash()?
        .is_some_and(|h| same(&h, &given));
    if !ok {
        tracing::warn!(%peer, "administration refused: wrong key");
        return Err(Fail(
            StatusCode::UNAUTHORIZED,
            format!("wrong administrator key: use the directory's {ADMIN_KEY_FILE}"),
        ));
    }
    let actor = format!("admin key {}", fingerprint(&given));
    let inner2 = inner.clone();
    let req2 = req.clone();
    let done = tokio::task::spawn_blocking(move || run(&inner2, req2))
        .await
        .map_err(|_| Fail(StatusCode::INTERNAL_SERVER_ERROR, "administration".into()))?;
    if req.changes() {
        let outcome = match &done {
            Ok(_) => "ok".to_string(),
            Err(f) => f.1.clone(),
        };
        tracing::info!(%actor, %peer, op = ?req.redacted(), %outcome, "administration");
        let rec = AuditRecord {
            at_ms: unix_ms(),
            actor,
            from: peer.ip().to_string(),
            op: serde_json::to_value(req.redacted()).unwrap_or_default(),
            outcome,
        };
        inner.store.audit(&rec)?;
    }
    done.map(Json)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A Unix time as an administrator reads it (UTC, to the minute).
pub(super) fn when(unix: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix as i64) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => unix.to_string(),
    }
}

/// A refusal the administrator can act on (bad name, missing tenant...).
fn invalid(e: StoreError) -> Fail {
    match e {
        StoreError::Invalid(why) => Fail(StatusCode::BAD_REQUEST, why),
        other => other.into(),
    }
}

fn done(message: impl Into<String>) -> AdminAnswer {
    AdminAnswer {
        message: message.into(),
        ..AdminAnswer::default()
    }
}

fn table(columns: &[&str], rows: Vec<Vec<String>>) -> AdminAnswer {
    AdminAnswer {
        message: format!("{} listed", rows.len()),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

fn need_tenant(inner: &Inner, tenant: &str) -> ApiResult<()> {
    match inner.store.tenant(tenant)? {
        Some(_) => Ok(()),
        None => Err(Fail(
            StatusCode::NOT_FOUND,
            format!("there is no tenant `{tenant}`: add it with `tenant add {tenant}`"),
        )),
    }
}

fn check_entry(e: &EntrySpec) -> ApiResult<()> {
    let bad = |why: String| Err(Fail(StatusCode::BAD_REQUEST, why));
    if e.name.trim().is_empty() || e.name.chars().count() > 80 {
        return bad("an entry's name is 1–80 characters".into());
    }
    match (e.kind, e.command.is_empty()) {
        (EntryKind::App, true) => {
            return bad("an application entry needs the command it runs".into());
        }
        (EntryKind::Desktop, false) => {
            return bad("a desktop entry runs no command: make it an application".into());
        }
        _ => {}
    }
    if let Some(icon) = &e.icon_png {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(icon)
            .map_err(|_| Fail(StatusCode::BAD_REQUEST, "the icon is not base64".into()))?;
        if bytes.len() > MAX_ICON_BYTES || !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return bad(format!(
                "the icon must be a PNG file of at most {} KiB",
                MAX_ICON_BYTES / 1024
            ));
        }
    }
    Ok(())
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(inner: &Inner, req: AdminRequest) -> ApiResult<AdminAnswer> {
    let store = &inner.store;
    let now = unix_now();
    Ok(match req {
        AdminRequest::TenantAdd { tenant, name } => {
            store.add_tenant(&tenant, &name, now).map_err(invalid)?;
            done(format!("tenant `{tenant}` added"))
        }
        AdminRequest::TenantList => {
            let rows = store
                .tenants()?
                .into_iter()
                .map(|t| {
                    let users = store.users(&t.id).map_or(0, |u| u.len());
                    vec![t.id, t.name, users.to_string(), when(t.created)]
                })
                .collect();
            table(&["tenant", "name", "users", "added"], rows)
        }
        AdminRequest::UserAdd {
            tenant,
            user,
            password,
            grants,
        } => {
            need_tenant(inner, &tenant)?;
            check_password(&password)?;
            for g in &grants {
                need_entry(inner, &tenant, g)?;
            }
            store
                .add_user(&tenant, &user, &password, &grants)
                .map_err(invalid)?;
            done(format!("user `{user}@{tenant}` added"))
        }
        AdminRequest::UserPassword {
            tenant,
            user,
            password,
        } => {
            check_password(&password)?;
            store
                .set_password(&tenant, &user, &password)
                .map_err(invalid)?;
            done(format!("the password of `{user}@{tenant}` is set"))
        }
        AdminRequest::UserDisable {
            tenant,
            user,
            disabled,
        } => {
            store
                .change_user(&tenant, &user, |u| u.disabled = disabled)
                .map_err(invalid)?;
            if disabled {
                let ended = super::hosts::end_all(inner, &store.end_sessions_of(&tenant, &user)?)?;
                done(format!(
                    "`{user}@{tenant}` is disabled; {ended} session(s) ended"
                ))
            } else {
                done(format!("`{user}@{tenant}` is enabled"))
            }
        }
        AdminRequest::UserRemove { tenant, user } => {
            if !store.remove_user(&tenant, &user)? {
                return Err(Fail(
                    StatusCode::NOT_FOUND,
                    format!("there is no user `{user}@{tenant}`"),
                ));
            }
            let ended = super::hosts::end_all(inner, &store.end_sessions_of(&tenant, &user)?)?;
            done(format!(
                "`{user}@{tenant}` removed; {ended} session(s) ended"
            ))
        }
        AdminRequest::UserList { tenant } => {
            need_tenant(inner, &tenant)?;
            let open = store.all_open_sessions(now)?;
            let rows = store
                .users(&tenant)?
                .into_iter()
                .map(|u| {
                    let sessions = open
                        .iter()
                        .filter(|s| s.tenant == u.tenant && s.user == u.user)
                        .count();
                    vec![
                        u.user,
                        if u.disabled { "disabled" } else { "active" }.into(),
                        u.desktops.join(","),
                        sessions.to_string(),
                    ]
                })
                .collect();
            table(&["user", "state", "may open", "sessions"], rows)
        }
        AdminRequest::EntryPut { tenant, entry } => {
            need_tenant(inner, &tenant)?;
            check_entry(&entry)?;
            store.put_catalog(&tenant, &entry).map_err(invalid)?;
            done(format!(
                "{} `{}` ({}) is in the catalog of `{tenant}`",
                entry.kind.as_str(),
                entry.id,
                entry.name
            ))
        }
        AdminRequest::EntryRemove { tenant, id } => {
            if !store.remove_entry(&tenant, &id)? {
                return Err(Fail(
                    StatusCode::NOT_FOUND,
                    format!("`{tenant}` has no entry `{id}`"),
                ));
            }
            done(format!("`{id}` removed from `{tenant}`, and its grants"))
        }
        AdminRequest::EntryList { tenant } => {
            need_tenant(inner, &tenant)?;
            let open = store.all_open_sessions(now)?;
            let rows = store
                .entries(&tenant)?
                .into_iter()
                .map(|e| {
                    let n = open
                        .iter()
                        .filter(|s| s.tenant == tenant && s.desktop == e.id)
                        .count();
                    vec![
                        e.id,
                        e.kind.as_str().into(),
                        e.name,
                        e.command.join(" "),
                        match e.max_sessions {
                            Some(cap) => format!("{n}/{cap}"),
                            None => n.to_string(),
                        },
                        if e.icon_png.is_some() { "yes" } else { "no" }.into(),
                    ]
                })
                .collect();
            table(&["id", "kind", "name", "command", "sessions", "icon"], rows)
        }
        AdminRequest::Grant {
            tenant,
            user,
            entry,
        } => {
            need_entry(inner, &tenant, &entry)?;
            store
                .change_user(&tenant, &user, |u| {
                    if !u.desktops.contains(&entry) {
                        u.desktops.push(entry.clone());
                    }
                })
                .map_err(invalid)?;
            done(format!("`{user}@{tenant}` may open `{entry}`"))
        }
        AdminRequest::Revoke {
            tenant,
            user,
            entry,
        } => {
            store
                .change_user(&tenant, &user, |u| u.desktops.retain(|d| d != &entry))
                .map_err(invalid)?;
            done(format!("`{user}@{tenant}` may no longer open `{entry}`"))
        }
        AdminRequest::GatewayList => {
            let live = inner.live_gateways()?;
            let rows = store
                .gateways()?
                .into_iter()
                .map(|g| {
                    let now_live = live.iter().find(|l| l.id == g.id);
                    vec![
                        g.id,
                        g.pop,
                        g.region,
                        g.address,
                        match now_live {
                            Some(l) => format!("answering, load {:.0}%", l.load * 100.0),
                            None => "silent".into(),
                        },
                    ]
                })
                .collect();
            table(&["id", "pop", "region", "address", "state"], rows)
        }
        AdminRequest::GatewayRemove { id } => {
            store.remove_member(super::store::Roster::Gateways, &id)?;
            done(format!(
                "gateway `{id}` and its key are forgotten; it must register with the service key again"
            ))
        }
        AdminRequest::HostList => {
            let open = store.all_open_sessions(now)?;
            let live = super::hosts::live(inner)?;
            let rows = store
                .hosts()?
                .into_iter()
                .map(|h| {
                    let a = &h.address;
                    let primary = open.iter().filter(|s| &s.host == a).count();
                    let backup = open.iter().filter(|s| s.backup.as_ref() == Some(a)).count();
                    let state = match live.iter().find(|l| l.info.id == h.id) {
                        Some(l) => format!("answering, {} of {} in use", l.sessions, h.capacity),
                        None => "silent".into(),
                    };
                    vec![
                        h.id,
                        h.site,
                        h.address,
                        state,
                        primary.to_string(),
                        backup.to_string(),
                    ]
                })
                .collect();
            table(
                &["host", "site", "address", "state", "sessions", "backing up"],
                rows,
            )
        }
        AdminRequest::HostRemove { id } => {
            store.remove_member(super::store::Roster::Hosts, &id)?;
            done(format!(
                "host `{id}` and its key are forgotten: no session goes there; it must enrol with the service key again"
            ))
        }
        AdminRequest::SessionList { tenant } => {
            let rows = store
                .all_open_sessions(now)?
                .into_iter()
                .filter(|s| tenant.as_deref().is_none_or(|t| t == s.tenant))
                .map(|s| {
                    vec![
                        s.id,
                        format!("{}@{}", s.user, s.tenant),
                        s.desktop,
                        s.host,
                        s.backup.unwrap_or_default(),
                        when(s.created),
                        when(s.expires),
                    ]
                })
                .collect();
            table(
                &[
                    "session", "user", "entry", "host", "backup", "opened", "until",
                ],
                rows,
            )
        }
        AdminRequest::SessionEnd { id } => {
            if !store.remove_session(&id)? {
                return Err(Fail(
                    StatusCode::NOT_FOUND,
                    format!("there is no open session `{id}`"),
                ));
            }
            super::hosts::end_all(inner, std::slice::from_ref(&id))?;
            done(format!(
                "session `{id}` ended: its host closes it at its next heartbeat, and its tokens open nothing any more"
            ))
        }
        AdminRequest::NoticeAdd {
            tenant,
            user,
            message,
            until_unix,
        } => {
            need_tenant(inner, &tenant)?;
            let id = random_id();
            store
                .put_notice(&NoticeRecord {
                    id: id.clone(),
                    tenant,
                    user,
                    message,
                    since: now,
                    until: until_unix,
                })
                .map_err(invalid)?;
            done(format!("notice `{id}` posted"))
        }
        AdminRequest::NoticeList => {
            let rows = store
                .notices()?
                .into_iter()
                .map(|n| {
                    vec![
                        n.id,
                        match n.user {
                            Some(u) => format!("{u}@{}", n.tenant),
                            None => format!("everyone in {}", n.tenant),
                        },
                        when(n.since),
                        n.until.map_or_else(|| "until removed".into(), when),
                        n.message,
                    ]
                })
                .collect();
            table(&["notice", "to", "posted", "until", "message"], rows)
        }
        AdminRequest::NoticeRemove { id } => {
            if !store.remove_notice(&id)? {
                return Err(Fail(
                    StatusCode::NOT_FOUND,
                    format!("there is no notice `{id}`"),
                ));
            }
            done(format!("notice `{id}` removed"))
        }
        AdminRequest::Audit { limit } => {
            let rows = store
                .audit_log(limit.clamp(1, 10_000) as usize)?
                .into_iter()
                .map(|a| {
                    vec![
                        when(a.at_ms / 1000),
                        a.actor,
                        a.from,
                        a.op.to_string(),
                        a.outcome,
                    ]
                })
                .collect();
            table(&["when", "who", "from", "operation", "outcome"], rows)
        }
        AdminRequest::KeyRotate => {
            let key = new_key()?;
            store.put_admin_key_hash(&hash(&key))?;
            AdminAnswer {
                message: key,
                ..AdminAnswer::default()
            }
        }
    })
}

fn need_entry(inner: &Inner, tenant: &str, id: &str) -> ApiResult<()> {
    match inner.store.entry(tenant, id)? {
        Some(_) => Ok(()),
        None => Err(Fail(
            StatusCode::NOT_FOUND,
            format!("`{tenant}` has no entry `{id}`: add it with `entry add`"),
        )),
    }
}

/// Passwords an administrator sets: long enough to resist guessing at the
/// rate the directory allows, short enough to hash quickly.
fn check_password(p: &str) -> ApiResult<()> {
    let n = p.chars().count();
    if !(8..=256).contains(&n) {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            "a password is 8 to 256 characters".into(),
        ));
    }
    Ok(())
}
