//! `application/x-www-form-urlencoded` bodies with bracket nesting, as browser clients (jQuery's
//! `$.param`, PHP-style forms) post them to thing writes and to login:
//! `values[0][key]=temperature&values[0][value]=23&email=a%40b.c` becomes
//! `{"values":[{"key":"temperature","value":"23"}],"email":"a@b.c"}`.
//!
//! Rules ([`parse_form`]):
//! - pairs are separated by `&`; empty pairs are skipped; a pair without `=` has the value `""`;
//!   whitespace around the whole body (a stray trailing newline) is ignored;
//! - names and values are percent-decoded with `+` as a space. A `%` not followed by two hex
//!   digits is kept literally (as browsers do); decoded bytes that are not UTF-8 are a 400;
//! - brackets are read after decoding (so `values%5B0%5D` works): `a[b][c]=v` nests objects;
//!   a canonical decimal index (`0`, `17`, not `01`) is an array position; `a[]` appends a new
//!   element after the highest index so far. A container whose keys are all indices becomes an
//!   array ordered by index with gaps removed (`a[5]=x&a[2]=y` → `["y","x"]`); a container mixing
//!   indices and names becomes an object with the indices as decimal keys;
//! - every leaf is a JSON string (the contract stores form values as strings);
//! - a repeated name replaces the earlier value (last one wins);
//! - a name used both as a value and as a container, an empty name, malformed brackets, more than
//!   [`MAX_DEPTH`] bracket levels or more than [`MAX_PAIRS`] pairs are a 400.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::{Error, Result, time::echo};

/// The most bracket levels one name may have (`a[1][2][3][4][5][6][7][8]`).
pub const MAX_DEPTH: usize = 8;
/// The most `name=value` pairs one body may have.
pub const MAX_PAIRS: usize = 10_000;

/// Parses a form body into a JSON object (see the module documentation for the rules).
/// An empty body is `{}`.
pub fn parse_form(body: &[u8]) -> Result<Value> {
    let body = body.trim_ascii();
    let mut root = Container::default();
    let mut pairs = 0usize;
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        pairs += 1;
        if pairs > MAX_PAIRS {
            return Err(Error::bad_request(format!("form body has more than {MAX_PAIRS} fields")));
        }
        let (raw_name, raw_value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let name = decode(raw_name)?;
        let value = decode(raw_value)?;
        let (base, segments) = split_name(&name)?;
        root.insert(&name, Seg::Name(base.to_owned()), &segments, value)?;
    }
    Ok(root.into_value_object())
}

/// Percent-decodes one name or value, `+` meaning a space.
fn decode(raw: &[u8]) -> Result<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::bad_request("form body is not valid UTF-8 after percent-decoding"))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One step of a bracket path, as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    /// A name: the base of a field or a non-index bracket (`[key]`).
    Name(String),
    /// A canonical decimal bracket (`[0]`).
    Index(u64),
    /// `[]`: a new element after the highest index.
    Append,
}

/// Splits a decoded field name into its base and bracket segments.
fn split_name(name: &str) -> Result<(&str, Vec<Seg>)> {
    let malformed = || Error::bad_request(format!("form field name {} has malformed brackets", echo(name)));
    let (base, mut rest) = match name.find('[') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    if base.is_empty() {
        return Err(Error::bad_request(if name.is_empty() {
            "form field with an empty name".to_owned()
        } else {
            format!("form field name {} has an empty base name", echo(name))
        }));
    }
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let inner_and_tail = rest.strip_prefix('[').ok_or_else(malformed)?;
        let close = inner_and_tail.find(']').ok_or_else(malformed)?;
        let inner = &inner_and_tail[..close];
        if inner.contains('[') {
            return Err(malformed());
        }
        if segments.len() == MAX_DEPTH {
            return Err(Error::bad_request(format!(
                "form field name {} nests deeper than {MAX_DEPTH} levels",
                echo(name)
            )));
        }
        segments.push(segment(inner));
        rest = &inner_and_tail[close + 1..];
    }
    Ok((base, segments))
}

fn segment(inner: &str) -> Seg {
    if inner.is_empty() {
        return Seg::Append;
    }
    let canonical =
        inner.bytes().all(|b| b.is_ascii_digit()) && (inner == "0" || !inner.starts_with('0')) && inner.len() <= 18;
    match inner.parse::<u64>() {
        Ok(i) if canonical => Seg::Index(i),
        _ => Seg::Name(inner.to_owned()),
    }
}

enum Node {
    Leaf(String),
    Container(Container),
}

/// A map under construction, remembering insertion order and the highest index (for `[]`).
#[derive(Default)]
struct Container {
    entries: Vec<(Seg, Node)>,
    positions: HashMap<Seg, usize>,
    max_index: Option<u64>,
}

impl Container {
    /// Stores `value` at `key` followed by `rest`; `field` is the full name, for messages.
    fn insert(&mut self, field: &str, key: Seg, rest: &[Seg], value: String) -> Result<()> {
        let key = match key {
            Seg::Append => Seg::Index(self.max_index.map_or(0, |m| m.saturating_add(1))),
            other => other,
        };
        if let Seg::Index(i) = key {
            self.max_index = Some(self.max_index.map_or(i, |m| m.max(i)));
        }
        let conflict = || {
            Error::bad_request(format!(
                "form field {} is used both as a value and as a nested object or list",
                echo(field)
            ))
        };
        let Some((next, tail)) = rest.split_first() else {
            // A leaf: a repeated name replaces the earlier value.
            match self.positions.get(&key) {
                Some(&pos) => match &mut self.entries[pos].1 {
                    Node::Leaf(old) => *old = value,
                    Node::Container(_) => return Err(conflict()),
                },
                None => self.push(key, Node::Leaf(value)),
            }
            return Ok(());
        };
        let pos = match self.positions.get(&key) {
            Some(&pos) => pos,
            None => {
                self.push(key, Node::Container(Container::default()));
                self.entries.len() - 1
            }
        };
        match &mut self.entries[pos].1 {
            Node::Container(child) => child.insert(field, next.clone(), tail, value),
            Node::Leaf(_) => Err(conflict()),
        }
    }

    fn push(&mut self, key: Seg, node: Node) {
        self.positions.insert(key.clone(), self.entries.len());
        self.entries.push((key, node));
    }

    /// The container as JSON: an array when every key is an index, an object otherwise.
    fn into_value(self) -> Value {
        let all_indices = self.entries.iter().all(|(k, _)| matches!(k, Seg::Index(_)));
        if all_indices && !self.entries.is_empty() {
            let mut items: Vec<(u64, Node)> = self
                .entries
                .into_iter()
                .map(|(k, n)| match k {
                    Seg::Index(i) => (i, n),
                    // Unreachable by the check above; any order would do.
                    _ => (u64::MAX, n),
                })
                .collect();
            items.sort_by_key(|(i, _)| *i);
            Value::Array(items.into_iter().map(|(_, n)| n.into_value()).collect())
        } else {
            self.into_value_object()
        }
    }

    fn into_value_object(self) -> Value {
        let mut map = Map::new();
        for (k, n) in self.entries {
            let key = match k {
                Seg::Name(s) => s,
                Seg::Index(i) => i.to_string(),
                Seg::Append => String::new(), // never stored: insert resolves it
            };
            map.insert(key, n.into_value());
        }
        Value::Object(map)
    }
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Node::Leaf(s) => Value::String(s),
            Node::Container(c) => c.into_value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(s: &str) -> Value {
        parse_form(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn bad(body: &[u8]) -> String {
        match parse_form(body) {
            Err(Error::BadRequest(m)) => m,
            other => panic!("{:?} should be a 400, got {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(form(""), json!({}));
        assert_eq!(form("\r\n"), json!({}));
        assert_eq!(form("&&"), json!({}));
    }

    #[test]
    fn flat_fields_and_decoding() {
        assert_eq!(
            form("email=a%40b.c&password=p+w%2Bd&x=%E2%82%AC"),
            json!({"email": "a@b.c", "password": "p w+d", "x": "€"})
        );
        assert_eq!(form("a=1&&b=2&"), json!({"a": "1", "b": "2"}));
        assert_eq!(form("flag"), json!({"flag": ""}));
        assert_eq!(form("a="), json!({"a": ""}));
        assert_eq!(form("a=b=c"), json!({"a": "b=c"}));
        assert_eq!(form("a=1\n"), json!({"a": "1"}));
        assert_eq!(form("my+key=v"), json!({"my key": "v"}));
    }

    #[test]
    fn malformed_percent_is_literal() {
        assert_eq!(form("a=100%&b=%zz&c=%4&d=%%41"), json!({"a": "100%", "b": "%zz", "c": "%4", "d": "%A"}));
    }

    #[test]
    fn invalid_utf8_is_400() {
        assert!(bad(b"a=%FF").contains("UTF-8"));
        assert!(bad(b"a=%C3").contains("UTF-8"));
        assert!(bad(b"%FF=1").contains("UTF-8"));
        assert!(bad(b"a=\xff").contains("UTF-8"));
    }

    #[test]
    fn thing_write_shape() {
        assert_eq!(
            form("values[0][key]=temperature&values[0][value]=23&values[1][key]=hum&values[1][value]=45.5"),
            json!({"values": [
                {"key": "temperature", "value": "23"},
                {"key": "hum", "value": "45.5"}
            ]})
        );
        // jQuery encodes the brackets.
        assert_eq!(
            form("values%5B0%5D%5Bkey%5D=temperature&values%5B0%5D%5Bvalue%5D=23"),
            json!({"values": [{"key": "temperature", "value": "23"}]})
        );
    }

    #[test]
    fn nested_objects() {
        assert_eq!(form("a[b][c]=v"), json!({"a": {"b": {"c": "v"}}}));
        assert_eq!(form("a[b][c]=v&a[b][d]=w&a[e]=x"), json!({"a": {"b": {"c": "v", "d": "w"}, "e": "x"}}));
        assert_eq!(
            form("values[0][geo][lat]=41.39&values[0][geo][long]=2.15"),
            json!({"values": [{"geo": {"lat": "41.39", "long": "2.15"}}]})
        );
    }

    #[test]
    fn sparse_and_unordered_indices_compact() {
        assert_eq!(form("a[5]=x&a[2]=y&a[9]=z"), json!({"a": ["y", "x", "z"]}));
        assert_eq!(form("values[1][key]=b&values[0][key]=a"), json!({"values": [{"key": "a"}, {"key": "b"}]}));
        assert_eq!(form("a[18446744073709551]=x"), json!({"a": ["x"]}));
    }

    #[test]
    fn append() {
        assert_eq!(form("a[]=1&a[]=2"), json!({"a": ["1", "2"]}));
        assert_eq!(form("a[3]=x&a[]=y&a[0]=z"), json!({"a": ["z", "x", "y"]}));
        // Each [] is a new element, as in PHP.
        assert_eq!(form("v[][key]=t&v[][value]=1"), json!({"v": [{"key": "t"}, {"value": "1"}]}));
        assert_eq!(form("a[][]=1&a[][]=2"), json!({"a": [["1"], ["2"]]}));
    }

    #[test]
    fn non_canonical_indices_are_names() {
        assert_eq!(form("a[01]=x"), json!({"a": {"01": "x"}}));
        assert_eq!(form("a[-1]=x"), json!({"a": {"-1": "x"}}));
        assert_eq!(form("a[99999999999999999999]=x"), json!({"a": {"99999999999999999999": "x"}}));
        assert_eq!(form("a[0]=x&a[b]=y"), json!({"a": {"0": "x", "b": "y"}}));
        // The base is always a name.
        assert_eq!(form("0=x"), json!({"0": "x"}));
    }

    #[test]
    fn last_value_wins() {
        assert_eq!(form("a=1&a=2"), json!({"a": "2"}));
        assert_eq!(form("a[0]=1&a[0]=2"), json!({"a": ["2"]}));
    }

    #[test]
    fn scalar_and_container_conflict() {
        assert!(bad(b"a=1&a[b]=2").contains("both"));
        assert!(bad(b"a[b]=2&a=1").contains("both"));
        assert!(bad(b"a[0]=1&a[0][x]=2").contains("both"));
        assert!(bad(b"a[0][x]=2&a[0]=1").contains("both"));
    }

    #[test]
    fn malformed_names() {
        assert!(bad(b"=x").contains("empty name"));
        assert!(bad(b"[a]=x").contains("empty base"));
        for body in [&b"a[=1"[..], b"a[b=1", b"a[b]c=1", b"a[b]]=1", b"a[[b]]=1", b"a]b[=1", b"a[b][=1"] {
            assert!(bad(body).contains("malformed"), "{:?}", body);
        }
        // A closing bracket without an opening one is part of a plain name.
        assert_eq!(form("a]b=1"), json!({"a]b": "1"}));
    }

    #[test]
    fn depth_limit() {
        assert_eq!(form("a[1][2][3][4][5][6][7][8]=x")["a"][0][0][0][0][0][0][0][0], json!("x"));
        assert!(bad(b"a[1][2][3][4][5][6][7][8][9]=x").contains("deeper than 8"));
        let deep = format!("a{}=x", "[]".repeat(100_000));
        assert!(bad(deep.as_bytes()).contains("deeper"));
    }

    #[test]
    fn pair_limit() {
        let ok = (0..MAX_PAIRS).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&");
        assert_eq!(form(&ok).as_object().unwrap().len(), MAX_PAIRS);
        let many = format!("{ok}&one=more");
        assert!(bad(many.as_bytes()).contains("more than 10000"));
        // Appends into one list stay fast.
        let list = (0..MAX_PAIRS).map(|_| "a[]=v").collect::<Vec<_>>().join("&");
        assert_eq!(form(&list)["a"].as_array().unwrap().len(), MAX_PAIRS);
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let body = format!("{}[=1", "n".repeat(100_000));
        assert!(bad(body.as_bytes()).len() < 300);
    }
}
