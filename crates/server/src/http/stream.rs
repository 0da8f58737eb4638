//! Subscriptions answered as an HTTP stream: one JSON document per chunk, with no separator (the
//! official SDKs parse every chunk on its own), `{}` after each idle keepAlive, the error envelope
//! and the end of the stream when the platform ends the subscription (403 access removed, 401
//! session ended, 404 thing deleted, 503 too slow), and the end of the stream at shutdown. The
//! subscription itself (who may, caps, fan-out, re-checks) is the platform's
//! ([`crate::platform::subscriptions`]); this module only frames what its queue yields.

use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use thingline_core::query::{parse_bool_flag, parse_keep_alive};

use super::ApiResult;
use super::extract::Query;
use crate::platform::{Inbox, Next, Payload, Platform, Session, Subscriber, Target};

/// The first document of a thing stream and of an app subscription: the subscription is live.
const SUBSCRIBED: &str = r#"{"status":"success","message":"subscribed"}"#;

/// What a stream says first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// `{"status":"success","message":"subscribed"}` (thing streams, app subscriptions).
    Subscribed,
    /// Nothing (collection subscriptions).
    None,
}

struct Live {
    /// Keeps the subscription alive for as long as the response streams.
    _subscriber: Subscriber,
    inbox: Inbox,
    keep_alive: Duration,
    shutdown: CancellationToken,
    greet: bool,
}

/// Shares a rendered payload with the response body without copying.
struct Shared(Arc<Payload>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().as_ref()
    }
}

enum Step {
    Send(Bytes),
    /// Send this, then end.
    End(Bytes),
    Stop,
}

impl Live {
    async fn next(&mut self) -> Step {
        if self.greet {
            self.greet = false;
            return Step::Send(Bytes::from_static(SUBSCRIBED.as_bytes()));
        }
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Step::Stop,
            next = self.inbox.next() => match next {
                Next::Payload(p) => Step::Send(Bytes::from_owner(Shared(p))),
                Next::Ended(why) => Step::End(Bytes::from(why.error().envelope().to_string())),
                Next::Closed => Step::Stop,
            },
            _ = tokio::time::sleep(self.keep_alive) => Step::Send(Bytes::from_static(b"{}")),
        }
    }
}

/// Whether a read asks for a subscription instead (`subscribe=true`).
pub fn requested(q: &Query) -> thingline_core::Result<bool> {
    parse_bool_flag("subscribe", q.get("subscribe"), false)
}

/// Subscribes (as `session`'s user, or as a device without one) to `target` and answers with the
/// stream, `{}` after each idle `keepAlive` ms (the query's). Subscribed before the response
/// starts: once the client has the headers, every later write is delivered.
pub async fn subscribe(
    platform: &Arc<Platform>,
    session: Option<Arc<Session>>,
    target: Target,
    q: &Query,
    greeting: Greeting,
) -> ApiResult<Response> {
    let keep_alive = Duration::from_millis(parse_keep_alive(q.get("keepAlive"))?);
    let (subscriber, inbox) = platform.subscribe_queue(session, target).await?;
    Ok(subscription_stream(subscriber, inbox, keep_alive, greeting, platform.shutdown_signal().clone()))
}

/// The chunked response of a live subscription.
fn subscription_stream(
    subscriber: Subscriber,
    inbox: Inbox,
    keep_alive: Duration,
    greeting: Greeting,
    shutdown: CancellationToken,
) -> Response {
    let live = Live { _subscriber: subscriber, inbox, keep_alive, shutdown, greet: greeting == Greeting::Subscribed };
    let stream = futures_util::stream::unfold(Some(live), |state| async move {
        let mut live = state?;
        match live.next().await {
            Step::Send(b) => Some((Ok::<_, std::convert::Infallible>(b), Some(live))),
            Step::End(b) => Some((Ok(b), None)),
            Step::Stop => None,
        }
    });
    Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
