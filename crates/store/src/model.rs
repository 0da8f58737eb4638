//! The records the storage traits exchange. Plain data; rules live in the platform core.

use thingline_core::model::Thing;

/// Tuning that every backend understands.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `FULL` (default): an acknowledged write survives power loss. `NORMAL`: survives a process
    /// crash (`kill -9`) but may lose the last commits on power loss.
    pub sync_full: bool,
    /// Readers in the pool.
    pub read_connections: u32,
    /// Options only the SQLite backend reads.
    pub sqlite: crate::sqlite::SqliteOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { sync_full: true, read_connections: 4, sqlite: Default::default() }
    }
}

/// What activation needs to create a thing.
#[derive(Debug, Clone)]
pub struct NewThing {
    pub id: String,
    pub token: String,
    pub now_ms: i64,
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
