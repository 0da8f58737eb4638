//! The one mapping from SQLite (sqlx) failures to platform errors ([`db_err`]), and what it needs
//! to recognise a full disk: SQLite's `SQLITE_FULL`, an I/O error (from SQLite or the driver)
//! that `ENOSPC` caused, and an I/O error while a file system holding an open database has no
//! space left ([`DatabaseDirs`]). A full disk is a 507 ([`Error::InsufficientStorage`]) with a
//! message about storage, reported to the operator by one log line at most every
//! [`REPORT_EVERY`] (with the number of writes refused since), not one per request.
//!
//! The other half of surviving a full disk, connections left inside a transaction that could not
//! be closed, is [`super::recovery`]'s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use thingline_core::Error;

/// What a client is told when its write did not fit.
pub(crate) const STORAGE_FULL_MESSAGE: &str =
    "Insufficient storage: the server's disk is full, nothing of this request was stored; retry once space is freed";

/// A full disk is logged at most this often.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(60);

/// An I/O error while a database's file system has less than this free is taken for a full disk.
const NEARLY_FULL_BYTES: u64 = 1024 * 1024;

/// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;

/// Maps a database failure to the platform error: a full disk is a 507 (logged once per
/// [`REPORT_EVERY`]), a busy database a retryable 503, anything else internal (logged where it
/// is answered, never shown).
pub(crate) fn db_err(e: sqlx::Error) -> Error {
    let error = map_err(e);
    crate::metrics::store_error("sqlite", &error);
    error
}

fn map_err(e: sqlx::Error) -> Error {
    if is_storage_full(&e) {
        STORAGE_FULL.report(&e);
        return Error::InsufficientStorage(STORAGE_FULL_MESSAGE.into());
    }
    if let sqlx::Error::Database(db) = &e {
        let msg = db.message();
        if msg.contains("database is locked") || msg.contains("busy") {
            return Error::Unavailable("the store is busy, retry".into());
        }
    }
    if matches!(e, sqlx::Error::PoolClosed | sqlx::Error::PoolTimedOut) {
        return Error::Unavailable("the store is not available".into());
    }
    Error::Internal(format!("sqlite: {e}"))
}

/// Whether the error is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether the failure means the disk is full: `SQLITE_FULL`; an `ENOSPC` I/O error of the
/// driver; or an `SQLITE_IOERR_*` (SQLite does not tell its errno through the driver: growing
/// the `-shm` file, for one, fails with `SQLITE_IOERR_SHMSIZE` on `ENOSPC`) while a file system
/// holding an open database is (nearly) out of space.
fn is_storage_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let primary = db.code().and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff);
            match primary {
                Some(SQLITE_FULL) => true,
                Some(SQLITE_IOERR) => DATABASE_DIRS.any_nearly_full(),
                _ => false,
            }
        }
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    }
}

/// A log line written at most once per [`REPORT_EVERY`], counting the occurrences in between.
pub(crate) struct RateLimited {
    /// When the last line was written (ms since the epoch; 0: never).
    last_ms: AtomicI64,
    /// Occurrences since the last line.
    since: AtomicU64,
}

impl RateLimited {
    pub(crate) const fn new() -> Self {
        RateLimited { last_ms: AtomicI64::new(0), since: AtomicU64::new(0) }
    }

    /// `Some(occurrences not logged since the last line)` when a line is due now.
    pub(crate) fn due(&self) -> Option<u64> {
        let now = thingline_core::time::now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        let every = REPORT_EVERY.as_millis() as i64;
        if (last == 0 || now - last >= every)
            && self.last_ms.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.since.swap(0, Ordering::Relaxed));
        }
        self.since.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The full-disk line.
struct StorageFull(RateLimited);

static STORAGE_FULL: StorageFull = StorageFull(RateLimited::new());

impl StorageFull {
    fn report(&self, e: &sqlx::Error) {
        if let Some(not_logged) = self.0.due() {
            tracing::error!(
                error = %e,
                refused_since_last_line = not_logged,
                "the disk holding the database is full: writes are refused with 507 until space is freed \
                 (nothing acknowledged is lost; writes resume by themselves)"
            );
        }
    }
}

/// The directories of the SQLite databases open in this process, for [`is_storage_full`] to look
/// at the space left on their file systems. A store registers its directory while it is open
/// ([`DatabaseDirs::register`]).
pub(crate) struct DatabaseDirs {
    dirs: Mutex<Vec<(u64, PathBuf)>>,
    next: AtomicU64,
}

static DATABASE_DIRS: DatabaseDirs = DatabaseDirs { dirs: Mutex::new(Vec::new()), next: AtomicU64::new(1) };

/// A directory registered in [`DatabaseDirs`]; unregistered when dropped.
pub(crate) struct RegisteredDir(u64);

impl Drop for RegisteredDir {
    fn drop(&mut self) {
        DATABASE_DIRS.dirs.lock().retain(|(id, _)| *id != self.0);
    }
}

impl DatabaseDirs {
    /// Registers the directory of a database until the returned value is dropped.
    pub(crate) fn register(dir: PathBuf) -> RegisteredDir {
        let id = DATABASE_DIRS.next.fetch_add(1, Ordering::Relaxed);
        DATABASE_DIRS.dirs.lock().push((id, dir));
        RegisteredDir(id)
    }

    fn any_nearly_full(&self) -> bool {
        let dirs: Vec<PathBuf> = self.dirs.lock().iter().map(|(_, d)| d.clone()).collect();
        dirs.iter().any(|dir| {
            rustix::fs::statvfs(dir.as_path()).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) < NEARLY_FULL_BYTES)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_line_is_due_once_per_period_and_counts_the_rest() {
        let line = RateLimited::new();
        assert_eq!(line.due(), Some(0), "the first occurrence is logged");
        assert_eq!(line.due(), None);
        assert_eq!(line.due(), None);
        // As if the period had passed.
        line.last_ms.store(thingline_core::time::now_ms() - REPORT_EVERY.as_millis() as i64, Ordering::Relaxed);
        assert_eq!(line.due(), Some(2), "the next line counts what was not logged");
    }

    #[test]
    fn the_driver_s_enospc_is_a_full_disk() {
        let e = sqlx::Error::Io(std::io::Error::from_raw_os_error(28));
        assert_eq!(db_err(e).status(), 507);
        let e = sqlx::Error::Io(std::io::Error::from_raw_os_error(5));
        assert_eq!(db_err(e).status(), 500);
    }
}
