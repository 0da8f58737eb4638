//! `GET /v2/health`: 200 `{"status":"ok"}` once the listeners and the store are up (the router
//! only serves after both), and `GET /v2` without a session: 401 as on thethings.iO.

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::json;

use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v2", get(|| async { ApiError(thingline_core::Error::Unauthorized("Invalid session token".into())) }))
}
