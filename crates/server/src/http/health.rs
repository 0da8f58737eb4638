//! `GET /v2/health` (liveness): 200 `{"status":"ok"}` once the listeners and the store are up
//! (the router only serves after both); `GET /v2/health/ready` (readiness): 200 with the store's
//! and the bus's state when this node should get traffic, 503 with the same details (in the
//! error envelope) when the store does not answer, the bus is away or the node is stopping; and `GET /v2` (also `/v2/`): 401 `Invalid session token` without a
//! valid session token as on thethings.iO; with one, who the session belongs to.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::authorization;
use super::{ApiResult, AppState, schemas};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(alive)).routes(routes!(ready)).routes(routes!(whoami))
}

/// Liveness.
#[utoipa::path(get, path = "/v2/health", tag = "health", operation_id = "health",
    responses((status = 200, description = "The node is up.", body = schemas::Alive)))]
async fn alive() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: whether this node should get traffic.
#[utoipa::path(get, path = "/v2/health/ready", tag = "health", operation_id = "ready",
    responses(
        (status = 200, description = "Ready; the store's and the bus's state.", body = schemas::Ready),
        (status = 503, description = "Not ready (store away, bus away, stopping), with the same details.", body = schemas::NotReady),
    ))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let r = state.platform.readiness().await;
    let details = json!({"store": r.store, "bus": r.bus, "stopping": r.stopping});
    if r.ready {
        (StatusCode::OK, Json(json!({"status": "ok", "ready": true, "details": details})))
    } else {
        let why = if r.stopping {
            "stopping"
        } else if !r.store.ok {
            "the store is not available"
        } else {
            "the bus is not connected"
        };
        let body = json!({"status": "error", "code": 503, "message": format!("Not ready: {why}"), "details": details});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}

/// Who a session token belongs to (`/v2/` too).
#[utoipa::path(get, path = "/v2", tag = "app-auth", operation_id = "whoami",
    security(("sessionToken" = [])),
    responses(
        (status = 200, description = "The session's app and email.", body = schemas::WhoAmI),
        (status = 401, response = schemas::Unauthorized),
    ))]
async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<serde_json::Value>> {
    let s = state.platform.session(authorization(&headers)).await?;
    Ok(Json(json!({"status": "success", "message": "valid session token", "appId": s.app_id, "email": s.email})))
}
