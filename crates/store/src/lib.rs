//! Thingline storage: one trait per domain area (panel accounts, catalog of products and apps,
//! things, timelines), the records they exchange, and the backends that implement them. The
//! platform core only ever sees `Arc<dyn Store>`; the backend is chosen from the store URL at start.
//!
//! Every backend must pass the one conformance suite in `conformance` (behind the `conformance`
//! feature: the store's tests turn it on, the server does not compile it).

pub mod app_users;
#[cfg(feature = "conformance")]
pub mod conformance;
mod metrics;
pub mod migrate;
pub mod model;
pub mod objects;
mod order;
pub mod postgres;
pub mod series;
pub mod sqlite;
#[cfg(feature = "conformance")]
pub mod testing;
mod things;

use std::sync::Arc;

pub use app_users::AppUserStore;
use async_trait::async_trait;
pub use model::*;
pub use objects::ObjectStore;
use thingline_core::Result;
use thingline_core::model::{ActivationCode, App, PanelUser, Product, Thing};
use thingline_core::query::TimelineQuery;

/// Panel (operator) accounts and their sessions. Session tokens are stored only as digests.
#[async_trait]
pub trait PanelStore: Send + Sync {
    /// Creates a panel user; `Conflict` when the email is taken.
    async fn create_panel_user(&self, email: &str, password_hash: &str) -> Result<PanelUser>;
    async fn panel_user_by_email(&self, email: &str) -> Result<Option<PanelUser>>;
    async fn create_panel_session(&self, user_id: i64, token_digest: &str, expires_ms: i64) -> Result<()>;
    /// The user of a live (not expired) session.
    async fn panel_session_user(&self, token_digest: &str, now_ms: i64) -> Result<Option<PanelUser>>;
    async fn delete_panel_session(&self, token_digest: &str) -> Result<()>;
}

/// Products (with their resource declarations), activation codes and apps of panel accounts.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    async fn create_product(&self, product: &Product) -> Result<()>;
    async fn product(&self, id: &str) -> Result<Option<Product>>;
    async fn products_of(&self, owner_id: i64) -> Result<Vec<Product>>;
    /// Replaces name and resources; false when there is no such product.
    async fn update_product(&self, product: &Product) -> Result<bool>;
    /// Deletes a product and its unused codes; `Conflict` while it has things.
    async fn delete_product(&self, id: &str) -> Result<bool>;
    async fn create_activation_codes(&self, product_id: &str, codes: &[String], now_ms: i64) -> Result<()>;
    async fn activation_codes(&self, product_id: &str) -> Result<Vec<ActivationCode>>;
    /// How many codes of the product are not used yet (without reading them).
    async fn unused_activation_codes(&self, product_id: &str) -> Result<u64>;
    /// Creates an app; its index declaration applies to the shared collections it will have.
    async fn create_app(&self, app: &App) -> Result<()>;
    async fn app(&self, id: &str) -> Result<Option<App>>;
    async fn apps_of(&self, owner_id: i64) -> Result<Vec<App>>;
    /// Replaces name, resources and index declaration; false when there is no such app. A changed
    /// declaration is applied to every shared collection of the app before it returns (declared
    /// fields indexed with the objects already stored, others dropped; see
    /// [`ObjectStore::list_objects`]).
    async fn update_app(&self, app: &App) -> Result<bool>;
    async fn delete_app(&self, id: &str) -> Result<bool>;
}

/// Things: activation (which consumes a code), lookup, settings document, deletion.
#[async_trait]
pub trait ThingStore: Send + Sync {
    /// Consumes `code` and creates the thing in one transaction. `NotFound` for an unknown code (or
    /// one of another product than `product_id`), `Conflict` for a code already used.
    async fn activate(&self, code: &str, product_id: Option<&str>, thing: NewThing) -> Result<Thing>;
    async fn thing_by_token(&self, token: &str) -> Result<Option<Thing>>;
    async fn thing_by_id(&self, id: &str) -> Result<Option<Thing>>;
    async fn things_of_product(&self, product_id: &str) -> Result<Vec<Thing>>;
    /// Creates things of `product_id` in one transaction, all or nothing, without activation
    /// codes, each created at `now_ms` (the `now_ms` of each [`NewThing`] is not read); returns
    /// them in the order given. `NotFound` when the product does not exist, `Conflict` when an
    /// id or token is taken (also twice in `things`).
    async fn create_things(&self, product_id: &str, things: &[NewThing], now_ms: i64) -> Result<Vec<Thing>>;
    /// One page of a product's things for the panel's table ([`ThingPageQuery`]), with the
    /// number of things matching the search. Fast with 100,000 things in the product: each order
    /// is an index, and the last datetime seen is looked up for the page's things only.
    async fn things_page(&self, product_id: &str, query: &ThingPageQuery) -> Result<ThingPage>;
    /// Deletes the thing with all its timelines and values.
    async fn delete_thing(&self, id: &str) -> Result<bool>;
    /// The thing's `$settings` document (`{}` when never written).
    async fn thing_settings(&self, seq: i64) -> Result<serde_json::Value>;
    /// Sets the whole document (`path` None) or one dot path, atomically; returns the new document.
    async fn update_thing_settings(
        &self,
        seq: i64,
        path: Option<&str>,
        value: serde_json::Value,
    ) -> Result<serde_json::Value>;
}

/// Timelines of JSON values, one per (thing, key). Datetimes of one timeline are kept distinct.
#[async_trait]
pub trait TimelineStore: Send + Sync {
    /// Appends values and returns them as committed (with their final, distinct datetimes) only
    /// once they are durable.
    async fn append(&self, thing_seq: i64, points: Vec<NewPoint>) -> Result<Vec<StoredPoint>>;
    /// Newest first. `None` when the key was never written for this thing.
    async fn read(&self, thing_seq: i64, key: &str, query: &TimelineQuery) -> Result<Option<Vec<StoredPoint>>>;
    /// Keys with at least one stored value, sorted.
    async fn keys(&self, thing_seq: i64) -> Result<Vec<String>>;
    /// Numeric values of (thing, key) with `start_ms <= ts < end_ms`, for a chart. When at most
    /// `points` of them are numeric, each comes back as it is (`t_ms` its datetime, `min` =
    /// `max` = `avg` = the value), ordered by time; otherwise `[start, end)` is cut into
    /// `points` equal buckets (width `ceil((end - start) / points)`) and each non-empty bucket
    /// gives its start, min, max and average, ordered by time. `points` 0 counts as 1. The range
    /// is first narrowed to the datetimes a value can have (`MIN_MS..=MAX_MS` of
    /// `thingline_core::time`), which moves the buckets only for a start before `MIN_MS`.
    /// Computed by the database from one snapshot. `None` when the key was never written for
    /// this thing (whatever the range; a written key with nothing in range is an empty series).
    ///
    /// Numeric: a JSON number, or a JSON string whose content is a decimal number (`"23.5"`,
    /// `"-4"`, `"+1e3"`: an optional sign, digits, an optional `.` and digits, an optional
    /// exponent; no escapes, no spaces), of at most [`series::MAX_NUMERIC_CHARS`] characters,
    /// whose value is finite as an f64 (`1e400` is not numeric). [`series::numeric_value`] is the
    /// rule in Rust.
    async fn series(
        &self,
        thing_seq: i64,
        key: &str,
        start_ms: i64,
        end_ms: i64,
        points: u32,
    ) -> Result<Option<Series>>;
}

/// Failed-attempt counters shared by every node of an installation (login and activation
/// limits), for backends that several nodes share.
#[async_trait]
pub trait AttemptStore: Send + Sync {
    /// Records one attempt on every key of `keys` (key, limit) unless one of them already holds
    /// `limit` attempts made after `since_ms`: `None` when refused (nothing recorded), else the
    /// reservation's id. Concurrent reservations on a key take turns, so none gets past a limit.
    async fn reserve_attempt(&self, keys: &[(String, u32)], since_ms: i64, now_ms: i64) -> Result<Option<i64>>;
    /// Removes a reservation from every key (the attempt succeeded).
    async fn release_attempt(&self, id: i64) -> Result<()>;
}

/// Everything the platform needs from storage.
#[async_trait]
pub trait Store: PanelStore + CatalogStore + ThingStore + TimelineStore + AppUserStore + ObjectStore {
    /// Waits for in-flight acknowledged writes and closes the backend.
    async fn close(&self);
    /// The attempt counters shared by every node, for a backend several nodes share; `None`
    /// (SQLite: one node) when the platform's memory is the count.
    fn attempts(&self) -> Option<&dyn AttemptStore>;
    /// Answers a trivial query (readiness checks): an error when the database cannot be reached.
    async fn ping(&self) -> Result<()>;
    /// A short name for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
}

/// Opens the store at `url` (`sqlite://path` or `postgres://…`), running migrations.
pub async fn open(url: &str, options: &StoreOptions) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(std::path::Path::new(path), options).await?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::open(url, options).await?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!("unsupported store URL {url:?}: expected sqlite://PATH or postgres://…")
    }
}
