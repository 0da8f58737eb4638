//! `GET /v2/health`: 200 `{"status":"ok"}` once the listeners and the store are up (the router
//! only serves after both), and `GET /v2` (also `/v2/`): 401 `Invalid session token` without a
//! valid session token as on thethings.iO; with one, who the session belongs to.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::json;

use super::extract::authorization;
use super::{ApiResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/v2/health", get(|| async { Json(json!({"status": "ok"})) })).route("/v2", get(whoami))
}

async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<serde_json::Value>> {
    let s = state.platform.session(authorization(&headers)).await?;
    Ok(Json(json!({"status": "success", "message": "valid session token", "appId": s.app_id, "email": s.email})))
}
