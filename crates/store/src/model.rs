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

/// The order of a page of a product's things ([`crate::ThingStore::things_page`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThingSort {
    /// By creation (activation or bulk creation): the things' `seq`.
    Activated,
    /// By thing id, byte order.
    Id,
    /// By name (`$settings.name`), byte order; things without a name come after every named
    /// one in ascending order and before them in descending order; equal names by `seq`.
    Name,
}

/// One page of a product's things: `skip` things of the order are passed over, then at most
/// `limit` come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingPageQuery {
    pub sort: ThingSort,
    pub descending: bool,
    /// Keeps the things whose id starts with this text (exactly, byte for byte) or whose name
    /// contains it, ASCII letters matching either case. `None` or empty: every thing.
    pub search: Option<String>,
    pub skip: u64,
    pub limit: u32,
}

/// A thing as the panel's table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingRow {
    pub thing: Thing,
    /// `$settings.name` when it is a string (one holding U+0000 counts as no name).
    pub name: Option<String>,
    /// The newest datetime of any value the thing stored (any key); `None`: none yet.
    pub last_seen_ms: Option<i64>,
}

/// A page of things and how many things match the query in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingPage {
    pub total: u64,
    pub rows: Vec<ThingRow>,
}

/// One point of a chart's series ([`crate::TimelineStore::series`]): a value as it is
/// (`min` = `max` = `avg`), or a bucket of values starting at `t_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    pub t_ms: i64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
}

/// The numeric values of one timeline in a range, ready for a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Numeric values in the range.
    pub count: u64,
    /// Other values in the range (objects, arrays, booleans, null, other strings, numbers out
    /// of the f64 range).
    pub non_numeric: u64,
    /// Whether `points` are buckets (more than the asked number of numeric values).
    pub downsampled: bool,
    pub points: Vec<SeriesPoint>,
}

/// An app user as the panel's users table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUserSummary {
    pub user: thingline_core::model::AppUser,
    /// When the user last got a session (register or login); `None`: never.
    pub last_login_ms: Option<i64>,
    /// Ids of the things the user linked, sorted (byte order).
    pub linked_things: Vec<String>,
}
