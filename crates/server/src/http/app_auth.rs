//! App accounts over HTTPS: `POST /v2/register` (creates the user in the app and logs it in),
//! `POST /v2/login`, and logout (`DELETE /v2/me/session`, also `POST /v2/logout`). Bodies are
//! JSON or form-urlencoded with `email`, `password`, `app` (and optional `expirationDate`, seconds).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use thingline_core::Error;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::Body;
use super::extract::{ClientIp, authorization};
use super::{ApiResult, AppState, schemas};
use crate::platform::{LoginOutcome, session_lifetime};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(end_session))
}

#[derive(Deserialize)]
struct Credentials {
    email: Option<String>,
    password: Option<String>,
    #[serde(alias = "appId", alias = "appID")]
    app: Option<String>,
    #[serde(rename = "expirationDate")]
    expiration: Option<Value>,
}

struct Parsed {
    email: String,
    password: String,
    app: String,
    lifetime_s: i64,
}

fn parse(body: &Body) -> ApiResult<Parsed> {
    let c: Credentials = body.parse()?;
    let (Some(email), Some(password)) = (c.email, c.password) else {
        return Err(Error::bad_request("email and password are required").into());
    };
    let app = c.app.ok_or_else(|| Error::bad_request("app is required (the appID given in the panel)"))?;
    Ok(Parsed { email, password, app, lifetime_s: session_lifetime(c.expiration.as_ref())? })
}

async fn token_body(state: &AppState, out: &LoginOutcome) -> ApiResult<Value> {
    let roles = state.platform.roles(&out.session).await?;
    Ok(json!({"token": out.token, "expirationDate": out.expires_in, "roles": roles, "status": "success"}))
}

/// Creates a user of the app and logs it in.
#[utoipa::path(post, path = "/v2/register", tag = "app-auth", operation_id = "register",
    request_body(content = schemas::Credentials, description = "JSON or form-urlencoded."),
    responses(
        (status = 201, description = "Created and logged in.", body = schemas::SessionAnswer),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 404, description = "No such app.", body = schemas::ErrorEnvelope),
        (status = 409, response = schemas::Conflict),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn register(State(state): State<AppState>, body: Body) -> ApiResult<Response> {
    let p = parse(&body)?;
    let out = state.platform.app_register(&p.app, &p.email, &p.password, p.lifetime_s).await?;
    let mut v = token_body(&state, &out).await?;
    v["message"] = json!("user created");
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// Logs a user of the app in.
#[utoipa::path(post, path = "/v2/login", tag = "app-auth", operation_id = "login",
    request_body(content = schemas::Credentials, description = "JSON or form-urlencoded."),
    responses(
        (status = 200, description = "Logged in.", body = schemas::SessionAnswer),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 401, description = "Wrong email or password.", body = schemas::ErrorEnvelope),
        (status = 404, description = "No such app.", body = schemas::ErrorEnvelope),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn login(State(state): State<AppState>, ClientIp(ip): ClientIp, body: Body) -> ApiResult<Response> {
    let p = parse(&body)?;
    let out = state.platform.app_login(&p.app, &p.email, &p.password, p.lifetime_s, ip).await?;
    let mut v = token_body(&state, &out).await?;
    v["message"] = json!("logged in");
    Ok(Json(v).into_response())
}

/// Ends the session (its live subscriptions too).
#[utoipa::path(post, path = "/v2/logout", tag = "app-auth", operation_id = "logout",
    security(("sessionToken" = [])),
    responses(
        (status = 200, description = "Logged out.", body = schemas::Done),
        (status = 401, response = schemas::Unauthorized),
    ))]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let session = state.platform.session(authorization(&headers)).await?;
    state.platform.end_session(&session).await?;
    Ok(Json(json!({"status": "success", "message": "logged out"})).into_response())
}

/// Ends the session (the same as `POST /v2/logout`).
#[utoipa::path(delete, path = "/v2/me/session", tag = "app-auth", operation_id = "endSession",
    security(("sessionToken" = [])),
    responses(
        (status = 200, description = "Logged out.", body = schemas::Done),
        (status = 401, response = schemas::Unauthorized),
    ))]
async fn end_session(state: State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    logout(state, headers).await
}
