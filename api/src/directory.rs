//! The directory's HTTPS JSON API: paths and bodies, shared by the server,
//! the gateways that register with it and the client.
//!
//! | method and path | auth | body → answer |
//! |---|---|---|
//! | `GET /v1/health` | — | → `{"ok":true}` |
//! | `GET /v1/public-key` | — | → [`PublicKey`] |
//! | `POST /v1/signin` | — | [`SignIn`] → [`SignedIn`] |
//! | `GET /v1/catalog` | user token | → [`Catalog`] |
//! | `POST /v1/sessions` | user token | [`CreateSession`] → [`SessionGrant`] |
//! | `POST /v1/sessions/resume` | — (the resume token is the body) | [`ResumeSession`] → [`SessionGrant`] |
//! | `POST /v1/sessions/end` | — (the current resume token is the body) | [`ResumeSession`] → 204 |
//! | `POST /v1/gateways` | service key | [`GatewayInfo`] → [`Registered`] |
//! | `POST /v1/gateways/{id}/heartbeat` | service key | [`Heartbeat`] → 204, or 404 (register again) |
//! | `DELETE /v1/gateways/{id}` | service key | → 204 |
//!
//! Tokens and keys travel as `Authorization: Bearer …`. Every error answer is
//! [`ApiError`] with a sentence meant for the person at the client.

use serde::{Deserialize, Serialize};

/// `POST /v1/signin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignIn {
    /// `name` (tenant `default`) or `name@tenant`.
    pub user: String,
    /// The password.
    pub password: String,
    /// The device token an earlier sign-in to this account gave this
    /// device, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// A successful sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    /// User token for the rest of the API.
    pub token: String,
    /// The user's name.
    pub user: String,
    /// The user's tenant.
    pub tenant: String,
    /// Seconds the token is valid.
    pub expires_in_s: u64,
    /// A token saying this device signed in to this account: sent with
    /// the next sign-in, it skips the limits on guessing and has a lane of
    /// its own when the directory is busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// One desktop or app a user may open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Stable id.
    pub id: String,
    /// What people see.
    pub name: String,
    /// `desktop` or `app`.
    pub kind: String,
    /// The user's session of this entry that is still open (its client
    /// went away without logging off), if any: opening the entry with
    /// [`CreateSession::reconnect`] goes back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenSession>,
}

/// A session still open, as the catalog shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSession {
    /// When it was opened, Unix seconds.
    pub since_unix: u64,
    /// Until when it can be reconnected to, Unix seconds.
    pub until_unix: u64,
}

/// `GET /v1/catalog`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    /// What the user may open.
    pub desktops: Vec<CatalogEntry>,
    /// Messages from the service's administrators to this user, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
    /// The gateways live now, for the client to measure before it opens a
    /// session (probes carry the user's token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<GatewayInfo>,
}

/// A message from the administrators that clients show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Stable id (a client shows each once per change).
    pub id: String,
    /// The message.
    pub message: String,
    /// When it was posted, Unix seconds.
    pub since_unix: u64,
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSession {
    /// A catalog id.
    pub desktop: String,
    /// Go back to the user's open session of this desktop, if there is
    /// one, rather than open another.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconnect: bool,
    /// The PoPs this client measured, nearest first: the session goes to a
    /// host of the nearest site with room.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near: Vec<String>,
}

/// A gateway as registered and as listed to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// Unique gateway id.
    pub id: String,
    /// Point of presence.
    pub pop: String,
    /// Region label shown to people.
    pub region: String,
    /// QUIC address clients connect to.
    pub address: String,
    /// UDP address answering latency probes.
    pub probe_address: String,
    /// Name the gateway's certificate carries.
    pub server_name: String,
    /// Load, 0.0 (idle) to 1.0 (full).
    #[serde(default)]
    pub load: f64,
}

/// A created session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionGrant {
    /// Session id.
    pub session_id: String,
    /// Session token for probes and the gateway.
    pub token: String,
    /// Seconds the token is valid.
    pub expires_in_s: u64,
    /// The desktop opened.
    pub desktop: String,
    /// Candidate gateways (at least one; all live ones, up to a limit).
    pub gateways: Vec<GatewayInfo>,
    /// When the session is warned, paused and suspended for want of input.
    #[serde(default)]
    pub idle_policy: Option<IdlePolicyInfo>,
    /// Fetches fresh session tokens for this session (`POST
    /// /v1/sessions/resume`) after a disconnect outlasting the session
    /// token, without signing in again. Keep it secret.
    #[serde(default)]
    pub resume_token: Option<String>,
}

/// `POST /v1/sessions/resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeSession {
    /// The resume token from the session's grant.
    pub resume_token: String,
}

/// The idle policy, as the directory tells clients: milliseconds of no
/// input before each step, absent for never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdlePolicyInfo {
    /// A warning that the pause is coming.
    pub warn_ms: Option<u64>,
    /// Capture and encoding stop.
    pub pause_ms: Option<u64>,
    /// The session's resources are released; its state is kept.
    pub suspend_ms: Option<u64>,
}

impl From<nephele_protocol::activity::IdlePolicy> for IdlePolicyInfo {
    fn from(p: nephele_protocol::activity::IdlePolicy) -> Self {
        let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
        Self {
            warn_ms: ms(p.warn),
            pause_ms: ms(p.pause),
            suspend_ms: ms(p.suspend),
        }
    }
}

/// Answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    /// How often to heartbeat, milliseconds.
    pub heartbeat_ms: u64,
    /// A gateway missing heartbeats this long leaves the lists, milliseconds.
    pub ttl_ms: u64,
    /// The directory's token key (see [`PublicKey`]).
    pub public_key: String,
    /// Issued when the gateway registered with the service key: the key
    /// this gateway id's heartbeats, registrations and departure need from
    /// now on (no other gateway can use the id while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_key: Option<String>,
}

/// A desktop host as it enrols with the directory (`POST /v1/hosts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Unique host id.
    pub id: String,
    /// The site it is in: the PoP (a gateway's `pop`) it sits beside.
    pub site: String,
    /// UDP address gateways and backup hosts send to.
    pub address: String,
    /// Most sessions it serves at once.
    pub capacity: u32,
}

/// `POST /v1/hosts/{id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HostHeartbeat {
    /// Sessions it serves now.
    pub sessions: u32,
    /// The directory session ids it serves as primary (those taken over
    /// from a failed host among them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serving: Vec<String>,
}

/// The answer to a host's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HostHeartbeatAnswer {
    /// New backups for sessions the host took over: replicate to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupAssignment>,
    /// Sessions the service ended (an administrator did): end them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end: Vec<String>,
}

/// A session's new backup host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupAssignment {
    /// Directory session id.
    pub session: String,
    /// The backup's UDP address.
    pub backup: String,
}

/// `POST /v1/gateways/{id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Load, 0.0 to 1.0.
    pub load: f64,
}

/// `GET /v1/public-key`: the key session tokens are signed with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicKey {
    /// Always `EdDSA` (Ed25519).
    pub alg: String,
    /// Raw public key, base64url without padding.
    pub public_key: String,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for people.
    pub error: String,
}

/// Largest profile (an application session's home, as a tar archive) the
/// directory keeps for a user.
pub const MAX_PROFILE_BYTES: usize = 4 << 20;

/// A host asks how to start an application session: it shows the
/// session's token (which names the user, the entry and this host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLaunchRequest {
    /// The session token the session attached with.
    pub token: String,
}

/// What an application session runs, and the user's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLaunch {
    /// The session's user (their name in their tenant).
    pub user: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The user's profile (a tar archive, base64) as the last session
    /// left it; `None` for a user's first session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A host keeps an application session's profile at its log-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSave {
    /// The session token the session attached with.
    pub token: String,
    /// The profile: a tar archive, base64, of at most [`MAX_PROFILE_BYTES`].
    pub profile: String,
}
