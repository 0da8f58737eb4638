//! `GET /v2/utils/date`: the server's clock, for devices (with `thingToken`) and apps (with a
//! session token). `format=UTC` (default) or `unix_timestamp` (seconds).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Query, authorization};
use super::{ApiResult, AppState, schemas};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(date))
}

/// The server's clock, for a device (`thingToken`) or an app user (session token).
#[utoipa::path(get, path = "/v2/utils/date", tag = "health", operation_id = "serverDate",
    security(("sessionToken" = []), ()),
    params(
        ("thingToken" = Option<String>, Query, description = "A thing's token (instead of a session token)."),
        ("format" = Option<schemas::DateFormat>, Query, description = "`UTC` (default, ISO 8601) or `unix_timestamp` (seconds)."),
    ),
    responses(
        (status = 200, description = "The date.", body = schemas::ServerDate),
        (status = 400, response = schemas::BadRequest),
        (status = 401, response = schemas::Unauthorized),
        (status = 404, response = schemas::NotFound),
    ))]
async fn date(State(state): State<AppState>, headers: HeaderMap, q: Query) -> ApiResult<Response> {
    match q.get("thingToken") {
        Some(token) => {
            state.platform.thing_by_token(token).await?;
        }
        // An app: the session token in `Authorization` (401 `Invalid session token` without one).
        None => {
            state.platform.session(authorization(&headers)).await?;
        }
    }
    Ok(render_date(q.get("format"))?)
}

/// The date envelope: `{"date": d, "values": [{"value": d}]}`.
pub fn render_date(format: Option<&str>) -> thingline_core::Result<Response> {
    Ok(Json(crate::platform::server_date(format)?).into_response())
}
