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
use axum::routing::{get, put};
use serde_json::json;
use thingline_core::Error;
use thingline_core::classes::ListQuery;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::Body;
use super::extract::{Path, Query, authorization};
use super::stream::{self, Greeting};
use super::{ApiResult, AppState, json_text, schemas};
use crate::platform::Target;
use crate::platform::objects::addressed;

/// A collection and an object of it, documented; deeper paths (objects' own collections) are
/// [`nested_router`]'s.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        // PUT and DELETE address objects: on a collection they are a 400 that says so.
        .route("/v2/classes/{scope}/{className}", put(update).delete(remove))
        .routes(routes!(get_object, create_with_id, update, remove))
}

/// `/v2/classes/{scope}/C1/id1/C2[/id2…]`: collections of an object, with the same handlers
/// (the OpenAPI document describes the first level; the rules are the same at every level).
pub fn nested_router() -> Router<AppState> {
    Router::new().route(
        "/v2/classes/{scope}/{className}/{objectId}/{*nested}",
        get(read).post(create).put(update).delete(remove),
    )
}

/// The path parameters of any classes route, in order: the scope, then the rest of the path
/// (`C1[/id1[/C2…]]`).
type ClassParams = Path<Vec<(String, String)>>;

fn scope_and_rest(Path(params): ClassParams) -> (String, String) {
    let mut it = params.into_iter().map(|(_, v)| v);
    let scope = it.next().unwrap_or_default();
    let rest: Vec<String> = it.collect();
    (scope, rest.join("/"))
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

/// Stores an object in a collection (`_id` generated unless the body has one).
#[utoipa::path(post, path = "/v2/classes/{scope}/{className}", tag = "classes", operation_id = "createObject", security(("sessionToken" = [])),
    params(schemas::CollectionPath,),
    request_body(content = Object, description = "The object's fields.", example = json!({"title": "Blue Train", "rank": 3})),
    responses(
        (status = 201, description = "Stored.", body = schemas::ObjectCreated),
        (status = 400, response = schemas::BadRequest),
        (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound), (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 409, response = schemas::Conflict),
        (status = 429, response = schemas::TooManyRequests),
        (status = 507, response = schemas::InsufficientStorage),
    ))]
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: ClassParams,
    body: Body,
) -> ApiResult<Response> {
    let (scope, rest) = scope_and_rest(params);
    let p = &state.platform;
    let session = p.session(authorization(&headers)).await?;
    let (collection, id) = addressed(&session, &scope, &rest)?;
    let id = p.create_object(&collection, id.as_deref(), &body.json).await?;
    Ok((StatusCode::CREATED, Json(json!({"status": "success", "message": "created", "id": id}))).into_response())
}

/// Merges fields into an object.
#[utoipa::path(put, path = "/v2/classes/{scope}/{className}/{objectId}", tag = "classes", operation_id = "updateObject", security(("sessionToken" = [])),
    params(schemas::ObjectPath,),
    request_body(content = Object, description = "Fields to merge."),
    responses(
        (status = 200, description = "Updated.", body = schemas::Done),
        (status = 400, response = schemas::BadRequest),
        (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound), (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
    ))]
async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: ClassParams,
    body: Body,
) -> ApiResult<Response> {
    let (scope, rest) = scope_and_rest(params);
    let p = &state.platform;
    let session = p.session(authorization(&headers)).await?;
    let (collection, id) = addressed(&session, &scope, &rest)?;
    let id = id.ok_or_else(|| needs_id("PUT"))?;
    p.update_object(&collection, &id, &body.json).await?;
    Ok(Json(json!({"status": "success", "message": "updated"})).into_response())
}

/// Deletes an object.
#[utoipa::path(delete, path = "/v2/classes/{scope}/{className}/{objectId}", tag = "classes", operation_id = "deleteObject", security(("sessionToken" = [])),
    params(schemas::ObjectPath,),
    responses(
        (status = 200, description = "Deleted.", body = schemas::Done),
        (status = 400, response = schemas::BadRequest),
        (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound),
    ))]
async fn remove(State(state): State<AppState>, headers: HeaderMap, params: ClassParams) -> ApiResult<Response> {
    let (scope, rest) = scope_and_rest(params);
    let p = &state.platform;
    let session = p.session(authorization(&headers)).await?;
    let (collection, id) = addressed(&session, &scope, &rest)?;
    let id = id.ok_or_else(|| needs_id("DELETE"))?;
    p.delete_object(&collection, &id).await?;
    Ok(Json(json!({"status": "success", "message": "deleted"})).into_response())
}

async fn read(State(state): State<AppState>, headers: HeaderMap, params: ClassParams, q: Query) -> ApiResult<Response> {
    let (scope, rest) = scope_and_rest(params);
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

/// A page of a collection, or a live stream of its changes.
///
/// With `subscribe=true`: a chunked stream of arrays of the objects as stored,
/// `[{"_id","_deleted":true}]` for a deletion, `{}` when idle.
#[utoipa::path(get, path = "/v2/classes/{scope}/{className}", tag = "classes", operation_id = "listObjects", security(("sessionToken" = [])),
    params(schemas::CollectionPath,
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Objects per page (default 1,000; 1 to 1,000, larger values are taken as 1,000)."),
        ("skip" = Option<u32>, Query, maximum = 10000, description = "Objects to skip (0 to 10,000; page deeper with `after`)."),
        ("after" = Option<String>, Query, description = "The last `_id` of the previous page (keyset paging)."),
        ("where" = Option<String>, Query, description = "A JSON object of field equalities on declared indexes."),
        ("sort" = Option<String>, Query, description = "A field (`-field` for descending) among the declared indexes."),
        ("subscribe" = Option<bool>, Query, description = "`true`: a live stream of the collection's changes."),
        ("keepAlive" = Option<u64>, Query, description = "With `subscribe=true`: idle milliseconds between `{}` chunks."),
    ),
    responses(
        (status = 200, description = "The page.", body = schemas::ObjectResults),
        (status = 400, response = schemas::BadRequest),
        (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn list(state: State<AppState>, headers: HeaderMap, params: ClassParams, q: Query) -> ApiResult<Response> {
    read(state, headers, params, q).await
}

/// One object.
#[utoipa::path(get, path = "/v2/classes/{scope}/{className}/{objectId}", tag = "classes", operation_id = "getObject", security(("sessionToken" = [])),
    params(schemas::ObjectPath,),
    responses(
        (status = 200, description = "`{\"results\":[object]}`.", body = schemas::ObjectResults),
        (status = 400, response = schemas::BadRequest),
        (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound),
    ))]
async fn get_object(state: State<AppState>, headers: HeaderMap, params: ClassParams, q: Query) -> ApiResult<Response> {
    read(state, headers, params, q).await
}

/// Stores an object with the `_id` given in the path.
#[utoipa::path(post, path = "/v2/classes/{scope}/{className}/{objectId}", tag = "classes", operation_id = "createObjectWithId", security(("sessionToken" = [])),
    params(schemas::ObjectPath,),
    request_body(content = Object, description = "The object's fields."),
    responses(
        (status = 201, description = "Stored.", body = schemas::ObjectCreated),
        (status = 400, response = schemas::BadRequest),
        (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound), (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 409, response = schemas::Conflict),
        (status = 429, response = schemas::TooManyRequests),
        (status = 507, response = schemas::InsufficientStorage),
    ))]
async fn create_with_id(
    state: State<AppState>,
    headers: HeaderMap,
    params: ClassParams,
    body: Body,
) -> ApiResult<Response> {
    create(state, headers, params, body).await
}
