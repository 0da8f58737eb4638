//! Passwords (Argon2id, PHC strings, hashed and verified off the async runtime) and panel sessions.

use std::net::IpAddr;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use thingline_bus::Invalidation;
use thingline_core::email::normalize_email;
use thingline_core::ids::{new_secret_token, token_digest};
use thingline_core::model::PanelUser;
use thingline_core::time::now_ms;
use thingline_core::{Error, Result};

use super::Platform;
use super::limiter::{LimitKey, RateLimiter};

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

/// The user a login names, once its password is checked: 401 `Invalid email or password`
/// otherwise, 429 past the limits. The attempt is reserved on the account (`scope` + the
/// normalized email) and the client address before `lookup` asks the store and the password is
/// verified, and released only when the password is right, so concurrent attempts cannot get past
/// the limit and correct logins never count. An email that is not a valid address names no
/// account and fails like a wrong password; it is counted under a digest of what was sent, so the
/// limiter never holds client text of unbounded length.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check_login<U>(
    limiter: &RateLimiter,
    shared: Option<&dyn thingline_store::AttemptStore>,
    scope: &str,
    email: &str,
    password: &str,
    client: IpAddr,
    lookup: impl AsyncFnOnce(&str) -> Result<Option<U>>,
    password_hash: impl Fn(&U) -> &str,
) -> Result<U> {
    let (norm, account) = match normalize_email(email) {
        Ok(norm) => (Some(norm.clone()), norm),
        Err(_) => (None, format!("invalid:{}", token_digest(email.trim()))),
    };
    let account = format!("{scope}{account}");
    let attempt = limiter.reserve_in(shared, &[LimitKey::Account(&account), LimitKey::Addr(client)]).await?;
    let user = match &norm {
        Some(norm) => lookup(norm).await?,
        None => None,
    };
    let ok = verify_password(password, user.as_ref().map(&password_hash)).await?;
    let Some(user) = user.filter(|_| ok) else {
        // The reservation stays: a failed attempt.
        super::metrics::login_failed(match limiter.kind() {
            "panel-login" => "panel",
            _ => "app",
        });
        return Err(Error::Unauthorized("Invalid email or password".into()));
    };
    attempt.release().await;
    Ok(user)
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

    /// Panel login: a new session token, or 401; 429 after too many failures ([`check_login`]).
    pub async fn panel_login(&self, email: &str, password: &str, client: IpAddr) -> Result<String> {
        let lookup = async |norm: &str| self.store.panel_user_by_email(norm).await;
        let user = check_login(
            &self.panel_logins,
            self.store.attempts(),
            "",
            email,
            password,
            client,
            lookup,
            |u: &PanelUser| &u.password_hash,
        )
        .await?;
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
            let digest = token_digest(token);
            self.store.delete_panel_session(&digest).await?;
            // The web panel's live streams of this session end, on every node.
            self.invalidate(Invalidation::PanelSession { digest });
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
