//! The domain records every layer exchanges: panel accounts, products and their resource
//! declarations, activation codes, apps, things, app users, grants, outbox mails and committed
//! values. Plain data; the rules live in the platform core, the storage in the store.

use serde::{Deserialize, Serialize};

/// An operator's account.
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
    /// The fields its shared (`/classes/app`) collections may be filtered and sorted on, by
    /// collection name; the store keeps exactly these indexed.
    pub indexes: crate::classes::IndexDeclarations,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thing {
    /// Internal compact key used by timelines and bus topics.
    pub seq: i64,
    pub id: String,
    pub token: String,
    pub product_id: String,
    pub activation_code: Option<String>,
    pub created_ms: i64,
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

/// One value as committed (or broadcast without storing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueItem {
    pub key: String,
    /// The value as JSON text.
    pub value: String,
    /// Milliseconds since the epoch, UTC.
    pub ts: i64,
}

/// A value as written to a thing, as realtime subscribers see it: the committed item, and the
/// `geo` attribute it was written with. The `$geo` point such an attribute also records travels
/// inside it, not as an item of its own, so a subscriber of the whole thing receives the items as
/// the writer sent them (a `geo` object on its item, no extra nested array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenValue {
    pub item: ValueItem,
    pub geo: Option<GeoAttr>,
}

/// The `geo` attribute of a written value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoAttr {
    /// The attribute as the writer sent it (JSON text, validated), e.g. `{"lat":41.39,"long":2.15}`.
    pub sent: String,
    /// The GeoJSON Point recorded on `$geo` (JSON text).
    pub point: String,
    /// The datetime of that `$geo` point (it may differ from the item's: datetimes of one timeline
    /// are kept distinct).
    pub ts: i64,
}
