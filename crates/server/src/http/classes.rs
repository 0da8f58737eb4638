//! The Objects API (`/v2/classes/{me|app}/C1[/id1[/C2…]]`) over HTTPS with a session token:
//! store (POST), merge (PUT), delete, get one, get a collection page (`limit`, `skip`, `after`,
//! `where`, `sort`) and subscribe to a collection (`subscribe=true&keepAlive=ms`, a chunked
//! stream of arrays with `{}` on idle). Rules live in `platform::objects`; see
//! docs/objects-api.md.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use thingline_core::Error;
use thingline_core::classes::ListQuery;

use super::body::Body;
use super::extract::{Path, Query, authorization};
use super::stream::{self, Greeting};
use super::{ApiResult, AppState, json_text};
use crate::platform::Target;
use crate::platform::objects::addressed;

pub fn router() -> Router<AppState> {
    Router::new().route("/v2/classes/{scope}/{*rest}", get(read).post(create).put(update).delete(remove))
}

fn results(objects: &[String]) -> String {
    let mut out = String::with_capacity(16 + objects.iter().map(String::len).sum::<usize>() + objects.len());
    out.push_str("{\"results\":[");
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(o);
    }
    out.push_str("]}");
    out
}

fn needs_id(method: &str) -> Error {
    Error::bad_request(format!("{method} needs an object: …/{{Collection}}/{{_id}}"))
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((scope, rest)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let p = &state.platform;
    let session = p.session(authorization(&headers)).await?;
    let (collection, id) = addressed(&session, &scope, &rest)?;
    let id = p.create_object(&collection, id.as_deref(), &body.json).await?;
    Ok((StatusCode::CREATED, Json(json!({"status": "success", "message": "created", "id": id}))).into_response())
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((scope, rest)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let p = &state.platform;
    let session = p.session(authorization(&headers)).await?;
    let (collection, id) = addressed(&session, &scope, &rest)?;
    let id = id.ok_or_else(|| needs_id("PUT"))?;
    p.update_object(&collection, &id, &body.json).await?;
    Ok(Json(json!({"status": "success", "message": "updated"})).into_response())
}

async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((scope, rest)): Path<(String, String)>,
) -> ApiResult<Response> {
    let p = &state.platform;
    let session = p.session(authorization(&headers)).await?;
    let (collection, id) = addressed(&session, &scope, &rest)?;
    let id = id.ok_or_else(|| needs_id("DELETE"))?;
    p.delete_object(&collection, &id).await?;
    Ok(Json(json!({"status": "success", "message": "deleted"})).into_response())
}

async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((scope, rest)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    let p = &state.platform;
    let session = p.session(authorization(&headers)).await?;
    let (collection, id) = addressed(&session, &scope, &rest)?;
    let subscribe = stream::requested(&q)?;
    if let Some(id) = id {
        if subscribe {
            return Err(Error::bad_request("Subscribe to a collection, not to an object").into());
        }
        let object = p.get_object(&collection, &id).await?;
        return Ok(json_text(StatusCode::OK, results(&[object])));
    }
    if subscribe {
        return stream::subscribe(p, Some(session), Target::Collection(collection), &q, Greeting::None).await;
    }
    let query = ListQuery::from_params(q.get("limit"), q.get("skip"), q.get("after"), q.get("where"), q.get("sort"))?;
    let objects = p.list_objects(&collection, &query).await?;
    Ok(json_text(StatusCode::OK, results(&objects)))
}
