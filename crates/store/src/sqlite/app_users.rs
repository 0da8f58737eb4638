//! App users, sessions, links, grants, settings and outbox on SQLite.

use super::SqliteStore;
use crate::AppUserStore;

impl AppUserStore for SqliteStore {}
