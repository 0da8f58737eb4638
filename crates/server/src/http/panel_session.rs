//! Who is calling the panel API, and the web panel's sign-in.
//!
//! A panel request is authenticated by `Authorization: <panel token>` (API clients) or by the
//! web panel's cookie [`COOKIE`] (`Secure; HttpOnly; SameSite=Strict`, set by
//! `POST /v2/panel/session`). A browser sends the cookie by itself, so a request authenticated by
//! it that changes something (any method but GET/HEAD) must also prove it comes from the panel's
//! own page: the `X-CSRF-Token` header holding [`csrf_token`] of the session (which only a
//! same-origin page can read, from the session answers), and no `Origin` header of another origin.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use thingline_core::Error;
use thingline_core::ids::{constant_time_eq, csrf_token};
use thingline_core::model::PanelUser;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::Body;
use super::extract::{ClientIp, authorization};
use super::{ApiError, ApiResult, AppState, schemas};

/// The web panel's session cookie. `__Host-`: the browser keeps it only when it is `Secure`,
/// for `Path=/`, without a `Domain`, so no other host can set or read it.
pub const COOKIE: &str = "__Host-thingline_panel";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The cookie's lifetime: the panel session's (7 days).
const COOKIE_MAX_AGE_S: i64 = 7 * 24 * 3600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sign_in, current, sign_out))
}

/// The panel account of a request, and the token it came with.
pub struct Panel {
    pub user: PanelUser,
    pub token: String,
}

impl FromRequestParts<AppState> for Panel {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        if let Some(auth) = authorization(headers) {
            let user = state.platform.panel_user(Some(auth)).await?;
            let token = crate::platform::bare_token(Some(auth)).unwrap_or_default().to_owned();
            return Ok(Panel { user, token });
        }
        let Some(token) = cookie(headers, COOKIE) else {
            return Err(Error::Unauthorized("Invalid panel token".into()).into());
        };
        let user = state.platform.panel_user(Some(token)).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            check_csrf(headers, &parts.uri, token)?;
        }
        Ok(Panel { user, token: token.to_owned() })
    }
}

/// 403 unless a cookie-authenticated change carries the session's CSRF token and comes from
/// this origin.
fn check_csrf(headers: &HeaderMap, uri: &Uri, token: &str) -> Result<(), ApiError> {
    let sent = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    if !constant_time_eq(sent, csrf_token(token).as_bytes()) || !same_origin(headers, uri) {
        return Err(Error::Forbidden("CSRF token missing or invalid".into()).into());
    }
    Ok(())
}

/// Whether the request's `Origin` (when it has one) is this server as the browser reached it
/// (the `Host` header in HTTP/1.1, the `:authority` in HTTP/2).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let host =
        headers.get(HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str())).unwrap_or("");
    // Every `Origin` the request carries must be this server.
    headers.get_all(ORIGIN).iter().all(|origin| {
        origin.to_str().ok().and_then(|o| o.strip_prefix("https://")).is_some_and(|o| !host.is_empty() && o == host)
    })
}

/// The value of cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn set_cookie(value: &str, max_age_s: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; Max-Age={max_age_s}; Secure; HttpOnly; SameSite=Strict"))
        .ok()
}

fn session_answer(user: &PanelUser, token: &str) -> serde_json::Value {
    json!({"status": "success", "email": user.email, "csrf": csrf_token(token)})
}

#[derive(Deserialize)]
struct SignIn {
    email: Option<String>,
    password: Option<String>,
}

/// Signs the web panel in: the panel login (same accounts and limits), answered with the cookie.
#[utoipa::path(post, path = "/v2/panel/session", tag = "panel", operation_id = "panelSignIn",
    request_body(content = schemas::PanelLogin),
    responses(
        (status = 200, description = "Signed in; `Set-Cookie` carries the session.", body = schemas::PanelSession,
            headers(("Set-Cookie" = String, description = "`__Host-thingline_panel=…; Secure; HttpOnly; SameSite=Strict; Path=/`"))),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 401, description = "Wrong email or password.", body = schemas::ErrorEnvelope),
        (status = 403, description = "A sign-in from another origin.", body = schemas::ErrorEnvelope),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    // A sign-in from another site's page (login CSRF) is refused.
    if !same_origin(&headers, &uri) {
        return Err(Error::Forbidden("Cross-origin sign-in refused".into()).into());
    }
    let b: SignIn = body.parse()?;
    let (Some(email), Some(password)) = (b.email, b.password) else {
        return Err(Error::bad_request("email and password are required").into());
    };
    let token = state.platform.panel_login(&email, &password, ip).await?;
    let user = state.platform.panel_user(Some(&token)).await?;
    let mut res = Json(session_answer(&user, &token)).into_response();
    if let Some(c) = set_cookie(&token, COOKIE_MAX_AGE_S) {
        res.headers_mut().insert(SET_COOKIE, c);
    }
    Ok(res)
}

/// The web panel's current session: its account and CSRF token.
#[utoipa::path(get, path = "/v2/panel/session", tag = "panel", operation_id = "panelSession", security(("panelToken" = []), ("panelCookie" = [])),
    responses((status = 200, description = "The session.", body = schemas::PanelSession), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope),))]
async fn current(panel: Panel) -> ApiResult<Response> {
    Ok(Json(session_answer(&panel.user, &panel.token)).into_response())
}

/// Signs the web panel out and clears the cookie.
///
/// The session ends on every node, its live streams too.
#[utoipa::path(delete, path = "/v2/panel/session", tag = "panel", operation_id = "panelSignOut", security(("panelToken" = []), ("panelCookie" = [])),
    responses((status = 200, description = "Signed out; the cookie is cleared.", body = schemas::Done), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope),))]
async fn sign_out(State(state): State<AppState>, panel: Panel) -> ApiResult<Response> {
    state.platform.panel_logout(Some(&panel.token)).await?;
    let mut res = Json(json!({"status": "success", "message": "signed out"})).into_response();
    if let Some(c) = set_cookie("", 0) {
        res.headers_mut().insert(SET_COOKIE, c);
    }
    Ok(res)
}
