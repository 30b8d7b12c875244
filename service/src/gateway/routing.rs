//! Where a client's session goes: the host its session token names (the
//! token checked offline with the directory's key), or, for a gateway
//! without a directory, the one direct host.

use std::net::SocketAddr;

use nephele_protocol::activity::IdlePolicy;
use nephele_protocol::gateway::Target;
use nephele_protocol::wire::MAX_ATTACH_TOKEN;

use crate::link::LinkKey;
use crate::token::{TokenError, Verifier, session_number};

/// Where sessions go: the host a token names, or the direct host.
#[derive(Debug)]
pub(super) struct Route {
    pub host: Option<SocketAddr>,
    pub tokens: Option<Verifier>,
    pub idle_policy: IdlePolicy,
    pub link: LinkKey,
}

impl Route {
    pub fn target_for(&self, token: &[u8], client_session: u64) -> Result<Target, TokenError> {
        let Some(v) = &self.tokens else {
            let host = self.host.ok_or(TokenError::Missing)?;
            return Ok(Target {
                session: if client_session == 0 {
                    nephele_platform::process::random_id()
                } else {
                    client_session
                },
                host,
                backup: None,
                policy: self.idle_policy,
            });
        };
        if token.len() > MAX_ATTACH_TOKEN {
            return Err(TokenError::Malformed(format!(
                "{} bytes, more than a host is passed ({MAX_ATTACH_TOKEN})",
                token.len()
            )));
        }
        let claims = v.session(token)?;
        let addr = |a: &str| {
            a.parse::<SocketAddr>()
                .map_err(|_| TokenError::Malformed(format!("host `{a}` is not an address")))
        };
        let policy = match claims.idle {
            Some(ms) => IdlePolicy::from_wire(ms).map_err(TokenError::Malformed)?,
            None => self.idle_policy,
        };
        Ok(Target {
            session: session_number(&claims.sid),
            host: addr(&claims.host)?,
            backup: claims.backup.as_deref().map(addr).transpose()?,
            policy,
        })
    }
}
