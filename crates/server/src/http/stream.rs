//! Streaming responses for collection subscriptions: one JSON document per chunk (no separators,
//! as the official SDKs parse each chunk on its own), `{}` after each idle keepAlive, an error envelope and the end of the stream when the
//! subscriber falls behind, and the end of the stream at server shutdown.

use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;
use bytes::Bytes;
use thingline_bus::{Event, Received, Subscription};
use tokio_util::sync::CancellationToken;

const LAGGED: &str =
    r#"{"status":"error","code":503,"message":"subscriber too slow: values were skipped; subscribe again"}"#;

/// Renders one event for this subscriber, or `None` to skip it (not visible to it).
pub type Render = Box<dyn Fn(&Event) -> Option<String> + Send + Sync>;

struct State {
    sub: Subscription,
    render: Render,
    keep_alive: Duration,
    shutdown: CancellationToken,
}

/// A chunked JSON response fed by `sub`. Subscribe before calling, so nothing is missed.
pub fn json_stream(sub: Subscription, render: Render, keep_alive: Duration, shutdown: CancellationToken) -> Response {
    let state = State { sub, render, keep_alive, shutdown };
    let stream = futures_util::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            let idle = tokio::time::sleep(st.keep_alive);
            tokio::select! {
                _ = st.shutdown.cancelled() => return None,
                _ = idle => return Some((Ok::<_, std::convert::Infallible>(Bytes::from_static(b"{}")), Some(st))),
                r = st.sub.recv() => match r {
                    Received::Event(ev) => {
                        if let Some(text) = (st.render)(&ev) {
                            return Some((Ok(Bytes::from(text)), Some(st)));
                        }
                    }
                    Received::Lagged(_) => return Some((Ok(Bytes::from_static(LAGGED.as_bytes())), None)),
                    Received::Closed => return None,
                },
            }
        }
    });
    Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
