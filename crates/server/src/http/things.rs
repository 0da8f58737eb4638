//! The HTTP Thing API (`/v2/things…`), as device firmware uses it: activation, writes, reads,
//! keys, latest of all keys, description, and the streaming subscription. Served on HTTPS and
//! on the plain device listener.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;
use thingline_core::Error;
use thingline_core::query::{TimelineQuery, parse_limit};

use super::body::Body;
use super::extract::{ClientIp, Path, Query};
use super::stream::{self, Greeting};
use super::{ApiResult, AppState, json_text};
use crate::platform::{Target, WriteFlags, WriteItem, parse_write_items};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/things", post(activate))
        .route("/v2/things/{token}", post(write).get(subscribe))
        .route("/v2/things/{token}/resources", get(keys))
        .route("/v2/things/{token}/resources/description", put(put_description).get(read_description))
        .route("/v2/things/{token}/resources/{key}", get(read))
        .route("/v2/things/{token}/all_resources", get(all_resources))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActivateBody {
    activation_code: Option<String>,
    product_id: Option<String>,
}

async fn activate(state: axum::extract::State<AppState>, ClientIp(ip): ClientIp, body: Body) -> ApiResult<Response> {
    let b: ActivateBody = body.parse()?;
    let code = b.activation_code.ok_or_else(|| Error::bad_request("activationCode is required"))?;
    let thing = state.platform.activate(&code, b.product_id.as_deref(), ip).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"status": "created", "message": "thing activated", "thingToken": thing.token, "thingId": thing.id}),
        ),
    )
        .into_response())
}

/// The `store` and `broadcast` flags of a write (both default true).
pub fn write_flags(q: &Query) -> thingline_core::Result<WriteFlags> {
    WriteFlags::from_params(q.get("store"), q.get("broadcast"))
}

async fn write(
    state: axum::extract::State<AppState>,
    Path(token): Path<String>,
    q: Query,
    body: Body,
) -> ApiResult<Response> {
    let p = &state.platform;
    let thing = p.thing_by_token(&token).await?;
    let flags = write_flags(&q)?;
    let items = parse_write_items(&body.json, None, p.limits().max_values_per_write)?;
    p.write_values(&thing, items, flags).await?;
    Ok((StatusCode::CREATED, Json(json!({"status": "created"}))).into_response())
}

async fn read(
    state: axum::extract::State<AppState>,
    Path((token, key)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    let p = &state.platform;
    let thing = p.thing_by_token(&token).await?;
    let query = TimelineQuery::from_params(q.get("limit"), q.get("startDate"), q.get("endDate"))?;
    let out = p.read_values(&thing, &key, &query).await?;
    Ok(json_text(StatusCode::OK, out.render()))
}

async fn read_description(
    state: axum::extract::State<AppState>,
    Path(token): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    read(state, Path((token, "description".to_owned())), q).await
}

async fn keys(state: axum::extract::State<AppState>, Path(token): Path<String>) -> ApiResult<Response> {
    let p = &state.platform;
    let thing = p.thing_by_token(&token).await?;
    let keys = p.resource_keys(&thing).await?;
    Ok(Json(json!({"resources": keys})).into_response())
}

/// `[{"key","values":[…]}, …]`: the newest `limit` values of every key, in key order. A thing
/// with many keys answers in pages: at most 100 keys and 1,000 values each; a `Link` header
/// (`rel="next"`) gives the next page (`after=<last key>`).
async fn all_resources(
    state: axum::extract::State<AppState>,
    Path(token): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let p = &state.platform;
    let thing = p.thing_by_token(&token).await?;
    let limit = parse_limit(q.get("limit"))?;
    let page = p.read_all(&thing, limit, q.get("after")).await?;
    let mut response = json_text(StatusCode::OK, page.render());
    if let Some(after) = page.next_after {
        let link =
            format!("</v2/things/{token}/all_resources?limit={limit}&after={}>; rel=\"next\"", percent_encode(&after));
        if let Ok(v) = axum::http::HeaderValue::from_str(&link) {
            response.headers_mut().insert(axum::http::header::LINK, v);
        }
    }
    Ok(response)
}

/// Percent-encodes a query value (keys may hold any character but `/`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn put_description(
    state: axum::extract::State<AppState>,
    Path(token): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let p = &state.platform;
    let thing = p.thing_by_token(&token).await?;
    let value: serde_json::Value = body.parse()?;
    if !value.is_object() {
        return Err(Error::bad_request("description must be a JSON object").into());
    }
    let item = WriteItem { key: "description".into(), value: value.to_string(), ts: None, geo: None };
    p.write_values(&thing, vec![item], WriteFlags::default()).await?;
    Ok(Json(json!({"status": "success"})).into_response())
}

/// The thing stream `GET /v2/things/{thingToken}?keepAlive=ms`: the thing's values as any
/// protocol or app wrote them (items as written), `{}` after each idle keepAlive.
async fn subscribe(state: axum::extract::State<AppState>, Path(token): Path<String>, q: Query) -> ApiResult<Response> {
    stream::subscribe(&state.platform, None, Target::Thing { token }, &q, Greeting::Subscribed).await
}
