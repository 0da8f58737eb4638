//! HTTPS only for the app and panel APIs: on the plain listener, only the device routes
//! (`/v2/things…`, `/v2/utils/date?thingToken=…`, `/v2/health`) are served; everything else
//! answers 403 `HTTPS required` without reading the request further.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use thingline_core::Error;

use super::ApiError;
use crate::net::ConnInfo;

pub async fn https_only(req: Request, next: Next) -> Response {
    let tls = req.extensions().get::<ConnInfo>().is_none_or(|c| c.tls);
    if tls || allowed_on_plain(req.uri()) {
        return next.run(req).await;
    }
    ApiError(Error::Forbidden("HTTPS required".into())).into_response()
}

fn allowed_on_plain(uri: &axum::http::Uri) -> bool {
    let path = uri.path();
    if path == "/v2/health" || path == "/v2/health/ready" || path == "/v2/things" || path.starts_with("/v2/things/") {
        return true;
    }
    path == "/v2/utils/date"
        && uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("thingToken=") && kv.len() > "thingToken=".len()))
}
