//! The web panel's files (`crates/server/ui/`, embedded by `build.rs`): `/` is its page, every
//! other file is `/ui/<path>`. Each is sent with the panel's security headers (a strict
//! Content-Security-Policy: scripts, styles and connections from this origin only, no inline
//! script), a strong `ETag` (304 when the browser has it) and gzip when the browser takes it,
//! compressed once at first use. What the page does is the panel API's business.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use thingline_core::Error;

use super::extract::Path;
use super::{ApiError, AppState};

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The policy of every panel response: nothing from another origin, no inline script or style
/// element, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Files not worth compressing (already compressed, or tiny).
const MIN_GZIP: usize = 512;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/index.html", get(index)).route("/ui/{*path}", get(asset))
}

struct Asset {
    mime: &'static str,
    raw: Bytes,
    gzip: Option<Bytes>,
    etag: String,
}

fn assets() -> &'static HashMap<&'static str, Asset> {
    static ASSETS: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        UI_ASSETS
            .iter()
            .map(|(path, bytes)| {
                let digest = Sha256::digest(bytes);
                let etag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                let mime = mime_of(path);
                let gzip = (bytes.len() >= MIN_GZIP && compressible(mime)).then(|| gzip(bytes)).flatten();
                (*path, Asset { mime, raw: Bytes::from_static(bytes), gzip, etag })
            })
            .collect()
    })
}

fn gzip(bytes: &[u8]) -> Option<Bytes> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 3), flate2::Compression::best());
    enc.write_all(bytes).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < bytes.len()).then(|| Bytes::from(out))
}

fn mime_of(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "webmanifest") => "application/json",
        Some("txt" | "md" | "LICENSE") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(mime: &str) -> bool {
    mime.starts_with("text/") || mime.starts_with("application/json") || mime == "image/svg+xml"
}

/// The headers every panel page and file carries.
pub fn security_headers(headers: &mut HeaderMap) {
    let fixed: [(&str, &'static str); 6] = [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let refused = parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("q=0"));
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = assets().get(path) else {
        return ApiError(Error::not_found("Not found")).into_response();
    };
    let gz = asset.gzip.as_ref().filter(|_| accepts_gzip(headers));
    // One strong validator per representation.
    let etag = if gz.is_some() { format!("\"{}-gz\"", asset.etag) } else { format!("\"{}\"", asset.etag) };
    let fresh = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == etag || t.trim() == "*");
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        (StatusCode::OK, Body::from(gz.unwrap_or(&asset.raw).clone()))
    };
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    security_headers(h);
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    // Revalidated every time: a new binary's files are picked up at once, unchanged ones cost a 304.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    if gz.is_some() && status == StatusCode::OK {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    res
}
