//! The panel's view of the App API (`/v2/panel/apps/{appId}/…`): the users of an app (list,
//! delete) and the app's outbox of notification emails (kept when no SMTP server is configured,
//! or when sending failed). Authenticated with a panel token; HTTPS only.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde_json::{Value, json};
use thingline_core::Error;
use thingline_core::query::parse_limit;
use thingline_core::time::format_datetime;

use super::extract::{Path, Query};
use super::panel_session::Panel;
use super::{ApiResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/panel/apps/{id}/users", get(list_users))
        .route("/v2/panel/apps/{id}/users/{user_id}", delete(delete_user))
        .route("/v2/panel/apps/{id}/outbox", get(outbox))
}

async fn list_users(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let owner = panel.user;
    let users: Vec<Value> = state
        .platform
        .app_user_rows(&owner, &id)
        .await?
        .into_iter()
        .map(|row| {
            let u = &row.summary.user;
            json!({
                "userId": u.id,
                "email": u.email,
                "createdAt": format_datetime(u.created_ms),
                "lastLogin": row.summary.last_login_ms.map(format_datetime),
                "linkedThings": row.summary.linked_things,
                "roles": row.roles,
            })
        })
        .collect();
    Ok(Json(json!({"status": "success", "users": users})).into_response())
}

async fn delete_user(
    State(state): State<AppState>,
    panel: Panel,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let owner = panel.user;
    let user_id: i64 = user_id.parse().map_err(|_| Error::not_found("User not found"))?;
    state.platform.delete_app_user(&owner, &id, user_id).await?;
    Ok(Json(json!({"status": "success", "message": "deleted"})).into_response())
}

async fn outbox(State(state): State<AppState>, panel: Panel, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let owner = panel.user;
    let app = state.platform.owned_app(&owner, &id).await?;
    let limit = match q.get("limit") {
        None => 100,
        some => parse_limit(some)?,
    };
    let mails: Vec<Value> = state
        .platform
        .outbox(&app.id, limit)
        .await?
        .iter()
        .map(|m| {
            json!({"id": m.id, "to": m.to, "subject": m.subject, "body": m.body, "createdAt": format_datetime(m.created_ms)})
        })
        .collect();
    Ok(Json(json!({"status": "success", "mails": mails})).into_response())
}
