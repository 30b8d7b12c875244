//! The directory store's errors, shared by the store and its database
//! handle.

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("directory database: {0}")]
    Db(#[from] redb::Error),
    /// A stored value could not be read back.
    #[error("directory database holds a bad record under {key}: {source}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// Password hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// A name that cannot be stored.
    #[error("{0}")]
    Invalid(String),
    /// PostgreSQL failed or refused.
    #[error("directory database (PostgreSQL): {0}")]
    Postgres(String),
    /// The database failed and could not be opened again yet.
    #[error("directory database unavailable: {0}")]
    Unavailable(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
