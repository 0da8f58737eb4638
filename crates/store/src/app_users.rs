//! App users (scoped per app), their sessions, linked things, grants, settings, and the outbox of
//! notification emails. (Issue #3.)

use async_trait::async_trait;

/// Storage of the App API's users and what they may reach.
#[async_trait]
pub trait AppUserStore: Send + Sync {}
