//! App objects in `/v2/classes` collections. (Issue #4.)

use async_trait::async_trait;

/// Storage of app objects.
#[async_trait]
pub trait ObjectStore: Send + Sync {}
