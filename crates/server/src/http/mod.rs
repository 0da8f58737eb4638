//! The HTTP adapter: one router for the thing, app and panel APIs and realtime, built from one
//! `router()` per area. Handlers parse, authenticate, call the platform, and render; the
//! [`error::ApiError`] mapping to the thethings.iO envelope happens once.

mod app_auth;
pub mod body;
mod classes;
mod date;
pub mod error;
pub mod extract;
mod guard;
mod health;
mod me;
mod panel;
mod panel_users;
mod stream;
mod things;

use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;

use crate::platform::Platform;
pub use error::{ApiError, ApiResult};

/// A JSON response whose body was rendered by hand (value items are spliced in verbatim).
pub(crate) fn json_text(status: axum::http::StatusCode, text: String) -> axum::response::Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// What every handler gets: the platform. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub platform: Arc<Platform>,
}

/// The whole HTTP API. The same router serves the HTTPS and the plain listener; on plain HTTP
/// the guard lets through only what devices need.
pub fn router(platform: Arc<Platform>) -> Router {
    let realtime = crate::realtime::layer(Arc::clone(&platform));
    let state = AppState { platform };
    Router::new()
        .merge(health::router())
        .merge(things::router())
        .merge(date::router())
        .merge(panel::router())
        .merge(panel_users::router())
        .merge(app_auth::router())
        .merge(me::router())
        .merge(classes::router())
        .fallback(|| async { ApiError(thingline_core::Error::not_found("Not found")).into_response() })
        // 405; axum adds the `Allow` header (the path's methods) to what this fallback returns.
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError(thingline_core::Error::MethodNotAllowed(format!("{method} is not allowed on this resource")))
                .into_response()
        })
        // Socket.IO (`/socket.io/`, namespace `/v2`) sits inside the HTTPS-only guard.
        .layer(realtime)
        // Before Socket.IO sees an upgrade request: it keeps copies, not hyper's read buffer.
        .layer(axum::middleware::map_request(crate::realtime::detach_upgrade_request))
        .layer(axum::middleware::from_fn(guard::https_only))
        .with_state(state)
}
