//! App users: register and login (per app, rate-limited), linking things, grants, the user's
//! settings (with the `password` key), and the panel's view of an app's users. Permissions
//! themselves are computed in [`super::permissions`]; sessions in [`super::sessions`].

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Map, Value};
use thingline_bus::Invalidation;
use thingline_core::email::normalize_email;
use thingline_core::keys::{base_key, validate_key};
use thingline_core::model::{AppUser, GrantEntry, PanelUser, Thing};
use thingline_core::time::now_ms;
use thingline_core::{Error, Result};

use super::auth::{check_login, hash_password};
use super::limiter::RateLimiter;
use super::mail::Mailer;
use super::permissions::{AccessCaches, perm};
use super::sessions::SessionCache;
use super::{Platform, Session};

/// Default and longest session lifetime: one year, in seconds.
pub const SESSION_LIFETIME_S: i64 = 365 * 24 * 3600;
/// Most (key, thing) pairs in one grant request.
const MAX_GRANT_ENTRIES: usize = 1000;
/// Largest settings document accepted in one update, bytes of JSON.
const MAX_SETTINGS_BYTES: usize = 64 * 1024;

/// The App API's in-memory state inside the platform.
pub(crate) struct AppApi {
    pub(crate) sessions: SessionCache,
    pub(crate) access: AccessCaches,
    /// Failed app logins, per (app, email) and per client address.
    pub(crate) logins: RateLimiter,
    pub(crate) mail: RwLock<Option<Mailer>>,
}

impl Default for AppApi {
    fn default() -> Self {
        AppApi {
            sessions: SessionCache::default(),
            access: AccessCaches::default(),
            logins: RateLimiter::login_default("app-login"),
            mail: RwLock::new(None),
        }
    }
}

/// A successful register or login.
pub struct LoginOutcome {
    pub token: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
    pub session: Arc<Session>,
}

/// How a thing is named when linking.
pub enum LinkBy<'a> {
    /// Proves possession: any user of the app may link it.
    Token(&'a str),
    /// Accepted only for a thing nobody has linked yet.
    Id(&'a str),
}

/// The lifetime asked for (`expirationDate`, seconds), defaulting to and capped at one year.
pub fn session_lifetime(requested: Option<&Value>) -> Result<i64> {
    let bad = || {
        Error::bad_request(format!("expirationDate must be a whole number of seconds from 1 to {SESSION_LIFETIME_S}"))
    };
    let secs = match requested {
        None | Some(Value::Null) => return Ok(SESSION_LIFETIME_S),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.trim().parse::<i64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if !(1..=SESSION_LIFETIME_S).contains(&secs) {
        return Err(bad());
    }
    Ok(secs)
}

fn unknown_app(app_id: &str) -> Error {
    Error::not_found(format!("App {app_id:?} not found: use the appID given in the panel"))
}

impl Platform {
    async fn existing_app(&self, app_id: &str) -> Result<Arc<super::permissions::AppView>> {
        let app_id = app_id.trim();
        if app_id.is_empty() {
            return Err(Error::bad_request("app is required (the appID given in the panel)"));
        }
        self.app_view(app_id).await?.ok_or_else(|| unknown_app(app_id))
    }

    /// Creates a user of an app and logs it in. 409 when the email exists in that app.
    pub async fn app_register(
        &self,
        app_id: &str,
        email: &str,
        password: &str,
        lifetime_s: i64,
    ) -> Result<LoginOutcome> {
        let app = self.existing_app(app_id).await?;
        let email = normalize_email(email)?;
        if self.store.app_user_by_email(&app.id, &email).await?.is_some() {
            return Err(Error::Conflict(format!("A user with email {email} already exists in this app")));
        }
        let hash = hash_password(password).await?;
        let user = self.store.create_app_user(&app.id, &email, &hash, now_ms()).await?;
        tracing::info!(app_id = %app.id, user_id = user.id, "app user registered");
        let (token, session) = self.new_session(user.id, &app.id, &email, lifetime_s).await?;
        Ok(LoginOutcome { token, expires_in: lifetime_s, session })
    }

    /// Logs a user of an app in: a new session token, or 401; 429 after too many failures (per
    /// email in the app and per client address; see [`check_login`]).
    pub async fn app_login(
        &self,
        app_id: &str,
        email: &str,
        password: &str,
        lifetime_s: i64,
        client: IpAddr,
    ) -> Result<LoginOutcome> {
        let app = self.existing_app(app_id).await?;
        let scope = format!("{}:", app.id);
        let lookup = async |norm: &str| self.store.app_user_by_email(&app.id, norm).await;
        let user = check_login(
            &self.app_api.logins,
            self.store.attempts(),
            &scope,
            email,
            password,
            client,
            lookup,
            |u: &AppUser| &u.password_hash,
        )
        .await?;
        let (token, session) = self.new_session(user.id, &app.id, &user.email, lifetime_s).await?;
        Ok(LoginOutcome { token, expires_in: lifetime_s, session })
    }

    /// Links a thing to the session's user. The thing must belong to a product of the app's
    /// panel account (other things answer 404, as if they did not exist).
    pub async fn link_thing(&self, session: &Session, by: LinkBy<'_>) -> Result<Arc<Thing>> {
        let app =
            self.app_view(&session.app_id).await?.ok_or_else(|| Error::Unauthorized("Invalid session token".into()))?;
        let (thing, exclusive) = match by {
            LinkBy::Token(token) => (self.thing_by_token(token.trim()).await?, false),
            LinkBy::Id(id) => (self.thing_by_id(id.trim()).await?, true),
        };
        let product = self.store.product(&thing.product_id).await?.ok_or_else(Error::thing_not_found)?;
        if product.owner_id != app.owner_id {
            return Err(Error::thing_not_found());
        }
        if !self.store.link_thing(session.user_id, &thing.id, exclusive, now_ms()).await? {
            return Err(Error::Forbidden("This thing is already linked to a user; link it with its thingToken".into()));
        }
        self.invalidate(Invalidation::UserAccess { user_id: session.user_id });
        Ok(thing)
    }

    /// Unlinks a thing (named by thingId or its thingToken); grants the user gave on it end too.
    /// 404 when it was not linked.
    pub async fn unlink_thing(&self, session: &Session, thing: &str) -> Result<()> {
        let access = self.user_access(session.user_id).await?;
        let thing_id = access.get(thing).map_or(thing, |t| t.thing.id.as_str());
        let grantees = self.store.unlink_thing(session.user_id, thing_id).await?.ok_or_else(Error::thing_not_found)?;
        self.invalidate(Invalidation::UserAccess { user_id: session.user_id });
        for g in grantees {
            self.invalidate(Invalidation::UserAccess { user_id: g });
        }
        Ok(())
    }

    /// Grants another user of the same app permissions on the granter's resources.
    ///
    /// `permissions` is `{key: {thingId: {get, post, grant, put, delete}}}`. For each (key, thing)
    /// the grantee's permissions become exactly the ones set to `true` (all `false` revokes). The
    /// granter must hold `grant` and every permission given. Every pair is checked before any is
    /// written, and they are written in one transaction: a request applies whole or not at all.
    /// Returns the number of (key, thing) pairs written. The confirmation goes to the granter by
    /// email (or the outbox).
    pub async fn grant(&self, session: &Session, email: &str, permissions: &Value) -> Result<usize> {
        let mut entries = parse_grant(permissions)?;
        let email = normalize_email(email)?;
        let grantee = self
            .store
            .app_user_by_email(&session.app_id, &email)
            .await?
            .ok_or_else(|| Error::not_found(format!("No user with email {email} in this app")))?;
        if grantee.id == session.user_id {
            return Err(Error::bad_request("You cannot grant permissions to yourself"));
        }
        for GrantEntry { thing_id, key, perms: bits } in &mut entries {
            // A thing named by its token is granted (and stored, and mailed) by its thingId.
            let held = match self.reach(session, thing_id, key).await? {
                Some((thing, held)) => {
                    thing_id.clone_from(&thing.id);
                    held
                }
                None => 0,
            };
            if held & perm::GRANT == 0 || *bits & !held != 0 {
                return Err(Error::Forbidden(format!(
                    "You can only grant permissions you hold, with the grant permission (resource {key} of thing {thing_id})"
                )));
            }
        }
        self.store.set_grants(grantee.id, session.user_id, &entries, now_ms()).await?;
        self.invalidate(Invalidation::UserAccess { user_id: grantee.id });
        let mut body = format!("You shared resources with {email}:\n");
        for GrantEntry { thing_id, key, perms: bits } in &entries {
            let names: Vec<&str> = perm::NAMES.iter().filter(|(_, b)| bits & b != 0).map(|(n, _)| *n).collect();
            let what = if names.is_empty() { "revoked".to_owned() } else { names.join(", ") };
            let _ = writeln!(body, "- {key} of thing {thing_id}: {what}");
        }
        body.push_str("\nIf you did not do this, revoke it from the app.\n");
        // The grant is applied: a failed confirmation is logged, not turned into an error.
        if let Err(e) = self.notify(&session.app_id, &session.email, "You shared resources", &body).await {
            tracing::warn!(error = %e, app = %session.app_id, "grant confirmation not queued");
        }
        Ok(entries.len())
    }

    /// The user's settings document.
    pub async fn user_settings(&self, session: &Session) -> Result<Value> {
        self.store.app_user_settings(session.user_id).await
    }

    /// Merges top-level keys into the user's settings (`null` removes a key). The `password` key
    /// changes the password instead of being stored, and ends every other session of the user.
    pub async fn update_user_settings(&self, session: &Session, patch: Value) -> Result<Value> {
        let Value::Object(mut patch) = patch else {
            return Err(Error::bad_request("settings must be a JSON object"));
        };
        // A refused request changes nothing: the new password is checked and hashed first, the
        // settings merged next (the store refuses a merged document over the limit, 413), and the
        // password stored last.
        let new_hash = match patch.remove("password") {
            None => None,
            Some(Value::String(pw)) => Some(hash_password(&pw).await?),
            Some(_) => return Err(Error::bad_request("password must be a string")),
        };
        let settings = if patch.is_empty() {
            self.store.app_user_settings(session.user_id).await?
        } else {
            self.store.merge_app_user_settings(session.user_id, patch, MAX_SETTINGS_BYTES).await?
        };
        if let Some(hash) = new_hash {
            self.set_password_hash(session, &hash).await?;
        }
        Ok(settings)
    }

    /// Stores a new password hash; every session of the user except this one ends.
    async fn set_password_hash(&self, session: &Session, hash: &str) -> Result<()> {
        self.store.set_app_user_password(session.user_id, hash, Some(&session.token_digest)).await?;
        // Live subscriptions of the other sessions end.
        self.invalidate(Invalidation::UserSessions {
            user_id: session.user_id,
            keep: Some(session.token_digest.clone()),
        });
        Ok(())
    }

    /// The users of an app of this panel account.
    pub async fn app_users(&self, owner: &PanelUser, app_id: &str) -> Result<Vec<AppUser>> {
        self.owned_app(owner, app_id).await?;
        self.store.app_users_of(app_id).await
    }

    /// Deletes a user of an app of this panel account (its sessions end at once).
    pub async fn delete_app_user(&self, owner: &PanelUser, app_id: &str, user_id: i64) -> Result<()> {
        self.owned_app(owner, app_id).await?;
        let user = self.store.app_user(user_id).await?.filter(|u| u.app_id == app_id);
        if user.is_none() || !self.store.delete_app_user(user_id).await? {
            return Err(Error::not_found("User not found"));
        }
        self.invalidate(Invalidation::UserSessions { user_id, keep: None });
        // Grants this user gave are gone too: every cached access reloads on next use.
        self.invalidate(Invalidation::AllUserAccess);
        Ok(())
    }
}

/// `{key: {thingId: {perm: bool}}}` → one entry per (key, thingId). Booleans may be strings (form
/// bodies).
fn parse_grant(permissions: &Value) -> Result<Vec<GrantEntry>> {
    let shape = || Error::bad_request("permissions must be {\"<resource>\": {\"<thingId>\": {\"get\": true, …}}}");
    let keys = permissions.as_object().ok_or_else(shape)?;
    let mut out = Vec::new();
    for (key, things) in keys {
        validate_key(key).map_err(|e| Error::bad_request(format!("permissions: {}", e.public_message())))?;
        // Permissions are per resource: a settings path follows `$settings`, granted as a whole.
        if base_key(key) != key {
            return Err(Error::bad_request(format!(
                "permissions: grant {:?}, not {key:?} (a settings path follows its resource)",
                base_key(key)
            )));
        }
        for (thing_id, perms) in things.as_object().ok_or_else(shape)? {
            let perms: &Map<String, Value> = perms.as_object().ok_or_else(shape)?;
            let mut bits = 0u8;
            for (name, v) in perms {
                let bit = perm::NAMES.iter().find(|(n, _)| n == name).map(|(_, b)| *b).ok_or_else(|| {
                    Error::bad_request(format!("unknown permission {name:?}: use get, post, grant, put, delete"))
                })?;
                let on = match v {
                    Value::Bool(b) => *b,
                    Value::String(s) if s == "true" => true,
                    Value::String(s) if s == "false" => false,
                    _ => return Err(Error::bad_request(format!("permission {name:?} must be true or false"))),
                };
                if on {
                    bits |= bit;
                }
            }
            out.push(GrantEntry { thing_id: thing_id.clone(), key: key.clone(), perms: bits });
            if out.len() > MAX_GRANT_ENTRIES {
                return Err(Error::bad_request(format!("at most {MAX_GRANT_ENTRIES} grants per request")));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::bad_request("permissions must name at least one resource and thing"));
    }
    Ok(out)
}
