//! Who may subscribe to what, asked of the platform's permission rules (the same ones HTTP reads
//! use), and the re-check after an access change: which things of a live subscription are still
//! readable.

use std::collections::HashMap;
use std::sync::Arc;

use thingline_core::model::Thing;
use thingline_core::{Error, Result};

use crate::platform::{Platform, Session};

/// What a subscription asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One key on one thing (by thingId).
    One { key: String, thing_id: String },
    /// One key on every thing the user may read it on.
    Every { key: String },
}

impl Target {
    pub fn key(&self) -> &str {
        match self {
            Target::One { key, .. } | Target::Every { key } => key,
        }
    }
}

/// The things of `target` the session may read now (by thing seq). Nothing readable answers 404
/// like a read would (a thing that does not exist or may not be read, a key the app does not ask
/// for or no thing has public).
pub async fn readable(p: &Platform, session: &Session, target: &Target) -> Result<HashMap<i64, Arc<Thing>>> {
    match target {
        Target::One { key, thing_id } => {
            if !p.can_read(session, thing_id, key).await? {
                return Err(not_found(key));
            }
            let thing = p.thing_by_id(thing_id).await?;
            Ok(HashMap::from([(thing.seq, thing)]))
        }
        Target::Every { key } => {
            let things: HashMap<i64, Arc<Thing>> =
                p.readable_things(session, key).await?.into_iter().map(|t| (t.seq, t)).collect();
            if things.is_empty() {
                return Err(not_found(key));
            }
            Ok(things)
        }
    }
}

/// What ends a live subscription whose access was removed.
pub fn access_removed() -> Error {
    Error::Forbidden("Access to this resource was removed".into())
}

fn not_found(key: &str) -> Error {
    Error::not_found(format!("Resource {key} not found"))
}
