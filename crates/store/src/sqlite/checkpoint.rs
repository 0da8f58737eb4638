//! The WAL checkpointer: a background task, on a connection of its own, that copies the
//! write-ahead log back into the database file and keeps the WAL bounded; and the
//! [`CommitGate`] through which it pauses the group-commit writers for a forced checkpoint.
//!
//! Every second (sooner when the WAL file grows past the limit: its size is looked at every
//! 100 ms) it runs `wal_checkpoint(PASSIVE)`: it copies what it can without taking SQLite's write
//! lock, so no writer ever waits for it. PASSIVE alone does not bound the WAL: a writer
//! starts the WAL over from its beginning only if, when it begins, every frame has been copied
//! and no reader still uses the WAL. Under a steady stream of commits and reads, or behind a long
//! read transaction that pins an old snapshot, that moment never comes and the file grows without
//! end (measured: 560 MB in 8 s of saturated appends); and a file grown by a burst keeps its size.
//!
//! So the checkpointer reads PASSIVE's answer (busy, frames in the WAL, frames copied) and forces
//! a full checkpoint when the WAL holds at least `limit` bytes of frames, when PASSIVE has not
//! copied everything for [`STARVED_ROUNDS`] rounds in a row, or when nothing is being written and
//! the file is still larger than `limit`. While writes go on that is `wal_checkpoint(RESTART)`:
//! it copies what PASSIVE left and waits for the readers still on the WAL, so that the next commit
//! starts the WAL over, and `journal_size_limit` (set on every connection) makes that commit
//! truncate the file back to `limit`. When nothing was committed since the last round it is
//! `wal_checkpoint(TRUNCATE)`, which also cuts the file to zero bytes: no commit may come to do it.
//!
//! A forced checkpoint needs SQLite's write lock. The checkpointer first closes the
//! [`CommitGate`]: the timeline and object writers finish the commit in flight and then wait
//! (asynchronously, resumed the moment the checkpoint ends) instead of racing it for the lock
//! with their 10 s busy timeout. It waits, in all, at most [`ESCALATION_BUSY_TIMEOUT`] (the busy
//! timeout of this connection) for readers still on the WAL and for a transaction of the `write`
//! pool (which does not pass the gate; its transactions begin IMMEDIATE, so they wait for the
//! lock instead of failing), so the writers are held for at most the wait for the commit in
//! flight when the gate closed, plus that, plus the copy
//! and sync of the frames committed since the last PASSIVE pass (extra passes first keep those
//! few: [`CATCH_UP_BYTES`]). Measured on the 2-core development machine under saturated appends
//! (release build): 1-65 ms with readers running, up to ~220 ms when the appends outran the disk.
//! If a reader outlasts the wait, the checkpoint gives up (nothing is lost:
//! the WAL keeps its frames) and is tried again after a pause that doubles up to
//! [`MAX_BACKOFF_ROUNDS`] rounds, or as soon as a PASSIVE round copies everything (no reader pins
//! the WAL any more).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, SqliteExecutor};
use tokio::sync::{OwnedRwLockReadGuard, RwLock, oneshot};

use super::errors::RateLimited;

/// How often the WAL is checkpointed.
const EVERY: Duration = Duration::from_secs(1);
/// How often the size of the WAL file is looked at between two rounds: a file that grows past
/// the limit brings the next round forward (a fast ingest writes 100+ MB of frames a second).
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// Consecutive PASSIVE rounds that could not copy the whole WAL before a restart is forced. A few
/// seconds: under constant writes PASSIVE may never quite finish, and a restart every few seconds
/// keeps the WAL to a few seconds of writes at little cost (PASSIVE has just copied nearly all).
const STARVED_ROUNDS: u32 = 5;
/// How long a forced checkpoint waits for readers to leave the WAL (and for a `write` pool
/// transaction to end): the busy timeout of the checkpointer's connection. Requests read for
/// milliseconds, so this is ample for them, and it bounds how long the writers wait behind it.
pub(crate) const ESCALATION_BUSY_TIMEOUT: Duration = Duration::from_millis(200);
/// Forced checkpoints are logged at info level at most this often (debug in between).
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Longest pause, in rounds, between two forced checkpoints that a reader blocked.
const MAX_BACKOFF_ROUNDS: u32 = 64;
/// Before forcing, PASSIVE runs again while more than this many bytes of frames were committed
/// during the previous pass (a pass over a big WAL takes a while) and fewer than during the pass
/// before (the copy is catching up), at most [`CATCH_UP_PASSES`] times: what is left to the
/// forced checkpoint, which copies it with the writers held, stays small.
const CATCH_UP_BYTES: u64 = 4 * 1024 * 1024;
/// Most extra PASSIVE passes before a forced checkpoint.
const CATCH_UP_PASSES: u32 = 3;

/// Held (shared) by a group-commit writer while it writes; taken (exclusive) by the checkpointer
/// for a forced checkpoint, which thereby gets SQLite's write lock without racing the writers.
/// Fair: once the checkpointer asks, no new commit starts before it is done.
#[derive(Clone, Default)]
pub(crate) struct CommitGate(Arc<RwLock<()>>);

impl CommitGate {
    /// Waits while a forced checkpoint runs; the guard keeps the next one out until dropped.
    pub(crate) async fn open(&self) -> OwnedRwLockReadGuard<()> {
        Arc::clone(&self.0).read_owned().await
    }
}

/// The `wal_checkpoint` modes used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Passive,
    Restart,
    Truncate,
}

impl Mode {
    fn sql(self) -> &'static str {
        match self {
            Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
            Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        }
    }

    /// The `mode` label of the checkpoint counter.
    fn label(self) -> &'static str {
        match self {
            Mode::Passive => "passive",
            Mode::Restart => "restart",
            Mode::Truncate => "truncate",
        }
    }
}

/// One `wal_checkpoint` answer.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// 1 when the checkpoint could not complete (a RESTART or TRUNCATE that a reader or a writer
    /// blocked, or another checkpoint running).
    busy: i64,
    /// Frames in the WAL.
    log: i64,
    /// Frames of the WAL already copied into the database.
    copied: i64,
}

async fn checkpoint(conn: impl SqliteExecutor<'_>, mode: Mode) -> sqlx::Result<Outcome> {
    let answer: sqlx::Result<(i64, i64, i64)> = sqlx::query_as(mode.sql()).fetch_one(conn).await;
    let result = match &answer {
        Ok((0, _, _)) => "done",
        Ok(_) => "busy",
        Err(_) => "error",
    };
    crate::metrics::checkpoint(mode.label(), result);
    let (busy, log, copied) = answer?;
    Ok(Outcome { busy, log, copied })
}

/// Why a restart is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The WAL's frames reached the limit.
    Large,
    /// PASSIVE has not copied everything for [`STARVED_ROUNDS`] rounds.
    Starved,
    /// Nothing is being written and the file is still over the limit (left by a burst).
    Leftover,
}

/// The checkpointer's state between rounds.
struct Checkpointer {
    conn: SqliteConnection,
    gate: CommitGate,
    wal_path: PathBuf,
    limit: u64,
    /// Bytes one WAL frame takes (page size + 24-byte frame header).
    frame_bytes: u64,
    /// Consecutive PASSIVE rounds that left frames uncopied.
    starved: u32,
    /// Frames in the WAL at the last round's PASSIVE (unchanged: nothing was committed since).
    last_log: i64,
    /// Size of the WAL file at the last round.
    last_file: u64,
    /// The pause after the last blocked forced checkpoint (0 after a successful one).
    backoff: u32,
    /// Rounds left before the next forced checkpoint may run.
    wait: u32,
    /// Forced checkpoints since the last one logged at info level, and when that was.
    forced: u64,
    reported: Option<Instant>,
}

/// Runs the checkpointer until `stop` fires or its sender is dropped (the store closes or is
/// dropped). `conn` should have [`ESCALATION_BUSY_TIMEOUT`] as its busy timeout; `wal_path` is the
/// database's `-wal` file.
pub(crate) async fn run(
    mut conn: SqliteConnection,
    gate: CommitGate,
    mut stop: oneshot::Receiver<()>,
    wal_path: PathBuf,
    limit: u64,
) {
    let page_size: i64 = match sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut conn).await {
        Ok(size) => size,
        Err(e) => {
            tracing::warn!(error = %e, "reading the page size failed; assuming 4096");
            4096
        }
    };
    let mut ck = Checkpointer {
        conn,
        gate,
        wal_path,
        limit: limit.max(1),
        frame_bytes: u64::try_from(page_size).unwrap_or(4096) + 24,
        starved: 0,
        last_log: -1,
        last_file: 0,
        backoff: 0,
        wait: 0,
        forced: 0,
        reported: None,
    };
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_round: Option<Instant> = None;
    // A round fails every second while the disk is full: one line a minute says so.
    let failed = RateLimited::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        if last_round.is_some_and(|at| at.elapsed() < EVERY) && !ck.outgrown() {
            continue;
        }
        last_round = Some(Instant::now());
        if let Err(e) = ck.round().await
            && let Some(not_logged) = failed.due()
        {
            tracing::warn!(error = %e, failed_since_last_line = not_logged, "WAL checkpoint failed");
        }
    }
    let _ = ck.conn.close().await;
}

impl Checkpointer {
    /// Runs PASSIVE again while the previous pass (which saw `log` frames when it started) was
    /// long enough for more than [`CATCH_UP_BYTES`] of new frames to be committed meanwhile.
    async fn catch_up(&mut self, mut log: i64) -> sqlx::Result<()> {
        let mut before = u64::MAX;
        for _ in 0..CATCH_UP_PASSES {
            let pass = checkpoint(&mut self.conn, Mode::Passive).await?;
            // Fewer frames than before: the WAL was restarted meanwhile, and is short.
            let arrived = u64::try_from(pass.log - log).unwrap_or(0) * self.frame_bytes;
            log = pass.log;
            if arrived <= CATCH_UP_BYTES || arrived >= before {
                break;
            }
            before = arrived;
        }
        Ok(())
    }

    /// Whether the WAL file grew past the limit since the last round (so its frames did too),
    /// with no blocked attempt to wait out.
    fn outgrown(&self) -> bool {
        let file_bytes = std::fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0);
        self.wait == 0 && file_bytes > self.limit && file_bytes > self.last_file
    }

    async fn round(&mut self) -> sqlx::Result<()> {
        let passive = checkpoint(&mut self.conn, Mode::Passive).await?;
        if passive.log < 0 {
            return Ok(()); // not in WAL mode
        }
        let complete = passive.copied >= passive.log;
        self.starved = if complete { 0 } else { self.starved + 1 };
        // Everything copied and no frame committed since the last round.
        let quiet = complete && passive.log == self.last_log;
        self.last_log = passive.log;
        let wal_bytes = u64::try_from(passive.log).unwrap_or(0) * self.frame_bytes;
        let file_bytes = std::fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0);
        self.last_file = file_bytes;
        crate::metrics::wal_size(file_bytes);
        let reason = if wal_bytes >= self.limit {
            Reason::Large
        } else if self.starved >= STARVED_ROUNDS {
            Reason::Starved
        } else if quiet && file_bytes > self.limit {
            Reason::Leftover
        } else {
            // Nothing to force (any more): a later need starts without a pause.
            self.backoff = 0;
            self.wait = 0;
            return Ok(());
        };
        // After a blocked attempt, wait, unless PASSIVE just copied everything: then no reader
        // pins the WAL any more and the restart should get through.
        if self.wait > 0 && !complete {
            self.wait -= 1;
            return Ok(());
        }
        let mode = if quiet { Mode::Truncate } else { Mode::Restart };
        if !quiet {
            self.catch_up(passive.log).await?;
        }
        let asked = Instant::now();
        let paused = Arc::clone(&self.gate.0).write_owned().await;
        let started = Instant::now();
        let forced = checkpoint(&mut self.conn, mode).await;
        drop(paused);
        let gate_wait_ms = started.duration_since(asked).as_millis() as u64;
        let held_ms = started.elapsed().as_millis() as u64;
        let forced = forced?;
        self.last_file = std::fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0);
        crate::metrics::wal_size(self.last_file);
        if forced.busy == 0 {
            self.starved = 0;
            self.backoff = 0;
            self.wait = 0;
            self.forced += 1;
            // At full ingest a restart is forced every second or two: say so at info level once
            // a minute (with the count), at debug level in between; one macro, since tracing's
            // levels must be known where the event is written.
            macro_rules! forced_line {
                ($level:expr) => {
                    tracing::event!(
                        $level,
                        ?mode,
                        ?reason,
                        wal_frames = passive.log,
                        uncopied_frames = passive.log - passive.copied,
                        wal_bytes,
                        file_bytes,
                        limit = self.limit,
                        gate_wait_ms,
                        held_ms,
                        forced_since_last_report = self.forced,
                        "WAL checkpointed in full, it restarts from its beginning"
                    )
                };
            }
            if self.reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                forced_line!(tracing::Level::INFO);
                self.reported = Some(Instant::now());
                self.forced = 0;
            } else {
                forced_line!(tracing::Level::DEBUG);
            }
        } else {
            self.backoff = (self.backoff * 2).clamp(1, MAX_BACKOFF_ROUNDS);
            self.wait = self.backoff;
            tracing::warn!(
                ?mode,
                ?reason,
                wal_frames = forced.log,
                uncopied_frames = forced.log - forced.copied,
                wal_bytes,
                file_bytes,
                limit = self.limit,
                held_ms,
                retry_in_s = u64::from(self.backoff) * EVERY.as_secs(),
                "the WAL could not be restarted: a reader held it past the wait"
            );
        }
        Ok(())
    }
}
