//! Test support for backends that need a server (behind the `conformance` feature, like the
//! suite): a scratch PostgreSQL schema per test ([`scratch_postgres_url`]), dropped again by
//! [`drop_scratch`].

use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The environment variable naming the server the PostgreSQL tests use.
pub const POSTGRES_URL_ENV: &str = "THINGLINE_TEST_POSTGRES_URL";
/// The server when [`POSTGRES_URL_ENV`] is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh, empty schema `tl_<random hex>` on the test server, as a store URL that selects it
/// (`…?options=-c search_path=tl_…`): every table (partitions too) lands in it. `None` when the
/// server cannot be reached (a loud notice on stderr: the caller skips its test), except on CI
/// (`CI=true`), where an unreachable server fails the test.
pub async fn scratch_postgres_url() -> Option<String> {
    let base = std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let connected = match PgConnectOptions::from_str(&base) {
        Ok(options) => tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
            .await
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
                panic!("PostgreSQL not reachable at {base} ({e}); CI=true requires it (set {POSTGRES_URL_ENV})");
            }
            eprintln!(
                "NOTICE: PostgreSQL not reachable at {base} ({e}): skipping this PostgreSQL test \
                 (set {POSTGRES_URL_ENV} to run it)"
            );
            return None;
        }
    };
    let schema = format!("tl_{:016x}", random());
    let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await;
    let _ = conn.close().await;
    if let Err(e) = created {
        panic!("cannot create the scratch schema {schema} at {base}: {e}");
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

/// Drops the scratch schema a [`scratch_postgres_url`] URL selects, with everything in it.
/// Best effort: failures are ignored.
pub async fn drop_scratch(url: &str) {
    let Some((_, rest)) = url.split_once("search_path%3D") else { return };
    let schema: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if !schema.starts_with("tl_") {
        return;
    }
    let Ok(options) = PgConnectOptions::from_str(url) else { return };
    if let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options)).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// 64 random bits without a dependency: the standard library's randomly keyed hasher, fed the
/// time and a counter.
fn random() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}
