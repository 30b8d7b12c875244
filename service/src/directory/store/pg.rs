//! The store's tables on a PostgreSQL server, so several directory
//! processes share one state.
//!
//! Every table is `(key text COLLATE "C" PRIMARY KEY, value bytea)`, made
//! by the migrations in `service/migrations/` (applied at start, in order,
//! under an advisory lock so two directories starting together apply them
//! once). A read-modify-write ([`Pg::update`]) holds a transaction-scoped
//! advisory lock on its key, so two directories never interleave on one
//! record (a resume token is used once, whichever directory sees it).
//!
//! The connections are tokio-postgres's, driven by a thread of their own
//! (`nephele-db`); callers wait for their answers on their own thread
//! (`futures_executor::block_on`), as they wait for redb's disk, so the
//! store stays synchronous for both engines.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::StoreError;
use super::kv::{Table, Write};

/// The schema, in order; a directory applies those its database lacks.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../../migrations/0001_directory.sql"))];

/// Connections one directory keeps open at most.
const MAX_CONNECTIONS: usize = 16;
/// How long a request waits for a free connection before it is refused.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Pool {
    idle: Vec<Client>,
    /// Connections open, idle or in use.
    open: usize,
}

/// A PostgreSQL database.
pub(in super::super) struct Pg {
    config: tokio_postgres::Config,
    /// The runtime that drives the connections.
    rt: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pool: Mutex<Pool>,
    freed: Condvar,
    fault: Mutex<Option<String>>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("host", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL error, with the server's own message when there is one.
pub(super) fn pg_error(e: &tokio_postgres::Error) -> StoreError {
    let what = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    };
    StoreError::Postgres(what)
}

/// A connection lent out of the pool, returned when dropped.
struct Lent<'a> {
    pg: &'a Pg,
    client: Option<Client>,
}

impl std::ops::Deref for Lent<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("lent until dropped")
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("lent until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let mut pool = self.pg.pool.lock().unwrap_or_else(PoisonError::into_inner);
        match self.client.take() {
            Some(c) if !c.is_closed() => pool.idle.push(c),
            _ => pool.open = pool.open.saturating_sub(1),
        }
        self.pg.freed.notify_one();
    }
}

/// The statements on table `t` (a fixed name of the store's, never input).
fn select(t: Table) -> String {
    format!("SELECT value FROM {t} WHERE key = $1")
}

fn upsert(t: Table) -> String {
    format!(
        "INSERT INTO {t} (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )
}

fn delete(t: Table) -> String {
    format!("DELETE FROM {t} WHERE key = $1")
}

fn wait<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

impl Pg {
    /// Connects to `url` (`postgres://user@host:port/db` or key=value
    /// form) and brings its schema up to date.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "--database: `{url}` is not a PostgreSQL address ({e}); write it as postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("nephele-directory");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Invalid(format!("starting the database thread: {e}")))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nephele-db".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Invalid(format!("starting the database thread: {e}")))?;
        let pg = Self {
            config,
            rt: handle,
            stop: Some(stop),
            thread: Some(thread),
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
            fault: Mutex::new(None),
        };
        pg.migrate()?;
        Ok(pg)
    }

    /// A new connection, driven by the database thread.
    fn connect(&self) -> Result<Client, StoreError> {
        let config = self.config.clone();
        let made = self.rt.spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a connection to the directory's database ended");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        match wait(made) {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.failed(&e)),
            Err(e) => Err(StoreError::Unavailable(format!(
                "the database thread stopped: {e}"
            ))),
        }
    }

    /// Notes an error; connection failures are the database's fault until
    /// a request succeeds again.
    fn failed(&self, e: &tokio_postgres::Error) -> StoreError {
        let err = pg_error(e);
        if e.as_db_error().is_none() {
            let mut f = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
            if f.is_none() {
                tracing::error!(error = %err, "the directory's database (PostgreSQL) failed");
            }
            *f = Some(err.to_string());
        }
        err
    }

    fn mended(&self) {
        let mut f = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        if f.take().is_some() {
            tracing::info!("the directory's database (PostgreSQL) answers again");
        }
    }

    /// What failed and is not mended yet.
    pub fn fault(&self) -> Option<String> {
        self.fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A connection: an idle one, a new one while there are fewer than
    /// [`MAX_CONNECTIONS`], else the first one freed.
    fn lend(&self) -> Result<Lent<'_>, StoreError> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(c) = pool.idle.pop() {
                if c.is_closed() {
                    pool.open = pool.open.saturating_sub(1);
                    continue;
                }
                return Ok(Lent {
                    pg: self,
                    client: Some(c),
                });
            }
            if pool.open < MAX_CONNECTIONS {
                pool.open += 1;
                drop(pool);
                return match self.connect() {
                    Ok(c) => Ok(Lent {
                        pg: self,
                        client: Some(c),
                    }),
                    Err(e) => {
                        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
                        pool.open = pool.open.saturating_sub(1);
                        Err(e)
                    }
                };
            }
            let (p, timeout) = self
                .freed
                .wait_timeout(pool, WAIT_FOR_CONNECTION)
                .unwrap_or_else(PoisonError::into_inner);
            pool = p;
            if timeout.timed_out() && pool.idle.is_empty() {
                return Err(StoreError::Unavailable(format!(
                    "all {MAX_CONNECTIONS} database connections stayed busy"
                )));
            }
        }
    }

    /// Runs `f` on a connection; its failure noted, its success mending.
    fn with<R>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, tokio_postgres::Error>,
    ) -> Result<R, StoreError> {
        let mut c = self.lend()?;
        match f(&mut c) {
            Ok(r) => {
                self.mended();
                Ok(r)
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// Applies the migrations the database lacks.
    fn migrate(&self) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = wait(c.transaction())?;
            // One directory migrates at a time (the number is arbitrary,
            // the same in every directory).
            wait(tx.execute("SELECT pg_advisory_xact_lock(7400001)", &[]))?;
            wait(tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            ))?;
            let row = wait(tx.query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            ))?;
            let have: i32 = row.get(0);
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have) {
                wait(tx.batch_execute(sql))?;
                wait(tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                ))?;
                tracing::info!(version, "directory database migrated");
            }
            wait(tx.commit())
        })
    }

    pub fn get(&self, t: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = select(t);
        self.with(|c| Ok(wait(c.query_opt(&sql, &[&key]))?.map(|r| r.get(0))))
    }

    pub fn put(&self, t: Table, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let sql = upsert(t);
        self.with(|c| wait(c.execute(&sql, &[&key, &bytes])).map(drop))
    }

    pub fn scan(&self, t: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let sql = format!("SELECT key, value FROM {t} WHERE starts_with(key, $1) ORDER BY key");
        self.with(|c| {
            let rows = wait(c.query(&sql, &[&prefix]))?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    pub fn last(&self, t: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let sql = format!("SELECT key, value FROM {t} ORDER BY key DESC LIMIT $1");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = wait(c.query(&sql, &[&limit]))?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    pub fn remove(&self, items: &[(Table, &str)]) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = wait(c.transaction())?;
            let mut first = None;
            for (t, key) in items {
                let n = wait(tx.execute(&delete(t), &[key]))?;
                first.get_or_insert(n > 0);
            }
            wait(tx.commit())?;
            Ok(first.unwrap_or(false))
        })
    }

    pub fn update<R>(
        &self,
        t: Table,
        key: &str,
        change: impl FnOnce(Option<Vec<u8>>) -> Result<(Write, R), StoreError>,
    ) -> Result<R, StoreError> {
        let mut c = self.lend()?;
        let lock = format!("{t}/{key}");
        let run = async {
            let tx = c.transaction().await?;
            // The key's own lock, held to commit: also when it has no row
            // yet (a row lock would hold nothing then).
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&lock],
            )
            .await?;
            let old: Option<Vec<u8>> = tx.query_opt(&select(t), &[&key]).await?.map(|r| r.get(0));
            Ok::<_, tokio_postgres::Error>((tx, old))
        };
        let (tx, old) = wait(run).map_err(|e| self.failed(&e))?;
        // A refusal rolls the transaction back as `tx` drops.
        let (write, out) = change(old)?;
        let finish = async {
            match write {
                Write::Keep => {}
                Write::Put(v) => {
                    tx.execute(&upsert(t), &[&key, &v]).await?;
                }
                Write::Remove => {
                    tx.execute(&delete(t), &[&key]).await?;
                }
            }
            tx.commit().await
        };
        wait(finish).map_err(|e| self.failed(&e))?;
        self.mended();
        Ok(out)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Connections close with their runtime, on its own thread.
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idle
            .clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
