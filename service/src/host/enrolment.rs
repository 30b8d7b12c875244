//! A host as a member of the directory's lists: it enrols with its site,
//! address and capacity, heartbeats the sessions it serves (by their
//! directory ids, so the directory sees a takeover), and hands what the
//! directory answers (new backups, sessions to end) to the receive thread.

use nephele_api::directory::{HostHeartbeat, HostInfo, Registered};
use nephele_api::{DirClientError, DirectoryClient};

use super::{Desktops, Orders, Sids};
use crate::enrol::Member;

/// What the host enrols and heartbeats.
pub(super) struct Enrolled {
    pub info: HostInfo,
    pub desktops: Desktops,
    pub sids: Sids,
    pub orders: Orders,
}

impl Enrolled {
    /// The sessions served now (the directory's ids of those it admitted).
    fn beat(&self) -> HostHeartbeat {
        let live: Vec<u64> = self
            .desktops
            .lock()
            .map(|d| d.keys().copied().collect())
            .unwrap_or_default();
        let mut serving = Vec::with_capacity(live.len());
        if let Ok(mut sids) = self.sids.lock() {
            // Ended sessions' ids go once there are many (not at every
            // beat: a session admitted but not yet open keeps its id).
            if sids.len() > 2 * nephele_protocol::host::MAX_SESSIONS {
                sids.retain(|n, _| live.contains(n));
            }
            serving.extend(
                live.iter()
                    .filter_map(|n| sids.get(n).map(|a| a.sid.clone())),
            );
        }
        HostHeartbeat {
            sessions: live.len() as u32,
            serving,
        }
    }
}

impl Member for Enrolled {
    fn id(&self) -> &str {
        &self.info.id
    }

    fn register(&mut self, dir: &DirectoryClient, key: &str) -> Result<Registered, DirClientError> {
        dir.register_host(key, &self.info)
    }

    fn heartbeat(&mut self, dir: &DirectoryClient, key: &str) -> Result<bool, DirClientError> {
        let Some(answer) = dir.host_heartbeat(key, &self.info.id, &self.beat())? else {
            return Ok(false);
        };
        if answer.backups.is_empty() && answer.end.is_empty() {
            return Ok(true);
        }
        let (backups, ends) = {
            let Ok(sids) = self.sids.lock() else {
                return Ok(true);
            };
            let number = |sid: &str| sids.iter().find(|(_, a)| a.sid == sid).map(|(n, _)| *n);
            let backups: Vec<(u64, std::net::SocketAddr)> = answer
                .backups
                .iter()
                .filter_map(|b| Some((number(&b.session)?, b.backup.parse().ok()?)))
                .collect();
            let ends: Vec<u64> = answer.end.iter().filter_map(|s| number(s)).collect();
            (backups, ends)
        };
        if let Ok(mut q) = self.orders.lock() {
            q.backups.extend(backups);
            q.ends.extend(ends);
        }
        Ok(true)
    }

    fn leave(&self, dir: &DirectoryClient, key: &str) -> Result<(), DirClientError> {
        dir.deregister_host(key, &self.info.id)
    }
}
