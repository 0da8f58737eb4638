//! The HTTP adapter: one router for the thing, app and panel APIs and realtime, built from one
//! `router()` per area. Handlers parse, authenticate, call the platform, and render; the
//! [`error::ApiError`] mapping to the thethings.iO envelope happens once.

mod app_auth;
mod body;
mod classes;
mod date;
mod error;
mod extract;
mod guard;
mod health;
mod me;
pub mod observe;
pub mod openapi;
mod panel;
mod panel_live;
mod panel_session;
mod panel_users;
mod schemas;
mod stream;
mod things;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::platform::Platform;
use error::{ApiError, ApiResult};

/// A JSON response whose body was rendered by hand (value items are spliced in verbatim).
pub(crate) fn json_text(status: axum::http::StatusCode, text: String) -> axum::response::Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// What every handler gets: the platform. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub platform: Arc<Platform>,
}

/// Every documented route of the API, with its OpenAPI operation (see [`openapi`]): the
/// routes and the document are made from the same `#[utoipa::path]` annotations.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::router())
        .merge(things::router())
        .merge(date::router())
        // The panel API's answers are gzipped for clients that ask (a chart's series, a page of
        // things); its live stream and the device and app APIs are not (streams must flow).
        .merge(panel::router().merge(panel_users::router()).layer(tower_http::compression::CompressionLayer::new()))
        .merge(panel_session::router())
        .merge(panel_live::router())
        .merge(app_auth::router())
        .merge(me::router())
        .merge(classes::router())
}

/// The whole HTTP API: the documented routes, the document and its reference, the web panel's
/// files, with the envelope for unknown routes. The server wraps it with the Socket.IO layer and
/// then [`https_only`].
pub fn router(platform: Arc<Platform>) -> Router {
    let state = AppState { platform };
    let (api, doc) = api_routes().split_for_parts();
    api.merge(openapi::router(doc))
        .merge(classes::nested_router())
        .merge(ui::router())
        .fallback(|| async { ApiError(thingline_core::Error::not_found("Not found")).into_response() })
        // 405; axum adds the `Allow` header (the path's methods) to what this fallback returns.
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError(thingline_core::Error::MethodNotAllowed(format!("{method} is not allowed on this resource")))
                .into_response()
        })
        .with_state(state)
}

/// The guard of the listeners: the same router serves the HTTPS and the plain listener; on plain
/// HTTP only what devices need passes (everything else: 403 `HTTPS required`).
pub fn https_only(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(guard::https_only))
}
