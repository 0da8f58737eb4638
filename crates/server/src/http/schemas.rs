//! The shapes of the HTTP API's bodies as the OpenAPI document describes them. Most answers are
//! rendered by hand (stored values are spliced in verbatim), so these types exist for the
//! document: each mirrors one answer or body the handlers produce, field for field, and
//! schemathesis checks in CI that the running server keeps to them. The error envelope and the
//! reusable error responses are here too.

#![allow(dead_code)]

use serde_json::Value;
use utoipa::{IntoParams, ToResponse, ToSchema};

/// The thethings.iO error envelope: every 4xx and 5xx answer of the API.
#[derive(ToSchema)]
#[schema(example = json!({"status": "error", "code": 404, "message": "Thing not found"}))]
pub struct ErrorEnvelope {
    /// Always `error`.
    #[schema(example = "error")]
    status: String,
    /// The HTTP status, repeated.
    code: u16,
    /// What went wrong, for people.
    message: String,
}

macro_rules! error_response {
    ($name:ident, $description:literal, $code:literal, $message:literal) => {
        #[derive(ToResponse)]
        #[response(description = $description, content_type = "application/json",
                                            example = json!({"status": "error", "code": $code, "message": $message}))]
        pub struct $name(ErrorEnvelope);
    };
}

error_response!(
    BadRequest,
    "The request is malformed: a body, parameter or value the API cannot take (the message says which).",
    400,
    "values must be an array"
);
error_response!(
    Unauthorized,
    "No valid token for this request (missing, expired, ended, or wrong).",
    401,
    "Invalid session token"
);
error_response!(Forbidden, "The token is valid but may not do this.", 403, "Forbidden");
error_response!(
    NotFound,
    "No such object, or one the caller may not see (the two are not told apart).",
    404,
    "Thing not found"
);
error_response!(
    Conflict,
    "The object exists already.",
    409,
    "A user with email ada@example.com already exists in this app"
);
error_response!(
    RequestTimeout,
    "The request body did not arrive in time.",
    408,
    "The request body did not arrive within 10 s; send it in full right after the headers"
);
error_response!(
    PayloadTooLarge,
    "The body (or a value in it) is over the configured limit.",
    413,
    "Request body is larger than 1048576 bytes"
);
error_response!(
    TooManyRequests,
    "A rate or connection limit was reached; try again later.",
    429,
    "Too many login attempts; try again later"
);
error_response!(
    InsufficientStorage,
    "The server's disk is full: nothing of the request was stored; retry later.",
    507,
    "The server is out of disk space; nothing was stored"
);
error_response!(
    Unavailable,
    "The node cannot serve the request now (store away, stopping).",
    503,
    "Not ready: the store is not available"
);

// --- parameters shared by several operations ---

/// The range of a timeline read.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ReadRange {
    /// How many values, newest first (default 1; 1 to 1,000, larger values are taken as 1,000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Oldest datetime (ISO 8601 or `YYYYMMDDHHmmss`).
    start_date: Option<String>,
    /// Newest datetime (ISO 8601 or `YYYYMMDDHHmmss`).
    end_date: Option<String>,
}

/// A read that can be a subscription instead.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct Subscribe {
    /// `true`: answer a live stream of new values instead (see the thing stream).
    subscribe: Option<bool>,
    /// With `subscribe=true`: idle milliseconds between `{}` chunks (1,000 to 3,600,000; default 60,000).
    keep_alive: Option<u64>,
}

/// A collection of app objects.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct CollectionPath {
    /// `me` (the user's own objects) or `app` (the app's shared objects).
    scope: String,
    /// The collection.
    class_name: String,
}

/// An object of a collection.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct ObjectPath {
    /// `me` (the user's own objects) or `app` (the app's shared objects).
    scope: String,
    /// The collection.
    class_name: String,
    /// The object's `_id`.
    object_id: String,
}

// --- parameters with a fixed set of values ---

/// `json` (the default) or `csv`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ListFormat {
    Json,
    Csv,
}

/// `UTC` (ISO 8601, the default) or `unix_timestamp` (seconds).
#[derive(ToSchema)]
pub enum DateFormat {
    #[schema(rename = "UTC")]
    Utc,
    #[schema(rename = "unix_timestamp")]
    UnixTimestamp,
}

/// The sort column of a product's things.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub enum ThingSort {
    ActivatedAt,
    ThingId,
    Name,
}

/// A sort order.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

// --- generic answers ---

/// `{"status":"success","message":…}`: an action done.
#[derive(ToSchema)]
#[schema(example = json!({"status": "success", "message": "deleted"}))]
pub struct Done {
    #[schema(example = "success")]
    status: String,
    message: Option<String>,
}

/// `{"status":"created"}`: values committed (a 201 means they are durable).
#[derive(ToSchema)]
#[schema(example = json!({"status": "created"}))]
pub struct Created {
    /// `created` (Thing API and magic keys) or `Success` (App API writes of a plain key).
    status: String,
    message: Option<String>,
}

// --- values ---

/// One value to write. `datetime` is optional (the server's clock otherwise); a `geo` attribute
/// (`{"lat","long"}`) may ride along.
#[derive(ToSchema)]
#[schema(example = json!({"key": "temperature", "value": 23.4}))]
pub struct WriteValue {
    /// The resource; `$settings` (or `$settings.path`) and `$geo` are magic keys.
    key: String,
    /// Any JSON value.
    value: Value,
    /// ISO 8601 (`2026-12-07T10:00:00.000Z`) or Unix milliseconds.
    datetime: Option<Value>,
    geo: Option<Value>,
}

/// A write: `{"values":[…]}` (an object with `key` and `value` alone is taken too).
#[derive(ToSchema)]
#[schema(example = json!({"values": [{"key": "temperature", "value": 23.4}, {"key": "humidity", "value": 40}]}))]
pub struct WriteBody {
    values: Vec<WriteValue>,
}

/// An App API write of one key: `{"values":[{"value":…}]}` (the key is in the path).
#[derive(ToSchema)]
#[schema(example = json!({"values": [{"value": 21}]}))]
pub struct KeyWriteBody {
    values: Vec<Value>,
}

/// A stored value, newest first. Reads of `$settings…` answer `[{"key","value"}]`.
#[derive(ToSchema)]
#[schema(example = json!({"value": 23.4, "datetime": "2026-12-07T10:00:00.000Z"}))]
pub struct ReadItem {
    value: Value,
    /// When it was written (ISO 8601, milliseconds, UTC).
    datetime: Option<String>,
    key: Option<String>,
}

/// The resource keys of a thing.
#[derive(ToSchema)]
#[schema(example = json!({"resources": ["temperature", "humidity"]}))]
pub struct ResourceKeys {
    resources: Vec<String>,
}

/// The newest values of one key, in `all_resources`.
#[derive(ToSchema)]
pub struct KeyValues {
    key: String,
    values: Vec<ReadItem>,
}

// --- things ---

/// Activation with a product's single-use code.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[schema(example = json!({"activationCode": "0fWdf7sU9ZcW"}))]
pub struct ActivateBody {
    activation_code: String,
    /// Optional: the code's product, checked when given.
    product_id: Option<String>,
}

/// A thing activated: its token, shown here once.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[schema(example = json!({"status": "created", "message": "thing activated", "thingToken": "3KfZ…", "thingId": "t9x…"}))]
pub struct Activated {
    status: String,
    message: String,
    thing_token: String,
    thing_id: String,
}

/// The server's clock.
#[derive(ToSchema)]
#[schema(example = json!({"date": "2026-12-07T10:00:00.000Z", "values": [{"value": "2026-12-07T10:00:00.000Z"}]}))]
pub struct ServerDate {
    /// ISO 8601 UTC, or Unix seconds with `format=unix_timestamp`.
    date: Value,
    values: Vec<Value>,
}

// --- health ---

/// Liveness.
#[derive(ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Alive {
    status: String,
}

/// Readiness with the store's and the bus's state.
#[derive(ToSchema)]
pub struct Ready {
    status: String,
    ready: bool,
    details: Value,
}

/// Not ready: the envelope with the same details.
#[derive(ToSchema)]
pub struct NotReady {
    status: String,
    code: u16,
    message: String,
    details: Value,
}

// --- app accounts ---

/// Register or log in: `email`, `password`, `app` (the appId from the panel; `appId` and `appID`
/// are taken too), and optionally `expirationDate` (the session's lifetime in seconds). JSON or
/// form-urlencoded.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery", "app": "a1B2c3"}))]
pub struct Credentials {
    email: String,
    password: String,
    app: String,
    expiration_date: Option<Value>,
}

/// A session: the token for `Authorization`, its lifetime in seconds, the user's roles.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[schema(example = json!({"status": "success", "message": "logged in", "token": "Z3k…", "expirationDate": 2592000, "roles": {}}))]
pub struct SessionAnswer {
    status: String,
    message: String,
    token: String,
    expiration_date: i64,
    roles: Value,
}

/// Who a session token belongs to.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct WhoAmI {
    status: String,
    message: String,
    app_id: String,
    email: String,
}

/// The session's user.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Me {
    status: String,
    email: String,
    app_id: String,
    expires_at: String,
    roles: Value,
}

/// A thing linked to the user.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct LinkedThing {
    #[schema(rename = "_id")]
    _id: String,
    thing_id: String,
    resources: Vec<String>,
}

/// Link a thing by its token (or by its id, when the user reaches it already).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[schema(example = json!({"thingToken": "3KfZ…"}))]
pub struct LinkBody {
    thing_token: Option<String>,
    thing_id: Option<String>,
}

/// A thing linked.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Linked {
    status: String,
    message: String,
    thing_id: String,
}

/// A resource the user reaches, with the things that hold it.
#[derive(ToSchema)]
pub struct UserResource {
    name: String,
    things: Vec<String>,
}

/// Grant another user of the app access: `permissions` as in the guide.
#[derive(ToSchema)]
#[schema(example = json!({"email": "grace@example.com", "permissions": {"things": {"t9x…": {"resources": {"temperature": ["read"]}}}}}))]
pub struct GrantBody {
    email: String,
    permissions: Value,
}

// --- classes ---

/// An object stored.
#[derive(ToSchema)]
pub struct ObjectCreated {
    status: String,
    message: String,
    id: String,
}

/// Objects: one (a read by id) or a page of a collection.
#[derive(ToSchema)]
pub struct ObjectResults {
    #[schema(value_type = Vec<Object>)]
    results: Vec<Value>,
}

// --- panel ---

/// Panel login.
#[derive(ToSchema)]
#[schema(example = json!({"email": "operator@example.com", "password": "a long passphrase"}))]
pub struct PanelLogin {
    email: String,
    password: String,
}

/// A panel token for `Authorization`.
#[derive(ToSchema)]
pub struct PanelToken {
    status: String,
    token: String,
}

/// The web panel's session (the cookie is set on sign-in); `csrf` goes in `X-CSRF-Token`.
#[derive(ToSchema)]
pub struct PanelSession {
    status: String,
    email: String,
    csrf: String,
}

/// A resource a product declares; private unless `public`.
#[derive(ToSchema)]
pub struct ResourceDecl {
    key: String,
    public: Option<bool>,
}

/// Create or update a product.
#[derive(ToSchema)]
#[schema(example = json!({"name": "Weather station", "resources": [{"key": "temperature", "public": true}, {"key": "humidity"}]}))]
pub struct ProductInput {
    name: Option<String>,
    resources: Option<Vec<ResourceDecl>>,
}

/// A product.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Product {
    product_id: String,
    name: String,
    resources: Vec<ResourceDecl>,
    created_at: String,
}

/// Something created, with its id (`productId` or `appId`).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CreatedId {
    status: String,
    product_id: Option<String>,
    app_id: Option<String>,
}

/// The products of the account.
#[derive(ToSchema)]
pub struct ProductList {
    status: String,
    products: Vec<Product>,
}

/// One product.
#[derive(ToSchema)]
pub struct ProductAnswer {
    status: String,
    message: Option<String>,
    product: Product,
}

/// How many (activation codes, things); 1 when absent.
#[derive(ToSchema)]
#[schema(example = json!({"count": 10}))]
pub struct CountBody {
    /// A whole number, or a numeric string.
    count: Option<Value>,
}

/// Activation codes made.
#[derive(ToSchema)]
pub struct CodesCreated {
    status: String,
    codes: Vec<String>,
}

/// An activation code and its use.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CodeRow {
    code: String,
    used: bool,
    thing_id: Option<String>,
    created_at: String,
    used_at: Option<String>,
}

/// A product's activation codes.
#[derive(ToSchema)]
pub struct CodeList {
    status: String,
    codes: Vec<CodeRow>,
}

/// A thing as the panel shows it (the token is the operator's to see).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PanelThing {
    thing_id: String,
    thing_token: String,
    product_id: String,
    activated: bool,
    activation_code: Option<String>,
    activated_at: String,
    name: Option<String>,
    last_seen: Option<String>,
    /// `{"<key>":{"value","datetime"}}`: the newest value of each declared resource.
    latest: Value,
    resources: Option<Vec<String>>,
    settings: Option<Value>,
    geo: Option<Value>,
    product: Option<Value>,
}

/// A page of a product's things.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ThingPage {
    status: String,
    total: i64,
    things: Vec<PanelThing>,
    pending_activation_codes: i64,
}

/// One thing.
#[derive(ToSchema)]
pub struct ThingAnswer {
    status: String,
    thing: PanelThing,
}

/// A thing made without a code, with its token (shown once).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewThing {
    thing_id: String,
    thing_token: String,
}

/// Things made.
#[derive(ToSchema)]
pub struct ThingsCreated {
    status: String,
    things: Vec<NewThing>,
}

/// A chart's worth of a numeric timeline: every value (`min = max = avg`), or min, max and
/// average per bucket when the range holds more than `points` values.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Series {
    status: String,
    key: String,
    start_date: String,
    end_date: String,
    count: i64,
    non_numeric: i64,
    downsampled: bool,
    /// Bucket (or value) times, Unix ms.
    t: Vec<i64>,
    min: Vec<f64>,
    max: Vec<f64>,
    avg: Vec<f64>,
}

/// Create or update an app.
#[derive(ToSchema)]
#[schema(example = json!({"name": "Home", "resources": ["temperature"], "indexes": {"Tracks": ["genre", "rank"]}}))]
pub struct AppInput {
    name: Option<String>,
    resources: Option<Vec<String>>,
    /// Filterable and sortable fields of the app's shared collections, by collection.
    indexes: Option<Value>,
}

/// An app.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct App {
    app_id: String,
    name: String,
    resources: Vec<String>,
    indexes: Value,
    created_at: String,
}

/// The apps of the account.
#[derive(ToSchema)]
pub struct AppList {
    status: String,
    apps: Vec<App>,
}

/// One app.
#[derive(ToSchema)]
pub struct AppAnswer {
    status: String,
    message: Option<String>,
    app: App,
}

/// A user of an app.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AppUser {
    user_id: i64,
    email: String,
    created_at: String,
    last_login: Option<String>,
    /// The thingIds linked to the user.
    linked_things: Vec<String>,
    roles: Value,
}

/// The users of an app.
#[derive(ToSchema)]
pub struct AppUserList {
    status: String,
    users: Vec<AppUser>,
}

/// A notification mail kept in the app's outbox.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Mail {
    id: i64,
    to: String,
    subject: String,
    body: String,
    created_at: String,
}

/// The app's outbox.
#[derive(ToSchema)]
pub struct Outbox {
    status: String,
    mails: Vec<Mail>,
}
