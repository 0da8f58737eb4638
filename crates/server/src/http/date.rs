//! `GET /v2/utils/date`: the server's clock, for devices (with `thingToken`) and apps (with a
//! session token). `format=UTC` (default) or `unix_timestamp` (seconds).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::extract::{Query, authorization};
use super::{ApiResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/v2/utils/date", get(date))
}

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
