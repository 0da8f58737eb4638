//! Writing and reading resource values: parsing a write body (the same `{"values":[…]}` on every
//! protocol), magic resources (`$geo`, `$settings`, `$settings.<path>`), datetimes, storing through
//! the group-commit store, and publishing what was committed on the notifier: the items as
//! written, each with the `geo` attribute it was sent with (the `$geo` point that attribute also
//! records travels inside it).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use thingline_bus::{Event, Topic};
use thingline_core::json::JsonText;
use thingline_core::keys::{GEO_KEY, MagicKey, SETTINGS_KEY, classify, get_path, validate_key, validate_path};
use thingline_core::model::{GeoAttr, Thing, ValueItem, WrittenValue};
use thingline_core::query::TimelineQuery;
use thingline_core::time::{now_ms, parse_datetime_value};
use thingline_core::{Error, Result, geo};
use thingline_store::NewPoint;

use super::Platform;

/// One value to write, validated.
#[derive(Debug, Clone)]
pub struct WriteItem {
    pub key: String,
    /// JSON text as sent.
    pub value: String,
    pub ts: Option<i64>,
    /// A `geo` attribute: also recorded on `$geo` with the same datetime.
    pub geo: Option<WriteGeo>,
}

/// The `geo` attribute of an item to write.
#[derive(Debug, Clone)]
pub struct WriteGeo {
    /// The attribute as sent (JSON text).
    pub sent: String,
    /// The GeoJSON Point it stands for, as recorded on `$geo` (JSON text).
    pub point: String,
}

/// The `store` and `broadcast` flags of a write.
#[derive(Debug, Clone, Copy)]
pub struct WriteFlags {
    pub store: bool,
    pub broadcast: bool,
}

impl Default for WriteFlags {
    fn default() -> Self {
        WriteFlags { store: true, broadcast: true }
    }
}

impl WriteFlags {
    /// The flags of a write's query parameters `store` and `broadcast` (both default true).
    pub fn from_params(store: Option<&str>, broadcast: Option<&str>) -> Result<WriteFlags> {
        Ok(WriteFlags {
            store: thingline_core::query::parse_bool_flag("store", store, true)?,
            broadcast: thingline_core::query::parse_bool_flag("broadcast", broadcast, true)?,
        })
    }
}

#[derive(Deserialize)]
struct WriteBody<'a> {
    #[serde(borrow)]
    values: Vec<RawItem<'a>>,
}

#[derive(Deserialize)]
struct RawItem<'a> {
    key: Option<String>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(default)]
    datetime: Option<serde_json::Value>,
    #[serde(borrow, default)]
    geo: Option<&'a RawValue>,
}

/// Parses `{"values":[{"key","value","datetime"?,"geo"?}, …]}`. `path_key` is the key of an
/// app-side write (`/v2/me/resources/{key}/…`), used when an item has no `key` of its own.
/// The body's nesting is bounded first (`thingline_core::json`); a `BoundedJson` body (the HTTP
/// adapter's) was checked when it was read.
pub fn parse_write_items(
    body: &(impl JsonText + ?Sized),
    path_key: Option<&str>,
    max_values: usize,
) -> Result<Vec<WriteItem>> {
    let body = body.bounded()?;
    let parsed: WriteBody<'_> = serde_json::from_str(body).map_err(|e| json_error(&e))?;
    if parsed.values.is_empty() {
        return Err(Error::bad_request("values must hold at least one value"));
    }
    if parsed.values.len() > max_values {
        return Err(Error::PayloadTooLarge(format!("at most {max_values} values per request")));
    }
    let mut out = Vec::with_capacity(parsed.values.len());
    for (i, item) in parsed.values.into_iter().enumerate() {
        let key = match (item.key, path_key) {
            (Some(k), None) => k,
            (None, Some(p)) => p.to_owned(),
            (Some(k), Some(p)) if k == p => k,
            (Some(_), Some(_)) => {
                return Err(Error::bad_request(format!("values[{i}].key differs from the resource in the path")));
            }
            (None, None) => return Err(Error::bad_request(format!("values[{i}].key is required"))),
        };
        validate_key(&key).map_err(|e| Error::bad_request(format!("values[{i}].key: {}", e.public_message())))?;
        let ts = match &item.datetime {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                parse_datetime_value(v)
                    .map_err(|e| Error::bad_request(format!("values[{i}].datetime: {}", e.public_message())))?,
            ),
        };
        let geo_attr: Option<serde_json::Value> = match item.geo {
            None => None,
            Some(raw) => match serde_json::from_str(raw.get()).map_err(|e| json_error(&e))? {
                serde_json::Value::Null => None,
                g => Some(g),
            },
        };
        let value = match classify(&key) {
            MagicKey::Geo => {
                let v: serde_json::Value = match item.value {
                    Some(raw) => serde_json::from_str(raw.get()).map_err(|e| json_error(&e))?,
                    None => serde_json::Value::Null,
                };
                let point = geo::parse_geo_value(&v, geo_attr.as_ref())
                    .map_err(|e| Error::bad_request(format!("values[{i}]: {}", e.public_message())))?;
                out.push(WriteItem { key, value: point.to_string(), ts, geo: None });
                continue;
            }
            _ => match item.value {
                Some(raw) => raw.get().to_owned(),
                None => return Err(Error::bad_request(format!("values[{i}].value is required"))),
            },
        };
        let geo = match (&geo_attr, item.geo) {
            (Some(g), Some(raw)) => Some(WriteGeo {
                sent: raw.get().to_owned(),
                point: geo::parse_geo_attr(g)
                    .map_err(|e| Error::bad_request(format!("values[{i}].geo: {}", e.public_message())))?
                    .to_string(),
            }),
            _ => None,
        };
        out.push(WriteItem { key, value, ts, geo });
    }
    Ok(out)
}

/// One write's share of a store append: per timeline item, the index of its point and of its
/// `geo` attribute's `$geo` point (with the attribute as sent); and its `$settings` updates.
struct Planned {
    plan: Vec<(usize, Option<(usize, String)>)>,
    settings: Vec<(String, Option<String>, serde_json::Value, Option<i64>)>,
}

/// Checks one write's items and adds its points to `points`.
fn plan_write(items: Vec<WriteItem>, points: &mut Vec<NewPoint>) -> Result<Planned> {
    let mut plan = Vec::with_capacity(items.len());
    let mut settings = Vec::new();
    for item in items {
        match classify(&item.key) {
            MagicKey::Settings(path) => {
                if let Some(p) = path {
                    validate_path(p)?;
                }
                let value: serde_json::Value = serde_json::from_str(&item.value).map_err(|e| json_error(&e))?;
                if path.is_none() && !value.is_object() {
                    return Err(Error::bad_request("$settings must be a JSON object"));
                }
                settings.push((item.key.clone(), path.map(str::to_owned), value, item.ts));
            }
            _ => {
                let geo = item.geo.map(|g| {
                    points.push(NewPoint { key: GEO_KEY.to_owned(), ts: item.ts, value: g.point });
                    (points.len() - 1, g.sent)
                });
                points.push(NewPoint { key: item.key, ts: item.ts, value: item.value });
                plan.push((points.len() - 1, geo));
            }
        }
    }
    Ok(Planned { plan, settings })
}

/// A client-facing message for malformed or mis-shaped JSON, naming line and column.
pub fn json_error(e: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => Error::bad_request(format!("Malformed JSON: {e}")),
        _ => Error::bad_request(format!("Invalid body: {e}")),
    }
}

/// Most keys in one `all_resources` answer.
pub const ALL_RESOURCES_MAX_KEYS: usize = 100;
/// Most values in one `all_resources` answer.
pub const ALL_RESOURCES_MAX_VALUES: usize = 1000;

/// One page of [`Platform::read_all`].
pub struct AllResources {
    /// Each key with its newest values, in key order.
    pub keys: Vec<(String, ReadOut)>,
    /// The `after` of the next page, when there is one.
    pub next_after: Option<String>,
}

impl AllResources {
    /// The JSON answer: `[{"key":k,"values":[…]}, …]`.
    pub fn render(&self) -> String {
        let mut out = String::from("[");
        for (i, (key, read)) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"key\":");
            crate::wire::push_str_lit(&mut out, key);
            out.push_str(",\"values\":");
            out.push_str(&read.render());
            out.push('}');
        }
        out.push(']');
        out
    }
}

/// What a read returns: a timeline (items with datetimes), or the `$settings` document (or a
/// path inside it), echoed under the key asked.
#[derive(Debug)]
pub enum ReadOut {
    Timeline(Vec<ValueItem>),
    Document { key: String, value: serde_json::Value },
}

impl ReadOut {
    /// The JSON answer of a read: timeline items, or the settings document under the key asked.
    pub fn render(&self) -> String {
        match self {
            ReadOut::Timeline(items) => crate::wire::items_array(items),
            ReadOut::Document { key, value } => {
                let mut s = String::from("[{\"key\":");
                crate::wire::push_str_lit(&mut s, key);
                s.push_str(",\"value\":");
                s.push_str(&value.to_string());
                s.push_str("}]");
                s
            }
        }
    }
}

impl Platform {
    /// Writes values to a thing: stores them (unless `store=false`), then publishes them as
    /// written, with their committed datetimes (unless `broadcast=false`).
    pub async fn write_values(&self, thing: &Thing, items: Vec<WriteItem>, flags: WriteFlags) -> Result<()> {
        self.write_batches(thing, vec![items], flags).await
    }

    /// Writes several writes of one thing (an MQTT client's publishes in flight) as one store
    /// append, one commit, then one realtime event per write, in order: all are stored, or none.
    pub async fn write_batches(&self, thing: &Thing, batches: Vec<Vec<WriteItem>>, flags: WriteFlags) -> Result<()> {
        let mut points = Vec::new();
        let mut planned = Vec::with_capacity(batches.len());
        for items in batches {
            planned.push(plan_write(items, &mut points)?);
        }
        let mut committed: Vec<ValueItem> = if flags.store {
            let stored = self.store.append(thing.seq, points).await?;
            for p in &stored {
                self.latest.offer(thing.seq, &p.key, p.ts, &p.value);
            }
            stored.into_iter().map(|p| ValueItem { key: p.key, value: p.value, ts: p.ts }).collect()
        } else {
            let now = now_ms();
            points.into_iter().map(|p| ValueItem { key: p.key, value: p.value, ts: p.ts.unwrap_or(now) }).collect()
        };
        for Planned { plan, settings } in planned {
            let mut written = Vec::with_capacity(plan.len() + settings.len());
            for (i, geo) in plan {
                let geo = geo.and_then(|(gi, sent)| {
                    committed.get_mut(gi).map(|p| GeoAttr { sent, point: std::mem::take(&mut p.value), ts: p.ts })
                });
                if let Some(item) = committed.get_mut(i) {
                    written.push(WrittenValue { item: std::mem::take(item), geo });
                }
            }
            for (key, path, value, ts) in settings {
                if flags.store {
                    self.store.update_thing_settings(thing.seq, path.as_deref(), value.clone()).await?;
                }
                written.push(WrittenValue {
                    item: ValueItem { key, value: value.to_string(), ts: ts.unwrap_or_else(now_ms) },
                    geo: None,
                });
            }
            if flags.broadcast && !written.is_empty() {
                self.publish_values(thing, written);
            }
        }
        Ok(())
    }

    /// Publishes values of a thing to every realtime path.
    pub fn publish_values(&self, thing: &Thing, items: Vec<WrittenValue>) {
        self.bus.publish(
            &Topic::Thing(thing.seq),
            Event::Values { thing_seq: thing.seq, thing_id: Arc::from(thing.id.as_str()), items: Arc::from(items) },
        );
    }

    /// Tells this node's live subscriptions of an app user that their access changed (a link or
    /// grant was removed, a session ended), so they re-check their session and permissions and
    /// end what is no longer allowed. Every node does so when it applies the invalidation
    /// (`coherence`), after dropping what it cached.
    pub(crate) fn access_changed(&self, user_id: i64) {
        self.notifier.publish(&Topic::User(user_id), Event::AccessChanged { user_id });
    }

    /// Reads a key of a thing, newest first. 404 when never written.
    pub async fn read_values(&self, thing: &Thing, key: &str, query: &TimelineQuery) -> Result<ReadOut> {
        validate_key(key)?;
        match classify(key) {
            MagicKey::Settings(path) => {
                let doc = self.store.thing_settings(thing.seq).await?;
                let value = match path {
                    None => doc,
                    Some(p) => get_path(&doc, p).cloned().ok_or_else(|| Error::resource_not_found(key))?,
                };
                Ok(ReadOut::Document { key: key.to_owned(), value })
            }
            _ => {
                let latest_only = query.limit == 1 && query.start.is_none() && query.end.is_none();
                if latest_only
                    && !self.clustered
                    && let Some((ts, value)) = self.latest.get(thing.seq, key)
                {
                    return Ok(ReadOut::Timeline(vec![ValueItem {
                        key: key.to_owned(),
                        value: value.to_string(),
                        ts,
                    }]));
                }
                let points =
                    self.store.read(thing.seq, key, query).await?.ok_or_else(|| Error::resource_not_found(key))?;
                if latest_only && let Some(p) = points.first() {
                    self.latest.offer(thing.seq, key, p.ts, &p.value);
                }
                Ok(ReadOut::Timeline(
                    points.into_iter().map(|p| ValueItem { key: p.key, value: p.value, ts: p.ts }).collect(),
                ))
            }
        }
    }

    /// The newest `limit` values of every key of a thing, in key order, one page at a time: at
    /// most [`ALL_RESOURCES_MAX_KEYS`] keys and [`ALL_RESOURCES_MAX_VALUES`] values (a key whose
    /// values would pass that waits for the next page, but a page always holds one key). `after`:
    /// the last key of the previous page.
    pub async fn read_all(&self, thing: &Thing, limit: u32, after: Option<&str>) -> Result<AllResources> {
        let mut keys = self.resource_keys(thing).await?;
        keys.sort_unstable();
        let query = TimelineQuery { limit, start: None, end: None };
        let mut page = AllResources { keys: Vec::new(), next_after: None };
        let mut values = 0;
        for key in keys.into_iter().filter(|k| after.is_none_or(|a| k.as_str() > a)) {
            if page.keys.len() == ALL_RESOURCES_MAX_KEYS {
                page.next_after = page.keys.last().map(|(k, _)| k.clone());
                break;
            }
            let read = match self.read_values(thing, &key, &query).await {
                Ok(r) => r,
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let n = match &read {
                ReadOut::Timeline(items) => items.len(),
                ReadOut::Document { .. } => 1,
            };
            if !page.keys.is_empty() && values + n > ALL_RESOURCES_MAX_VALUES {
                page.next_after = page.keys.last().map(|(k, _)| k.clone());
                break;
            }
            values += n;
            page.keys.push((key, read));
        }
        Ok(page)
    }

    /// Keys of a thing that hold values (plus `$settings` when it was set).
    pub async fn resource_keys(&self, thing: &Thing) -> Result<Vec<String>> {
        let mut keys = self.store.keys(thing.seq).await?;
        let settings = self.store.thing_settings(thing.seq).await?;
        if settings.as_object().is_some_and(|o| !o.is_empty()) {
            keys.push(SETTINGS_KEY.to_owned());
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_exactly_and_extra_fields_ignored() {
        let body = r#"{"values":[{"key":"t","value":"23.5","extra":1},{"key":"n","value":24.805999999999997,"datetime":"20150202T220035"}]}"#;
        let items = parse_write_items(body, None, 100).expect("parse");
        assert_eq!(items[0].value, "\"23.5\"");
        assert_eq!(items[1].value, "24.805999999999997");
        assert!(items[1].ts.is_some());
    }

    #[test]
    fn geo_forms_normalize_to_geojson() {
        let body = r#"{"values":[{"key":"$geo","value":[2.15,41.39]},{"key":"$geo","value":null,"geo":{"lat":"41.39","long":"2.15"}}]}"#;
        let items = parse_write_items(body, None, 100).expect("parse");
        for it in &items {
            let v: serde_json::Value = serde_json::from_str(&it.value).expect("json");
            assert_eq!(v["type"], "Point");
        }
        let with_attr = r#"{"values":[{"key":"t","value":1,"geo":{"lat":"41.39", "long":2.15}}]}"#;
        let items = parse_write_items(with_attr, None, 100).expect("parse");
        let geo = items[0].geo.as_ref().expect("geo attribute");
        assert_eq!(geo.sent, r#"{"lat":"41.39", "long":2.15}"#, "kept as sent");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&geo.point).expect("json")["type"], "Point");
        let bad = r#"{"values":[{"key":"$geo","value":[200,41.39]}]}"#;
        assert_eq!(parse_write_items(bad, None, 100).expect_err("range").status(), 400);
    }

    #[test]
    fn malformed_and_misshaped_bodies_are_400_with_position() {
        let e = parse_write_items("{\"values\": [", None, 10).expect_err("eof");
        assert_eq!(e.status(), 400);
        assert!(e.public_message().contains("line 1"), "{}", e.public_message());
        assert_eq!(parse_write_items("{\"values\": 3}", None, 10).expect_err("shape").status(), 400);
        assert_eq!(parse_write_items("{\"values\": []}", None, 10).expect_err("empty").status(), 400);
        assert_eq!(parse_write_items("{\"values\":[{\"value\":1}]}", None, 10).expect_err("no key").status(), 400);
    }
}
