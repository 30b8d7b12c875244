//! The directory's database handle, which outlives the database's failures.
//!
//! redb refuses every operation after an I/O error (a full disk, a failing
//! device) until the database is opened again. Here the handle remembers
//! the failure, reopens the file (at most once a second) before the next
//! operation, and counts the fault as mended only once a write has gone
//! through again, so `/v1/health` can say what is wrong meanwhile.

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::error::StoreError;

/// Opens the database (again).
pub(super) type Open = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// Reopening after a failure is tried at most this often.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Health {
    /// What failed, until a write succeeds again.
    fault: Option<String>,
    last_reopen: Option<Instant>,
}

pub(super) struct Durable {
    db: RwLock<Option<Database>>,
    open: Open,
    health: Mutex<Health>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("fault", &self.fault())
            .finish_non_exhaustive()
    }
}

/// Whether `e` is the storage failing (rather than a bad record or name).
fn storage_failed(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Db(redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed)
            | StoreError::Unavailable(_)
    )
}

impl Durable {
    pub fn new(open: Open) -> Result<Self, redb::DatabaseError> {
        let db = open()?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            open,
            health: Mutex::new(Health::default()),
        })
    }

    /// What failed and is not mended yet.
    pub fn fault(&self) -> Option<String> {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fault
            .clone()
    }

    /// Runs `f` on the database; `writes` says whether its success shows
    /// the database takes writes again.
    pub fn run<R>(
        &self,
        writes: bool,
        f: impl FnOnce(&Database) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.reopen_if_failed();
        let r = match self
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(db) => f(db),
            None => Err(StoreError::Unavailable(
                self.fault().unwrap_or_else(|| "closed".into()),
            )),
        };
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match &r {
            Err(e) if storage_failed(e) => {
                if h.fault.is_none() {
                    tracing::error!(error = %e, "the directory's database failed; reopening it until it works again");
                }
                h.fault = Some(e.to_string());
            }
            Ok(_) if writes && h.fault.take().is_some() => {
                tracing::info!("the directory's database takes writes again");
            }
            _ => {}
        }
        r
    }

    fn reopen_if_failed(&self) {
        {
            let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
            if h.fault.is_none() || h.last_reopen.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                return;
            }
            h.last_reopen = Some(Instant::now());
        }
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // Closed first: redb holds a lock on its file.
        *db = None;
        match (self.open)() {
            Ok(d) => *db = Some(d),
            Err(e) => {
                tracing::debug!(error = %e, "reopening the directory's database");
                self.health
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .fault = Some(format!("reopening the database: {e}"));
            }
        }
    }
}

/// A disk that can be made full, under a real redb file: for the tests of
/// the database's recovery.
#[cfg(test)]
pub(super) mod test_disk {
    use std::io;
    use std::ops::Bound;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use redb::backends::FileBackend;
    use redb::{BackendError, StorageBackend};

    use super::Open;

    /// The database's real file, on a disk that can be made full.
    #[derive(Debug)]
    struct Disk {
        file: FileBackend,
        full: Arc<AtomicBool>,
    }

    impl Disk {
        fn room(&self) -> io::Result<()> {
            if self.full.load(Ordering::SeqCst) {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            } else {
                Ok(())
            }
        }
    }

    impl StorageBackend for Disk {
        fn len(&self) -> io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.room()?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.room()?;
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.room()?;
            self.file.write(offset, data)
        }
        fn close(&self) -> io::Result<()> {
            self.file.close()
        }
        fn try_lock_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<bool, BackendError> {
            self.file.try_lock_range(a, b)
        }
        fn try_lock_shared_range(
            &self,
            a: Bound<u64>,
            b: Bound<u64>,
        ) -> Result<bool, BackendError> {
            self.file.try_lock_shared_range(a, b)
        }
        fn lock_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<(), BackendError> {
            self.file.lock_range(a, b)
        }
        fn lock_shared_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<(), BackendError> {
            self.file.lock_shared_range(a, b)
        }
        fn unlock_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<(), BackendError> {
            self.file.unlock_range(a, b)
        }
        fn query_lock_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<bool, BackendError> {
            self.file.query_lock_range(a, b)
        }
    }

    /// Opens the database at `path` on a disk that is full while the flag
    /// returned is set.
    pub fn opener(path: &Path) -> (Open, Arc<AtomicBool>) {
        let full = Arc::new(AtomicBool::new(false));
        let disk = full.clone();
        let path = path.to_path_buf();
        let open: Open = Box::new(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            redb::Builder::new().create_with_backend(Disk {
                file: FileBackend::new(file)?,
                full: disk.clone(),
            })
        });
        (open, full)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use redb::TableDefinition;

    use super::super::error::StoreError;
    use super::Durable;
    use super::test_disk::opener;

    const T: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("t");

    fn put(d: &Durable, k: &str) -> Result<(), StoreError> {
        d.run(true, |db| {
            let tx = db.begin_write()?;
            tx.open_table(T)?.insert(k, b"v".as_slice())?;
            tx.commit()?;
            Ok(())
        })
    }

    fn get(d: &Durable, k: &str) -> Result<bool, StoreError> {
        use redb::ReadableDatabase;
        d.run(false, |db| {
            Ok(db.begin_read()?.open_table(T)?.get(k)?.is_some())
        })
    }

    #[test]
    fn after_a_full_disk_the_database_is_reopened_and_works_again_once_there_is_room() {
        let dir = std::env::temp_dir().join(format!("nephele-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("directory.redb");
        let (open, full) = opener(&path);
        let durable = Durable::new(open).unwrap();
        put(&durable, "alice").unwrap();
        assert_eq!(durable.fault(), None);

        full.store(true, Ordering::SeqCst);
        assert!(put(&durable, "bob").is_err());
        let fault = durable.fault().expect("the failure is remembered");
        assert!(!fault.is_empty());
        // Still full: after the reopen, writes still fail and say why.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(put(&durable, "bob").is_err());
        assert!(durable.fault().is_some());

        // Room again: after the reopen, writes work and the fault is gone.
        full.store(false, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        put(&durable, "bob").unwrap();
        assert_eq!(durable.fault(), None);
        assert!(get(&durable, "alice").unwrap() && get(&durable, "bob").unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
