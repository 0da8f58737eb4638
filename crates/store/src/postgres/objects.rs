//! App objects in `/v2/classes` collections on PostgreSQL. (Placeholder until implemented.)

use async_trait::async_trait;
use serde_json::{Map, Value};
use thingline_core::classes::{Collection, ListQuery, PreparedObject};
use thingline_core::{Error, Result};

use super::PgStore;
use crate::ObjectStore;

fn missing() -> Error {
    Error::Internal("postgres objects: not implemented yet".into())
}

#[async_trait]
impl ObjectStore for PgStore {
    async fn create_object(&self, _collection: &Collection, _object: PreparedObject) -> Result<()> {
        Err(missing())
    }
    async fn update_object(&self, _c: &Collection, _id: &str, _patch: Map<String, Value>) -> Result<Option<String>> {
        Err(missing())
    }
    async fn delete_object(&self, _c: &Collection, _id: &str) -> Result<bool> {
        Err(missing())
    }
    async fn object(&self, _c: &Collection, _id: &str) -> Result<Option<String>> {
        Err(missing())
    }
    async fn list_objects(&self, _c: &Collection, _q: &ListQuery) -> Result<Vec<String>> {
        Err(missing())
    }
    async fn indexed_fields(&self, _c: &Collection) -> Result<Vec<String>> {
        Err(missing())
    }
}
