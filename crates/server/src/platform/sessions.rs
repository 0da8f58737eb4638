//! App sessions: who is calling the App API. (Issue #3 implements it.)

use std::sync::Arc;

use thingline_core::{Error, Result};

use super::Platform;

/// An authenticated app user's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The app user (users are scoped per app).
    pub user_id: i64,
    pub app_id: String,
    pub email: String,
    /// Digest of the session token (what the store keys sessions by).
    pub token_digest: String,
}

impl Platform {
    /// The session of an `Authorization` header (raw token or `Bearer <token>`); 401
    /// `Invalid session token` when missing, unknown, expired or logged out.
    pub async fn session(&self, authorization: Option<&str>) -> Result<Arc<Session>> {
        let _ = authorization;
        Err(Error::Unauthorized("Invalid session token".into()))
    }
}
