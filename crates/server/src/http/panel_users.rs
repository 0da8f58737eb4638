//! The panel's view of the App API (`/v2/panel/apps/{appId}/…`): the users of an app (list,
//! delete) and the app's outbox of notification emails (kept when no SMTP server is configured,
//! or when sending failed). Authenticated with a panel token; HTTPS only.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use thingline_core::Error;
use thingline_core::query::parse_limit;
use thingline_core::time::format_datetime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Path, Query};
use super::panel_session::Panel;
use super::{ApiResult, AppState, schemas};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_users)).routes(routes!(delete_user)).routes(routes!(outbox))
}

/// The users of an app, with their roles, linked things and last login.
#[utoipa::path(get, path = "/v2/panel/apps/{appId}/users", tag = "panel", operation_id = "listAppUsers", security(("panelToken" = []), ("panelCookie" = [])),
    params(("appId" = String, Path, description = "The app."),),
    responses((status = 200, description = "Users.", body = schemas::AppUserList), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// Deletes a user of an app (its sessions end).
#[utoipa::path(delete, path = "/v2/panel/apps/{appId}/users/{userId}", tag = "panel", operation_id = "deleteAppUser", security(("panelToken" = []), ("panelCookie" = [])),
    params(("appId" = String, Path, description = "The app."), ("userId" = String, Path, description = "The user's id.")),
    responses((status = 200, description = "Deleted.", body = schemas::Done), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// The app's kept notification mails (when no SMTP server is configured, or sending failed).
#[utoipa::path(get, path = "/v2/panel/apps/{appId}/outbox", tag = "panel", operation_id = "appOutbox", security(("panelToken" = []), ("panelCookie" = [])),
    params(("appId" = String, Path, description = "The app."), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Newest first (default 100; 1 to 1,000).")),
    responses((status = 200, description = "Mails.", body = schemas::Outbox), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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
