//! The records the storage traits exchange. Plain data; rules live in the platform core.

use serde::{Deserialize, Serialize};

/// Tuning that every backend understands.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `FULL` (default): an acknowledged write survives power loss. `NORMAL`: survives a process
    /// crash (`kill -9`) but may lose the last commits on power loss.
    pub sync_full: bool,
    /// Readers in the pool.
    pub read_connections: u32,
    /// Bound on the SQLite write-ahead log, in bytes (default [`DEFAULT_WAL_LIMIT_BYTES`]): once
    /// the WAL holds this many bytes of frames (or, with nothing being written, its file is still
    /// larger), the background checkpoint forces it to restart from its beginning
    /// (`wal_checkpoint(RESTART)`, `TRUNCATE` when idle), and `journal_size_limit` truncates a
    /// restarted WAL file back to this size. See `docs/architecture.md` (WAL checkpoints).
    pub wal_limit_bytes: u64,
}

/// The default [`StoreOptions::wal_limit_bytes`]: 64 MiB (16,384 frames of 4 KiB pages). Large
/// enough that even saturated appends force a restart (which holds the writers for a moment) at
/// most about once a second (measured), and quiet ingest never; small enough that a burst leaves
/// no big file behind and that readers, which look pages up in the WAL index first, stay fast.
pub const DEFAULT_WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { sync_full: true, read_connections: 4, wal_limit_bytes: DEFAULT_WAL_LIMIT_BYTES }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelUser {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
}

/// A resource a product declares; private unless `public`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDecl {
    pub key: String,
    #[serde(default)]
    pub public: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub owner_id: i64,
    pub name: String,
    pub resources: Vec<ResourceDecl>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationCode {
    pub code: String,
    pub product_id: String,
    /// The thing it activated, once used.
    pub thing_id: Option<String>,
    pub created_ms: i64,
    pub used_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub owner_id: i64,
    pub name: String,
    /// Resource keys the app asks for.
    pub resources: Vec<String>,
    pub created_ms: i64,
}

/// What activation needs to create a thing.
#[derive(Debug, Clone)]
pub struct NewThing {
    pub id: String,
    pub token: String,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thing {
    /// Internal compact key used by timelines.
    pub seq: i64,
    pub id: String,
    pub token: String,
    pub product_id: String,
    pub activation_code: Option<String>,
    pub created_ms: i64,
}

/// A value to append. `ts` None: stamped by the store with its receive time.
#[derive(Debug, Clone)]
pub struct NewPoint {
    pub key: String,
    pub ts: Option<i64>,
    /// The value as JSON text, exactly as the client sent it (already validated).
    pub value: String,
}

/// A committed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPoint {
    pub key: String,
    pub ts: i64,
    /// JSON text.
    pub value: String,
}

/// An app user. Users are scoped per app: the same email may exist once in each app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUser {
    pub id: i64,
    pub app_id: String,
    pub email: String,
    pub password_hash: String,
    pub created_ms: i64,
}

/// A live app session as the store knows it (joined with its user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSessionRecord {
    pub user_id: i64,
    pub app_id: String,
    pub email: String,
    pub expires_ms: i64,
}

/// Permissions one user received on one resource key of one thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub thing: Thing,
    pub key: String,
    /// Bit set: get=1, post=2, grant=4, put=8, delete=16.
    pub perms: u8,
    pub granted_by: i64,
}

/// One (resource key, thing) pair of a grant request: the grantee's permissions on it become
/// exactly `perms` (0 revokes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEntry {
    pub thing_id: String,
    pub key: String,
    /// Bit set: get=1, post=2, grant=4, put=8, delete=16.
    pub perms: u8,
}

/// A notification email kept in the outbox (when no SMTP server is configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub id: i64,
    pub app_id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_ms: i64,
}
