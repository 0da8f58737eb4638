//! App users (scoped per app), their sessions, linked things, grants, settings, and the outbox of
//! notification emails. (Issue #3.) Session tokens are stored only as digests. Deleting an app
//! removes its users with everything they own; deleting a thing removes its links and grants.
//! A grant request is written in one transaction.

use async_trait::async_trait;
use thingline_core::Result;

use crate::{AppSessionRecord, AppUserSummary, GrantRecord};
use thingline_core::model::{AppUser, GrantEntry, OutboxMail, Thing};

/// Storage of the App API's users and what they may reach.
#[async_trait]
pub trait AppUserStore: Send + Sync {
    /// Creates a user of an app; `Conflict` when the email is taken in that app, `NotFound` when
    /// the app does not exist.
    async fn create_app_user(&self, app_id: &str, email: &str, password_hash: &str, now_ms: i64) -> Result<AppUser>;
    async fn app_user_by_email(&self, app_id: &str, email: &str) -> Result<Option<AppUser>>;
    async fn app_user(&self, id: i64) -> Result<Option<AppUser>>;
    /// Users of an app, oldest first.
    async fn app_users_of(&self, app_id: &str) -> Result<Vec<AppUser>>;
    /// Users of an app, oldest first, with their last login and the things they linked (two
    /// queries whatever the number of users). Empty for an unknown app.
    async fn app_user_summaries(&self, app_id: &str) -> Result<Vec<AppUserSummary>>;
    /// Deletes a user with its sessions, links, grants received and grants given, and its private
    /// object collections.
    async fn delete_app_user(&self, id: i64) -> Result<bool>;
    /// Replaces the password hash and ends every session of the user except `keep` (a digest).
    async fn set_app_user_password(&self, user_id: i64, password_hash: &str, keep: Option<&str>) -> Result<()>;

    /// Creates a session and records `now_ms` as the user's last login, in one transaction.
    async fn create_app_session(&self, user_id: i64, token_digest: &str, expires_ms: i64, now_ms: i64) -> Result<()>;
    /// The live (not expired) session of a digest.
    async fn app_session(&self, token_digest: &str, now_ms: i64) -> Result<Option<AppSessionRecord>>;
    async fn delete_app_session(&self, token_digest: &str) -> Result<bool>;

    /// Links a thing to a user. With `exclusive`, only when no user has linked it yet (the
    /// user's own existing link counts as success). Returns false when refused.
    async fn link_thing(&self, user_id: i64, thing_id: &str, exclusive: bool, now_ms: i64) -> Result<bool>;
    /// Removes a link and the grants the user gave on that thing. `None` when it was not linked;
    /// otherwise the users whose grants were removed.
    async fn unlink_thing(&self, user_id: i64, thing_id: &str) -> Result<Option<Vec<i64>>>;
    /// Things the user linked, in link order.
    async fn linked_things(&self, user_id: i64) -> Result<Vec<Thing>>;

    /// Sets the permissions `granted_by` gives `user_id` on each (key, thing) of `entries`, in
    /// order (`perms` 0 removes the grant; removing an absent one is no error). All or nothing:
    /// when one entry fails (`NotFound` when an entry that sets permissions names an unknown thing
    /// or user; a removal of an absent grant never fails), none is applied.
    async fn set_grants(&self, user_id: i64, granted_by: i64, entries: &[GrantEntry], now_ms: i64) -> Result<()>;
    /// Grants the user received.
    async fn grants_of(&self, user_id: i64) -> Result<Vec<GrantRecord>>;

    /// The user's settings document (`{}` for a new user).
    async fn app_user_settings(&self, user_id: i64) -> Result<serde_json::Value>;
    /// Merges top-level keys into the settings (a `null` value removes the key); returns the
    /// new document. 413 (nothing changed) when the merged document would exceed `max_bytes`.
    async fn merge_app_user_settings(
        &self,
        user_id: i64,
        patch: serde_json::Map<String, serde_json::Value>,
        max_bytes: usize,
    ) -> Result<serde_json::Value>;

    /// Stores a mail in the outbox; returns its id.
    async fn add_outbox_mail(&self, app_id: &str, to: &str, subject: &str, body: &str, now_ms: i64) -> Result<i64>;
    /// The outbox of an app, newest first, at most `limit`.
    async fn outbox_of_app(&self, app_id: &str, limit: u32) -> Result<Vec<OutboxMail>>;
}

/// A stored user-settings document (`None`: no such user, 404).
pub(crate) fn parse_settings(text: Option<String>) -> Result<serde_json::Value> {
    let text = text.ok_or_else(|| thingline_core::Error::not_found("User not found"))?;
    serde_json::from_str(&text).map_err(|e| thingline_core::Error::internal(format!("corrupt user settings: {e}")))
}

/// The rule of [`AppUserStore::merge_app_user_settings`], the same for every backend: top-level
/// keys of `patch` replace the stored ones, a `null` removes its key; 413 when the merged
/// document's text exceeds `max_bytes`. Returns the document and its text to store.
pub(crate) fn merge_settings(
    stored: Option<String>,
    patch: serde_json::Map<String, serde_json::Value>,
    max_bytes: usize,
) -> Result<(serde_json::Value, String)> {
    let mut doc = parse_settings(stored)?;
    if !doc.is_object() {
        doc = serde_json::Value::Object(serde_json::Map::new());
    }
    if let Some(obj) = doc.as_object_mut() {
        for (k, v) in patch {
            if v.is_null() {
                obj.remove(&k);
            } else {
                obj.insert(k, v);
            }
        }
    }
    let text = serde_json::to_string(&doc).map_err(thingline_core::Error::internal)?;
    if text.len() > max_bytes {
        return Err(thingline_core::Error::PayloadTooLarge(format!("settings are limited to {max_bytes} bytes")));
    }
    Ok((doc, text))
}

/// The users of [`AppUserStore::app_user_summaries`] (oldest first, each with its last login)
/// joined with the links of the app's users, `(user id, thing id)`, ordered by user.
pub(crate) fn summaries(users: Vec<(AppUser, Option<i64>)>, links: Vec<(i64, String)>) -> Vec<AppUserSummary> {
    let mut by_user: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
    for (user, thing) in links {
        by_user.entry(user).or_default().push(thing);
    }
    users
        .into_iter()
        .map(|(user, last_login_ms)| {
            let mut linked_things = by_user.remove(&user.id).unwrap_or_default();
            // Byte order whatever the database's collation.
            linked_things.sort_unstable();
            AppUserSummary { user, last_login_ms, linked_things }
        })
        .collect()
}
