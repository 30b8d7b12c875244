//! The directory's administration API: `POST /v1/admin` with the
//! administrator's key as a bearer token and one [`AdminRequest`] as the
//! body; the answer is an [`AdminAnswer`]. One route taking named
//! operations (as cloud administration APIs do) keeps every change on one
//! path through the directory's audit log.

use serde::{Deserialize, Serialize};

use crate::client::{DirClientError, DirectoryClient};

/// What a catalog entry opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A whole desktop on a host.
    #[default]
    Desktop,
    /// One application, its own instance per session.
    App,
}

impl EntryKind {
    /// The word the catalog and the command line use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::App => "app",
        }
    }
}

/// A catalog entry as an administrator defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySpec {
    /// Stable id (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// What people see.
    pub name: String,
    /// A desktop or an application.
    #[serde(default)]
    pub kind: EntryKind,
    /// A PNG icon, base64 (at most [`MAX_ICON_BYTES`] before encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_png: Option<String>,
    /// For an application: the program and its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Most sessions of this entry open at once in the tenant; `None`: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
}

/// Largest icon the directory keeps.
pub const MAX_ICON_BYTES: usize = 64 * 1024;

/// One administrative operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum AdminRequest {
    /// Adds a tenant (an organisation whose users and catalog are apart).
    TenantAdd {
        /// Id, used as `user@tenant`.
        tenant: String,
        /// What people see.
        name: String,
    },
    /// Lists the tenants.
    TenantList,
    /// Adds a user (refused if the name is taken).
    UserAdd {
        /// Tenant.
        tenant: String,
        /// User name.
        user: String,
        /// The first password.
        password: String,
        /// Catalog entries the user may open.
        #[serde(default)]
        grants: Vec<String>,
    },
    /// Sets a user's password.
    UserPassword {
        /// Tenant.
        tenant: String,
        /// User name.
        user: String,
        /// The new password.
        password: String,
    },
    /// Disables a user (no sign-in, their sessions end) or enables them.
    UserDisable {
        /// Tenant.
        tenant: String,
        /// User name.
        user: String,
        /// Disabled or not.
        disabled: bool,
    },
    /// Removes a user and ends their sessions.
    UserRemove {
        /// Tenant.
        tenant: String,
        /// User name.
        user: String,
    },
    /// Lists a tenant's users.
    UserList {
        /// Tenant.
        tenant: String,
    },
    /// Adds or replaces a catalog entry.
    EntryPut {
        /// Tenant.
        tenant: String,
        /// The entry.
        entry: EntrySpec,
    },
    /// Removes a catalog entry (and every grant of it).
    EntryRemove {
        /// Tenant.
        tenant: String,
        /// Entry id.
        id: String,
    },
    /// Lists a tenant's catalog.
    EntryList {
        /// Tenant.
        tenant: String,
    },
    /// Lets a user open an entry.
    Grant {
        /// Tenant.
        tenant: String,
        /// User name.
        user: String,
        /// Entry id.
        entry: String,
    },
    /// Takes an entry from a user.
    Revoke {
        /// Tenant.
        tenant: String,
        /// User name.
        user: String,
        /// Entry id.
        entry: String,
    },
    /// Lists registered gateways and whether they answer.
    GatewayList,
    /// Forgets a gateway and the key it was issued.
    GatewayRemove {
        /// Gateway id.
        id: String,
    },
    /// Lists the desktop hosts sessions go to.
    HostList,
    /// Forgets a host and the key it was issued (one taken out of service).
    HostRemove {
        /// Host id.
        id: String,
    },
    /// Lists open sessions.
    SessionList {
        /// Only this tenant's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    /// Ends a session: no token of it opens the desktop again.
    SessionEnd {
        /// Session id.
        id: String,
    },
    /// A message clients show to a tenant's users, or one user.
    NoticeAdd {
        /// Tenant.
        tenant: String,
        /// Only this user; `None`: everyone in the tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// The message.
        message: String,
        /// Shown until then, Unix seconds; `None`: until removed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_unix: Option<u64>,
    },
    /// Lists notices.
    NoticeList,
    /// Removes a notice.
    NoticeRemove {
        /// Notice id.
        id: String,
    },
    /// The audit log, newest first.
    Audit {
        /// Most records.
        limit: u32,
    },
    /// Replaces the administrator's key; the answer's message is the new key.
    KeyRotate,
}

impl AdminRequest {
    /// Whether the operation changes something (and so goes in the audit log).
    pub fn changes(&self) -> bool {
        !matches!(
            self,
            Self::TenantList
                | Self::UserList { .. }
                | Self::EntryList { .. }
                | Self::GatewayList
                | Self::HostList
                | Self::SessionList { .. }
                | Self::NoticeList
                | Self::Audit { .. }
        )
    }

    /// The request as the audit log keeps it: passwords and icons left out.
    pub fn redacted(&self) -> Self {
        let mut r = self.clone();
        match &mut r {
            Self::UserAdd { password, .. } | Self::UserPassword { password, .. } => {
                *password = "(not kept)".into();
            }
            Self::EntryPut { entry, .. } if entry.icon_png.is_some() => {
                entry.icon_png = Some("(not kept)".into());
            }
            _ => {}
        }
        r
    }
}

/// What an operation answers: what was done, and a table for lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AdminAnswer {
    /// What was done, in words.
    pub message: String,
    /// Column names of a listing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Its rows, one cell per column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<Vec<String>>,
}

impl DirectoryClient {
    /// Runs one administrative operation with the administrator's key.
    pub fn admin(&self, key: &str, req: &AdminRequest) -> Result<AdminAnswer, DirClientError> {
        let r = self.post("/v1/admin", Some(key), req)?;
        self.need(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_named_operations_and_lose_their_secrets_in_the_log() {
        let req = AdminRequest::UserAdd {
            tenant: "acme".into(),
            user: "alice".into(),
            password: "hunter2".into(),
            grants: vec!["cad".into()],
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["op"], "user-add");
        assert_eq!(serde_json::from_value::<AdminRequest>(json).unwrap(), req);
        assert!(req.changes());
        let kept = serde_json::to_string(&req.redacted()).unwrap();
        assert!(
            !kept.contains("hunter2") && kept.contains("alice"),
            "{kept}"
        );
        assert!(!AdminRequest::Audit { limit: 5 }.changes());
        let bad = serde_json::from_str::<AdminRequest>(r#"{"op":"drop-everything"}"#);
        assert!(bad.is_err());
    }
}
