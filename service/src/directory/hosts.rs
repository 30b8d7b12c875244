//! Desktop hosts enrolled with the directory, and where a new session goes.
//!
//! A host enrols as a gateway registers (the service key once, then a key
//! of its own) with its site and capacity, and heartbeats the sessions it
//! serves. One that misses three heartbeats leaves the lists: no session
//! is placed on it.
//!
//! A new session goes to a host of the nearest site with room: the sites
//! in the order the client measured their PoPs (nearest first), then the
//! others, the roomiest first; within a site, the host with the most room.
//! Its backup is another host, of the same site if one has room (state
//! replication stays short), else of the next site in that order.
//!
//! A host serving a session an administrator ended is told to end it.
//!
//! A host serving a session whose record names another host took it over
//! (its primary failed): the directory records it as the primary, gives
//! the session a new backup and tells the host in the heartbeat's answer.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use nephele_api::directory::{
    BackupAssignment, HostHeartbeat, HostHeartbeatAnswer, HostInfo, Registered,
};

use super::registry::{Caller, caller, issue_key, not_owner, owner, same};
use super::store::{self, LiveHost, Roster, StoreError};
use super::{ApiResult, Fail, Inner, bearer};

/// How long an ended session waits for its host to be told (a host that
/// never reports it does not hold it for ever).
const ENDED_KEPT: Duration = Duration::from_secs(3600);

/// How long a session placed on a host holds a place there before its
/// client attaches (after that it is taken to have given up).
pub(super) const PENDING_GRACE: Duration = Duration::from_secs(30);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Notes sessions an administrator ended, for their hosts to be told;
/// how many.
pub(super) fn end_all(inner: &Inner, ids: &[String]) -> Result<usize, StoreError> {
    let now = crate::token::unix_ms();
    inner
        .store
        .mark_ended(ids, now, now.saturating_sub(ms(ENDED_KEPT)))
}

/// The hosts heard from within the registry's ttl, by id.
pub(super) fn live(inner: &Inner) -> Result<Vec<LiveHost>, StoreError> {
    inner.store.live_hosts(inner.live_since())
}

/// Where a session goes.
#[derive(Debug)]
pub(super) struct Placed {
    pub host: HostInfo,
    pub backup: Option<HostInfo>,
}

/// The sites in the order a session tries them: those in `near` as given,
/// then the others by most room.
fn site_order(hosts: &[LiveHost], near: &[String]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for s in near {
        if !order.contains(s) && hosts.iter().any(|h| &h.info.site == s) {
            order.push(s.clone());
        }
    }
    let mut rest: Vec<(u32, String)> = Vec::new();
    for h in hosts {
        if order.contains(&h.info.site) {
            continue;
        }
        match rest.iter_mut().find(|(_, s)| s == &h.info.site) {
            Some((room, _)) => *room += h.room(),
            None => rest.push((h.room(), h.info.site.clone())),
        }
    }
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    order.extend(rest.into_iter().map(|(_, s)| s));
    order
}

/// The roomiest host of the first site in `order` that has one passing
/// `ok` (fewest sessions when none has room and `need_room` is off).
fn pick<'a>(
    hosts: &'a [LiveHost],
    order: &[String],
    need_room: bool,
    ok: impl Fn(&LiveHost) -> bool,
) -> Option<&'a LiveHost> {
    order.iter().find_map(|site| {
        hosts
            .iter()
            .filter(|h| &h.info.site == site && ok(h) && (!need_room || h.room() > 0))
            .max_by(|a, b| a.room().cmp(&b.room()).then(b.info.id.cmp(&a.info.id)))
    })
}

/// A backup for a session on `primary`: another host, of its site first.
fn backup_for(hosts: &[LiveHost], primary: &HostInfo, order: &[String]) -> Option<HostInfo> {
    let mut from_primary = vec![primary.site.clone()];
    from_primary.extend(order.iter().filter(|s| **s != primary.site).cloned());
    let other = |h: &LiveHost| h.info.id != primary.id;
    pick(hosts, &from_primary, true, other)
        .or_else(|| pick(hosts, &from_primary, false, other))
        .map(|h| h.info.clone())
}

/// Places new session `sid` (see the module documentation); `None` when
/// no live host has room.
pub(super) fn place(
    inner: &Inner,
    sid: &str,
    near: &[String],
) -> Result<Option<Placed>, StoreError> {
    let hosts = live(inner)?;
    let order = site_order(&hosts, near);
    let Some(host) = pick(&hosts, &order, true, |_| true).map(|h| h.info.clone()) else {
        return Ok(None);
    };
    let backup = backup_for(&hosts, &host, &order);
    inner
        .store
        .host_pending(&host.id, sid, crate::token::unix_ms())?;
    Ok(Some(Placed { host, backup }))
}

pub(super) async fn register(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(info): Json<HostInfo>,
) -> ApiResult<Json<Registered>> {
    for (what, v) in [("host id", &info.id), ("site", &info.site)] {
        store::check_name(what, v).map_err(|e| Fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    }
    if info.address.parse::<std::net::SocketAddr>().is_err() {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            format!("`{}` is not an address gateways can send to", info.address),
        ));
    }
    let issued = match caller(&inner, &headers, Roster::Hosts, &info.id)? {
        Caller::Owner => None,
        Caller::Service if live(&inner)?.iter().any(|h| h.info.id == info.id) => {
            return Err(Fail(
                StatusCode::CONFLICT,
                format!(
                    "host id `{}` belongs to a host that is running: give this host another id, or stop that one",
                    info.id
                ),
            ));
        }
        Caller::Service => Some(issue_key(&inner, Roster::Hosts, &info.id)?),
    };
    inner.store.put_host(&info)?;
    tracing::info!(id = %info.id, site = %info.site, address = %info.address, capacity = info.capacity, new_key = issued.is_some(), "host enrolled");
    inner.store.host_seen(&LiveHost {
        info,
        seen_ms: crate::token::unix_ms(),
        sessions: 0,
        pending: Vec::new(),
    })?;
    Ok(Json(Registered {
        heartbeat_ms: inner.heartbeat.as_millis() as u64,
        ttl_ms: inner.ttl().as_millis() as u64,
        public_key: inner.signer.public_key_b64(),
        gateway_key: issued,
    }))
}

/// Most sessions one heartbeat may report serving.
const MAX_SERVING: usize = 4096;

pub(super) async fn heartbeat(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Json(beat): Json<HostHeartbeat>,
) -> ApiResult<Json<HostHeartbeatAnswer>> {
    let Some(issued) = inner.store.key_hash(Roster::Hosts, &id)? else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "unknown host; enrol again".into(),
        ));
    };
    if !same(&super::registry::hash(bearer(&headers)), &issued) {
        return Err(not_owner(Roster::Hosts, &id));
    }
    let now = crate::token::unix_ms();
    let serving = &beat.serving[..beat.serving.len().min(MAX_SERVING)];
    let listed = inner.store.host_beat(
        &id,
        beat.sessions,
        serving,
        now,
        now.saturating_sub(ms(PENDING_GRACE)),
    )?;
    let me = match listed {
        Some(info) => info,
        None => {
            // Known from an earlier run of the directory: alive again.
            let Some(info) = inner.store.hosts()?.into_iter().find(|h| h.id == id) else {
                return Err(Fail(
                    StatusCode::NOT_FOUND,
                    "unknown host; enrol again".into(),
                ));
            };
            tracing::info!(id = %info.id, site = %info.site, "host known from an earlier run is back");
            inner.store.host_seen(&LiveHost {
                info: info.clone(),
                seen_ms: now,
                sessions: beat.sessions,
                pending: Vec::new(),
            })?;
            info
        }
    };
    let mut answer = HostHeartbeatAnswer::default();
    // Ended sessions are few and usually none: listed once per heartbeat.
    let ended = inner.store.ended()?;
    let mut hosts: Option<Vec<LiveHost>> = None;
    for sid in serving {
        if ended.iter().any(|(e, _)| e == sid) && inner.store.take_ended(sid)? {
            tracing::info!(session = %sid, host = %me.id, "the host is told to end the session");
            answer.end.push(sid.clone());
            continue;
        }
        // The live hosts, listed once per heartbeat (not per session).
        let hosts = match &mut hosts {
            Some(h) => h,
            None => hosts.insert(live(&inner)?),
        };
        if let Some(b) = adopt(&inner, hosts, &me, sid)? {
            answer.backups.push(b);
        }
    }
    Ok(Json(answer))
}

/// A session `me` reports serving: recorded with `me` as its primary and
/// a backup that is alive; the backup to tell `me` of when either changed.
fn adopt(
    inner: &Inner,
    hosts: &[LiveHost],
    me: &HostInfo,
    sid: &str,
) -> ApiResult<Option<BackupAssignment>> {
    let Some(mut rec) = inner.store.session(sid)? else {
        return Ok(None);
    };
    let took_over = rec.host != me.address;
    let backup_alive = rec
        .backup
        .as_deref()
        .is_some_and(|b| b != me.address && hosts.iter().any(|h| h.info.address == b));
    if !took_over && backup_alive {
        return Ok(None);
    }
    let order = site_order(hosts, std::slice::from_ref(&me.site));
    let backup = backup_for(hosts, me, &order);
    if took_over {
        tracing::info!(session = %sid, old = %rec.host, new = %me.address, backup = ?backup.as_ref().map(|b| &b.address), "session taken over: recorded, with a new backup");
    } else {
        tracing::info!(session = %sid, host = %me.address, backup = ?backup.as_ref().map(|b| &b.address), "the session's backup is gone: a new one");
    }
    rec.host = me.address.clone();
    rec.backup = backup.map(|b| b.address);
    inner.store.put_session(&rec)?;
    Ok(rec.backup.map(|backup| BackupAssignment {
        session: rec.id,
        backup,
    }))
}

pub(super) async fn deregister(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    owner(&inner, &headers, Roster::Hosts, &id)?;
    inner.store.remove_member(Roster::Hosts, &id)?;
    tracing::info!(%id, "host left");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, site: &str, capacity: u32, sessions: u32) -> LiveHost {
        LiveHost {
            info: HostInfo {
                id: id.into(),
                site: site.into(),
                address: format!("10.0.0.{}:7400", id.len()),
                capacity,
            },
            seen_ms: 0,
            sessions,
            pending: Vec::new(),
        }
    }

    #[test]
    fn the_nearest_site_with_room_then_the_next_and_a_backup_elsewhere() {
        let hosts = vec![
            host("near-a", "near", 2, 2),
            host("near-b", "near", 4, 4),
            host("mid-a", "mid", 4, 1),
            host("far-a", "far", 8, 0),
            host("far-b", "far", 8, 3),
        ];
        let near = ["near".to_string(), "mid".into(), "far".into()];
        // The nearest site is full: the next nearest, not the roomiest.
        let order = site_order(&hosts, &near);
        assert_eq!(order, ["near", "mid", "far"]);
        let p = pick(&hosts, &order, true, |_| true).unwrap();
        assert_eq!(p.info.id, "mid-a");
        // Its backup: mid has no other host, so the next site's roomiest.
        let b = backup_for(&hosts, &p.info, &order).unwrap();
        assert_eq!(b.id, "far-a");
        // Without a measurement, the roomiest site first.
        let order = site_order(&hosts, &[]);
        assert_eq!(order[0], "far");
        assert_eq!(
            pick(&hosts, &order, true, |_| true).unwrap().info.id,
            "far-a"
        );
        // A backup in the primary's own site when there is one.
        let b = backup_for(&hosts, &hosts[3].info, &order).unwrap();
        assert_eq!(b.id, "far-b");
        // Unknown sites in the measurement are skipped; all full: nowhere.
        let full = vec![host("x", "s", 1, 1)];
        let order = site_order(&full, &["nowhere".into()]);
        assert_eq!(order, ["s"]);
        assert!(pick(&full, &order, true, |_| true).is_none());
        // A lone host has no backup.
        assert!(backup_for(&full, &full[0].info, &order).is_none());
    }
}
