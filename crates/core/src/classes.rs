//! App objects (`/v2/classes`): the rules every layer shares, with no I/O.
//!
//! - [`parse_class_path`]: `/v2/classes/{me|app}/C1/id1/C2/…` into a collection path and an
//!   optional object id, validating names and ids.
//! - [`Collection`]: which collection (app, owner, path) and its notifier topic key.
//! - [`sort_key`]: the stored, sortable form of an `_id` ("primary key descending" order).
//! - [`prepare_object`] / [`merge_object`]: validation (size, depth, field count) and the stored
//!   text of an object, plus its indexable top-level scalar fields ([`Scalar`]).
//! - [`ListQuery`]: `limit`, `skip`, `after`, `where` and `sort` of a collection read.
//! - [`IndexDeclarations`]: the fields an app's operator declared filterable and sortable in the
//!   app's shared collections, and [`check_declared`], the rule that a read of a shared
//!   collection names no other field.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result, ids, query, time};

/// Longest collection name, bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest object id, bytes.
pub const MAX_ID_LEN: usize = 128;
/// Most collections in one path (`C1/id1/C2/id2/…/C8`).
pub const MAX_COLLECTIONS_IN_PATH: usize = 8;
/// Largest stored object (its JSON text with `_id`), bytes.
pub const MAX_OBJECT_BYTES: usize = 256 * 1024;
/// Deepest nesting of arrays and objects inside an object (the object itself is depth 1): the
/// bound of every JSON document a client sends, as an object is a whole body.
pub use crate::json::MAX_DEPTH;
/// Most top-level fields of one object.
pub const MAX_TOP_LEVEL_FIELDS: usize = 256;
/// Most indexed fields of one collection (a field of a `/classes/me` collection is indexed from
/// the first `where` or `sort` naming it; indexing one reads the whole collection once, so the
/// count is bounded). Also the most fields an operator may declare for one shared collection name.
pub const MAX_INDEXED_FIELDS: usize = 64;
/// Most collection names one app may declare indexed fields for ([`IndexDeclarations`]).
pub const MAX_DECLARED_COLLECTIONS: usize = 256;
/// Longest top-level field name that is indexed (and may be filtered or sorted on), bytes.
pub const MAX_INDEXED_NAME: usize = 128;
/// Longest string value that is indexed (and may be a filter value), bytes.
pub const MAX_INDEXED_TEXT: usize = 1024;
/// `limit` of a collection read when none is given: the maximum, so a collection of up to 1000
/// objects reads whole (the contract asks for at least the 100 newest, whatever the id scheme).
pub const DEFAULT_LIST_LIMIT: u32 = 1000;
/// Largest `limit` served; larger requests are clamped to it.
pub const MAX_LIST_LIMIT: u32 = crate::query::MAX_LIMIT;
/// Largest `skip`; deeper pages use the `after` cursor.
pub const MAX_SKIP: u64 = 10_000;
/// Most fields in one `where` filter.
pub const MAX_FILTERS: usize = 8;

/// Owner value the store uses for objects shared by the users of an app (user ids are ≥ 1).
pub const SHARED_OWNER: i64 = 0;

/// `/classes/me` (private to one user) or `/classes/app` (shared by the users of one app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Me,
    App,
}

/// The parsed part of a classes URL after the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassPath {
    pub scope: Scope,
    /// `Playlists` or `Playlists/25/Songs`: collection names and ids, ending with a collection.
    pub collection: String,
    /// The object id when the path ends with one.
    pub id: Option<String>,
}

/// Parses `scope` (`me` or `app`, else 404) and `rest` (`C1[/id1[/C2…]]`, one trailing `/`
/// allowed). Every odd segment is a collection name, every even one an object id.
pub fn parse_class_path(scope: &str, rest: &str) -> Result<ClassPath> {
    let scope = match scope {
        "me" => Scope::Me,
        "app" => Scope::App,
        _ => return Err(Error::not_found("Not found: classes are under /v2/classes/me or /v2/classes/app")),
    };
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(Error::bad_request("A collection name is required: /v2/classes/me/{Collection}"));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() > MAX_COLLECTIONS_IN_PATH * 2 {
        return Err(Error::bad_request(format!(
            "Too many path segments: at most {MAX_COLLECTIONS_IN_PATH} collections deep"
        )));
    }
    for (i, seg) in segments.iter().enumerate() {
        if i.is_multiple_of(2) { validate_collection_name(seg)? } else { validate_id(seg)? }
    }
    let (collection, id) = if segments.len().is_multiple_of(2) {
        let id = segments[segments.len() - 1].to_owned();
        (segments[..segments.len() - 1].join("/"), Some(id))
    } else {
        (segments.join("/"), None)
    };
    Ok(ClassPath { scope, collection, id })
}

/// A collection name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `_` or `-`.
pub fn validate_collection_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "Invalid collection name {}: use 1 to {MAX_NAME_LEN} letters, digits, '_' or '-'",
            time::echo(name)
        )))
    }
}

/// An object id: 1 to [`MAX_ID_LEN`] ASCII letters, digits or `_ - . ~ : @`, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~' | b':' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "Invalid _id {}: use 1 to {MAX_ID_LEN} letters, digits or _ - . ~ : @",
            time::echo(id)
        )))
    }
}

/// The `_id` given in a body: a string, or an integer stored as its decimal string.
pub fn id_from_value(v: &Value) -> Result<String> {
    let id = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return Err(Error::bad_request("_id must be a string or an integer")),
    };
    validate_id(&id)?;
    Ok(id)
}

/// Whose collection: the users of an app share [`Owner::App`] collections; [`Owner::User`]
/// collections belong to one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    App,
    User(i64),
}

impl Owner {
    /// The owner column of the store: the user id, or [`SHARED_OWNER`].
    pub fn as_i64(self) -> i64 {
        match self {
            Owner::App => SHARED_OWNER,
            Owner::User(id) => id,
        }
    }
}

/// One collection: objects with the same (app, owner, path) are in it; nothing else is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Collection {
    pub app_id: String,
    pub owner: Owner,
    /// `Playlists` or `Playlists/25/Songs` (validated by [`parse_class_path`]).
    pub path: String,
}

impl Collection {
    /// The notifier topic key of the collection: `app/<appId>/app/<path>` for shared
    /// collections, `app/<appId>/<userId>/<path>` for a user's own.
    pub fn topic_key(&self) -> String {
        match self.owner {
            Owner::App => format!("app/{}/app/{}", self.app_id, self.path),
            Owner::User(id) => format!("app/{}/{id}/{}", self.app_id, self.path),
        }
    }
}

/// The sortable stored form of an `_id`. Canonical non-negative integers (`0`, `25`, `100`; no
/// leading zeros, at most 99 digits) sort numerically and before every other id; other ids sort
/// by their bytes. Encoding: `0` + two-digit length + digits, or `1` + the id (bijective).
pub fn sort_key(id: &str) -> String {
    let canonical_number = !id.is_empty()
        && id.len() <= 99
        && id.bytes().all(|b| b.is_ascii_digit())
        && (id.len() == 1 || !id.starts_with('0'));
    if canonical_number { format!("0{:02}{id}", id.len()) } else { format!("1{id}") }
}

static LAST_ID_TICK: AtomicU64 = AtomicU64::new(0);

/// A new object id: 16 hex digits of a time tick (1/1024 ms, strictly increasing in this
/// process) and 6 random URL-safe characters; 22 characters. Ids generated later sort higher, so
/// "primary key descending" lists the newest generated objects first.
pub fn new_object_id() -> String {
    let now = u64::try_from(time::now_ms()).unwrap_or(0).saturating_mul(1024);
    let mut last = LAST_ID_TICK.load(Ordering::Relaxed);
    let tick = loop {
        let next = now.max(last.saturating_add(1));
        match LAST_ID_TICK.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    let mut id = format!("{tick:016x}");
    id.push_str(&ids::random_b64(6)[..6]);
    id
}

/// A top-level scalar field value as indexed for filters and sorting.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    /// The indexable form of a value: `None` for arrays, objects and strings over
    /// [`MAX_INDEXED_TEXT`] bytes.
    pub fn of(v: &Value) -> Option<Scalar> {
        Some(match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Scalar::Int(i),
                None => Scalar::Float(n.as_f64()?),
            },
            Value::String(s) if s.len() <= MAX_INDEXED_TEXT => Scalar::Text(s.clone()),
            _ => return None,
        })
    }
}

/// An object ready to store: its id, sortable key, JSON text (`_id` first, then the fields in
/// the order sent) and its indexable top-level fields.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedObject {
    pub id: String,
    pub key: String,
    pub body: String,
    pub fields: Vec<(String, Scalar)>,
}

/// Validates an object (field count, nesting depth, size) and builds its stored form. An `_id`
/// inside `fields` is ignored (the caller decided the id).
pub fn prepare_object(id: String, mut fields: Map<String, Value>) -> Result<PreparedObject> {
    fields.shift_remove("_id");
    if fields.len() > MAX_TOP_LEVEL_FIELDS {
        return Err(Error::bad_request(format!(
            "An object may have at most {MAX_TOP_LEVEL_FIELDS} top-level fields, got {}",
            fields.len()
        )));
    }
    for v in fields.values() {
        if depth(v) + 1 > MAX_DEPTH {
            return Err(Error::bad_request(format!("Objects may nest at most {MAX_DEPTH} levels deep")));
        }
    }
    let indexed = indexed_fields(&fields);
    let mut full = Map::with_capacity(fields.len() + 1);
    full.insert("_id".to_owned(), Value::String(id.clone()));
    full.extend(fields);
    let body = serde_json::to_string(&Value::Object(full)).map_err(Error::internal)?;
    if body.len() > MAX_OBJECT_BYTES {
        return Err(Error::PayloadTooLarge(format!(
            "An object may be at most {MAX_OBJECT_BYTES} bytes as JSON, this one is {}",
            body.len()
        )));
    }
    Ok(PreparedObject { key: sort_key(&id), id, body, fields: indexed })
}

/// The indexable top-level fields of an object (`_id` excluded).
pub fn indexed_fields(fields: &Map<String, Value>) -> Vec<(String, Scalar)> {
    fields
        .iter()
        .filter(|(name, _)| name.as_str() != "_id" && !name.is_empty() && name.len() <= MAX_INDEXED_NAME)
        .filter_map(|(name, v)| Scalar::of(v).map(|s| (name.clone(), s)))
        .collect()
}

/// Parses a stored object's text into its fields (without `_id`).
pub fn stored_fields(body: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(mut m)) => {
            m.shift_remove("_id");
            Ok(m)
        }
        _ => Err(Error::internal("a stored object is not a JSON object")),
    }
}

/// Merges `patch` into a stored object: fields sent replace (or add to) the stored ones, fields
/// not sent stay. Returns the new stored form, validated like a new object.
pub fn merge_object(id: &str, stored_body: &str, patch: Map<String, Value>) -> Result<PreparedObject> {
    let mut fields = stored_fields(stored_body)?;
    for (k, v) in patch {
        if k != "_id" {
            fields.insert(k, v);
        }
    }
    prepare_object(id.to_owned(), fields)
}

/// Nesting depth of a value: scalars 0, `[]`/`{}` 1, `[[1]]` 2. Iterative, so it cannot overflow.
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                max = max.max(d + 1);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(o) => {
                max = max.max(d + 1);
                stack.extend(o.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Order of a collection read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListOrder {
    /// Primary key descending (the guide's order; the default).
    #[default]
    IdDesc,
    IdAsc,
    /// By a top-level scalar field, then by primary key in the same direction. Objects without
    /// that field (or with an array, object or long string in it) are not listed.
    Field {
        name: String,
        desc: bool,
    },
}

/// A collection read: which objects, in which order, which page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    /// 1..=[`MAX_LIST_LIMIT`].
    pub limit: u32,
    /// Objects skipped before the page, 0..=[`MAX_SKIP`].
    pub skip: u64,
    /// Cursor: list only objects after this `_id` in the listing order.
    pub after: Option<String>,
    /// Equality on top-level fields, all must hold.
    pub filters: Vec<(String, Scalar)>,
    pub order: ListOrder,
}

impl ListQuery {
    /// Builds a read from the raw `limit`, `skip`, `after`, `where` and `sort` parameters.
    pub fn from_params(
        limit: Option<&str>,
        skip: Option<&str>,
        after: Option<&str>,
        filter: Option<&str>,
        sort: Option<&str>,
    ) -> Result<Self> {
        // Same rules as a timeline read's `limit` (MAX_LIST_LIMIT is its maximum); another default.
        let limit = match limit {
            None => DEFAULT_LIST_LIMIT,
            raw => query::parse_limit(raw)?,
        };
        let skip = match skip {
            None => 0,
            Some(raw) => match query::parse_whole(raw) {
                Some(n) if n <= MAX_SKIP => n,
                _ => {
                    return Err(Error::bad_request(format!(
                        "skip must be a whole number from 0 to {MAX_SKIP} (page deeper with after=<last _id>), got {}",
                        time::echo(raw)
                    )));
                }
            },
        };
        let after = after.map(|a| validate_id(a).map(|()| a.to_owned())).transpose()?;
        let filters = filter.map(parse_where).transpose()?.unwrap_or_default();
        let order = sort.map(parse_sort).transpose()?.unwrap_or_default();
        Ok(ListQuery { limit, skip, after, filters, order })
    }
}

impl ListQuery {
    /// The fields the read filters or sorts on (`where` fields, then a field `sort`), in that
    /// order; `_id` order names none.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        let sort = match &self.order {
            ListOrder::Field { name, .. } => Some(name.as_str()),
            _ => None,
        };
        self.filters.iter().map(|(name, _)| name.as_str()).chain(sort)
    }
}

/// Parses `where`: a JSON object of top-level field → scalar value (string, number, boolean or
/// null), every pair must be equal.
pub fn parse_where(raw: &str) -> Result<Vec<(String, Scalar)>> {
    let map = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(Error::bad_request("where must be a JSON object such as {\"name\":\"Dubstep\"}")),
        Err(e) => return Err(Error::bad_request(format!("where is not valid JSON: {e}"))),
    };
    if map.len() > MAX_FILTERS {
        return Err(Error::bad_request(format!("where may name at most {MAX_FILTERS} fields")));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, v) in map {
        validate_field_name("where", &name)?;
        let scalar = match &v {
            Value::Array(_) | Value::Object(_) => {
                return Err(Error::bad_request(format!(
                    "where: the value of {} must be a string, number, boolean or null",
                    time::echo(&name)
                )));
            }
            Value::String(s) if s.len() > MAX_INDEXED_TEXT => {
                return Err(Error::bad_request(format!(
                    "where: string values are limited to {MAX_INDEXED_TEXT} bytes"
                )));
            }
            other => Scalar::of(other).ok_or_else(|| Error::bad_request("where: unsupported value"))?,
        };
        out.push((name, scalar));
    }
    Ok(out)
}

/// Parses `sort`: `field` ascending, `-field` descending; `_id` / `-_id` for primary key order.
pub fn parse_sort(raw: &str) -> Result<ListOrder> {
    let (desc, name) = match raw.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, raw),
    };
    if name == "_id" {
        return Ok(if desc { ListOrder::IdDesc } else { ListOrder::IdAsc });
    }
    validate_field_name("sort", name)?;
    Ok(ListOrder::Field { name: name.to_owned(), desc })
}

fn validate_field_name(param: &str, name: &str) -> Result<()> {
    if name == "_id" && param == "where" {
        return Err(Error::bad_request("where cannot filter on _id: read the object at …/{Collection}/{_id}"));
    }
    if name.is_empty() || name.len() > MAX_INDEXED_NAME {
        return Err(Error::bad_request(format!(
            "{param}: field names must be 1 to {MAX_INDEXED_NAME} bytes, got {}",
            time::echo(name)
        )));
    }
    Ok(())
}

/// The name of a collection path: its last collection (`Songs` for `Playlists/25/Songs`).
pub fn collection_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The fields an app's operator declared filterable and sortable in the app's shared
/// (`/classes/app`) collections, by collection name: the fields of `Songs` apply to every shared
/// collection of that name (`Songs`, `Playlists/25/Songs`, …). A shared collection is filtered
/// and sorted only on `_id` and its declared fields ([`check_declared`]), and the store keeps
/// exactly these fields indexed in it. Serialized as the panel shows it:
/// `{"Tracks":["genre","rank"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IndexDeclarations(BTreeMap<String, Vec<String>>);

impl IndexDeclarations {
    /// Validates a declaration as the panel receives it: an object of collection name → array of
    /// distinct field names; at most [`MAX_DECLARED_COLLECTIONS`] names, at most
    /// [`MAX_INDEXED_FIELDS`] fields each, field names as `where` and `sort` take them (not `_id`,
    /// which needs none).
    pub fn from_json(v: &Value) -> Result<IndexDeclarations> {
        let Value::Object(map) = v else {
            return Err(Error::bad_request(
                "indexes must be an object of collection name to field names, such as {\"Tracks\":[\"genre\",\"rank\"]}",
            ));
        };
        if map.len() > MAX_DECLARED_COLLECTIONS {
            return Err(Error::bad_request(format!(
                "indexes: at most {MAX_DECLARED_COLLECTIONS} collection names per app, got {}",
                map.len()
            )));
        }
        let mut out = BTreeMap::new();
        for (name, fields) in map {
            validate_collection_name(name)
                .map_err(|e| Error::bad_request(format!("indexes: {}", e.public_message())))?;
            let list = fields.as_array().ok_or_else(|| {
                Error::bad_request(format!(
                    "indexes: the fields of {} must be an array of field names",
                    time::echo(name)
                ))
            })?;
            if list.len() > MAX_INDEXED_FIELDS {
                return Err(Error::bad_request(format!(
                    "indexes: at most {MAX_INDEXED_FIELDS} fields per collection, {} has {}",
                    time::echo(name),
                    list.len()
                )));
            }
            let mut names: Vec<String> = Vec::with_capacity(list.len());
            for f in list {
                let Some(field) = f.as_str() else {
                    return Err(Error::bad_request(format!(
                        "indexes: the fields of {} must be strings",
                        time::echo(name)
                    )));
                };
                if field == "_id" {
                    return Err(Error::bad_request(
                        "indexes: _id needs no declaration (sort=_id and -_id always work)",
                    ));
                }
                validate_field_name("indexes", field)?;
                if names.iter().any(|n| n == field) {
                    return Err(Error::bad_request(format!(
                        "indexes: field {} of {} is declared twice",
                        time::echo(field),
                        time::echo(name)
                    )));
                }
                names.push(field.to_owned());
            }
            out.insert(name.clone(), names);
        }
        Ok(IndexDeclarations(out))
    }

    /// The declared fields of the shared collection at `path` (those of its name), in the order
    /// declared; empty when none.
    pub fn fields_of(&self, path: &str) -> &[String] {
        self.0.get(collection_name(path)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Collection name → declared fields, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The rule of shared collections: a read of the shared collection at `path` may filter and sort
/// only on `_id` and the fields `declared` for its name. Anything else is a 400 that says how the
/// operator declares the field. (A `/classes/me` collection is private to one user, who alone
/// pays for its indexes: any field, indexed on first use, up to [`MAX_INDEXED_FIELDS`].)
pub fn check_declared(declared: &IndexDeclarations, path: &str, query: &ListQuery) -> Result<()> {
    let fields = declared.fields_of(path);
    let sort = match &query.order {
        ListOrder::Field { name, .. } => Some(("sort", name.as_str())),
        _ => None,
    };
    let named = query.filters.iter().map(|(name, _)| ("where", name.as_str())).chain(sort);
    for (param, field) in named {
        if !fields.iter().any(|f| f == field) {
            return Err(undeclared(param, path, field));
        }
    }
    Ok(())
}

/// The 400 of a read naming a field not declared for a shared collection.
pub fn undeclared(param: &str, path: &str, field: &str) -> Error {
    let name = collection_name(path);
    let example = serde_json::json!({ name: [field] });
    Error::bad_request(format!(
        "{param}: field {} is not declared for the shared collection {}: shared (/classes/app) collections \
         are filtered and sorted only on _id and the fields the app's operator declares in the panel \
         (PUT /v2/panel/apps/{{appId}} with {{\"indexes\":{example}}}, added to the app's other declarations)",
        time::echo(field),
        time::echo(name),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths() {
        let p = parse_class_path("me", "Playlists").unwrap();
        assert_eq!((p.scope, p.collection.as_str(), p.id), (Scope::Me, "Playlists", None));
        let p = parse_class_path("app", "Playlists/25/Songs/100/").unwrap();
        assert_eq!((p.scope, p.collection.as_str(), p.id.as_deref()), (Scope::App, "Playlists/25/Songs", Some("100")));
        assert_eq!(parse_class_path("you", "A").unwrap_err().status(), 404);
        for bad in ["", "/", "A//B", "Play lists", "A/b c", "A/..", &"x".repeat(65), &"A/1/".repeat(9)] {
            assert_eq!(parse_class_path("me", bad).unwrap_err().status(), 400, "{bad}");
        }
        assert!(parse_class_path("me", &"A/1/".repeat(8)).is_ok());
    }

    #[test]
    fn ids_from_body() {
        assert_eq!(id_from_value(&json!("25")).unwrap(), "25");
        assert_eq!(id_from_value(&json!(25)).unwrap(), "25");
        assert!(id_from_value(&json!(2.5)).is_err());
        assert!(id_from_value(&json!({"a": 1})).is_err());
        assert!(id_from_value(&json!("a/b")).is_err());
    }

    #[test]
    fn sort_keys_order_numbers_numerically_then_strings() {
        let mut ids = vec!["b", "100", "25", "9", "a", "007", "0"];
        ids.sort_by_key(|i| sort_key(i));
        assert_eq!(ids, vec!["0", "9", "25", "100", "007", "a", "b"]);
    }

    #[test]
    fn generated_ids_increase() {
        let a = new_object_id();
        let b = new_object_id();
        assert_eq!(a.len(), 22);
        assert!(sort_key(&b) > sort_key(&a));
        assert!(validate_id(&a).is_ok());
    }

    #[test]
    fn prepare_and_merge() {
        let m = json!({"name": "Dubstep", "_id": "ignored", "tags": ["a"], "n": 1.5}).as_object().unwrap().clone();
        let o = prepare_object("25".into(), m).unwrap();
        assert_eq!(o.body, r#"{"_id":"25","name":"Dubstep","tags":["a"],"n":1.5}"#);
        assert_eq!(o.fields, vec![("name".into(), Scalar::Text("Dubstep".into())), ("n".into(), Scalar::Float(1.5))]);
        let patch = json!({"name": "Dubstep Mix", "duration": 180}).as_object().unwrap().clone();
        let merged = merge_object("25", &o.body, patch).unwrap();
        assert_eq!(merged.body, r#"{"_id":"25","name":"Dubstep Mix","tags":["a"],"n":1.5,"duration":180}"#);
    }

    #[test]
    fn limits() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        let m = json!({ "d": deep }).as_object().unwrap().clone();
        assert_eq!(prepare_object("1".into(), m).unwrap_err().status(), 400);
        let big = json!({"s": "x".repeat(MAX_OBJECT_BYTES)}).as_object().unwrap().clone();
        assert_eq!(prepare_object("1".into(), big).unwrap_err().status(), 413);
        let many: Map<String, Value> = (0..=MAX_TOP_LEVEL_FIELDS).map(|i| (i.to_string(), json!(i))).collect();
        assert_eq!(prepare_object("1".into(), many).unwrap_err().status(), 400);
    }

    #[test]
    fn list_params() {
        let q = ListQuery::from_params(None, None, None, None, None).unwrap();
        assert_eq!((q.limit, q.skip, q.order), (DEFAULT_LIST_LIMIT, 0, ListOrder::IdDesc));
        let q = ListQuery::from_params(Some("5000"), Some("10"), Some("25"), Some(r#"{"a":1,"b":"x"}"#), Some("-n"))
            .unwrap();
        assert_eq!(q.limit, MAX_LIST_LIMIT);
        assert_eq!(q.filters, vec![("a".into(), Scalar::Int(1)), ("b".into(), Scalar::Text("x".into()))]);
        assert_eq!(q.order, ListOrder::Field { name: "n".into(), desc: true });
        for (l, s, w, o) in [
            (Some("0"), None, None, None),
            (Some("x"), None, None, None),
            (None, Some("-1"), None, None),
            (None, Some("10001"), None, None),
            (None, None, Some("{"), None),
            (None, None, Some("[1]"), None),
            (None, None, Some(r#"{"a":[1]}"#), None),
            (None, None, Some(r#"{"_id":"1"}"#), None),
            (None, None, None, Some("")),
            (None, None, None, Some("-")),
        ] {
            assert_eq!(ListQuery::from_params(l, s, None, w, o).unwrap_err().status(), 400);
        }
    }

    #[test]
    fn topic_keys() {
        let c = Collection { app_id: "A".into(), owner: Owner::User(7), path: "P/1/S".into() };
        assert_eq!(c.topic_key(), "app/A/7/P/1/S");
        let c = Collection { owner: Owner::App, ..c };
        assert_eq!(c.topic_key(), "app/A/app/P/1/S");
    }

    #[test]
    fn index_declarations() {
        let d = IndexDeclarations::from_json(&json!({"Tracks": ["genre", "rank"], "Songs": []})).unwrap();
        assert_eq!(serde_json::to_value(&d).unwrap(), json!({"Songs": [], "Tracks": ["genre", "rank"]}));
        assert_eq!(d.fields_of("Tracks"), ["genre", "rank"]);
        assert_eq!(d.fields_of("Albums/3/Tracks"), ["genre", "rank"], "by collection name, at any depth");
        assert!(d.fields_of("Tracks/3/Notes").is_empty());
        let too_many: Vec<String> = (0..=MAX_INDEXED_FIELDS).map(|i| format!("f{i}")).collect();
        let names: Map<String, Value> = (0..=MAX_DECLARED_COLLECTIONS).map(|i| (format!("C{i}"), json!([]))).collect();
        for bad in [
            json!(["genre"]),
            json!({"Bad Name": ["a"]}),
            json!({"Tracks": "genre"}),
            json!({"Tracks": [1]}),
            json!({"Tracks": ["_id"]}),
            json!({"Tracks": [""]}),
            json!({"Tracks": ["x".repeat(MAX_INDEXED_NAME + 1)]}),
            json!({"Tracks": ["a", "a"]}),
            json!({ "Tracks": too_many }),
            Value::Object(names),
        ] {
            assert_eq!(IndexDeclarations::from_json(&bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn shared_reads_name_only_declared_fields() {
        let d = IndexDeclarations::from_json(&json!({"Tracks": ["genre", "rank"]})).unwrap();
        let q = |w: Option<&str>, s: Option<&str>| ListQuery::from_params(None, None, None, w, s).unwrap();
        for ok in [q(None, None), q(None, Some("-_id")), q(Some(r#"{"genre":"jazz"}"#), Some("-rank"))] {
            check_declared(&d, "Tracks", &ok).unwrap();
            check_declared(&d, "Albums/1/Tracks", &ok).unwrap();
        }
        let e = check_declared(&d, "Tracks", &q(Some(r#"{"genre":"jazz","mood":"calm"}"#), None)).unwrap_err();
        assert_eq!(e.status(), 400);
        let m = e.public_message();
        assert!(m.starts_with(r#"where: field "mood" is not declared for the shared collection "Tracks""#), "{m}");
        assert!(m.contains(r#"{"indexes":{"Tracks":["mood"]}}"#), "{m}");
        let e = check_declared(&d, "Notes", &q(None, Some("genre"))).unwrap_err();
        assert!(e.public_message().starts_with("sort: field \"genre\""), "{}", e.public_message());
        let three = q(Some(r#"{"a":1,"b":2}"#), Some("-c"));
        assert_eq!(three.field_names().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
