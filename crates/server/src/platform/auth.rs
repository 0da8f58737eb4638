//! Passwords (Argon2id, PHC strings, hashed and verified off the async runtime) and panel sessions.

use std::net::IpAddr;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use thingline_core::email::normalize_email;
use thingline_core::ids::{new_secret_token, token_digest};
use thingline_core::model::PanelUser;
use thingline_core::time::now_ms;
use thingline_core::{Error, Result};

use super::Platform;
use super::limiter::LimitKey;

/// How long a panel session lives.
const PANEL_SESSION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Longest accepted password (Argon2 cost does not depend on it, but bodies should stay small).
const MAX_PASSWORD_LEN: usize = 1024;

/// Runs an Argon2 job on the blocking pool, at most one per CPU at a time. Each job holds
/// ~19 MiB for ~20-50 ms: unbounded, a burst of registrations would spread over hundreds of
/// blocking threads, each keeping its allocator arena (hundreds of MiB resident), and starve the
/// CPU. Callers beyond the cap wait their turn.
async fn argon2_job<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map(usize::from).unwrap_or(2))
    });
    let _permit = slots.acquire().await.map_err(|_| Error::Unavailable("shutting down".into()))?;
    tokio::task::spawn_blocking(job).await.map_err(|e| Error::internal(format!("argon2 task: {e}")))
}

/// Hashes a password with Argon2id on the blocking pool; returns the PHC string.
pub async fn hash_password(password: &str) -> Result<String> {
    if password.len() < 8 || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::bad_request("password must be 8 to 1024 characters"));
    }
    let password = password.to_owned();
    argon2_job(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format!("argon2: {e}")))
    })
    .await?
}

/// Verifies a password against a PHC string on the blocking pool. `None` runs a dummy
/// verification so that unknown accounts take as long as wrong passwords.
pub async fn verify_password(password: &str, phc: Option<&str>) -> Result<bool> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = phc.map(str::to_owned);
    let password = password.to_owned();
    argon2_job(move || {
        let (phc, known) = match phc {
            Some(p) => (p, true),
            None => {
                let dummy = DUMMY.get_or_init(|| {
                    Argon2::default()
                        .hash_password(b"dummy password for timing")
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                });
                (dummy.clone(), false)
            }
        };
        // Always run the verification, so an unknown account costs as much as a wrong password.
        let verified = Argon2::default().verify_password(password.as_bytes(), phc.as_str()).is_ok();
        verified && known && phc.starts_with("$argon2")
    })
    .await
}

/// The account key a login attempt is counted against: the normalized email, or (for an email
/// that is not a valid address, and so names no account) a fixed-size digest of what was sent,
/// so that the limiter never holds client text of unbounded length.
pub(crate) fn login_account_key(email: &str) -> (Option<String>, String) {
    match normalize_email(email) {
        Ok(norm) => (Some(norm.clone()), norm),
        Err(_) => (None, format!("invalid:{}", token_digest(email.trim()))),
    }
}

impl Platform {
    /// Creates a panel account (used at start from the environment and by `thingline panel-user add`).
    pub async fn create_panel_user(&self, email: &str, password: &str) -> Result<PanelUser> {
        let email = normalize_email(email)?;
        let hash = hash_password(password).await?;
        self.store.create_panel_user(&email, &hash).await
    }

    /// Creates the bootstrap panel account unless one with that email exists.
    pub async fn ensure_panel_user(&self, email: &str, password: &str) -> Result<bool> {
        let norm = normalize_email(email)?;
        if self.store.panel_user_by_email(&norm).await?.is_some() {
            return Ok(false);
        }
        match self.create_panel_user(&norm, password).await {
            Ok(_) => Ok(true),
            Err(Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Panel login: a new session token, or 401; 429 after too many failures. The attempt is
    /// reserved (per email and per client address) before the password is verified, and released
    /// only when it is right. An email that is not a valid address fails like a wrong password.
    pub async fn panel_login(&self, email: &str, password: &str, client: IpAddr) -> Result<String> {
        let (norm, account) = login_account_key(email);
        let attempt = self.panel_logins.reserve(&[LimitKey::Account(&account), LimitKey::Addr(client)])?;
        let user = match &norm {
            Some(norm) => self.store.panel_user_by_email(norm).await?,
            None => None,
        };
        let ok = verify_password(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let Some(user) = user.filter(|_| ok) else {
            // The reservation stays: a failed attempt.
            return Err(Error::Unauthorized("Invalid email or password".into()));
        };
        attempt.release();
        let token = new_secret_token();
        self.store.create_panel_session(user.id, &token_digest(&token), now_ms() + PANEL_SESSION_MS).await?;
        Ok(token)
    }

    /// The panel user of a session token (raw or `Bearer …`).
    pub async fn panel_user(&self, authorization: Option<&str>) -> Result<PanelUser> {
        let token = bare_token(authorization).ok_or_else(|| Error::Unauthorized("Invalid panel token".into()))?;
        self.store
            .panel_session_user(&token_digest(token), now_ms())
            .await?
            .ok_or_else(|| Error::Unauthorized("Invalid panel token".into()))
    }

    pub async fn panel_logout(&self, authorization: Option<&str>) -> Result<()> {
        if let Some(token) = bare_token(authorization) {
            self.store.delete_panel_session(&token_digest(token)).await?;
        }
        Ok(())
    }
}

/// The token of an `Authorization` header: raw, or after `Bearer `.
pub fn bare_token(authorization: Option<&str>) -> Option<&str> {
    let v = authorization?.trim();
    let v = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim();
    (!v.is_empty() && v.len() <= 256).then_some(v)
}
