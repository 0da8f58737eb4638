//! Runs the store conformance suite against the SQLite backend.

use thingline_store::{StoreOptions, conformance};

#[tokio::test]
async fn sqlite_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = thingline_store::open(&url, &StoreOptions::default()).await.expect("open");
    conformance::run_all(store.clone()).await;
    store.close().await;
}
