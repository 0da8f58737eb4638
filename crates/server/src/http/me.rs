//! The app user's side of the App API (`/v2/me/…`), authenticated with a session token:
//! linked things, resources and their values (reads and writes), grants, and the user's
//! settings, and app subscriptions (`?subscribe=true`). Every permission decision is the
//! platform's (`read_as`, `write_as`, the subscription service); a key or thing the user may not
//! see answers 404 exactly like one that does not exist. Wherever a thingId is taken, the
//! thingToken of a thing the user reaches is taken too.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use serde::Deserialize;
use serde_json::{Value, json};
use thingline_core::Error;
use thingline_core::keys::{MagicKey, classify};
use thingline_core::query::TimelineQuery;
use thingline_core::time::format_datetime;

use super::body::Body;
use super::extract::{Path, Query, authorization};
use super::stream::{self, Greeting};
use super::things::write_flags;
use super::{ApiResult, AppState, json_text};
use crate::platform::{LinkBy, ReadOut, Session, Target};
use crate::wire::push_str_lit;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/me", get(me))
        .route("/v2/me/things", get(list_things).post(link_thing))
        .route("/v2/me/things/{thing_id}", delete(unlink_thing))
        .route("/v2/me/resources", get(resources))
        .route("/v2/me/resources/{key}", get(read_key))
        .route("/v2/me/resources/{key}/{thing_id}", get(read_one).post(write_one))
        .route("/v2/me/grant", put(grant))
        .route("/v2/me/settings", get(get_settings).put(put_settings))
}

async fn session(state: &AppState, headers: &HeaderMap) -> ApiResult<Arc<Session>> {
    Ok(state.platform.session(authorization(headers)).await?)
}

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

async fn unlink_thing(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(thing_id): Path<String>,
) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    state.platform.unlink_thing(&s, &thing_id).await?;
    Ok(Json(json!({"status": "success", "message": "deleted"})).into_response())
}

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

/// `{thingId: [{"value","datetime"}, …], …}` for every thing the user may read `key` on.
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

/// `thing_id`: a thingId, or the thingToken of a thing the user reaches.
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

async fn grant(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let b: GrantBody = body.parse()?;
    let email = b.email.ok_or_else(|| Error::bad_request("email is required"))?;
    let permissions = b.permissions.ok_or_else(|| Error::bad_request("permissions is required"))?;
    state.platform.grant(&s, &email, &permissions).await?;
    Ok(Json(json!({"status": "success", "message": "granted"})).into_response())
}

async fn get_settings(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    Ok(Json(state.platform.user_settings(&s).await?).into_response())
}

async fn put_settings(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let s = session(&state, &headers).await?;
    let patch: Value = body.parse()?;
    state.platform.update_user_settings(&s, patch).await?;
    Ok(Json(json!({"status": "success", "message": "updated"})).into_response())
}
