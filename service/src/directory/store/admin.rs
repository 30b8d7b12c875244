//! What administrators change in the store: tenants, accounts, the
//! catalog, notices, and the audit log of it all.

use super::engine::Keep;
use super::{
    AUDIT, CATALOG, NOTICES, PROFILES, SESSIONS, Store, StoreError, TENANTS, USERS, UserRecord,
    check_name, hash_password, key,
};

/// A tenant: an organisation whose users and catalog are kept apart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantRecord {
    /// Id, as in `user@tenant`.
    pub id: String,
    /// What people see.
    pub name: String,
    /// Added, Unix seconds.
    pub created: u64,
}

/// A message for a tenant's users, or one user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoticeRecord {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Only this user, or everyone in the tenant.
    pub user: Option<String>,
    /// The message.
    pub message: String,
    /// Posted, Unix seconds.
    pub since: u64,
    /// Shown until then, Unix seconds.
    pub until: Option<u64>,
}

/// One administrative change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Who: the administrator's key by its fingerprint.
    pub actor: String,
    /// From which address.
    pub from: String,
    /// The operation, secrets left out (JSON).
    pub op: serde_json::Value,
    /// `ok`, or why it was refused.
    pub outcome: String,
}

/// Most characters of a notice.
pub const MAX_NOTICE: usize = 2000;

impl Store {
    /// Adds a tenant; refused if the id is taken.
    pub fn add_tenant(&self, id: &str, name: &str, now: u64) -> Result<(), StoreError> {
        check_name("tenant", id)?;
        self.update(TENANTS, id, |old: Option<TenantRecord>| match old {
            Some(_) => Err(StoreError::Invalid(format!("tenant `{id}` exists already"))),
            None => Ok((
                Some(TenantRecord {
                    id: id.into(),
                    name: name.into(),
                    created: now,
                }),
                (),
            )),
        })
    }

    /// Records tenant `id` if it is not yet (for demo users).
    pub fn ensure_tenant(&self, id: &str, now: u64) -> Result<(), StoreError> {
        check_name("tenant", id)?;
        self.update(TENANTS, id, |old: Option<TenantRecord>| {
            let rec = old.unwrap_or_else(|| TenantRecord {
                id: id.into(),
                name: id.into(),
                created: now,
            });
            Ok((Some(rec), ()))
        })
    }

    /// A tenant.
    pub fn tenant(&self, id: &str) -> Result<Option<TenantRecord>, StoreError> {
        self.get(TENANTS, id)
    }

    /// Every tenant.
    pub fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.all(TENANTS, "")
    }

    /// Adds a user; refused if the name is taken in the tenant.
    pub fn add_user(
        &self,
        tenant: &str,
        user: &str,
        password: &str,
        grants: &[String],
    ) -> Result<(), StoreError> {
        check_name("tenant", tenant)?;
        check_name("user name", user)?;
        let password_hash = hash_password(password)?;
        self.update(USERS, &key(tenant, user), |old: Option<UserRecord>| {
            if old.is_some() {
                return Err(StoreError::Invalid(format!(
                    "user `{user}@{tenant}` exists already"
                )));
            }
            let rec = UserRecord {
                tenant: tenant.into(),
                user: user.into(),
                password_hash,
                desktops: grants.to_vec(),
                disabled: false,
            };
            Ok((Some(rec), ()))
        })
    }

    /// Changes an existing user with `change`; says so if there is none.
    pub fn change_user(
        &self,
        tenant: &str,
        user: &str,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<UserRecord, StoreError> {
        self.update(USERS, &key(tenant, user), |old: Option<UserRecord>| {
            let mut rec = old.ok_or_else(|| {
                StoreError::Invalid(format!("there is no user `{user}@{tenant}`"))
            })?;
            change(&mut rec);
            Ok((Some(rec.clone()), rec))
        })
    }

    /// Sets a user's password.
    pub fn set_password(&self, tenant: &str, user: &str, password: &str) -> Result<(), StoreError> {
        let hash = hash_password(password)?;
        self.change_user(tenant, user, |u| u.password_hash = hash)
            .map(drop)
    }

    /// Removes a user and their application profile; whether there was one.
    pub fn remove_user(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        let k = key(tenant, user);
        self.db.remove(
            &[(USERS, k.as_str()), (PROFILES, k.as_str())],
            Keep::Durable,
        )
    }

    /// A tenant's users.
    pub fn users(&self, tenant: &str) -> Result<Vec<UserRecord>, StoreError> {
        self.all(USERS, &format!("{tenant}/"))
    }

    /// Removes a catalog entry and every grant of it; whether there was one.
    pub fn remove_entry(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let existed = self.update(
            CATALOG,
            &key(tenant, id),
            |old: Option<serde_json::Value>| Ok((None, old.is_some())),
        )?;
        for u in self.users(tenant)? {
            if u.desktops.iter().any(|d| d == id) {
                self.change_user(tenant, &u.user, |r| r.desktops.retain(|d| d != id))?;
            }
        }
        Ok(existed)
    }

    /// Forgets every session of `tenant`'s `user`; their ids.
    pub fn end_sessions_of(&self, tenant: &str, user: &str) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = self
            .all::<super::SessionRecord>(SESSIONS, "")?
            .into_iter()
            .filter(|s| s.tenant == tenant && s.user == user)
            .map(|s| s.id)
            .collect();
        for id in &ids {
            self.remove_session(id)?;
        }
        Ok(ids)
    }

    /// Adds a notice.
    pub fn put_notice(&self, n: &NoticeRecord) -> Result<(), StoreError> {
        check_name("tenant", &n.tenant)?;
        if let Some(u) = &n.user {
            check_name("user name", u)?;
        }
        if n.message.trim().is_empty() || n.message.chars().count() > MAX_NOTICE {
            return Err(StoreError::Invalid(format!(
                "a notice says something, in at most {MAX_NOTICE} characters"
            )));
        }
        self.put(NOTICES, &n.id, n)
    }

    /// Every notice, newest first.
    pub fn notices(&self) -> Result<Vec<NoticeRecord>, StoreError> {
        let mut all: Vec<NoticeRecord> = self.all(NOTICES, "")?;
        all.sort_by_key(|n| std::cmp::Reverse(n.since));
        Ok(all)
    }

    /// The notices `user` of `tenant` is shown at `unix`, newest first.
    pub fn notices_for(
        &self,
        tenant: &str,
        user: &str,
        unix: u64,
    ) -> Result<Vec<NoticeRecord>, StoreError> {
        let mut all = self.notices()?;
        all.retain(|n| {
            n.tenant == tenant
                && n.user.as_deref().is_none_or(|u| u == user)
                && n.until.is_none_or(|t| t >= unix)
        });
        Ok(all)
    }

    /// Removes a notice; whether there was one.
    pub fn remove_notice(&self, id: &str) -> Result<bool, StoreError> {
        self.update(NOTICES, id, |old: Option<NoticeRecord>| {
            Ok((None, old.is_some()))
        })
    }

    /// Appends to the audit log.
    pub fn audit(&self, rec: &AuditRecord) -> Result<(), StoreError> {
        let mut salt = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
        let k = format!("{:016}-{:08x}", rec.at_ms, u32::from_be_bytes(salt));
        self.put(AUDIT, &k, rec)
    }

    /// The newest `limit` audit records, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.db
            .last(AUDIT, limit)?
            .iter()
            .map(|(k, v)| super::decode(k, v))
            .collect()
    }

    /// The administrator's key's hash, if one was made.
    pub fn admin_key_hash(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(super::META, "admin_key_hash")
    }

    /// Records the hash of the administrator's key, replacing any earlier one.
    pub fn put_admin_key_hash(&self, hash: &[u8]) -> Result<(), StoreError> {
        self.put_raw(super::META, "admin_key_hash", hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_change_in_place_and_the_audit_log_reads_newest_first() {
        let dir = std::env::temp_dir().join(format!("nephele-store-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir).unwrap();
        s.add_tenant("acme", "Acme", 1).unwrap();
        assert!(s.add_tenant("acme", "Again", 2).is_err());
        s.ensure_tenant("acme", 3).unwrap();
        assert_eq!(s.tenant("acme").unwrap().unwrap().name, "Acme");
        s.add_user("acme", "alice", "one", &["cad".into()]).unwrap();
        assert!(s.add_user("acme", "alice", "two", &[]).is_err());
        s.set_password("acme", "alice", "three").unwrap();
        assert!(s.verify_user("acme", "alice", "one").unwrap().is_none());
        assert!(s.verify_user("acme", "alice", "three").unwrap().is_some());
        assert!(s.set_password("acme", "nobody", "x").is_err());
        let u = s
            .change_user("acme", "alice", |u| u.disabled = true)
            .unwrap();
        assert!(u.disabled);
        assert!(s.remove_entry("acme", "cad").is_ok());
        assert!(
            s.user("acme", "alice")
                .unwrap()
                .unwrap()
                .desktops
                .is_empty()
        );
        assert!(s.remove_user("acme", "alice").unwrap());
        assert!(!s.remove_user("acme", "alice").unwrap());
        for (i, outcome) in ["ok", "refused"].iter().enumerate() {
            s.audit(&AuditRecord {
                at_ms: 1000 + i as u64,
                actor: "admin".into(),
                from: "127.0.0.1".into(),
                op: serde_json::json!({ "op": i }),
                outcome: (*outcome).into(),
            })
            .unwrap();
        }
        let log = s.audit_log(10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].outcome, "refused");
        assert_eq!(s.audit_log(1).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
