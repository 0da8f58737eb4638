//! Bounded JSON: every JSON document a client sends, on every protocol (an HTTP body, an MQTT or
//! CoAP payload), nests arrays and objects at most [`MAX_DEPTH`] levels deep; deeper is a 400.
//!
//! Without the bound a value nested hundreds of thousands of levels deep (1 MB of `[`) is stored
//! verbatim (timeline values are kept as the text sent) and sent to every subscriber, whose JSON
//! parser may then fail or overflow its stack. [`check_depth`] is a byte scan that allocates
//! nothing and runs before anything is parsed; [`BoundedJson`] is text that passed it, so a
//! caller that gets one ([`JsonText`]) does not scan it again.

use std::fmt;
use std::ops::Deref;

use crate::{Error, Result};

/// Deepest nesting of arrays and objects in a JSON document a client sends; the document itself
/// is level 1 when it is an array or object (`[]` is 1 deep, `[[1]]` 2, a scalar 0). The same
/// bound holds for an app object ([`crate::classes::MAX_DEPTH`] is this constant), which is a
/// whole body. A timeline value sits 3 levels down in a write body
/// (`{"values":[{"value": …}]}`), so it may nest 29 levels itself.
pub const MAX_DEPTH: usize = 32;

/// Checks that `json` nests arrays and objects at most [`MAX_DEPTH`] levels deep: a 400 naming
/// the limit otherwise.
///
/// A scan of the bytes that knows only strings (brackets inside strings do not count, `\"` does
/// not end one): it does not validate the JSON, which the parser that runs next does, but it
/// bounds how deep that parser (or any consumer of the stored text) can be taken. It allocates
/// nothing and stops at the first byte over the limit.
pub fn check_depth(json: &[u8]) -> Result<()> {
    if depth_within(json, MAX_DEPTH) {
        Ok(())
    } else {
        Err(Error::bad_request(format!("JSON nests arrays and objects deeper than {MAX_DEPTH} levels")))
    }
}

/// Whether `json` nests at most `max` levels deep (see [`check_depth`]).
fn depth_within(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            // Unbalanced closers are the parser's to report; they never raise the depth.
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// JSON text (not yet parsed) whose nesting [`check_depth`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedJson(String);

impl BoundedJson {
    /// Checks `text` with [`check_depth`].
    pub fn new(text: String) -> Result<BoundedJson> {
        check_depth(text.as_bytes())?;
        Ok(BoundedJson(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for BoundedJson {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for BoundedJson {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BoundedJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// JSON text a function accepts from any protocol: plain text (`str`, `String`) is checked with
/// [`check_depth`] when used; a [`BoundedJson`] was checked when it was made.
pub trait JsonText {
    /// The text, once its nesting is known to be within [`MAX_DEPTH`].
    fn bounded(&self) -> Result<&str>;
}

impl JsonText for str {
    fn bounded(&self) -> Result<&str> {
        check_depth(self.as_bytes())?;
        Ok(self)
    }
}

impl JsonText for String {
    fn bounded(&self) -> Result<&str> {
        self.as_str().bounded()
    }
}

impl JsonText for BoundedJson {
    fn bounded(&self) -> Result<&str> {
        Ok(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize, open: &str, close: &str) -> String {
        format!("{}1{}", open.repeat(levels), close.repeat(levels))
    }

    #[test]
    fn depth_is_counted_over_arrays_and_objects() {
        assert!(check_depth(b"1").is_ok());
        assert!(check_depth(b"").is_ok());
        assert!(depth_within(b"[]", 1));
        assert!(!depth_within(b"[[]]", 1));
        assert!(depth_within(b"[[1],[2],{\"a\":3}]", 2));
        assert!(!depth_within(b"[[1],[2],{\"a\":[3]}]", 2));
        assert!(check_depth(nested(MAX_DEPTH, "[", "]").as_bytes()).is_ok());
        assert!(check_depth(nested(MAX_DEPTH - 1, "{\"a\":", "}").as_bytes()).is_ok());
        let err = check_depth(nested(MAX_DEPTH + 1, "[", "]").as_bytes()).expect_err("too deep");
        assert_eq!(err.status(), 400);
        assert!(err.public_message().contains("deeper than 32 levels"), "{err}");
        assert!(check_depth(nested(MAX_DEPTH + 1, "{\"a\":", "}").as_bytes()).is_err());
        let mixed = format!("{}1{}", "[{\"k\":".repeat(17), "}]".repeat(17));
        assert!(check_depth(mixed.as_bytes()).is_err(), "34 levels of arrays and objects");
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let s = format!("[\"{}\", \"{}\"]", "[".repeat(100), "{".repeat(100));
        assert!(depth_within(s.as_bytes(), 1));
        // An escaped quote does not end the string; an escaped backslash before a quote does.
        assert!(depth_within(br#"["\"[[[[", "\\"]"#, 1));
        assert!(!depth_within(br#"["\\", [[1]]]"#, 2));
        assert!(depth_within(br#"{"a\"[": "}\\", "b": []}"#, 2));
        // Unbalanced closers do not let later openers through.
        assert!(!depth_within(b"]]]][[[", 2));
    }

    #[test]
    fn half_a_million_levels_are_refused_without_recursion() {
        let deep = nested(500_000, "[", "]");
        assert!(check_depth(deep.as_bytes()).is_err());
        assert!(BoundedJson::new(deep).is_err());
        assert!(JsonText::bounded(nested(500_000, "{\"a\":", "}").as_str()).is_err());
    }

    #[test]
    fn bounded_text_is_not_scanned_again() {
        let ok = BoundedJson::new("{\"values\":[{\"key\":\"t\",\"value\":[1]}]}".to_owned()).expect("bounded");
        assert_eq!(ok.bounded().expect("bounded"), ok.as_str());
        assert_eq!(&*ok, ok.as_str());
        assert!(String::from("[[[").bounded().is_ok(), "an unterminated document is the parser's to refuse");
    }
}
