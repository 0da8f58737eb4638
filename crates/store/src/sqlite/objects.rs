//! App objects on SQLite.

use super::SqliteStore;
use crate::ObjectStore;

impl ObjectStore for SqliteStore {}
