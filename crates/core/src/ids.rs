//! Identifiers and secrets: thing tokens, session and panel tokens, public ids, and the hashing
//! that lets the store keep only a digest of a bearer token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `n` random bytes from the OS-seeded CSPRNG, URL-safe base64 without padding.
pub fn random_b64(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new thingToken: 32 random bytes, 43 characters of URL-safe base64 (firmware hard-codes 43).
pub fn new_thing_token() -> String {
    random_b64(32)
}

/// A new session or panel token: 32 random bytes (256 bits), 43 characters.
pub fn new_secret_token() -> String {
    random_b64(32)
}

/// A new public id (thingId, productId, appId, object `_id`): 16 random bytes, 22 characters.
pub fn new_id() -> String {
    random_b64(16)
}

/// A new activation code: 12 random bytes, 16 characters, easy to print on a label.
pub fn new_activation_code() -> String {
    random_b64(12)
}

/// The digest under which a bearer token is stored; the token itself is never stored.
pub fn token_digest(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    URL_SAFE_NO_PAD.encode(d)
}

/// The CSRF token of a panel session: a digest of the session token under its own label, so it
/// is neither the token nor the stored digest, and changes with every sign-in. The panel page
/// learns it from the session answers (same-origin only) and sends it back in `X-CSRF-Token`.
pub fn csrf_token(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"thingline panel csrf\0");
    h.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `s` has the shape of a thingToken (43 URL-safe base64 characters). Cheap pre-check
/// before any lookup.
pub fn looks_like_thing_token(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_tokens_are_43_url_safe_chars_and_unique() {
        let a = new_thing_token();
        let b = new_thing_token();
        assert_eq!(a.len(), 43);
        assert!(looks_like_thing_token(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn digest_is_stable_and_distinct() {
        assert_eq!(token_digest("abc"), token_digest("abc"));
        assert_ne!(token_digest("abc"), token_digest("abd"));
    }

    #[test]
    fn csrf_token_is_per_session_and_not_the_stored_digest() {
        let (a, b) = (new_secret_token(), new_secret_token());
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_ne!(csrf_token(&a), token_digest(&a));
        assert_ne!(csrf_token(&a), a);
    }

    #[test]
    fn constant_time_eq_compares_whole_secrets() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
