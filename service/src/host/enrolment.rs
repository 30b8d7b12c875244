//! A host as a member of the directory's lists: it enrols with its site,
//! address and capacity, heartbeats the sessions it serves (by their
//! directory ids, so the directory sees a takeover), and hands the backups
//! the directory answers with to the receive thread.

use nephele_api::directory::{HostHeartbeat, HostInfo, Registered};
use nephele_api::{DirClientError, DirectoryClient};

use super::{Backups, Desktops, Sids};
use crate::enrol::Member;

/// What the host enrols and heartbeats.
pub(super) struct Enrolled {
    pub info: HostInfo,
    pub desktops: Desktops,
    pub sids: Sids,
    pub backups: Backups,
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
            serving.extend(live.iter().filter_map(|n| sids.get(n).cloned()));
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
        if answer.backups.is_empty() {
            return Ok(true);
        }
        let by_sid: Vec<(u64, std::net::SocketAddr)> = {
            let Ok(sids) = self.sids.lock() else {
                return Ok(true);
            };
            answer
                .backups
                .iter()
                .filter_map(|b| {
                    let n = sids.iter().find(|(_, s)| **s == b.session)?.0;
                    Some((*n, b.backup.parse().ok()?))
                })
                .collect()
        };
        if let Ok(mut q) = self.backups.lock() {
            q.extend(by_sid);
        }
        Ok(true)
    }

    fn leave(&self, dir: &DirectoryClient, key: &str) -> Result<(), DirClientError> {
        dir.deregister_host(key, &self.info.id)
    }
}
