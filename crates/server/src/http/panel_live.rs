//! `GET /v2/panel/live?things=id1,id2,…`: the web panel's live view of the things a page shows,
//! as server-sent events (what `EventSource` reads, with the session cookie). `event: ready` once
//! every subscription is live, `event: values` with `{"thingId","values":[…]}` for each write (the
//! thing items as written), a `: keep-alive` comment when idle, and `event: end` with the error
//! envelope when the platform ends it (thing deleted, too slow). The stream also ends when the
//! panel session ends: at sign-out (on any node) at once, at expiry within [`RECHECK`], and at
//! shutdown. Subscriptions, caps and fan-out are the platform's.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;
use bytes::Bytes;
use thingline_core::Error;
use thingline_core::ids::token_digest;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Query;
use super::panel_session::Panel;
use super::{ApiResult, AppState, schemas};
use crate::platform::panel_views::PanelLive;
use crate::platform::{Next, Platform};

/// An idle stream sends a comment this often (proxies and browsers keep it open).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a stream checks that its panel session has not expired.
const RECHECK: Duration = Duration::from_secs(30);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live))
}

/// Live values of the account's things, as server-sent events.
///
/// Up to 100 things per stream, for the web panel; the stream ends (an `end` event) when the
/// session does.
#[utoipa::path(get, path = "/v2/panel/live", tag = "panel", operation_id = "panelLive", security(("panelToken" = []), ("panelCookie" = [])),
    params(("things" = String, Query, description = "Comma-separated thingIds (1 to 100).")),
    responses(
        (status = 200, description = "`text/event-stream`: `ready`, then `value` events.", content_type = "text/event-stream", body = String),
        (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn live(State(state): State<AppState>, panel: Panel, q: Query) -> ApiResult<Response> {
    let mut ids: Vec<String> = Vec::new();
    for id in q.get("things").unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_owned());
        }
    }
    if ids.is_empty() {
        return Err(Error::bad_request("things must name at least one thingId").into());
    }
    // Listening for the session's end before subscribing: a sign-out from here on is seen.
    let ends = state.platform.panel_session_ends();
    let live = state.platform.panel_live(&panel.user, &ids).await?;
    let stream = Stream {
        live,
        ends,
        digest: token_digest(&panel.token),
        token: panel.token,
        platform: Arc::clone(&state.platform),
        shutdown: state.platform.shutdown_signal().clone(),
        ready: true,
        recheck: tokio::time::Instant::now() + RECHECK,
    };
    let body = futures_util::stream::unfold(Some(stream), |state| async move {
        let mut s = state?;
        let (bytes, go_on) = s.next().await?;
        Some((Ok::<_, std::convert::Infallible>(bytes), go_on.then_some(s)))
    });
    Ok(Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache")
        // Buffering proxies (nginx) pass each event on at once.
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

struct Stream {
    live: PanelLive,
    ends: broadcast::Receiver<Arc<str>>,
    digest: String,
    token: String,
    platform: Arc<Platform>,
    shutdown: CancellationToken,
    ready: bool,
    recheck: tokio::time::Instant,
}

fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn end(error: Error) -> Option<(Bytes, bool)> {
    Some((event("end", &error.envelope().to_string()), false))
}

fn session_ended() -> Error {
    Error::Unauthorized("Invalid panel token".into())
}

impl Stream {
    /// The next bytes to send and whether the stream goes on; `None`: end quietly.
    async fn next(&mut self) -> Option<(Bytes, bool)> {
        if self.ready {
            self.ready = false;
            return Some((event("ready", "{}"), true));
        }
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return None,
                ended = self.ends.recv() => match ended {
                    Ok(d) if *d == *self.digest => return end(session_ended()),
                    Ok(_) => continue,
                    // Missed some: look at the session itself.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !self.session_live().await {
                            return end(session_ended());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep_until(self.recheck) => {
                    self.recheck = tokio::time::Instant::now() + RECHECK;
                    if !self.session_live().await {
                        return end(session_ended());
                    }
                }
                next = self.live.inbox.next_with_channel() => return match next {
                    (Some(channel), Next::Payload(p)) => {
                        let Some(thing_id) = self.live.things_by_channel.get(&channel) else { continue };
                        let values = String::from_utf8_lossy(p.as_ref().as_ref());
                        let mut data = String::with_capacity(values.len() + thing_id.len() + 32);
                        data.push_str("{\"thingId\":");
                        crate::wire::push_str_lit(&mut data, thing_id);
                        data.push_str(",\"values\":");
                        data.push_str(&values);
                        data.push('}');
                        Some((event("values", &data), true))
                    }
                    (None, Next::Payload(_)) => continue,
                    (_, Next::Ended(why)) => end(why.error()),
                    (_, Next::Closed) => None,
                },
                _ = tokio::time::sleep(KEEP_ALIVE) => return Some((Bytes::from_static(b": keep-alive\n\n"), true)),
            }
        }
    }

    /// Whether the panel session is still live (a store failure keeps the stream: the next check
    /// decides).
    async fn session_live(&self) -> bool {
        self.platform.panel_session_live(&self.token).await.unwrap_or(true)
    }
}
