//! What the store reports to the metrics endpoint (`THINGLINE_METRICS_ADDR`; see the server's
//! `metrics` module and docs/observability.md) through the `metrics` facade: the group commits of
//! the timeline writers, the WAL checkpointer, and errors mapped from the database. Without a
//! recorder (the metrics listener off) every call here does nothing but look at the facade's
//! global recorder. Labels are fixed strings: the backend, a checkpoint mode, an error kind.

use std::time::Duration;

use thingline_core::Error;

/// One group committed by a timeline writer of `backend` (`sqlite`, `postgres`): the appends
/// (requests) it held, the values committed (refused requests' values not counted), and how long
/// the commit took (from the writer taking the group to the last answer).
pub(crate) fn group_commit(backend: &'static str, appends: usize, committed_values: usize, took: Duration) {
    metrics::histogram!("thingline_group_commit_appends", "backend" => backend).record(appends as f64);
    metrics::histogram!("thingline_group_commit_values", "backend" => backend).record(committed_values as f64);
    metrics::histogram!("thingline_group_commit_duration_seconds", "backend" => backend).record(took.as_secs_f64());
    metrics::counter!("thingline_values_committed_total", "backend" => backend).increment(committed_values as u64);
}

/// Values committed by the timeline writer of `backend`, whatever their answers' fate.
pub(crate) fn committed_of<T>(results: &[thingline_core::Result<Vec<T>>]) -> usize {
    results.iter().map(|r| r.as_ref().map_or(0, Vec::len)).sum()
}

/// The size of the SQLite `-wal` file, bytes (set by the checkpointer at each round).
pub(crate) fn wal_size(bytes: u64) {
    metrics::gauge!("thingline_sqlite_wal_size_bytes").set(bytes as f64);
}

/// One `wal_checkpoint` run by the checkpointer: `mode` `passive`, `restart` or `truncate`;
/// `result` `done` (PASSIVE: it ran; a forced one: the WAL restarts), `busy` (a forced one that a
/// reader blocked) or `error`.
pub(crate) fn checkpoint(mode: &'static str, result: &'static str) {
    metrics::counter!("thingline_sqlite_wal_checkpoints_total", "mode" => mode, "result" => result).increment(1);
}

/// A database failure mapped to `error` by `backend`'s `db_err`.
pub(crate) fn store_error(backend: &'static str, error: &Error) {
    let kind = match error {
        Error::InsufficientStorage(_) => "storage_full",
        Error::Unavailable(_) => "unavailable",
        _ => "internal",
    };
    metrics::counter!("thingline_store_errors_total", "backend" => backend, "kind" => kind).increment(1);
}
