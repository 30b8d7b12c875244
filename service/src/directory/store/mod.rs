//! The directory's state: in an embedded database by default (redb: one
//! file, ACID transactions, crash-safe, pure Rust), or in PostgreSQL
//! (`--database`, [`Store::open_url`]) shared by several directories. The
//! same tables on either engine ([`engine`]).
//!
//! Tables hold JSON values (raw bytes for keys and profiles) under string
//! keys:
//!
//! | table | key | value |
//! |---|---|---|
//! | `users` | `tenant/user` | [`UserRecord`] (Argon2id PHC hash, allowed desktops) |
//! | `catalog` | `tenant/entry` | [`EntrySpec`] (what the administrator defined) |
//! | `tenants` | tenant | [`TenantRecord`] |
//! | `notices` | notice id | [`NoticeRecord`] |
//! | `audit` | `unix-ms-random` | [`AuditRecord`] (every administrative change) |
//! | `sessions` | session id | [`SessionRecord`] |
//! | `gateways` | gateway id | [`GatewayInfo`] as last registered |
//! | `gateway_keys` | gateway id | SHA-256 of the key issued to that gateway |
//! | `hosts` | host id | [`HostInfo`] as last enrolled |
//! | `host_keys` | host id | SHA-256 of the key issued to that host |
//! | `profiles` | `tenant/user` | the user's application profile (tar) |
//! | `meta` | name | the token signing key, the gateways' service key, the administrator's key's hash |
//! | `live_gateways`, `live_hosts` | id | [`LiveGateway`], [`LiveHost`]: heard from lately ([`live`]) |
//! | `ended` | session id | when an administrator ended it (its host not told yet) |

use std::path::Path;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use redb::Database;
use serde::Serialize;
use serde::de::DeserializeOwned;

use nephele_api::admin::EntrySpec;
use nephele_api::directory::{CatalogEntry, GatewayInfo, HostInfo};

use super::durable::{Durable, Open};
pub use super::error::StoreError;
use engine::{Engine, Keep, Table, Write};

mod admin;
mod engine;
mod kv;
mod live;
mod pg;
pub use admin::{AuditRecord, NoticeRecord, TenantRecord};
pub use live::{LiveGateway, LiveHost};

const USERS: Table = "users";
const CATALOG: Table = "catalog";
const SESSIONS: Table = "sessions";
const GATEWAYS: Table = "gateways";
const GATEWAY_KEYS: Table = "gateway_keys";
const META: Table = "meta";
const TENANTS: Table = "tenants";
const NOTICES: Table = "notices";
const AUDIT: Table = "audit";
const HOSTS: Table = "hosts";
const HOST_KEYS: Table = "host_keys";
/// Users' application profiles (tar archives), by `tenant/user`.
const PROFILES: Table = "profiles";
/// Gateways heard from lately ([`LiveGateway`]), by id.
const LIVE_GATEWAYS: Table = "live_gateways";
/// Hosts heard from lately ([`LiveHost`]), by id.
const LIVE_HOSTS: Table = "live_hosts";
/// Sessions an administrator ended, until their host is told: when (Unix ms).
const ENDED: Table = "ended";

/// The directory's two lists of members, each with the keys it issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roster {
    /// Gateways.
    Gateways,
    /// Desktop hosts.
    Hosts,
}

impl Roster {
    /// Its members' table and their keys' table.
    fn tables(self) -> (Table, Table) {
        match self {
            Self::Gateways => (GATEWAYS, GATEWAY_KEYS),
            Self::Hosts => (HOSTS, HOST_KEYS),
        }
    }

    /// A member's name, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Self::Gateways => "gateway id",
            Self::Hosts => "host id",
        }
    }
}

/// The database file inside `--state-dir`.
pub const DB_FILE: &str = "directory.redb";

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRecord {
    /// Tenant.
    pub tenant: String,
    /// User name, unique in the tenant.
    pub user: String,
    /// Argon2id hash in PHC string form (salt and parameters included).
    pub password_hash: String,
    /// Desktop ids this user may open.
    pub desktops: Vec<String>,
    /// Disabled by an administrator: no sign-in, no session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// A session the directory created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    /// Session id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// User.
    pub user: String,
    /// Desktop.
    pub desktop: String,
    /// Assigned host.
    pub host: String,
    /// The backup host its state is replicated to.
    #[serde(default)]
    pub backup: Option<String>,
    /// Created, Unix seconds.
    pub created: u64,
    /// Created, Unix milliseconds: orders sessions made within a second.
    #[serde(default)]
    pub created_ms: u64,
    /// Until when it can be resumed, Unix seconds.
    pub expires: u64,
    /// The generation of the one resume token that is good now.
    #[serde(default)]
    pub resume_generation: u32,
}

/// The directory's database: redb, or PostgreSQL (see [`Store::open_url`]).
#[derive(Debug)]
pub struct Store {
    db: Engine,
}

/// Every table.
const TABLES: [Table; 15] = [
    USERS,
    CATALOG,
    SESSIONS,
    GATEWAYS,
    GATEWAY_KEYS,
    META,
    TENANTS,
    NOTICES,
    AUDIT,
    HOSTS,
    HOST_KEYS,
    PROFILES,
    LIVE_GATEWAYS,
    LIVE_HOSTS,
    ENDED,
];

fn key(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

/// Names are path-like keys: keep them simple so keys cannot collide.
pub fn check_name(what: &str, v: &str) -> Result<(), StoreError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} `{v}` must be 1–64 letters, digits, `-`, `_` or `.`"
        )))
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Invalid(format!(
                "cannot create the state directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(DB_FILE);
        let existed = path.exists();
        let file = path.clone();
        let store = Self::open_with(Box::new(move || Database::create(&file)))?;
        // Signing key, service key and password hashes: the owner's alone.
        let was_open = nephele_platform::fs::make_private(&path)
            .map_err(|e| StoreError::Invalid(format!("cannot restrict {}: {e}", path.display())))?;
        if was_open && existed {
            tracing::warn!(path = %path.display(), "the database was readable by other users; it is the owner's alone now");
        }
        Ok(store)
    }

    /// Opens the directory's state on the PostgreSQL server at `url`
    /// (its schema migrated first), shared with every directory given
    /// the same `url`.
    pub fn open_url(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            db: Engine::Pg(Box::new(pg::Pg::open(url)?)),
        })
    }

    /// Opens the database with `open` (again after a failure), creating
    /// every table, so reads never meet a missing one.
    pub(super) fn open_with(open: Open) -> Result<Self, StoreError> {
        let store = Self {
            db: Engine::Redb(Durable::new(open)?),
        };
        store.db.create_tables(&TABLES)?;
        Ok(store)
    }

    /// Whether the database takes writes: after a failure, a small write is
    /// tried (the database reopened first); the failure if it still fails.
    pub fn health(&self) -> Result<(), String> {
        if self.db.fault().is_none() {
            return Ok(());
        }
        let now = crate::token::unix_now().to_be_bytes();
        self.put_raw(META, "health_probe", &now)
            .map_err(|e| e.to_string())
    }

    fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<(), StoreError> {
        self.put_raw(table, key, &encode(key, value)?)
    }

    fn put_raw(&self, table: Table, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.db.put(table, key, bytes, Keep::Durable)
    }

    fn get_raw(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(table, key)
    }

    fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, StoreError> {
        self.get_raw(table, key)?
            .map(|b| decode(key, &b))
            .transpose()
    }

    fn all<T: DeserializeOwned>(&self, table: Table, prefix: &str) -> Result<Vec<T>, StoreError> {
        self.db
            .scan(table, prefix)?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    /// Reads, changes and writes back the record under `key` in one
    /// transaction: `change` gets it (or `None`) and says what to store
    /// (`None`: remove it).
    fn update<T: Serialize + DeserializeOwned, R>(
        &self,
        table: Table,
        key: &str,
        change: impl FnOnce(Option<T>) -> Result<(Option<T>, R), StoreError>,
    ) -> Result<R, StoreError> {
        self.update_as(table, key, Keep::Durable, change)
    }

    /// [`Store::update`] kept as `keep` says.
    fn update_as<T: Serialize + DeserializeOwned, R>(
        &self,
        table: Table,
        key: &str,
        keep: Keep,
        change: impl FnOnce(Option<T>) -> Result<(Option<T>, R), StoreError>,
    ) -> Result<R, StoreError> {
        self.db.update(table, key, keep, |old| {
            let old = old.map(|b| decode(key, &b)).transpose()?;
            let (new, out) = change(old)?;
            let write = match new {
                Some(v) => Write::Put(encode(key, &v)?),
                None => Write::Remove,
            };
            Ok((write, out))
        })
    }

    /// A secret stored under `name` in the meta table, made by `make` on
    /// first use (by one directory, when several share the database).
    fn meta_or_init(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Vec<u8>, StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        if let Some(v) = self.get_raw(META, name)? {
            return Ok(v);
        }
        self.db.update(META, name, Keep::Durable, |old| match old {
            Some(v) => Ok((Write::Keep, v)),
            None => {
                let v = make()?;
                Ok((Write::Put(v.clone()), v))
            }
        })
    }

    /// The token signing key (Ed25519 PKCS#8), created on first use.
    pub fn signing_key(
        &self,
        generate: impl FnOnce() -> Result<Vec<u8>, StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        self.meta_or_init("signing_key", generate)
    }

    /// The secret gateways present to register, created on first use.
    pub fn service_key(&self) -> Result<String, StoreError> {
        let raw = self.meta_or_init("service_key", || {
            let mut b = [0u8; 32];
            OsRng.fill_bytes(&mut b);
            Ok(b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .into_bytes())
        })?;
        String::from_utf8(raw).map_err(|e| StoreError::Invalid(format!("service key: {e}")))
    }

    /// Creates or replaces a user, hashing the password with Argon2id.
    pub fn put_user(
        &self,
        tenant: &str,
        user: &str,
        password: &str,
        desktops: &[String],
    ) -> Result<(), StoreError> {
        check_name("tenant", tenant)?;
        check_name("user name", user)?;
        self.put(
            USERS,
            &key(tenant, user),
            &UserRecord {
                tenant: tenant.into(),
                user: user.into(),
                password_hash: hash_password(password)?,
                desktops: desktops.to_vec(),
                disabled: false,
            },
        )
    }

    /// The user if the password is right. Unknown users cost the same as a
    /// wrong password, so timing does not tell which names exist.
    pub fn verify_user(
        &self,
        tenant: &str,
        user: &str,
        password: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let rec: Option<UserRecord> =
            if check_name("tenant", tenant).is_ok() && check_name("user name", user).is_ok() {
                self.get(USERS, &key(tenant, user))?
            } else {
                None
            };
        // A fixed hash of a random password for unknown users.
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J0eB0kzmCbhVHUO6t0DzTrwBKq1X8D5N0aZhNb0FYXc";
        let hash = rec.as_ref().map_or(DUMMY, |r| r.password_hash.as_str());
        let parsed = PasswordHash::new(hash).map_err(|e| StoreError::Hash(e.to_string()))?;
        let ok = super::password::verify(password.as_bytes(), &parsed);
        Ok(rec.filter(|_| ok))
    }

    /// A user's record.
    pub fn user(&self, tenant: &str, user: &str) -> Result<Option<UserRecord>, StoreError> {
        self.get(USERS, &key(tenant, user))
    }

    /// Adds or replaces a catalog entry of a tenant.
    pub fn put_catalog(&self, tenant: &str, entry: &EntrySpec) -> Result<(), StoreError> {
        check_name("tenant", tenant)?;
        check_name("entry id", &entry.id)?;
        self.put(CATALOG, &key(tenant, &entry.id), entry)
    }

    /// The tenant's catalog as its administrators defined it.
    pub fn entries(&self, tenant: &str) -> Result<Vec<EntrySpec>, StoreError> {
        self.all(CATALOG, &format!("{tenant}/"))
    }

    /// One entry of a tenant's catalog.
    pub fn entry(&self, tenant: &str, id: &str) -> Result<Option<EntrySpec>, StoreError> {
        self.get(CATALOG, &key(tenant, id))
    }

    /// The tenant's catalog entries among `allowed` ids, as users see them.
    pub fn catalog(
        &self,
        tenant: &str,
        allowed: &[String],
    ) -> Result<Vec<CatalogEntry>, StoreError> {
        let mut all = self.entries(tenant)?;
        all.retain(|e| allowed.contains(&e.id));
        Ok(all
            .into_iter()
            .map(|e| CatalogEntry {
                id: e.id,
                name: e.name,
                kind: e.kind.as_str().into(),
                open: None,
            })
            .collect())
    }

    /// Records a session.
    pub fn put_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.put(SESSIONS, &s.id, s)
    }

    /// A recorded session.
    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.get(SESSIONS, id)
    }

    /// Every session still open at `unix` (not ended, not expired), newest
    /// first.
    pub fn all_open_sessions(&self, unix: u64) -> Result<Vec<SessionRecord>, StoreError> {
        let mut open: Vec<SessionRecord> = self.all(SESSIONS, "")?;
        open.retain(|s| s.expires >= unix);
        open.sort_by_key(|s| std::cmp::Reverse((s.created, s.created_ms)));
        Ok(open)
    }

    /// The user's sessions still open at `unix` (not ended, not expired),
    /// newest first.
    pub fn open_sessions(
        &self,
        tenant: &str,
        user: &str,
        unix: u64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut open = self.all_open_sessions(unix)?;
        open.retain(|s| s.tenant == tenant && s.user == user);
        Ok(open)
    }

    /// Uses resume token `generation` of session `id`, in one transaction:
    /// the session with the next generation recorded, or `None` if there is
    /// no such session or that token was used already.
    pub fn use_resume(
        &self,
        id: &str,
        generation: u32,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.update(SESSIONS, id, |old: Option<SessionRecord>| match old {
            Some(mut rec) if rec.resume_generation == generation => {
                rec.resume_generation = generation.wrapping_add(1);
                Ok((Some(rec.clone()), Some(rec)))
            }
            other => Ok((other, None)),
        })
    }

    /// Forgets a session: its resume tokens open nothing any more.
    pub fn remove_session(&self, id: &str) -> Result<bool, StoreError> {
        self.db.remove(&[(SESSIONS, id)], Keep::Durable)
    }

    /// Forgets sessions whose tokens expired before `unix`; returns how many.
    pub fn prune_sessions(&self, unix: u64) -> Result<usize, StoreError> {
        let expired: Vec<String> = self
            .all::<SessionRecord>(SESSIONS, "")?
            .into_iter()
            .filter(|s| s.expires < unix)
            .map(|s| s.id)
            .collect();
        for id in &expired {
            self.remove_session(id)?;
        }
        Ok(expired.len())
    }

    /// Records a gateway's registration.
    pub fn put_gateway(&self, g: &GatewayInfo) -> Result<(), StoreError> {
        check_name("gateway id", &g.id)?;
        self.put(GATEWAYS, &g.id, g)
    }

    /// The hash of the key issued to member `id` of `roster`, if one was.
    pub fn key_hash(&self, roster: Roster, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(roster.tables().1, id)
    }

    /// Records the hash of the key issued to member `id` of `roster`
    /// (replacing any earlier one).
    pub fn put_key_hash(&self, roster: Roster, id: &str, hash: &[u8]) -> Result<(), StoreError> {
        check_name(roster.what(), id)?;
        self.put_raw(roster.tables().1, id, hash)
    }

    /// Forgets a gateway or host, the key it was issued and its place in
    /// the live list, in one transaction.
    pub fn remove_member(&self, roster: Roster, id: &str) -> Result<(), StoreError> {
        let (info, keys) = roster.tables();
        self.db
            .remove(
                &[(info, id), (keys, id), (roster.live_table(), id)],
                Keep::Durable,
            )
            .map(drop)
    }

    /// Records a host's enrolment.
    pub fn put_host(&self, h: &HostInfo) -> Result<(), StoreError> {
        check_name("host id", &h.id)?;
        check_name("site", &h.site)?;
        self.put(HOSTS, &h.id, h)
    }

    /// Every enrolled host.
    pub fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        self.all(HOSTS, "")
    }

    /// Every registered gateway.
    pub fn gateways(&self) -> Result<Vec<GatewayInfo>, StoreError> {
        self.all(GATEWAYS, "")
    }

    /// A user's application profile, as their last session left it.
    pub fn profile(&self, tenant: &str, user: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(PROFILES, &key(tenant, user))
    }

    /// Keeps a user's application profile (replacing the one before).
    pub fn put_profile(&self, tenant: &str, user: &str, tar: &[u8]) -> Result<(), StoreError> {
        self.put_raw(PROFILES, &key(tenant, user), tar)
    }
}

/// A stored JSON value read back.
fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.into(),
        source,
    })
}

/// A value as it is stored.
fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Corrupt {
        key: key.into(),
        source,
    })
}

/// An Argon2id hash (the crate's default parameters: 19 MiB, two passes,
/// one lane) of `password` with a fresh salt, in PHC string form.
fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| StoreError::Hash(e.to_string()))?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("nephele-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn users_survive_reopening_and_only_the_right_password_signs_in() {
        let dir = scratch("users");
        {
            let s = Store::open(&dir).unwrap();
            s.put_user("acme", "alice", "correct horse", &["demo".into()])
                .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let rec = s
            .verify_user("acme", "alice", "correct horse")
            .unwrap()
            .unwrap();
        assert!(rec.password_hash.starts_with("$argon2id$"));
        assert!(!rec.password_hash.contains("correct horse"));
        assert_eq!(s.verify_user("acme", "alice", "wrong").unwrap(), None);
        assert_eq!(
            s.verify_user("other", "alice", "correct horse").unwrap(),
            None
        );
        assert_eq!(s.verify_user("acme", "bob", "correct horse").unwrap(), None);
        assert!(s.put_user("acme", "../x", "p", &[]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn catalog_is_per_tenant_and_filtered_by_the_user_grant() {
        let dir = scratch("catalog");
        let s = Store::open(&dir).unwrap();
        let entry = |id: &str| EntrySpec {
            id: id.into(),
            name: id.to_uppercase(),
            kind: nephele_api::admin::EntryKind::Desktop,
            icon_png: None,
            command: Vec::new(),
            max_sessions: None,
        };
        s.put_catalog("acme", &entry("demo")).unwrap();
        s.put_catalog("acme", &entry("cad")).unwrap();
        s.put_catalog("acme2", &entry("other")).unwrap();
        let got = s.catalog("acme", &["demo".into(), "other".into()]).unwrap();
        let seen = CatalogEntry {
            id: "demo".into(),
            name: "DEMO".into(),
            kind: "desktop".into(),
            open: None,
        };
        assert_eq!(got, vec![seen]);
        let session = |id: &str, expires| SessionRecord {
            id: id.into(),
            tenant: "acme".into(),
            user: "alice".into(),
            desktop: "demo".into(),
            host: "127.0.0.1:7400".into(),
            backup: None,
            created: 0,
            created_ms: 0,
            expires,
            resume_generation: 0,
        };
        s.put_session(&session("old", 100)).unwrap();
        s.put_session(&session("new", 300)).unwrap();
        assert_eq!(s.prune_sessions(200).unwrap(), 1);
        assert!(s.session("old").unwrap().is_none());
        assert_eq!(s.session("new").unwrap(), Some(session("new", 300)));
        let key1 = s.signing_key(|| Ok(vec![1, 2, 3])).unwrap();
        let key2 = s.signing_key(|| Ok(vec![9])).unwrap();
        assert_eq!(key1, key2);
        assert_eq!(s.service_key().unwrap(), s.service_key().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn health_says_what_fails_until_a_write_goes_through() {
        let dir = scratch("health");
        std::fs::create_dir_all(&dir).unwrap();
        let (open, full) = super::super::durable::test_disk::opener(&dir.join(DB_FILE));
        let s = Store::open_with(open).unwrap();
        assert_eq!(s.health(), Ok(()));
        full.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(s.put_user("acme", "bob", "pw", &[]).is_err());
        // Until there is room the health check's own write fails, and says so.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(s.health().is_err());
        full.store(false, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(s.health(), Ok(()));
        s.put_user("acme", "bob", "pw", &[]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
