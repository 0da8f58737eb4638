//! The JSON shapes that go out on every protocol for values, written by hand because they are on
//! the hottest paths (reads of 1,000 values, fan-out to thousands of subscribers): the stored JSON
//! text of a value is spliced in as is, never parsed and re-serialized.

use thingline_bus::ValueItem;
use thingline_core::time::format_datetime;

/// Appends a JSON string literal.
pub fn push_str_lit(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// `{"key":k,"value":v,"datetime":d}`
pub fn push_item(out: &mut String, key: &str, value: &str, ts: i64) {
    out.push_str("{\"key\":");
    push_str_lit(out, key);
    out.push_str(",\"value\":");
    out.push_str(value);
    out.push_str(",\"datetime\":\"");
    out.push_str(&format_datetime(ts));
    out.push_str("\"}");
}

/// `[{"key","value","datetime"}, …]` — what thing reads and thing subscribers receive.
pub fn items_array<'a>(items: impl IntoIterator<Item = &'a ValueItem>) -> String {
    let mut out = String::with_capacity(64);
    out.push('[');
    for (i, it) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_item(&mut out, &it.key, &it.value, it.ts);
    }
    out.push(']');
    out
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
}
