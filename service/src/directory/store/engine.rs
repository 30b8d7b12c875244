//! The few operations the store needs of a database, on either engine:
//! redb (one file, the embedded default) or PostgreSQL (shared by several
//! directories).
//!
//! Both hold the same tables of values under string keys; the store's
//! logic above them is one and the same.

use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::super::durable::Durable;
use super::StoreError;
pub(super) use super::kv::{Keep, Table, Write};
use super::pg::Pg;

/// The database under the store.
pub(super) enum Engine {
    /// The embedded file.
    Redb(Durable),
    /// A PostgreSQL server (its pool and thread: one per directory).
    Pg(Box<Pg>),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redb(d) => d.fmt(f),
            Self::Pg(p) => p.fmt(f),
        }
    }
}

/// Runs `f`, which waits for the disk or the database server. On a
/// worker of a multi-threaded tokio runtime the worker's other tasks move
/// to another thread meanwhile (in `nephele-server all` the gateways relay
/// input on the same runtime: they never wait behind the database).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// [`blocking`] for a write that waits for the disk (a durable one).
fn writing<R>(keep: Keep, f: impl FnOnce() -> R) -> R {
    if keep == Keep::Durable {
        blocking(f)
    } else {
        f()
    }
}

fn def(t: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(t)
}

fn begin_write(db: &redb::Database, keep: Keep) -> Result<redb::WriteTransaction, StoreError> {
    let mut tx = db.begin_write()?;
    if keep == Keep::Soft {
        tx.set_durability(Durability::None)
            .map_err(|e| StoreError::Db(e.into()))?;
    }
    Ok(tx)
}

impl Engine {
    /// Makes sure every table exists (PostgreSQL's come from its migrations).
    pub fn create_tables(&self, tables: &[Table]) -> Result<(), StoreError> {
        match self {
            Self::Redb(d) => d.run(true, |db| {
                let tx = db.begin_write()?;
                for t in tables {
                    tx.open_table(def(t))?;
                }
                tx.commit()?;
                Ok(())
            }),
            Self::Pg(_) => Ok(()),
        }
    }

    /// What failed and is not mended yet.
    pub fn fault(&self) -> Option<String> {
        match self {
            Self::Redb(d) => d.fault(),
            Self::Pg(p) => p.fault(),
        }
    }

    /// The value under `key`.
    pub fn get(&self, t: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Redb(d) => d.run(false, |db| {
                let tx = db.begin_read()?;
                Ok(tx.open_table(def(t))?.get(key)?.map(|v| v.value().to_vec()))
            }),
            Self::Pg(p) => blocking(|| p.get(t, key)),
        }
    }

    /// Stores `bytes` under `key`.
    pub fn put(&self, t: Table, key: &str, bytes: &[u8], keep: Keep) -> Result<(), StoreError> {
        match self {
            Self::Redb(d) => writing(keep, || {
                d.run(keep == Keep::Durable, |db| {
                    let tx = begin_write(db, keep)?;
                    tx.open_table(def(t))?.insert(key, bytes)?;
                    tx.commit()?;
                    Ok(())
                })
            }),
            Self::Pg(p) => blocking(|| p.put(t, key, bytes)),
        }
    }

    /// Every key starting with `prefix` and its value, in key order.
    pub fn scan(&self, t: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match self {
            Self::Redb(d) => d.run(false, |db| {
                let tx = db.begin_read()?;
                let table = tx.open_table(def(t))?;
                let mut out = Vec::new();
                for item in table.range(prefix..)? {
                    let (k, v) = item?;
                    if !k.value().starts_with(prefix) {
                        break;
                    }
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
                Ok(out)
            }),
            Self::Pg(p) => blocking(|| p.scan(t, prefix)),
        }
    }

    /// The last `limit` keys and their values, last first.
    pub fn last(&self, t: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match self {
            Self::Redb(d) => d.run(false, |db| {
                let tx = db.begin_read()?;
                let table = tx.open_table(def(t))?;
                let mut out = Vec::new();
                for item in table.iter()?.rev().take(limit) {
                    let (k, v) = item?;
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
                Ok(out)
            }),
            Self::Pg(p) => blocking(|| p.last(t, limit)),
        }
    }

    /// Removes every `(table, key)` in one transaction; whether the first
    /// was there.
    pub fn remove(&self, items: &[(Table, &str)], keep: Keep) -> Result<bool, StoreError> {
        match self {
            Self::Redb(d) => writing(keep, || {
                d.run(keep == Keep::Durable, |db| {
                    let tx = begin_write(db, keep)?;
                    let mut first = None;
                    for (t, key) in items {
                        let had = tx.open_table(def(t))?.remove(*key)?.is_some();
                        first.get_or_insert(had);
                    }
                    tx.commit()?;
                    Ok(first.unwrap_or(false))
                })
            }),
            Self::Pg(p) => blocking(|| p.remove(items)),
        }
    }

    /// Reads the value under `key` and writes what `change` makes of it,
    /// in one transaction: no other writer of that key comes between (on
    /// PostgreSQL, not even another directory's).
    pub fn update<R>(
        &self,
        t: Table,
        key: &str,
        keep: Keep,
        change: impl FnOnce(Option<Vec<u8>>) -> Result<(Write, R), StoreError>,
    ) -> Result<R, StoreError> {
        match self {
            Self::Redb(d) => writing(keep, || {
                d.run(keep == Keep::Durable, |db| {
                    let tx = begin_write(db, keep)?;
                    let out = {
                        let mut table = tx.open_table(def(t))?;
                        let old = table.get(key)?.map(|v| v.value().to_vec());
                        let (write, out) = change(old)?;
                        match write {
                            Write::Keep => {}
                            Write::Put(v) => {
                                table.insert(key, v.as_slice())?;
                            }
                            Write::Remove => {
                                table.remove(key)?;
                            }
                        }
                        out
                    };
                    tx.commit()?;
                    Ok(out)
                })
            }),
            Self::Pg(p) => blocking(|| p.update(t, key, change)),
        }
    }
}
