//! A gateway as a member of the directory's lists: it registers with its
//! advertised addresses and heartbeats its load ([`crate::enrol`] runs
//! the thread and keeps the keys).

use std::sync::Arc;

use nephele_api::directory::{GatewayInfo, Registered};
use nephele_api::{DirClientError, DirectoryClient};

use super::{GatewayStats, load_of};
use crate::enrol::Member;

/// What the gateway registers and heartbeats.
pub(super) struct Listed {
    pub info: GatewayInfo,
    pub stats: Arc<GatewayStats>,
    pub capacity: u32,
}

impl Member for Listed {
    fn id(&self) -> &str {
        &self.info.id
    }

    fn register(&mut self, dir: &DirectoryClient, key: &str) -> Result<Registered, DirClientError> {
        let mut me = self.info.clone();
        me.load = load_of(&self.stats, self.capacity);
        dir.register(key, &me)
    }

    fn heartbeat(&mut self, dir: &DirectoryClient, key: &str) -> Result<bool, DirClientError> {
        dir.heartbeat(key, &self.info.id, load_of(&self.stats, self.capacity))
    }

    fn leave(&self, dir: &DirectoryClient, key: &str) -> Result<(), DirClientError> {
        dir.deregister(key, &self.info.id)
    }
}
