//! The top of the datetime range, against the real binary: `9999-12-31T23:59:59.999Z` is the
//! latest datetime a value can have. A second write there, a value stamped by the server after
//! it, and a backfill that would be moved past it are 400s that say why and store nothing (other
//! requests, concurrent ones included, are answered on their own); reads and paging by `endDate`
//! at the edge return every value exactly once, and nothing is ever written in year 10000.

mod common;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use common::spawned::spawn;
use common::{Api, json_of, urlencode};

const MAX: &str = "9999-12-31T23:59:59.999Z";
const MAX_1: &str = "9999-12-31T23:59:59.998Z";
const MAX_2: &str = "9999-12-31T23:59:59.997Z";
const MAX_10: &str = "9999-12-31T23:59:59.989Z";

/// A thing's API on the spawned server; every body read is checked for a year past 9999.
struct Thing {
    client: Client,
    base: String,
    token: String,
}

fn no_year_10000(body: &Value) {
    let text = body.to_string();
    assert!(!text.contains("10000-") && !text.contains("+010000"), "a datetime past the year 9999: {text}");
}

impl Thing {
    async fn write(&self, values: Value) -> (StatusCode, Value) {
        let url = format!("{}/v2/things/{}", self.base, self.token);
        let answer =
            json_of(self.client.post(url).json(&json!({ "values": values })).send().await.expect("write")).await;
        no_year_10000(&answer.1);
        answer
    }

    /// Writes one value of `edge` (with `datetime` unless None).
    async fn write_edge(&self, value: i64, datetime: Option<&str>) -> (StatusCode, Value) {
        let mut item = json!({"key": "edge", "value": value});
        if let Some(d) = datetime {
            item["datetime"] = json!(d);
        }
        self.write(json!([item])).await
    }

    /// (value, datetime) of a read of `key` with `query`.
    async fn read(&self, key: &str, query: &str) -> Vec<(i64, String)> {
        let url = format!("{}/v2/things/{}/resources/{key}{query}", self.base, self.token);
        let (status, body) = json_of(self.client.get(url).send().await.expect("read")).await;
        assert_eq!(status, StatusCode::OK, "read {key}{query}: {body}");
        no_year_10000(&body);
        body.as_array()
            .expect("array")
            .iter()
            .map(|i| (i["value"].as_i64().expect("int"), i["datetime"].as_str().expect("datetime").to_owned()))
            .collect()
    }
}

/// A 400 envelope whose message names the latest supported datetime.
fn refused_at_the_edge(what: &str, (status, body): &(StatusCode, Value)) {
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["status"], "error", "{what}: {body}");
    assert_eq!(body["code"], 400, "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(MAX) && message.contains("latest supported"), "{what}: the message says why: {body}");
}

// Multi-threaded: while the test thread waits for the server to exit, the runtime still closes
// the client's connections, which the server's graceful shutdown waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_datetime_is_assigned_past_the_end_of_9999() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn(dir.path(), &[]);
    let client = common::client_for(dir.path());
    let api = Api { client: &client, base: &p.https };
    let token = api.thing(&api.panel_token().await, &[("edge", true)]).await.token;
    let t = Thing { client: client.clone(), base: p.https.clone(), token };

    // Two writes at the maximum: the first is stored there, the second has no datetime left.
    assert_eq!(t.write_edge(1, Some(MAX)).await.0, StatusCode::CREATED);
    refused_at_the_edge("a second value at the maximum", &t.write_edge(2, Some(MAX)).await);
    // A value without datetime would be stamped after the newest, the maximum.
    refused_at_the_edge("a server-stamped value after the maximum", &t.write_edge(3, None).await);

    // A backfill moves forward to the next free millisecond; when none is left, it is refused.
    assert_eq!(t.write_edge(4, Some(MAX_2)).await.0, StatusCode::CREATED);
    assert_eq!(t.write_edge(5, Some(MAX_2)).await.0, StatusCode::CREATED, "moved to .998");
    refused_at_the_edge("a backfill pushed past the maximum", &t.write_edge(6, Some(MAX_2)).await);
    // All or nothing: the first value of a refused request is not stored.
    let batch =
        json!([{"key": "edge", "value": 7, "datetime": MAX_10}, {"key": "edge", "value": 8, "datetime": MAX_1}]);
    refused_at_the_edge("a request with one value past the maximum", &t.write(batch).await);

    // Concurrent requests: each is answered on its own.
    let writes = (0..12).map(|i| {
        let t = &t;
        async move {
            if i % 3 == 0 {
                (i, t.write_edge(100 + i, Some(MAX)).await)
            } else {
                (i, t.write(json!([{"key": "beside", "value": i}])).await)
            }
        }
    });
    for (i, answer) in futures_util::future::join_all(writes).await {
        if i % 3 == 0 {
            refused_at_the_edge(&format!("concurrent request {i}"), &answer);
        } else {
            assert_eq!(answer.0, StatusCode::CREATED, "concurrent request {i}: {}", answer.1);
        }
    }
    assert_eq!(t.read("beside", "?limit=100").await.len(), 8, "every other request was stored");

    // What was acknowledged, exactly, with its datetimes; newest first.
    let expected = vec![(1, MAX.to_owned()), (5, MAX_1.to_owned()), (4, MAX_2.to_owned())];
    assert_eq!(t.read("edge", "?limit=1000").await, expected);
    // Paging one value at a time by `endDate` = the oldest datetime received.
    let mut pages = Vec::new();
    let mut end: Option<String> = None;
    loop {
        let query = match &end {
            Some(e) => format!("?limit=1&endDate={}", urlencode(e)),
            None => "?limit=1".to_owned(),
        };
        let page = t.read("edge", &query).await;
        let Some(item) = page.first().cloned() else { break };
        assert!(pages.len() < expected.len(), "paging does not end: {pages:?}");
        end = Some(item.1.clone());
        pages.push(item);
    }
    assert_eq!(pages, expected, "paging by endDate returns every value exactly once");
    // The edge itself as bounds: startDate is inclusive, endDate exclusive.
    assert_eq!(t.read("edge", &format!("?limit=10&startDate={}", urlencode(MAX))).await, expected[..1]);
    assert_eq!(t.read("edge", &format!("?limit=10&endDate={}", urlencode(MAX))).await, expected[1..]);
    // The clients' idle connections closed first: the server does not wait for them to drain.
    drop(t);
    drop(client);
    let _ = p.stop();
}
