//! Request bodies: read within the configured limit (413 beyond it, chunked bodies included) and
//! the body timeout (408 when the body has not arrived in full in time, see
//! [`crate::net::TimedBody`]), JSON or `application/x-www-form-urlencoded` (bracket nesting turned
//! into JSON, values as strings), nested at most [`thingline_core::json::MAX_DEPTH`] levels deep,
//! with 400 errors that say what and where.

use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;
use thingline_core::json::BoundedJson;
use thingline_core::{Error, Result};

use super::{ApiError, AppState};
use crate::net::BodyTimeout;
use crate::platform::json_error;

/// A request body, read in full, and the JSON text it stands for.
pub struct Body {
    /// JSON text: the body itself, or the JSON made from a form body; its nesting is checked, so
    /// `parse_write_items` does not scan it again.
    pub json: BoundedJson,
}

impl Body {
    /// Deserializes the JSON text; a wrong shape is a 400 naming the problem.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.json).map_err(|e| json_error(&e))
    }
}

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.platform.limits().body_limit;
        let too_large = || ApiError(Error::PayloadTooLarge(format!("Request body is larger than {limit} bytes")));
        let declared =
            req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let form =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
                ct.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
            });
        let bytes: Bytes = match Limited::new(req.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    return Err(too_large());
                }
                if let Some(timeout) = find_cause::<BodyTimeout>(&*e) {
                    let secs = timeout.0.as_secs();
                    return Err(ApiError(Error::RequestTimeout(format!(
                        "The request body did not arrive within {secs} s; send it in full right after the headers"
                    ))));
                }
                return Err(ApiError(Error::bad_request("Could not read the request body")));
            }
        };
        // curl -d and some firmware label JSON as a form: a body that starts like JSON is JSON.
        let looks_json = bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{' || *b == b'[');
        let text = if form && !looks_json {
            thingline_core::form::parse_form(&bytes)?.to_string()
        } else {
            let text = std::str::from_utf8(&bytes).map_err(|_| Error::bad_request("Request body is not UTF-8"))?;
            // A stray newline (or nothing at all) around the JSON is common with small devices.
            let trimmed = text.trim();
            if trimmed.is_empty() {
                return Err(ApiError(Error::bad_request("Request body is empty; expected JSON")));
            }
            trimmed.to_owned()
        };
        Ok(Body { json: BoundedJson::new(text)? })
    }
}

/// `e` or the first error among its sources that is a `T`.
fn find_cause<'e, T: std::error::Error + 'static>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}
