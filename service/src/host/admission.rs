//! Which `Attach` a host accepts: one carrying a session token the
//! directory signed for this host (as the session's primary or its
//! backup) and for the session the datagram names. The token also gives
//! the session's backup, idle policy and picture cap: a gateway passes
//! them on, it does not choose them.

use std::net::SocketAddr;

use nephele_protocol::activity::IdlePolicy;
use nephele_protocol::host::{Admission, Grant};

use crate::token::{Verifier, session_number};

/// Session tokens checked offline with the directory's key.
#[derive(Debug)]
pub struct TokenAdmission {
    tokens: Verifier,
    me: SocketAddr,
    sids: Sids,
}

/// What the host keeps of each session number it admitted.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The directory's session id (what the host reports serving).
    pub sid: String,
    /// For an application session, the token it attached with (what the
    /// host shows the directory to start it and keep its profile).
    pub app_token: Option<String>,
}

/// [`Admitted`] by session number.
pub type Sids = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u64, Admitted>>>;

impl TokenAdmission {
    /// Admits sessions whose tokens `tokens` verifies and that name `me`
    /// (the host's own address; an unspecified address matches by port),
    /// noting their directory ids in `sids`.
    pub fn new(tokens: Verifier, me: SocketAddr, sids: Sids) -> Self {
        Self { tokens, me, sids }
    }

    fn is_me(&self, addr: &str) -> bool {
        let Ok(a) = addr.parse::<SocketAddr>() else {
            return false;
        };
        a == self.me || (self.me.ip().is_unspecified() && a.port() == self.me.port())
    }
}

impl Admission for TokenAdmission {
    fn admit(&self, session: u64, token: &[u8], known: bool) -> Result<Grant, String> {
        let claims = if known {
            self.tokens.session_any_age(token)
        } else {
            self.tokens.session(token)
        }
        .map_err(|e| e.to_string())?;
        if session_number(&claims.sid) != session {
            return Err("the token is for another session".into());
        }
        let standby = claims.backup.as_deref().is_some_and(|b| self.is_me(b));
        let primary = self.is_me(&claims.host);
        if !primary && !standby {
            return Err(format!(
                "the token names other hosts ({}, backup {:?})",
                claims.host, claims.backup
            ));
        }
        let backup = if primary {
            claims
                .backup
                .as_deref()
                .map(|b| b.parse::<SocketAddr>())
                .transpose()
                .map_err(|_| "the token's backup is not an address".to_string())?
        } else {
            // This host is the backup, taking the session over.
            None
        };
        let policy = claims.idle.map(IdlePolicy::from_wire).transpose()?;
        if let Ok(mut sids) = self.sids.lock() {
            // Bounded: sessions no longer served are dropped at each
            // heartbeat; a flood of admissions cannot outgrow this.
            if sids.len() < 4 * nephele_protocol::host::MAX_SESSIONS {
                let app_token = claims
                    .app
                    .then(|| String::from_utf8_lossy(token).into_owned());
                let sid = claims.sid.clone();
                sids.insert(session, Admitted { sid, app_token });
            }
        }
        Ok(Grant {
            backup,
            policy,
            max_pixel_rate: claims.pixels,
            grant: claims.grant,
        })
    }
}
