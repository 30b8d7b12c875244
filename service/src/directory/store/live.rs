//! Soft state: the gateways and hosts heard from lately, and the sessions
//! an administrator ended until their host is told.
//!
//! It lives in the database beside the rest, so every directory sharing a
//! PostgreSQL database lists a gateway that heartbeats to any of them. On
//! redb it is written without waiting for the disk ([`Keep::Soft`]): after
//! a crash the next heartbeats renew it. Times are Unix milliseconds, as
//! several machines compare them.

use nephele_api::directory::{GatewayInfo, HostInfo};

use super::engine::Keep;
use super::{ENDED, LIVE_GATEWAYS, LIVE_HOSTS, Roster, Store, StoreError};

/// A gateway heard from lately.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LiveGateway {
    /// As registered, with the load of its last heartbeat.
    pub info: GatewayInfo,
    /// Its last heartbeat, Unix ms.
    pub seen_ms: u64,
}

/// A host heard from lately.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LiveHost {
    /// As enrolled.
    pub info: HostInfo,
    /// Its last heartbeat, Unix ms.
    pub seen_ms: u64,
    /// Sessions it reported at its last heartbeat.
    pub sessions: u32,
    /// Sessions placed on it that it has not reported serving yet, and
    /// when (Unix ms): each holds a place until it does, or for a grace
    /// period.
    #[serde(default)]
    pub pending: Vec<(String, u64)>,
}

impl LiveHost {
    /// Sessions it can still take.
    pub fn room(&self) -> u32 {
        let pending = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        self.info
            .capacity
            .saturating_sub(self.sessions.saturating_add(pending))
    }
}

impl Roster {
    /// The table of its members heard from lately.
    pub(super) fn live_table(self) -> super::Table {
        match self {
            Self::Gateways => LIVE_GATEWAYS,
            Self::Hosts => LIVE_HOSTS,
        }
    }
}

impl Store {
    /// Records gateway `g` as heard from at `now_ms`.
    pub fn gateway_seen(&self, g: &GatewayInfo, now_ms: u64) -> Result<(), StoreError> {
        let rec = LiveGateway {
            info: g.clone(),
            seen_ms: now_ms,
        };
        self.db.put(
            LIVE_GATEWAYS,
            &g.id,
            &super::encode(&g.id, &rec)?,
            Keep::Soft,
        )
    }

    /// A heartbeat of gateway `id` with its `load`; whether it was listed.
    pub fn gateway_beat(&self, id: &str, load: f64, now_ms: u64) -> Result<bool, StoreError> {
        self.update_as(LIVE_GATEWAYS, id, Keep::Soft, |old: Option<LiveGateway>| {
            Ok(match old {
                Some(mut g) => {
                    g.seen_ms = now_ms;
                    g.info.load = load;
                    (Some(g), true)
                }
                None => (None, false),
            })
        })
    }

    /// The gateways heard from since `since_ms`, by id.
    pub fn live_gateways(&self, since_ms: u64) -> Result<Vec<LiveGateway>, StoreError> {
        let mut all: Vec<LiveGateway> = self.all(LIVE_GATEWAYS, "")?;
        all.retain(|g| g.seen_ms >= since_ms);
        Ok(all)
    }

    /// Records host `h` as heard from.
    pub fn host_seen(&self, h: &LiveHost) -> Result<(), StoreError> {
        let id = &h.info.id;
        self.db
            .put(LIVE_HOSTS, id, &super::encode(id, h)?, Keep::Soft)
    }

    /// A heartbeat of host `id` serving `serving` (`sessions` in all):
    /// what it enrolled as, if it was listed. Its placed sessions that it
    /// now serves, or that waited since `pending_since_ms`, free their
    /// places.
    pub fn host_beat(
        &self,
        id: &str,
        sessions: u32,
        serving: &[String],
        now_ms: u64,
        pending_since_ms: u64,
    ) -> Result<Option<HostInfo>, StoreError> {
        self.update_as(LIVE_HOSTS, id, Keep::Soft, |old: Option<LiveHost>| {
            Ok(match old {
                Some(mut h) => {
                    h.seen_ms = now_ms;
                    h.sessions = sessions;
                    h.pending
                        .retain(|(sid, at)| !serving.contains(sid) && *at >= pending_since_ms);
                    let info = h.info.clone();
                    (Some(h), Some(info))
                }
                None => (None, None),
            })
        })
    }

    /// Holds a place on host `id` for new session `sid`.
    pub fn host_pending(&self, id: &str, sid: &str, now_ms: u64) -> Result<(), StoreError> {
        self.update_as(LIVE_HOSTS, id, Keep::Soft, |old: Option<LiveHost>| {
            Ok((
                old.map(|mut h| {
                    h.pending.push((sid.to_string(), now_ms));
                    h
                }),
                (),
            ))
        })
    }

    /// The hosts heard from since `since_ms`, by id.
    pub fn live_hosts(&self, since_ms: u64) -> Result<Vec<LiveHost>, StoreError> {
        let mut all: Vec<LiveHost> = self.all(LIVE_HOSTS, "")?;
        all.retain(|h| h.seen_ms >= since_ms);
        Ok(all)
    }

    /// Notes sessions an administrator ended at `now_ms` (and forgets
    /// those noted before `kept_since_ms`, whose hosts never reported
    /// them); how many were noted.
    pub fn mark_ended(
        &self,
        ids: &[String],
        now_ms: u64,
        kept_since_ms: u64,
    ) -> Result<usize, StoreError> {
        for (id, at) in self.ended()? {
            if at < kept_since_ms {
                self.db.remove(&[(ENDED, id.as_str())], Keep::Durable)?;
            }
        }
        for id in ids {
            self.db
                .put(ENDED, id, &now_ms.to_be_bytes(), Keep::Durable)?;
        }
        Ok(ids.len())
    }

    /// The sessions ended and not yet told to their hosts, with when.
    pub fn ended(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self
            .db
            .scan(ENDED, "")?
            .into_iter()
            .map(|(id, at)| {
                let at = <[u8; 8]>::try_from(at.as_slice()).map_or(0, u64::from_be_bytes);
                (id, at)
            })
            .collect())
    }

    /// Takes ended session `sid` off the list (its host is being told);
    /// whether this call took it.
    pub fn take_ended(&self, sid: &str) -> Result<bool, StoreError> {
        self.db.remove(&[(ENDED, sid)], Keep::Durable)
    }
}
