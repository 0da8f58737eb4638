//! App sessions: who is calling the App API. Tokens are random (256 bits), handed out once and
//! stored only as their SHA-256 digest; each expires after its `expirationDate`.
//!
//! Token → session lookups are answered from memory ([`SessionCache`]): a session is cached when it
//! is issued, and the store is read only for a token first used after a start (or after an
//! invalidation). Logout, password changes and app changes remove entries and tell the user's live
//! subscriptions, which re-validate their session by its digest; a generation counter keeps a fill
//! that raced with a removal out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use thingline_bus::Invalidation;
use thingline_core::ids::{new_secret_token, token_digest};
use thingline_core::time::now_ms;
use thingline_core::{Error, Result};

use super::Platform;
use super::auth::bare_token;

/// An authenticated app user's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The app user (users are scoped per app).
    pub user_id: i64,
    pub app_id: String,
    pub email: String,
    /// Digest of the session token (what the store keys sessions by).
    pub token_digest: String,
    /// When the session ends, ms since the epoch.
    pub expires_ms: i64,
}

/// Sessions cached at most before the cache is cleared and refills on demand.
const MAX_CACHED_SESSIONS: usize = 500_000;

/// Token digest → live session.
#[derive(Default)]
pub(crate) struct SessionCache {
    by_digest: RwLock<HashMap<String, Arc<Session>>>,
    generation: AtomicU64,
}

fn invalid() -> Error {
    Error::Unauthorized("Invalid session token".into())
}

impl SessionCache {
    /// Caches a session unless an invalidation happened since `generation` was read (the fill
    /// could be stale).
    fn insert(&self, generation: u64, session: &Arc<Session>) {
        let mut map = self.by_digest.write();
        if self.generation.load(Ordering::Acquire) == generation {
            if map.len() >= MAX_CACHED_SESSIONS {
                map.clear();
            }
            map.insert(session.token_digest.clone(), Arc::clone(session));
        }
    }
}

impl Platform {
    /// The session of an `Authorization` header (raw token or `Bearer <token>`); 401
    /// `Invalid session token` when missing, unknown, expired or logged out.
    pub async fn session(&self, authorization: Option<&str>) -> Result<Arc<Session>> {
        let token = bare_token(authorization).ok_or_else(invalid)?;
        self.session_by_digest(&token_digest(token)).await
    }

    /// The live session of a token digest; 401 when it is unknown, expired, logged out, or its
    /// app is gone. Live subscriptions re-validate their session with it.
    pub async fn session_by_digest(&self, digest: &str) -> Result<Arc<Session>> {
        let now = now_ms();
        let cache = &self.app_api.sessions;
        // Clustered, a logout on another node must be a 401 here at once: the store is asked.
        let hit = if self.clustered { None } else { cache.by_digest.read().get(digest).cloned() };
        if let Some(s) = hit {
            if s.expires_ms > now {
                return Ok(s);
            }
            cache.by_digest.write().remove(digest);
            return Err(invalid());
        }
        let generation = cache.generation.load(Ordering::Acquire);
        let rec = self.store.app_session(digest, now).await?.ok_or_else(invalid)?;
        if self.app_view(&rec.app_id).await?.is_none() {
            return Err(invalid());
        }
        let session = Arc::new(Session {
            user_id: rec.user_id,
            app_id: rec.app_id,
            email: rec.email,
            token_digest: digest.to_owned(),
            expires_ms: rec.expires_ms,
        });
        cache.insert(generation, &session);
        Ok(session)
    }

    /// Issues a new session token for a user; returns the token and its session (cached: the
    /// first call with the new token does not read the store).
    pub(crate) async fn new_session(
        &self,
        user_id: i64,
        app_id: &str,
        email: &str,
        lifetime_s: i64,
    ) -> Result<(String, Arc<Session>)> {
        let token = new_secret_token();
        let digest = token_digest(&token);
        let now = now_ms();
        let expires_ms = now.saturating_add(lifetime_s.saturating_mul(1000));
        let cache = &self.app_api.sessions;
        let generation = cache.generation.load(Ordering::Acquire);
        self.store.create_app_session(user_id, &digest, expires_ms, now).await?;
        let session = Arc::new(Session {
            user_id,
            app_id: app_id.to_owned(),
            email: email.to_owned(),
            token_digest: digest,
            expires_ms,
        });
        cache.insert(generation, &session);
        Ok((token, session))
    }

    /// Ends a session (logout). Its token stops working at once, and live subscriptions that hang
    /// on it end (401).
    pub async fn end_session(&self, session: &Session) -> Result<()> {
        self.store.delete_app_session(&session.token_digest).await?;
        self.invalidate(Invalidation::Session { user_id: session.user_id, digest: session.token_digest.clone() });
        Ok(())
    }

    /// Removes one cached session (it is re-read from the store on next use).
    pub(crate) fn forget_session(&self, digest: &str) {
        let cache = &self.app_api.sessions;
        cache.generation.fetch_add(1, Ordering::AcqRel);
        cache.by_digest.write().remove(digest);
    }

    /// Empties the session cache.
    pub(crate) fn forget_all_sessions(&self) {
        let cache = &self.app_api.sessions;
        cache.generation.fetch_add(1, Ordering::AcqRel);
        cache.by_digest.write().clear();
    }

    /// Removes cached sessions matching `pred` (they are re-read from the store on next use);
    /// returns their distinct users.
    pub(crate) fn forget_sessions_where(&self, pred: impl Fn(&Session) -> bool) -> Vec<i64> {
        let cache = &self.app_api.sessions;
        cache.generation.fetch_add(1, Ordering::AcqRel);
        let mut users = Vec::new();
        cache.by_digest.write().retain(|_, s| {
            if pred(s) {
                users.push(s.user_id);
                false
            } else {
                true
            }
        });
        users.sort_unstable();
        users.dedup();
        users
    }
}
