//! Resource keys and the magic resources: which keys are valid ([`validate_key`]), which are magic
//! ([`classify`]: `$geo`, `$settings`, `$settings.<dot path>`), the base key whose permission a
//! magic key follows ([`base_key`]), and reading and writing one dot path of a thing's `$settings`
//! document ([`get_path`], [`set_path`]).
//!
//! Dot paths address nested objects only: `$settings.wifi.ssid` is `doc["wifi"]["ssid"]`. A
//! segment is never an array index, so `a.0` means the key `"0"` of the object `a`.

use serde_json::{Map, Value};

use crate::{Error, Result, time::echo};

/// The key of the position resource.
pub const GEO_KEY: &str = "$geo";
/// The key of the per-thing settings document; `$settings.<path>` addresses a part of it.
pub const SETTINGS_KEY: &str = "$settings";

/// The longest resource key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// The most segments of a settings dot path.
pub const MAX_PATH_SEGMENTS: usize = 16;

const SETTINGS_PREFIX: &str = "$settings.";

/// What a resource key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MagicKey<'a> {
    /// `$geo`: the thing's position.
    Geo,
    /// `$settings` (`None`) or `$settings.<path>` (`Some(path)`, the text after `$settings.`, not
    /// yet validated: check it with [`validate_path`]).
    Settings(Option<&'a str>),
    /// Any other key: an ordinary timeline (this includes unknown `$` keys, which
    /// [`validate_key`] rejects).
    Plain,
}

/// Classifies a resource key. `$settings.` followed by an empty or malformed path is still
/// `Settings(Some(path))`, so that [`validate_path`] can say what is wrong with it.
pub fn classify(key: &str) -> MagicKey<'_> {
    if key == GEO_KEY {
        MagicKey::Geo
    } else if key == SETTINGS_KEY {
        MagicKey::Settings(None)
    } else if let Some(path) = key.strip_prefix(SETTINGS_PREFIX) {
        MagicKey::Settings(Some(path))
    } else {
        MagicKey::Plain
    }
}

/// The key whose permission `key` follows: `$settings.<path>` → `$settings`; every other key
/// (including `$geo` and `$settings`) is its own base.
pub fn base_key(key: &str) -> &str {
    if key.starts_with(SETTINGS_PREFIX) { SETTINGS_KEY } else { key }
}

/// Checks a settings dot path: 1 to [`MAX_PATH_SEGMENTS`] non-empty segments separated by `.`.
pub fn validate_path(path: &str) -> Result<()> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(Error::bad_request(format!(
            "settings path {} must be non-empty names separated by single dots",
            echo(path)
        )));
    }
    if path.split('.').count() > MAX_PATH_SEGMENTS {
        return Err(Error::bad_request(format!(
            "settings path {} has more than {MAX_PATH_SEGMENTS} segments",
            echo(path)
        )));
    }
    Ok(())
}

/// The value at a dot path of `doc`, or `None` when some segment is missing, an intermediate is
/// not an object, or the path is malformed.
pub fn get_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if validate_path(path).is_err() {
        return None;
    }
    path.split('.').try_fold(doc, |cur, seg| cur.as_object()?.get(seg))
}

/// Stores `value` at a dot path of `doc`, creating missing intermediate objects.
///
/// Writing a path means the caller wants objects along it, so an intermediate that holds a
/// non-object (a string, number, array, …) is replaced by an object, and a `doc` that is not an
/// object becomes `{}` first. A malformed path is a 400 and leaves `doc` untouched.
pub fn set_path(doc: &mut Value, path: &str, value: Value) -> Result<()> {
    validate_path(path)?;
    let segments: Vec<&str> = path.split('.').collect();
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    if let Value::Object(map) = doc {
        set_in(map, &segments, value);
    }
    Ok(())
}

fn set_in(map: &mut Map<String, Value>, segments: &[&str], value: Value) {
    match segments {
        [] => {}
        [last] => {
            map.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let child = map.entry((*first).to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(child) = child {
                set_in(child, rest, value);
            }
        }
    }
}

/// Checks a resource key: 1 to [`MAX_KEY_BYTES`] bytes, no control characters, no `/`. Keys
/// starting with `$` must be `$geo`, `$settings` or `$settings.<valid dot path>`.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::bad_request("resource key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::bad_request(format!("resource key {} is longer than {MAX_KEY_BYTES} bytes", echo(key))));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::bad_request(format!("resource key {} contains a control character", echo(key))));
    }
    if key.contains('/') {
        return Err(Error::bad_request(format!("resource key {} must not contain '/'", echo(key))));
    }
    match classify(key) {
        MagicKey::Geo | MagicKey::Settings(None) => Ok(()),
        MagicKey::Settings(Some(path)) => validate_path(path),
        MagicKey::Plain if key.starts_with('$') => Err(Error::bad_request(format!(
            "unknown magic resource {}: keys starting with $ must be $geo, $settings or \
             $settings.<path>",
            echo(key)
        ))),
        MagicKey::Plain => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bad(r: Result<()>) -> String {
        match r {
            Err(Error::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn classify_keys() {
        assert_eq!(classify("$geo"), MagicKey::Geo);
        assert_eq!(classify("$settings"), MagicKey::Settings(None));
        assert_eq!(classify("$settings.name"), MagicKey::Settings(Some("name")));
        assert_eq!(classify("$settings.a.b"), MagicKey::Settings(Some("a.b")));
        assert_eq!(classify("$settings."), MagicKey::Settings(Some("")));
        assert_eq!(classify("$settings.a..b"), MagicKey::Settings(Some("a..b")));
        assert_eq!(classify("temperature"), MagicKey::Plain);
        assert_eq!(classify("$geo.x"), MagicKey::Plain);
        assert_eq!(classify("$settingsx"), MagicKey::Plain);
        assert_eq!(classify("$GEO"), MagicKey::Plain);
        assert_eq!(classify("settings.name"), MagicKey::Plain);
        assert_eq!(classify(""), MagicKey::Plain);
    }

    #[test]
    fn base_keys() {
        assert_eq!(base_key("$settings.name"), "$settings");
        assert_eq!(base_key("$settings.a.b"), "$settings");
        assert_eq!(base_key("$settings"), "$settings");
        assert_eq!(base_key("$geo"), "$geo");
        assert_eq!(base_key("temperature"), "temperature");
        assert_eq!(base_key("$settingsx"), "$settingsx");
    }

    #[test]
    fn paths() {
        assert!(validate_path("name").is_ok());
        assert!(validate_path("a.b.c").is_ok());
        assert!(validate_path("a b.ç.0").is_ok());
        assert!(validate_path(&vec!["s"; 16].join(".")).is_ok());
        assert!(bad(validate_path(&vec!["s"; 17].join("."))).contains("more than 16"));
        for p in ["", ".", "a.", ".a", "a..b"] {
            assert!(bad(validate_path(p)).contains("single dots"), "{p:?}");
        }
    }

    #[test]
    fn get_paths() {
        let doc = json!({"name": "My Thing", "wifi": {"ssid": "home", "ch": [1, 6]}, "n": null});
        assert_eq!(get_path(&doc, "name"), Some(&json!("My Thing")));
        assert_eq!(get_path(&doc, "wifi.ssid"), Some(&json!("home")));
        assert_eq!(get_path(&doc, "wifi"), Some(&json!({"ssid": "home", "ch": [1, 6]})));
        assert_eq!(get_path(&doc, "n"), Some(&Value::Null));
        assert_eq!(get_path(&doc, "missing"), None);
        assert_eq!(get_path(&doc, "name.first"), None);
        assert_eq!(get_path(&doc, "wifi.ch.0"), None);
        assert_eq!(get_path(&doc, "wifi..ssid"), None);
        assert_eq!(get_path(&doc, ""), None);
        assert_eq!(get_path(&json!("text"), "a"), None);
    }

    #[test]
    fn set_paths() {
        let mut doc = json!({"name": "Old", "foo": "bar"});
        set_path(&mut doc, "name", json!("My Thing")).unwrap();
        assert_eq!(doc, json!({"name": "My Thing", "foo": "bar"}));

        set_path(&mut doc, "wifi.ssid", json!("home")).unwrap();
        set_path(&mut doc, "wifi.pass", json!({"x": 1})).unwrap();
        assert_eq!(doc["wifi"], json!({"ssid": "home", "pass": {"x": 1}}));

        // A non-object intermediate is replaced.
        set_path(&mut doc, "foo.bar", json!(1)).unwrap();
        assert_eq!(doc["foo"], json!({"bar": 1}));

        // A non-object document becomes an object.
        let mut doc = json!(null);
        set_path(&mut doc, "a.b.c", json!(true)).unwrap();
        assert_eq!(doc, json!({"a": {"b": {"c": true}}}));
        let mut doc = json!([1, 2]);
        set_path(&mut doc, "x", json!(1)).unwrap();
        assert_eq!(doc, json!({"x": 1}));

        // Deepest allowed path.
        let mut doc = json!({});
        let deep = vec!["s"; 16].join(".");
        set_path(&mut doc, &deep, json!(1)).unwrap();
        assert_eq!(get_path(&doc, &deep), Some(&json!(1)));
    }

    #[test]
    fn set_path_rejects_bad_paths_without_touching_doc() {
        let mut doc = json!("keep");
        for p in ["", "a..b", "a.", &vec!["s"; 17].join(".")] {
            bad(set_path(&mut doc, p, json!(1)));
        }
        assert_eq!(doc, json!("keep"));
    }

    #[test]
    fn valid_keys() {
        for k in [
            "temperature",
            "power-consumption",
            "a b",
            "ü",
            "$geo",
            "$settings",
            "$settings.name",
            "$settings.wifi.ssid",
            "x$",
        ] {
            assert!(validate_key(k).is_ok(), "{k:?}");
        }
        assert!(validate_key(&"k".repeat(128)).is_ok());
    }

    #[test]
    fn invalid_keys() {
        assert!(bad(validate_key("")).contains("empty"));
        assert!(bad(validate_key(&"k".repeat(129))).contains("128 bytes"));
        assert!(bad(validate_key(&"é".repeat(65))).contains("128 bytes"));
        assert!(bad(validate_key("a\nb")).contains("control"));
        assert!(bad(validate_key("a\u{0}")).contains("control"));
        assert!(bad(validate_key("a\u{7f}")).contains("control"));
        assert!(bad(validate_key("a\u{85}")).contains("control"));
        assert!(bad(validate_key("a/b")).contains("'/'"));
        assert!(bad(validate_key("$foo")).contains("unknown magic resource"));
        assert!(bad(validate_key("$")).contains("unknown magic resource"));
        assert!(bad(validate_key("$geo.x")).contains("unknown magic resource"));
        assert!(bad(validate_key("$settingsx")).contains("unknown magic resource"));
        assert!(bad(validate_key("$settings.")).contains("settings path"));
        assert!(bad(validate_key("$settings.a..b")).contains("settings path"));
        assert!(bad(validate_key("$settings.a.")).contains("settings path"));
        assert!(bad(validate_key(&format!("$settings.{}", vec!["s"; 17].join(".")))).contains("16"));
    }
}
