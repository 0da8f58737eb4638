//! The topics a thing may use, and the refusal of every other one. A thing publishes and
//! subscribes on `v2/things/{thingToken}` (a publish may add `?store=false&broadcast=false`, the
//! HTTP write's flags), and subscribes once to `v2/activations/{activationCode}/{nonce}` to be
//! activated. Wildcards, `$SYS`, shared subscriptions and any other topic reach nothing.

use thingline_core::{Error, Result};

use crate::platform::WriteFlags;

const THINGS: &str = "v2/things/";
const ACTIVATIONS: &str = "v2/activations/";

/// What a PUBLISH topic names.
#[derive(Debug, PartialEq, Eq)]
pub enum PublishTopic<'a> {
    /// A write to the thing of `token`, with the flags of the topic's query.
    Thing { token: &'a str, query: Option<&'a str> },
    /// Anything else: reaches nothing.
    Refused,
}

/// What a SUBSCRIBE topic filter names.
#[derive(Debug, PartialEq, Eq)]
pub enum FilterTopic<'a> {
    /// The realtime channel of the thing of `token`.
    Thing { token: &'a str },
    /// A one-shot activation answer.
    Activation { code: &'a str },
    /// Refused, and why.
    Refused(Refusal),
}

/// Why a topic filter is refused (each maps to an MQTT 5 reason code; 3.1.1 has only 0x80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `+` or `#`: they would reach other things (0xA2).
    Wildcard,
    /// `$share/…` (0x9E).
    Shared,
    /// Not a filter at all (a misplaced wildcard, an empty level set) (0x8F).
    Invalid,
    /// `$SYS` or any topic that is not a thing's (0x87).
    NotAuthorized,
}

impl Refusal {
    /// The MQTT 5 SUBACK reason code.
    pub fn reason_code(self) -> u8 {
        match self {
            Refusal::Wildcard => 0xa2,
            Refusal::Shared => 0x9e,
            Refusal::Invalid => 0x8f,
            Refusal::NotAuthorized => 0x87,
        }
    }
}

/// Whether a PUBLISH topic name is valid at all (no wildcard, not empty): an invalid one is a
/// protocol error that closes the connection.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// Reads a PUBLISH topic name.
pub fn publish_topic(topic: &str) -> PublishTopic<'_> {
    let Some(rest) = topic.strip_prefix(THINGS) else { return PublishTopic::Refused };
    let (token, query) = match rest.split_once('?') {
        Some((t, q)) => (t, Some(q)),
        None => (rest, None),
    };
    if !is_token(token) {
        return PublishTopic::Refused;
    }
    PublishTopic::Thing { token, query }
}

/// Reads a SUBSCRIBE topic filter.
pub fn filter_topic(filter: &str) -> FilterTopic<'_> {
    if filter.starts_with("$share/") {
        return FilterTopic::Refused(Refusal::Shared);
    }
    if filter.contains(['+', '#']) {
        return FilterTopic::Refused(if valid_wildcards(filter) { Refusal::Wildcard } else { Refusal::Invalid });
    }
    if let Some(token) = filter.strip_prefix(THINGS)
        && is_token(token)
    {
        return FilterTopic::Thing { token };
    }
    if let Some(rest) = filter.strip_prefix(ACTIVATIONS)
        && let Some((code, nonce)) = rest.split_once('/')
        && !code.is_empty()
        && code.len() <= 128
        && !nonce.is_empty()
        && !nonce.contains('/')
    {
        return FilterTopic::Activation { code };
    }
    FilterTopic::Refused(Refusal::NotAuthorized)
}

/// The flags of a publish topic's query: `store` and `broadcast`, as on the HTTP write.
pub fn write_flags(query: Option<&str>) -> Result<WriteFlags> {
    let (mut store, mut broadcast) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "store" => store = Some(value),
            "broadcast" => broadcast = Some(value),
            other => return Err(Error::bad_request(format!("unknown topic parameter {other:?}"))),
        }
    }
    WriteFlags::from_params(store, broadcast)
}

/// A thingToken as a topic level: not empty, no `/`, bounded.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.contains('/')
}

/// Whether the wildcards of a filter sit where MQTT allows them (`#` alone as the last level,
/// `+` alone in a level).
fn valid_wildcards(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_topics_and_their_flags() {
        assert_eq!(publish_topic("v2/things/abc"), PublishTopic::Thing { token: "abc", query: None });
        assert_eq!(
            publish_topic("v2/things/abc?store=false"),
            PublishTopic::Thing { token: "abc", query: Some("store=false") }
        );
        let flags = write_flags(Some("store=false&broadcast=true")).expect("flags");
        assert!(!flags.store && flags.broadcast);
        assert!(write_flags(Some("store=maybe")).is_err());
        assert!(write_flags(Some("x=1")).is_err());
        for refused in ["v2/things/", "v2/things/a/b", "/v2/things/abc", "v2/activations/c/n", "$SYS/x", "other"] {
            assert_eq!(publish_topic(refused), PublishTopic::Refused, "{refused}");
        }
        assert!(!valid_topic_name("v2/things/+"));
        assert!(!valid_topic_name(""));
    }

    #[test]
    fn filters() {
        assert_eq!(filter_topic("v2/things/abc"), FilterTopic::Thing { token: "abc" });
        assert_eq!(filter_topic("v2/activations/CODE/123"), FilterTopic::Activation { code: "CODE" });
        assert_eq!(filter_topic("v2/things/#"), FilterTopic::Refused(Refusal::Wildcard));
        assert_eq!(filter_topic("#"), FilterTopic::Refused(Refusal::Wildcard));
        assert_eq!(filter_topic("+/things/abc"), FilterTopic::Refused(Refusal::Wildcard));
        assert_eq!(filter_topic("v2/things/a#"), FilterTopic::Refused(Refusal::Invalid));
        assert_eq!(filter_topic("#/x"), FilterTopic::Refused(Refusal::Invalid));
        assert_eq!(filter_topic("$share/g/v2/things/abc"), FilterTopic::Refused(Refusal::Shared));
        assert_eq!(filter_topic("$SYS/broker/uptime"), FilterTopic::Refused(Refusal::NotAuthorized));
        assert_eq!(filter_topic("v2/activations/CODE"), FilterTopic::Refused(Refusal::NotAuthorized));
        assert_eq!(filter_topic("v2/things/abc?store=false"), FilterTopic::Thing { token: "abc?store=false" });
    }
}
