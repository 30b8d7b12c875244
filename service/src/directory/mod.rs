//! The directory: signs users in, lists what they may open, keeps the
//! registry of gateways and creates sessions with signed tokens.
//!
//! It serves the JSON API of [`nephele_api::directory`] over HTTPS (axum
//! on hyper, TLS by rustls) and keeps its state in the [`store`] (an
//! embedded database, or PostgreSQL shared with other directories).

mod admin;
mod apps;
mod background;
mod durable;
mod error;
mod front;
mod hosts;
mod password;
mod registry;
mod sessions;
mod signin;
pub mod store;

use nephele_protocol::activity::IdlePolicy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::tls::GatewayIdentity;
use crate::token::{SessionClaims, Signer, TokenError, Verifier};
pub use admin::ADMIN_KEY_FILE;
pub use front::Limits;
use front::Peer;
use nephele_api::admin::{EntryKind, EntrySpec};
use nephele_api::directory::{ApiError, GatewayInfo, PublicKey, SignIn, SignedIn};
use store::{Store, StoreError};

/// The tenant of user names given without `@tenant`.
pub const DEFAULT_TENANT: &str = "default";
/// The catalog entry every demo user gets.
pub const DEMO_DESKTOP: &str = "demo";
/// Most gateways listed to one client.
const MAX_LISTED: usize = 32;

/// Directory settings.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// TCP address for HTTPS.
    pub listen: SocketAddr,
    /// Where the database lives (and the administrator's key is written).
    pub state_dir: PathBuf,
    /// A PostgreSQL database (`postgres://…`) to keep the state in
    /// instead, shared with every directory given the same one.
    pub database: Option<String>,
    /// Certificate and key the directory presents.
    pub identity: GatewayIdentity,
    /// Interval gateways and hosts are told to heartbeat at; three missed and they leave the lists.
    pub heartbeat: Duration,
    /// Lifetime of session tokens.
    pub session_ttl: Duration,
    /// Lifetime of user tokens.
    pub user_ttl: Duration,
    /// When idle sessions are warned, paused and suspended.
    pub idle_policy: IdlePolicy,
    /// How long a session can be resumed with its resume token.
    pub resume_ttl: Duration,
    /// Connections and their timeouts.
    pub limits: Limits,
    /// Most picture pixels a second (width × height × frame rate) one
    /// session may stream, written into its token for its host to apply;
    /// `None`: the hosts' own caps alone.
    pub session_pixel_rate: Option<u64>,
}

impl DirectoryConfig {
    /// Defaults for everything but the essentials.
    pub fn new(listen: SocketAddr, state_dir: PathBuf, identity: GatewayIdentity) -> Self {
        Self {
            listen,
            state_dir,
            database: None,
            identity,
            heartbeat: Duration::from_secs(1),
            session_ttl: Duration::from_secs(600),
            user_ttl: Duration::from_secs(3600),
            idle_policy: IdlePolicy::default(),
            resume_ttl: Duration::from_secs(12 * 3600),
            limits: Limits::default(),
            session_pixel_rate: None,
        }
    }
}

/// Errors starting the directory.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing key is unusable.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// TLS set-up failed.
    #[error("directory TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding the listener failed.
    #[error("binding the directory on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The threads for unknown devices' password checks did not start.
    #[error("starting the directory's background threads: {0}")]
    Threads(std::io::Error),
}

struct Inner {
    store: Store,
    signer: Signer,
    verifier: Verifier,
    service_key: String,
    heartbeat: Duration,
    session_ttl: Duration,
    user_ttl: Duration,
    idle_policy: IdlePolicy,
    resume_ttl: Duration,
    session_pixel_rate: Option<u64>,
    // Failed sign-ins counted, and the password hashing gated.
    guard: signin::Guard,
    /// Where unknown devices' password checks run (as many threads as
    /// the gate lets through).
    background: background::Background,
}

impl Inner {
    fn ttl(&self) -> Duration {
        self.heartbeat * 3
    }

    /// Heard from since then (Unix ms): within the registry's ttl.
    fn live_since(&self) -> u64 {
        let ttl = u64::try_from(self.ttl().as_millis()).unwrap_or(u64::MAX);
        crate::token::unix_ms().saturating_sub(ttl)
    }

    /// The gateways listed to clients (heard from within the ttl), by id.
    fn live_gateways(&self) -> Result<Vec<GatewayInfo>, StoreError> {
        let mut list: Vec<GatewayInfo> = self
            .store
            .live_gateways(self.live_since())?
            .into_iter()
            .map(|g| g.info)
            .collect();
        list.truncate(MAX_LISTED);
        Ok(list)
    }
}

/// A running directory.
pub struct Directory {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    prune: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Directory {
    /// Opens the store and starts serving on the current tokio runtime.
    pub async fn start(cfg: DirectoryConfig) -> Result<Self, DirectoryError> {
        let store = open_store(&cfg.state_dir, cfg.database.as_deref())?;
        admin::ensure_key(&store, &cfg.state_dir)?;
        let signer = signer_of(&store)?;
        let service_key = store.service_key()?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hashing = cores.saturating_sub(1).max(1);
        let inner = Arc::new(Inner {
            verifier: signer.verifier(),
            signer,
            service_key,
            heartbeat: cfg.heartbeat,
            session_ttl: cfg.session_ttl,
            session_pixel_rate: cfg.session_pixel_rate,
            user_ttl: cfg.user_ttl,
            idle_policy: cfg.idle_policy,
            resume_ttl: cfg.resume_ttl,
            // Argon2 (19 MiB, tens of ms) as wide as the machine, and a
            // queue of a few rounds behind it.
            // (one core's worth less for everyone else: known devices have
            // a lane of their own).
            guard: signin::Guard::new(hashing, cores * 4),
            background: background::Background::start(hashing).map_err(DirectoryError::Threads)?,
            store,
        });
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cfg.identity.chain.clone(), cfg.identity.key.clone_key())?;
        let tcp = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| DirectoryError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = tcp.local_addr().map_err(|source| DirectoryError::Bind {
            addr: cfg.listen,
            source,
        })?;
        // Expired sessions are forgotten now and every ten minutes.
        let pruner = inner.clone();
        let prune = tokio::spawn(async move {
            loop {
                let store = pruner.clone();
                let res = tokio::task::spawn_blocking(move || {
                    store.store.prune_sessions(crate::token::unix_now())
                })
                .await;
                if let Ok(Err(e)) = res {
                    tracing::warn!(error = %e, "pruning expired sessions");
                }
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        front::serve(tcp, Arc::new(tls), router(inner.clone()), cfg.limits, rx);
        tracing::info!(%addr, "directory listening");
        Ok(Self {
            addr,
            inner,
            shutdown: Some(tx),
            prune,
        })
    }

    /// The HTTPS address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The secret gateways register with.
    pub fn service_key(&self) -> &str {
        &self.inner.service_key
    }

    /// Accounts, addresses and account-address pairs with failed sign-ins
    /// or attempts in flight.
    pub fn sign_in_counts(&self) -> usize {
        self.inner.guard.tracked()
    }

    /// Gateways listed to clients right now.
    pub fn live_gateways(&self) -> usize {
        self.inner.live_gateways().map_or(0, |g| g.len())
    }

    /// Desktop hosts enrolled and heard from lately.
    pub fn live_hosts(&self) -> usize {
        hosts::live(&self.inner).map_or(0, |h| h.len())
    }

    /// Verifier for the tokens this directory signs.
    pub fn verifier(&self) -> Verifier {
        self.inner.verifier.clone()
    }

    /// The key its tokens are checked with, base64url (what
    /// `/v1/public-key` publishes and hosts read from `token.pub`).
    pub fn public_key(&self) -> String {
        self.inner.signer.public_key_b64()
    }

    /// The verifier for the tokens of the directory keeping its state in
    /// `state_dir` (its signing key made there if new), without starting
    /// it: for hosts started beside it before it runs.
    pub fn token_verifier(
        state_dir: &std::path::Path,
        database: Option<&str>,
    ) -> Result<Verifier, DirectoryError> {
        Ok(signer_of(&open_store(state_dir, database)?)?.verifier())
    }

    /// Signs arbitrary claims with the directory's key (tests use it to make
    /// expired or misdirected tokens).
    pub fn sign(&self, claims: &SessionClaims) -> Result<String, TokenError> {
        self.inner.signer.sign(claims)
    }

    /// Creates or replaces a user who may open the demo desktop, and the
    /// demo desktop in their tenant's catalog.
    pub fn add_demo_user(&self, user_at_tenant: &str, password: &str) -> Result<(), StoreError> {
        let (user, tenant) = split_user(user_at_tenant);
        self.inner
            .store
            .ensure_tenant(tenant, crate::token::unix_now())?;
        self.inner.store.put_catalog(
            tenant,
            &EntrySpec {
                id: DEMO_DESKTOP.into(),
                name: "Demo desktop".into(),
                kind: EntryKind::Desktop,
                icon_png: None,
                command: Vec::new(),
                max_sessions: None,
            },
        )?;
        self.inner
            .store
            .put_user(tenant, user, password, &[DEMO_DESKTOP.into()])
    }

    /// Stops serving.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        self.prune.abort();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `name@tenant` → (`name`, `tenant`); a bare name is in [`DEFAULT_TENANT`].
pub fn split_user(s: &str) -> (&str, &str) {
    match s.rsplit_once('@') {
        Some((u, t)) if !t.is_empty() => (u, t),
        _ => (s, DEFAULT_TENANT),
    }
}

/// An error answer.
struct Fail(StatusCode, String);

/// An error answer that says when to come back (`Retry-After`).
struct Later(Fail, Duration);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl IntoResponse for Later {
    fn into_response(self) -> Response {
        let secs = self.1.as_secs().max(1).to_string();
        let mut r = self.0.into_response();
        if let Ok(v) = header::HeaderValue::from_str(&secs) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "directory store");
        let status = match e {
            // The disk or the database failing: it is reopened until it
            // works again, so asking again later is the way forward.
            StoreError::Db(_) | StoreError::Postgres(_) | StoreError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Fail(
            status,
            "the directory could not read or write its database; try again in a minute".into(),
        )
    }
}

/// 200 `{"ok": true}`, or 503 with what fails (the database not taking
/// writes) for load balancers and operators.
async fn health(State(inner): State<Arc<Inner>>) -> Response {
    let checked = tokio::task::spawn_blocking(move || inner.store.health()).await;
    match checked {
        Ok(Ok(())) => Json(serde_json::json!({"ok": true})).into_response(),
        Ok(Err(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ok": false, "database": why})),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

type ApiResult<T> = Result<T, Fail>;

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

fn user_of(inner: &Inner, headers: &HeaderMap) -> ApiResult<crate::token::UserClaims> {
    inner
        .verifier
        .user(bearer(headers))
        .map_err(|e| Fail(StatusCode::UNAUTHORIZED, format!("sign in again: {e}")))
}

/// Largest administrative request: an entry with its icon, base64.
const ADMIN_BODY: usize = 128 * 1024;

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/public-key", get(public_key))
        .route(
            "/v1/signin",
            post(sign_in).layer(DefaultBodyLimit::max(signin::MAX_BODY)),
        )
        .route("/v1/catalog", get(sessions::catalog))
        .route("/v1/sessions", post(sessions::create_session))
        .route("/v1/sessions/resume", post(sessions::resume_session))
        .route("/v1/sessions/end", post(sessions::end_session))
        .route("/v1/hosts", post(hosts::register))
        .route("/v1/hosts/{id}/heartbeat", post(hosts::heartbeat))
        .route("/v1/hosts/{id}", delete(hosts::deregister))
        .route(
            "/v1/hosts/{id}/apps/launch",
            post(apps::launch).layer(DefaultBodyLimit::max(apps::MAX_BODY)),
        )
        .route(
            "/v1/hosts/{id}/apps/profile",
            post(apps::save).layer(DefaultBodyLimit::max(apps::MAX_BODY)),
        )
        .route(
            "/v1/admin",
            post(admin::admin).layer(DefaultBodyLimit::max(ADMIN_BODY)),
        )
        .route("/v1/gateways", post(registry::register))
        .route("/v1/gateways/{id}/heartbeat", post(registry::heartbeat))
        .route("/v1/gateways/{id}", delete(registry::deregister))
        .with_state(inner)
}

async fn public_key(State(inner): State<Arc<Inner>>) -> Json<PublicKey> {
    Json(PublicKey {
        alg: "EdDSA".into(),
        public_key: inner.signer.public_key_b64(),
    })
}

/// A sign-in held back (429) or turned away busy (503) is answered after
/// this long: a guesser on a kept-alive connection then sends one try a
/// second, not thousands, and the machine stays free for real users.
const REFUSAL_DELAY: Duration = Duration::from_secs(1);

async fn sign_in(
    state: State<Arc<Inner>>,
    peer: ConnectInfo<Peer>,
    req: Json<SignIn>,
) -> Result<Json<SignedIn>, Response> {
    let r = check_sign_in(state, peer, req).await;
    if let Err(e) = &r
        && matches!(
            e.status(),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        )
    {
        tokio::time::sleep(REFUSAL_DELAY).await;
    }
    r
}

async fn check_sign_in(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Json(req): Json<SignIn>,
) -> Result<Json<SignedIn>, Response> {
    let refused = || {
        Fail(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        )
    };
    let (user, tenant) = split_user(&req.user);
    // A name no account can have is refused before it keys a count or
    // reaches the log, with the answer a wrong password gets.
    if store::check_name("user name", user).is_err() || store::check_name("tenant", tenant).is_err()
    {
        tracing::info!(%peer, name_bytes = req.user.len(), "sign-in with an impossible name refused");
        return Err(refused().into_response());
    }
    let (user, tenant) = (user.to_string(), tenant.to_string());
    let account = format!("{tenant}/{user}");
    // A device this account signed in from before has its own limits and
    // lane: guessers elsewhere cannot hold its owner out.
    let device = req
        .device
        .as_deref()
        .and_then(|d| inner.verifier.device(d).ok().map(|c| (d, c)))
        .filter(|(_, c)| c.sub == user && c.tenant == tenant)
        .map(|(d, c)| device_id(d, c.iat));
    let now = Instant::now();
    let attempt = match &device {
        Some(d) => inner.guard.begin_known(&account, d, now),
        None => inner.guard.begin(&account, peer.ip(), now),
    }
    .map_err(|r| refusal(r).into_response())?;
    let checked = check_password(&inner, &tenant, &user, req.password, device.is_some()).await;
    let outcome = match &checked {
        Ok(Some(_)) => signin::Outcome::Right,
        Ok(None) => signin::Outcome::Wrong,
        // Busy or broken: the password was not judged.
        Err(_) => signin::Outcome::Unchecked,
    };
    attempt.settle(outcome, Instant::now());
    let Some(rec) = checked.map_err(IntoResponse::into_response)? else {
        tracing::info!(%user, %tenant, %peer, "sign-in refused");
        return Err(refused().into_response());
    };
    if rec.disabled {
        tracing::info!(%user, %tenant, %peer, "sign-in to a disabled account refused");
        return Err(sessions::disabled().into_response());
    }
    let fail =
        |e: TokenError| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    let token = inner
        .signer
        .user_token(&tenant, &user, inner.user_ttl)
        .map_err(fail)?;
    match &device {
        Some(d) => tracing::info!(%user, %tenant, device = %d, "signed in from a known device"),
        None => tracing::info!(%user, %tenant, %peer, "signed in"),
    }
    let device = inner
        .signer
        .device_token(&tenant, &user, DEVICE_TTL)
        .map_err(fail)?;
    Ok(Json(SignedIn {
        token,
        user,
        tenant,
        expires_in_s: inner.user_ttl.as_secs(),
        device: Some(device),
    }))
}

/// How long a device token marks a device as known to its account.
const DEVICE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// A short name for the device a (verified) device token stands for, to
/// count its sign-ins under.
fn device_id(token: &str, issued: u64) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut h);
    format!("{issued}-{:016x}", h.finish())
}

/// The account's record if `password` is its password; Argon2 runs on a
/// blocking thread (tens of milliseconds of CPU) when the gate lets it.
async fn check_password(
    inner: &Arc<Inner>,
    tenant: &str,
    user: &str,
    password: String,
    known_device: bool,
) -> Result<Option<store::UserRecord>, Response> {
    let turn = inner
        .guard
        .hash_turn(known_device)
        .await
        .map_err(|r| refusal(r).into_response())?;
    let inner2 = inner.clone();
    let (u, t) = (user.to_string(), tenant.to_string());
    let check = move || inner2.store.verify_user(&t, &u, &password);
    // Known devices are checked at ordinary priority, the rest on the
    // threads the OS runs last.
    let checked = if known_device {
        tokio::task::spawn_blocking(check).await.ok()
    } else {
        inner.background.run(check).await
    };
    let rec = checked
        .ok_or_else(|| {
            Fail(StatusCode::INTERNAL_SERVER_ERROR, "sign-in failed".into()).into_response()
        })?
        .map_err(|e| Fail::from(e).into_response())?;
    drop(turn);
    Ok(rec)
}

fn refusal(r: signin::Refusal) -> Later {
    match r {
        signin::Refusal::Throttled(wait) => Later(
            Fail(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed sign-ins; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ),
            wait,
        ),
        signin::Refusal::Busy => Later(
            Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "the directory is busy; try again in a few seconds".into(),
            ),
            Duration::from_secs(2),
        ),
    }
}

/// The state in `database` (PostgreSQL) if given, else in `state_dir`'s
/// embedded database.
fn open_store(state_dir: &std::path::Path, database: Option<&str>) -> Result<Store, StoreError> {
    let Some(url) = database else {
        return Store::open(state_dir);
    };
    std::fs::create_dir_all(state_dir).map_err(|e| {
        StoreError::Invalid(format!(
            "cannot create the state directory {}: {e}",
            state_dir.display()
        ))
    })?;
    Store::open_url(url)
}

/// The store's token signing key, made on first use.
fn signer_of(store: &Store) -> Result<Signer, DirectoryError> {
    let pkcs8 = store.signing_key(|| {
        Signer::generate()
            .map(|(k, _)| k)
            .map_err(|e| StoreError::Invalid(e.to_string()))
    })?;
    Ok(Signer::from_pkcs8(&pkcs8)?)
}
