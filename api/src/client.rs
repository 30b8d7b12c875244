//! A small blocking client for the directory's HTTPS API (ureq on rustls),
//! used by the `nephele` client to sign in and open sessions and by gateways
//! to register and heartbeat. Blocking is deliberate: each call is one short
//! request made off the latency-critical threads.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::directory::{
    ApiError, AppLaunch, AppLaunchRequest, Catalog, CreateSession, GatewayInfo, Heartbeat,
    HostHeartbeat, HostHeartbeatAnswer, HostInfo, ProfileSave, PublicKey, Registered,
    ResumeSession, SessionGrant, SignIn, SignedIn,
};

/// Why a directory call failed, in words for the person at the client.
#[derive(Debug, thiserror::Error)]
pub enum DirClientError {
    /// The URL is not an `https://` URL.
    #[error("the directory URL `{0}` must start with https://")]
    Url(String),
    /// No answer: refused, unreachable, TLS failure or timeout.
    #[error("cannot reach the directory at {url}: {reason}")]
    Unreachable {
        /// The directory.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The directory answered with an error.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The directory's explanation.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("the directory at {url} sent an answer this client does not understand: {reason}")]
    BadAnswer {
        /// The directory.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// Most gateways a client takes from one answer: a directory listing more
/// (by a fault, or a hostile one) would have it probe without end.
pub const MAX_GATEWAYS: usize = 256;

/// `grant` with at most [`MAX_GATEWAYS`] gateways, the first listed; says
/// so in the log when it cuts.
fn capped(mut grant: SessionGrant) -> SessionGrant {
    if grant.gateways.len() > MAX_GATEWAYS {
        tracing::warn!(
            listed = grant.gateways.len(),
            kept = MAX_GATEWAYS,
            "the directory listed more gateways than a client probes; keeping the first"
        );
        grant.gateways.truncate(MAX_GATEWAYS);
    }
    grant
}

/// A directory to talk to.
#[derive(Debug, Clone)]
pub struct DirectoryClient {
    agent: ureq::Agent,
    base: String,
    /// Device tokens by the user name signed in with.
    devices: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the directory running, and is the port right?)".into()
        }
        ureq::Error::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            format!(
                "TLS: {} (is --ca the directory's certificate authority?)",
                io.get_ref().map_or_else(String::new, |e| e.to_string())
            )
        }
        ureq::Error::Timeout(_) => "no answer in time".into(),
        ureq::Error::HostNotFound => "the host name does not resolve".into(),
        ureq::Error::Tls(t) => format!("TLS: {t} (is --ca the directory's certificate authority?)"),
        ureq::Error::Rustls(t) => {
            format!("TLS: {t} (is --ca the directory's certificate authority?)")
        }
        other => other.to_string(),
    }
}

impl DirectoryClient {
    /// A client for `url` (`https://host:port`), trusting `roots` — or,
    /// when `roots` is empty, what the operating system trusts (its own
    /// verifier where it has one, its trust store on Linux).
    pub fn new(url: &str, roots: &[CertificateDer<'static>]) -> Result<Self, DirClientError> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(DirClientError::Url(url.into()));
        }
        let certs = if roots.is_empty() {
            ureq::tls::RootCerts::PlatformVerifier
        } else {
            ureq::tls::RootCerts::Specific(Arc::new(
                roots
                    .iter()
                    .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                    .collect(),
            ))
        };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(certs)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(10)))
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
            base,
            devices: Default::default(),
        })
    }

    /// The directory's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn answer<R: DeserializeOwned>(
        &self,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Option<R>, DirClientError> {
        let mut res = res.map_err(|e| DirClientError::Unreachable {
            url: self.base.clone(),
            reason: describe(&e),
        })?;
        let status = res.status().as_u16();
        if status == 204 {
            return Ok(None);
        }
        if status >= 400 {
            let message = res
                .body_mut()
                .read_json::<ApiError>()
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("the directory answered HTTP {status}"));
            return Err(DirClientError::Refused { status, message });
        }
        res.body_mut()
            .read_json::<R>()
            .map(Some)
            .map_err(|e| DirClientError::BadAnswer {
                url: self.base.clone(),
                reason: e.to_string(),
            })
    }

    pub(crate) fn need<R>(&self, r: Option<R>) -> Result<R, DirClientError> {
        r.ok_or_else(|| DirClientError::BadAnswer {
            url: self.base.clone(),
            reason: "empty answer".into(),
        })
    }

    pub(crate) fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> Result<Option<R>, DirClientError> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.header("Authorization", format!("Bearer {b}"));
        }
        self.answer(req.send_json(body))
    }

    fn get<R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<R, DirClientError> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.header("Authorization", format!("Bearer {b}"));
        }
        let r = self.answer(req.call())?;
        self.need(r)
    }

    /// Signs in; `user` is `name` or `name@tenant`. The device token an
    /// earlier sign-in to the same account gave is sent along (kept in
    /// memory by this client and its clones).
    pub fn sign_in(&self, user: &str, password: &str) -> Result<SignedIn, DirClientError> {
        let device = self.devices.lock().ok().and_then(|d| d.get(user).cloned());
        let r: SignedIn = self.need(self.post(
            "/v1/signin",
            None,
            &SignIn {
                user: user.into(),
                password: password.into(),
                device,
            },
        )?)?;
        if let (Some(d), Ok(mut devices)) = (&r.device, self.devices.lock()) {
            devices.insert(user.to_string(), d.clone());
        }
        Ok(r)
    }

    /// The device token the last sign-in of `user` through this client
    /// (or its clones) brought, to keep for the next run.
    pub fn device(&self, user: &str) -> Option<String> {
        self.devices.lock().ok()?.get(user).cloned()
    }

    /// Sends `token` (kept from an earlier run) with `user`'s sign-ins.
    pub fn set_device(&self, user: &str, token: String) {
        if let Ok(mut devices) = self.devices.lock() {
            devices.insert(user.to_string(), token);
        }
    }

    /// What the signed-in user may open.
    pub fn catalog(&self, user_token: &str) -> Result<Catalog, DirClientError> {
        self.get("/v1/catalog", Some(user_token))
    }

    /// Opens a session on `desktop` (or, with `reconnect`, goes back to
    /// the one the user has open there): a session token and candidate
    /// gateways.
    pub fn create_session(
        &self,
        user_token: &str,
        desktop: &str,
        reconnect: bool,
    ) -> Result<SessionGrant, DirClientError> {
        self.create_session_near(user_token, desktop, reconnect, &[])
    }

    /// [`Self::create_session`] from a client that measured the PoPs in
    /// `near` (nearest first): the session goes to the nearest site with
    /// room.
    pub fn create_session_near(
        &self,
        user_token: &str,
        desktop: &str,
        reconnect: bool,
        near: &[String],
    ) -> Result<SessionGrant, DirClientError> {
        let r = self.post(
            "/v1/sessions",
            Some(user_token),
            &CreateSession {
                desktop: desktop.into(),
                reconnect,
                near: near.to_vec(),
            },
        )?;
        self.need(r).map(capped)
    }

    /// Fresh tokens for the session a resume token names.
    pub fn resume_session(&self, resume_token: &str) -> Result<SessionGrant, DirClientError> {
        let r = self.post(
            "/v1/sessions/resume",
            None,
            &ResumeSession {
                resume_token: resume_token.into(),
            },
        )?;
        self.need(r).map(capped)
    }

    /// Logs off: ends the session the (current) resume token names, so no
    /// token of it opens the desktop again.
    pub fn end_session(&self, resume_token: &str) -> Result<(), DirClientError> {
        self.post::<_, serde_json::Value>(
            "/v1/sessions/end",
            None,
            &ResumeSession {
                resume_token: resume_token.into(),
            },
        )
        .map(|_| ())
    }

    /// The key session tokens are signed with.
    pub fn public_key(&self) -> Result<PublicKey, DirClientError> {
        self.get("/v1/public-key", None)
    }

    /// Registers a gateway.
    pub fn register(
        &self,
        service_key: &str,
        info: &GatewayInfo,
    ) -> Result<Registered, DirClientError> {
        let r = self.post("/v1/gateways", Some(service_key), info)?;
        self.need(r)
    }

    /// Reports a gateway alive; `Ok(false)` when the directory does not know
    /// it (register again).
    pub fn heartbeat(
        &self,
        service_key: &str,
        id: &str,
        load: f64,
    ) -> Result<bool, DirClientError> {
        let path = format!("/v1/gateways/{id}/heartbeat");
        self.beat::<serde_json::Value>(&path, service_key, &Heartbeat { load })
            .map(|r| r.is_some())
    }

    /// A heartbeat's answer; `None` when the directory does not know the
    /// sender (register again).
    fn beat<R: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: &impl Serialize,
    ) -> Result<Option<Option<R>>, DirClientError> {
        match self.post::<_, R>(path, Some(key), body) {
            Ok(r) => Ok(Some(r)),
            Err(DirClientError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes a gateway off the lists at once.
    pub fn deregister(&self, service_key: &str, id: &str) -> Result<(), DirClientError> {
        self.delete(&format!("/v1/gateways/{id}"), service_key)
    }

    fn delete(&self, path: &str, key: &str) -> Result<(), DirClientError> {
        let req = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {key}"));
        self.answer::<serde_json::Value>(req.call()).map(|_| ())
    }

    /// Enrols a desktop host.
    pub fn register_host(&self, key: &str, info: &HostInfo) -> Result<Registered, DirClientError> {
        let r = self.post("/v1/hosts", Some(key), info)?;
        self.need(r)
    }

    /// Reports a host alive with its sessions; `Ok(None)` when the
    /// directory does not know it (enrol again).
    pub fn host_heartbeat(
        &self,
        key: &str,
        id: &str,
        beat: &HostHeartbeat,
    ) -> Result<Option<HostHeartbeatAnswer>, DirClientError> {
        let path = format!("/v1/hosts/{id}/heartbeat");
        Ok(self.beat(&path, key, beat)?.map(Option::unwrap_or_default))
    }

    /// What application session the token opens, and its user's profile
    /// (for the host the token names).
    pub fn app_launch(
        &self,
        key: &str,
        host: &str,
        req: &AppLaunchRequest,
    ) -> Result<AppLaunch, DirClientError> {
        let r = self.post(&format!("/v1/hosts/{host}/apps/launch"), Some(key), req)?;
        self.need(r)
    }

    /// Keeps an application session's profile for its user's next session.
    pub fn save_profile(
        &self,
        key: &str,
        host: &str,
        save: &ProfileSave,
    ) -> Result<(), DirClientError> {
        self.post::<_, serde_json::Value>(
            &format!("/v1/hosts/{host}/apps/profile"),
            Some(key),
            save,
        )
        .map(|_| ())
    }

    /// Takes a host off the lists at once.
    pub fn deregister_host(&self, key: &str, id: &str) -> Result<(), DirClientError> {
        self.delete(&format!("/v1/hosts/{id}"), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::GatewayInfo;

    #[test]
    fn a_gateway_list_of_any_length_is_cut_to_what_a_client_probes() {
        let gateway = |i: usize| GatewayInfo {
            id: format!("gw-{i}"),
            pop: format!("pop-{i}"),
            region: String::new(),
            address: "192.0.2.1:4433".into(),
            probe_address: "192.0.2.1:4434".into(),
            server_name: "gw.example".into(),
            load: 0.0,
        };
        let grant = |n: usize| SessionGrant {
            session_id: "s".into(),
            token: "t".into(),
            expires_in_s: 60,
            desktop: "demo".into(),
            gateways: (0..n).map(gateway).collect(),
            idle_policy: None,
            resume_token: None,
        };
        let cut = capped(grant(40_000));
        assert_eq!(cut.gateways.len(), MAX_GATEWAYS);
        assert_eq!(cut.gateways[0].id, "gw-0");
        assert_eq!(capped(grant(3)).gateways.len(), 3);
    }
}
