//! The JSON shapes that go out on every protocol for values, written by hand because they are on
//! the hottest paths (reads of 1,000 values, fan-out to thousands of subscribers): the stored JSON
//! text of a value is spliced in as is, never parsed and re-serialized.

use thingline_core::keys::GEO_KEY;
use thingline_core::model::{ValueItem, WrittenValue};
use thingline_core::time::push_datetime;

/// Appends a JSON string literal.
pub fn push_str_lit(out: &mut String, s: &str) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // Nothing to escape (the common case for keys and ids): no allocation.
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // serde_json escapes exactly as JSON requires; writing to a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// `{"key":k,"value":v[,"geo":g][,"id":thingId],"datetime":d}`: a thing item, or with the thing's
/// id an app item (the guide's `{"value","id"}` plus the key and datetime). `geo` is the attribute
/// as the writer sent it.
fn push_item(out: &mut String, key: &str, value: &str, geo: Option<&str>, thing_id: Option<&str>, ts: i64) {
    out.push_str("{\"key\":");
    push_str_lit(out, key);
    out.push_str(",\"value\":");
    out.push_str(value);
    if let Some(g) = geo {
        out.push_str(",\"geo\":");
        out.push_str(g);
    }
    if let Some(id) = thing_id {
        out.push_str(",\"id\":");
        push_str_lit(out, id);
    }
    out.push_str(",\"datetime\":\"");
    push_datetime(out, ts);
    out.push_str("\"}");
}

/// `[{"key","value","datetime"}, …]` — what thing reads return.
pub fn items_array<'a>(items: impl IntoIterator<Item = &'a ValueItem>) -> String {
    let mut out = String::with_capacity(64);
    out.push('[');
    for (i, it) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_item(&mut out, &it.key, &it.value, None, None, it.ts);
    }
    out.push(']');
    out
}

/// `[{"key","value"[,"geo"],"datetime"}, …]` — what subscribers of a whole thing receive: the
/// items as written, a `geo` attribute kept on its item.
pub fn written_array<'a>(items: impl IntoIterator<Item = &'a WrittenValue>) -> String {
    let mut out = String::with_capacity(64);
    out.push('[');
    for (i, w) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let it = &w.item;
        push_item(&mut out, &it.key, &it.value, w.geo.as_ref().map(|g| g.sent.as_str()), None, it.ts);
    }
    out.push(']');
    out
}

/// The app items of one thing's write that carry `key` (or its magic sub-paths, e.g.
/// `$settings.name` for `$settings`), as a JSON array; `None` when the write has none. For `$geo`,
/// the points recorded by `geo` attributes count too.
pub fn app_items_array<'a>(
    items: impl IntoIterator<Item = &'a WrittenValue>,
    key: &str,
    thing_id: &str,
) -> Option<String> {
    let mut out = String::with_capacity(96);
    out.push('[');
    let mut any = false;
    let geo_view = key == GEO_KEY;
    for w in items {
        if geo_view && let Some(g) = &w.geo {
            if any {
                out.push(',');
            }
            any = true;
            push_item(&mut out, GEO_KEY, &g.point, None, Some(thing_id), g.ts);
        }
        let it = &w.item;
        if !key_matches(&it.key, key) {
            continue;
        }
        if any {
            out.push(',');
        }
        any = true;
        push_item(&mut out, &it.key, &it.value, w.geo.as_ref().map(|g| g.sent.as_str()), Some(thing_id), it.ts);
    }
    out.push(']');
    any.then_some(out)
}

/// Whether an item key belongs to a subscription on `key` (`$settings.x` belongs to `$settings`).
fn key_matches(item_key: &str, key: &str) -> bool {
    item_key == key
        || (item_key.len() > key.len() && item_key.starts_with(key) && item_key.as_bytes()[key.len()] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_valid_json_with_the_value_spliced_verbatim() {
        let items = vec![
            ValueItem { key: "t\"x".into(), value: "\"23.5\"".into(), ts: 0 },
            ValueItem { key: "n".into(), value: "24.805999999999997".into(), ts: 1_445_000_000_123 },
        ];
        let s = items_array(&items);
        let v: serde_json::Value = serde_json::from_str(&s).expect("valid json");
        assert_eq!(v[0]["key"], "t\"x");
        assert_eq!(v[0]["value"], "23.5");
        assert_eq!(v[0]["datetime"], "1970-01-01T00:00:00.000Z");
        assert!(s.contains("24.805999999999997"));
    }

    fn written(key: &str, value: &str) -> WrittenValue {
        WrittenValue { item: ValueItem { key: key.into(), value: value.into(), ts: 0 }, geo: None }
    }

    #[test]
    fn app_items_filter_by_key_and_carry_the_thing_id() {
        let items = vec![written("temperature", "21"), written("humidity", "40"), written("$settings.name", "\"x\"")];
        let s = app_items_array(&items, "temperature", "th1").expect("one item");
        let v: serde_json::Value = serde_json::from_str(&s).expect("valid json");
        assert_eq!(
            v,
            serde_json::json!([{"key":"temperature","value":21,"id":"th1","datetime":"1970-01-01T00:00:00.000Z"}])
        );
        assert!(app_items_array(&items, "pressure", "th1").is_none());
        assert!(app_items_array(&items, "$settings", "th1").is_some());
        assert!(app_items_array(&items, "temp", "th1").is_none());
    }

    #[test]
    fn a_geo_attribute_stays_on_its_item_and_feeds_the_geo_view() {
        use thingline_core::model::GeoAttr;
        let point = r#"{"type":"Point","coordinates":[2.15,41.39]}"#;
        let mut w = written("temperature", "21");
        w.geo = Some(GeoAttr { sent: r#"{"lat":41.39,"long":2.15}"#.into(), point: point.into(), ts: 5 });
        let thing: serde_json::Value = serde_json::from_str(&written_array([&w])).expect("json");
        assert_eq!(
            thing,
            serde_json::json!([{"key":"temperature","value":21,"geo":{"lat":41.39,"long":2.15},"datetime":"1970-01-01T00:00:00.000Z"}]),
            "one item, no extra $geo item"
        );
        let geo: serde_json::Value =
            serde_json::from_str(&app_items_array([&w], "$geo", "th1").expect("a $geo item")).expect("json");
        assert_eq!(geo[0]["key"], "$geo");
        assert_eq!(geo[0]["value"]["type"], "Point");
        assert_eq!(geo[0]["datetime"], "1970-01-01T00:00:00.005Z");
        assert_eq!(geo.as_array().map(Vec::len), Some(1));
    }
}
