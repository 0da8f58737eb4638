//! Things as the panel's table shows them, the parts both backends share: the name the store
//! keeps beside each settings document (`things.name`), what a search looks for, and the batches
//! of a bulk creation.

use std::collections::HashMap;

use thingline_core::model::Thing;
use thingline_core::{Error, Result};

use crate::{NewThing, ThingPageQuery};

/// Things inserted per statement by [`crate::ThingStore::create_things`]: large enough that
/// 100,000 things take a few dozen statements, small enough that one statement's parameters
/// stay a few hundred kilobytes.
pub(crate) const CREATE_BATCH: usize = 5_000;

/// The name of a settings document, as `things.name` keeps it: `$settings.name` when it is a
/// string. A name holding U+0000 counts as none (PostgreSQL's text cannot hold it; SQLite then
/// does the same, so both backends sort and search alike).
pub(crate) fn settings_name(doc: &serde_json::Value) -> Option<&str> {
    doc.get("name").and_then(serde_json::Value::as_str).filter(|name| !name.contains('\0'))
}

/// What a page's search looks for: things whose id starts with `prefix` (exactly), or whose
/// name, ASCII letters lowered, contains `lowered` (the text, ASCII letters lowered). Compared
/// with `instr`/`strpos`, not `LIKE`: the user's `%`, `_` and `\` are plain characters with
/// nothing to escape.
pub(crate) struct Search<'q> {
    pub prefix: &'q str,
    pub lowered: String,
}

/// The query's search, `None` for none or an empty text (which every thing matches).
pub(crate) fn search_of(query: &ThingPageQuery) -> Option<Search<'_>> {
    let text = query.search.as_deref().filter(|s| !s.is_empty())?;
    Some(Search { prefix: text, lowered: text.to_ascii_lowercase() })
}

/// The things a bulk creation made, in the order given, from the seq the database gave each id.
pub(crate) fn created_things(
    product_id: &str,
    things: &[NewThing],
    seqs: &HashMap<String, i64>,
    now_ms: i64,
) -> Result<Vec<Thing>> {
    things
        .iter()
        .map(|t| {
            let seq = seqs.get(&t.id).copied().ok_or_else(|| Error::internal("a created thing has no seq"))?;
            Ok(Thing {
                seq,
                id: t.id.clone(),
                token: t.token.clone(),
                product_id: product_id.to_owned(),
                activation_code: None,
                created_ms: now_ms,
            })
        })
        .collect()
}

/// `skip` and `limit` as SQL integers (a skip past `i64::MAX` finds nothing either way).
pub(crate) fn skip_limit(query: &ThingPageQuery) -> (i64, i64) {
    (i64::try_from(query.skip).unwrap_or(i64::MAX), i64::from(query.limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert_eq!(settings_name(&json!({"name": "Kitchen"})), Some("Kitchen"));
        assert_eq!(settings_name(&json!({"name": 5})), None);
        assert_eq!(settings_name(&json!({"name": {"first": "a"}})), None);
        assert_eq!(settings_name(&json!({"name": "a\u{0}b"})), None);
        assert_eq!(settings_name(&json!({})), None);
        assert_eq!(settings_name(&json!([1])), None);
    }
}
