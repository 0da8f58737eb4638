//! Which backends the test servers run on. By default SQLite in the server's data dir with the
//! in-process bus. With `THINGLINE_TEST_BACKEND=postgres` (the second pass of `scripts/test`) every
//! test server gets a fresh PostgreSQL schema and the NATS bus under a subject prefix of its own,
//! so the whole integration suite runs against the scale-out backends. The choice is recorded in
//! the data dir, so that a server restarted on the same data dir finds the same store, and a
//! second node given a copy ([`share`]) joins the same installation.

use std::path::Path;

/// The environment variable that selects the scale-out backends for the whole suite.
pub const BACKEND_ENV: &str = "THINGLINE_TEST_BACKEND";
/// The NATS server the tests use (default `nats://127.0.0.1:4222`).
pub const NATS_URL_ENV: &str = "THINGLINE_TEST_NATS_URL";
const RECORD: &str = "test-backend.json";

/// A store URL, bus URL and bus prefix: one installation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cluster {
    pub store_url: String,
    pub bus_url: String,
    pub bus_prefix: String,
}

impl Cluster {
    /// `(name, value)` pairs for a spawned process.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("THINGLINE_STORE_URL", self.store_url.clone()),
            ("THINGLINE_BUS_URL", self.bus_url.clone()),
            ("THINGLINE_BUS_PREFIX", self.bus_prefix.clone()),
        ]
    }
}

/// Whether the suite runs on PostgreSQL and NATS.
pub fn scale_out_selected() -> bool {
    std::env::var(BACKEND_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

/// The installation a test server on `dir` uses: the one recorded there, else (scale-out
/// selected) a new one, recorded; `None`: SQLite in the data dir and the in-process bus.
pub fn for_data_dir(dir: &Path) -> Option<Cluster> {
    if let Some(recorded) = recorded(dir) {
        return Some(recorded);
    }
    if !scale_out_selected() {
        return None;
    }
    let cluster = new_cluster().unwrap_or_else(|| panic!("{BACKEND_ENV}=postgres, but PostgreSQL is not reachable"));
    record(dir, &cluster);
    Some(cluster)
}

/// A new installation on PostgreSQL (a fresh schema) and NATS (a fresh prefix), whatever the
/// suite's backend: for the multi-node tests. `None` (with a loud notice) where PostgreSQL is not
/// reachable and `CI` is not `true`.
pub fn new_cluster() -> Option<Cluster> {
    let store_url = blocking(thingline_store::testing::scratch_postgres_url())?;
    let bus_url = std::env::var(NATS_URL_ENV).unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let bus_prefix = store_url.rsplit("search_path%3D").next().unwrap_or("tl").to_owned();
    Some(Cluster { store_url, bus_url, bus_prefix })
}

/// Records `cluster` in `dir`, so a server started there joins it.
pub fn share(cluster: &Cluster, dir: &Path) {
    record(dir, cluster);
}

fn recorded(dir: &Path) -> Option<Cluster> {
    let text = std::fs::read_to_string(dir.join(RECORD)).ok()?;
    Some(serde_json::from_str(&text).expect("a readable test-backend record"))
}

fn record(dir: &Path, cluster: &Cluster) {
    std::fs::create_dir_all(dir).expect("data dir");
    std::fs::write(dir.join(RECORD), serde_json::to_vec(cluster).expect("json")).expect("record the backend");
}

/// Runs a future to completion on a runtime of its own, from sync or async code alike.
fn blocking<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
    })
    .join()
    .expect("backend setup thread")
}
