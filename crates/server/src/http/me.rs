//! The app user's side of the App API (`/v2/me/…`), authenticated with a session token:
//! linked things, resources and their values (reads and writes), grants, and the user's
//! settings, and app subscriptions (`?subscribe=true`). Every permission decision is the
//! platform's (`read_as`, `write_as`, the subscription service); a key or thing the user may not
//! see answers 404 exactly like one that does not exist. Wherever a thingId is taken, the
//! thingToken of a thing the user reaches is taken too.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use thingline_core::Error;
use thingline_core::keys::{MagicKey, classify};
use thingline_core::query::TimelineQuery;
use thingline_core::time::format_datetime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::Body;
use super::extract::{Path, Query, authorization};
use super::stream::{self, Greeting};
use super::things::write_flags;
use super::{ApiResult, AppState, json_text, schemas};
use crate::platform::{LinkBy, ReadOut, Session, Target};
use crate::wire::push_str_lit;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_things, link_thing))
        .routes(routes!(unlink_thing))
        .routes(routes!(resources))
        .routes(routes!(read_key))
        .routes(routes!(read_one, write_one))
        .routes(routes!(grant))
        .routes(routes!(get_settings, put_settings))
}

async fn session(state: &AppState, headers: &HeaderMap) -> ApiResult<Arc<Session>> {
    Ok(state.platform.session(authorization(headers)).await?)
}

/// The session's user and roles.
#[utoipa::path(get, path = "/v2/me", tag = "app", operation_id = "me", security(("sessionToken" = [])),
    responses((status = 200, description = "The user.", body = schemas::Me), (status = 401, response = schemas::Unauthorized),))]
async fn me(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let roles = state.platform.roles(&s).await?;
    Ok(Json(json!({
        "status": "success",
        "email": s.email,
        "appId": s.app_id,
        "expiresAt": format_datetime(s.expires_ms),
        "roles": roles,
    }))
    .into_response())
}

/// The things linked to the user.
#[utoipa::path(get, path = "/v2/me/things", tag = "app", operation_id = "listMyThings", security(("sessionToken" = [])),
    responses((status = 200, description = "Linked things with their keys.", body = Vec<schemas::LinkedThing>), (status = 401, response = schemas::Unauthorized),))]
async fn list_things(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let out: Vec<Value> = state
        .platform
        .linked_things(&s)
        .await?
        .into_iter()
        .map(|t| json!({"_id": t.thing.id, "thingId": t.thing.id, "resources": t.keys}))
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}

#[derive(Deserialize)]
struct LinkBody {
    #[serde(rename = "thingToken")]
    thing_token: Option<String>,
    #[serde(rename = "thingId")]
    thing_id: Option<String>,
}

/// Links a thing to the user, by its token.
#[utoipa::path(post, path = "/v2/me/things", tag = "app", operation_id = "linkThing", security(("sessionToken" = [])),
    request_body(content = schemas::LinkBody, description = "JSON or form-urlencoded."),
    responses(
        (status = 201, description = "Linked.", body = schemas::Linked),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "The thing is another user's; link it with its token.", body = schemas::ErrorEnvelope),
        (status = 404, response = schemas::NotFound),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn link_thing(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let b: LinkBody = body.parse()?;
    let by = match (&b.thing_token, &b.thing_id) {
        (Some(t), _) => LinkBy::Token(t),
        (None, Some(id)) => LinkBy::Id(id),
        (None, None) => return Err(Error::bad_request("thingToken or thingId is required").into()),
    };
    let thing = state.platform.link_thing(&s, by).await?;
    Ok((StatusCode::CREATED, Json(json!({"status": "success", "message": "created", "thingId": thing.id})))
        .into_response())
}

/// Unlinks a thing from the user.
#[utoipa::path(delete, path = "/v2/me/things/{thingId}", tag = "app", operation_id = "unlinkThing", security(("sessionToken" = [])),
    params(("thingId" = String, Path, description = "A linked thing's id (or its token).")),
    responses(
        (status = 200, description = "Unlinked.", body = schemas::Done),
        (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound),
    ))]
async fn unlink_thing(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(thing_id): Path<String>,
) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    state.platform.unlink_thing(&s, &thing_id).await?;
    Ok(Json(json!({"status": "success", "message": "deleted"})).into_response())
}

/// The resources the user reaches, with the things holding each.
#[utoipa::path(get, path = "/v2/me/resources", tag = "app", operation_id = "listMyResources", security(("sessionToken" = [])),
    responses((status = 200, description = "Resources.", body = Vec<schemas::UserResource>), (status = 401, response = schemas::Unauthorized),))]
async fn resources(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let list: Vec<Value> = state
        .platform
        .user_resources(&s)
        .await?
        .into_iter()
        .map(|(name, things)| json!({"name": name, "things": things}))
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

fn query_of(q: &Query) -> thingline_core::Result<TimelineQuery> {
    TimelineQuery::from_params(q.get("limit"), q.get("startDate"), q.get("endDate"))
}

/// A resource's values on every thing the user may read it on.
///
/// `{thingId: [{"value","datetime"}, …], …}`; or, with `subscribe=true`, a live stream of its new
/// values on those things.
#[utoipa::path(get, path = "/v2/me/resources/{key}", tag = "app", operation_id = "readMyResource", security(("sessionToken" = [])),
    params(("key" = String, Path, description = "The resource."),
        schemas::ReadRange, schemas::Subscribe,
    ),
    responses(
        (status = 200, description = "`{thingId: [values…]}` (or the stream).", body = std::collections::HashMap<String, Vec<schemas::ReadItem>>),
        (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn read_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    if stream::requested(&q)? {
        return stream::subscribe(&state.platform, Some(s), Target::EveryThing { key }, &q, Greeting::Subscribed).await;
    }
    let query = query_of(&q)?;
    let reads = state.platform.read_every_as(&s, &key, &query).await?;
    let mut out = String::from("{");
    for (n, (thing, read)) in reads.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_str_lit(&mut out, &thing.id);
        out.push_str(":[");
        match read {
            ReadOut::Timeline(items) => {
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str("{\"value\":");
                    out.push_str(&it.value);
                    out.push_str(",\"datetime\":\"");
                    out.push_str(&format_datetime(it.ts));
                    out.push_str("\"}");
                }
            }
            ReadOut::Document { value, .. } => {
                out.push_str("{\"value\":");
                out.push_str(&value.to_string());
                out.push('}');
            }
        }
        out.push(']');
    }
    out.push('}');
    Ok(json_text(StatusCode::OK, out))
}

/// A resource's values on one thing.
///
/// `thingId` is a thingId, or the thingToken of a thing the user reaches. With `subscribe=true`:
/// a live stream of its new values.
#[utoipa::path(get, path = "/v2/me/resources/{key}/{thingId}", tag = "app", operation_id = "readThingResource", security(("sessionToken" = [])),
    params(("key" = String, Path, description = "The resource."),
        ("thingId" = String, Path, description = "A thing's id, or the token of a thing the user reaches."),
        schemas::ReadRange, schemas::Subscribe,
    ),
    responses(
        (status = 200, description = "The values, newest first (or the stream).", body = Vec<schemas::ReadItem>),
        (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn read_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((key, thing_id)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    if stream::requested(&q)? {
        let target = Target::Key { key, thing: thing_id };
        return stream::subscribe(&state.platform, Some(s), target, &q, Greeting::Subscribed).await;
    }
    let query = query_of(&q)?;
    let out = state.platform.read_as(&s, &thing_id, &key, &query).await?;
    Ok(json_text(StatusCode::OK, out.render()))
}

/// Writes values of a resource to a thing the user may write to (committed before the 201).
#[utoipa::path(post, path = "/v2/me/resources/{key}/{thingId}", tag = "app", operation_id = "writeThingResource", security(("sessionToken" = [])),
    params(("key" = String, Path, description = "The resource; `$settings…` and `$geo` are magic keys."),
        ("thingId" = String, Path, description = "A thing's id, or the token of a thing the user reaches."),
        ("store" = Option<bool>, Query, description = "Keep the values (default true)."),
        ("broadcast" = Option<bool>, Query, description = "Publish the values (default true)."),
    ),
    request_body(content = schemas::KeyWriteBody, description = "JSON or form-urlencoded."),
    responses(
        (status = 201, description = "Committed (`{\"status\":\"Success\",\"message\":\"Created\"}`; `{\"status\":\"created\"}` for magic keys).", body = schemas::Created),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "The user may read but not write this.", body = schemas::ErrorEnvelope),
        (status = 404, response = schemas::NotFound),
        (status = 429, response = schemas::TooManyRequests),
        (status = 507, response = schemas::InsufficientStorage),
    ))]
async fn write_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((key, thing_id)): Path<(String, String)>,
    q: Query,
    body: Body,
) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let flags = write_flags(&q)?;
    state.platform.write_as(&s, &thing_id, &key, &body.json, flags).await?;
    let body = match classify(&key) {
        MagicKey::Plain => json!({"status": "Success", "message": "Created"}),
        _ => json!({"status": "created"}),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct GrantBody {
    email: Option<String>,
    permissions: Option<Value>,
}

/// Grants another user of the app access to the caller's things (a confirmation mail goes to the
/// granter).
#[utoipa::path(put, path = "/v2/me/grant", tag = "app", operation_id = "grant", security(("sessionToken" = [])),
    request_body(content = schemas::GrantBody),
    responses(
        (status = 200, description = "Granted.", body = schemas::Done),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, response = schemas::Forbidden),
        (status = 404, response = schemas::NotFound),
    ))]
async fn grant(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let b: GrantBody = body.parse()?;
    let email = b.email.ok_or_else(|| Error::bad_request("email is required"))?;
    let permissions = b.permissions.ok_or_else(|| Error::bad_request("permissions is required"))?;
    state.platform.grant(&s, &email, &permissions).await?;
    Ok(Json(json!({"status": "success", "message": "granted"})).into_response())
}

/// The user's settings document.
#[utoipa::path(get, path = "/v2/me/settings", tag = "app", operation_id = "getSettings", security(("sessionToken" = [])),
    responses((status = 200, description = "The settings (a JSON object).", body = Object), (status = 401, response = schemas::Unauthorized),))]
async fn get_settings(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    Ok(Json(state.platform.user_settings(&s).await?).into_response())
}

/// Merges fields into the user's settings document.
#[utoipa::path(put, path = "/v2/me/settings", tag = "app", operation_id = "putSettings", security(("sessionToken" = [])),
    request_body(content = Object, description = "Fields to merge."),
    responses(
        (status = 200, description = "Updated.", body = schemas::Done),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
    ))]
async fn put_settings(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let patch: Value = body.parse()?;
    state.platform.update_user_settings(&s, patch).await?;
    Ok(Json(json!({"status": "success", "message": "updated"})).into_response())
}
