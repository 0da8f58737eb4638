//! The HTTP Thing API (`/v2/things…`), as device firmware uses it: activation, writes, reads,
//! keys, latest of all keys, description, and the streaming subscription. Served on HTTPS and
//! on the plain device listener.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use thingline_core::Error;
use thingline_core::query::{TimelineQuery, parse_limit};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::Body;
use super::extract::{ClientIp, Path, Query};
use super::stream::{self, Greeting};
use super::{ApiResult, AppState, json_text, schemas};
use crate::platform::{Target, WriteFlags, WriteItem, parse_write_items};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(activate))
        .routes(routes!(write, subscribe))
        .routes(routes!(keys))
        .routes(routes!(put_description, read_description))
        .routes(routes!(read))
        .routes(routes!(all_resources))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActivateBody {
    activation_code: Option<String>,
    product_id: Option<String>,
}

/// Activates a thing with a single-use activation code of its product.
#[utoipa::path(post, path = "/v2/things", tag = "thing", operation_id = "activateThing",
    request_body(content = schemas::ActivateBody, description = "JSON or form-urlencoded."),
    responses(
        (status = 201, description = "Activated; the token is shown once.", body = schemas::Activated),
        (status = 400, response = schemas::BadRequest),
        (status = 404, description = "No such activation code (or one of another product).", body = schemas::ErrorEnvelope),
        (status = 409, description = "The activation code was used already (single-use).", body = schemas::ErrorEnvelope),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 429, response = schemas::TooManyRequests),
        (status = 507, response = schemas::InsufficientStorage),
    ))]
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

/// Writes values to the thing (committed before the 201), and publishes them to its subscribers.
#[utoipa::path(post, path = "/v2/things/{thingToken}", tag = "thing", operation_id = "writeValues",
    params(("thingToken" = String, Path, description = "The thing's token (from its activation)."),
        ("store" = Option<bool>, Query, description = "Keep the values (default true); `false`: only publish them."),
        ("broadcast" = Option<bool>, Query, description = "Publish the values (default true)."),
    ),
    request_body(content = schemas::WriteBody, description = "JSON or form-urlencoded."),
    responses(
        (status = 201, description = "Committed.", body = schemas::Created, example = json!({"status": "created"})),
        (status = 400, response = schemas::BadRequest),
        (status = 404, response = schemas::NotFound),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 429, response = schemas::TooManyRequests),
        (status = 507, response = schemas::InsufficientStorage),
    ))]
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

/// Reads a resource's values, newest first.
#[utoipa::path(get, path = "/v2/things/{thingToken}/resources/{key}", tag = "thing", operation_id = "readValues",
    params(("thingToken" = String, Path, description = "The thing's token (from its activation)."),
        ("key" = String, Path, description = "The resource; `$settings` or `$settings.path` reads the settings document."),
        schemas::ReadRange,
    ),
    responses(
        (status = 200, description = "The values (an empty array when the key has none in the range).", body = Vec<schemas::ReadItem>),
        (status = 400, response = schemas::BadRequest),
        (status = 404, response = schemas::NotFound),
    ))]
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

/// Reads the thing's description document.
#[utoipa::path(get, path = "/v2/things/{thingToken}/resources/description", tag = "thing", operation_id = "readDescription",
    params(("thingToken" = String, Path, description = "The thing's token (from its activation)."), schemas::ReadRange,),
    responses(
        (status = 200, description = "The description's values.", body = Vec<schemas::ReadItem>),
        (status = 400, response = schemas::BadRequest),
        (status = 404, response = schemas::NotFound),
    ))]
async fn read_description(
    state: axum::extract::State<AppState>,
    Path(token): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    read(state, Path((token, "description".to_owned())), q).await
}

/// The thing's resource keys.
#[utoipa::path(get, path = "/v2/things/{thingToken}/resources", tag = "thing", operation_id = "listResources",
    params(("thingToken" = String, Path, description = "The thing's token (from its activation)."),),
    responses(
        (status = 200, description = "The keys.", body = schemas::ResourceKeys),
        (status = 404, response = schemas::NotFound),
    ))]
async fn keys(state: axum::extract::State<AppState>, Path(token): Path<String>) -> ApiResult<Response> {
    let p = &state.platform;
    let thing = p.thing_by_token(&token).await?;
    let keys = p.resource_keys(&thing).await?;
    Ok(Json(json!({"resources": keys})).into_response())
}

/// The newest values of every key.
///
/// `[{"key","values":[…]}, …]` in key order. A thing with many keys answers in pages: at most
/// 100 keys and 1,000 values each; a `Link` header (`rel="next"`) gives the next page
/// (`after=<last key>`).
#[utoipa::path(get, path = "/v2/things/{thingToken}/all_resources", tag = "thing", operation_id = "readAllResources",
    params(("thingToken" = String, Path, description = "The thing's token (from its activation)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Values per key (default 1; 1 to 1,000)."),
        ("after" = Option<String>, Query, description = "The last key of the previous page."),
    ),
    responses(
        (status = 200, description = "Keys with their newest values.", body = Vec<schemas::KeyValues>,
            headers(("Link" = String, description = "The next page, when there is one."))),
        (status = 400, response = schemas::BadRequest),
        (status = 404, response = schemas::NotFound),
    ))]
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

/// Sets the thing's description document (a JSON object).
#[utoipa::path(put, path = "/v2/things/{thingToken}/resources/description", tag = "thing", operation_id = "putDescription",
    params(("thingToken" = String, Path, description = "The thing's token (from its activation)."),),
    request_body(content = Object, description = "Any JSON object."),
    responses(
        (status = 200, description = "Stored.", body = schemas::Done, example = json!({"status": "success"})),
        (status = 400, response = schemas::BadRequest),
        (status = 404, response = schemas::NotFound),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 429, response = schemas::TooManyRequests),
        (status = 507, response = schemas::InsufficientStorage),
    ))]
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

/// The thing stream: the thing's values as they are written.
///
/// A chunked response of the values as written (by any protocol or app), `{}` after each idle
/// `keepAlive`; it ends with an envelope when the thing is deleted.
#[utoipa::path(get, path = "/v2/things/{thingToken}", tag = "thing", operation_id = "subscribeThing",
    params(("thingToken" = String, Path, description = "The thing's token (from its activation)."),
        ("keepAlive" = Option<u64>, Query, description = "Idle milliseconds between `{}` chunks (1,000 to 3,600,000; default 60,000)."),
    ),
    responses(
        (status = 200, description = "The stream; its first chunk is `{\"status\":\"success\",\"message\":\"subscribed\"}`.", body = schemas::Done),
        (status = 400, response = schemas::BadRequest),
        (status = 404, response = schemas::NotFound),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn subscribe(state: axum::extract::State<AppState>, Path(token): Path<String>, q: Query) -> ApiResult<Response> {
    stream::subscribe(&state.platform, None, Target::Thing { token }, &q, Greeting::Subscribed).await
}
