//! Request ids, access logs and the HTTP metrics, for every request of the HTTPS and plain HTTP
//! listeners (Socket.IO's and the guard's answers included): one middleware, [`layer`], applied
//! to the whole router with `Router::layer`, so that it runs after routing and sees the route
//! template (`MatchedPath`).
//!
//! - **`x-request-id`**: a well-formed id the client sent (1 to [`MAX_ID_LEN`] visible ASCII
//!   characters) is kept, anything else is replaced by 32 random hex digits; the response carries
//!   it, handlers find it in the request's extensions ([`RequestId`]).
//! - **Access log**: one event per request at info level, target `thingline::access`, with
//!   `request_id`, `method`, `route`, `status` and `duration_ms`; with `THINGLINE_LOG_FORMAT=json`
//!   one JSON line each. The route is the template (`/v2/things/{thingToken}`), never the path:
//!   thing tokens travel in paths, and a path or query string is never logged. Requests no route
//!   matched are `unmatched`, Socket.IO's are `/socket.io`. Silence it with
//!   `THINGLINE_LOG=info,thingline::access=warn`.
//! - **Metrics** (only when the metrics listener is on): `thingline_http_requests_total` by
//!   route, method and status, and `thingline_http_request_duration_seconds` by route and method,
//!   time to the response head (a stream's or a long-poll's head comes at once or when its first
//!   data does). Every label comes from a bounded set.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::SharedString;

use crate::platform::metrics as counted;

/// The header of the request id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request id taken from a client.
pub const MAX_ID_LEN: usize = 128;
/// Distinct route labels kept (the router has a fixed set of templates, far fewer); past it a
/// template is labelled `other`.
const MAX_ROUTES: usize = 512;

/// The request's id, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Wraps `router` (every route and the fallback) with request ids, access logs and metrics.
pub fn layer(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(observe))
}

async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = match req.headers().get(&REQUEST_ID) {
        Some(v) if well_formed(v.as_bytes()) => v.clone(),
        _ => new_id(),
    };
    let method = req.method().clone();
    let route = Route::of(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    let took = started.elapsed();
    let status = res.status();
    if counted::enabled() {
        record(&route, &method, status, took);
    }
    tracing::info!(
        target: "thingline::access",
        request_id = id.to_str().unwrap_or("-"),
        method = method.as_str(),
        route = route.as_str(),
        status = status.as_u16(),
        duration_ms = took.as_micros() as f64 / 1000.0,
        "request"
    );
    res.headers_mut().insert(REQUEST_ID, id);
    res
}

/// 1 to [`MAX_ID_LEN`] visible ASCII characters (no space, no control character).
fn well_formed(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// 128 random bits as 32 lowercase hex digits.
fn new_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// What a request is labelled with: its route template, or one of the fixed labels.
enum Route {
    Matched(MatchedPath),
    SocketIo,
    Unmatched,
}

impl Route {
    fn of(req: &Request) -> Route {
        match req.extensions().get::<MatchedPath>() {
            Some(m) => Route::Matched(m.clone()),
            None if req.uri().path().starts_with("/socket.io") => Route::SocketIo,
            None => Route::Unmatched,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Route::Matched(m) => m.as_str(),
            Route::SocketIo => "/socket.io",
            Route::Unmatched => "unmatched",
        }
    }
}

fn record(route: &Route, method: &Method, status: StatusCode, took: std::time::Duration) {
    record_str(route.as_str(), method, status, took)
}

/// Records one request through handles registered once per route, method and status: a request
/// costs a read lock, a hash of its route template and two atomic updates, not a registry lookup
/// with freshly built labels.
fn record_str(route: &str, method: &Method, status: StatusCode, took: std::time::Duration) {
    let (m, code) = (method_index(method), status.as_u16());
    let seconds = took.as_secs_f64();
    let cache = HANDLES.get_or_init(Default::default);
    {
        let map = cache.read();
        let entry = map.get(route).or_else(|| map.get(OTHER).filter(|_| map.len() >= MAX_ROUTES));
        if let Some(entry) = entry
            && let Some(histogram) = &entry.durations[m]
            && let Some((_, _, counter)) = entry.requests.iter().find(|(mm, c, _)| *mm == m && *c == code)
        {
            counter.increment(1);
            histogram.record(seconds);
            return;
        }
    }
    let mut map = cache.write();
    let key = if map.contains_key(route) || map.len() < MAX_ROUTES { route } else { OTHER };
    let entry = map.entry(Box::from(key)).or_insert_with(|| RouteHandles {
        label: Box::leak(Box::from(key)),
        requests: Vec::new(),
        durations: Default::default(),
    });
    let label: &'static str = entry.label;
    let histogram = entry.durations[m].get_or_insert_with(
        || metrics::histogram!("thingline_http_request_duration_seconds", "route" => label, "method" => METHODS[m]),
    );
    histogram.record(seconds);
    match entry.requests.iter().find(|(mm, c, _)| *mm == m && *c == code) {
        Some((_, _, counter)) => counter.increment(1),
        None => {
            let counter = metrics::counter!(
                "thingline_http_requests_total",
                "route" => label,
                "method" => METHODS[m],
                "status" => status_label(status),
            );
            counter.increment(1);
            entry.requests.push((m, code, counter));
        }
    }
}

/// The label of the routes past [`MAX_ROUTES`].
const OTHER: &str = "other";

/// The handles of one route template.
struct RouteHandles {
    /// The template, copied once for the labels.
    label: &'static str,
    /// By (method index, status code).
    requests: Vec<(usize, u16, metrics::Counter)>,
    /// By method index.
    durations: [Option<metrics::Histogram>; METHODS.len()],
}

static HANDLES: std::sync::OnceLock<parking_lot::RwLock<std::collections::HashMap<Box<str>, RouteHandles>>> =
    std::sync::OnceLock::new();

/// The `method` labels: the standard methods, every other `other` (a client may send any token).
const METHODS: [&str; 8] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other"];

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The status code as a label, without allocating for the codes this server answers.
fn status_label(s: StatusCode) -> SharedString {
    const KNOWN: &[(u16, &str)] = &[
        (101, "101"),
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (406, "406"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (507, "507"),
    ];
    let code = s.as_u16();
    match KNOWN.binary_search_by_key(&code, |(c, _)| *c) {
        Ok(i) => SharedString::const_str(KNOWN[i].1),
        Err(_) => SharedString::from(code.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_bounded_visible_ascii() {
        assert!(well_formed(b"abc-123_XYZ.42"));
        assert!(well_formed(&[b'a'; MAX_ID_LEN]));
        assert!(!well_formed(&[b'a'; MAX_ID_LEN + 1]));
        assert!(!well_formed(b""));
        assert!(!well_formed(b"has space"));
        assert!(!well_formed(b"tab\there"));
        assert!(!well_formed("é".as_bytes()));
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(well_formed(id.as_bytes()));
        assert_ne!(new_id(), id);
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::from_bytes(b"BREW").expect("method"))], "other");
        assert_eq!(status_label(StatusCode::CREATED).as_ref(), "201");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT).as_ref(), "418");
    }
}
