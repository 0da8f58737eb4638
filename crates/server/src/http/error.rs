//! The one mapping from platform errors (and extractor rejections) to HTTP responses: the
//! thethings.iO envelope `{"status":"error","code":<status>,"message":"…"}`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use thingline_core::Error;

/// A platform error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Error::Internal(detail) = &self.0 {
            tracing::error!(error = %detail, "internal error");
        }
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.0.envelope())).into_response();
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a late body may still come: the connection cannot be reused (HTTP/1.1
            // closes it after this response; HTTP/2 drops the header and resets only the stream).
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError(Error::bad_request(format!("Invalid path: {}", r.body_text())))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError(Error::bad_request(format!("Invalid query string: {}", r.body_text())))
    }
}
