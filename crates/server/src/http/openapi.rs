//! The OpenAPI 3.1 document of the HTTP API and the interactive reference.
//!
//! The document is made from the code: every route of the API is registered through
//! `utoipa_axum::routes!` from its handler's `#[utoipa::path]` annotation (see each area's
//! `router()`), so a route cannot exist without its operation, nor an operation without its route.
//! This module adds what is common (info, tags, the auth schemes, the error envelope and the
//! reusable error answers), serves the document at `GET /v2/openapi.json` and Swagger UI at
//! `/docs` (its files are vendored in the binary: no internet needed), and gives
//! `thingline openapi` the same document without a server.

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;
use super::schemas;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/v2/openapi.json";
/// Where the interactive reference is served.
pub const REFERENCE_PATH: &str = "/docs";

/// The security scheme names used by the operations.
pub const SESSION_TOKEN: &str = "sessionToken";
pub const PANEL_TOKEN: &str = "panelToken";
pub const PANEL_COOKIE: &str = "panelCookie";

/// The common part of the document; the operations come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Thingline API",
        description = "The HTTP API of Thingline, wire-compatible with the thethings.iO API v2.\n\n\
            * **Thing API** (`/v2/things/{thingToken}…`): what device firmware uses. The thing's \
            token is in the path; no other authentication. Also served on the plain device \
            listener when one is configured.\n\
            * **App API** (`/v2/register`, `/v2/login`, `/v2/me…`, `/v2/classes…`): an app's users, \
            authenticated with a session token in `Authorization` (bare or `Bearer`).\n\
            * **Panel API** (`/v2/panel…`): the operator's, with a panel token in `Authorization`, \
            or the web panel's cookie plus `X-CSRF-Token` for changes.\n\n\
            Every error is the thethings.iO envelope `{\"status\":\"error\",\"code\":…,\"message\":…}`. \
            Subscriptions (`subscribe=true`, `GET /v2/things/{thingToken}`) answer a chunked stream of \
            JSON documents, `{}` after each idle `keepAlive`; the document describes their first chunk. \
            Realtime over Socket.IO, MQTT and CoAP is described in the project's docs.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "thing", description = "The Thing API: activation, writes, reads, the thing stream."),
        (name = "app-auth", description = "App users: register, login, logout."),
        (name = "app", description = "The App API: linked things, resources, grants, settings, subscriptions."),
        (name = "classes", description = "App objects in collections (`me`: the user's own; `app`: shared)."),
        (name = "panel", description = "The operator's panel API: products, activation codes, things, apps."),
        (name = "health", description = "Liveness, readiness, the server's clock."),
    ),
    components(
        schemas(schemas::ErrorEnvelope),
        responses(
            schemas::BadRequest,
            schemas::Unauthorized,
            schemas::Forbidden,
            schemas::NotFound,
            schemas::Conflict,
            schemas::RequestTimeout,
            schemas::PayloadTooLarge,
            schemas::TooManyRequests,
            schemas::InsufficientStorage,
            schemas::Unavailable,
        ),
    ),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

/// The auth schemes: tokens in `Authorization`, and the web panel's cookie.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else { return };
        let header = |description: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("Authorization", description)))
        };
        components.add_security_scheme(
            SESSION_TOKEN,
            header("An app user's session token (from `/v2/register` or `/v2/login`), bare or as `Bearer <token>`."),
        );
        components.add_security_scheme(
            PANEL_TOKEN,
            header("A panel token (from `/v2/panel/login`), bare or as `Bearer <token>`."),
        );
        components.add_security_scheme(
            PANEL_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::panel_session::COOKIE,
                "The web panel's session cookie (set by `POST /v2/panel/session`); a change also needs \
                 `X-CSRF-Token` with the session's `csrf`.",
            ))),
        );
    }
}

/// The whole document: the common part with every area's operations.
pub fn document() -> utoipa::openapi::OpenApi {
    super::api_routes().split_for_parts().1
}

/// `GET /v2/openapi.json` and Swagger UI at `/docs`, with a content security policy that lets
/// Swagger UI's own files (and only them) run.
pub fn router(doc: utoipa::openapi::OpenApi) -> Router<AppState> {
    let ui: Router<AppState> = SwaggerUi::new(REFERENCE_PATH).url(DOCUMENT_PATH, doc).into();
    ui.layer(SetResponseHeaderLayer::overriding(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    ))
    .layer(SetResponseHeaderLayer::overriding(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
    .layer(SetResponseHeaderLayer::overriding(X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
    .layer(SetResponseHeaderLayer::overriding(REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_an_id_a_tag_and_documented_errors() {
        let doc = document();
        let json = serde_json::to_value(&doc).expect("serializable");
        assert_eq!(json["openapi"], "3.1.0");
        let paths = json["paths"].as_object().expect("paths");
        assert!(paths.len() >= 39, "only {} paths", paths.len());
        let mut ids = std::collections::HashSet::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let what = format!("{method} {path}");
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{what}: no operationId"));
                assert!(ids.insert(id.to_owned()), "{what}: operationId {id} twice");
                assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{what}: no tag");
                assert!(op["summary"].is_string(), "{what}: no summary");
                let responses = op["responses"].as_object().expect("responses");
                assert!(responses.keys().any(|s| s.starts_with('2')), "{what}: no success answer");
                let health = path.starts_with("/v2/health");
                assert!(health || responses.keys().any(|s| s.starts_with('4')), "{what}: no error answer");
                let path_params = path.matches('{').count();
                let declared =
                    op["parameters"].as_array().map_or(0, |ps| ps.iter().filter(|p| p["in"] == "path").count());
                assert_eq!(declared, path_params, "{what}: path parameters not all declared");
            }
        }
    }
}
