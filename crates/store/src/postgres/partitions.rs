//! The partition layout of `points`, the timeline values, and its upkeep. `points` is a native
//! range-partitioned table on `ts` (ms since the epoch, UTC); this module creates and splits its
//! partitions, nothing else does:
//!
//! ```text
//!   points_history   MINVALUE              → first month's start   everything older
//!   points_p202601   2026-01-01T00:00Z     → 2026-02-01T00:00Z     one per calendar month (UTC)
//!   …                                                               up to 3 months after now
//!   points_future    last month's end      → MAXVALUE              everything later
//! ```
//!
//! The first [`maintain`] on an empty layout creates `points_history` up to the start of the
//! current month and `points_future` from there; from then on it runs at every start and
//! hourly ([`run_maintenance`]), and creates the months up to three ahead of the current one by
//! splitting `points_future`: in one transaction the future partition is detached, the month is
//! created, the future partition's rows of that month (normally none: values dated months
//! ahead) are moved into it, and the future partition is attached again from the month's end.
//! The DDL holds `points` alone for a moment (waiting at most a lock timeout for it). The
//! history and future partitions bound the layout at MINVALUE and MAXVALUE, so every datetime
//! the API accepts (the years 0000 to 9999) lands in a partition whatever the maintenance did
//! or missed; a node that was down for
//! months catches up one month per step. Each step runs under a transaction-scoped advisory lock
//! and reads the layout afresh once it holds it, so any number of nodes may run it at once.
//!
//! Retention (a later issue) drops whole monthly partitions (`points_history` first), which
//! costs no row deletes (a timeline whose values were all dropped then reads as written but
//! empty, `timelines.newest_ts` staying set).
//!
//! There is no DEFAULT partition, on purpose: with range partitions only, the planner reads them
//! in order (an ordered Append, no MergeAppend), so a newest-first read with `LIMIT` probes the
//! newest partition's primary key first and stops there when it has enough (`limit=1` is one
//! index probe), and the bounds prune partitions at run time.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPool;
use tokio::sync::oneshot;

/// The advisory lock the maintenance steps take (any constant shared by every node, different
/// from the migrations' lock).
const PARTITION_LOCK: i64 = 0x7468_696e_676c_7074; // "thinglpt"

/// Months created ahead of the current one.
const MONTHS_AHEAD: i64 = 3;

/// How often the maintenance runs.
const EVERY: Duration = Duration::from_secs(3600);

/// A maintenance step waits at most 10 s for the locks of its DDL (it needs `points` alone for
/// a moment); it is tried again at the next run.
const SET_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '10s'";

const DAY_MS: i64 = 86_400_000;

/// A partition bound as PostgreSQL prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Min,
    At(i64),
    Max,
}

#[derive(Debug)]
struct Partition {
    name: String,
    from: Bound,
    to: Bound,
}

/// Runs [`maintain`] every [`EVERY`] until `stop` fires (or its sender is dropped). A failed run
/// is logged and tried again at the next one: the layout stays complete meanwhile.
pub(super) async fn run_maintenance(pool: PgPool, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if let Err(e) = maintain(&pool, thingline_core::time::now_ms()).await {
            tracing::warn!(error = %e, "timeline partition maintenance failed; retrying in an hour");
        }
    }
    tracing::debug!("timeline partition maintenance stopped");
}

/// [`maintain`] at start: the store opens as long as the layout is complete (history and future
/// partitions exist), a month that could not be split off yet (its lock timed out under load)
/// is created at the next run.
pub(super) async fn ensure(pool: &PgPool, now_ms: i64) -> anyhow::Result<()> {
    let Err(e) = maintain(pool, now_ms).await else { return Ok(()) };
    let mut conn = pool.acquire().await?;
    let layout = layout(&mut conn).await?;
    let complete = layout.iter().any(|p| p.from == Bound::Min) && layout.iter().any(|p| p.to == Bound::Max);
    if !complete {
        return Err(e);
    }
    tracing::warn!(error = %e, "timeline partition maintenance failed at start; retrying in an hour");
    Ok(())
}

/// Makes sure the layout exists and has the months up to [`MONTHS_AHEAD`] after the month of
/// `now_ms`, one step (one transaction) at a time.
pub(super) async fn maintain(pool: &PgPool, now_ms: i64) -> anyhow::Result<()> {
    let target = add_months(month_start(now_ms), MONTHS_AHEAD + 1);
    // Bounded: one step per month, and a store can only be this many months behind.
    for _ in 0..100_000 {
        if !step(pool, now_ms, target).await? {
            return Ok(());
        }
    }
    anyhow::bail!("timeline partition maintenance did not converge")
}

/// One step under the advisory lock: creates the initial layout, or splits one month off the
/// future partition. False when there was nothing left to do.
async fn step(pool: &PgPool, now_ms: i64, target: i64) -> anyhow::Result<bool> {
    let mut tx = pool.begin().await?;
    // Waits for another node's step, which its lock timeout bounds.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PARTITION_LOCK).execute(&mut *tx).await?;
    sqlx::query(SET_LOCK_TIMEOUT).execute(&mut *tx).await?;
    let layout = layout(&mut tx).await?;
    if layout.is_empty() {
        let first = month_start(now_ms);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE points_history PARTITION OF points FOR VALUES FROM (MINVALUE) TO ({first});\n\
             CREATE TABLE points_future PARTITION OF points FOR VALUES FROM ({first}) TO (MAXVALUE);"
        )))
        .execute(&mut *tx)
        .await
        .context("creating the timeline partitions")?;
        tx.commit().await?;
        tracing::info!(from = %thingline_core::time::format_datetime(first), "created the timeline partitions");
        return Ok(true);
    }
    let future = layout.iter().find(|p| p.to == Bound::Max);
    let Some(Partition { name, from: Bound::At(lo), .. }) = future else {
        // Not a layout this module made (an operator changed it): leave it alone.
        tracing::warn!(?layout, "the points table has no future partition from a datetime to MAXVALUE; not maintained");
        return Ok(false);
    };
    let lo = *lo;
    if lo >= target {
        return Ok(false);
    }
    let hi = add_months(month_start(lo), 1);
    let month = month_name(lo);
    let future = quote_ident(name);
    // The future partition is taken out, the month's rows (normally none: values dated months
    // ahead) move to the new month, and it goes back in from the month's end. The rows that stay
    // are only read (the bound check of ATTACH), not rewritten.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE points DETACH PARTITION {future};\n\
         CREATE TABLE {month} PARTITION OF points FOR VALUES FROM ({lo}) TO ({hi});\n\
         WITH moved AS (DELETE FROM {future} WHERE ts < {hi} RETURNING thing_seq, timeline_id, ts, value) \
           INSERT INTO points (thing_seq, timeline_id, ts, value) SELECT * FROM moved;\n\
         ALTER TABLE points ATTACH PARTITION {future} FOR VALUES FROM ({hi}) TO (MAXVALUE);"
    )))
    .execute(&mut *tx)
    .await
    .with_context(|| format!("splitting the timeline partition {month} off the future partition"))?;
    tx.commit().await?;
    tracing::info!(partition = %month, "created a monthly timeline partition");
    Ok(true)
}

/// The partitions of `points` with their bounds.
async fn layout(conn: &mut sqlx::PgConnection) -> anyhow::Result<Vec<Partition>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'points'::regclass",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (name, bound) in rows {
        match parse_bounds(&bound) {
            Some((from, to)) => out.push(Partition { name, from, to }),
            None => tracing::warn!(partition = %name, %bound, "unexpected partition bound"),
        }
    }
    Ok(out)
}

/// `FOR VALUES FROM ('1735689600000') TO (MAXVALUE)` → (At(1735689600000), Max).
fn parse_bounds(text: &str) -> Option<(Bound, Bound)> {
    let rest = text.trim().strip_prefix("FOR VALUES FROM (")?;
    let (from, to) = rest.split_once(") TO (")?;
    let to = to.strip_suffix(')')?;
    Some((parse_bound(from)?, parse_bound(to)?))
}

fn parse_bound(text: &str) -> Option<Bound> {
    match text.trim() {
        "MINVALUE" => Some(Bound::Min),
        "MAXVALUE" => Some(Bound::Max),
        v => v.trim_matches('\'').parse().ok().map(Bound::At),
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `points_pYYYYMM` of the month holding `ms`.
fn month_name(ms: i64) -> String {
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("points_p{y:04}{m:02}")
}

/// The start (UTC) of the month holding `ms`.
fn month_start(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
    days_from_civil(y, m, 1) * DAY_MS
}

/// The start of the month `n` months after the month starting at `month_start_ms`.
fn add_months(month_start_ms: i64, n: i64) -> i64 {
    let (y, m, _) = civil_from_days(month_start_ms.div_euclid(DAY_MS));
    let months = y * 12 + (m - 1) + n;
    days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, 1) * DAY_MS
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let jan = thingline_core::time::parse_datetime("2026-01-01T00:00:00Z").expect("date");
        let mid = thingline_core::time::parse_datetime("2026-01-17T13:14:15.678Z").expect("date");
        let feb = thingline_core::time::parse_datetime("2026-02-01T00:00:00Z").expect("date");
        let dec = thingline_core::time::parse_datetime("2025-12-01T00:00:00Z").expect("date");
        assert_eq!(month_start(mid), jan);
        assert_eq!(month_start(jan), jan);
        assert_eq!(month_start(jan - 1), dec);
        assert_eq!(add_months(jan, 1), feb);
        assert_eq!(add_months(dec, 1), jan);
        assert_eq!(add_months(jan, -1), dec);
        assert_eq!(add_months(dec, 14), thingline_core::time::parse_datetime("2027-02-01").expect("date"));
        assert_eq!(month_name(mid), "points_p202601");
        assert_eq!(month_start(0), 0);
        assert_eq!(month_name(-1), "points_p196912");
    }

    #[test]
    fn bounds() {
        assert_eq!(
            parse_bounds("FOR VALUES FROM ('1735689600000') TO (MAXVALUE)"),
            Some((Bound::At(1_735_689_600_000), Bound::Max))
        );
        assert_eq!(parse_bounds("FOR VALUES FROM (MINVALUE) TO ('-5')"), Some((Bound::Min, Bound::At(-5))));
        assert_eq!(parse_bounds("DEFAULT"), None);
    }
}
