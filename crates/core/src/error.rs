//! The one error type of the platform. Every layer returns it; the HTTP adapter maps it once to the
//! thethings.iO envelope `{"status":"error","code":<http status>,"message":"…"}`, and the other
//! protocols map the same `code` to their own status (CoAP 4.xx, MQTT drop).

use std::fmt;

/// A platform error: a client-facing kind with a message, or an internal failure whose details are
/// logged but never shown to the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is malformed; the message says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing there (or nothing the caller may see).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406: no representation the client accepts (CoAP Accept).
    #[error("{0}")]
    NotAcceptable(String),
    /// 408: the client did not send its request (body) in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 409: conflicts with what is stored (duplicate email, existing `_id`, used code).
    #[error("{0}")]
    Conflict(String),
    /// 413: body or value over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a body in a format the server does not read (CoAP Content-Format).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: rate limited.
    #[error("{0}")]
    TooManyRequests(String),
    /// 507: the store is out of space; nothing of the request was stored. The client may retry
    /// once the operator has freed space.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 503: shutting down or a dependency is unavailable; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an infrastructure failure. Logged with details; the client sees a generic text.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status this error is reported with (also the envelope's `code`).
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::NotAcceptable(_) => 406,
            Error::RequestTimeout(_) => 408,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::TooManyRequests(_) => 429,
            Error::Unavailable(_) => 503,
            Error::InsufficientStorage(_) => 507,
            Error::Internal(_) => 500,
        }
    }

    /// The message shown to the client. Internal details never leave the server.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "Internal server error".to_owned(),
            other => other.to_string(),
        }
    }

    pub fn bad_request(msg: impl fmt::Display) -> Self {
        Error::BadRequest(msg.to_string())
    }
    pub fn not_found(msg: impl fmt::Display) -> Self {
        Error::NotFound(msg.to_string())
    }
    pub fn internal(msg: impl fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }

    /// 404 for a resource key the caller may not see or that was never written: both read the
    /// same (contract.md), on every protocol.
    pub fn resource_not_found(key: &str) -> Self {
        Error::NotFound(format!("Resource {key} not found"))
    }

    /// 404 for a thing that does not exist or that the caller does not reach.
    pub fn thing_not_found() -> Self {
        Error::NotFound("Thing not found".to_owned())
    }

    /// The JSON envelope for this error.
    pub fn envelope(&self) -> serde_json::Value {
        serde_json::json!({
            "status": "error",
            "code": self.status(),
            "message": self.public_message(),
        })
    }
}
