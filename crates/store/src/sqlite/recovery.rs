//! Connections that outlive a failed transaction. When a statement or the `COMMIT` of a
//! transaction fails with `SQLITE_FULL` (or an I/O error), SQLite rolls the transaction back by
//! itself; the driver then still counts the transaction as open (it lowers its count only when its
//! own `COMMIT` or `ROLLBACK` succeeds), its `ROLLBACK` fails with "no transaction is active", and
//! every later `BEGIN` on that connection fails ("attempted to call begin_with at non-zero
//! transaction depth") until the process restarts. A `ROLLBACK` that fails for another reason
//! leaves the same state, with SQLite's transaction possibly still open.
//!
//! One rule for every connection that runs transactions: a connection still inside a transaction
//! when it is done with one ([`left_in_transaction`]) is never used again. The pools discard it
//! when it is released ([`discard_if_left_in_transaction`], their `after_release` hook; the pool
//! opens a new one); the group-commit writers, which own their connection ([`OwnedConnection`]),
//! replace it with a new one before their next write.

use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use super::errors::RateLimited;

/// Connections discarded or replaced are logged at most once per [`super::errors::REPORT_EVERY`]
/// (a full disk fails every write transaction).
static REPLACED: RateLimited = RateLimited::new();

/// Whether the connection is still inside a transaction. A dropped `Transaction` only queues its
/// `ROLLBACK`: when one is pending, the connection is pinged first, so that the answer is the one
/// after that `ROLLBACK` ran. Free when no transaction is open (one atomic load).
pub(crate) async fn left_in_transaction(conn: &mut SqliteConnection) -> bool {
    if !conn.is_in_transaction() {
        return false;
    }
    if conn.ping().await.is_err() {
        return true;
    }
    conn.is_in_transaction()
}

/// The pools' `after_release` hook: keeps a connection (`true`) unless it was left inside a
/// transaction.
pub(crate) fn discard_if_left_in_transaction(
    conn: &mut SqliteConnection,
    _meta: PoolConnectionMetadata,
) -> BoxFuture<'_, sqlx::Result<bool>> {
    Box::pin(async move {
        if left_in_transaction(conn).await {
            report("pooled");
            return Ok(false);
        }
        Ok(true)
    })
}

fn report(which: &str) {
    if let Some(not_logged) = REPLACED.due() {
        tracing::warn!(
            connection = which,
            replaced_since_last_line = not_logged,
            "a database connection was left inside a transaction it could not close (a failed COMMIT or \
             ROLLBACK, e.g. on a full disk); it is replaced by a new connection"
        );
    }
}

/// A connection a group-commit writer owns, replaced by a new one with the same options when it
/// was left inside a transaction.
pub(crate) struct OwnedConnection {
    conn: SqliteConnection,
    options: SqliteConnectOptions,
    /// For the log line: which writer owns it.
    name: &'static str,
}

impl OwnedConnection {
    pub(crate) async fn connect(options: SqliteConnectOptions, name: &'static str) -> sqlx::Result<Self> {
        Ok(OwnedConnection { conn: options.connect().await?, options, name })
    }

    /// The connection, ready for a transaction: replaced first when the last transaction on it
    /// could not be closed. `.1` is true when it was replaced (connection state such as TEMP
    /// tables must be set up again). When no new connection can be opened, the old one is kept
    /// (its next `BEGIN` fails, and the next call tries again).
    pub(crate) async fn ready(&mut self) -> (&mut SqliteConnection, bool) {
        if !left_in_transaction(&mut self.conn).await {
            return (&mut self.conn, false);
        }
        match self.options.connect().await {
            Ok(fresh) => {
                report(self.name);
                let old = std::mem::replace(&mut self.conn, fresh);
                // Closing rolls back whatever SQLite may still hold open on it.
                let _ = old.close_hard().await;
                (&mut self.conn, true)
            }
            Err(e) => {
                tracing::warn!(connection = self.name, error = %e, "could not open a connection to replace one \
                    left inside a transaction; retrying at the next write");
                (&mut self.conn, false)
            }
        }
    }

    /// The connection as it is (for work outside transactions, e.g. setup).
    pub(crate) fn get(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Closes the connection (at the end of the writer).
    pub(crate) async fn close(self) {
        let _ = self.conn.close().await;
    }
}
