//! `GET /v2/utils/date`: the server's clock, for devices (with `thingToken`) and apps (with a
//! session token). `format=UTC` (default) or `unix_timestamp` (seconds).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use thingline_core::Error;
use thingline_core::time::{format_datetime, now_ms};

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
    let now = now_ms();
    let value = match format.unwrap_or("UTC") {
        f if f.eq_ignore_ascii_case("utc") => json!(format_datetime(now)),
        f if f.eq_ignore_ascii_case("unix_timestamp") => json!(now.div_euclid(1000)),
        other => {
            return Err(Error::bad_request(format!("format must be UTC or unix_timestamp, not {other:?}")));
        }
    };
    Ok(Json(json!({"date": value, "values": [{"value": value}]})).into_response())
}
