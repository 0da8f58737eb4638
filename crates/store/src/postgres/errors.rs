//! The one mapping from PostgreSQL (sqlx) failures to platform errors: a database that cannot be
//! reached, is shutting down, is out of connections or aborted a transaction for a conflict it
//! asks to retry is a retryable 503 ([`Error::Unavailable`]); a full disk is a 507; anything else
//! is internal (logged where it is answered, never shown).

use thingline_core::Error;

/// What a client is told when the database is away.
pub(crate) const UNAVAILABLE_MESSAGE: &str = "the store is not available, nothing of this request was stored; retry";

pub(crate) fn db_err(e: sqlx::Error) -> Error {
    let error = map_err(e);
    crate::metrics::store_error("postgres", &error);
    error
}

fn map_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => return Error::Unavailable(UNAVAILABLE_MESSAGE.into()),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception; 57P0x: admin/crash shutdown, cannot connect now;
            // 53300: too many connections; 40001/40P01: serialization failure, deadlock.
            if code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code == "40001"
                || code == "40P01"
            {
                return Error::Unavailable(UNAVAILABLE_MESSAGE.into());
            }
            // 53100: disk full.
            if code == "53100" {
                return Error::InsufficientStorage(
                    "Insufficient storage: the database's disk is full, nothing of this request was stored".into(),
                );
            }
        }
        _ => {}
    }
    Error::Internal(format!("postgres: {e}"))
}

/// Whether the error is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
